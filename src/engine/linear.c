/*
 * linear.c - the model's matrix products (see linear.h): each goes to the
 * kernel its precision and the measured choice (kernel_choice.c) name.
 * Loading the libraries and threads live in runtime.c; the oneDNN products
 * in linear_dnnl.c.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "error.h"
#include "kernel_choice.h"
#include "linear.h"
#include "safetensors.h"

/* cblas_sgemm's enums, as cblas.h defines them */
enum
{
	ROW_MAJOR = 101,
	NO_TRANS = 111,
	TRANS = 112
};

const char *
pt_math_name(PtMath math)
{
	switch (math)
	{
		case PT_MATH_BF16:
			return "bf16";
		case PT_MATH_INT8:
			return "int8";
		default:
			return "fp32";
	}
}

void
pt_gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
		const float *a, int lda, const float *b, int ldb, float beta,
		float *c, int ldc)
{
	if (m <= 0 || n <= 0)
		return;
	pt_blas_sgemm() (ROW_MAJOR, trans_a ? TRANS : NO_TRANS, trans_b ? TRANS : NO_TRANS,
					 m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

bool
pt_fp32_product(PtKernel kernel, bool backward, const PtLinear *lin, const float *x,
				int m, float *y, bool accumulate)
{
	if (kernel == PT_KERNEL_ONEDNN)
		return pt_dnnl_f32_matmul(lin, backward, x, m, y, accumulate);
	if (backward)				/* y[m, in] (+)= x[m, out] . W */
		pt_gemm(false, false, m, lin->in_dim, lin->out_dim, 1.0f,
				x, lin->out_dim, lin->w, lin->in_dim, accumulate ? 1.0f : 0.0f, y, lin->in_dim);
	else						/* y[m, out] (+)= x[m, in] . W^T */
		pt_gemm(false, true, m, lin->out_dim, lin->in_dim, 1.0f,
				x, lin->in_dim, lin->w, lin->in_dim, accumulate ? 1.0f : 0.0f, y, lin->out_dim);
	return true;
}

/* fp32 with the chosen kernel; OpenBLAS if oneDNN cannot run this one (y is then untouched) */
static void
fp32_product(bool backward, const PtLinear *lin, const float *x, int m, float *y, bool accumulate)
{
	if (m <= 0)
		return;
	if (!pt_fp32_product(pt_fp32_kernel(backward), backward, lin, x, m, y, accumulate))
		pt_fp32_product(PT_KERNEL_OPENBLAS, backward, lin, x, m, y, accumulate);
}

/* The input of a reduced-precision product, converted once for several weights. */
static bool
load_input(PtMath math, const float *x, int m, int k)
{
	if (math == PT_MATH_BF16)
		return pt_bf16_load_input(x, (size_t) m * k);
	return pt_int8_load_input(x, m, k);
}

static bool
reduced_matmul(PtMath math, const PtLinear *lin, int m, float *y, bool accumulate)
{
	if (math == PT_MATH_BF16)
		return pt_bf16_matmul(lin, m, y, accumulate);
	return pt_int8_matmul(lin, m, y, accumulate);
}

bool
pt_linear_runs_bf16(const PtLinear *lin, PtMath math)
{
	return (lin->w == NULL || math == PT_MATH_BF16) && pt_linear_packed_math(lin) == PT_MATH_BF16;
}

#define ROW_CHUNK 256			/* values of a weight row read from the checkpoint at a time */

/*
 * y (+)= x W^T for a linear that keeps no fp32 weights (a bf16 model) when
 * oneDNN could not run its bf16 product: fp32 sums over W's rows read from
 * the checkpoint's own data in chunks (slow, and it faults the mapping back
 * in), as pt_linear_backward's fallback does.
 */
static void
forward_from_checkpoint(const PtLinear *lin, const float *x, int m, float *y, bool accumulate)
{
	float		row[ROW_CHUNK];

	if (!accumulate)
		memset(y, 0, sizeof(float) * (size_t) m * lin->out_dim);
	for (int o = 0; o < lin->out_dim; o++)
		for (int k0 = 0; k0 < lin->in_dim; k0 += ROW_CHUNK)
		{
			int			n = lin->in_dim - k0 < ROW_CHUNK ? lin->in_dim - k0 : ROW_CHUNK;

			pt_linear_row_part(lin, o, k0, n, row);
			for (int i = 0; i < m; i++)
			{
				const float *xr = x + (size_t) i * lin->in_dim + k0;
				float		sum = 0.0f;

				for (int k = 0; k < n; k++)
					sum += xr[k] * row[k];
				y[(size_t) i * lin->out_dim + o] += sum;
			}
		}
}

/*
 * y (+)= x W^T, in the asked precision where the weights are prepared for
 * it, else fp32; always bf16 where there are no fp32 weights.
 */
static void
product(const PtLinear *lin, const float *x, int m, float *y, PtMath math, bool accumulate)
{
	if (lin->w == NULL)
		math = PT_MATH_BF16;
	if (math != PT_MATH_FP32 && m > 0 && pt_linear_packed_math(lin) == math &&
		load_input(math, x, m, lin->in_dim) && reduced_matmul(math, lin, m, y, accumulate))
		return;
	if (lin->w == NULL)
		forward_from_checkpoint(lin, x, m, y, accumulate);
	else
		fp32_product(false, lin, x, m, y, accumulate);
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
		if (lins[i]->w == NULL)
		{
			/* bf16 weights only: a product of its own (the loaded input may be another precision's) */
			product(lins[i], x, m, ys[i], PT_MATH_BF16, false);
			continue;
		}
		if (math != PT_MATH_FP32 && m > 0 && pt_linear_packed_math(lins[i]) == math)
		{
			if (!loaded)
				loaded = load_input(math, x, m, lins[i]->in_dim);
			if (loaded && reduced_matmul(math, lins[i], m, ys[i], false))
				continue;
		}
		fp32_product(false, lins[i], x, m, ys[i], false);
	}
}

void
pt_linear_backward(const PtLinear *lin, const float *dy, int m, float *dx, bool accumulate)
{
	int			done;

	if (m <= 0)
		return;
	if (lin->w != NULL)
	{
		fp32_product(true, lin, dy, m, dx, accumulate);
		return;
	}
	/* a bf16 model: dy rounded to bf16, W from the packed copy, products accumulated in fp32 */
	done = pt_bf16_backward(lin, dy, m, dx, accumulate);
	if (done == lin->out_dim)
		return;

	/*
	 * oneDNN failed from row `done` of W on (0: dx untouched): the rest in
	 * fp32 from the checkpoint's data, row by row (slow, and it faults the
	 * mapping in), added to what the first rows put in dx.
	 */
	if (done == 0 && !accumulate)
		memset(dx, 0, sizeof(float) * (size_t) m * lin->in_dim);
	for (int o = done; o < lin->out_dim; o++)
		for (int k0 = 0; k0 < lin->in_dim; k0 += ROW_CHUNK)
		{
			float		row[ROW_CHUNK];
			int			n = lin->in_dim - k0 < ROW_CHUNK ? lin->in_dim - k0 : ROW_CHUNK;

			pt_linear_row_part(lin, o, k0, n, row);
			for (int i = 0; i < m; i++)
			{
				float		g = dy[(size_t) i * lin->out_dim + o];
				float	   *out = dx + (size_t) i * lin->in_dim + k0;

				for (int k = 0; k < n; k++)
					out[k] += g * row[k];
			}
		}
}

/* ---- the weights' storage ----------------------------------------------------- */

int
pt_linear_materialize_f32(PtLinear *lin)
{
	float	   *w;

	if (lin->w != NULL)
		return 0;
	if (lin->src_dtype == PT_DTYPE_F32 && ((uintptr_t) lin->src % sizeof(float)) == 0)
	{
		lin->w = lin->src;		/* the mapping itself */
		lin->w_owned = false;
		return 0;
	}
	w = pt_malloc(sizeof(float) * (size_t) lin->out_dim * lin->in_dim);
	if (w == NULL)
		return -1;
	pt_convert_to_f32(lin->src_dtype, lin->src, (size_t) lin->out_dim * lin->in_dim, w);
	lin->w = w;
	lin->w_owned = true;
	return 0;
}

void
pt_linear_drop_f32(PtLinear *lin)
{
	if (lin->w_owned)
		free((void *) lin->w);
	lin->w = NULL;
	lin->w_owned = false;
}

void
pt_linear_free(PtLinear *lin)
{
	pt_linear_release_bf16(lin);
	pt_linear_drop_f32(lin);
}

