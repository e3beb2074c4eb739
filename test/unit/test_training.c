/*
 * test_training.c - prompt tuning learns a small task on a random frozen
 * model; training is deterministic and cancellable; classification of mixed
 * tasks and of ensembles agrees with classifying each part alone.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "classifier.h"
#include "error.h"
#include "explain.h"
#include "head.h"
#include "helpers.h"
#include "trainer.h"
#include "unit.h"

#define N_ROWS 160

/*
 * A small task with a learnable signal: the label is whether the sentence
 * mentions an animal or a fruit; the other words are shared filler.  The
 * labels are "this" and "that", single tokens of the test tokenizer: with
 * labels of several pieces a 64-wide random model needs far more steps.
 */
typedef struct Toy
{
	char		text[N_ROWS][128];
	const char *texts[N_ROWS];
	const char *labels[N_ROWS];
	PtTextSet	set;
} Toy;

static void
make_toy(Toy *toy, uint64_t seed)
{
	static const char *animals[] = {"dog", "cat", "horse", "bird", "fish"};
	static const char *fruits[] = {"apple", "banana", "orange", "grape", "lemon"};
	static const char *filler[] = {"the", "a", "big", "small", "red", "old", "new", "very", "good",
	"happy", "people", "see", "like", "today", "here"};

	for (int i = 0; i < N_ROWS; i++)
	{
		bool		animal = test_rand(&seed) % 2;

		toy->text[i][0] = '\0';
		for (int w = 0; w < 6; w++)
		{
			/* every other word names an animal or a fruit */
			const char *word = w % 2 ? (animal ? animals : fruits)[test_rand(&seed) % 5]
				: filler[test_rand(&seed) % 15];

			strcat(toy->text[i], word);
			strcat(toy->text[i], " ");
		}
		toy->texts[i] = toy->text[i];
		toy->labels[i] = animal ? "this" : "that";
	}
	toy->set = (PtTextSet) {N_ROWS, toy->texts, NULL, toy->labels};
}

static void
toy_options(PtTrainOptions *o)
{
	/* settings that learn on a random model (see README: Adam, uniform init) */
	pt_train_options_default(o);
	o->prompt_length = 20;
	o->init = PT_INIT_RANDOM_UNIFORM;
	o->optimizer = PT_OPT_ADAM;
	o->learning_rate = 0.1;
	o->batch_size = 16;
	o->max_steps = 400;
	o->epochs = 0;
	o->eval_every = 100;
	o->validation_fraction = 0.25;
	o->max_input_tokens = 16;
}

typedef struct Curve
{
	int			n;
	double		loss[16],
				acc[16];
} Curve;

static int
record(const PtTrainProgress *p, void *arg)
{
	Curve	   *c = arg;

	if (p->evaluated && c->n < 16)
	{
		c->loss[c->n] = p->loss;
		c->acc[c->n] = p->val_accuracy;
		c->n++;
	}
	return 0;
}

void		test_training_learns(void);
void
test_training_learns(void)
{
	const char *dir = unit_model_dir("tiny-gated");
	PtModel    *m;
	PtTrainOptions opt;
	PtTrainer  *t;
	Toy			toy,
				held_out;
	Curve		curve = {0};
	const PtTrainResult *r;

	REQUIRE(dir != NULL);
	m = pt_model_load(dir);
	REQUIRE(m != NULL);
	make_toy(&toy, 1);
	make_toy(&held_out, 2);
	toy_options(&opt);
	t = pt_trainer_new(m, &opt, &toy.set, NULL);
	REQUIREF(t != NULL, "%s", pt_error_message());
	REQUIREF(pt_trainer_set_test(t, &held_out.set) == 0, "%s", pt_error_message());
	REQUIREF(pt_train_run(t, record, &curve) == 0, "%s", pt_error_message());
	r = pt_trainer_result(t);
	REQUIRE(r != NULL && curve.n >= 3);
	printf("    loss %.3f -> %.3f, validation accuracy %.3f -> %.3f (selection %.3f on %d rows, "
		   "held-out %.3f on %d rows)\n",
		   curve.loss[0], curve.loss[curve.n - 1], curve.acc[0], curve.acc[curve.n - 1],
		   r->selection_accuracy, r->val_rows, r->test_accuracy, r->test_rows);
	CHECK(r->train_rows == 120 && r->val_rows == 40 && r->test_rows == N_ROWS && r->n_labels == 2);
	CHECK(strcmp(r->labels[0], "that") == 0 && strcmp(r->labels[1], "this") == 0);
	CHECKF(curve.loss[curve.n - 1] < 0.6 * curve.loss[0], "training loss did not fall: %.3f -> %.3f",
		   curve.loss[0], curve.loss[curve.n - 1]);
	/* the majority class is about half of the rows */
	CHECKF(r->selection_accuracy >= 0.85, "validation accuracy %.3f is not well above chance",
		   r->selection_accuracy);
	/* rows that neither trained nor chose the prompt: the honest estimate */
	CHECKF(r->test_accuracy >= 0.8, "held-out accuracy %.3f is not well above chance", r->test_accuracy);
	pt_trainer_free(t);
	pt_model_free(m);
}

