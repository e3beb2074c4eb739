/*
 * attention.c - multi-head attention forward and backward (see attention.h).
 *
 * Work is split over (sequence, head) pairs; each pair does small GEMMs on
 * strided slices of Q, K, V, each on the calling thread (small_gemm.h).
 */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "attention_bf16.h"
#include "dtype.h"
#include "error.h"
#include "kernels.h"
#include "linear.h"
#include "safetensors.h"
#include "small_gemm.h"
#include "transformer.h"

/* query rows per block in the forward pass: every chain fits in one */
#define ATTN_Q_BLOCK PT_MAX_SEQ_LEN

/*
 * Without a backward pass (!lay->normalize) a block's probabilities are
 * needed only until its context rows are computed, so they go to a scratch
 * of the calling thread of about this many floats (256 KB, so it stays in
 * L2), with query blocks shortened to fit, rather than to the probs array.
 * That array is H x Tq x Tk per sequence (17 MB for 32 rows of 148 tokens
 * and 6 heads): writing it and reading it back went to memory and took as
 * long as the products themselves.
 */
#define ATTN_SCRATCH_FLOATS (64 * 1024)
#define ATTN_SCRATCH_MIN_ROWS 16

static float *
probs_scratch(size_t floats)
{
	static __thread void *buf;
	static __thread size_t cap;

	return pt_grow(&buf, &cap, floats * sizeof(float));
}

int
pt_relative_bucket(int relative_position, bool bidirectional, int num_buckets, int max_distance)
{
	int			bucket = 0;
	int			n = relative_position;
	int			max_exact;

	if (bidirectional)
	{
		num_buckets /= 2;
		if (n > 0)
			bucket += num_buckets;
		n = n < 0 ? -n : n;
	}
	else
		n = n < 0 ? -n : 0;		/* the decoder never looks ahead */

	max_exact = num_buckets / 2;
	if (n < max_exact)
		return bucket + n;

	/*
	 * Logarithmically spaced buckets up to max_distance.  Computed in float32
	 * exactly as Hugging Face does, so positions on a bucket boundary land in
	 * the same bucket.
	 */
	{
		float		ratio = (float) n / (float) max_exact;
		float		scale = (float) log((double) max_distance / (double) max_exact);
		float		v = logf(ratio) / scale * (float) (num_buckets - max_exact);
		int			large = max_exact + (int) v;

		if (large > num_buckets - 1)
			large = num_buckets - 1;
		return bucket + large;
	}
}

void
pt_position_bias_table(const float *rel_bias, int H, int buckets, int max_distance,
					   bool bidirectional, int max_len, float *table)
{
	int			width = 2 * max_len - 1;

	for (int r = -(max_len - 1); r <= max_len - 1; r++)
	{
		int			b = pt_relative_bucket(r, bidirectional, buckets, max_distance);

		for (int h = 0; h < H; h++)
			table[(size_t) h * width + (r + max_len - 1)] = rel_bias[(size_t) b * H + h];
	}
}

/*
 * Adds the position bias (and the causal mask) to the scores of one head,
 * then softmax; inv_sum[i] receives 1 / row sum, for rows left unnormalised.
 * p holds query rows i0 .. i0 + n - 1 of the sequence (a block, see below).
 */
static void
scores_to_probs(const PtAttnLayout *lay, int h, float *p, int i0, int n, int tk, float *inv_sum)
{
	int			width = 2 * lay->bias_max_len - 1;

	for (int r = 0; r < n; r++)
	{
		int			i = i0 + r;		/* the query's position in its sequence */
		float	   *row = p + (size_t) r * tk;
		int			visible = lay->causal ? (i + 1 < tk ? i + 1 : tk) : tk;

		/* bias index of key j for query i: (j - i) + max_len - 1 */
		const float *b = lay->bias ? lay->bias + (size_t) h * width + (lay->bias_max_len - 1 - i) : NULL;

		inv_sum[r] = pt_softmax_row(row, b, visible, lay->normalize);
		if (visible < tk)
			memset(row + visible, 0, sizeof(float) * (tk - visible));
	}
}

/*
 * Work item `item` of the attention loops: key/value sequence g and head h
 * (items run g-major); kv is the offset of head h's columns in g's first
 * key (and value) row of K and V [rows, H * dk].
 */
typedef struct AttnItem
{
	int			g;
	int			h;
	int			tk;				/* keys of sequence g */
	size_t		kv;
} AttnItem;

static inline AttnItem
attn_item(const PtAttnLayout *lay, int H, int dk, int item)
{
	int			g = item / H,
				h = item % H;

	return (AttnItem) {g, h, lay->kv_len[g], (size_t) lay->kv_off[g] * H * dk + (size_t) h * dk};
}

