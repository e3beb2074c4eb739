/*
 * trainer.c - the prompt-tuning loop (see trainer.h).
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "classifier.h"
#include "error.h"
#include "objective.h"
#include "rng.h"
#include "runtime.h"
#include "trainer.h"

/*
 * Tokenized rows: ids of row i are ids[i][0..n_ids[i]), label index label[i]
 * (classification), or target[i][0..n_target[i]) (generation: the row's own
 * target, EOS included; NULL arrays for classification).
 */
typedef struct TokenSet
{
	int			n;
	int32_t   **ids;
	int		   *n_ids;
	int		   *label;
	int32_t   **target;
	int		   *n_target;
} TokenSet;

struct PtTrainer
{
	const PtModel *m;
	PtTrainOptions opt;
	PtTask	   *task;
	TokenSet	train,
				val,			/* the rows that choose the best checkpoint */
				test;			/* held-out rows, only measured at the end (may be empty) */
	PtWorkspace ws;

	/* the member being trained */
	int			member;
	PtPrompt   *prompt;			/* current values */
	PtPrompt   *best;			/* best by validation accuracy so far */
	double		best_acc,
				best_loss;
	int			evals_since_gain;
	PtOptimizer *optimizer;
	PtRng		rng;
	int		   *order;			/* shuffled row order of the current epoch */
	int			order_pos;
	float	   *grad;			/* [P, d] */
	PtExample  *batch;			/* [batch_size] */
	float	  **batch_grads;	/* [batch_size], all pointing at grad */
	double		loss_sum;		/* since the last validation */
	int			loss_steps;
	double		step_seconds;	/* total time in optimisation steps, less yield_seconds */
	PtYield		yield;			/* the caller's hook (pt_trainer_set_yield) */
	double		yield_seconds;	/* time spent in it during the unit of work in progress */
	long		rows_trained;

	/* rows as they stream in (pt_trainer_add_rows): label = index into row_labels */
	bool		rows_closed;
	char	  **row_labels;		/* distinct labels in order of appearance */
	int			n_row_labels;
	int			cap_row_labels;
	int			cap_rows;

	/* the unit of work in progress (pt_trainer_advance) */
	int			phase;			/* PHASE_* */
	bool		in_step;		/* a mini-batch is chosen and partly computed */
	int			batch_pos;		/* rows of it done */
	int			batch_tokens;	/* its target tokens: each token's weight is 1 / this */
	double		batch_loss;
	float	   *micro_grad;		/* [P, d]: one micro-batch's gradient, added into grad */
	bool		step_boundary;	/* a whole step (with its validation) just ended */
	int			unit_rows;		/* rows the last pt_trainer_advance() put through the model */
	int			eval_pos;		/* validation rows scored so far */
	int			eval_correct;
	double		eval_nll;

	/* results */
	PtTrainProgress progress;
	PtTrainResult result;
	double		started;
	bool		done;
	bool		failed;			/* a step failed: no more steps */
};

/* What pt_trainer_advance() works on. */
enum
{
	PHASE_TRAIN,				/* micro-batches of the current step */
	PHASE_VALIDATE,				/* the member's prompt on the validation rows */
	PHASE_FINAL_EVAL,			/* the final prompts (the ensemble) on the validation rows */
	PHASE_FINAL_TEST			/* the final prompts on the held-out rows */
};


void
pt_train_options_default(PtTrainOptions *o)
{
	*o = (PtTrainOptions) {
		.prompt_length = PT_DEFAULT_PROMPT_LENGTH,
		.init = PT_INIT_CLASS_LABELS,
		.optimizer = PT_OPT_ADAFACTOR,
		.learning_rate = PT_DEFAULT_LEARNING_RATE,
		.weight_decay = -1.0,
		.max_grad_norm = -1.0,
		.min_dim_size_to_factor = PT_ADAFACTOR_MIN_DIM_TO_FACTOR,
		.adafactor_start_step = 0,
		.batch_size = PT_DEFAULT_BATCH_SIZE,
		.epochs = PT_DEFAULT_EPOCHS,
		.max_steps = 0,
		.validation_fraction = PT_DEFAULT_VALIDATION_FRACTION,
		.eval_every = 0,
		.patience = 0,
		.ensemble_size = 1,
		.seed = PT_DEFAULT_SEED,
		.max_input_tokens = PT_DEFAULT_MAX_INPUT_TOKENS,
		.scoring = PT_SCORE_LABEL_TOKENS,
		.objective = PT_OBJECTIVE_CLASSIFICATION,
	};
}