static int
stop_at_step_3(const PtTrainProgress *p, void *arg)
{
	(void) arg;
	return p->step >= 3;
}

void		test_training_deterministic_and_cancellable(void);
void
test_training_deterministic_and_cancellable(void)
{
	const char *dir = unit_model_dir("tiny-gated");
	PtModel    *m;
	PtTrainOptions opt;
	PtTrainer  *a,
			   *b,
			   *c;
	Toy			toy;
	int			n;
	PtPrompt  **pa,
			  **pb,
			  **pc;
	size_t		bytes;

	REQUIRE(dir != NULL);
	m = pt_model_load(dir);
	REQUIRE(m != NULL);
	make_toy(&toy, 2);
	toy_options(&opt);
	opt.max_steps = 8;
	opt.eval_every = 4;
	opt.ensemble_size = 2;
	a = pt_trainer_new(m, &opt, &toy.set, NULL);
	b = pt_trainer_new(m, &opt, &toy.set, NULL);
	opt.seed = 43;
	c = pt_trainer_new(m, &opt, &toy.set, NULL);
	REQUIRE(a && b && c);
	REQUIRE(pt_train_run(a, NULL, NULL) == 0 && pt_train_run(b, NULL, NULL) == 0 &&
			pt_train_run(c, NULL, NULL) == 0);
	pa = pt_trainer_take_prompts(a, &n);
	REQUIRE(n == 2);
	pb = pt_trainer_take_prompts(b, &n);
	pc = pt_trainer_take_prompts(c, &n);
	bytes = sizeof(float) * opt.prompt_length * m->cfg.d_model;
	CHECK(memcmp(pa[0]->values, pb[0]->values, bytes) == 0);
	CHECK(memcmp(pa[1]->values, pb[1]->values, bytes) == 0);
	CHECK(memcmp(pa[0]->values, pa[1]->values, bytes) != 0);	/* members differ */
	CHECK(memcmp(pa[0]->values, pc[0]->values, bytes) != 0);	/* seeds differ */
	pt_prompt_array_free(pa, 2);
	pt_prompt_array_free(pb, 2);
	pt_prompt_array_free(pc, 2);
	pt_trainer_free(a);
	pt_trainer_free(b);
	pt_trainer_free(c);

	/* a callback that asks to stop ends training at that step, with a clear error */
	a = pt_trainer_new(m, &opt, &toy.set, NULL);
	REQUIRE(a != NULL);
	CHECK(pt_train_run(a, stop_at_step_3, NULL) != 0);
	CHECK(pt_error_kind() == PT_ERR_CANCELLED);
	CHECK(pt_trainer_progress(a)->step == 3);
	CHECK(pt_trainer_result(a) == NULL);
	pt_trainer_free(a);

	/* bad settings and bad data are refused up front */
	toy_options(&opt);
	opt.batch_size = 0;
	CHECK(pt_trainer_new(m, &opt, &toy.set, NULL) == NULL && pt_error_kind() == PT_ERR_ARGUMENT);
	toy_options(&opt);
	for (int i = 0; i < N_ROWS; i++)
		toy.labels[i] = "this";
	CHECK(pt_trainer_new(m, &opt, &toy.set, NULL) == NULL && strstr(pt_error_message(), "1 distinct label"));
	pt_model_free(m);
}

static double
max_abs_diff(const float *a, const float *b, size_t n, double *scale)
{
	double		d = 0.0;

	*scale = 0.0;
	for (size_t i = 0; i < n; i++)
	{
		d = fmax(d, fabs((double) a[i] - b[i]));
		*scale = fmax(*scale, fabs((double) a[i]));
	}
	return d;
}

