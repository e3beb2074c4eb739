/*
 * cross_attention.c - cross-attention with keys and values absorbed into
 * the query side (see cross_attention.h for the algebra and the layout).
 */
#include <omp.h>
#include <string.h>

#include "cross_attention.h"
#include "kernels.h"
#include "small_gemm.h"

static int	forced = -1;

/* (row, head) pairs per work unit of the forward attention: 8 rows of 6 heads */
#define ROW_BLOCK 48

void
pt_cross_absorb_force(int mode)
{
	forced = mode;
}

/* multiply-adds per unit of time, relative to fp32 (see cross_attention.h) */
static double
speed_of(PtMath math)
{
	return math == PT_MATH_INT8 ? 4.0 : math == PT_MATH_BF16 ? 2.0 : 1.0;
}

bool
pt_cross_absorb_pays(int H, int dk, int d, size_t N, size_t Nd, size_t cross_pairs,
					 PtMath math)
{
	double		I = (double) H * dk;
	double		usual = 2.0 * N * d * I / speed_of(math) + 2.0 * cross_pairs * I;
	double		absorbed = (double) H * Nd * d * I / speed_of(math == PT_MATH_BF16 ? math : PT_MATH_FP32)
		+ (double) H * Nd * d * I / speed_of(math)
		+ 2.0 * H * cross_pairs * d;

	if (forced >= 0)
		return forced == 1;
	return Nd > 0 && absorbed < usual;
}

/* stack[r * H + h] = x[r] with every column outside head h zeroed: [Nd * H, I] */
static void
spread_heads(const float *x, int Nd, int H, int dk, float *stack)
{
	size_t		I = (size_t) H * dk;

	memset(stack, 0, sizeof(float) * Nd * H * I);
	for (size_t r = 0; r < (size_t) Nd; r++)
		for (int h = 0; h < H; h++)
			memcpy(stack + (r * H + h) * I + (size_t) h * dk, x + r * I + (size_t) h * dk,
				   sizeof(float) * dk);
}

/* x[r, head h] = stack[r * H + h, head h]: the inverse gather */
static void
gather_heads(const float *stack, int Nd, int H, int dk, float *x)
{
	size_t		I = (size_t) H * dk;

	for (size_t r = 0; r < (size_t) Nd; r++)
		for (int h = 0; h < H; h++)
			memcpy(x + r * I + (size_t) h * dk, stack + (r * H + h) * I + (size_t) h * dk,
				   sizeof(float) * dk);
}

void
pt_cross_absorbed_forward(const PtAttnLayout *lay, const PtLinear *wk, const PtLinear *wv,
						  int H, int dk, int d, int Nd, const float *q, const float *enc,
						  float *qk, float *probs, float *stack, float *pe, float *ctx,
						  PtMath math)
{
	/* qk[r * H + h, d] = q[r, head h] Wk_h: a backward-shaped product, dx = dy W */
	spread_heads(q, Nd, H, dk, stack);
	pt_linear_backward(wk, stack, Nd * H, qk, false);

	/*
	 * Work units of at most ROW_BLOCK (row, head) pairs of one decoder
	 * sequence, dealt round-robin: rows are independent here, so one text
	 * with a large trie still keeps every thread busy.
	 */
#pragma omp parallel
	{
		int			threads = omp_get_num_threads(),
					me = omp_get_thread_num(),
					unit = 0;

		for (int g = 0; g < lay->n_kv; g++)
		{
			const float *E = enc + (size_t) lay->kv_off[g] * d;	/* [tk, d] */
			int			tk = lay->kv_len[g];

			for (int s = lay->kv_q_begin[g]; s < lay->kv_q_end[g]; s++)
			{
				int			rows = lay->q_len[s] * H;

				for (int r0 = 0; r0 < rows; r0 += ROW_BLOCK)
				{
					int			n = rows - r0 < ROW_BLOCK ? rows - r0 : ROW_BLOCK;
					size_t		at = ((size_t) lay->q_off[s] * H + r0) * d;
					float	   *P = probs + lay->p_off[s] + (size_t) r0 * tk;	/* [n, tk] */

					if (unit++ % threads != me)
						continue;
					/* P[n, tk] = softmax(A E^T), A = qk's rows [n, d] */
					pt_small_gemm(false, true, n, tk, d, qk + at, d, E, d, P, tk, false);
					for (int i = 0; i < n; i++)
						pt_softmax_row(P + (size_t) i * tk, NULL, tk, true);
					/* B[n, d] = P E */
					pt_small_gemm(false, false, n, d, tk, P, tk, E, d, pe + at, d, false);
				}
			}
		}
	}

	/* ctx[r, head h] = B[r * H + h] Wv_h^T: a forward product, keeping head h's columns */
	pt_linear_forward(wv, pe, Nd * H, stack, math);
	gather_heads(stack, Nd, H, dk, ctx);
}

void
pt_cross_absorbed_backward(const PtAttnLayout *lay, const PtLinear *wk, const PtLinear *wv,
						   int H, int dk, int d, int Nd, const float *enc,
						   const float *qk, const float *probs, const float *dctx,
						   float *stack, float *scratch, float *dq, float *d_enc,
						   PtMath math)
{
	/* dB[r * H + h, d] = dctx[r, head h] Wv_h  (scratch) */
	spread_heads(dctx, Nd, H, dk, stack);
	pt_linear_backward(wv, stack, Nd * H, scratch, false);

	/* by encoder sequence: the heads of a sequence add to the same rows of d_enc */
#pragma omp parallel for schedule(dynamic)
	for (int g = 0; g < lay->n_kv; g++)
	{
		const float *E = enc + (size_t) lay->kv_off[g] * d;	/* [tk, d] */
		float	   *dE = d_enc + (size_t) lay->kv_off[g] * d;
		int			tk = lay->kv_len[g];

		for (int s = lay->kv_q_begin[g]; s < lay->kv_q_end[g]; s++)
		{
			int			rows = lay->q_len[s] * H;
			size_t		at = (size_t) lay->q_off[s] * H * d;
			const float *P = probs + lay->p_off[s];	/* [rows, tk] */
			const float *A = qk + at;	/* [rows, d] */
			float	   *G = scratch + at;	/* dB [rows, d], then dA */
			float	   *dS = pt_attention_dscores(lay, rows, tk);

			/* dP[rows, tk] = dB E^T;  dE[tk, d] += P^T dB */
			pt_small_gemm(false, true, rows, tk, d, G, d, E, d, dS, tk, false);
			pt_small_gemm(true, false, tk, d, rows, P, tk, G, d, dE, d, true);
			pt_softmax_backward_rows(P, dS, rows, tk);
			/* dA[rows, d] = dS E (over dB, which is spent);  dE += dS^T A */
			pt_small_gemm(false, false, rows, d, tk, dS, tk, E, d, G, d, false);
			pt_small_gemm(true, false, tk, d, rows, dS, tk, A, d, dE, d, true);
		}
	}

	/* dq[r, head h] = dA[r * H + h] Wk_h^T */
	pt_linear_forward(wk, scratch, Nd * H, stack, math);
	gather_heads(stack, Nd, H, dk, dq);
}