static int
validate_options(const PtTrainOptions *o)
{
	if (o->prompt_length < 1 || o->prompt_length > PT_PROMPT_MAX_LENGTH)
		return pt_fail(PT_ERR_ARGUMENT, "prompt_length must be between 1 and %d", PT_PROMPT_MAX_LENGTH);
	if (!(o->learning_rate > 0 && o->learning_rate <= PT_MAX_LEARNING_RATE))
		return pt_fail(PT_ERR_ARGUMENT, "learning_rate must be in (0, %d]", PT_MAX_LEARNING_RATE);
	if (o->batch_size < 1 || o->batch_size > PT_MAX_BATCH_SIZE)
		return pt_fail(PT_ERR_ARGUMENT, "batch_size must be between 1 and %d", PT_MAX_BATCH_SIZE);
	if (o->epochs < 0 || o->epochs > PT_MAX_EPOCHS || o->max_steps < 0 || o->max_steps > PT_MAX_STEPS)
		return pt_fail(PT_ERR_ARGUMENT, "epochs must be between 0 and %d, max_steps between 0 and %d",
					   PT_MAX_EPOCHS, PT_MAX_STEPS);
	if (o->epochs == 0 && o->max_steps == 0)
		return pt_fail(PT_ERR_ARGUMENT, "give epochs or max_steps");
	if (!(o->validation_fraction >= 0 && o->validation_fraction <= PT_MAX_VALIDATION_FRACTION))
		return pt_fail(PT_ERR_ARGUMENT, "validation_fraction must be in [0, %g]", PT_MAX_VALIDATION_FRACTION);
	if (o->ensemble_size < 1 || o->ensemble_size > PT_MAX_ENSEMBLE_SIZE)
		return pt_fail(PT_ERR_ARGUMENT, "ensemble_size must be between 1 and %d", PT_MAX_ENSEMBLE_SIZE);
	if (o->max_input_tokens < PT_MIN_INPUT_TOKENS || o->max_input_tokens > PT_MAX_INPUT_TOKENS)
		return pt_fail(PT_ERR_ARGUMENT, "max_input_tokens must be between %d and %d",
					   PT_MIN_INPUT_TOKENS, PT_MAX_INPUT_TOKENS);
	if (o->min_dim_size_to_factor < 0 || o->adafactor_start_step < 0 ||
		o->adafactor_start_step > PT_MAX_ADAFACTOR_START_STEP)
		return pt_fail(PT_ERR_ARGUMENT, "min_dim_size_to_factor and adafactor_start_step must not be negative (or absurd)");
	if (o->eval_every < 0 || o->patience < 0 || isnan(o->max_grad_norm))
		return pt_fail(PT_ERR_ARGUMENT, "eval_every and patience must not be negative, max_grad_norm not NaN "
					   "(a negative max_grad_norm selects the optimizer's default)");
	if (o->objective != PT_OBJECTIVE_CLASSIFICATION && o->objective != PT_OBJECTIVE_GENERATION)
		return pt_fail(PT_ERR_ARGUMENT, "unknown objective %d", (int) o->objective);
	if (o->objective == PT_OBJECTIVE_GENERATION && o->ensemble_size != 1)
		return pt_fail(PT_ERR_ARGUMENT, "the generation objective trains one prompt (ensemble_size 1): "
					   "decoded texts cannot be voted on");
	if (!(o->weight_decay < 1))
		return pt_fail(PT_ERR_ARGUMENT, "weight_decay must be below 1 (a negative value selects "
					   "the optimizer's default)");
	return 0;
}

/* Grows *array to cap elements of size bytes (contents kept). */
static int
grow(void **array, size_t cap, size_t size)
{
	void	   *grown = realloc(*array, cap * size);

	if (grown == NULL)
		return pt_fail(PT_ERR_NOMEM, "out of memory for %zu training rows", cap);
	*array = grown;
	return 0;
}

static void
free_token_set(TokenSet *s)
{
	for (int i = 0; i < s->n; i++)
	{
		free(s->ids[i]);
		if (s->target)
			free(s->target[i]);
	}
	free(s->ids);
	free(s->n_ids);
	free(s->label);
	free(s->target);
	free(s->n_target);
	memset(s, 0, sizeof(*s));
}

/* Tokenizes a generation row's target text into out->target[at] (EOS included). */
static int
add_target(const PtModel *m, const char *text, TokenSet *out, int at)
{
	int32_t		ids[PT_MAX_TARGET_TOKENS];
	int			n = pt_encode_target(m, text, strlen(text), ids);

	out->target[at] = n < 0 ? NULL : pt_calloc(n, sizeof(int32_t));
	if (out->target[at] == NULL)
		return -1;
	memcpy(out->target[at], ids, sizeof(int32_t) * n);
	out->n_target[at] = n;
	return 0;
}

/* The target of row r of set: its label's (classification) or its own (generation). */
static const int32_t *
row_target(const PtTrainer *t, const TokenSet *set, int r, int *n_target)
{
	if (set->target)
	{
		*n_target = set->n_target[r];
		return set->target[r];
	}
	*n_target = t->task->labels[set->label[r]].n_target;
	return t->task->labels[set->label[r]].target;
}

/*
 * Tokenizes the rows of set (validation or held-out: `what`); rows without a
 * text or label are counted; a label the task lacks is an error.
 */
static int
tokenize_set(const PtModel *m, const PtTask *task, const PtTextSet *set, const char *what,
			 TokenSet *out, int *skipped)
{
	int32_t    *buf = pt_calloc(task->max_input_tokens, sizeof(int32_t));

	bool		generation = task->n_labels == 0;

	out->ids = pt_calloc(set->n + 1, sizeof(int32_t *));
	out->n_ids = pt_calloc(set->n + 1, sizeof(int));
	out->label = pt_calloc(set->n + 1, sizeof(int));
	if (generation)
	{
		out->target = pt_calloc(set->n + 1, sizeof(int32_t *));
		out->n_target = pt_calloc(set->n + 1, sizeof(int));
	}
	if (!buf || !out->ids || !out->n_ids || !out->label ||
		(generation && (!out->target || !out->n_target)))
	{
		free(buf);
		return -1;
	}
	for (int i = 0; i < set->n; i++)
	{
		int			label,
					n;

		if (set->texts[i] == NULL || set->labels[i] == NULL)
		{
			(*skipped)++;
			continue;
		}
		label = generation ? 0 : pt_task_label_index(task, set->labels[i]);
		if (label < 0)
		{
			pt_fail(PT_ERR_ARGUMENT, "%s label \"%s\" does not occur in the training rows",
					what, set->labels[i]);
			free(buf);
			return -1;
		}
		n = pt_encode_input(m, task->max_input_tokens, set->texts[i],
							set->lens ? set->lens[i] : strlen(set->texts[i]), buf);
		if (n < 0)
		{
			free(buf);
			return -1;
		}
		out->ids[out->n] = pt_calloc(n, sizeof(int32_t));
		if (out->ids[out->n] == NULL)
		{
			free(buf);
			return -1;
		}
		memcpy(out->ids[out->n], buf, sizeof(int32_t) * n);
		out->n_ids[out->n] = n;
		out->label[out->n] = label;
		if (generation && add_target(m, set->labels[i], out, out->n) != 0)
		{
			free(out->ids[out->n]);
			free(buf);
			return -1;
		}
		out->n++;
	}
	free(buf);
	return 0;
}

