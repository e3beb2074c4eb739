/*
 * test_shapes.c - batches of random shapes give what each row gives alone,
 * with 1 and 2 threads; repeated runs are bitwise identical.
 *
 * Shapes are where packing bugs hide: attention backward keeps one score
 * gradient block per thread, [Tq, Tk] for encoder self (Te x Te), decoder
 * self (Td x Td) and cross-attention (Td x Te).  Targets longer than the
 * encoder row (short inputs, short prompts, long labels) once overflowed a
 * block sized for the encoder: threads overwrote each other's blocks.  So
 * these tests draw targets up to 64 tokens against inputs of 1 to 12 tokens.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "helpers.h"
#include "linear.h"
#include "objective.h"
#include "trainer.h"
#include "unit.h"

#define MAX_BATCH 8
#define MAX_INPUT 12			/* input tokens, EOS included */
#define MAX_TARGET 64
#define MAX_PROMPT 4

typedef struct Row
{
	int32_t		input[MAX_INPUT];
	int32_t		target[MAX_TARGET];
	float	   *prompt;			/* [MAX_PROMPT, d] */
	float	   *grad;
} Row;

/* Random ids ending in EOS (1); ids 0 and 2 (pad, unk) are left out. */
static void
random_ids(int32_t *ids, int n, int vocab, uint64_t *seed)
{
	for (int j = 0; j < n; j++)
		ids[j] = j == n - 1 ? 1 : 3 + (int) (test_rand(seed) % (uint64_t) (vocab - 3));
}

/* A random batch of n rows; row 0 always has a target longer than its encoder row. */
static void
random_batch(const PtModel *m, Row *rows, PtExample *ex, int n, uint64_t *seed)
{
	int			d = m->cfg.d_model;

	for (int i = 0; i < n; i++)
	{
		int			plen = (int) (test_rand(seed) % (MAX_PROMPT + 1));
		int			in = 1 + (int) (test_rand(seed) % MAX_INPUT);
		int			tg = 1 + (int) (test_rand(seed) % MAX_TARGET);

		if (i == 0)
			tg = plen + in + 1 + (int) (test_rand(seed) % (MAX_TARGET - plen - in));
		random_ids(rows[i].input, in, m->cfg.vocab_size, seed);
		random_ids(rows[i].target, tg, m->cfg.vocab_size, seed);
		for (int k = 0; k < MAX_PROMPT * d; k++)
			rows[i].prompt[k] = test_uniform(seed, -0.5f, 0.5f);
		ex[i] = (PtExample) {plen ? rows[i].prompt : NULL, plen, rows[i].input, in,
			rows[i].target, tg, 1.0f / tg};
	}
}

/* Every batched loss, logit and prompt gradient against the same row alone. */
static void
compare_batch_to_rows(const PtModel *m, PtWorkspace *ws, Row *rows, PtExample *ex, int n,
					  int threads, int trial, double *worst)
{
	size_t		V = m->cfg.vocab_size;
	int			d = m->cfg.d_model;
	double		batched_ce[MAX_BATCH],
				alone_ce;
	float	   *batched_logits = malloc(sizeof(float) * MAX_BATCH * MAX_TARGET * V);
	float	   *single_grad = malloc(sizeof(float) * MAX_PROMPT * d);
	float	   *grads[MAX_BATCH];
	const float *logits[MAX_BATCH];

	for (int i = 0; i < n; i++)
		grads[i] = rows[i].grad;
	/* logits and gradients come from separate calls (see objective.h) */
	if (isnan(pt_objective(m, ws, ex, n, batched_ce, NULL, logits)))
	{
		CHECKF(false, "threads %d trial %d: %s", threads, trial, pt_error_message());
		goto done;
	}
	for (int i = 0; i < n; i++)
		memcpy(batched_logits + (size_t) i * MAX_TARGET * V, logits[i],
			   sizeof(float) * ex[i].n_target * V);
	if (isnan(pt_objective(m, ws, ex, n, NULL, grads, NULL)))
	{
		CHECKF(false, "threads %d trial %d: %s", threads, trial, pt_error_message());
		goto done;
	}

	for (int i = 0; i < n; i++)
	{
		const float *one_logits[1];
		float	   *one_grad[1] = {single_grad};
		size_t		nl = (size_t) ex[i].n_target * V;
		double		err;

		if (isnan(pt_objective(m, ws, &ex[i], 1, &alone_ce, NULL, one_logits)))
		{
			CHECKF(false, "%s", pt_error_message());
			continue;
		}
		err = max_rel_error(batched_logits + (size_t) i * MAX_TARGET * V, one_logits[0], nl);
		*worst = fmax(*worst, err);
		CHECKF(err < 1e-5, "threads %d trial %d row %d/%d (prompt %d, input %d, target %d): "
			   "logits differ by %.2e", threads, trial, i, n, ex[i].prompt_len, ex[i].n_input,
			   ex[i].n_target, err);
		CHECKF(fabs(alone_ce - batched_ce[i]) <= 1e-5 * fabs(alone_ce),
			   "threads %d trial %d row %d: loss %.8g alone, %.8g batched", threads, trial, i,
			   alone_ce, batched_ce[i]);
		if (ex[i].prompt_len == 0)
			continue;
		if (isnan(pt_objective(m, ws, &ex[i], 1, NULL, one_grad, NULL)))
		{
			CHECKF(false, "%s", pt_error_message());
			continue;
		}
		err = max_rel_error(rows[i].grad, single_grad, (size_t) ex[i].prompt_len * d);
		*worst = fmax(*worst, err);
		CHECKF(err < 1e-4, "threads %d trial %d row %d/%d (prompt %d, input %d, target %d): "
			   "prompt gradient differs by %.2e", threads, trial, i, n, ex[i].prompt_len,
			   ex[i].n_input, ex[i].n_target, err);
	}
done:
	free(batched_logits);
	free(single_grad);
}

