/*
 * linear.c - matrix products on OpenBLAS (see linear.h).
 *
 * We link the OpenMP build of OpenBLAS so that BLAS and the engine's own
 * "#pragma omp" loops share one thread pool: a GEMM called from inside a
 * parallel loop runs single-threaded instead of oversubscribing the cores.
 */
#include <cblas.h>
#include <omp.h>

#include "linear.h"

void
pt_gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
		const float *a, int lda, const float *b, int ldb, float beta,
		float *c, int ldc)
{
	if (m <= 0 || n <= 0)
		return;
	cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
				trans_b ? CblasTrans : CblasNoTrans,
				m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void
pt_linear_forward(const PtLinear *lin, const float *x, int m, float *y)
{
	pt_gemm(false, true, m, lin->out_dim, lin->in_dim, 1.0f,
			x, lin->in_dim, lin->w, lin->in_dim, 0.0f, y, lin->out_dim);
}

void
pt_linear_backward(const PtLinear *lin, const float *dy, int m, float *dx, bool accumulate)
{
	pt_gemm(false, false, m, lin->in_dim, lin->out_dim, 1.0f,
			dy, lin->out_dim, lin->w, lin->in_dim, accumulate ? 1.0f : 0.0f,
			dx, lin->in_dim);
}

void
pt_set_threads(int n)
{
	if (n < 1)
		n = 1;
	omp_set_num_threads(n);
	openblas_set_num_threads(n);
}

int
pt_get_threads(void)
{
	return omp_get_max_threads();
}
