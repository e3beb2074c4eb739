/*
 * cmd_bench.c - `ptune bench MODEL_DIR [--quick]`: the engine's speed on the
 * standard workload, as one JSON object:
 *
 *   sgemm_gflops        OpenBLAS sgemm at the feed-forward shape of a batch
 *                       of 32 rows (M = 32 x 148 tokens, N = d_ff, K = d_model)
 *   encoder_gflops      the encoder's achieved GFLOP/s on 32 rows
 *   encoder_split_ms    its time, and the part its linear layers' products take
 *   kernels             which library runs each precision's products
 *   classify_rows_per_s at batch 1, 8 and 32: 128 input tokens, prompt of 20
 *                       rows, 2 single-token labels
 *   train_step_ms       batch 8, 128 tokens, prompt 20, forward + backward
 *
 * also: the load time, sgemm and oneDNN's matmul (f32, bf16, int8) at each
 * weight shape of the model, the process's peak memory (peak_rss_mb) and the
 * activations' part of it (activations_mb: the largest classification's and
 * the training step's arenas as their last pass used them).  Options change the workload for scaling studies:
 * --input-tokens N, --prompt-length N, --batches 1,8,32; --classify-only
 * measures only classification (for profiling), --encoder-only only the
 * ceilings and the encoder (its split, for A/B runs); --scoring label_tokens|rank
 * and --labels A,B,... (at most 64) change how classification scores.
 *
 * Times are medians of repeated runs after a warm-up.  --quick does few
 * repetitions (for CI smoke runs; its figures are not for reporting).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "classifier.h"
#include "cli.h"
#include "runtime.h"
#include "cli_data.h"
#include "error.h"
#include "linear.h"
#include "objective.h"
#include "rng.h"
#include "task.h"
#include "transformer.h"

#define MAX_BATCH 64
#define MAX_TOKENS 2048
#define MAX_BENCH_LABELS 64

/* the workload: changed by options for scaling studies */
static int	INPUT_TOKENS = 128;
static int	PROMPT_LEN = 20;
static PtScoring SCORING = PT_SCORE_LABEL_TOKENS;
static const char *LABELS[MAX_BENCH_LABELS];	/* --labels; none: two_label_task() */
static int	N_LABELS = 0;



/* FLOPs of the encoder on sequences of the given lengths (multiply-adds count 2). */
static double
encoder_flops(const PtConfig *c, const int *lens, int n)
{
	double		I = pt_config_inner(c),
				d = c->d_model,
				F = c->d_ff;
	double		tokens = 0,
				squares = 0;

	for (int s = 0; s < n; s++)
	{
		tokens += lens[s];
		squares += (double) lens[s] * lens[s];
	}
	/* per layer: Q, K, V, O projections, feed-forward, attention scores and context */
	return c->num_layers * (tokens * (2 * 4 * d * I + 2 * (c->gated ? 3 : 2) * d * F) + 2 * 2 * squares * I);
}

/* Two labels that are one piece each in this vocabulary (so one decoder step per row). */
static PtTask *
two_label_task(const PtModel *m)
{
	static const char *candidates[] = {"yes", "no", "spam", "ham", "true", "false", "good", "bad",
	"the", "and", "of", "to", "in"};
	const char *found[2];
	int			n = 0;
	int32_t		ids[8];

	for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]) && n < 2; i++)
		if (pt_tokenizer_encode(m->tokenizer, candidates[i], strlen(candidates[i]), ids, 8) == 1)
			found[n++] = candidates[i];
	if (n < 2)
	{
		found[0] = "yes";
		found[1] = "no";
	}
	return pt_task_new(m, found, 2, INPUT_TOKENS < 2 ? 2 : INPUT_TOKENS);
}

typedef struct Workload
{
	int32_t		ids[MAX_BATCH][MAX_TOKENS];
	float	   *prompt;
	PtTask	   *task;
} Workload;

static void
make_workload(const PtModel *m, Workload *w)
{
	PtRng		rng;
	int			vocab = pt_tokenizer_vocab_size(m->tokenizer);

	pt_rng_seed(&rng, 1);
	for (int r = 0; r < MAX_BATCH; r++)
	{
		for (int t = 0; t < INPUT_TOKENS - 1; t++)
			w->ids[r][t] = 3 + (int) pt_rng_below(&rng, vocab - 3);
		w->ids[r][INPUT_TOKENS - 1] = m->cfg.eos_token_id;
	}
	w->prompt = malloc(sizeof(float) * PROMPT_LEN * m->cfg.d_model);
	for (int k = 0; k < PROMPT_LEN * m->cfg.d_model; k++)
		w->prompt[k] = (float) (pt_rng_uniform(&rng) - 0.5);
	w->task = N_LABELS ? pt_task_new(m, LABELS, N_LABELS, INPUT_TOKENS < 2 ? 2 : INPUT_TOKENS)
		: two_label_task(m);
}

