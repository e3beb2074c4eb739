/*
 * kernels.h - the element-wise and row-wise operations of T5, forward and
 * backward side by side.  Shapes are given as [rows, cols], row-major.
 */
#ifndef PT_KERNELS_H
#define PT_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/*
 * T5LayerNorm (RMS norm, no mean, no bias):
 *   rstd[i] = 1 / sqrt(mean_j x[i,j]^2 + eps);  y[i,j] = x[i,j] * rstd[i] * w[j]
 * y[n, d]; rstd[n] is saved for the backward pass (may be NULL in inference).
 */
void		pt_rmsnorm_forward(const float *x, const float *w, int n, int d, float eps,
							   float *y, float *rstd);
/*
 * The same with y rounded to bfloat16 (as pt_f32_to_bf16 rounds), for the
 * input of bf16 products: no fp32 y to write and read back (linear.h's
 * pt_bf16_input_room).
 */
void		pt_rmsnorm_forward_bf16(const float *x, const float *w, int n, int d, float eps,
									uint16_t *y, float *rstd);
/*
 * Both with a residual sum first: x[n, d] += add[n, d] (x is written), then
 * the norm of the new x.  Inference in the encoder adds a sublayer's output
 * to the residual stream here, in a row that is in cache for the norm
 * anyway, rather than in the product that computed it (encoder.c).
 */
void		pt_rmsnorm_add_forward(float *x, const float *add, const float *w, int n, int d,
								   float eps, float *y, float *rstd);
void		pt_rmsnorm_add_forward_bf16(float *x, const float *add, const float *w, int n, int d,
										float eps, uint16_t *y, float *rstd);
/* dx[n, d] += d(y)/d(x)^T dy   (accumulates: dx already holds the residual gradient) */
void		pt_rmsnorm_backward(const float *x, const float *w, const float *rstd,
								const float *dy, int n, int d, float *dx);

/*
 * Feed-forward activation, over n = rows * d_ff values:
 *   plain:  out = act(h0)            gated: out = act(h0) * h1
 */
void		pt_ff_activation_forward(PtActivation act, bool gated, const float *h0,
									 const float *h1, size_t n, float *out);
/* The same with out rounded to bfloat16 (see pt_rmsnorm_forward_bf16). */
void		pt_ff_activation_forward_bf16(PtActivation act, bool gated, const float *h0,
										  const float *h1, size_t n, uint16_t *out);
/* The same from bf16 h0 and h1 (products that wrote bf16, pt_bf16_matmul_to_bf16). */
void		pt_ff_activation_bf16(PtActivation act, bool gated, const uint16_t *h0, const uint16_t *h1,
								  size_t n, uint16_t *out);
/*
 * The same on the calling thread alone: for a decoder step's few rows (batch
 * 32 x d_ff 1024), where waking a sleeping OpenMP thread (~28 us on this
 * project's machines) costs more than half the work saves.
 */
void		pt_ff_activation_forward_serial(PtActivation act, bool gated, const float *h0,
											const float *h1, size_t n, float *out);
/* dh0 = dout * h1 * act'(h0) (or dout * act'(h0)); dh1 = dout * act(h0) (gated only) */
void		pt_ff_activation_backward(PtActivation act, bool gated, const float *h0,
									  const float *h1, const float *dout, size_t n,
									  float *dh0, float *dh1);

/* y[i] = a[i] + b[i] */
void		pt_add(float *y, const float *a, const float *b, size_t n);
/* y[i] *= s */
void		pt_scale(float *y, float s, size_t n);

/*
 * In-place softmax of one row of d >= 1 finite values, after adding bias
 * (NULL: none).  Without normalize the row keeps exp(x - max) and the caller
 * scales later by the returned 1 / sum (attention scales its output rows
 * instead: fewer values than the probabilities).
 */
float		pt_softmax_row(float *row, const float *bias, int d, bool normalize);

/*
 * log(sum_i exp(x[i])) over n >= 1 finite values (vectorised exp, float sums
 * of blocks added in double, one pass over x), and in *argmax (may be NULL)
 * the first index of the largest value: one row of logits to
 * log-probabilities and a greedy pick.
 */
double		pt_log_sum_exp_argmax(const float *x, int n, int *argmax);

#endif