void		test_random_shapes_match_single_rows(void);
void
test_random_shapes_match_single_rows(void)
{
	const char *dir = unit_model_dir("tiny-relu");
	PtModel    *m;
	PtWorkspace ws = {0};
	Row			rows[MAX_BATCH];
	PtExample	ex[MAX_BATCH];
	int			saved_threads = pt_get_threads();
	uint64_t	seed = 2024;
	double		worst = 0.0;
	int			batches = 0;

	REQUIRE(dir != NULL);
	m = pt_model_load(dir);
	REQUIREF(m != NULL, "%s", pt_error_message());
	for (int i = 0; i < MAX_BATCH; i++)
	{
		rows[i].prompt = malloc(sizeof(float) * MAX_PROMPT * m->cfg.d_model);
		rows[i].grad = malloc(sizeof(float) * MAX_PROMPT * m->cfg.d_model);
	}
	for (int threads = 1; threads <= 2; threads++)
	{
		pt_set_threads(threads);
		/* batch sizes 1..8 each once, in a seeded order */
		for (int trial = 0; trial < MAX_BATCH; trial++)
		{
			int			n = 1 + (trial * 5 + threads) % MAX_BATCH;

			random_batch(m, rows, ex, n, &seed);
			compare_batch_to_rows(m, &ws, rows, ex, n, threads, trial, &worst);
			batches++;
		}
	}
	pt_set_threads(saved_threads);
	printf("    %d random batches, worst relative difference to single rows %.2e\n", batches, worst);
	for (int i = 0; i < MAX_BATCH; i++)
	{
		free(rows[i].prompt);
		free(rows[i].grad);
	}
	pt_workspace_free(&ws);
	pt_model_free(m);
}

/*
 * 20 runs of the same batch give bitwise the same loss and prompt gradients
 * (2 threads, dynamic scheduling: any race on shared scratch shows up here).
 */
