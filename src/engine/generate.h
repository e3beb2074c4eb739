/*
 * generate.h - text generation: autoregressive decoding of a frozen T5 under
 * a soft prompt per row (or none), greedy or by beam search.
 *
 * One call takes rows of any mix of prompts and input lengths.  Each row's
 * encoder runs once; each decoder layer's cross-attention keys and values
 * are computed once per row (shared by the row's beams), and the decoder's
 * self-attention keys and values are cached, so every step runs the decoder
 * on one new token per live sequence.  Live sequences of all rows form one
 * batch; a row that is done (EOS, max_new_tokens, or beam search that cannot
 * improve) leaves it.
 *
 * Search:
 *  - num_beams == 1: greedy.  Each step takes the most probable token
 *    (the lowest id among equal logits); a row stops after EOS or
 *    max_new_tokens tokens.  score = sum of the chosen tokens'
 *    log-probabilities (EOS included when generated).
 *  - num_beams  > 1: T5X's beam search (t5x/decoding.py, beam_search):
 *    each step keeps the 2K best extensions of the K live beams; those
 *    ending in EOS become finished candidates scored
 *        log P(y) / ((5 + |y|) / 6) ^ alpha       (|y| counts EOS)
 *    the K best of the rest stay live (raw log-probability), and the K best
 *    finished are kept.  The result is the best finished sequence; when no
 *    beam finished within max_new_tokens, the best live one with its raw
 *    log-probability (as T5X).  A row stops early once no live beam can
 *    beat its K finished ones (which changes no result for alpha >= 0).
 *    alpha defaults to 0.6, T5X's default.  num_beams == 1 is greedy, not a
 *    one-beam T5X search (which would keep searching past an EOS).
 *
 * Ties between equal log-probabilities go to the lower token id (greedy) or
 * to the lower (beam, token) index, as top-k does.  Scores are computed in
 * float64 from float32 logits (log-softmax over the whole vocabulary).
 */
#ifndef PT_GENERATE_H
#define PT_GENERATE_H

#include <stdbool.h>
#include <stdint.h>

#include "model.h"
#include "objective.h"			/* PtWorkspace */

/*
 * The options' bounds and defaults (PT_GENERATE_MAX_NEW_TOKENS,
 * PT_GENERATE_MAX_BEAMS, PT_GENERATE_MAX_ALPHA, PT_GENERATE_DEFAULT_*) and
 * PT_GENERATE_MAX_INPUT_TOKENS live in ptune_limits.h with every other limit.
 */
#include "ptune_limits.h"

/*
 * A check called once per decoding step (and per chunk of rows): return
 * non-zero to stop; pt_generate then fails with PT_ERR_CANCELLED.
 */
typedef int (*PtGenerateCancelFn) (void *arg);

/*
 * The precision of the decoder's key / value caches (self- and
 * cross-attention).  AUTO: bfloat16 for models whose products run in bf16
 * or int8 (m->math), float32 for fp32 models (exact); the others force one
 * (tests, benchmarks).  Attention reads either with float32 arithmetic.
 */
typedef enum PtGenerateCache
{
	PT_GEN_CACHE_AUTO = 0,
	PT_GEN_CACHE_FP32,
	PT_GEN_CACHE_BF16
} PtGenerateCache;

typedef struct PtGenerateOptions
{
	int			max_new_tokens; /* 1 .. PT_GENERATE_MAX_NEW_TOKENS, EOS included */
	int			num_beams;		/* 1 (greedy) .. PT_GENERATE_MAX_BEAMS */
	double		length_penalty; /* alpha in [0, PT_GENERATE_MAX_ALPHA]; beam search only */
	/*
	 * Benchmarks only: EOS is an ordinary token, so every row generates
	 * exactly max_new_tokens tokens (greedy only; an error with beams).
	 */
	bool		ignore_eos;
	/*
	 * Benchmarks only: NULL, or [PT_GENERATE_PROFILE_PARTS] seconds that each
	 * part of the decoder steps adds to (see PtGenerateProfilePart).  Where a
	 * step's layers run split by rows between threads, the layers' parts are
	 * the first thread's, and its wait for the others counts as "rest".
	 */
	double	   *profile;
	PtGenerateCache cache;		/* AUTO by default */
	PtGenerateCancelFn cancel;	/* NULL: never cancelled */
	void	   *cancel_arg;
} PtGenerateOptions;