/*
 * The worker's way of training: rows streamed in chunks, steps in
 * micro-batches (gradients accumulated), validations in slices.  Each step
 * must equal the one-batch step up to float rounding, and the run the same
 * run: same steps, same validation accuracy, same prompt to tolerance.
 */
void		test_training_micro_batches_match_steps(void);
void
test_training_micro_batches_match_steps(void)
{
	const char *dir = unit_model_dir("tiny-gated");
	PtModel    *m;
	PtTrainOptions opt;
	PtTrainer  *a,
			   *b;
	Toy			toy;
	size_t		n;
	double		scale,
				diff;
	int			rc = 0,
				units = 0;

	REQUIRE(dir != NULL);
	m = pt_model_load(dir);
	REQUIRE(m != NULL);
	make_toy(&toy, 3);
	toy_options(&opt);
	opt.max_steps = 12;
	opt.eval_every = 5;
	opt.ensemble_size = 2;
	n = (size_t) opt.prompt_length * m->cfg.d_model;

	a = pt_trainer_new(m, &opt, &toy.set, NULL);
	b = pt_trainer_open(m, &opt);
	REQUIRE(a && b);
	for (int start = 0; start < N_ROWS; start += 7)
	{
		int			k = N_ROWS - start < 7 ? N_ROWS - start : 7;
		PtTextSet	chunk = {k, toy.texts + start, NULL, toy.labels + start};

		REQUIREF(pt_trainer_add_rows(b, &chunk) == 0, "%s", pt_error_message());
	}
	REQUIREF(pt_trainer_close_rows(b, NULL) == 0, "%s", pt_error_message());
	CHECK(pt_trainer_rows(a) == pt_trainer_rows(b));

	/* step 1: one batch of 16 against micro-batches of 3 (3+3+3+3+3+1) */
	REQUIRE(pt_trainer_step(a) == 0);
	while (pt_trainer_progress(b)->step < 1)
	{
		REQUIRE(pt_trainer_advance(b, 3) == 0);
		units++;
	}
	CHECKF(units == 6, "step 1 took %d units", units);
	diff = max_abs_diff(pt_trainer_prompt(a)->values, pt_trainer_prompt(b)->values, n, &scale);
	CHECKF(diff <= 1e-5 * fmax(scale, 1.0), "step 1: prompts differ by %g (scale %g)", diff, scale);

	/* the rest of the run, validations in slices of 3 rows */
	REQUIREF(pt_train_run(a, NULL, NULL) == 0, "%s", pt_error_message());
	while ((rc = pt_trainer_advance(b, 3)) == 0)
		;
	REQUIREF(rc == 1, "%s", pt_error_message());
	{
		const PtTrainResult *ra = pt_trainer_result(a),
				   *rb = pt_trainer_result(b);

		REQUIRE(ra && rb);
		CHECK(ra->steps == rb->steps && ra->n_prompts == rb->n_prompts && ra->n_prompts == 2);
		CHECKF(ra->selection_accuracy == rb->selection_accuracy, "validation accuracy %g against %g",
			   ra->selection_accuracy, rb->selection_accuracy);
		CHECK(ra->train_rows == rb->train_rows && ra->val_rows == rb->val_rows);
		CHECK(fabs(ra->final_loss - rb->final_loss) <= 1e-4 * fmax(1.0, fabs(ra->final_loss)));
		for (int k = 0; k < ra->n_prompts; k++)
		{
			diff = max_abs_diff(ra->prompts[k]->values, rb->prompts[k]->values, n, &scale);
			CHECKF(diff <= 1e-4 * fmax(scale, 1.0), "member %d: prompts differ by %g (scale %g)", k, diff, scale);
		}
		CHECK(strcmp(pt_trainer_phase(b), "done") == 0);
	}
	pt_trainer_free(a);
	pt_trainer_free(b);
	pt_model_free(m);
}