void		test_gradient_deterministic_20_runs(void);
void
test_gradient_deterministic_20_runs(void)
{
	const char *dir = unit_model_dir("tiny-relu");
	PtModel    *m;
	PtWorkspace ws = {0};
	Row			rows[MAX_BATCH];
	PtExample	ex[MAX_BATCH];
	float	   *grads[MAX_BATCH],
			   *first;
	int			saved_threads = pt_get_threads();
	uint64_t	seed = 99;
	size_t		per_row;
	double		loss0;
	int			differing = 0;

	REQUIRE(dir != NULL);
	m = pt_model_load(dir);
	REQUIREF(m != NULL, "%s", pt_error_message());
	per_row = (size_t) MAX_PROMPT * m->cfg.d_model;
	for (int i = 0; i < MAX_BATCH; i++)
	{
		rows[i].prompt = malloc(sizeof(float) * per_row);
		rows[i].grad = grads[i] = malloc(sizeof(float) * per_row);
	}
	first = malloc(sizeof(float) * per_row * MAX_BATCH);
	random_batch(m, rows, ex, MAX_BATCH, &seed);
	for (int i = 0; i < MAX_BATCH; i++)
		memset(rows[i].grad, 0, sizeof(float) * per_row);	/* rows without a prompt */
	pt_set_threads(2);
	loss0 = pt_objective(m, &ws, ex, MAX_BATCH, NULL, grads, NULL);
	REQUIREF(!isnan(loss0), "%s", pt_error_message());
	for (int i = 0; i < MAX_BATCH; i++)
		memcpy(first + i * per_row, grads[i], sizeof(float) * per_row);
	for (int run = 1; run < 20; run++)
	{
		double		loss = pt_objective(m, &ws, ex, MAX_BATCH, NULL, grads, NULL);
		bool		same = loss == loss0;

		for (int i = 0; i < MAX_BATCH; i++)
			same = same && memcmp(first + i * per_row, grads[i], sizeof(float) * per_row) == 0;
		differing += !same;
	}
	CHECKF(differing == 0, "%d of 19 repeated runs differ from the first", differing);
	pt_set_threads(saved_threads);
	free(first);
	for (int i = 0; i < MAX_BATCH; i++)
	{
		free(rows[i].prompt);
		free(rows[i].grad);
	}
	pt_workspace_free(&ws);
	pt_model_free(m);
}

/*
 * 20 trainings with the same seed give bitwise the same prompt, on the shape
 * that once broke it: a 1-row prompt, one-word texts, labels of many tokens.
 */
void		test_training_deterministic_20_runs(void);
void
test_training_deterministic_20_runs(void)
{
	static const char *words[] = {"dog", "cat", "apple", "lemon", "red", "happy"};
	static const char *label_names[] = {
		"the big red dog and the small happy cat see people today",
		"a very old horse likes a new banana and an orange here",
	};
	const char *dir = unit_model_dir("tiny-relu");
	const char *texts[24],
			   *labels[24];
	PtTextSet	set = {24, texts, NULL, labels};
	PtTrainOptions opt;
	PtModel    *m;
	float	   *first = NULL;
	size_t		n_values = 0;
	int			saved_threads = pt_get_threads(),
				differing = 0,
				target_tokens = 0;

	REQUIRE(dir != NULL);
	m = pt_model_load(dir);
	REQUIREF(m != NULL, "%s", pt_error_message());
	for (int i = 0; i < 24; i++)
	{
		texts[i] = words[i % 6];
		labels[i] = label_names[(i / 2) % 2];
	}
	pt_train_options_default(&opt);
	opt.prompt_length = 1;
	opt.init = PT_INIT_RANDOM_UNIFORM;
	opt.batch_size = 8;
	opt.epochs = 0;
	opt.max_steps = 6;
	opt.validation_fraction = 0;
	pt_set_threads(2);
	for (int run = 0; run < 20; run++)
	{
		PtTrainer  *t = pt_trainer_new(m, &opt, &set, NULL);
		const PtTrainResult *r;

		if (t == NULL || pt_train_run(t, NULL, NULL) != 0)
		{
			CHECKF(false, "run %d: %s", run, pt_error_message());
			pt_trainer_free(t);
			break;
		}
		r = pt_trainer_result(t);
		if (run == 0)
		{
			const PtTask *task = pt_trainer_task(t);

			for (int j = 0; j < task->n_labels; j++)
				target_tokens = task->labels[j].n_target > target_tokens ?
					task->labels[j].n_target : target_tokens;
			n_values = (size_t) r->prompts[0]->length * m->cfg.d_model;
			first = malloc(sizeof(float) * n_values);
			memcpy(first, r->prompts[0]->values, sizeof(float) * n_values);
		}
		else
			differing += memcmp(first, r->prompts[0]->values, sizeof(float) * n_values) != 0;
		pt_trainer_free(t);
	}
	pt_set_threads(saved_threads);
	/* the point of the shape: the decoder (label + EOS) is longer than prompt + text + EOS */
	CHECKF(target_tokens > 1 + 2 + 1, "labels have only %d target tokens", target_tokens);
	CHECKF(differing == 0, "%d of 19 repeated trainings gave a different prompt", differing);
	free(first);
	pt_model_free(m);
}