/* Moves a seeded random `count` rows of train into val (which has room for them). */
static int
split_validation(TokenSet *train, TokenSet *val, int count, unsigned long long seed)
{
	int		   *order = pt_calloc(train->n + 1, sizeof(int));
	bool	   *to_val = pt_calloc(train->n + 1, sizeof(bool));
	PtRng		rng;
	int			kept = 0;

	if (order == NULL || to_val == NULL)
	{
		free(order);
		free(to_val);
		return -1;
	}
	pt_rng_seed(&rng, seed ^ 0x76616c6964617465ull);	/* "validate" */
	for (int i = 0; i < train->n; i++)
		order[i] = i;
	pt_rng_shuffle(&rng, order, train->n);
	for (int i = 0; i < count; i++)
		to_val[order[i]] = true;
	for (int i = 0; i < train->n; i++)
	{
		TokenSet   *dst = to_val[i] ? val : train;
		int			at = to_val[i] ? val->n++ : kept++;

		dst->ids[at] = train->ids[i];
		dst->n_ids[at] = train->n_ids[i];
		dst->label[at] = train->label[i];
		if (train->target)
		{
			dst->target[at] = train->target[i];
			dst->n_target[at] = train->n_target[i];
		}
	}
	train->n = kept;
	free(order);
	free(to_val);
	return 0;
}

static long
steps_per_member(const PtTrainer *t)
{
	long		per_epoch = (t->train.n + t->opt.batch_size - 1) / t->opt.batch_size;
	long		steps = t->opt.epochs > 0 ? per_epoch * t->opt.epochs : t->opt.max_steps;

	if (t->opt.max_steps > 0 && t->opt.max_steps < steps)
		steps = t->opt.max_steps;
	return steps;
}

static int
start_member(PtTrainer *t, int member)
{
	PtOptimizerOptions oo;

	pt_optimizer_options_default(&oo, t->opt.optimizer);
	oo.learning_rate = t->opt.learning_rate;
	if (t->opt.weight_decay >= 0)
		oo.weight_decay = t->opt.weight_decay;
	oo.min_dim_size_to_factor = t->opt.min_dim_size_to_factor;
	oo.start_step = t->opt.adafactor_start_step;

	t->member = member;
	pt_rng_seed(&t->rng, t->opt.seed + 1000003ull * (unsigned long long) member);
	pt_prompt_free(t->prompt);
	pt_prompt_free(t->best);
	pt_optimizer_free(t->optimizer);
	t->best = NULL;
	t->prompt = pt_prompt_new(t->m, t->task, t->opt.prompt_length, t->opt.init, &t->rng);
	t->optimizer = pt_optimizer_new(&oo, t->opt.prompt_length, t->m->cfg.d_model);
	if (t->prompt == NULL || t->optimizer == NULL)
		return -1;
	t->best_acc = -1.0;
	t->best_loss = INFINITY;
	t->evals_since_gain = 0;
	for (int i = 0; i < t->train.n; i++)
		t->order[i] = i;
	pt_rng_shuffle(&t->rng, t->order, t->train.n);
	t->order_pos = 0;
	t->loss_sum = 0.0;
	t->loss_steps = 0;
	t->progress.member = member;
	t->progress.step = 0;
	t->progress.epoch = 1;
	t->progress.val_accuracy = NAN;
	t->progress.val_loss = NAN;
	t->progress.best_val_accuracy = NAN;
	return 0;
}

/*
 * The end of a validation slice (both objectives): 0 while rows of set are
 * left; once all are scored, sets *accuracy (the share of rows right) and
 * *loss (the mean of the per-row losses summed in eval_nll), resets the
 * counters for the next validation and returns 1.
 */
static int
validation_done(PtTrainer *t, const TokenSet *set, double *accuracy, double *loss)
{
	if (t->eval_pos < set->n)
		return 0;
	*accuracy = set->n ? (double) t->eval_correct / set->n : NAN;
	*loss = set->n ? t->eval_nll / set->n : NAN;
	t->eval_pos = 0;
	t->eval_correct = 0;
	t->eval_nll = 0.0;
	return 1;
}

/*
 * Scores up to max_rows more rows of set with the given prompts (several:
 * the ensemble's vote), in chunks of at most 64.  Returns 1 when every row is
 * scored (then *accuracy and *loss, the mean -log p(true label), are set and
 * the counters reset), 0 when rows are left, -1 on error.
 */
static int	evaluate_generation_slice(PtTrainer *t, const TokenSet *set, const PtPrompt *prompt,
									  int max_rows, double *accuracy, double *loss);

