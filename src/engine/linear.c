/*
 * linear.c - matrix products on OpenBLAS (see linear.h).
 *
 * We use the OpenMP build of OpenBLAS so that BLAS and the engine's own
 * "#pragma omp" loops share one thread pool: a GEMM called from inside a
 * parallel loop runs single-threaded instead of oversubscribing the cores.
 *
 * OpenBLAS picks its kernels by CPU model when the library is loaded, and
 * Debian's 0.3.21 does not know recent Xeons: it falls back to its generic
 * "Prescott" SSE3 kernels, about 6x slower than its AVX-512 ones on the same
 * machine (measured: 32 vs 185 GFLOP/s).  So the engine loads OpenBLAS
 * itself with dlopen(), after setting OPENBLAS_CORETYPE from the CPU's
 * instruction sets (unless the user set it).  This also keeps OpenBLAS out
 * of any process that never runs the engine.
 */
#include <dlfcn.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "error.h"
#include "linear.h"

#ifndef PT_OPENBLAS_LIBRARY
#define PT_OPENBLAS_LIBRARY "libopenblas.so.0"
#endif

/* cblas_sgemm's enums, as cblas.h defines them */
enum
{
	ROW_MAJOR = 101,
	NO_TRANS = 111,
	TRANS = 112
};

typedef void (*SgemmFn) (int order, int trans_a, int trans_b, int m, int n, int k,
						 float alpha, const float *a, int lda, const float *b, int ldb,
						 float beta, float *c, int ldc);

static struct
{
	pthread_once_t once;
	int			status;			/* 0 ok, -1 failed */
	char		error[512];
	SgemmFn		sgemm;
	void		(*set_threads) (int n);
	char	   *(*corename) (void);
} blas = {PTHREAD_ONCE_INIT};

/* The OpenBLAS kernel family for this CPU's instruction sets. */
static const char *
core_for_this_cpu(void)
{
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
		__builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
		return "SkylakeX";
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		return "Haswell";
	return NULL;				/* let OpenBLAS decide */
}

static void
load_blas(void)
{
	const char *core = core_for_this_cpu();
	void	   *lib;

	if (core && getenv("OPENBLAS_CORETYPE") == NULL)
		setenv("OPENBLAS_CORETYPE", core, 0);
	lib = dlopen(PT_OPENBLAS_LIBRARY, RTLD_NOW | RTLD_LOCAL);
	if (lib == NULL)
	{
		snprintf(blas.error, sizeof(blas.error), "could not load OpenBLAS (%s): %s",
				 PT_OPENBLAS_LIBRARY, dlerror());
		blas.status = -1;
		return;
	}
	blas.sgemm = (SgemmFn) dlsym(lib, "cblas_sgemm");
	blas.set_threads = (void (*) (int)) dlsym(lib, "openblas_set_num_threads");
	blas.corename = (char *(*) (void)) dlsym(lib, "openblas_get_corename");
	if (blas.sgemm == NULL || blas.set_threads == NULL)
	{
		snprintf(blas.error, sizeof(blas.error), "%s lacks cblas_sgemm", PT_OPENBLAS_LIBRARY);
		blas.status = -1;
	}
}

int
pt_engine_init(void)
{
	pthread_once(&blas.once, load_blas);
	if (blas.status != 0)
		return pt_fail(PT_ERR_IO, "%s", blas.error);
	return 0;
}

const char *
pt_blas_core(void)
{
	if (pt_engine_init() != 0 || blas.corename == NULL)
		return "unknown";
	return blas.corename();
}

void
pt_gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
		const float *a, int lda, const float *b, int ldb, float beta,
		float *c, int ldc)
{
	if (m <= 0 || n <= 0)
		return;
	/* pt_model_load() initialised the library; without a model there is nothing to multiply */
	if (blas.sgemm == NULL && pt_engine_init() != 0)
		abort();
	blas.sgemm(ROW_MAJOR, trans_a ? TRANS : NO_TRANS, trans_b ? TRANS : NO_TRANS,
			   m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* y (+)= x W^T, in bfloat16 where prepared and asked for, else fp32 sgemm */
static void
product(const PtLinear *lin, const float *x, int m, float *y, PtMath math, bool accumulate)
{
	if (math == PT_MATH_BF16 && lin->bf16 && m > 0 &&
		pt_bf16_load_input(x, (size_t) m * lin->in_dim) && pt_bf16_matmul(lin, m, y, accumulate))
		return;
	pt_gemm(false, true, m, lin->out_dim, lin->in_dim, 1.0f,
			x, lin->in_dim, lin->w, lin->in_dim, accumulate ? 1.0f : 0.0f, y, lin->out_dim);
}

void
pt_linear_forward(const PtLinear *lin, const float *x, int m, float *y, PtMath math)
{
	product(lin, x, m, y, math, false);
}

void
pt_linear_forward_add(const PtLinear *lin, const float *x, int m, float *y, PtMath math)
{
	product(lin, x, m, y, math, true);
}

void
pt_linear_forward_multi(const PtLinear *const *lins, int n, const float *x, int m,
						float *const *ys, PtMath math)
{
	bool		loaded = false;

	for (int i = 0; i < n; i++)
	{
		if (math == PT_MATH_BF16 && lins[i]->bf16 && m > 0)
		{
			if (!loaded)
				loaded = pt_bf16_load_input(x, (size_t) m * lins[i]->in_dim);
			if (loaded && pt_bf16_matmul(lins[i], m, ys[i], false))
				continue;
		}
		pt_gemm(false, true, m, lins[i]->out_dim, lins[i]->in_dim, 1.0f,
				x, lins[i]->in_dim, lins[i]->w, lins[i]->in_dim, 0.0f, ys[i], lins[i]->out_dim);
	}
}

void
pt_linear_backward(const PtLinear *lin, const float *dy, int m, float *dx, bool accumulate)
{
	pt_gemm(false, false, m, lin->in_dim, lin->out_dim, 1.0f,
			dy, lin->out_dim, lin->w, lin->in_dim, accumulate ? 1.0f : 0.0f,
			dx, lin->in_dim);
}

void
pt_engine_start_threads(void)
{
#pragma omp parallel
	{
		(void) omp_get_thread_num();
	}
}

void
pt_set_threads(int n)
{
	if (n < 1)
		n = 1;
	omp_set_num_threads(n);
	if (pt_engine_init() == 0)
		blas.set_threads(n);
}

int
pt_get_threads(void)
{
	return omp_get_max_threads();
}