/* Rows of two tasks in one batch give what each task's rows give alone. */
void		test_classify_mixed_tasks_and_ensembles(void);
void
test_classify_mixed_tasks_and_ensembles(void)
{
	const char *dir = unit_model_dir("tiny-gated");
	static const char *labels_a[] = {"ham", "spam"};
	static const char *labels_b[] = {"new york", "new jersey", "boston"};
	static const char *texts[] = {"cheap pills buy now", "meeting at noon tomorrow",
	"the river is very long", "call me when you land", "win a free prize"};
	PtModel    *m;
	PtTask	   *ta,
			   *tb;
	PtPrompt   *pa,
			   *pb[3];
	PtRng		rng;
	PtWorkspace ws = {0};
	int32_t		ids[5][32];
	int			n_ids[5];
	const float *va[1],
			   *vb[3];
	int			la[1],
				lb[3];
	PtClassifyRow mixed[10];
	PtClassifyResult res_mixed[10],
				res_alone[1];
	float		probs_mixed[10][3],
				probs_alone[3];

	REQUIRE(dir != NULL);
	m = pt_model_load(dir);
	REQUIRE(m != NULL);
	ta = pt_task_new(m, labels_a, 2, 32);
	tb = pt_task_new(m, labels_b, 3, 32);
	REQUIRE(ta && tb);
	pt_rng_seed(&rng, 9);
	pa = pt_prompt_new(m, ta, 5, PT_INIT_RANDOM_UNIFORM, &rng);
	va[0] = pa->values;
	la[0] = pa->length;
	for (int k = 0; k < 3; k++)
	{
		pb[k] = pt_prompt_new(m, tb, 3 + k, PT_INIT_RANDOM_UNIFORM, &rng);
		vb[k] = pb[k]->values;
		lb[k] = pb[k]->length;
	}
	for (int i = 0; i < 5; i++)
		n_ids[i] = pt_encode_input(m, 32, texts[i], strlen(texts[i]), ids[i]);

	/* interleave: task A (one prompt) and task B (an ensemble of three) */
	for (int i = 0; i < 10; i++)
	{
		bool		is_a = i % 2 == 0;

		mixed[i] = (PtClassifyRow) {is_a ? ta : tb, PT_SCORE_LABEL_TOKENS, is_a ? 1 : 3, is_a ? va : vb, is_a ? la : lb,
			ids[i / 2], n_ids[i / 2]};
		res_mixed[i].probs = probs_mixed[i];
	}
	REQUIRE(pt_classify(m, &ws, mixed, 10, res_mixed) == 0);

	for (int i = 0; i < 10; i++)
	{
		int			L = mixed[i].task->n_labels;
		float		mean[3] = {0};
		int			votes[3] = {0};
		int			expect = 0;

		/* the same row alone */
		res_alone[0].probs = probs_alone;
		REQUIRE(pt_classify(m, &ws, &mixed[i], 1, res_alone) == 0);
		CHECKF(res_alone[0].label == res_mixed[i].label, "row %d: label differs alone", i);
		for (int j = 0; j < L; j++)
			CHECKF(fabsf(probs_alone[j] - probs_mixed[i][j]) < 1e-5f, "row %d: probability differs", i);

		/* the ensemble's answer: each member alone, then majority vote, ties by mean probability */
		for (int k = 0; k < mixed[i].n_prompts; k++)
		{
			PtClassifyRow one = mixed[i];
			int			w = 0;

			one.n_prompts = 1;
			one.prompts = &mixed[i].prompts[k];
			one.prompt_lens = &mixed[i].prompt_lens[k];
			REQUIRE(pt_classify(m, &ws, &one, 1, res_alone) == 0);
			for (int j = 0; j < L; j++)
			{
				mean[j] += probs_alone[j] / mixed[i].n_prompts;
				if (probs_alone[j] > probs_alone[w])
					w = j;
			}
			votes[w]++;
		}
		for (int j = 1; j < L; j++)
			if (votes[j] > votes[expect] || (votes[j] == votes[expect] && mean[j] > mean[expect]))
				expect = j;
		CHECKF(res_mixed[i].label == expect, "row %d: ensemble picked %d, vote says %d", i,
			   res_mixed[i].label, expect);
		for (int j = 0; j < L; j++)
			CHECK(fabsf(mean[j] - probs_mixed[i][j]) < 1e-5f);
	}

	pt_workspace_free(&ws);
	pt_prompt_free(pa);
	for (int k = 0; k < 3; k++)
		pt_prompt_free(pb[k]);
	pt_task_free(ta);
	pt_task_free(tb);
	pt_model_free(m);
}

