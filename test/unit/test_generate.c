/*
 * test_generate.c - text generation (generate.h): the cached decoder against
 * the uncached teacher-forced one, batches against single rows, stopping,
 * and option errors.  (Exactness against the float64 reference: cross_check.sh.)
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "generate.h"
#include "objective.h"
#include "prompt.h"
#include "rng.h"
#include "task.h"
#include "transformer.h"
#include "unit.h"

#define MAX_NEW 12
#define N_ROWS 7

/* Inputs of different lengths, and prompts of different lengths (row 0, 3, 6: none). */
typedef struct Fixture
{
	PtModel    *m;
	PtTask	   *task;
	PtPrompt   *prompts[3];
	int32_t		ids[N_ROWS][40];
	PtGenerateRow rows[N_ROWS];
	int32_t		out[N_ROWS][PT_GENERATE_MAX_NEW_TOKENS];
	double		lps[N_ROWS][PT_GENERATE_MAX_NEW_TOKENS];
	PtGenerateResult res[N_ROWS];
} Fixture;

static const char *texts[N_ROWS] = {
	"hello", "the quick brown fox jumps over the lazy dog", "a", "translate this sentence please",
	"one two three four five six seven eight nine ten eleven twelve", "why", "short input here"
};

static bool
fixture_open(Fixture *f, const char *model)
{
	static const char *labels[] = {"yes", "no"};
	const char *dir = unit_model_dir(model);
	PtRng		rng;

	memset(f, 0, sizeof(*f));
	if (dir == NULL || (f->m = pt_model_load(dir)) == NULL)
		return false;
	f->task = pt_task_new(f->m, labels, 2, 40);
	pt_rng_seed(&rng, 5);
	for (int k = 0; k < 3; k++)
		f->prompts[k] = pt_prompt_new(f->m, f->task, 2 + 3 * k, PT_INIT_RANDOM_UNIFORM, &rng);
	for (int i = 0; i < N_ROWS; i++)
	{
		const PtPrompt *p = i % 3 == 0 ? NULL : f->prompts[i % 3];
		int			n = pt_encode_input(f->m, 40, texts[i], strlen(texts[i]), f->ids[i]);

		f->rows[i] = (PtGenerateRow) {p ? p->values : NULL, p ? p->length : 0, f->ids[i], n};
	}
	return true;
}

static void
fixture_reset_results(Fixture *f)
{
	for (int i = 0; i < N_ROWS; i++)
		f->res[i] = (PtGenerateResult) {.ids = f->out[i], .token_logprobs = f->lps[i]};
}

static void
fixture_close(Fixture *f)
{
	for (int k = 0; k < 3; k++)
		pt_prompt_free(f->prompts[k]);
	pt_task_free(f->task);
	pt_model_free(f->m);
}

/*
 * Teacher-forces row i's generated sequence (EOS appended when it ended so)
 * through the full decoder (pass.c) and checks every step: the greedy choice
 * is the argmax (greedy only) and each token's log-probability is the cached
 * decoder's.
 */
