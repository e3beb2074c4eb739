/*
 * task.h - a classification task: its labels as target token sequences, how
 * inputs are tokenized, and how label sequences are scored.
 *
 * T5 is text-to-text: a label's target is its token ids followed by EOS, and
 * classification ranks labels by the log-probability of their targets.
 *
 * Two scorings:
 *  - PT_SCORE_LABEL_TOKENS (default): at each target position the model's
 *    distribution is restricted to the tokens that continue some label, so
 *    only those tokens' logits are computed.  Positions where only one label
 *    token can follow score 0 and need no decoder step at all; for labels of
 *    one token each, the decoder runs a single step per row.  The ScorePlan
 *    precomputes which decoder inputs to run and where each scored token's
 *    logit comes from.
 *  - PT_SCORE_RANK: T5X's rank classification: the sum of each target
 *    token's log-softmax over the whole vocabulary (the plain sequence
 *    log-likelihood, EOS included).  The decoder inputs of all labels form a
 *    trie (PtLabelTrie): the decoder runs once per distinct prefix (tree
 *    attention, see transformer.h) and the full-vocabulary head once per trie node.
 */
#ifndef PT_TASK_H
#define PT_TASK_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

#include "ptune_limits.h"

/*
 * What a prompt is trained for.  Classification: each row's target is one
 * of a fixed set of labels, scored by the label set.  Generation: each row
 * carries its own target text (cut to PT_MAX_TARGET_TOKENS), and the prompt
 * is used by decoding.  A generation prompt has no labels (its binary form
 * stores 0 labels).
 */
typedef enum PtObjectiveKind
{
	PT_OBJECTIVE_CLASSIFICATION = 0,
	PT_OBJECTIVE_GENERATION = 1
} PtObjectiveKind;

/* "classification" / "generation" to a PtObjectiveKind; -1 (error set) for anything else. */
int			pt_objective_parse(const char *name, PtObjectiveKind *out);
const char *pt_objective_name(PtObjectiveKind objective);

typedef enum PtScoring
{
	PT_SCORE_LABEL_TOKENS = 0,
	PT_SCORE_RANK = 1
} PtScoring;

/* "label_tokens" / "rank" to a PtScoring; -1 (error set) for anything else. */
int			pt_scoring_parse(const char *name, PtScoring *out);
const char *pt_scoring_name(PtScoring scoring);

typedef struct PtLabel
{
	char	   *text;
	int32_t    *target;			/* label tokens + EOS */
	int			n_target;
} PtLabel;

/* One scored token: label `label`'s target token at `position`. */
typedef struct PtScoreTerm
{
	int			label;
	int			dec_seq;		/* decoder input sequence that reaches this position */
	int			position;		/* row within that sequence */
	int32_t		token;			/* the label's token at this position */
	int			cand_begin;		/* its competitors: cands[cand_begin, cand_end) */
	int			cand_end;
} PtScoreTerm;

typedef struct PtScorePlan
{
	int			n_dec;
	int32_t   **dec_ids;		/* decoder inputs: start token, then a label prefix */
	int		   *dec_len;
	int			n_terms;
	PtScoreTerm *terms;
	int32_t    *cands;
	int			n_cands;
} PtScorePlan;

/*
 * Rank scoring's decoder inputs as a trie.  Node 0 is decoder_start; node
 * i > 0 has input token ids[i] and parent parent[i] < i, so node i stands
 * for the prefix [decoder_start, target[0 .. depth_i)) that the path from
 * the root spells.  The decoder state at node i predicts the next target
 * token of every label with that prefix: node i's terms
 * [term_begin[i], term_begin[i + 1]) say which label and which token.
 * Every target token of every label is exactly one term.
 */
typedef struct PtLabelTrie
{
	int			n_nodes;
	int32_t    *ids;			/* [n_nodes] decoder input token of each node */
	int		   *parent;			/* [n_nodes], -1 for the root */
	int		   *term_begin;		/* [n_nodes + 1] */
	int		   *term_label;		/* [n_terms] */
	int32_t    *term_token;		/* [n_terms] */
} PtLabelTrie;

typedef struct PtTask
{
	int			n_labels;
	PtLabel    *labels;
	int			max_input_tokens;	/* including the EOS */
	PtScorePlan plan;			/* PT_SCORE_LABEL_TOKENS */
	PtLabelTrie trie;			/* PT_SCORE_RANK */
} PtTask;

/* Tokenizes the labels and builds the score plan and trie; labels must be distinct. */
PtTask	   *pt_task_new(const PtModel *m, const char *const *labels, int n_labels,
						int max_input_tokens);
/*
 * The same with labels given as token ids (EOS is appended), named "0",
 * "1", ...: cross-checks score label sets of any shape without a tokenizer.
 */
PtTask	   *pt_task_new_from_ids(const PtModel *m, const int32_t *const *label_ids,
								 const int *n_label_ids, int n_labels, int max_input_tokens);
/*
 * A generation task: no labels (n_labels 0, empty plan and trie), only the
 * input budget.  Prompts made for it are generation prompts.
 */
PtTask	   *pt_task_new_generation(int max_input_tokens);
void		pt_task_free(PtTask *task);

/* Index of the label with this text, or -1. */
int			pt_task_label_index(const PtTask *task, const char *text);

/*
 * Tokenizes an input: at most max_input_tokens - 1 text tokens, then EOS.
 * ids must hold max_input_tokens entries.  Returns the count (>= 1), or -1.
 */
int			pt_encode_input(const PtModel *m, int max_input_tokens, const char *text,
							size_t len, int32_t *ids);

/*
 * Tokenizes a generation target: at most PT_MAX_TARGET_TOKENS - 1 text
 * tokens (the rest is cut), then EOS.  ids must hold PT_MAX_TARGET_TOKENS
 * entries.  Returns the count (>= 1), or -1.
 */
int			pt_encode_target(const PtModel *m, const char *text, size_t len, int32_t *ids);

#endif