/* The parts of a decoder step that options.profile times. */
typedef enum PtGenerateProfilePart
{
	PT_GEN_PROF_PRODUCTS,		/* the layers' matrix products (Q/K/V/O, cross Q/O, feed-forward) */
	PT_GEN_PROF_SELF_ATTN,		/* cache append and single-query self-attention */
	PT_GEN_PROF_CROSS_ATTN,		/* single-query cross-attention */
	PT_GEN_PROF_REST,			/* embedding, norms, activation (and a split step's wait) */
	PT_GEN_PROF_LM_HEAD,		/* final norm and the LM head product */
	PT_GEN_PROF_ARGMAX,			/* log-sum-exp and argmax of the logits */
	PT_GEN_PROF_SELECT,			/* greedy / beam selection */
	PT_GENERATE_PROFILE_PARTS
} PtGenerateProfilePart;

/* their names, for reports: "products", "self_attention", ... */
const char *pt_generate_profile_name(int part);

/* The defaults: 32 new tokens, greedy, alpha 0.6, stop at EOS, no cancel hook. */
void		pt_generate_options_default(PtGenerateOptions *opts);

/*
 * 0 if the options are within bounds, else -1 with a PT_ERR_ARGUMENT error
 * naming the option, the value and the allowed range (pt_generate checks
 * them too; callers may call this first to reject bad input early).
 */
int			pt_generate_options_check(const PtGenerateOptions *opts);

/* One input to generate from. */
typedef struct PtGenerateRow
{
	/*
	 * The soft prompt: [prompt_len, d_model] floats prepended to the input's
	 * embeddings, or NULL with prompt_len 0 for the frozen model alone.
	 * From a PtPrompt p (already checked with pt_prompt_check_model): p->values,
	 * p->length.  Rows may have different prompts.  Not copied; must stay
	 * valid during the call.
	 */
	const float *prompt;
	int			prompt_len;		/* 0 .. PT_PROMPT_MAX_LENGTH */
	/*
	 * Encoded input (pt_encode_input: text tokens then EOS), n_ids >= 1 and
	 * prompt_len + n_ids <= PT_MAX_SEQ_LEN.  Not copied.
	 */
	const int32_t *ids;
	int			n_ids;
} PtGenerateRow;

/* What one row generated. */
typedef struct PtGenerateResult
{
	/*
	 * Caller's array of at least max_new_tokens entries; receives the
	 * generated tokens WITHOUT the final EOS (the decoder_start token is not
	 * included either).
	 */
	int32_t    *ids;
	int			n_ids;			/* filled: 0 .. max_new_tokens */
	bool		eos;			/* the sequence ended with EOS (not cut by max_new_tokens) */
	double		score;			/* see the file comment: log-probability, or its
								 * length-penalised form for finished beams */
	/*
	 * NULL, or the caller's array of max_new_tokens entries: receives the
	 * log-probability of each generated token, EOS included (n_ids + eos
	 * entries).
	 */
	double	   *token_logprobs;
} PtGenerateResult;

/*
 * Generates for rows[0..n), n >= 0, writing results[i] for rows[i].
 * ws: scratch kept between calls (ws->pass for the encoder, ws->head for the
 * decoding state and caches); not shared between threads.  Rows are processed
 * in chunks that bound the memory of the caches, whatever n is.  Uses the
 * model's precision (m->math: fp32 or bf16 products).
 *
 * Errors (-1, message set): PT_ERR_ARGUMENT for bad options or rows (the
 * message names the row), PT_ERR_CANCELLED when opts->cancel asked to stop,
 * PT_ERR_NOMEM.  Results of rows are unspecified after an error.
 */
int			pt_generate(const PtModel *m, PtWorkspace *ws, const PtGenerateRow *rows, int n,
						const PtGenerateOptions *opts, PtGenerateResult *results);

/*
 * Benchmarks: the matrix products of one decoder step of B rows alone (every
 * layer's self Q/K/V/O, cross Q/O and feed-forward products and the LM head,
 * in the model's precision), the step's floor.  split: arranged as
 * pt_generate's step arranges them (the layers split by rows between threads
 * where it splits them); else every product on all threads.  x [B, d_model]
 * is every product's input; y[0..3] [B, pt_generate_step_width] receive
 * outputs, logits [B, vocab_size].  Returns the products' FLOPs.
 */
double		pt_generate_step_products(const PtModel *m, int B, const float *x, float *const *y,
									  float *logits, bool split);
size_t		pt_generate_step_width(const PtConfig *c);

/*
 * The text of generated ids (sentencepiece decoding: pieces joined, U+2581
 * to spaces, the leading space dropped; special tokens such as <pad> and
 * </s> give no text).  malloc'd, NUL-terminated (free() it); NULL with an
 * error on failure.  n may be 0 (an empty string).
 */
char	   *pt_generate_text(const PtModel *m, const int32_t *ids, int n);

#endif