static void
check_against_teacher_forcing(const PtModel *m, PtWorkspace *ws, const PtGenerateRow *row,
							  const PtGenerateResult *res, bool greedy, const char *what)
{
	int			V = m->cfg.vocab_size,
				n = res->n_ids + (res->eos ? 1 : 0);
	int32_t		target[PT_GENERATE_MAX_NEW_TOKENS];
	const float *logits[1];
	PtExample	ex;
	double		sum = 0.0;

	memcpy(target, res->ids, sizeof(int32_t) * res->n_ids);
	if (res->eos)
		target[res->n_ids] = m->cfg.eos_token_id;
	ex = (PtExample) {row->prompt, row->prompt_len, row->ids, row->n_ids, target, n, 1.0f};
	REQUIRE(!isnan(pt_objective(m, ws, &ex, 1, NULL, NULL, logits)));
	for (int t = 0; t < n; t++)
	{
		const float *x = logits[0] + (size_t) t * V;
		int			best = 0;
		double		mx = x[0],
					s = 0.0,
					lp;

		for (int v = 1; v < V; v++)
			if (x[v] > x[best])
				best = v;
		mx = x[best];
		for (int v = 0; v < V; v++)
			s += exp((double) x[v] - mx);
		lp = (double) x[target[t]] - mx - log(s);
		sum += lp;
		if (greedy)
			CHECKF(best == target[t], "%s: step %d: argmax %d, generated %d", what, t, best, target[t]);
		CHECKF(fabs(lp - res->token_logprobs[t]) < 1e-5, "%s: step %d: log-prob %.8f, cached %.8f",
			   what, t, lp, res->token_logprobs[t]);
	}
	if (greedy || !res->eos)
		CHECKF(fabs(sum - res->score) < 1e-4, "%s: score %.8f, sum of log-probs %.8f", what,
			   res->score, sum);
	else
		CHECKF(fabs(sum / pow((5.0 + n) / 6.0, PT_GENERATE_DEFAULT_ALPHA) - res->score) < 1e-4,
			   "%s: score %.8f, penalised sum %.8f", what, res->score,
			   sum / pow((5.0 + n) / 6.0, PT_GENERATE_DEFAULT_ALPHA));
}

/* The cached decoder equals the uncached teacher-forced decoder at every step. */
void		test_generate_cached_matches_teacher_forced(void);
void
test_generate_cached_matches_teacher_forced(void)
{
	const char *models[] = {"tiny-relu", "tiny-gated"};

	for (int mi = 0; mi < 2; mi++)
	{
		Fixture		f;
		PtWorkspace ws = {0};
		PtGenerateOptions o;

		REQUIRE(fixture_open(&f, models[mi]));
		pt_generate_options_default(&o);
		o.max_new_tokens = MAX_NEW;
		for (int beams = 1; beams <= 3; beams += 2)
		{
			char		what[128];

			o.num_beams = beams;
			fixture_reset_results(&f);
			REQUIREF(pt_generate(f.m, &ws, f.rows, N_ROWS, &o, f.res) == 0, "%s", pt_error_message());
			for (int i = 0; i < N_ROWS; i++)
			{
				snprintf(what, sizeof(what), "%s beams %d row %d", models[mi], beams, i);
				CHECK(f.res[i].n_ids + (f.res[i].eos ? 1 : 0) <= MAX_NEW);
				check_against_teacher_forcing(f.m, &ws, &f.rows[i], &f.res[i], beams == 1, what);
			}
		}
		pt_workspace_free(&ws);
		fixture_close(&f);
	}
}

/* Rows of mixed lengths and prompts in one batch give what each gives alone. */
void		test_generate_batch_matches_single_rows(void);
void
test_generate_batch_matches_single_rows(void)
{
	Fixture		f;
	PtWorkspace ws = {0};
	PtGenerateOptions o;

	REQUIRE(fixture_open(&f, "tiny-gated"));
	pt_generate_options_default(&o);
	o.max_new_tokens = MAX_NEW;
	for (int beams = 1; beams <= 4; beams += 3)
	{
		PtGenerateResult alone;
		int32_t		alone_ids[MAX_NEW];

		o.num_beams = beams;
		fixture_reset_results(&f);
		REQUIREF(pt_generate(f.m, &ws, f.rows, N_ROWS, &o, f.res) == 0, "%s", pt_error_message());
		for (int i = 0; i < N_ROWS; i++)
		{
			alone = (PtGenerateResult) {.ids = alone_ids};
			REQUIREF(pt_generate(f.m, &ws, &f.rows[i], 1, &o, &alone) == 0, "%s", pt_error_message());
			CHECKF(alone.n_ids == f.res[i].n_ids && alone.eos == f.res[i].eos &&
				   memcmp(alone_ids, f.out[i], sizeof(int32_t) * alone.n_ids) == 0,
				   "beams %d row %d: batched and single-row tokens differ", beams, i);
			CHECKF(fabs(alone.score - f.res[i].score) < 1e-6 * fmax(1.0, fabs(alone.score)), "beams %d row %d: score %.8f alone, %.8f batched",
				   beams, i, alone.score, f.res[i].score);
		}
	}

	pt_workspace_free(&ws);
	fixture_close(&f);
}