static int
evaluate_slice(PtTrainer *t, const TokenSet *set, PtPrompt *const *prompts, int n_prompts, int max_rows,
			   double *accuracy, double *loss)
{
	int			chunk = 64;
	const float *values[64];
	int			lens[64];
	PtClassifyRow rows[64];
	PtClassifyResult results[64];
	int			end = set->n - t->eval_pos < max_rows ? set->n : t->eval_pos + max_rows;
	float	   *probs;

	if (t->opt.objective == PT_OBJECTIVE_GENERATION)
		return evaluate_generation_slice(t, set, prompts[0], max_rows, accuracy, loss);
	probs = pt_calloc((size_t) chunk * t->task->n_labels, sizeof(float));
	if (probs == NULL)
		return -1;
	for (int k = 0; k < n_prompts; k++)
	{
		values[k] = prompts[k]->values;
		lens[k] = prompts[k]->length;
	}
	while (t->eval_pos < end)
	{
		int			start = t->eval_pos;
		int			n = end - start < chunk ? end - start : chunk;

		for (int i = 0; i < n; i++)
		{
			rows[i] = (PtClassifyRow) {t->task, t->opt.scoring, n_prompts, values, lens,
				set->ids[start + i], set->n_ids[start + i]};
			results[i].probs = probs + (size_t) i * t->task->n_labels;
		}
		if (pt_classify(t->m, &t->ws, rows, n, results) != 0)
		{
			free(probs);
			return -1;
		}
		for (int i = 0; i < n; i++)
		{
			int			truth = set->label[start + i];

			t->eval_correct += results[i].label == truth;
			t->eval_nll -= log(fmax(results[i].probs[truth], 1e-30));
		}
		t->eval_pos += n;
		t->unit_rows += n;
	}
	free(probs);
	return validation_done(t, set, accuracy, loss);
}

/*
 * Generation's validation: exact match of greedy decoding with each row's
 * target, and the mean token cross-entropy.  Greedy decoding reproduces the
 * target exactly if and only if, fed the target's own prefix, the model's
 * most likely next token is the target's next token at every position, EOS
 * included (by induction over the steps: each step's input is then the
 * target's prefix).  So one teacher-forced pass per row, [n_target, V]
 * logits, decides exact match without running the decoder step by step;
 * ties go to the lowest token id, as in greedy decoding.  Same contract as
 * evaluate_slice().
 */
static int
evaluate_generation_slice(PtTrainer *t, const TokenSet *set, const PtPrompt *prompt, int max_rows,
						  double *accuracy, double *loss)
{
	enum
	{
		CHUNK = 64
	};
	PtExample	ex[CHUNK];
	double		mean_ce[CHUNK];
	const float *logits[CHUNK];
	int			V = t->m->cfg.vocab_size;
	int			end = set->n - t->eval_pos < max_rows ? set->n : t->eval_pos + max_rows;

	while (t->eval_pos < end)
	{
		int			start = t->eval_pos;
		int			n = end - start < CHUNK ? end - start : CHUNK;

		for (int i = 0; i < n; i++)
		{
			int			n_target;
			const int32_t *target = row_target(t, set, start + i, &n_target);

			ex[i] = (PtExample) {prompt->values, prompt->length, set->ids[start + i],
				set->n_ids[start + i], target, n_target, 1.0f / n_target};
		}
		if (isnan(pt_objective(t->m, &t->ws, ex, n, mean_ce, NULL, logits)))
			return -1;
		for (int i = 0; i < n; i++)
		{
			bool		exact = true;

			for (int j = 0; j < ex[i].n_target && exact; j++)
			{
				const float *row = logits[i] + (size_t) j * V;
				int			best = 0;

				for (int v = 1; v < V; v++)
					if (row[v] > row[best])
						best = v;
				exact = best == ex[i].target_ids[j];
			}
			t->eval_correct += exact;
			t->eval_nll += mean_ce[i];
		}
		t->eval_pos += n;
		t->unit_rows += n;
	}
	return validation_done(t, set, accuracy, loss);
}

PtTrainer *
pt_trainer_open(const PtModel *m, const PtTrainOptions *opt)
{
	PtTrainer  *t;

	if (validate_options(opt) != 0)
		return NULL;
	t = pt_calloc(1, sizeof(PtTrainer));
	if (t == NULL)
		return NULL;
	t->m = m;
	t->opt = *opt;
	if (t->opt.max_grad_norm < 0)	/* the optimizer's default (none for Adafactor) */
		t->opt.max_grad_norm = pt_optimizer_default_max_grad_norm(opt->optimizer);
	t->started = pt_seconds();
	return t;
}

/*
 * The hook the training passes call (through the workspace): the caller's,
 * timed, so that the time spent on other work there is not counted as
 * training time (rows_per_second, the worker's slice sizing).
 */
static int
timed_yield(void *arg)
{
	PtTrainer  *t = arg;
	double		start = pt_seconds();
	int			rc = t->yield.fn(t->yield.arg);

	t->yield_seconds += pt_seconds() - start;
	return rc;
}

void
pt_trainer_set_yield(PtTrainer *t, PtYieldFn fn, void *arg)
{
	t->yield = (PtYield) {fn, arg};
	t->ws.yield = fn ? (PtYield) {timed_yield, t} : (PtYield) {NULL, NULL};
}

double
pt_trainer_unit_yield_seconds(const PtTrainer *t)
{
	return t->yield_seconds;
}

/* The index of a row's label among those seen so far (added if new); -1 on error. */
static int
row_label_index(PtTrainer *t, const char *label)
{
	for (int j = t->n_row_labels - 1; j >= 0; j--)
		if (strcmp(t->row_labels[j], label) == 0)
			return j;
	if (t->n_row_labels == PT_MAX_LABELS)
		return pt_fail(PT_ERR_ARGUMENT, "the training rows have more than %d distinct labels", PT_MAX_LABELS);
	if (t->n_row_labels == t->cap_row_labels)
	{
		int			cap = t->cap_row_labels ? 2 * t->cap_row_labels : 16;
		char	  **grown = realloc(t->row_labels, sizeof(char *) * cap);

		if (grown == NULL)
			return pt_fail(PT_ERR_NOMEM, "out of memory");
		t->row_labels = grown;
		t->cap_row_labels = cap;
	}
	t->row_labels[t->n_row_labels] = pt_strdup(label);
	if (t->row_labels[t->n_row_labels] == NULL)
		return -1;
	return t->n_row_labels++;
}