void
pt_attention_forward(const PtAttnLayout *lay, int H, int dk,
					 const float *q, const float *k, const float *v,
					 float *probs, float *ctx)
{
	int			inner = H * dk;

#pragma omp parallel for schedule(dynamic)
	for (int item = 0; item < lay->n_kv * H; item++)
	{
		AttnItem	it = attn_item(lay, H, dk, item);
		const float *K = k + it.kv, *V = v + it.kv;
		float		inv_sum[ATTN_Q_BLOCK];
		int			block = ATTN_Q_BLOCK;
		float	   *scratch = NULL;
		PtBf16Head	head;
		bool		bf16 = false;

		if (!lay->normalize && it.tk > 0)
		{
			block = ATTN_SCRATCH_FLOATS / it.tk;
			block = block < ATTN_SCRATCH_MIN_ROWS ? ATTN_SCRATCH_MIN_ROWS : block > ATTN_Q_BLOCK ? ATTN_Q_BLOCK : block;
			scratch = probs_scratch((size_t) block * it.tk);
			if (scratch == NULL)	/* no room: the probs array, as training does */
				block = ATTN_Q_BLOCK;
			/* bf16 inference: K and V packed once for all of this head's query blocks */
			bf16 = lay->bf16 && pt_bf16_head_pack(K, V, inner, it.tk, dk, &head) == 0;
		}

		for (int s = lay->kv_q_begin[it.g]; s < lay->kv_q_end[it.g]; s++)
		{
			int			tq = lay->q_len[s];

			/*
			 * Query rows in blocks of at most `block`: a chain never has more
			 * than ATTN_Q_BLOCK, but a rank trie (cross-attention of a tree)
			 * may have tens of thousands of nodes, and inv_sum lives on the
			 * stack.
			 */
			for (int i0 = 0; i0 < tq; i0 += block)
			{
				int			n = tq - i0 < block ? tq - i0 : block;
				const float *Q = q + (size_t) (lay->q_off[s] + i0) * inner + it.h * dk;
				float	   *P = scratch ? scratch
					: probs + lay->p_off[s] + (size_t) it.h * tq * it.tk + (size_t) i0 * it.tk;
				float	   *C = ctx + (size_t) (lay->q_off[s] + i0) * inner + it.h * dk;
				uint16_t   *Cb = lay->ctx_bf16 ? lay->ctx_bf16 + (size_t) (lay->q_off[s] + i0) * inner + it.h * dk
					: NULL;

				/* P[n, tk] = Q[n, dk] K[tk, dk]^T   (no 1/sqrt(dk) in T5) */
				if (bf16)
					pt_bf16_head_scores(&head, Q, inner, n, P, it.tk);
				else
					pt_small_gemm(false, true, n, it.tk, dk, Q, inner, K, inner, P, it.tk, false);
				scores_to_probs(lay, it.h, P, i0, n, it.tk, inv_sum);
				/* C[n, dk] = P[n, tk] V[tk, dk] / row sum, in bf16 */
				if (bf16 && pt_bf16_head_context(&head, P, it.tk, n, inv_sum, Cb ? NULL : C, Cb, inner) == 0)
					continue;
				/* C[n, dk] = P[n, tk] V[tk, dk] */
				pt_small_gemm(false, false, n, dk, it.tk, P, it.tk, V, inner, C, inner, false);
				/* unnormalised probabilities: scale the dk outputs of a row, not its tk probabilities */
				if (!lay->normalize)
					for (int i = 0; i < n; i++)
						for (int j = 0; j < dk; j++)
							C[(size_t) i * inner + j] *= inv_sum[i];
				/* the bf16 context wanted, and this block ran in fp32: rounded here */
				if (Cb)
					for (int i = 0; i < n; i++)
						pt_convert_to_bf16(PT_DTYPE_F32, C + (size_t) i * inner, dk, Cb + (size_t) i * inner);
			}
		}
	}
}

/*
 * The score-gradient slice of the calling thread, after checking that a
 * [tq, tk] block fits in it.  A block that does not fit would silently
 * overwrite the neighbouring thread's slice (or run past the buffer), so it
 * is a bug in the caller's sizing: stop loudly rather than compute garbage.
 * One comparison per (sequence, head), so the check is always on.
 */
float *
pt_attention_dscores(const PtAttnLayout *lay, int tq, int tk)
{
	int			thread = omp_get_thread_num();

	if ((size_t) tq * (size_t) tk > lay->dscores_stride || thread >= lay->dscores_threads)
	{
		fprintf(stderr, "ptune: internal error: attention backward needs a %d x %d score block on "
				"thread %d, but the scratch holds %zu floats for each of %d threads\n",
				tq, tk, thread, lay->dscores_stride, lay->dscores_threads);
		abort();
	}
	return lay->dscores + lay->dscores_stride * (size_t) thread;
}