/*
 * A step of enough rows runs its layers split by rows between threads
 * (generate.c's decoder_step); the same rows on one thread (never split)
 * give the same tokens and scores, greedy and with beams, fp32 and bf16.
 * The caller's thread count is what it was.
 */
void		test_generate_split_matches_one_thread(void);
void
test_generate_split_matches_one_thread(void)
{
	enum
	{
		N = 3 * N_ROWS
	};
	Fixture		f;
	PtWorkspace ws = {0};
	PtGenerateOptions o;
	PtGenerateRow rows[N];
	PtGenerateResult one[N],
				split[N];
	int32_t    *ids = calloc((size_t) 2 * N * MAX_NEW, sizeof(int32_t));
	int			threads = omp_get_max_threads();

	REQUIRE(ids != NULL);
	REQUIRE(fixture_open(&f, "tiny-gated"));
	for (int i = 0; i < N; i++)
		rows[i] = f.rows[i % N_ROWS];
	pt_generate_options_default(&o);
	o.max_new_tokens = MAX_NEW;
	for (int math = 0; math < 2; math++)
	{
		if (math == 1 && pt_model_set_math(f.m, PT_MATH_BF16) != 0)
			break;				/* no bf16 here: fp32 was checked */
		for (int beams = 1; beams <= 4; beams += 3)
		{
			o.num_beams = beams;
			for (int i = 0; i < N; i++)
			{
				one[i] = (PtGenerateResult) {.ids = ids + (size_t) i * MAX_NEW};
				split[i] = (PtGenerateResult) {.ids = ids + (size_t) (N + i) * MAX_NEW};
			}
			omp_set_num_threads(1);
			REQUIREF(pt_generate(f.m, &ws, rows, N, &o, one) == 0, "%s", pt_error_message());
			omp_set_num_threads(2);
			REQUIREF(pt_generate(f.m, &ws, rows, N, &o, split) == 0, "%s", pt_error_message());
			CHECKF(omp_get_max_threads() == 2, "pt_generate left %d threads", omp_get_max_threads());
			for (int i = 0; i < N; i++)
			{
				CHECKF(one[i].n_ids == split[i].n_ids && one[i].eos == split[i].eos &&
					   memcmp(one[i].ids, split[i].ids, sizeof(int32_t) * one[i].n_ids) == 0,
					   "math %d beams %d row %d: split and one-thread tokens differ", math, beams, i);
				CHECKF(fabs(one[i].score - split[i].score) < 1e-5, "math %d beams %d row %d: score %.8f split, %.8f on one thread",
					   math, beams, i, split[i].score, one[i].score);
			}
		}
	}
	omp_set_num_threads(threads);
	free(ids);
	pt_workspace_free(&ws);
	fixture_close(&f);
}

/* Many rows: several chunks (over 16384 encoder tokens each) give what one chunk gives. */
void		test_generate_many_rows_in_chunks(void);
void
test_generate_many_rows_in_chunks(void)
{
	Fixture		f;
	PtWorkspace ws = {0};
	PtGenerateOptions o;

	REQUIRE(fixture_open(&f, "tiny-gated"));
	pt_generate_options_default(&o);
	{
		int			n = 3000;
		long		tokens = 0;
		PtGenerateRow *rows = calloc(n, sizeof(PtGenerateRow));
		PtGenerateResult *res = calloc(n, sizeof(PtGenerateResult));
		int32_t    *out = calloc((size_t) n * 3, sizeof(int32_t));

		o.num_beams = 1;
		o.max_new_tokens = 3;
		for (int i = 0; i < n; i++)
		{
			rows[i] = f.rows[i % N_ROWS];
			res[i].ids = out + (size_t) i * 3;
			tokens += rows[i].prompt_len + rows[i].n_ids;
		}
		CHECKF(tokens > 2 * 16384, "only %ld encoder tokens: one chunk", tokens);
		fixture_reset_results(&f);
		REQUIRE(pt_generate(f.m, &ws, f.rows, N_ROWS, &o, f.res) == 0);
		REQUIREF(pt_generate(f.m, &ws, rows, n, &o, res) == 0, "%s", pt_error_message());
		for (int i = 0; i < n; i++)
			CHECKF(res[i].n_ids == f.res[i % N_ROWS].n_ids &&
				   memcmp(res[i].ids, f.out[i % N_ROWS], sizeof(int32_t) * res[i].n_ids) == 0,
				   "row %d of %d differs from its single-chunk twin", i, n);
		free(rows);
		free(res);
		free(out);
	}
	pt_workspace_free(&ws);
	fixture_close(&f);
}

