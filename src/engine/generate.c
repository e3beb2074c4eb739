/*
 * generate.c - autoregressive decoding, greedy and beam search (see generate.h).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "generate.h"

void
pt_generate_options_default(PtGenerateOptions *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->max_new_tokens = PT_GENERATE_DEFAULT_MAX_NEW_TOKENS;
	opts->num_beams = PT_GENERATE_DEFAULT_BEAMS;
	opts->length_penalty = PT_GENERATE_DEFAULT_ALPHA;
}

int
pt_generate_options_check(const PtGenerateOptions *opts)
{
	if (opts == NULL)
		return pt_fail(PT_ERR_ARGUMENT, "generation options are missing");
	if (opts->max_new_tokens < 1 || opts->max_new_tokens > PT_GENERATE_MAX_NEW_TOKENS)
		return pt_fail(PT_ERR_ARGUMENT, "max_new_tokens must be between 1 and %d, not %d",
					   PT_GENERATE_MAX_NEW_TOKENS, opts->max_new_tokens);
	if (opts->num_beams < 1 || opts->num_beams > PT_GENERATE_MAX_BEAMS)
		return pt_fail(PT_ERR_ARGUMENT, "num_beams must be between 1 and %d, not %d",
					   PT_GENERATE_MAX_BEAMS, opts->num_beams);
	if (!(opts->length_penalty >= 0.0 && opts->length_penalty <= PT_GENERATE_MAX_ALPHA))
		return pt_fail(PT_ERR_ARGUMENT, "length_penalty must be between 0 and %g, not %g",
					   PT_GENERATE_MAX_ALPHA, opts->length_penalty);
	if (opts->ignore_eos && opts->num_beams > 1)
		return pt_fail(PT_ERR_ARGUMENT, "ignore_eos works with greedy decoding only (num_beams 1)");
	return 0;
}

int
pt_generate(const PtModel *m, PtWorkspace *ws, const PtGenerateRow *rows, int n,
			const PtGenerateOptions *opts, PtGenerateResult *results)
{
	if (pt_generate_options_check(opts) != 0)
		return -1;
	return pt_fail(PT_ERR_INTERNAL, "pt_generate is not implemented yet");
}

char *
pt_generate_text(const PtModel *m, const int32_t *ids, int n)
{
	if (n < 0 || (n > 0 && ids == NULL))
		return pt_fail(PT_ERR_ARGUMENT, "bad ids to decode"), NULL;
	return pt_tokenizer_decode(m->tokenizer, ids, n);
}
