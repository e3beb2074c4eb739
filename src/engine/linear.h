/*
 * linear.h - the engine's one interface to matrix products.
 *
 * Every weight matrix of the model is a PtLinear: W[out_dim, in_dim], stored
 * row-major as in Hugging Face (nn.Linear.weight).  The model only ever needs
 *   forward:   y[m, out] = x[m, in] . W^T
 *   backward:  dx[m, in] (+)= dy[m, out] . W      (weights are frozen: no dW)
 * with the rows of all sequences in a batch stacked into m.  Attention's small
 * per-head products go through small_gemm.h (pt_gemm() where it cannot run).
 *
 * Which library computes a product depends on the precision and, for fp32, on
 * a measurement made when the model loads (runtime.h: pt_kernels_choose):
 *   fp32: OpenBLAS sgemm or oneDNN's f32 matmul, whichever measured faster,
 *         separately for the forward and the backward products;
 *   bf16: oneDNN, bfloat16 inputs, fp32 accumulation (AVX512-BF16 or AMX);
 *   int8: oneDNN, s8 weights (one scale per output channel, quantised once)
 *         and s8 activations (one scale per row, quantised per product),
 *         int32 accumulation, fp32 output (VNNI or AMX where the CPU has them).
 */
#ifndef PT_LINEAR_H
#define PT_LINEAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dtype.h"
#include "runtime.h"
#include "safetensors.h"

/* The arithmetic of a forward product (backward products are always fp32). */
typedef enum PtMath
{
	PT_MATH_FP32 = 0,
	PT_MATH_BF16 = 1,
	PT_MATH_INT8 = 2
} PtMath;

/* "fp32", "bf16" or "int8" */
const char *pt_math_name(PtMath math);

/* oneDNN's copy of the weights in a reduced precision, in its preferred layout */
typedef struct PtLinearPacked PtLinearPacked;

/*
 * Where the weights live.  src is the checkpoint's tensor (in the file's
 * mapping, F32, F16 or BF16).  A model in fp32 or int8 reads w, the fp32
 * weights: src itself for an aligned F32 tensor, else a converted copy
 * (w_owned).  A model in bf16 keeps no fp32 weights (w == NULL) and reads
 * nothing but the packed copy, forward and backward products alike: the
 * mapping's pages, given back after packing, stay out of memory (one copy
 * of the weights, see linear_dnnl.c's "bf16 backward").
 * Rule: a PtLinear without w computes in bf16, whatever the caller asks.
 */
typedef struct PtLinear
{
	int			out_dim;
	int			in_dim;
	const float *w;				/* [out_dim, in_dim] fp32, or NULL (bf16 model) */
	PtLinearPacked *packed;		/* NULL unless prepared for bf16 or int8 */
	const void *src;			/* the checkpoint's [out_dim, in_dim] data, in src_dtype */
	int			src_dtype;		/* PtDType */
	bool		w_owned;		/* w was allocated (converted), not the mapping */
} PtLinear;

/* y[m, out] = x[m, in] . W^T */
void		pt_linear_forward(const PtLinear *lin, const float *x, int m, float *y, PtMath math);

/* y[m, out] += x[m, in] . W^T: a residual connection folded into the product */
void		pt_linear_forward_add(const PtLinear *lin, const float *x, int m, float *y, PtMath math);

/*
 * n products of one input, y_i = x . W_i^T (Q, K and V; or wi_0 and wi_1):
 * in bfloat16 and int8 the input is converted once for all of them.
 */
void		pt_linear_forward_multi(const PtLinear *const *lins, int n, const float *x, int m,
									float *const *ys, PtMath math);

/*
 * dx[m, in] = dy[m, out] . W, or += when accumulate: fp32 where the weights
 * are fp32, else bf16 inputs with fp32 accumulation (mixed precision).
 */
void		pt_linear_backward(const PtLinear *lin, const float *dy, int m, float *dx, bool accumulate);

/*
 * C[m, n] = alpha * op(A) . op(B) + beta * C with row-major operands and
 * leading dimensions; a thin wrapper over cblas_sgemm.
 */
void		pt_gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
					const float *a, int lda, const float *b, int ldb, float beta,
					float *c, int ldc);

/*
 * An fp32 product with a given kernel, whatever was chosen: forward
 * y (+)= x . W^T, or backward y (+)= x . W.  For the measurement and for
 * tests that compare the kernels; false if that kernel cannot run here.
 */
bool		pt_fp32_product(PtKernel kernel, bool backward, const PtLinear *lin, const float *x,
							int m, float *y, bool accumulate);

/* ---- linear_dnnl.c: the oneDNN products ------------------------------------ */

/* true if oneDNN runs here (its f32 matmul then does too) */
bool		pt_dnnl_supported(void);
/* true if this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX) */
bool		pt_bf16_supported(void);
/* true if oneDNN has an int8 matmul for this CPU (VNNI or AMX make it fast) */
bool		pt_int8_supported(void);
/* oneDNN's name for the kernel it last built for a precision, e.g. "brg:avx512_core_bf16" */
const char *pt_dnnl_kernel(PtMath math);
/*
 * The most rows one oneDNN product of a precision runs at once (longer ones
 * go in pieces; 0 without oneDNN).  kernel_choice.c sets it by measurement
 * (a multiple of 16, at most 8192); PTUNE_PIECE_ROWS forces one size for
 * all, and pt_dnnl_piece_rows_forced() returns it (0: not forced).
 */