/*
 * Stopping: with EOS set to a token that greedy decoding produces at step 3
 * of row 1, that row stops there (EOS not in its ids); rows that never produce
 * it run to max_new_tokens; ignore_eos always generates max_new_tokens.
 */
void		test_generate_stops_at_eos_and_max_tokens(void);
void
test_generate_stops_at_eos_and_max_tokens(void)
{
	Fixture		f;
	PtWorkspace ws = {0};
	PtGenerateOptions o;
	int32_t		first[N_ROWS][MAX_NEW];
	int			first_n[N_ROWS];
	bool		first_eos[N_ROWS];
	int32_t		eos;
	int			stopped = 0;

	REQUIRE(fixture_open(&f, "tiny-relu"));
	pt_generate_options_default(&o);
	o.max_new_tokens = MAX_NEW;
	fixture_reset_results(&f);
	REQUIRE(pt_generate(f.m, &ws, f.rows, N_ROWS, &o, f.res) == 0);
	for (int i = 0; i < N_ROWS; i++)
	{
		CHECKF(f.res[i].eos || f.res[i].n_ids == MAX_NEW, "row %d: %d tokens without EOS", i, f.res[i].n_ids);
		memcpy(first[i], f.out[i], sizeof(int32_t) * f.res[i].n_ids);
		first_n[i] = f.res[i].n_ids;
		first_eos[i] = f.res[i].eos;
	}
	REQUIRE(first_n[1] > 3);
	eos = first[1][3];
	f.m->cfg.eos_token_id = eos;

	for (int pass = 0; pass < 2; pass++)
	{
		o.ignore_eos = pass == 1;
		fixture_reset_results(&f);
		REQUIREF(pt_generate(f.m, &ws, f.rows, N_ROWS, &o, f.res) == 0, "%s", pt_error_message());
		for (int i = 0; i < N_ROWS; i++)
		{
			int			at = -1;

			/* greedy: the new run repeats the old one until the first EOS */
			for (int t = 0; t < first_n[i] && at < 0; t++)
				if (first[i][t] == eos)
					at = t;
			if (o.ignore_eos)
			{
				CHECKF(f.res[i].n_ids == MAX_NEW && !f.res[i].eos, "ignore_eos row %d: %d tokens", i,
					   f.res[i].n_ids);
				CHECK(memcmp(f.out[i], first[i], sizeof(int32_t) * first_n[i]) == 0);
			}
			else if (at >= 0)
			{
				CHECKF(f.res[i].eos && f.res[i].n_ids == at, "row %d: stopped after %d tokens (eos %d), "
					   "expected %d", i, f.res[i].n_ids, f.res[i].eos, at);
				stopped++;
			}
			else if (!first_eos[i])
				CHECKF(!f.res[i].eos && f.res[i].n_ids == first_n[i], "row %d: %d tokens", i, f.res[i].n_ids);
			CHECK(memcmp(f.out[i], first[i], sizeof(int32_t) *
						 (f.res[i].n_ids < first_n[i] ? f.res[i].n_ids : first_n[i])) == 0);
		}
	}
	CHECK(stopped >= 1);

	/* max_new_tokens 1: one token each */
	o.ignore_eos = false;
	o.max_new_tokens = 1;
	fixture_reset_results(&f);
	REQUIRE(pt_generate(f.m, &ws, f.rows, N_ROWS, &o, f.res) == 0);
	for (int i = 0; i < N_ROWS; i++)
		CHECK(f.res[i].n_ids + (f.res[i].eos ? 1 : 0) == 1);

	/* beam search ends with EOS where it finds a finished beam */
	o.max_new_tokens = MAX_NEW;
	o.num_beams = 4;
	fixture_reset_results(&f);
	REQUIRE(pt_generate(f.m, &ws, f.rows, N_ROWS, &o, f.res) == 0);
	for (int i = 0; i < N_ROWS; i++)
		check_against_teacher_forcing(f.m, &ws, &f.rows[i], &f.res[i], false, "beam, early EOS");
	pt_workspace_free(&ws);
	fixture_close(&f);
}

