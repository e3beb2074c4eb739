/*
 * runtime.h - what the engine's arithmetic runs on: the matrix libraries it
 * loads, its threads and the CPU's features.  Which kernel each product uses
 * is chosen by measurement in kernel_choice.c.
 *
 * Kept apart from the products themselves (linear.c, linear_dnnl.c), as ggml
 * keeps its thread pool and CPU detection apart from its math.
 */
#ifndef PT_RUNTIME_H
#define PT_RUNTIME_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Loads the matrix library (once; thread-safe).  pt_model_load() calls it;
 * -1 with an error if OpenBLAS cannot be loaded.
 */
int			pt_engine_init(void);

/* Seconds on the monotonic clock: for timing work, never for dates. */
double		pt_seconds(void);

/* Creates the thread pool now (a process that must control its threads' signal mask). */
void		pt_engine_start_threads(void);

/* The OpenBLAS kernel family in use, e.g. "SkylakeX". */
const char *pt_blas_core(void);

/* Number of threads for the matrix library and the engine's parallel loops. */
void		pt_set_threads(int n);
int			pt_get_threads(void);

/* The CPU's model name (/proc/cpuinfo "model name"), e.g. "AMD EPYC 9B45"; never NULL. */
const char *pt_cpu_model(void);

/*
 * AVX-512 F, BW, VL and DQ (x86-64-v4), asked once.  Hand-vectorised loops
 * check it before they run; valgrind's CPU has none, so they take the
 * portable path there.
 */
bool		pt_cpu_has_avx512(void);

/*
 * The mask of the first min(count, 16) of an AVX-512 vector's 16 float
 * lanes (0 if count <= 0): the masked loads and stores of row tails.
 */
static inline uint16_t
pt_lanes16(int count)
{
	return count >= 16 ? (uint16_t) 0xFFFF : count <= 0 ? 0 : (uint16_t) ((1u << count) - 1);
}

/* The CPU's matrix-relevant features, space-separated, e.g. "avx2 fma avx512f avx512_bf16". */
const char *pt_cpu_flags(void);

/* OpenBLAS's build string, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH ..." */
const char *pt_blas_config(void);

/* The libraries an fp32 product can run on (kernel_choice.h picks one by measurement). */
typedef enum PtKernel
{
	PT_KERNEL_OPENBLAS = 0,
	PT_KERNEL_ONEDNN = 1
} PtKernel;

/* runtime.c's own: the sgemm OpenBLAS exports (NULL until pt_engine_init succeeds) */
typedef void (*PtSgemmFn) (int order, int trans_a, int trans_b, int m, int n, int k,
						   float alpha, const float *a, int lda, const float *b, int ldb,
						   float beta, float *c, int ldc);
PtSgemmFn	pt_blas_sgemm(void);

#endif
