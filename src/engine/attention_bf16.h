/*
 * attention_bf16.h - one attention head's two products in bfloat16.
 *
 * In bf16 inference the encoder's self-attention computes, per (sequence,
 * head), S = Q K^T and C = P V with bfloat16 operands and fp32 accumulation
 * (AVX512-BF16's vdpbf16ps, two products per lane and instruction, about
 * twice fp32's multiply-adds per cycle), instead of fp32 small_gemm.  The
 * softmax between them, the position bias and everything else stay fp32.
 * It is used only where nothing needs the fp32 probabilities afterwards
 * (no backward pass: PtAttnLayout.bf16, set by pass.c for the encoder of
 * bf16 and int8 inference passes).
 *
 * vdpbf16ps adds a[2l] b[2l] + a[2l + 1] b[2l + 1] into fp32 lane l, so the
 * operand whose lanes run along the output's columns is stored in pairs
 * along the contraction (pt_bf16_head_pack):
 *   kp [dk / 2][tkp]   kp[p][j] = (K[j][2p], K[j][2p + 1]) as two bf16 in 32 bits,
 *                      tkp = tk rounded up to 16, zero past tk;
 *   vp [tk2][dk]       vp[q][c] = (V[2q][c], V[2q + 1][c]), tk2 = ceil(tk / 2),
 *                      V[tk][.] = 0 when tk is odd;
 * and the other operand's rows (Q, P) are rounded to bf16 in their natural
 * order, whose consecutive pairs are what a 32-bit broadcast hands each lane.
 * Rounding is to nearest even (vcvtne2ps2bf16), as pt_f32_to_bf16 rounds,
 * except that these instructions (and vdpbf16ps) take values below bf16's
 * normal range (|x| < 1.2e-38) as zero.
 */
#ifndef PT_ATTENTION_BF16_H
#define PT_ATTENTION_BF16_H

#include <stdbool.h>
#include <stdint.h>

/* The widest head this path takes (its row buffers are sized by it). */
#define PT_ATTN_BF16_MAX_DK 256

/* true if this CPU has AVX512-BF16 and the head size suits the kernels (a multiple of 16, at most the max) */
bool		pt_attention_bf16_supported(int dk);

/* One head's keys and values, packed (in the calling thread's scratch: valid until its next pack). */
typedef struct PtBf16Head
{
	const uint32_t *kp;			/* [dk / 2][tkp] */
	const uint32_t *vp;			/* [tk2][dk] */
	int			tk;
	int			tkp;
	int			dk;
} PtBf16Head;

/*
 * Packs K[tk, dk] and V[tk, dk] (rows ld floats apart) for the two products
 * below; -1 if the scratch cannot grow (the caller computes in fp32).
 */
int			pt_bf16_head_pack(const float *K, const float *V, int ld, int tk, int dk, PtBf16Head *head);

/* S[n, tk] = Q[n, dk] K^T (rows of Q ldq floats apart, of S lds) */
void		pt_bf16_head_scores(const PtBf16Head *head, const float *Q, int ldq, int n, float *S, int lds);

/*
 * C[n, dk] = (P[n, tk] V) * row_scale[i] per row: P's rows ldp floats apart
 * (read up to tk), C's ldc; or, C NULL, the same rounded to bf16 into Cb
 * (rows ldc apart).  -1 if the scratch cannot grow (C, Cb untouched).
 */
int			pt_bf16_head_context(const PtBf16Head *head, const float *P, int ldp, int n,
								 const float *row_scale, float *C, uint16_t *Cb, int ldc);

#endif