/*
 * bfloat16 key / value caches (what bf16 and int8 models use) against float32
 * ones, on an fp32 model so that the caches are the only difference.  Rounding
 * K and V to bf16 moves a score by about 2^-9 of its size, so each token's
 * log-probability must stay within BF16_CACHE_LP_TOL of the fp32 caches' while
 * the tokens agree; a sequence may take another token only at a near tie (the
 * two runs' chosen tokens within BF16_CACHE_TIE_TOL of log-probability: these
 * random tiny models have many), after which the sequences are unrelated, and
 * most rows must agree to the end.  Measured: log-probabilities within 6e-3
 * while the tokens agree (1.2e-2 on the bf16 model, whose products round as
 * well); one greedy row of the 21 diverged, at a tie of 0.026.
 */
#define BF16_CACHE_LP_TOL 0.02
#define BF16_CACHE_TIE_TOL 0.05

static void
compare_cache_precisions(Fixture *f, PtWorkspace *ws, PtGenerateOptions *o, const char *what)
{
	int32_t		ref_ids[N_ROWS][MAX_NEW];
	double		ref_lps[N_ROWS][MAX_NEW];
	PtGenerateResult ref[N_ROWS];
	int			diverged = 0;

	for (int i = 0; i < N_ROWS; i++)
		ref[i] = (PtGenerateResult) {.ids = ref_ids[i], .token_logprobs = ref_lps[i]};
	o->cache = PT_GEN_CACHE_FP32;
	REQUIREF(pt_generate(f->m, ws, f->rows, N_ROWS, o, ref) == 0, "%s", pt_error_message());
	o->cache = f->m->math == PT_MATH_FP32 ? PT_GEN_CACHE_BF16 : PT_GEN_CACHE_AUTO;
	fixture_reset_results(f);
	REQUIREF(pt_generate(f->m, ws, f->rows, N_ROWS, o, f->res) == 0, "%s", pt_error_message());
	for (int i = 0; i < N_ROWS; i++)
	{
		int			n_ref = ref[i].n_ids + (ref[i].eos ? 1 : 0),
					n_new = f->res[i].n_ids + (f->res[i].eos ? 1 : 0);

		for (int t = 0; t < n_ref && t < n_new; t++)
		{
			/* (the EOS, when there is one, is not in ids: compare the token at t if both have one) */
			bool		same = (t < ref[i].n_ids) == (t < f->res[i].n_ids) &&
				(t >= ref[i].n_ids || ref_ids[i][t] == f->out[i][t]);

			if (!same && o->num_beams == 1)
			{
				CHECKF(fabs(ref_lps[i][t] - f->lps[i][t]) < BF16_CACHE_TIE_TOL,
					   "%s row %d step %d: another token, not at a tie (log-prob %.6f / %.6f)",
					   what, i, t, ref_lps[i][t], f->lps[i][t]);
				diverged++;
				break;
			}
			if (!same)
			{
				/* beams: another search path; the scores must still be close */
				CHECKF(fabs(ref[i].score - f->res[i].score) < BF16_CACHE_TIE_TOL,
					   "%s beams row %d: score %.6f / %.6f", what, i, ref[i].score, f->res[i].score);
				diverged++;
				break;
			}
			CHECKF(fabs(ref_lps[i][t] - f->lps[i][t]) < BF16_CACHE_LP_TOL,
				   "%s beams %d row %d step %d: log-prob %.6f with fp32 caches, %.6f with bf16",
				   what, o->num_beams, i, t, ref_lps[i][t], f->lps[i][t]);
		}
	}
	CHECKF(diverged <= N_ROWS / 3, "%s beams %d: %d of %d rows took other tokens", what,
		   o->num_beams, diverged, N_ROWS);
	o->cache = PT_GEN_CACHE_AUTO;
}