int
pt_trainer_add_rows(PtTrainer *t, const PtTextSet *set)
{
	int32_t    *buf;

	if (t->rows_closed)
		return pt_fail(PT_ERR_ARGUMENT, "rows are added before training starts");
	if (t->train.n + set->n > t->cap_rows)
	{
		int			cap = t->cap_rows ? t->cap_rows : 1024;

		while (cap < t->train.n + set->n)
			cap *= 2;
		if (grow((void **) &t->train.ids, cap, sizeof(int32_t *)) != 0 ||
			grow((void **) &t->train.n_ids, cap, sizeof(int)) != 0 ||
			grow((void **) &t->train.label, cap, sizeof(int)) != 0)
			return -1;
		if (t->opt.objective == PT_OBJECTIVE_GENERATION &&
			(grow((void **) &t->train.target, cap, sizeof(int32_t *)) != 0 ||
			 grow((void **) &t->train.n_target, cap, sizeof(int)) != 0))
			return -1;
		t->cap_rows = cap;
	}
	buf = pt_calloc(t->opt.max_input_tokens, sizeof(int32_t));
	if (buf == NULL)
		return -1;
	for (int i = 0; i < set->n; i++)
	{
		int			label,
					n;

		if (set->texts[i] == NULL || set->labels[i] == NULL)
		{
			t->result.skipped_rows++;
			continue;
		}
		if (t->opt.objective == PT_OBJECTIVE_GENERATION)
			label = add_target(t->m, set->labels[i], &t->train, t->train.n);	/* 0 or -1 */
		else
			label = row_label_index(t, set->labels[i]);
		n = label < 0 ? -1 : pt_encode_input(t->m, t->opt.max_input_tokens, set->texts[i],
											 set->lens ? set->lens[i] : strlen(set->texts[i]), buf);
		if (n < 0 || (t->train.ids[t->train.n] = pt_calloc(n, sizeof(int32_t))) == NULL)
		{
			if (label >= 0 && t->train.target)
				free(t->train.target[t->train.n]);	/* the set does not count this row yet */
			free(buf);
			return -1;
		}
		memcpy(t->train.ids[t->train.n], buf, sizeof(int32_t) * n);
		t->train.n_ids[t->train.n] = n;
		t->train.label[t->train.n] = label;
		t->train.n++;
	}
	free(buf);
	return 0;
}

static int	close_split(PtTrainer *t, const PtTextSet *dev);

int
pt_trainer_close_rows(PtTrainer *t, const PtTextSet *dev)
{
	const PtTrainOptions *opt = &t->opt;
	const PtModel *m = t->m;
	int			n_labels = t->n_row_labels;
	int		   *order,
			   *rank;
	const char **sorted;

	if (t->rows_closed)
		return 0;
	t->rows_closed = true;
	if (opt->objective == PT_OBJECTIVE_GENERATION)
	{
		t->task = pt_task_new_generation(opt->max_input_tokens);
		if (t->task == NULL)
			return -1;
		return close_split(t, dev);
	}
	if (n_labels < 2)
		return pt_fail(PT_ERR_ARGUMENT, "the training rows have %d distinct label%s; prompt tuning needs at least 2",
					   n_labels, n_labels == 1 ? "" : "s");

	/* the task's labels are sorted; rows refer to them by their sorted index */
	order = pt_calloc(n_labels, sizeof(int));
	rank = pt_calloc(n_labels, sizeof(int));
	sorted = pt_calloc(n_labels, sizeof(char *));
	if (!order || !rank || !sorted)
	{
		free(order);
		free(rank);
		free(sorted);
		return -1;
	}
	/* insertion sort of label indices: at most PT_MAX_LABELS of them */
	for (int j = 0; j < n_labels; j++)
	{
		int			k = j;

		for (; k > 0 && strcmp(t->row_labels[order[k - 1]], t->row_labels[j]) > 0; k--)
			order[k] = order[k - 1];
		order[k] = j;
	}
	for (int j = 0; j < n_labels; j++)
	{
		rank[order[j]] = j;
		sorted[j] = t->row_labels[order[j]];
	}
	for (int i = 0; i < t->train.n; i++)
		t->train.label[i] = rank[t->train.label[i]];
	t->task = pt_task_new(m, sorted, n_labels, opt->max_input_tokens);
	free(order);
	free(rank);
	free(sorted);
	if (t->task == NULL)
		return -1;
	return close_split(t, dev);
}

