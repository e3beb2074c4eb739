/*
 * explain.c - nearest vocabulary pieces of each prompt row (see explain.h).
 */
#include <math.h>
#include <stdlib.h>

#include "error.h"
#include "explain.h"
#include "ptune_limits.h"

/* embedding rows converted at a time where the model keeps no fp32 table */
#define EXPLAIN_BLOCK 512

/* norms[n] = the Euclidean norm of each row of rows[n, d] */
static void
block_norms(const float *rows, int n, int d, float *norms)
{
	for (int v = 0; v < n; v++)
	{
		double		s = 0.0;

		for (int j = 0; j < d; j++)
			s += (double) rows[(size_t) v * d + j] * rows[(size_t) v * d + j];
		norms[v] = (float) sqrt(s);
	}
}

int
pt_explain(const PtModel *m, const PtPrompt *p, int k, int32_t *ids, float *sims)
{
	int			d = m->cfg.d_model;
	int			V = pt_tokenizer_vocab_size(m->tokenizer);	/* real pieces only */
	float	   *dots,
			   *norms,
			   *block;			/* [EXPLAIN_BLOCK, d] embedding rows in fp32 (bf16 models) */

	if (k < 1 || k > PT_MAX_EXPLAIN_K)
		return pt_fail(PT_ERR_ARGUMENT, "k must be between 1 and %d (got %d)", PT_MAX_EXPLAIN_K, k);
	if (pt_prompt_check_model(p, m) != 0)
		return -1;
	dots = pt_malloc(sizeof(float) * (size_t) p->length * V);
	norms = pt_malloc(sizeof(float) * V);
	block = m->embed.w ? NULL : pt_malloc(sizeof(float) * (size_t) EXPLAIN_BLOCK * d);
	if (dots == NULL || norms == NULL || (m->embed.w == NULL && block == NULL))
	{
		free(dots);
		free(norms);
		free(block);
		return -1;
	}
	/*
	 * dots[P, V] = prompt[P, d] . embed[V, d]^T and the rows' norms: on the
	 * fp32 table where the model keeps one, else EXPLAIN_BLOCK rows at a time
	 * converted from the checkpoint (a bf16 model keeps no fp32 table).
	 */
	if (m->embed.w)
		pt_gemm(false, true, p->length, V, d, 1.0f, p->values, d, m->embed.w, d, 0.0f, dots, V);
	else
	{
		for (int v0 = 0; v0 < V; v0 += EXPLAIN_BLOCK)
		{
			int			nb = V - v0 < EXPLAIN_BLOCK ? V - v0 : EXPLAIN_BLOCK;

			for (int r = 0; r < nb; r++)
				pt_linear_row(&m->embed, v0 + r, block + (size_t) r * d);
			pt_gemm(false, true, p->length, nb, d, 1.0f, p->values, d, block, d, 0.0f, dots + v0, V);
			block_norms(block, nb, d, norms + v0);
		}
	}
	if (m->embed.w)
		block_norms(m->embed.w, V, d, norms);

	for (int i = 0; i < p->length; i++)
	{
		const float *row = p->values + (size_t) i * d;
		int32_t    *best_ids = ids + (size_t) i * k;
		float	   *best = sims + (size_t) i * k;
		double		s = 0.0;
		float		pn;
		int			found = 0;

		for (int j = 0; j < d; j++)
			s += (double) row[j] * row[j];
		pn = (float) sqrt(s);
		/* keep the k best in sorted order by insertion: k is small */
		for (int v = 0; v < V; v++)
		{
			float		c;
			int			r;

			if (pt_tokenizer_is_special(m->tokenizer, v) || norms[v] == 0.0f || pn == 0.0f)
				continue;
			c = dots[(size_t) i * V + v] / (pn * norms[v]);
			if (found == k && c <= best[k - 1])
				continue;
			r = found < k ? found++ : k - 1;
			while (r > 0 && best[r - 1] < c)
			{
				best[r] = best[r - 1];
				best_ids[r] = best_ids[r - 1];
				r--;
			}
			best[r] = c;
			best_ids[r] = v;
		}
		for (int r = found; r < k; r++)
		{
			best[r] = NAN;
			best_ids[r] = -1;
		}
	}
	free(dots);
	free(norms);
	free(block);
	return 0;
}