/* Median seconds of fn over reps runs, after one warm-up run. */
#define TIME_MEDIAN(reps, out, body) \
	do { \
		double times_[64]; \
		body; \
		for (int r_ = 0; r_ < (reps); r_++) { double t0_ = pt_seconds(); body; times_[r_] = pt_seconds() - t0_; } \
		(out) = cli_median(times_, (reps)); \
	} while (0)

/* sgemm C[M, N] = A[M, K] B[N, K]^T, as the linear layers call it */
static double
sgemm_gflops(int M, int N, int K, int reps)
{
	float	   *a = calloc((size_t) M * K, sizeof(float)),
			   *b = calloc((size_t) N * K, sizeof(float)),
			   *c = calloc((size_t) M * N, sizeof(float));
	double		t;

	for (size_t i = 0; i < (size_t) M * K; i++)
		a[i] = (float) (i % 7) * 0.01f;
	for (size_t i = 0; i < (size_t) N * K; i++)
		b[i] = (float) (i % 5) * 0.01f;
	TIME_MEDIAN(reps, t, pt_gemm(false, true, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N));
	free(a);
	free(b);
	free(c);
	return 2.0 * M * N * K / t / 1e9;
}

static double encoder_ms;		/* encoder_gflops's time for 32 rows */

static double
encoder_gflops(const PtModel *m, Workload *w, PtWorkspace *ws, int reps)
{
	PtEncoderSeq seqs[MAX_BATCH];
	int			lens[MAX_BATCH];
	PtPass		pass;
	double		t;

	for (int r = 0; r < 32; r++)
	{
		seqs[r] = (PtEncoderSeq) {w->prompt, PROMPT_LEN, w->ids[r], INPUT_TOKENS};
		lens[r] = PROMPT_LEN + INPUT_TOKENS;
	}
	if (pt_pass_begin(&pass, m, &ws->pass, seqs, 32, NULL, 0, false) != 0)
		return NAN;
	TIME_MEDIAN(reps, t, pt_encoder_forward(&pass));
	encoder_ms = t * 1e3;
	return encoder_flops(&m->cfg, lens, 32) / t / 1e9;
}

/*
 * The encoder's matrix products alone, in the model's precision, for 32
 * rows: one layer's linear layers on M rows, times the layer count (ms).
 * The encoder's time less this is its other work: attention's per-head
 * products, softmax, norms, activations, the bucket bias and packing.
 */
static double
encoder_products_ms(const PtModel *m, int M, int reps)
{
	const PtEncoderLayer *e = &m->enc[0];

	/*
	 * As the encoder runs them: q, k, v on one input (converted once), o,
	 * wi0 (and wi1) on one input, wo.  Every linear layer counts, whether its
	 * weights are kept in fp32 (w) or only in bf16 (a bf16 checkpoint's).
	 */
	const PtLinear *qkv[3] = {&e->attn.q, &e->attn.k, &e->attn.v};
	const PtLinear *wi[2] = {&e->ff.wi0, &e->ff.wi1};
	int			n_wi = m->cfg.gated ? 2 : 1;
	size_t		widest = (size_t) (m->cfg.d_ff > m->cfg.d_model ? m->cfg.d_ff : m->cfg.d_model);
	float	   *x = calloc((size_t) M * widest, sizeof(float)),
			   *y = calloc((size_t) 3 * M * widest, sizeof(float));
	float	   *ys[3] = {y, y + (size_t) M * widest, y + (size_t) 2 * M * widest};
	double		t = NAN;

	if (x && y && m->cfg.num_layers > 0)
	{
		for (size_t i = 0; i < (size_t) M * widest; i++)
			x[i] = (float) ((int) (i % 2001) - 1000) * 1e-3f;
		TIME_MEDIAN(reps, t, {
			pt_linear_forward_multi(qkv, 3, x, M, ys, m->math);
			pt_linear_forward(&e->attn.o, x, M, y, m->math);
			pt_linear_forward_multi(wi, n_wi, x, M, ys, m->math);
			pt_linear_forward(&e->ff.wo, x, M, y, m->math);
		});
	}
	free(x);
	free(y);
	return t * m->cfg.num_layers * 1e3;
}

/* the activations' bytes of the largest pass run so far: its arenas as used */
static size_t classify_activations,
			train_activations;

static void
note_activations(const PtWorkspace *ws, size_t *largest)
{
	size_t		used = ws->pass.used + ws->head.used;

	*largest = used > *largest ? used : *largest;
}

