/*
 * cross_attention.h - the decoder's cross-attention with its keys and values
 * absorbed into the query side, for passes with few decoder rows per
 * encoder row (label scoring, training on short targets).
 *
 * The usual form projects every encoder row of every layer:
 *   K = E Wk^T, V = E Wv^T            [N, I]   (2 N d I multiply-adds)
 *   ctx_h = softmax(q_h K_h^T) V_h     per head h, q_h [Tq, dk]
 * T5 has no key/value bias and no score scaling, so by associativity
 *   q_h K_h^T = (q_h Wk_h) E^T         Wk_h = rows h*dk.. of Wk: [dk, d]
 *   P_h V_h   = (P_h E) Wv_h^T
 * which multiplies the decoder side only: a_h = q_h Wk_h [Tq, d] and
 * ctx_h = b_h Wv_h^T with b_h = P_h E.  Per layer that is 2 H Nd d I
 * multiply-adds for the projections (each (row, head) pair runs as one row
 * of a full product with the other heads' columns zeroed, so the packed
 * weights serve as they are, in every precision) plus 2 H Nd Te d for
 * attention, against 2 N d I + 2 Nd Te I.  With 2 decoder rows per
 * 148-row encoder sequence and flan-t5-small's 6 heads that is about a
 * ninth of the work, and the [N, I] keys and values are never stored.
 *
 * pt_cross_absorb_pays() compares the two counts; pt_pass_begin() asks it
 * once per batch and lays out the buffers of the form it picks.  Both forms
 * compute the same function; they differ by rounding only.
 *
 * Rows of the stacked buffers are (decoder row r, head h) pairs, r-major:
 * row r * H + h.  So one query sequence's rows are contiguous for all heads,
 * and its attention runs as two small products that read its encoder
 * sequence E [Te, d] once each.  Probabilities are kept per query sequence
 * s at lay->p_off[s] as [Tq * H, Te] (row i * H + h), not head-major.
 */
#ifndef PT_CROSS_ATTENTION_H
#define PT_CROSS_ATTENTION_H

#include <stdbool.h>
#include <stddef.h>

#include "attention.h"
#include "linear.h"

/*
 * True if the absorbed form should take less time for a batch of N encoder
 * rows, Nd decoder rows and cross_pairs = sum over decoder sequences of
 * Td * Te, with products in math (the pass's).  Unless a test forced one
 * form.  The estimate counts multiply-adds, weighted by what runs them:
 *   - the usual K/V projections run in math: bf16 about twice and int8
 *     about four times fp32's speed per multiply-add (oneDNN's ceilings at
 *     these shapes, BENCHMARKS.md);
 *   - the absorbed q-side products: Wk's as a backward product (bf16 for a
 *     bf16 model, else fp32: an int8 model keeps fp32 weights for it), Wv's
 *     in math; attention in fp32 either way.
 * The rule sees the batch's totals, so a batch of texts of one shape picks
 * what each of them alone would.  In a batch of very different shapes a text
 * may get the other form than alone: in fp32 that changes its results by
 * rounding only, in bf16 and int8 by up to about 1% of a probability (the
 * forms round different operands; unit tests bound both).  How many encoder
 * sequences the batch has is not weighed: the forward attention is split in
 * blocks of rows over all threads (one text keeps them all busy); the
 * backward runs one encoder sequence per thread.
 */
bool		pt_cross_absorb_pays(int H, int dk, int d, size_t N, size_t Nd, size_t cross_pairs,
								 PtMath math);

/* Tests and benchmarks: 1 always absorbed, 0 never, -1 by cost (the default). */
void		pt_cross_absorb_force(int mode);

/*
 * ctx[Nd, I] = cross-attention of q[Nd, I] over enc[N, d], absorbed.
 * Keeps qk[Nd * H, d] (a_h per row and head) and the probabilities for the
 * backward pass; stack [Nd * H, I] and pe [Nd * H, d] are scratch.
 */
void		pt_cross_absorbed_forward(const PtAttnLayout *lay, const PtLinear *wk, const PtLinear *wv,
									  int H, int dk, int d, int Nd, const float *q, const float *enc,
									  float *qk, float *probs, float *stack, float *pe, float *ctx,
									  PtMath math);

/*
 * Given dctx[Nd, I]: dq[Nd, I] (overwritten) and d_enc[N, d] (added to).
 * stack [Nd * H, I] and scratch [Nd * H, d] are scratch; the score
 * gradients use the layout's dscores slices, which must hold Tq * H * Te.
 */
void		pt_cross_absorbed_backward(const PtAttnLayout *lay, const PtLinear *wk, const PtLinear *wv,
									   int H, int dk, int d, int Nd, const float *enc,
									   const float *qk, const float *probs, const float *dctx,
									   float *stack, float *scratch, float *dq, float *d_enc,
									   PtMath math);

#endif							/* PT_CROSS_ATTENTION_H */