/* The rows are in and the task is made: the validation split, then the first member. */
static int
close_split(PtTrainer *t, const PtTextSet *dev)
{
	const PtTrainOptions *opt = &t->opt;
	const PtModel *m = t->m;

	if (dev)
	{
		if (tokenize_set(m, t->task, dev, "validation", &t->val, &t->result.skipped_rows) != 0)
			return -1;
	}
	else
	{
		int			count = (int) floor(opt->validation_fraction * t->train.n);

		t->val.ids = pt_calloc(count + 1, sizeof(int32_t *));
		t->val.n_ids = pt_calloc(count + 1, sizeof(int));
		t->val.label = pt_calloc(count + 1, sizeof(int));
		if (t->train.target)
		{
			t->val.target = pt_calloc(count + 1, sizeof(int32_t *));
			t->val.n_target = pt_calloc(count + 1, sizeof(int));
			if (!t->val.target || !t->val.n_target)
				return -1;
		}
		if (!t->val.ids || !t->val.n_ids || !t->val.label ||
			split_validation(&t->train, &t->val, count, opt->seed) != 0)
			return -1;
	}
	if (t->train.n == 0)
		return pt_fail(PT_ERR_ARGUMENT, "no training rows are left (all NULL, or all held out for validation)");
	if (t->opt.eval_every == 0)
	{
		long		per_epoch = (t->train.n + opt->batch_size - 1) / opt->batch_size;

		t->opt.eval_every = (int) (per_epoch < 100 ? per_epoch : 100);
	}

	t->order = pt_calloc(t->train.n, sizeof(int));
	t->grad = pt_calloc((size_t) opt->prompt_length * m->cfg.d_model, sizeof(float));
	t->micro_grad = pt_calloc((size_t) opt->prompt_length * m->cfg.d_model, sizeof(float));
	t->batch = pt_calloc(opt->batch_size, sizeof(PtExample));
	t->batch_grads = pt_calloc(opt->batch_size, sizeof(float *));
	t->result.prompts = pt_calloc(opt->ensemble_size, sizeof(PtPrompt *));
	if (!t->order || !t->grad || !t->micro_grad || !t->batch || !t->batch_grads || !t->result.prompts)
		return -1;
	t->result.train_rows = t->train.n;
	t->result.val_rows = t->val.n;
	t->result.n_labels = t->task->n_labels;
	t->progress.n_members = opt->ensemble_size;
	t->progress.total_steps = steps_per_member(t);
	return start_member(t, 0);
}

int
pt_trainer_set_test(PtTrainer *t, const PtTextSet *test)
{
	int			skipped = 0;

	if (!t->rows_closed || t->progress.step > 0 || t->member > 0 || t->test.n > 0)
		return pt_fail(PT_ERR_ARGUMENT, "give the held-out rows before the first step, once");
	if (tokenize_set(t->m, t->task, test, "held-out", &t->test, &skipped) != 0)
		return -1;
	t->result.test_rows = t->test.n;
	t->result.skipped_rows += skipped;
	return 0;
}

long
pt_trainer_rows(const PtTrainer *t)
{
	return t->train.n + t->val.n;
}

PtTrainer *
pt_trainer_new(const PtModel *m, const PtTrainOptions *opt, const PtTextSet *train,
			   const PtTextSet *dev)
{
	PtTrainer  *t = pt_trainer_open(m, opt);

	if (t == NULL)
		return NULL;
	if (pt_trainer_add_rows(t, train) != 0 || pt_trainer_close_rows(t, dev) != 0)
	{
		pt_trainer_free(t);
		return NULL;
	}
	return t;
}

/* Next batch_size rows of the shuffled order; a new epoch reshuffles. */
static int
next_row(PtTrainer *t)
{
	if (t->order_pos == t->train.n)
	{
		pt_rng_shuffle(&t->rng, t->order, t->train.n);
		t->order_pos = 0;
		t->progress.epoch++;
	}
	return t->order[t->order_pos++];
}

/*
 * The prompt's metadata: how it was trained, as JSON built by jansson (so
 * always valid: no nan, strings escaped).  selection_accuracy is the best
 * validation accuracy, on the rows that chose this checkpoint (null without
 * validation rows).
 */
