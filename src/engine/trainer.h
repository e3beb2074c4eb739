/*
 * trainer.h - prompt tuning: train soft prompts for a labelled text set.
 *
 * The model stays frozen; only the P x d_model prompt is learned, by the
 * teacher-forced cross-entropy of each row's label target.  Mini-batches are
 * shuffled with the seed, a validation split is scored every eval_every
 * steps and the best prompt by validation accuracy is kept.  An ensemble
 * trains K prompts with different seeds.
 *
 * The trainer advances one optimisation step per pt_trainer_step() call, so
 * a caller can interleave other work and stop at any step boundary.
 * pt_train_run() is the simple loop around it, with a progress callback that
 * may ask to stop.  Finer still, pt_trainer_advance() does one bounded unit:
 * a micro-batch of a step (gradients accumulate until the mini-batch is
 * complete, giving the same step) or a slice of a validation; the database
 * worker serves classification between such units.  Rows may also arrive in
 * chunks (pt_trainer_open, pt_trainer_add_rows, pt_trainer_close_rows), each
 * tokenized as it comes, so the caller never holds the whole text set.
 */
#ifndef PT_TRAINER_H
#define PT_TRAINER_H

#include <stdbool.h>
#include <stddef.h>

#include "model.h"
#include "optimizer.h"
#include "prompt.h"
#include "task.h"
#include "yield.h"

typedef struct PtTrainOptions
{
	int			prompt_length;	/* P: 1 to PT_PROMPT_MAX_LENGTH */
	PtInit		init;
	PtOptimizerKind optimizer;
	double		learning_rate;
	double		weight_decay;	/* < 0: the optimizer's default (Adafactor 1e-5, Adam 0) */
	double		max_grad_norm;	/* clip the gradient's L2 norm; 0 = off; < 0: the optimizer's
								 * default (Adafactor off, Adam 1.0) */
	int			min_dim_size_to_factor; /* Adafactor: factor the second moment when
										 * min(P, d_model) >= this (T5X: 128) */
	long		adafactor_start_step;	/* Adafactor: T5X's step - step_offset at the
										 * start (0: fresh; the paper's runs: 1100000) */
	int			batch_size;
	int			epochs;			/* passes over the training rows (0 = only max_steps) */
	long		max_steps;		/* 0 = only epochs; both set: whichever ends first */
	double		validation_fraction;	/* held out when no separate set is given */
	int			eval_every;		/* steps between validations; 0 = automatic */
	int			patience;		/* stop after this many validations without gain; 0 = off */
	int			ensemble_size;
	unsigned long long seed;
	int			max_input_tokens;	/* including EOS */
	PtScoring	scoring;
	/*
	 * Classification (the default): the rows' targets are a label set.
	 * Generation: each row's target is its own text (cut to
	 * PT_MAX_TARGET_TOKENS with EOS); the prompt has no labels; validation
	 * measures exact match of greedy decoding; ensemble_size must be 1.
	 */
	PtObjectiveKind objective;
} PtTrainOptions;

/* The defaults: the paper's recipe (Adafactor, lr 0.3, class-label init). */
void		pt_train_options_default(PtTrainOptions *o);

/*
 * Labelled texts; rows whose text or label is NULL are skipped and counted.
 * For the generation objective `labels` holds each row's target text (any
 * text, the empty one included).
 */
typedef struct PtTextSet
{
	int			n;
	const char *const *texts;
	const size_t *lens;			/* NULL: use strlen */
	const char *const *labels;
} PtTextSet;

typedef struct PtTrainProgress
{
	int			member;			/* 0-based ensemble member being trained */
	int			n_members;
	long		step;			/* steps done by this member */
	long		total_steps;	/* steps planned per member */
	int			epoch;			/* current epoch of this member, 1-based */
	double		loss;			/* mean loss of the steps since the last validation */
	/*
	 * latest validation accuracy (NAN before the first); for generation the
	 * exact match of greedy decoding with the target
	 */
	double		val_accuracy;
	/* latest validation loss: mean -log p(true label); generation: mean token cross-entropy */
	double		val_loss;
	double		best_val_accuracy;
	double		rows_per_second;	/* training rows per second of step time */
	bool		evaluated;		/* the last step ended with a validation */
	bool		finished;
} PtTrainProgress;