static double
classify_rows_per_s(const PtModel *m, Workload *w, PtWorkspace *ws, int batch, int reps)
{
	const float *prompts[1] = {w->prompt};
	int			lens[1] = {PROMPT_LEN};
	PtClassifyRow rows[MAX_BATCH];
	PtClassifyResult results[MAX_BATCH];
	static float probs[MAX_BATCH][MAX_BENCH_LABELS];
	double		t;

	for (int r = 0; r < batch; r++)
	{
		rows[r] = (PtClassifyRow) {w->task, SCORING, 1, prompts, lens, w->ids[r], INPUT_TOKENS};
		results[r].probs = probs[r];
	}
	TIME_MEDIAN(reps, t, pt_classify(m, ws, rows, batch, results));
	note_activations(ws, &classify_activations);
	return batch / t;
}

static double
train_step_ms(const PtModel *m, Workload *w, PtWorkspace *ws, int reps)
{
	PtExample	ex[8];
	float	   *grad = malloc(sizeof(float) * PROMPT_LEN * m->cfg.d_model);
	float	   *grads[8];
	double		t;

	for (int r = 0; r < 8; r++)
	{
		const PtLabel *l = &w->task->labels[r % 2];

		ex[r] = (PtExample) {w->prompt, PROMPT_LEN, w->ids[r], INPUT_TOKENS, l->target, l->n_target, 1.0f / 16};
		grads[r] = grad;
	}
	TIME_MEDIAN(reps, t, pt_objective(m, ws, ex, 8, NULL, grads, NULL));
	note_activations(ws, &train_activations);
	free(grad);
	return t * 1e3;
}

/* a number, or null for one that was not measured (NAN) */
static json_t *
number(double x)
{
	return isnan(x) ? json_null() : json_real(x);
}

/* kB value of a line of /proc/self/status, e.g. VmHWM (peak) or VmRSS */
static long
status_kb(const char *field)
{
	FILE	   *f = fopen("/proc/self/status", "r");
	char		line[256];
	long		kb = -1;

	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, field, strlen(field)) == 0)
			kb = atol(line + strlen(field) + 1);
	if (f)
		fclose(f);
	return kb;
}