void		test_generate_bf16_cache_matches_fp32(void);
void
test_generate_bf16_cache_matches_fp32(void)
{
	const char *models[] = {"tiny-relu", "tiny-gated"};

	for (int mi = 0; mi < 2; mi++)
	{
		Fixture		f;
		PtWorkspace ws = {0};
		PtGenerateOptions o;

		REQUIRE(fixture_open(&f, models[mi]));
		pt_generate_options_default(&o);
		o.max_new_tokens = MAX_NEW;
		for (int beams = 1; beams <= 3; beams += 2)
		{
			o.num_beams = beams;
			compare_cache_precisions(&f, &ws, &o, models[mi]);
		}
		/* a bf16 model's default caches are bf16; its products differ from fp32's too */
		if (pt_model_set_math(f.m, PT_MATH_BF16) == 0)
		{
			o.num_beams = 1;
			compare_cache_precisions(&f, &ws, &o, "bf16 model");
		}
		o.cache = (PtGenerateCache) 7;
		CHECK(pt_generate_options_check(&o) == -1);
		pt_workspace_free(&ws);
		fixture_close(&f);
	}
}

static int	cancel_after;

static int
cancel_countdown(void *arg)
{
	(void) arg;
	return --cancel_after < 0;
}

static int	hook_calls;

static int
count_calls(void *arg)
{
	(void) arg;
	hook_calls++;
	return 0;
}

/*
 * The cancel hook runs before each encoder layer, each layer's cross-attention
 * keys and values, and each decoding step: a cancel lands within one of them
 * (the encoder of a large chunk takes a second or more, one layer a fraction).
 */
void		test_generate_cancel_points(void);
void
test_generate_cancel_points(void)
{
	Fixture		f;
	PtWorkspace ws = {0};
	PtGenerateOptions o;
	int			steps = 3;

	REQUIRE(fixture_open(&f, "tiny-gated"));
	pt_generate_options_default(&o);
	o.max_new_tokens = steps;
	o.ignore_eos = true;
	o.cancel = count_calls;
	hook_calls = 0;
	fixture_reset_results(&f);
	REQUIRE(pt_generate(f.m, &ws, f.rows, 1, &o, f.res) == 0);
	REQUIRE(f.res[0].n_ids == steps);
	/* once per chunk, then encoder layers, decoder layers' keys/values, steps */
	CHECKF(hook_calls == 1 + f.m->cfg.num_layers + f.m->cfg.num_decoder_layers + steps,
		   "the hook ran %d times; expected %d", hook_calls,
		   1 + f.m->cfg.num_layers + f.m->cfg.num_decoder_layers + steps);

	/* stopping inside the encoder: cancelled, and the workspace still works */
	o.cancel = cancel_countdown;
	cancel_after = 2;
	CHECK(pt_generate(f.m, &ws, f.rows, N_ROWS, &o, f.res) == -1);
	CHECK(pt_error_kind() == PT_ERR_CANCELLED);
	o.cancel = NULL;
	fixture_reset_results(&f);
	CHECK(pt_generate(f.m, &ws, f.rows, N_ROWS, &o, f.res) == 0);
	pt_workspace_free(&ws);
	fixture_close(&f);
}

