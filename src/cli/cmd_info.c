/*
 * cmd_info.c - `ptune info MODEL_DIR`: what the loader understood, as JSON.
 */
#include <stdio.h>

#include <jansson.h>

#include "cli.h"

int
cmd_info(int argc, char **argv)
{
	PtModel    *m;
	json_t	   *o;
	char		fp[2 * PT_FINGERPRINT_BYTES + 1];

	if (argc != 1)
	{
		fprintf(stderr, "usage: ptune info MODEL_DIR\n");
		return 2;
	}
	if ((m = cli_load_model(argv[0])) == NULL)
		return 1;
	pt_model_fingerprint_hex(m, fp);
	o = json_pack("{s:s, s:s, s:I, s:I, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:b, s:f}",
				  "model_name", m->cfg.model_name,
				  "fingerprint", fp,
				  "parameters", (json_int_t) m->n_parameters,
				  "file_bytes", (json_int_t) m->file_bytes,
				  "vocab_size", m->cfg.vocab_size,
				  "d_model", m->cfg.d_model,
				  "d_kv", m->cfg.d_kv,
				  "d_ff", m->cfg.d_ff,
				  "num_heads", m->cfg.num_heads,
				  "num_layers", m->cfg.num_layers,
				  "num_decoder_layers", m->cfg.num_decoder_layers,
				  "relative_attention_num_buckets", m->cfg.rel_buckets,
				  "relative_attention_max_distance", m->cfg.rel_max_distance,
				  "feed_forward_proj", m->cfg.feed_forward_proj,
				  "tie_word_embeddings", m->cfg.tie_word_embeddings,
				  "layer_norm_epsilon", (double) m->cfg.layer_norm_eps);
	json_dumpf(o, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
	putchar('\n');
	json_decref(o);
	pt_model_free(m);
	return 0;
}