/*
 * bfloat16 inference agrees with fp32: the same labels (where fp32 is not a
 * near tie) and probabilities within bfloat16's rounding.  The batch has
 * over 256 packed tokens and a token count that is no multiple of 16, so the
 * products run in several pieces (linear_dnnl.c); each row alone, in other
 * pieces, must give what the batch gives.
 */
static void
reduced_precision_matches_fp32(const char *model, PtMath math, float tolerance)
{
	const char *dir = unit_model_dir(model);
	static const char *labels[] = {"ham", "spam", "maybe"};
	enum
	{
		N = 24
	};
	PtModel    *m;
	PtTask	   *task;
	PtPrompt   *p;
	PtRng		rng;
	PtWorkspace ws = {0},
				ws32 = {0};
	int32_t		ids[N][40];
	const float *pv[1];
	int			pl[1];
	PtClassifyRow rows[N];
	PtClassifyResult res32[N],
				res16[N],
				alone;
	float		p32[N][3],
				p16[N][3],
				p_alone[3];
	int			tokens = 0;

	if (math == PT_MATH_BF16 && !pt_bf16_supported())
		SKIP("this CPU has no bfloat16 instructions (AVX512-BF16 or AMX)");
	if (math == PT_MATH_INT8 && !pt_int8_supported())
		SKIP("this CPU has no int8 dot-product instructions (VNNI or AMX)");
	REQUIRE(dir != NULL);
	m = pt_model_load(dir);
	REQUIRE(m != NULL);
	task = pt_task_new(m, labels, 3, 40);
	REQUIRE(task != NULL);
	pt_rng_seed(&rng, 5);
	p = pt_prompt_new(m, task, 7, PT_INIT_RANDOM_UNIFORM, &rng);
	REQUIRE(p != NULL);
	pv[0] = p->values;
	pl[0] = p->length;
	for (int i = 0; i < N; i++)
	{
		char		text[400];
		int			len = 0;

		/* texts of 3 to 37 words */
		for (int w = 0; w < 3 + (i * 7) % 35; w++)
			len += snprintf(text + len, sizeof(text) - len, "%s ", w % 3 ? "river" : i % 2 ? "cheap" : "meeting");
		rows[i] = (PtClassifyRow) {task, PT_SCORE_LABEL_TOKENS, 1, pv, pl, ids[i], 0};
		rows[i].n_ids = pt_encode_input(m, 40, text, strlen(text), ids[i]);
		tokens += rows[i].n_ids + p->length;
		res32[i].probs = p32[i];
		res16[i].probs = p16[i];
	}
	CHECKF(tokens > 256 && tokens % 16 != 0, "the batch should span pieces (%d tokens)", tokens);

	/* each precision in a workspace of its own: no stale activations of the other to hide a bug */
	REQUIRE(pt_classify(m, &ws32, rows, N, res32) == 0);
	REQUIRE(pt_model_set_math(m, math) == 0);
	REQUIRE(pt_classify(m, &ws, rows, N, res16) == 0);
	for (int i = 0; i < N; i++)
	{
		float		second = -1.0f;

		for (int j = 0; j < 3; j++)
		{
			CHECKF(fabsf(p32[i][j] - p16[i][j]) < tolerance, "row %d label %d: fp32 %.4f, %s %.4f",
				   i, j, p32[i][j], pt_math_name(math), p16[i][j]);
			if (j != res32[i].label && p32[i][j] > second)
				second = p32[i][j];
		}
		if (p32[i][res32[i].label] - second > 0.05f)
			CHECKF(res16[i].label == res32[i].label, "row %d: %s picked %d, fp32 %d", i,
				   pt_math_name(math), res16[i].label, res32[i].label);

		alone.probs = p_alone;
		REQUIRE(pt_classify(m, &ws, &rows[i], 1, &alone) == 0);
		for (int j = 0; j < 3; j++)
			CHECKF(fabsf(p_alone[j] - p16[i][j]) < 2e-3f, "row %d: %s alone %.5f, in the batch %.5f",
				   i, pt_math_name(math), p_alone[j], p16[i][j]);
	}

	/*
	 * oneDNN failing one product of the pass, each in turn (the encoder's
	 * bf16 sublayers fall back to fp32 outputs, the residual sums must still
	 * count once): within the precision's rounding of the pass without
	 * failures; a residual lost or added twice moves them by far more.
	 */
	for (int k = 0;; k++)
	{
		bool		fired;

		pt_dnnl_fail_forward(k);
		REQUIRE(pt_classify(m, &ws, rows, N, res32) == 0);
		fired = pt_dnnl_fail_forward(-1) < 0;
		if (!fired)
		{
			/* the pass has k products, each failed once: the encoder's alone are 6 or 7 per layer */
			CHECKF(k >= 6 * m->cfg.num_layers, "only %d products failed", k);
			break;
		}
		for (int i = 0; i < N; i++)
			for (int j = 0; j < 3; j++)
				CHECKF(fabsf(p32[i][j] - p16[i][j]) < tolerance, "%s, product %d failing: row %d label %d: "
					   "%.4f, without failures %.4f", pt_math_name(math), k, i, j, p32[i][j], p16[i][j]);
		CHECK(k < 1000);
	}

	pt_workspace_free(&ws);
	pt_workspace_free(&ws32);
	pt_prompt_free(p);
	pt_task_free(task);
	pt_model_free(m);
}

