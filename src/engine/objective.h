/*
 * objective.h - the prompt-tuning objective: teacher-forced cross-entropy of
 * target sequences, and its gradient with respect to the soft prompts.
 *
 * An example is (prompt, input ids, target ids).  The decoder reads
 * [decoder_start] + target[:-1] and is scored on target.  The loss of a batch
 * is sum over examples of weight * sum over target tokens of cross-entropy,
 * so weight = 1 / n_target gives each example's mean (the `check` command),
 * and weight = 1 / (all target tokens) gives the batch's token mean (training).
 */
#ifndef PT_OBJECTIVE_H
#define PT_OBJECTIVE_H

#include <stdbool.h>
#include <stdint.h>

#include "arena.h"
#include "model.h"
#include "yield.h"

typedef struct PtExample
{
	const float *prompt;		/* [prompt_len, d] or NULL */
	int			prompt_len;
	const int32_t *input_ids;
	int			n_input;
	const int32_t *target_ids;
	int			n_target;
	float		weight;			/* of each target token's cross-entropy in the loss */
} PtExample;

typedef struct PtWorkspace
{
	PtArena		pass;			/* activations */
	PtArena		head;			/* logits and decoder inputs */
	/*
	 * Pause points of every pass run in this workspace (pt_objective,
	 * pt_classify): called before each layer, see yield.h.  A trainer sets
	 * it on its own workspace; other workspaces leave it {NULL}.
	 */
	PtYield		yield;
} PtWorkspace;

void		pt_workspace_free(PtWorkspace *ws);

/*
 * Runs forward (and backward when prompt_grads != NULL) over n examples.
 *   mean_ce[i]      mean cross-entropy over example i's target tokens (may be NULL)
 *   prompt_grads[i] [prompt_len_i, d] gradient of the weighted loss w.r.t.
 *                   example i's prompt (overwritten; NULL entries skipped;
 *                   examples that share a prompt may share one buffer, which
 *                   then receives the sum)
 *   logits          if not NULL, receives pointers into the workspace holding
 *                   the full logits of each example, [n_target_i, V] each
 *                   (valid until the next call)
 * Returns the weighted loss, or NAN with an error set (PT_ERR_NUMERIC when the
 * loss itself comes out NaN or infinite; PT_ERR_CANCELLED when ws->yield
 * asked the pass to stop).
 */
double		pt_objective(const PtModel *m, PtWorkspace *ws, const PtExample *ex, int n,
						 double *mean_ce, float **prompt_grads, const float **logits);

#endif