void
pt_softmax_backward_rows(const float *P, float *dS, int rows, int cols)
{
	for (int i = 0; i < rows; i++)
	{
		const float *pr = P + (size_t) i * cols;
		float	   *dr = dS + (size_t) i * cols;
		float		dot = 0.0f;

		for (int j = 0; j < cols; j++)
			dot += pr[j] * dr[j];
		for (int j = 0; j < cols; j++)
			dr[j] = pr[j] * (dr[j] - dot);
	}
}

void
pt_attention_backward(const PtAttnLayout *lay, int H, int dk,
					  const float *q, const float *k, const float *v,
					  const float *probs, const float *dctx,
					  float *dq, float *dkey, float *dval)
{
	int			inner = H * dk;

#pragma omp parallel for schedule(dynamic)
	for (int item = 0; item < lay->n_kv * H; item++)
	{
		AttnItem	it = attn_item(lay, H, dk, item);
		const float *K = k + it.kv, *V = v + it.kv;
		float	   *dK = dkey + it.kv, *dV = dval + it.kv;
		bool		accumulate = false;	/* the first query sequence overwrites dK, dV */

		if (lay->kv_q_begin[it.g] == lay->kv_q_end[it.g])
		{
			/* nobody attends to this sequence: its key/value gradient is zero */
			for (int j = 0; j < it.tk; j++)
			{
				memset(dK + (size_t) j * inner, 0, sizeof(float) * dk);
				memset(dV + (size_t) j * inner, 0, sizeof(float) * dk);
			}
			continue;
		}

		for (int s = lay->kv_q_begin[it.g]; s < lay->kv_q_end[it.g]; s++)
		{
			int			tq = lay->q_len[s];
			const float *Q = q + (size_t) lay->q_off[s] * inner + it.h * dk;
			const float *P = probs + lay->p_off[s] + (size_t) it.h * tq * it.tk;
			const float *dC = dctx + (size_t) lay->q_off[s] * inner + it.h * dk;
			float	   *dQ = dq + (size_t) lay->q_off[s] * inner + it.h * dk;
			float	   *dS = pt_attention_dscores(lay, tq, it.tk);	/* [tq, tk] */

			/* dV[tk, dk] (+)= P^T[tk, tq] dC[tq, dk] */
			pt_small_gemm(true, false, it.tk, dk, tq, P, it.tk, dC, inner, dV, inner, accumulate);
			/* dP[tq, tk] = dC[tq, dk] V^T */
			pt_small_gemm(false, true, tq, it.tk, dk, dC, inner, V, inner, dS, it.tk, false);
			pt_softmax_backward_rows(P, dS, tq, it.tk);
			/* dQ[tq, dk] = dS[tq, tk] K[tk, dk];  dK[tk, dk] (+)= dS^T Q */
			pt_small_gemm(false, false, tq, dk, it.tk, dS, it.tk, K, inner, dQ, inner, false);
			pt_small_gemm(true, false, it.tk, dk, tq, dS, it.tk, Q, inner, dK, inner, accumulate);
			accumulate = true;
		}
	}
}

void
pt_tree_attention_forward(int n_rows, const int *parent, const int *depth,
						  const float *bias, int bias_max_len, int H, int dk,
						  const float *q, const float *k, const float *v, float *ctx)
{
	int			inner = H * dk;
	int			width = 2 * bias_max_len - 1;

	/*
	 * A path is short (a label's tokens), so plain dot products over the
	 * gathered ancestors beat small GEMMs here.
	 */
#pragma omp parallel for schedule(static)
	for (int r = 0; r < n_rows; r++)
	{
		int			path[PT_MAX_SEQ_LEN];
		float		scores[PT_MAX_SEQ_LEN];
		int			n = depth[r] + 1;

		/* path[i]: the ancestor at depth i, root first (the order a chain has) */
		for (int a = r, i = n - 1; i >= 0; a = parent[a], i--)
			path[i] = a;
		for (int h = 0; h < H; h++)
		{
			const float *Q = q + (size_t) r * inner + h * dk;
			/* bias of key depth i for query depth n - 1: (i - (n - 1)) + max_len - 1 */
			const float *b = bias + (size_t) h * width + (bias_max_len - n);
			float	   *C = ctx + (size_t) r * inner + h * dk;

			for (int i = 0; i < n; i++)
			{
				const float *K = k + (size_t) path[i] * inner + h * dk;
				float		dot = 0.0f;

				for (int j = 0; j < dk; j++)
					dot += Q[j] * K[j];
				scores[i] = dot;	/* no 1/sqrt(dk) in T5 */
			}
			pt_softmax_row(scores, b, n, true);
			memset(C, 0, sizeof(float) * dk);
			for (int i = 0; i < n; i++)
			{
				const float *V = v + (size_t) path[i] * inner + h * dk;

				for (int j = 0; j < dk; j++)
					C[j] += scores[i] * V[j];
			}
		}
	}
}