/*
 * tiny-gated (heads of 12: attention in fp32, gated gelu) and tiny-relu
 * (heads of 16: bf16 inference runs attention's products in bf16 too).
 */
void		test_classify_bf16_matches_fp32(void);
void
test_classify_bf16_matches_fp32(void)
{
	reduced_precision_matches_fp32("tiny-gated", PT_MATH_BF16, 0.01f);
	reduced_precision_matches_fp32("tiny-relu", PT_MATH_BF16, 0.01f);
}

/*
 * int8 (s8 weights per output channel, s8 activations per row): the same
 * checks, with a looser bound on probabilities (quantisation to 8 bits).
 */
void		test_classify_int8_matches_fp32(void);
void
test_classify_int8_matches_fp32(void)
{
	reduced_precision_matches_fp32("tiny-gated", PT_MATH_INT8, 0.03f);
	reduced_precision_matches_fp32("tiny-relu", PT_MATH_INT8, 0.03f);
}

/*
 * Label-token scoring equals the label set's restricted softmax computed by
 * hand from the full logits; rank scoring equals the sequence log-likelihood.
 */
void		test_label_scores_match_full_logits(void);
void
test_label_scores_match_full_logits(void)
{
	const char *dir = unit_model_dir("tiny-gated");
	static const char *labels[] = {"new york", "new jersey", "boston", "new"};
	PtModel    *m;
	PtTask	   *task;
	PtPrompt   *p;
	PtRng		rng;
	PtWorkspace ws = {0};
	int32_t		ids[32];
	int			n_ids,
				V,
				L = 4;
	const float *logits[4];
	PtExample	ex[4];
	PtClassifyRow row;
	PtClassifyResult res;
	float		probs[4];
	double		restricted[4] = {0},
				full[4] = {0};

	REQUIRE(dir != NULL);
	m = pt_model_load(dir);
	REQUIRE(m != NULL);
	V = m->cfg.vocab_size;
	task = pt_task_new(m, labels, L, 32);
	REQUIRE(task != NULL);
	pt_rng_seed(&rng, 4);
	p = pt_prompt_new(m, task, 4, PT_INIT_RANDOM_UNIFORM, &rng);
	n_ids = pt_encode_input(m, 32, "where is the airport", 20, ids);

	/* full logits of every label's teacher-forced target */
	for (int j = 0; j < L; j++)
		ex[j] = (PtExample) {p->values, p->length, ids, n_ids, task->labels[j].target,
			task->labels[j].n_target, 1.0f};
	REQUIRE(!isnan(pt_objective(m, &ws, ex, L, NULL, NULL, logits)));
	for (int j = 0; j < L; j++)
	{
		const PtLabel *lj = &task->labels[j];

		for (int t = 0; t < lj->n_target; t++)
		{
			const float *row = logits[j] + (size_t) t * V;
			double		lse = -INFINITY,
						rlse = -INFINITY;
			int32_t		seen[4];
			int			n_seen = 0;

			for (int v = 0; v < V; v++)
				lse = fmax(lse, row[v]) + log1p(exp(-fabs(lse - row[v])));
			full[j] += row[lj->target[t]] - lse;
			/* competitors: t-th tokens of labels sharing the first t tokens */
			for (int k = 0; k < L; k++)
			{
				const PtLabel *lk = &task->labels[k];
				bool		dup = false;

				if (lk->n_target <= t || memcmp(lk->target, lj->target, sizeof(int32_t) * t) != 0)
					continue;
				for (int s = 0; s < n_seen; s++)
					dup |= seen[s] == lk->target[t];
				if (!dup)
				{
					seen[n_seen++] = lk->target[t];
					rlse = fmax(rlse, row[lk->target[t]]) + log1p(exp(-fabs(rlse - row[lk->target[t]])));
				}
			}
			if (n_seen > 1)
				restricted[j] += row[lj->target[t]] - rlse;
		}
	}

	row = (PtClassifyRow) {task, PT_SCORE_LABEL_TOKENS, 1, (const float *const *) &p->values, &p->length, ids, n_ids};
	res.probs = probs;
	for (int mode = 0; mode < 2; mode++)
	{
		double	   *want = mode == 0 ? restricted : full;
		double		z = 0;

		row.scoring = (PtScoring) mode;
		REQUIRE(pt_classify(m, &ws, &row, 1, &res) == 0);
		for (int j = 0; j < L; j++)
			z += exp(want[j]);
		for (int j = 0; j < L; j++)
			CHECKF(fabs(probs[j] - exp(want[j]) / z) < 1e-5, "%s scoring, label %d: %.6f vs %.6f",
				   mode ? "rank" : "label-token", j, probs[j], exp(want[j]) / z);
	}
	pt_workspace_free(&ws);
	pt_prompt_free(p);
	pt_task_free(task);
	pt_model_free(m);
}

