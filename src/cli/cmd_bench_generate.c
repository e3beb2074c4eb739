/*
 * cmd_bench_generate.c - `ptune bench-generate MODEL_DIR [--batches 1,32]
 * [--input-tokens 128] [--new-tokens 32] [--reps N] [--cache fp32|bf16] [--quick]`:
 * the speed of text generation as one JSON object.
 *
 * Workload: rows of input_tokens token ids (a fixed formula that
 * ptune_py/pytorch_generate.py repeats, EOS last), no prompt, greedy decoding of
 * exactly new_tokens tokens per row: EOS is ignored (options.ignore_eos) so
 * that every run decodes the same number of steps whatever the (random)
 * weights say.  Per batch size:
 *
 *   tokens_per_s      generated tokens per second, encoder and cross-attention
 *                     projections included (batch * new_tokens / seconds)
 *   step_ms           one decoder step of the whole batch, without the encoder:
 *                     (time for new_tokens - time for 1 token) / (new_tokens - 1)
 *   floor_ms          the step's matrix products alone, back to back, on the
 *                     model's own weights in the model's precision (every
 *                     decoder layer's self Q/K/V/O, cross Q/O, feed-forward and
 *                     the LM head for batch rows), in the faster of two
 *                     arrangements (pt_generate_step_products): each product
 *                     on all threads (floor_whole_ms), or the layers split by
 *                     rows between threads as the step splits them
 *                     (floor_split_ms): what the step costs if everything but
 *                     the products were free
 *   step_over_floor   step_ms / floor_ms
 *   floor_gflops      the products' FLOPs / floor_ms
 *   cache_mb_per_step what attention reads per step, which the floor does not
 *                     count: every layer's cross-attention keys and values of
 *                     the batch, and its self-attention cache (mean length
 *                     over the steps), in the caches' precision (MB = 1e6 bytes)
 *   read_gb_per_s     this machine's read bandwidth, all threads, over a
 *                     buffer of cache_mb_per_step (the best of 5 passes)
 *   attention_floor_ms  cache_mb_per_step at read_gb_per_s: attention's
 *                     products (q . K^T and p . V over the caches) cannot run
 *                     faster than their operands are read
 *   floor_with_attention_ms  floor_ms + attention_floor_ms
 *   step_over_floor_with_attention  step_ms / floor_with_attention_ms
 *   ids_row0          row 0's generated ids (PyTorch's must be equal in fp32)
 *   step_parts_ms     where a step's time goes (options.profile over one more
 *                     run of new_tokens steps, per step): products, self- and
 *                     cross-attention, the rest (embedding, norms, activation),
 *                     the LM head, argmax, selection
 *
 * Times are medians of reps runs after a warm-up.  --cache forces the
 * key / value caches' precision (default: the model's, see PtGenerateCache);
 * the JSON says which ran ("cache").
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli.h"
#include "runtime.h"
#include "cli_data.h"
#include "error.h"
#include "generate.h"
#include "linear.h"

#define MAX_BATCHES 8
#define MAX_REPS 64



/* Token j of row i: the formula ptune_py/pytorch_generate.py uses too. */
static int32_t
input_id(int i, int j, int n, const PtModel *m)
{
	if (j == n - 1)
		return m->cfg.eos_token_id;
	return 100 + (int32_t) (((long) i * 7919 + (long) j * 104729) % 30000) % (m->cfg.vocab_size - 200);
}

static double
time_generate(const PtModel *m, PtWorkspace *ws, PtGenerateRow *rows, int B,
			  PtGenerateOptions *o, PtGenerateResult *res, int reps)
{
	double		t[MAX_REPS];

	if (pt_generate(m, ws, rows, B, o, res) != 0)	/* warm-up */
		return -1;
	for (int r = 0; r < reps; r++)
	{
		double		t0 = pt_seconds();

		if (pt_generate(m, ws, rows, B, o, res) != 0)
			return -1;
		t[r] = pt_seconds() - t0;
	}
	return cli_median(t, reps);
}

/*
 * Read bandwidth with all threads over a buffer of `bytes` (bytes / s, the
 * best of 5 passes after one to fault the pages in).  Summing 64-bit words
 * vectorises without reassociating float sums; the sum goes to read_sink so
 * that the reads are not optimised away.
 */
static volatile uint64_t read_sink;

static double
read_bandwidth(size_t bytes)
{
	size_t		n = bytes / sizeof(uint64_t);
	uint64_t   *buf = n ? malloc(n * sizeof(uint64_t)) : NULL;
	double		best = 0;

	if (buf == NULL)
		return 0;
	for (size_t i = 0; i < n; i++)
		buf[i] = i * 2654435761u;
	for (int r = 0; r <= 5; r++)
	{
		double		t0 = pt_seconds(),
					t;
		uint64_t	sum = 0;

#pragma omp parallel for schedule(static) reduction(+:sum)
		for (size_t i = 0; i < n; i++)
			sum += buf[i];
		t = pt_seconds() - t0;
		read_sink += sum;
		if (r > 0 && (best == 0 || t < best))
			best = t;
	}
	free(buf);
	return best > 0 ? (double) n * sizeof(uint64_t) / best : 0;
}