int
cmd_bench(int argc, char **argv)
{
	bool		quick = false;
	bool		classify_only = false;
	bool		encoder_only = false;
	int			reps;
	int			batches[8] = {1, 8, 32};
	int			n_batches = 3;
	PtModel    *m;
	Workload   *w = calloc(1, sizeof(Workload));
	PtWorkspace ws = {0};
	json_t	   *out,
			   *rows,
			   *shapes;
	double		t0,
				load_seconds,
				sgemm,
				sgemm_ff_first = 0.0,
				encoder,
				products_ms,
				train_ms;
	const PtConfig *c;
	int			M;

	for (int i = 1; i < argc; i++)
	{
		long		v;

		if (strcmp(argv[i], "--quick") == 0)
			quick = true;
		else if (strcmp(argv[i], "--classify-only") == 0)
			classify_only = true;
		else if (strcmp(argv[i], "--encoder-only") == 0)
			encoder_only = true, n_batches = 0;
		else if (strcmp(argv[i], "--input-tokens") == 0 && i + 1 < argc &&
				 cli_parse_int(argv[i], argv[i + 1], 2, MAX_TOKENS, &v) == 0)
			INPUT_TOKENS = (int) v, i++;
		else if (strcmp(argv[i], "--prompt-length") == 0 && i + 1 < argc &&
				 cli_parse_int(argv[i], argv[i + 1], 0, PT_PROMPT_MAX_LENGTH, &v) == 0)
			PROMPT_LEN = (int) v, i++;
		else if (strcmp(argv[i], "--scoring") == 0 && i + 1 < argc && pt_scoring_parse(argv[i + 1], &SCORING) == 0)
			i++;
		else if (strcmp(argv[i], "--labels") == 0 && i + 1 < argc)
		{
			char	   *save = NULL;

			for (char *tok = strtok_r(argv[++i], ",", &save); tok && N_LABELS < MAX_BENCH_LABELS;
				 tok = strtok_r(NULL, ",", &save))
				LABELS[N_LABELS++] = tok;
		}
		else if (strcmp(argv[i], "--batches") == 0 && i + 1 < argc)
		{
			char	   *save = NULL;

			n_batches = 0;
			for (char *tok = strtok_r(argv[++i], ",", &save); tok && n_batches < 8; tok = strtok_r(NULL, ",", &save))
				if (cli_parse_int("--batches", tok, 1, MAX_BATCH, &v) == 0)
					batches[n_batches++] = (int) v;
		}
		else
		{
			fprintf(stderr, "usage: ptune bench MODEL_DIR [--quick] [--classify-only | --encoder-only] [--input-tokens N] "
					"[--prompt-length N] [--batches 1,8,32] [--scoring label_tokens|rank] [--labels A,B,...]\n");
			return 2;
		}
	}
	if (argc < 1 || argv[0][0] == '-' || w == NULL)
	{
		fprintf(stderr, "usage: ptune bench MODEL_DIR [--quick] [--classify-only | --encoder-only] [--input-tokens N] [--prompt-length N] [--batches 1,8,32] "
				"[--scoring label_tokens|rank] [--labels A,B,...]\n");
		return 2;
	}
	reps = quick ? 1 : 7;
	t0 = pt_seconds();
	if ((m = cli_load_model(argv[0])) == NULL)
		return 1;
	load_seconds = pt_seconds() - t0;
	c = &m->cfg;
	make_workload(m, w);
	if (w->task == NULL)
		return cli_engine_error("bench");

	/* the ceiling: sgemm at every weight shape, with the token count of 32 rows */
	M = 32 * (INPUT_TOKENS + PROMPT_LEN);
	shapes = json_array();
	if (!classify_only)
	{
		int			I = pt_config_inner(c);
		int			dims[4][2] = {{I, c->d_model}, {c->d_model, I}, {c->d_ff, c->d_model}, {c->d_model, c->d_ff}};
		const char *names[4] = {"q, k, v", "o", "wi", "wo"};
		/* how many products of each shape a layer runs (report.py weighs the ceiling by them) */
		int			per_layer[4] = {3, 1, c->gated ? 2 : 1, 1};

		for (int i = 0; i < 4; i++)
		{
			double		g = sgemm_gflops(M, dims[i][0], dims[i][1], quick ? 1 : 5);

			if (i == 2)
				sgemm_ff_first = g;
			/* and oneDNN's own matmul in each precision (0: not on this CPU) */
			json_array_append_new(shapes, json_pack("{s:s, s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:f}", "layer", names[i],
													"per_layer", per_layer[i],
													"m", M, "n", dims[i][0], "k", dims[i][1], "gflops", g,
													"onednn_f32", pt_dnnl_matmul_gflops(PT_MATH_FP32, M, dims[i][0], dims[i][1], quick ? 1 : 5),
													"onednn_bf16", pt_dnnl_matmul_gflops(PT_MATH_BF16, M, dims[i][0], dims[i][1], quick ? 1 : 5),
													"onednn_int8", pt_dnnl_matmul_gflops(PT_MATH_INT8, M, dims[i][0], dims[i][1], quick ? 1 : 5)));
		}
	}

	rows = json_object();
	for (int b = 0; b < n_batches; b++)
	{
		char		key[16];

		snprintf(key, sizeof(key), "%d", batches[b]);
		json_object_set_new(rows, key, json_real(classify_rows_per_s(m, w, &ws, batches[b],
																	 quick ? 1 : (batches[b] < 8 ? 15 : reps))));
	}
	/*
	 * The ceiling at the feed-forward shape, measured again beside the
	 * encoder: this machine's speed drifts by tens of percent within minutes,
	 * so the better of the two measurements is the ceiling (the conservative
	 * choice for the encoder's share of it).
	 */
	sgemm = classify_only ? NAN : fmax(sgemm_ff_first, sgemm_gflops(M, c->d_ff, c->d_model, quick ? 1 : 9));
	encoder = classify_only ? NAN : encoder_gflops(m, w, &ws, reps);
	products_ms = classify_only ? NAN : encoder_products_ms(m, M, reps);
	train_ms = classify_only || encoder_only ? NAN : train_step_ms(m, w, &ws, quick ? 1 : 5);
	out = json_pack("{s:s, s:i, s:s, s:s, s:o, s:i, s:i, s:f, s:f, s:o, s:o, s:o, s:{s:o, s:o}, s:o, s:o, s:f, s:{s:f, s:o}}",
					"model", c->model_name,
					"threads", pt_get_threads(),
					"blas_kernels", pt_blas_core(),
					"precision", pt_math_name(m->math),
					"kernels", pt_kernels_json(m),
					"input_tokens", INPUT_TOKENS,
					"prompt_length", PROMPT_LEN,
					"file_mb", m->file_bytes / 1048576.0,
					"load_seconds", load_seconds,
					"sgemm_gflops", number(sgemm),
					"sgemm_shapes", shapes,
					"encoder_gflops", number(encoder),
					"encoder_split_ms", "total", number(classify_only ? NAN : encoder_ms),
					"products", number(products_ms),
					"classify_rows_per_s", rows,
					"train_step_ms", number(train_ms),
					"peak_rss_mb", status_kb("VmHWM") / 1024.0,
					"activations_mb", "classify", classify_activations / 1048576.0,
					"train", number(classify_only ? NAN : train_activations / 1048576.0));
	json_dumpf(out, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(5));
	putchar('\n');
	json_decref(out);
	pt_task_free(w->task);
	free(w->prompt);
	free(w);
	pt_workspace_free(&ws);
	pt_model_free(m);
	return 0;
}