/* A prompt made of vocabulary embeddings explains itself: each row's nearest piece is itself. */
void		test_explain_nearest_pieces(void);
void
test_explain_nearest_pieces(void)
{
	const char *dir = unit_model_dir("tiny-gated");
	static const char *labels[] = {"ham", "spam"};
	PtModel    *m;
	PtTask	   *task;
	PtPrompt   *p;
	PtRng		rng;
	int32_t		ids[6 * 3];
	float		sims[6 * 3];

	REQUIRE(dir != NULL);
	m = pt_model_load(dir);
	REQUIRE(m != NULL);
	task = pt_task_new(m, labels, 2, 32);
	pt_rng_seed(&rng, 5);
	p = pt_prompt_new(m, task, 6, PT_INIT_SAMPLED_VOCAB, &rng);
	REQUIRE(p && pt_explain(m, p, 3, ids, sims) == 0);
	for (int i = 0; i < 6; i++)
	{
		const float *e = m->embed.w + (size_t) ids[i * 3] * m->cfg.d_model;

		CHECKF(sims[i * 3] > 0.9999f, "row %d: best similarity %.5f", i, sims[i * 3]);
		CHECK(memcmp(e, p->values + (size_t) i * m->cfg.d_model, sizeof(float) * m->cfg.d_model) == 0);
		CHECK(sims[i * 3 + 1] <= sims[i * 3] && sims[i * 3 + 2] <= sims[i * 3 + 1]);
	}
	CHECK(pt_explain(m, p, 0, ids, sims) != 0);
	pt_prompt_free(p);
	pt_task_free(task);
	pt_model_free(m);
}

/*
 * A bf16 model keeps no fp32 embedding table (model.h): its rows, the
 * class-label prompt initialisation and pt_explain read the checkpoint and
 * must give exactly what the fp32 model gives; a tied lm_head is packed in
 * bf16 (its logits near fp32's) and shares the embedding's table again once
 * the model is switched back to fp32.
 */
