/*
 * config.h - the T5 hyper-parameters read from a checkpoint's config.json.
 *
 * Field names and defaults follow Hugging Face's T5Config, so a config.json
 * downloaded with a model reads the same here as in transformers.
 */
#ifndef PT_CONFIG_H
#define PT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

typedef enum PtActivation
{
	PT_ACT_RELU,
	PT_ACT_GELU_TANH,			/* "gelu_new": the tanh approximation (gated-gelu) */
	PT_ACT_GELU_ERF,			/* "gelu": the exact erf form */
	PT_ACT_SILU
} PtActivation;

typedef struct PtConfig
{
	char		model_name[128];	/* _name_or_path, else the directory name */
	int			vocab_size;		/* rows of the embedding (32128 for T5) */
	int			d_model;
	int			d_kv;			/* size of one attention head */
	int			d_ff;
	int			num_heads;
	int			num_layers;		/* encoder layers */
	int			num_decoder_layers;
	int			rel_buckets;	/* relative_attention_num_buckets */
	int			rel_max_distance;	/* relative_attention_max_distance */
	float		layer_norm_eps;
	PtActivation activation;
	bool		gated;			/* gated-*: wi_0 (activated) times wi_1 */
	bool		tie_word_embeddings;
	int			decoder_start_token_id;
	int			eos_token_id;
	int			pad_token_id;
	char		feed_forward_proj[32];	/* as written, for model_info */
} PtConfig;

/* Parses and validates path (a config.json); errors name the file and field. */
int			pt_config_load(const char *path, PtConfig *cfg);
/* The same for JSON text in memory; name is used in messages. */
int			pt_config_parse(const char *json, size_t len, const char *name, PtConfig *cfg);

/* inner attention width: num_heads * d_kv */
static inline int
pt_config_inner(const PtConfig *cfg)
{
	return cfg->num_heads * cfg->d_kv;
}

const char *pt_activation_name(PtActivation act);

#endif