int
cmd_bench_generate(int argc, char **argv)
{
	int			batches[MAX_BATCHES] = {1, 32},
				n_batches = 2,
				input_tokens = 128,
				new_tokens = 32,
				reps = 5;
	bool		quick = false;
	PtGenerateCache cache = PT_GEN_CACHE_AUTO;
	PtModel    *m;
	PtWorkspace ws = {0};
	json_t	   *out,
			   *per_batch;

	if (argc < 1)
	{
		fprintf(stderr, "usage: ptune bench-generate MODEL_DIR [--batches 1,32] [--input-tokens N] "
				"[--new-tokens N] [--reps N] [--cache fp32|bf16] [--quick]\n");
		return 2;
	}
	for (int i = 1; i < argc; i++)
	{
		long		v;

		if (strcmp(argv[i], "--quick") == 0)
			quick = true;
		else if (strcmp(argv[i], "--cache") == 0 && i + 1 < argc)
		{
			i++;
			if (strcmp(argv[i], "fp32") == 0)
				cache = PT_GEN_CACHE_FP32;
			else if (strcmp(argv[i], "bf16") == 0)
				cache = PT_GEN_CACHE_BF16;
			else
			{
				fprintf(stderr, "ptune: --cache takes fp32 or bf16, not %s\n", argv[i]);
				return 2;
			}
		}
		else if (strcmp(argv[i], "--batches") == 0 && i + 1 < argc)
		{
			char	   *s = argv[++i];

			n_batches = 0;
			for (char *tok = strtok(s, ","); tok && n_batches < MAX_BATCHES; tok = strtok(NULL, ","))
			{
				if (cli_parse_int("--batches", tok, 1, 1024, &v) != 0)
					return 2;
				batches[n_batches++] = (int) v;
			}
		}
		else if (strcmp(argv[i], "--input-tokens") == 0 && i + 1 < argc)
		{
			if (cli_parse_int("--input-tokens", argv[++i], 1, PT_MAX_INPUT_TOKENS, &v) != 0)
				return 2;
			input_tokens = (int) v;
		}
		else if (strcmp(argv[i], "--new-tokens") == 0 && i + 1 < argc)
		{
			if (cli_parse_int("--new-tokens", argv[++i], 2, PT_GENERATE_MAX_NEW_TOKENS, &v) != 0)
				return 2;
			new_tokens = (int) v;
		}
		else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
		{
			if (cli_parse_int("--reps", argv[++i], 1, MAX_REPS, &v) != 0)
				return 2;
			reps = (int) v;
		}
		else
		{
			fprintf(stderr, "ptune: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	if (quick)
		reps = 1;
	if ((m = cli_load_model(argv[0])) == NULL)
		return 1;

	out = json_object();
	per_batch = json_array();
	for (int bi = 0; bi < n_batches; bi++)
	{
		int			B = batches[bi];
		const PtConfig *c = &m->cfg;
		int32_t    *ids = malloc(sizeof(int32_t) * B * input_tokens);
		int32_t    *gen = malloc(sizeof(int32_t) * B * new_tokens);
		PtGenerateRow *rows = malloc(sizeof(PtGenerateRow) * B);
		PtGenerateResult *res = malloc(sizeof(PtGenerateResult) * B);
		size_t		width = pt_generate_step_width(c);
		float	   *x = calloc((size_t) B * c->d_model, sizeof(float));
		float	   *ybuf[5];
		PtGenerateOptions o;
		double		t_full,
					t_one,
					flops = 0,
					floor_t[2][MAX_REPS],
					floor_arranged[2],	/* [split]: the products on all threads, or split as the step */
					floor_s;
		int			floor_reps = reps * 3 < MAX_REPS ? reps * 3 : MAX_REPS;
		json_t	   *row0 = json_array(),
				   *step_parts = NULL;

		for (int k = 0; k < 5; k++)
			ybuf[k] = calloc((size_t) B * (k == 4 ? (size_t) c->vocab_size : width), sizeof(float));
		for (size_t k = 0; k < (size_t) B * c->d_model; k++)
			x[k] = (float) ((k * 2654435761u) % 1000) * 1e-3f - 0.5f;
		for (int i = 0; i < B; i++)
		{
			for (int j = 0; j < input_tokens; j++)
				ids[i * input_tokens + j] = input_id(i, j, input_tokens, m);
			rows[i] = (PtGenerateRow) {NULL, 0, ids + i * input_tokens, input_tokens};
			res[i] = (PtGenerateResult) {.ids = gen + i * new_tokens};
		}
		pt_generate_options_default(&o);
		o.ignore_eos = true;
		o.max_new_tokens = new_tokens;
		o.cache = cache;
		t_full = time_generate(m, &ws, rows, B, &o, res, reps);
		for (int j = 0; j < res[0].n_ids; j++)
			json_array_append_new(row0, json_integer(res[0].ids[j]));
		{
			double		prof[PT_GENERATE_PROFILE_PARTS] = {0};
			json_t	   *parts = json_object();

			o.profile = prof;
			if (pt_generate(m, &ws, rows, B, &o, res) != 0)
				return cli_engine_error("bench-generate");
			o.profile = NULL;
			for (int p = 0; p < PT_GENERATE_PROFILE_PARTS; p++)
				json_object_set_new(parts, pt_generate_profile_name(p),
									json_real(prof[p] / new_tokens * 1e3));
			step_parts = parts;
		}
		o.max_new_tokens = 1;
		t_one = time_generate(m, &ws, rows, B, &o, res, reps);
		if (t_full < 0 || t_one < 0)
			return cli_engine_error("bench-generate");

		/* both arrangements, interleaved; the floor is the faster */
		flops = pt_generate_step_products(m, B, x, ybuf, ybuf[4], true);	/* warm-up */
		pt_generate_step_products(m, B, x, ybuf, ybuf[4], false);
		for (int r = 0; r < floor_reps; r++)
			for (int split = 0; split < 2; split++)
			{
				double		t0 = pt_seconds();

				pt_generate_step_products(m, B, x, ybuf, ybuf[4], split);
				floor_t[split][r] = pt_seconds() - t0;
			}
		floor_arranged[0] = cli_median(floor_t[0], floor_reps);
		floor_arranged[1] = cli_median(floor_t[1], floor_reps);
		floor_s = floor_arranged[0] < floor_arranged[1] ? floor_arranged[0] : floor_arranged[1];
		{
			double		step = (t_full - t_one) / (new_tokens - 1);

			double		esz = (cache == PT_GEN_CACHE_BF16 ||
							   (cache == PT_GEN_CACHE_AUTO && m->math != PT_MATH_FP32)) ? 2 : 4;
			double		cache_bytes = esz * c->num_decoder_layers * 2.0 * B * pt_config_inner(c) *
				(input_tokens + (new_tokens + 1) / 2.0);
			double		read_bps = read_bandwidth((size_t) cache_bytes);
			double		attention_floor = read_bps > 0 ? cache_bytes / read_bps : 0;

			json_array_append_new(per_batch, json_pack("{s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:o, s:o}",
													   "batch", B,
													   "tokens_per_s", B * new_tokens / t_full,
													   "seconds", t_full,
													   "step_ms", step * 1e3,
													   "floor_ms", floor_s * 1e3,
													   "floor_whole_ms", floor_arranged[0] * 1e3,
													   "floor_split_ms", floor_arranged[1] * 1e3,
													   "step_over_floor", step / floor_s,
													   "floor_gflops", flops / floor_s / 1e9,
													   "cache_mb_per_step", cache_bytes / 1e6,
													   "read_gb_per_s", read_bps / 1e9,
													   "attention_floor_ms", attention_floor * 1e3,
													   "floor_with_attention_ms", (floor_s + attention_floor) * 1e3,
													   "step_over_floor_with_attention", step / (floor_s + attention_floor),
													   "ids_row0", row0,
													   "step_parts_ms", step_parts));
		}
		free(ids);
		free(gen);
		free(rows);
		free(res);
		free(x);
		for (int k = 0; k < 5; k++)
			free(ybuf[k]);
	}
	json_object_set_new(out, "model", json_string(m->cfg.model_name));
	json_object_set_new(out, "precision", json_string(m->math == PT_MATH_BF16 ? "bf16" : "fp32"));
	json_object_set_new(out, "cache", json_string(cache == PT_GEN_CACHE_FP32 ? "fp32" :
												 cache == PT_GEN_CACHE_BF16 ? "bf16" :
												 m->math == PT_MATH_FP32 ? "fp32" : "bf16"));
	json_object_set_new(out, "threads", json_integer(pt_get_threads()));
	json_object_set_new(out, "input_tokens", json_integer(input_tokens));
	json_object_set_new(out, "new_tokens", json_integer(new_tokens));
	json_object_set_new(out, "reps", json_integer(reps));
	json_object_set_new(out, "batches", per_batch);
	json_dumpf(out, stdout, JSON_INDENT(1) | JSON_REAL_PRECISION(6));
	putchar('\n');
	json_decref(out);
	pt_workspace_free(&ws);
	pt_model_free(m);
	return 0;
}
