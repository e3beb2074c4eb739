/*
 * runtime.c - the engine's set-up: loading OpenBLAS, threads, the CPU's
 * features (see runtime.h).  The choice of kernels by measurement is in
 * kernel_choice.c.
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
 * instruction sets (unless the user set it: that setting is respected).
 * This also keeps OpenBLAS out of any process that never runs the engine.
 */
#include <dlfcn.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>

#include "error.h"
#include "runtime.h"

#ifndef PT_OPENBLAS_LIBRARY
#define PT_OPENBLAS_LIBRARY "libopenblas.so.0"
#endif

static struct
{
	pthread_once_t once;
	int			status;			/* 0 ok, -1 failed */
	char		error[512];
	PtSgemmFn	sgemm;
	void		(*set_threads) (int n);
	char	   *(*corename) (void);
	char	   *(*config) (void);
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
	blas.sgemm = (PtSgemmFn) dlsym(lib, "cblas_sgemm");
	blas.set_threads = (void (*) (int)) dlsym(lib, "openblas_set_num_threads");
	blas.corename = (char *(*) (void)) dlsym(lib, "openblas_get_corename");
	blas.config = (char *(*) (void)) dlsym(lib, "openblas_get_config");
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

PtSgemmFn
pt_blas_sgemm(void)
{
	/* pt_model_load() initialised the library; without a model there is nothing to multiply */
	if (blas.sgemm == NULL && pt_engine_init() != 0)
		abort();
	return blas.sgemm;
}

const char *
pt_blas_core(void)
{
	if (pt_engine_init() != 0 || blas.corename == NULL)
		return "unknown";
	return blas.corename();
}

const char *
pt_blas_config(void)
{
	if (pt_engine_init() != 0 || blas.config == NULL)
		return "unknown";
	return blas.config();
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

/* ---- CPU features ------------------------------------------------------------ */

static struct
{
	pthread_once_t once;
	char		model[128];
	char		flags[256];
} cpu = {PTHREAD_ONCE_INIT};

static void
read_cpu(void)
{
	/* the instruction sets that decide which matrix kernels can run */
	static const char *const wanted[] = {"avx2", "fma", "avx512f", "avx512bw", "avx512vl",
		"avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8", "avx_vnni"};
	FILE	   *f = fopen("/proc/cpuinfo", "r");
	char		line[8192];
	bool		have_flags = false;

	strcpy(cpu.model, "unknown");
	while (f && fgets(line, sizeof(line), f))
	{
		char	   *colon = strchr(line, ':');

		if (colon == NULL)
			continue;
		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "model name", 10) == 0 && strcmp(cpu.model, "unknown") == 0)
			snprintf(cpu.model, sizeof(cpu.model), "%s", colon + 2 <= line + strlen(line) ? colon + 2 : "");
		else if (strncmp(line, "flags", 5) == 0 && !have_flags)
		{
			/* keep the wanted flags, in our order, each once */
			for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++)
			{
				size_t		len = strlen(wanted[i]);

				for (char *p = colon + 1; (p = strstr(p, wanted[i])) != NULL; p += len)
					if (p[-1] == ' ' && (p[len] == ' ' || p[len] == '\0'))
					{
						size_t		used = strlen(cpu.flags);

						snprintf(cpu.flags + used, sizeof(cpu.flags) - used, "%s%s",
								 used ? " " : "", wanted[i]);
						break;
					}
			}
			have_flags = true;
		}
		if (have_flags && strcmp(cpu.model, "unknown") != 0)
			break;
	}
	if (f)
		fclose(f);
}

const char *
pt_cpu_model(void)
{
	pthread_once(&cpu.once, read_cpu);
	return cpu.model;
}

const char *
pt_cpu_flags(void)
{
	pthread_once(&cpu.once, read_cpu);
	return cpu.flags;
}

double
pt_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}