typedef struct PtTrainResult
{
	int			n_prompts;		/* ensemble_size */
	PtPrompt  **prompts;		/* owned by the trainer until taken */
	int			n_labels;		/* 0 for generation */
	char	  **labels;			/* the task's labels (sorted) */
	int			train_rows;
	int			val_rows;		/* validation rows: they choose the best checkpoint */
	int			test_rows;		/* held-out rows given by pt_trainer_set_test() (else 0) */
	int			skipped_rows;	/* NULL text or label */
	long		steps;			/* over all members */
	double		seconds;
	double		final_loss;		/* mean training loss of the last steps */
	/*
	 * Accuracy of the final prompt(s) on the validation rows, NAN if none.
	 * Those rows chose the checkpoint, so this is optimistic: an estimate
	 * of accuracy on new rows is test_accuracy, on held-out rows that took
	 * no part in training or selection (NAN unless given).
	 */
	double		selection_accuracy;
	double		test_accuracy;
} PtTrainResult;

typedef struct PtTrainer PtTrainer;

/*
 * Sets up training on model m.  The labels are the distinct labels of
 * `train` (sorted); `dev` may be NULL (then validation_fraction of train is
 * held out).  Rows are tokenized here, once.
 */
PtTrainer  *pt_trainer_new(const PtModel *m, const PtTrainOptions *opt,
						   const PtTextSet *train, const PtTextSet *dev);
/*
 * Held-out rows to measure the final prompt(s) on, apart from the validation
 * rows (result.test_accuracy).  Call before the first step; labels must be
 * among the training labels.
 */
int			pt_trainer_set_test(PtTrainer *t, const PtTextSet *test);
/*
 * One optimisation step (and a validation when due): 0 more to do, 1 done,
 * -1 error.  A NaN or infinite loss, gradient or updated prompt is an error
 * (PT_ERR_NUMERIC) naming the step; after any error the trainer takes no
 * more steps.
 */
int			pt_trainer_step(PtTrainer *t);

/*
 * The same set-up in pieces: options checked by open; rows tokenized by each
 * add_rows call (the texts may be freed after it; only token ids are kept:
 * about 4 bytes per token per row); close_rows settles the labels (sorted),
 * the validation split (or tokenizes `dev`) and readies the first member.
 */
PtTrainer  *pt_trainer_open(const PtModel *m, const PtTrainOptions *opt);
int			pt_trainer_add_rows(PtTrainer *t, const PtTextSet *rows);
int			pt_trainer_close_rows(PtTrainer *t, const PtTextSet *dev);
/* Rows kept so far (training and validation). */
long		pt_trainer_rows(const PtTrainer *t);

/*
 * One bounded unit of work with at most max_rows rows through the model: a
 * micro-batch of the current step (the optimizer moves the prompt when the
 * step's mini-batch is complete; the step equals pt_trainer_step()'s up to
 * float rounding), or a slice of a validation.  0 more to do, 1 done, -1 error.
 */
int			pt_trainer_advance(PtTrainer *t, int max_rows);
/* Rows the last pt_trainer_advance() put through the model (to size the next unit). */
int			pt_trainer_unit_rows(const PtTrainer *t);
/*
 * A hook for the pause points of the trainer's passes (see yield.h: before
 * every layer of a micro-batch's forward and backward, and of a validation
 * slice's forward).  When it asks to stop, the unit of work fails with
 * PT_ERR_CANCELLED and the trainer takes no more steps.  fn NULL removes
 * it.  Time spent in it is not training time (rows_per_second).
 */
void		pt_trainer_set_yield(PtTrainer *t, PtYieldFn fn, void *arg);
/* Seconds the last pt_trainer_advance() spent in the hook. */
double		pt_trainer_unit_yield_seconds(const PtTrainer *t);
/* "tokenizing", "training", "validating" or "done". */
const char *pt_trainer_phase(const PtTrainer *t);
const PtTrainProgress *pt_trainer_progress(const PtTrainer *t);
/* Valid once pt_trainer_step() returned 1.  The prompts stay owned by the trainer. */
const PtTrainResult *pt_trainer_result(const PtTrainer *t);
/* Hands the result's prompts to the caller (who frees them). */
PtPrompt  **pt_trainer_take_prompts(PtTrainer *t, int *n);
const PtTask *pt_trainer_task(const PtTrainer *t);
/* The prompt of the member being trained, as the last step left it. */
const PtPrompt *pt_trainer_prompt(const PtTrainer *t);
void		pt_trainer_free(PtTrainer *t);

/* Return non-zero to stop training (cleanly, with an error PT_ERR_CANCELLED). */
typedef int (*PtProgressFn) (const PtTrainProgress *progress, void *arg);

/* Runs a trainer to completion; the result stays in the trainer. */
int			pt_train_run(PtTrainer *t, PtProgressFn progress, void *arg);

#endif