int			pt_dnnl_piece_rows(PtMath math);
void		pt_dnnl_set_piece_rows(PtMath math, int rows);
int			pt_dnnl_piece_rows_forced(void);

/* Converts W once for bf16 / int8 products (replacing another precision's copy). */
int			pt_linear_prepare_bf16(PtLinear *lin);
int			pt_linear_prepare_int8(PtLinear *lin);
/*
 * The weights' storage (see PtLinear): make the fp32 w (from src) or drop
 * it (a bf16 model keeps none); free everything the linear allocated.
 */
int			pt_linear_materialize_f32(PtLinear *lin);
void		pt_linear_drop_f32(PtLinear *lin);
void		pt_linear_free(PtLinear *lin);

/*
 * out[n] = W[r, k0 .. k0 + n) in fp32: from w, else from the checkpoint's
 * own data (the embedding's lookups fault in only the rows they read).
 * Inline (it needs only dtype.c) so that code reading embedding rows, such
 * as prompt initialisation, links without the product kernels.
 */
static inline void
pt_linear_row_part(const PtLinear *lin, int r, int k0, int n, float *out)
{
	size_t		at = (size_t) r * lin->in_dim + k0;

	if (lin->w)
		memcpy(out, lin->w + at, sizeof(float) * n);
	else
		pt_convert_to_f32(lin->src_dtype, (const char *) lin->src + at * pt_dtype_size(lin->src_dtype),
						  n, out);
}

/* out[in_dim] = row r of W in fp32, whatever form the weights are kept in */
static inline void
pt_linear_row(const PtLinear *lin, int r, float *out)
{
	pt_linear_row_part(lin, r, 0, lin->in_dim, out);
}

/* Frees the reduced-precision copy, whatever its precision. */
void		pt_linear_release_bf16(PtLinear *lin);
/* The precision the weights are prepared for (PT_MATH_FP32: none). */
PtMath		pt_linear_packed_math(const PtLinear *lin);

/*
 * The reduced-precision product in two steps: convert the input x[m, k] once
 * into this thread's scratch, then y (+)= scratch . W^T for one or more
 * weights of in_dim k.  false if oneDNN could not run it (the caller falls
 * back to fp32).
 */
bool		pt_bf16_load_input(const float *x, size_t n);
/*
 * Or the caller writes the input itself: room for n bf16 values in this
 * thread's scratch, counted as loaded (NULL if it cannot grow).  A kernel
 * that rounds its own fp32 results into it (pt_rmsnorm_forward_bf16,
 * pt_ff_activation_forward_bf16) saves writing them and reading them back.
 */
uint16_t   *pt_bf16_input_room(size_t n);
/* true if products of lin in math run in bf16 (as pt_linear_forward would) */
bool		pt_linear_runs_bf16(const PtLinear *lin, PtMath math);
bool		pt_bf16_matmul(const PtLinear *lin, int m, float *y, bool accumulate);
/*
 * The same with y[m, out] in bf16 (oneDNN rounds the fp32 sums to nearest
 * even, denormals to zero): for inference, where what reads y takes bf16 (as
 * autocast does).
 */
bool		pt_bf16_matmul_to_bf16(const PtLinear *lin, int m, uint16_t *y);
/*
 * dx[m, in] (+)= dy[m, out] . W with dy rounded to bf16 and W read from the
 * packed bf16 copy, fp32 accumulation.  Returns how many rows of W (from
 * the first) are in dx: out when it all ran, 0 (dx untouched) if oneDNN
 * could not start, else the row of W's chunk that failed, for the caller to
 * finish the rest (accumulating).  A failure inside a chunk, after some of
 * its pieces of rows of dy were added, is not undone (it needs oneDNN to
 * fail creating a memory object between two pieces).
 */
int			pt_bf16_backward(const PtLinear *lin, const float *dy, int m, float *dx, bool accumulate);
/* Tests only: pt_bf16_backward fails at this chunk of W's rows (>= 1), as if oneDNN had; -1: never. */
void		pt_dnnl_fail_backward_chunk(int chunk);
/*
 * Tests only: the forward bf16 / int8 product after `after` more of them
 * (0: the next) fails as if oneDNN had, once; -1: none.  Returns the count
 * it replaces: -1 if the last one set has failed its product (or none was).
 */
int			pt_dnnl_fail_forward(int after);
bool		pt_int8_load_input(const float *x, int m, int k);
bool		pt_int8_matmul(const PtLinear *lin, int m, float *y, bool accumulate);

/* oneDNN's f32 matmul on the fp32 weights as they are (no copy); false if it cannot run */
bool		pt_dnnl_f32_matmul(const PtLinear *lin, bool backward, const float *x, int m,
							   float *y, bool accumulate);

/*
 * oneDNN's own matmul at [m, k] x [k, n] in a precision (weights in its
 * preferred layout, all rows at once): the best of reps runs in GFLOP/s, 0
 * if it cannot run.  The ceiling ptune bench compares the encoder with.
 */
double		pt_dnnl_matmul_gflops(PtMath math, int m, int n, int k, int reps);

#endif
