/*
 * scoring.h - which scoring a classification uses (README, "Scoring").
 *
 * Precedence, first that applies:
 *   1. the call's scoring argument, when not NULL;
 *   2. the setting ptune.scoring, when not 'stored';
 *   3. the mode stored with the task's active version
 *      (ptune.prompts.hyperparameters->>'scoring', set by train_prompt);
 *   4. label_tokens (versions stored without one).
 * Values are the engine's PtScoring: 0 label_tokens, 1 rank.
 */
#ifndef PTUNE_SCORING_H
#define PTUNE_SCORING_H

#include "postgres.h"

#include "fmgr.h"

/* ptune.scoring's value that defers to the stored mode */
#define PTUNE_SCORING_STORED (-1)
/* label_tokens: versions stored without a mode, and train_prompt's default */
#define PTUNE_SCORING_DEFAULT 0

extern int	ptune_scoring;		/* the GUC */

/* The scoring named name; an ERROR (22023, with a hint) otherwise. */
int			ptune_scoring_from_name(const char *name);
const char *ptune_scoring_to_name(int scoring);

/* The scoring of this call: argument argno (text, may be NULL), the GUC, then stored. */
int			ptune_call_scoring(FunctionCallInfo fcinfo, int argno, int stored);

#endif
