/*
 * linear.c - the model's matrix products (see linear.h): each goes to the
 * kernel its precision and the measured choice (kernel_choice.c) name.
 * Loading the libraries and threads live in runtime.c; the oneDNN products
 * in linear_dnnl.c.
 */
#include "kernel_choice.h"
#include "linear.h"

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

/* y (+)= x W^T, in the asked precision where the weights are prepared for it, else fp32 */
static void
product(const PtLinear *lin, const float *x, int m, float *y, PtMath math, bool accumulate)
{
	if (math != PT_MATH_FP32 && m > 0 && pt_linear_packed_math(lin) == math &&
		load_input(math, x, m, lin->in_dim) && reduced_matmul(math, lin, m, y, accumulate))
		return;
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
	fp32_product(true, lin, dy, m, dx, accumulate);
}
