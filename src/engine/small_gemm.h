/*
 * small_gemm.h - attention's per-head products: C[m, n] (+)= op(A) op(B).
 *
 * Each (sequence, head) pair of attention multiplies matrices of tens to a
 * few hundred rows by 64 columns (T5's d_kv), inside a parallel loop whose
 * threads each run their own products.  That is too small for a BLAS call to
 * pay off: OpenBLAS packs both operands for every call, and where the
 * environment pins its kernels to an older family (OPENBLAS_CORETYPE=Haswell
 * on AVX-512 machines, which we respect) it runs 256-bit FMAs.  On CPUs with
 * AVX-512 these products run a register-blocked AVX-512 kernel instead (only
 * op(B) = B^T, or a B whose rows lie far apart, is copied, once per call);
 * elsewhere (and under valgrind, which hides AVX-512) they call pt_gemm()
 * (linear.h) as before.
 *
 * Semantics are pt_gemm()'s with alpha = 1 and beta = accumulate ? 1 : 0
 * (row-major; op(X) = X^T when trans_x):
 *   op(A) is [m, k]: A is [m, k] (lda >= k) or, transposed, [k, m] (lda >= m)
 *   op(B) is [k, n]: B is [k, n] (ldb >= n) or, transposed, [n, k] (ldb >= k)
 *   C is [m, n] with ldc >= n.
 * Sums run in float32 in another order than OpenBLAS's: results differ from
 * pt_gemm()'s by rounding only.
 */
#ifndef PT_SMALL_GEMM_H
#define PT_SMALL_GEMM_H

#include <stdbool.h>

/*
 * The most floats of B one call copies (op(B) = B^T, or rows far apart) into
 * its thread's buffer, which lives as long as the thread: 4 MB.  Larger
 * operands (cross-attention absorbed into the queries reads an encoder
 * sequence [Te, d_model], up to 8192 x 4096) go to pt_gemm() instead, so a
 * long-lived worker's threads never each hold tens of megabytes.
 */
#define PT_SMALL_GEMM_MAX_COPY ((size_t) 1 << 20)

void		pt_small_gemm(bool trans_a, bool trans_b, int m, int n, int k,
						  const float *a, int lda, const float *b, int ldb,
						  float *c, int ldc, bool accumulate);

#endif							/* PT_SMALL_GEMM_H */