static void
check_bf16_embedding(const char *dir)
{
	static const char *labels[] = {"positive review", "negative"};
	PtModel    *m32 = pt_model_load_math(dir, PT_MATH_FP32);
	PtModel    *m16 = pt_model_load_math(dir, PT_MATH_BF16);
	PtTask	   *task;
	PtPrompt   *p32,
			   *p16;
	PtRng		rng;
	int			d,
				V,
				bad = 0;
	float	   *row32,
			   *row16;
	int32_t		ids32[4 * 3],
				ids16[4 * 3];
	float		sims32[4 * 3],
				sims16[4 * 3];

	REQUIREF(m32 && m16, "%s: %s", dir, pt_error_message());
	CHECK(m16->math == PT_MATH_BF16);
	CHECKF(m16->embed.w == NULL, "%s: a bf16 model kept an fp32 embedding table", dir);
	CHECKF(m16->lm_head.w == NULL && pt_linear_packed_math(&m16->lm_head) == PT_MATH_BF16,
		   "%s: the lm_head (tied: %d) is not bf16-only", dir, m16->cfg.tie_word_embeddings);
	d = m32->cfg.d_model;
	V = m32->cfg.vocab_size;
	row32 = malloc(sizeof(float) * d);
	row16 = malloc(sizeof(float) * d);
	REQUIRE(row32 && row16);
	for (int32_t v = 0; v < V; v++)
	{
		pt_model_embed_rows(m32, &v, 1, row32);
		pt_model_embed_rows(m16, &v, 1, row16);
		bad += memcmp(row32, row16, sizeof(float) * d) != 0;
	}
	CHECKF(bad == 0, "%s: %d embedding rows differ between fp32 and bf16", dir, bad);

	/* the tied (or untied) head in bf16: logits of an embedding row near fp32's */
	{
		float	   *l32 = malloc(sizeof(float) * V),
				   *l16 = malloc(sizeof(float) * V);
		double		err = 0.0,
					ref = 0.0;
		int32_t		v = 7;

		REQUIRE(l32 && l16);
		pt_model_embed_rows(m32, &v, 1, row32);
		pt_head_logits(m32, row32, 1, l32);
		pt_head_logits(m16, row32, 1, l16);
		for (int j = 0; j < V; j++)
		{
			err += (double) (l16[j] - l32[j]) * (l16[j] - l32[j]);
			ref += (double) l32[j] * l32[j];
		}
		CHECKF(ref > 0 && sqrt(err / ref) < 0.02, "%s: bf16 head logits off by %.4f (relative)",
			   dir, sqrt(err / ref));
		free(l32);
		free(l16);
	}

	/* class-label initialisation and explain read the same rows */
	task = pt_task_new(m32, labels, 2, 32);
	REQUIRE(task != NULL);
	pt_rng_seed(&rng, 11);
	p32 = pt_prompt_new(m32, task, 4, PT_INIT_CLASS_LABELS, &rng);
	pt_rng_seed(&rng, 11);
	p16 = pt_prompt_new(m16, task, 4, PT_INIT_CLASS_LABELS, &rng);
	REQUIRE(p32 && p16);
	CHECKF(memcmp(p32->values, p16->values, sizeof(float) * 4 * d) == 0,
		   "%s: class-label prompts differ between fp32 and bf16", dir);
	REQUIRE(pt_explain(m32, p32, 3, ids32, sims32) == 0 && pt_explain(m16, p16, 3, ids16, sims16) == 0);
	for (int i = 0; i < 4 * 3; i++)
		CHECKF(ids32[i] == ids16[i] && fabsf(sims32[i] - sims16[i]) < 1e-5f,
			   "%s: explain %d: %d (%.6f) in fp32, %d (%.6f) in bf16", dir, i,
			   ids32[i], sims32[i], ids16[i], sims16[i]);
	pt_prompt_free(p32);
	pt_prompt_free(p16);
	pt_task_free(task);

	/* back to fp32: the table again, shared by a tied head; exact rows */
	REQUIRE(pt_model_set_math(m16, PT_MATH_FP32) == 0);
	CHECK(m16->embed.w != NULL);
	if (m16->cfg.tie_word_embeddings)
		CHECK(m16->lm_head.w == m16->embed.w && !m16->lm_head.w_owned);
	CHECK(memcmp(m16->embed.w, m32->embed.w, sizeof(float) * (size_t) V * d) == 0);
	/* and to bf16 once more: the table is dropped again */
	REQUIRE(pt_model_set_math(m16, PT_MATH_BF16) == 0);
	CHECK(m16->embed.w == NULL && m16->lm_head.w == NULL);
	free(row32);
	free(row16);
	pt_model_free(m16);
	pt_model_free(m32);
}

void		test_bf16_embedding_stays_in_checkpoint(void);
void
test_bf16_embedding_stays_in_checkpoint(void)
{
	if (!pt_bf16_supported())
		SKIP("this CPU has no bfloat16 instructions (AVX512-BF16 or AMX)");
	check_bf16_embedding(unit_model_dir("tiny-relu"));	/* tied, F32 file */
	check_bf16_embedding(unit_model_dir("tiny-gated"));	/* untied, F32 file */
	check_bf16_embedding(unit_model_dir("tiny-gated-bf16"));	/* untied, BF16 file */
	check_bf16_embedding(unit_model_dir("tiny-relu-bf16"));	/* tied, BF16 file */
}
