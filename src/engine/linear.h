/*
 * linear.h - the engine's one interface to matrix-multiply libraries.
 *
 * Every weight matrix of the model is a PtLinear: W[out_dim, in_dim], stored
 * row-major as in Hugging Face (nn.Linear.weight).  The model only ever needs
 *   forward:   y[m, out] = x[m, in] . W^T
 *   backward:  dx[m, in] (+)= dy[m, out] . W      (weights are frozen: no dW)
 * with the rows of all sequences in a batch stacked into m.  Attention's small
 * per-head products call pt_gemm() directly.
 */
#ifndef PT_LINEAR_H
#define PT_LINEAR_H

#include <stdbool.h>

/*
 * The arithmetic of a forward product: fp32 (sgemm), or bfloat16 inputs with
 * fp32 accumulation (oneDNN, where the CPU has bfloat16 instructions and the
 * weights were prepared with pt_linear_prepare_bf16).
 */
typedef enum PtMath
{
	PT_MATH_FP32 = 0,
	PT_MATH_BF16 = 1
} PtMath;

typedef struct PtLinearBf16 PtLinearBf16;	/* oneDNN's copy of the weights */

typedef struct PtLinear
{
	int			out_dim;
	int			in_dim;
	const float *w;				/* [out_dim, in_dim] fp32 */
	PtLinearBf16 *bf16;			/* NULL unless prepared */
} PtLinear;

/* y[m, out] = x[m, in] . W^T */
void		pt_linear_forward(const PtLinear *lin, const float *x, int m, float *y, PtMath math);

/* y[m, out] += x[m, in] . W^T: a residual connection folded into the product */
void		pt_linear_forward_add(const PtLinear *lin, const float *x, int m, float *y, PtMath math);

/*
 * n products of one input, y_i = x . W_i^T (Q, K and V; or wi_0 and wi_1):
 * in bfloat16 the input is rounded once for all of them.
 */
void		pt_linear_forward_multi(const PtLinear *const *lins, int n, const float *x, int m,
									float *const *ys, PtMath math);

/* linear_bf16.c: true if this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX) */
bool		pt_bf16_supported(void);
int			pt_linear_prepare_bf16(PtLinear *lin);
void		pt_linear_release_bf16(PtLinear *lin);
/*
 * The bfloat16 product in two steps: round the input x[m, k] once into this
 * thread's scratch, then y (+)= scratch . W^T for one or more weights of
 * in_dim k.  false if oneDNN could not run it (the caller falls back to fp32).
 */
bool		pt_bf16_load_input(const float *x, size_t n);
bool		pt_bf16_matmul(const PtLinear *lin, int m, float *y, bool accumulate);

/* dx[m, in] = dy[m, out] . W, or += when accumulate */
void		pt_linear_backward(const PtLinear *lin, const float *dy, int m, float *dx, bool accumulate);

/*
 * C[m, n] = alpha * op(A) . op(B) + beta * C with row-major operands and
 * leading dimensions; a thin wrapper over cblas_sgemm.
 */
void		pt_gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
					const float *a, int lda, const float *b, int ldb, float beta,
					float *c, int ldc);

/*
 * Loads the matrix library (once; thread-safe).  pt_model_load() calls it;
 * -1 with an error if OpenBLAS cannot be loaded.
 */
int			pt_engine_init(void);

/* Creates the thread pool now (a process that must control its threads' signal mask). */
void		pt_engine_start_threads(void);

/* The OpenBLAS kernel family in use, e.g. "SkylakeX". */
const char *pt_blas_core(void);

/* Number of threads for the matrix library and the engine's parallel loops. */
void		pt_set_threads(int n);
int			pt_get_threads(void);

#endif