static char *
member_metadata(const PtTrainer *t)
{
	json_t	   *meta = json_pack("{s:s, s:s, s:f, s:I, s:i, s:I, s:i, s:o}",
								 "init", pt_init_name(t->opt.init),
								 "optimizer", pt_optimizer_name(t->opt.optimizer),
								 "learning_rate", t->opt.learning_rate,
								 "seed", (json_int_t) t->opt.seed,
								 "member", t->member,
								 "steps", (json_int_t) t->progress.step,
								 "selection_rows", t->val.n,
								 "selection_accuracy",
								 t->best ? json_real(t->best_acc) : json_null());
	char	   *text;

	/* generation prompts say so (and their target budget); classification's metadata is unchanged */
	if (meta && t->opt.objective == PT_OBJECTIVE_GENERATION &&
		(json_object_set_new(meta, "objective", json_string("generation")) != 0 ||
		 json_object_set_new(meta, "max_target_tokens", json_integer(PT_MAX_TARGET_TOKENS)) != 0))
	{
		json_decref(meta);
		meta = NULL;
	}
	text = meta ? json_dumps(meta, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
	char	   *out;

	json_decref(meta);
	if (text == NULL)
	{
		pt_fail(PT_ERR_NOMEM, "out of memory");
		return NULL;
	}
	out = pt_strdup(text);		/* the prompt frees it with free() */
	free(text);
	return out;
}

/* The member is done: keep its best (or last) prompt; start the next member, or the final validation. */
static int
finish_member(PtTrainer *t)
{
	PtPrompt   *keep = t->best ? t->best : t->prompt;
	char	   *meta = member_metadata(t);

	if (meta == NULL)
		return -1;
	free(keep->metadata);
	keep->metadata = meta;
	t->result.prompts[t->member] = keep;
	if (keep == t->best)
		t->best = NULL;
	else
		t->prompt = NULL;
	t->result.n_prompts = t->member + 1;

	if (t->member + 1 < t->opt.ensemble_size)
		return start_member(t, t->member + 1);

	t->result.final_loss = t->progress.loss;
	t->result.seconds = pt_seconds() - t->started;
	t->result.labels = pt_calloc(t->task->n_labels + 1, sizeof(char *));
	if (t->result.labels == NULL)
		return -1;
	for (int j = 0; j < t->task->n_labels; j++)
		t->result.labels[j] = t->task->labels[j].text;
	t->result.selection_accuracy = NAN;
	t->result.test_accuracy = NAN;
	if (t->val.n > 0)
		t->phase = PHASE_FINAL_EVAL;
	else if (t->test.n > 0)
		t->phase = PHASE_FINAL_TEST;
	else
	{
		t->done = true;
		t->progress.finished = true;
	}
	return 0;
}

/* A step (and its validation, if one was due) is over: the member may be done. */
static int
end_of_step(PtTrainer *t)
{
	t->step_boundary = true;
	if (t->progress.step >= t->progress.total_steps)
	{
		if (finish_member(t) != 0)
			return -1;
		if (!t->done && t->phase == PHASE_TRAIN)
			t->progress.total_steps = steps_per_member(t);
	}
	return 0;
}

/*
 * Chooses the step's mini-batch: the next batch_size rows of the shuffled
 * order.  The loss is the mean over all its target tokens, so each token
 * weighs 1 / (the batch's target tokens) whichever micro-batch it is in.
 */
static void
begin_step(PtTrainer *t)
{
	int			B = t->opt.batch_size;

	t->batch_tokens = 0;
	for (int i = 0; i < B; i++)
	{
		int			r = next_row(t);
		int			n_target;
		const int32_t *target = row_target(t, &t->train, r, &n_target);

		t->batch[i] = (PtExample) {t->prompt->values, t->opt.prompt_length, t->train.ids[r],
			t->train.n_ids[r], target, n_target, 0.0f};
		t->batch_grads[i] = t->micro_grad;
		t->batch_tokens += n_target;
	}
	for (int i = 0; i < B; i++)
		t->batch[i].weight = 1.0f / t->batch_tokens;
	memset(t->grad, 0, sizeof(float) * (size_t) t->opt.prompt_length * t->m->cfg.d_model);
	t->batch_pos = 0;
	t->batch_loss = 0.0;
	t->in_step = true;
}

/*
 * Forward and backward over up to max_rows more rows of the mini-batch
 * (one micro-batch); their gradient [P, d] is added into grad.  Returns 1
 * when the mini-batch is complete, 0 when rows are left, -1 on error.
 */
static int
run_micro_batch(PtTrainer *t, int max_rows)
{
	int			k = t->opt.batch_size - t->batch_pos < max_rows ? t->opt.batch_size - t->batch_pos : max_rows;
	size_t		n = (size_t) t->opt.prompt_length * t->m->cfg.d_model;
	double		loss = pt_objective(t->m, &t->ws, t->batch + t->batch_pos, k, NULL,
									t->batch_grads + t->batch_pos, NULL);

	if (isnan(loss))
		return -1;				/* the caller says at which step */
	for (size_t j = 0; j < n; j++)
		t->grad[j] += t->micro_grad[j];
	t->batch_loss += loss;
	t->batch_pos += k;
	t->unit_rows = k;
	return t->batch_pos == t->opt.batch_size;
}

/* The mini-batch's gradient is complete: clip its norm, let the optimizer move the prompt. */
static int
end_step(PtTrainer *t)
{
	size_t		n = (size_t) t->opt.prompt_length * t->m->cfg.d_model;
	double		norm = 0.0;

	/*
	 * A NaN norm would skip the clipping and poison the prompt: stop instead,
	 * with the prompt as it was before this step.
	 */
	for (size_t k = 0; k < n; k++)
		norm += (double) t->grad[k] * t->grad[k];
	norm = sqrt(norm);
	if (!isfinite(norm))
		return pt_fail(PT_ERR_NUMERIC, "the prompt's gradient is %s (loss %g)",
					   isnan(norm) ? "NaN" : "infinite", t->batch_loss);
	if (t->opt.max_grad_norm > 0 && norm > t->opt.max_grad_norm)
		for (size_t k = 0; k < n; k++)
			t->grad[k] *= (float) (t->opt.max_grad_norm / norm);
	pt_optimizer_step(t->optimizer, t->prompt->values, t->grad);
	for (size_t k = 0; k < n; k++)
		if (!isfinite(t->prompt->values[k]))
			return pt_fail(PT_ERR_NUMERIC, "the optimizer's update made the prompt %s (gradient norm %g)",
						   isnan(t->prompt->values[k]) ? "NaN" : "infinite", norm);

	t->in_step = false;
	t->rows_trained += t->opt.batch_size;
	t->progress.rows_per_second = t->rows_trained / t->step_seconds;
	t->progress.step++;
	t->result.steps++;
	t->loss_sum += t->batch_loss;
	t->loss_steps++;

	if (t->progress.step % t->opt.eval_every == 0 || t->progress.step == t->progress.total_steps)
	{
		t->progress.loss = t->loss_steps ? t->loss_sum / t->loss_steps : NAN;
		t->loss_sum = 0.0;
		t->loss_steps = 0;
		if (t->val.n > 0)
		{
			t->phase = PHASE_VALIDATE;	/* the step ends with its validation */
			return 0;
		}
		t->progress.evaluated = true;
	}
	return end_of_step(t);
}

/* The member's validation is complete: keep the prompt if it is the best so far. */
static int
end_validation(PtTrainer *t, double acc, double loss)
{
	bool		gain = acc > t->best_acc || (acc == t->best_acc && loss < t->best_loss);

	t->phase = PHASE_TRAIN;
	t->progress.evaluated = true;
	t->progress.val_accuracy = acc;
	t->progress.val_loss = loss;
	if (gain)
	{
		pt_prompt_free(t->best);
		t->best = pt_prompt_copy(t->prompt);
		if (t->best == NULL)
			return -1;
		t->best_acc = acc;
		t->best_loss = loss;
		t->evals_since_gain = 0;
	}
	else
		t->evals_since_gain++;
	t->progress.best_val_accuracy = t->best_acc;
	if (t->opt.patience > 0 && t->evals_since_gain >= t->opt.patience)
		t->progress.total_steps = t->progress.step;	/* early stop */
	return end_of_step(t);
}

/*
 * Prefixes the current error with where training stopped, and keeps the
 * trainer stopped: a NaN is not something the next step would cure.
 */
static int
fail_at_step(PtTrainer *t)
{
	t->failed = true;
	if (t->opt.ensemble_size > 1)
		return pt_fail_context("training stopped at step %ld of ensemble member %d",
							   t->progress.step + 1, t->member + 1);
	return pt_fail_context("training stopped at step %ld", t->progress.step + 1);
}

int
pt_trainer_advance(PtTrainer *t, int max_rows)
{
	double		acc,
				loss,
				start = pt_seconds();
	int			rc;

	if (!t->rows_closed)
		return pt_fail(PT_ERR_ARGUMENT, "pt_trainer_close_rows() must come before training");
	if (t->done)
		return 1;
	if (t->failed)
		return pt_fail(PT_ERR_ARGUMENT, "this training stopped after an error");
	if (max_rows < 1)
		max_rows = 1;
	t->step_boundary = false;
	t->progress.evaluated = false;
	t->unit_rows = 0;
	t->yield_seconds = 0.0;
	switch (t->phase)
	{
		case PHASE_TRAIN:
			if (!t->in_step)
				begin_step(t);
			rc = run_micro_batch(t, max_rows);
			t->step_seconds += pt_seconds() - start - t->yield_seconds;
			if (rc < 0 || (rc == 1 && end_step(t) != 0))
				return fail_at_step(t);
			break;
		case PHASE_VALIDATE:
			rc = evaluate_slice(t, &t->val, &t->prompt, 1, max_rows, &acc, &loss);
			if (rc < 0 || (rc == 1 && end_validation(t, acc, loss) != 0))
				return fail_at_step(t);
			break;
		case PHASE_FINAL_EVAL:
		case PHASE_FINAL_TEST:
			rc = evaluate_slice(t, t->phase == PHASE_FINAL_EVAL ? &t->val : &t->test,
								t->result.prompts, t->result.n_prompts, max_rows, &acc, &loss);
			if (rc < 0)
				return -1;
			if (rc == 1 && t->phase == PHASE_FINAL_EVAL)
				t->result.selection_accuracy = acc;
			else if (rc == 1)
				t->result.test_accuracy = acc;
			if (rc == 1 && t->phase == PHASE_FINAL_EVAL && t->test.n > 0)
				t->phase = PHASE_FINAL_TEST;	/* then the held-out rows */
			else if (rc == 1)
			{
				t->done = true;
				t->progress.finished = true;
				t->step_boundary = true;
			}
			break;
	}
	return t->done ? 1 : 0;
}

int
pt_trainer_step(PtTrainer *t)
{
	int			rc;

	if (t->done)
		return 1;
	/* micro-batches as large as the mini-batch: one forward and backward per step */
	do
		rc = pt_trainer_advance(t, INT_MAX);
	while (rc == 0 && !t->step_boundary);
	return rc;
}

int
pt_trainer_unit_rows(const PtTrainer *t)
{
	return t->unit_rows;
}

const char *
pt_trainer_phase(const PtTrainer *t)
{
	if (!t->rows_closed)
		return "tokenizing";
	if (t->done)
		return "done";
	return t->phase == PHASE_TRAIN ? "training" : "validating";
}

const PtTrainProgress *
pt_trainer_progress(const PtTrainer *t)
{
	return &t->progress;
}

const PtTrainResult *
pt_trainer_result(const PtTrainer *t)
{
	return t->done ? &t->result : NULL;
}

const PtTask *
pt_trainer_task(const PtTrainer *t)
{
	return t->task;
}

const PtPrompt *
pt_trainer_prompt(const PtTrainer *t)
{
	return t->prompt;
}

PtPrompt **
pt_trainer_take_prompts(PtTrainer *t, int *n)
{
	PtPrompt  **out = t->result.prompts;

	*n = t->result.n_prompts;
	t->result.prompts = NULL;
	t->result.n_prompts = 0;
	return out;
}

void
pt_trainer_free(PtTrainer *t)
{
	if (t == NULL)
		return;
	pt_prompt_array_free(t->result.prompts, t->result.n_prompts);
	free(t->result.labels);
	pt_prompt_free(t->prompt);
	pt_prompt_free(t->best);
	pt_optimizer_free(t->optimizer);
	free(t->order);
	free(t->grad);
	free(t->micro_grad);
	for (int j = 0; j < t->n_row_labels; j++)
		free(t->row_labels[j]);
	free(t->row_labels);
	free(t->batch);
	free(t->batch_grads);
	free_token_set(&t->train);
	free_token_set(&t->val);
	free_token_set(&t->test);
	pt_workspace_free(&t->ws);
	pt_task_free(t->task);
	free(t);
}

int
pt_train_run(PtTrainer *t, PtProgressFn progress, void *arg)
{
	for (;;)
	{
		int			rc = pt_trainer_step(t);

		if (rc < 0)
			return -1;
		if (progress && progress(&t->progress, arg) != 0)
			return pt_fail(PT_ERR_CANCELLED, "training was cancelled");
		if (rc == 1)
			return 0;
	}
}
