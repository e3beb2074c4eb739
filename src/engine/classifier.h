/*
 * classifier.h - classification: score every label's target sequence under
 * each row's soft prompt (label-token softmax or rank classification, see
 * task.h), pick the best.
 *
 * One call takes rows of any mix of tasks (each row brings its task and its
 * prompts), runs the encoder once per row and prompt, and the decoder for
 * all labels of all rows in one batch.  A row with several prompts (an
 * ensemble) is decided by majority vote of its prompts, ties broken by the
 * mean probability, as in the paper's prompt ensembling.
 */
#ifndef PT_CLASSIFIER_H
#define PT_CLASSIFIER_H

#include "model.h"
#include "objective.h"
#include "task.h"

typedef struct PtClassifyRow
{
	const PtTask *task;
	PtScoring	scoring;
	int			n_prompts;		/* 1, or the ensemble's size */
	const float *const *prompts;	/* [n_prompts] each [prompt_lens[k], d_model] */
	const int  *prompt_lens;
	const int32_t *ids;			/* encoded input (pt_encode_input), EOS included */
	int			n_ids;
} PtClassifyRow;

typedef struct PtClassifyResult
{
	int			label;			/* index into the task's labels */
	float	   *probs;			/* caller's array of n_labels: mean over prompts of
								 * softmax(label scores); for rank scoring that is
								 * the softmax of the sequence log-probabilities */
} PtClassifyResult;

/* Rows are processed in chunks of at most this many encoder tokens, and as many decoder tokens. */
#define PT_CLASSIFY_MAX_TOKENS 16384

/* -1 with an error (PT_ERR_CANCELLED when ws->yield asked a pass to stop). */
int			pt_classify(const PtModel *m, PtWorkspace *ws, const PtClassifyRow *rows, int n,
						PtClassifyResult *results);

#endif
