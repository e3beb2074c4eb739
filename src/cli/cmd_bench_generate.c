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
 *   step_over_floor   step / floor (see the rounds below)
 *   floor_gflops      the products' FLOPs / floor_ms
 *   cache_mb_per_step what attention reads per step, which the floor does not
 *                     count: every layer's cross-attention keys and values of
 *                     the batch, and its self-attention cache (mean length
 *                     over the steps), in the caches' precision (MB = 1e6 bytes)
 *   read_gb_per_s     this machine's read bandwidth at that size: all threads
 *                     reading a buffer of cache_mb_per_step (per round the best
 *                     of 3 passes, then the median over the rounds; null if
 *                     the buffer could not be had)
 *   attention_floor_ms  cache_mb_per_step at read_gb_per_s: attention's
 *                     products (q . K^T and p . V over the caches) cannot run
 *                     faster than their operands are read
 *   floor_with_attention_ms  floor_ms + attention_floor_ms
 *   step_over_floor_with_attention  step / (floor + attention floor)
 *   ids_row0          row 0's generated ids (PyTorch's must be equal in fp32)
 *   step_parts_ms     where a step's time goes (options.profile over one more
 *                     run of new_tokens steps, per step): products, self- and
 *                     cross-attention, the rest (embedding, norms, activation),
 *                     the LM head, argmax, selection
 *
 * After a warm-up, reps rounds each run everything back to back (the whole
 * generation, one token, both floors, three reads), so that the host's
 * drift hits the step and its floors alike; times are medians over the
 * rounds, and the two step_over_* ratios the medians of each round's ratio
 * (the floor a round's faster arrangement).  --cache forces the
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

/* Seconds for one generation of `tokens` new tokens per row (-1: the engine failed). */
static double
timed_generate(const PtModel *m, PtWorkspace *ws, const PtGenerateRow *rows, int B,
			   PtGenerateOptions *o, PtGenerateResult *res, int tokens)
{
	double		t0 = pt_seconds();

	o->max_new_tokens = tokens;
	if (pt_generate(m, ws, rows, B, o, res) != 0)
		return -1;
	return pt_seconds() - t0;
}

/*
 * Seconds for all threads to read buf[0..n) once.  Summing 64-bit words
 * vectorises without reassociating float sums; the sum goes to read_sink so
 * that the reads are not optimised away.
 */
static volatile uint64_t read_sink;

static double
read_pass(const uint64_t *buf, size_t n)
{
	double		t0 = pt_seconds();
	uint64_t	sum = 0;

#pragma omp parallel for schedule(static) reduction(+:sum)
	for (size_t i = 0; i < n; i++)
		sum += buf[i];
	read_sink += sum;
	return pt_seconds() - t0;
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
		double		flops = 0,
					full_t[MAX_REPS],
					step_t[MAX_REPS],
					floor_t[2][MAX_REPS],
					floor_arranged[2],	/* [split]: the products on all threads, or split as the step */
					floor_s,
					read_bps[MAX_REPS],
					over[MAX_REPS],
					over_att[MAX_REPS];
		double		esz = (cache == PT_GEN_CACHE_BF16 ||
						   (cache == PT_GEN_CACHE_AUTO && m->math != PT_MATH_FP32)) ? 2 : 4;
		double		cache_bytes = esz * c->num_decoder_layers * 2.0 * B * pt_config_inner(c) *
			(input_tokens + (new_tokens + 1) / 2.0);
		size_t		read_n = (size_t) cache_bytes / sizeof(uint64_t);
		uint64_t   *read_buf = read_n ? malloc(read_n * sizeof(uint64_t)) : NULL;
		json_t	   *row0 = json_array(),
				   *step_parts = NULL;

		if (read_buf == NULL)
			read_n = 0;			/* no read bandwidth, no attention floor (nulls) */
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
		/* warm-ups: the caches' memory, the primitives of every shape, the read buffer's pages */
		if (timed_generate(m, &ws, rows, B, &o, res, new_tokens) < 0)
			return cli_engine_error("bench-generate");
		for (int j = 0; j < res[0].n_ids; j++)
			json_array_append_new(row0, json_integer(res[0].ids[j]));
		if (timed_generate(m, &ws, rows, B, &o, res, 1) < 0)
			return cli_engine_error("bench-generate");
		flops = pt_generate_step_products(m, B, x, ybuf, ybuf[4], true);
		pt_generate_step_products(m, B, x, ybuf, ybuf[4], false);
#pragma omp parallel for schedule(static)
		for (size_t i = 0; i < read_n; i++)
			read_buf[i] = i * 2654435761u;

		/*
		 * Rounds of everything back to back (the host's speed drifts by tens of
		 * percent within seconds): an untimed token, the whole generation, one
		 * token, the floor's products in both arrangements, the best of three
		 * reads.
		 */
		for (int r = 0; r < reps; r++)
		{
			double		t_full,
						t_one,
						best_read = 0;

			/* first an untimed token: after the last round's reads, the timed runs start alike */
			if (timed_generate(m, &ws, rows, B, &o, res, 1) < 0 ||
				(t_full = timed_generate(m, &ws, rows, B, &o, res, new_tokens)) < 0 ||
				(t_one = timed_generate(m, &ws, rows, B, &o, res, 1)) < 0)
				return cli_engine_error("bench-generate");
			for (int split = 0; split < 2; split++)
			{
				double		t0 = pt_seconds();

				pt_generate_step_products(m, B, x, ybuf, ybuf[4], split);
				floor_t[split][r] = pt_seconds() - t0;
			}
			for (int k = 0; k < 3 && read_n > 0; k++)
			{
				double		t = read_pass(read_buf, read_n);

				best_read = k == 0 || t < best_read ? t : best_read;
			}
			full_t[r] = t_full;
			step_t[r] = (t_full - t_one) / (new_tokens - 1);
			read_bps[r] = read_n > 0 ? read_n * sizeof(uint64_t) / best_read : 0;
			{
				double		fl = floor_t[0][r] < floor_t[1][r] ? floor_t[0][r] : floor_t[1][r];

				over[r] = step_t[r] / fl;
				over_att[r] = read_bps[r] > 0 ? step_t[r] / (fl + cache_bytes / read_bps[r]) : 0;
			}
		}
		{
			double		prof[PT_GENERATE_PROFILE_PARTS] = {0};
			json_t	   *parts = json_object();

			o.profile = prof;
			if (timed_generate(m, &ws, rows, B, &o, res, new_tokens) < 0)
				return cli_engine_error("bench-generate");
			o.profile = NULL;
			for (int p = 0; p < PT_GENERATE_PROFILE_PARTS; p++)
				json_object_set_new(parts, pt_generate_profile_name(p),
									json_real(prof[p] / new_tokens * 1e3));
			step_parts = parts;
		}
		floor_arranged[0] = cli_median(floor_t[0], reps);
		floor_arranged[1] = cli_median(floor_t[1], reps);
		floor_s = floor_arranged[0] < floor_arranged[1] ? floor_arranged[0] : floor_arranged[1];
		{
			double		step = cli_median(step_t, reps),
						t_full = cli_median(full_t, reps),
						bps = cli_median(read_bps, reps),
						attention_floor = bps > 0 ? cache_bytes / bps : 0;
			json_t	   *fig = json_pack("{s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:o, s:o}",
										"batch", B,
										"tokens_per_s", B * new_tokens / t_full,
										"seconds", t_full,
										"step_ms", step * 1e3,
										"floor_ms", floor_s * 1e3,
										"floor_whole_ms", floor_arranged[0] * 1e3,
										"floor_split_ms", floor_arranged[1] * 1e3,
										"step_over_floor", cli_median(over, reps),
										"floor_gflops", flops / floor_s / 1e9,
										"cache_mb_per_step", cache_bytes / 1e6,
										"ids_row0", row0,
										"step_parts_ms", step_parts);
			bool		read = bps > 0;	/* else null: no buffer to measure with */

			json_object_set_new(fig, "read_gb_per_s", read ? json_real(bps / 1e9) : json_null());
			json_object_set_new(fig, "attention_floor_ms", read ? json_real(attention_floor * 1e3) : json_null());
			json_object_set_new(fig, "floor_with_attention_ms",
								read ? json_real((floor_s + attention_floor) * 1e3) : json_null());
			json_object_set_new(fig, "step_over_floor_with_attention",
								read ? json_real(cli_median(over_att, reps)) : json_null());
			json_array_append_new(per_batch, fig);
		}
		free(ids);
		free(gen);
		free(rows);
		free(res);
		free(x);
		free(read_buf);
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
