/*
 * explain.h - interpretability (paper section 7): for each prompt position,
 * the vocabulary pieces whose embeddings are nearest by cosine similarity.
 */
#ifndef PT_EXPLAIN_H
#define PT_EXPLAIN_H

#include <stdint.h>

#include "model.h"
#include "prompt.h"

/*
 * ids[i * k + r] and sims[i * k + r]: the r-th nearest piece to prompt row i
 * (special pieces excluded), most similar first.  1 <= k <= 100.
 */
int			pt_explain(const PtModel *m, const PtPrompt *p, int k, int32_t *ids, float *sims);

#endif