/* Bad options and rows: clear errors that name what is wrong; cancellation. */
void		test_generate_errors(void);
void
test_generate_errors(void)
{
	Fixture		f;
	PtWorkspace ws = {0};
	PtGenerateOptions o;
	char	   *text;
	int32_t		hello[16],
				bad_ids[2] = {5, 1 << 20};
	int			n_hello;
	struct
	{
		int			max_new,
					beams;
		double		alpha;
		bool		ignore_eos;
		const char *needle;
	}			bad[] = {
		{0, 1, 0.6, false, "max_new_tokens"},
		{PT_GENERATE_MAX_NEW_TOKENS + 1, 1, 0.6, false, "max_new_tokens"},
		{8, 0, 0.6, false, "num_beams"},
		{8, PT_GENERATE_MAX_BEAMS + 1, 0.6, false, "num_beams"},
		{8, 2, -0.1, false, "length_penalty"},
		{8, 2, NAN, false, "length_penalty"},
		{8, 2, PT_GENERATE_MAX_ALPHA * 2, false, "length_penalty"},
		{8, 2, 0.6, true, "ignore_eos"},
	};

	REQUIRE(fixture_open(&f, "tiny-relu"));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		pt_generate_options_default(&o);
		o.max_new_tokens = bad[i].max_new;
		o.num_beams = bad[i].beams;
		o.length_penalty = bad[i].alpha;
		o.ignore_eos = bad[i].ignore_eos;
		fixture_reset_results(&f);
		CHECK(pt_generate_options_check(&o) == -1);
		CHECK(pt_generate(f.m, &ws, f.rows, 1, &o, f.res) == -1);
		CHECK(pt_error_kind() == PT_ERR_ARGUMENT);
		CHECKF(strstr(pt_error_message(), bad[i].needle) != NULL, "case %zu: \"%s\" lacks \"%s\"", i,
			   pt_error_message(), bad[i].needle);
	}

	/* bad rows */
	pt_generate_options_default(&o);
	fixture_reset_results(&f);
	{
		PtGenerateRow rows[4] = {
			{NULL, 0, f.ids[0], 0},			/* no tokens */
			{NULL, 3, f.ids[0], 1},			/* prompt rows without values */
			{NULL, 0, bad_ids, 2},			/* id outside the vocabulary */
			{NULL, 0, f.ids[0], PT_MAX_SEQ_LEN + 1},	/* too long */
		};
		const char *needles[4] = {"no input tokens", "bad prompt", "outside the vocabulary", "at most"};

		for (int i = 0; i < 4; i++)
		{
			CHECK(pt_generate(f.m, &ws, &rows[i], 1, &o, f.res) == -1);
			CHECK(pt_error_kind() == PT_ERR_ARGUMENT);
			CHECKF(strstr(pt_error_message(), needles[i]) != NULL, "row case %d: \"%s\"", i, pt_error_message());
		}
		f.res[0].ids = NULL;
		CHECK(pt_generate(f.m, &ws, f.rows, 1, &o, f.res) == -1);
		CHECK(strstr(pt_error_message(), "no room") != NULL);
	}

	/* zero rows: nothing to do */
	CHECK(pt_generate(f.m, &ws, f.rows, 0, &o, f.res) == 0);

	/* cancelled mid-decode, then the same workspace still works */
	o.cancel = cancel_countdown;
	cancel_after = 3;
	fixture_reset_results(&f);
	CHECK(pt_generate(f.m, &ws, f.rows, N_ROWS, &o, f.res) == -1);
	CHECK(pt_error_kind() == PT_ERR_CANCELLED);
	o.cancel = NULL;
	CHECK(pt_generate(f.m, &ws, f.rows, N_ROWS, &o, f.res) == 0);

	/* detokenizing */
	n_hello = pt_encode_input(f.m, 16, "hello world", 11, hello);
	REQUIRE(n_hello >= 2);
	text = pt_generate_text(f.m, hello, n_hello);	/* the trailing EOS gives no text */
	REQUIRE(text != NULL);
	CHECKF(strcmp(text, "hello world") == 0, "decoded \"%s\"", text);
	free(text);
	text = pt_generate_text(f.m, hello, 0);
	REQUIRE(text != NULL);
	CHECK(text[0] == '\0');
	free(text);
	bad_ids[0] = f.m->cfg.vocab_size + 5;	/* beyond the pieces: no text, no error */
	text = pt_generate_text(f.m, bad_ids, 1);
	CHECK(text != NULL && text[0] == '\0');
	free(text);

	pt_workspace_free(&ws);
	fixture_close(&f);
}
