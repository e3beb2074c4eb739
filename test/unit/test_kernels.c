/*
 * test_kernels.c - the matrix kernels agree: OpenBLAS and oneDNN's f32
 * matmul give the float64 product (forward x . W^T and backward dy . W, with
 * and without accumulation, over row counts that span linear_dnnl.c's
 * pieces); int8 products equal the product of their quantised operands and
 * stay within their quantisation bound; bf16
 * backward products read the packed copy only and give the float64 product
 * of the bf16 operands; the measured choice is reported and cached;
 * training on an int8 model computes in fp32; the one-pass log-sum-exp /
 * argmax and the serial activation.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <omp.h>

#include "attention.h"
#include "attention_bf16.h"
#include "dtype.h"
#include "error.h"
#include "helpers.h"
#include "kernel_choice.h"
#include "kernels.h"
#include "safetensors.h"
#include "small_gemm.h"
#include "transformer.h"
#include "unit.h"

/* a deterministic value in [-1, 1) */
static float
value(size_t i, unsigned salt)
{
	return (float) ((int) ((i * 2654435761u + salt * 40503u) % 2001u) - 1000) * 1e-3f;
}

/* the float64 product: y[m, n] = x[m, k] . op(W) */
static void
reference(bool backward, const PtLinear *lin, const float *x, int m, double *y)
{
	int			n = backward ? lin->in_dim : lin->out_dim,
				k = backward ? lin->out_dim : lin->in_dim;

	for (int i = 0; i < m; i++)
		for (int j = 0; j < n; j++)
		{
			double		s = 0.0;

			for (int t = 0; t < k; t++)
				s += (double) x[(size_t) i * k + t] *
					(backward ? lin->w[(size_t) t * lin->in_dim + j] : lin->w[(size_t) j * lin->in_dim + t]);
			y[(size_t) i * n + j] = s;
		}
}

void		test_fp32_kernels_agree(void);
void
test_fp32_kernels_agree(void)
{
	enum
	{
		OUT = 96, IN = 80
	};
	/* rows: fewer than 16; a multiple of 16; two pieces of 64 + 32 + 12 (every piece size) */
	int			rows[3] = {5, 48, 2 * 64 + 32 + 12};
	int			piece;
	float	   *w,
			   *x,
			   *y;
	double	   *ref;
	PtLinear	lin = {.out_dim = OUT, .in_dim = IN, .src_dtype = PT_DTYPE_F32};

	REQUIRE(pt_engine_init() == 0);
	if (!pt_dnnl_supported())
		SKIP("oneDNN does not run on this CPU");
	piece = pt_dnnl_piece_rows(PT_MATH_FP32);
	pt_dnnl_set_piece_rows(PT_MATH_FP32, 64);	/* small: cheap under valgrind */
	w = malloc(sizeof(float) * OUT * IN);
	x = malloc(sizeof(float) * rows[2] * OUT);
	y = malloc(sizeof(float) * rows[2] * OUT);
	ref = malloc(sizeof(double) * rows[2] * OUT);
	REQUIRE(w && x && y && ref);
	lin.w = lin.src = w;
	for (size_t i = 0; i < (size_t) OUT * IN; i++)
		w[i] = value(i, 1);
	for (size_t i = 0; i < (size_t) rows[2] * OUT; i++)
		x[i] = value(i, 2);
	for (int backward = 0; backward < 2; backward++)
		for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++)
		{
			int			m = rows[r],
						n = backward ? IN : OUT;

			reference(backward, &lin, x, m, ref);
			for (int kernel = PT_KERNEL_OPENBLAS; kernel <= PT_KERNEL_ONEDNN; kernel++)
				for (int accumulate = 0; accumulate < 2; accumulate++)
				{
					double		worst = 0.0;

					/* accumulating onto 1.0 everywhere must add exactly that */
					for (size_t i = 0; i < (size_t) m * n; i++)
						y[i] = accumulate ? 1.0f : NAN;
					REQUIREF(pt_fp32_product(kernel, backward, &lin, x, m, y, accumulate),
							 "%s could not run", pt_kernel_name(kernel));
					for (size_t i = 0; i < (size_t) m * n; i++)
						worst = fmax(worst, fabs(y[i] - (ref[i] + accumulate)));
					CHECKF(worst < 1e-4, "%s %s, %d rows%s: off the float64 product by %.3g",
						   pt_kernel_name(kernel), backward ? "backward" : "forward", m,
						   accumulate ? ", accumulating" : "", worst);
				}
		}
	pt_dnnl_set_piece_rows(PT_MATH_FP32, piece);
	free(w);
	free(x);
	free(y);
	free(ref);
}

/*
 * int8 (linear_dnnl.c): W is quantised per output channel, sw[j] =
 * max|W[j, :]| / 127, and each input row per product, sx[i] = max|x[i, :]| /
 * 127, both rounded half to even.  Each product must be
 *  - the float64 product of those quantised operands times sx[i] * sw[j], to
 *    float rounding (this fails if the scheme changes: one scale per input or
 *    per piece, another rounding, a missed or doubled scale), and
 *  - within the quantisation bound of the float64 product of the unquantised
 *    operands: each factor is off by at most half its scale, so |error| <=
 *    sum_t (|x_it| sw/2 + |W_jt| sx/2 + sx sw/4).
 * Over every piece size (pieces of 64 rows, then 32, then 12), with rows and
 * channels of different ranges and one row of 20x outliers (the other rows
 * keep their own scales), rows of 200 values (the vectorised quantisation's
 * tail), with and without accumulation; an all-zero input gives exact zeros.
 */
static void
int8_expected(const PtLinear *lin, const float *x, int m, double *exact, double *bound)
{
	int			n = lin->out_dim,
				k = lin->in_dim;

	for (int j = 0; j < n; j++)
	{
		const float *wj = lin->w + (size_t) j * k;
		float		wmax = 0.0f;
		double		sw;

		for (int t = 0; t < k; t++)
			wmax = fmaxf(wmax, fabsf(wj[t]));
		sw = wmax / 127.0f;
		for (int i = 0; i < m; i++)
		{
			const float *xi = x + (size_t) i * k;
			float		amax = 0.0f,
						inv;
			double		sx,
						dot = 0.0,
						b = 0.0;

			for (int t = 0; t < k; t++)
				amax = fmaxf(amax, fabsf(xi[t]));
			inv = amax > 0.0f ? 127.0f / amax : 0.0f;
			sx = amax / 127.0f;

			for (int t = 0; t < k; t++)
			{
				dot += nearbyintf(xi[t] * inv) * (double) (wmax > 0.0f ? lrintf(wj[t] * (127.0f / wmax)) : 0);
				b += fabs(xi[t]) * sw / 2 + fabs(wj[t]) * sx / 2 + sx * sw / 4;
			}
			exact[(size_t) i * n + j] = (double) (float) ((float) sx * (float) sw) * dot;
			bound[(size_t) i * n + j] = b;
		}
	}
}

void		test_int8_product_within_bound(void);
void
test_int8_product_within_bound(void)
{
	enum
	{
		OUT = 64, IN = 200
	};
	int			M = 2 * 64 + 32 + 12;	/* two pieces of 64 + 32 + 12 rows: every piece size */
	int			piece;
	float	   *w,
			   *x,
			   *y;
	double	   *ref,
			   *exact,
			   *bound;
	PtLinear	lin;

	/* before allocating: a skip returns at once */
	REQUIRE(pt_engine_init() == 0);
	if (!pt_int8_supported())
		SKIP("this CPU has no int8 dot-product instructions (VNNI or AMX)");
	piece = pt_dnnl_piece_rows(PT_MATH_INT8);
	pt_dnnl_set_piece_rows(PT_MATH_INT8, 64);
	w = malloc(sizeof(float) * OUT * IN);
	x = malloc(sizeof(float) * M * IN);
	y = malloc(sizeof(float) * M * OUT);
	ref = malloc(sizeof(double) * M * OUT);
	exact = malloc(sizeof(double) * M * OUT);
	bound = malloc(sizeof(double) * M * OUT);
	REQUIRE(w && x && y && ref && exact && bound);
	lin = (PtLinear) {.out_dim = OUT, .in_dim = IN, .w = w, .src = w, .src_dtype = PT_DTYPE_F32};
	for (size_t i = 0; i < (size_t) OUT * IN; i++)
		w[i] = value(i, 3) * (1 + (int) (i / IN) % 4);	/* channels of different ranges */
	for (size_t i = 0; i < (size_t) M * IN; i++)
		x[i] = value(i, 4) * (1 + (int) (i / IN) % 3) * (i / IN == 70 ? 20 : 1);	/* rows too, and outliers */
	REQUIRE(pt_linear_prepare_int8(&lin) == 0);
	CHECK(pt_linear_packed_math(&lin) == PT_MATH_INT8);
	reference(false, &lin, x, M, ref);
	int8_expected(&lin, x, M, exact, bound);
	for (int accumulate = 0; accumulate < 2; accumulate++)
	{
		double		worst = 0.0;

		for (size_t i = 0; i < (size_t) M * OUT; i++)
			y[i] = accumulate ? 1.0f : NAN;
		if (accumulate)
			pt_linear_forward_add(&lin, x, M, y, PT_MATH_INT8);
		else
			pt_linear_forward(&lin, x, M, y, PT_MATH_INT8);
		for (int i = 0; i < M; i++)
			for (int j = 0; j < OUT; j++)
			{
				size_t		at = (size_t) i * OUT + j;
				double		got = y[at] - accumulate;

				/* float rounding: the scale, the int32 sum in fp32, the added 1 */
				worst = fmax(worst, fabs(got - exact[at]) / (1e-6 * (fabs(exact[at]) + accumulate) + 1e-9));
				CHECKF(fabs(got - exact[at]) <= 1e-6 * (fabs(exact[at]) + accumulate) + 1e-9,
					   "row %d col %d%s: int8 %.7f, quantised operands in float64 %.7f", i, j,
					   accumulate ? ", accumulating" : "", got, exact[at]);
				CHECKF(fabs(got - ref[at]) <= bound[at] * 1.001 + 1e-6,
					   "row %d col %d: int8 %.5f, float64 %.5f, bound %.5f", i, j, got, ref[at], bound[at]);
			}
		CHECKF(worst <= 1.0, "off the exact product by %.3g of its bound", worst);
	}

	/* an all-zero input: scale 0, exact zeros (no 0 / 0) */
	memset(x, 0, sizeof(float) * M * IN);
	for (size_t i = 0; i < (size_t) M * OUT; i++)
		y[i] = NAN;
	pt_linear_forward(&lin, x, M, y, PT_MATH_INT8);
	for (size_t i = 0; i < (size_t) M * OUT; i++)
		CHECKF(y[i] == 0.0f, "value %zu of a zero input's product: %g", i, y[i]);

	/*
	 * Rows of tiny values (subnormal, and just under 127 / FLT_MAX, where
	 * 127 / max|x| overflows) quantise to zero: products within 1e-30; a NaN
	 * row gives NaN, as fp32 would; the rows around them are unaffected.
	 */
	for (int t = 0; t < IN; t++)
	{
		x[0 * IN + t] = (t % 2 ? -1 : 1) * 1e-39f;
		x[1 * IN + t] = (t % 3 ? 3e-37f : -2e-37f);
		x[2 * IN + t] = t == 7 ? NAN : 1.0f;
		x[3 * IN + t] = value((size_t) t, 9);
	}
	pt_linear_forward(&lin, x, 4, y, PT_MATH_INT8);
	for (int j = 0; j < OUT; j++)
	{
		CHECKF(fabsf(y[j]) < 1e-30f && fabsf(y[OUT + j]) < 1e-30f,
			   "tiny rows: products %g and %g", y[j], y[OUT + j]);
		CHECKF(isnan(y[2 * OUT + j]), "NaN row: product %g", y[2 * OUT + j]);
		CHECKF(isfinite(y[3 * OUT + j]), "the row after a NaN row: %g", y[3 * OUT + j]);
	}

	pt_dnnl_set_piece_rows(PT_MATH_INT8, piece);
	pt_linear_release_bf16(&lin);
	CHECK(lin.packed == NULL);
	free(w);
	free(x);
	free(y);
	free(ref);
	free(exact);
	free(bound);
}

/*
 * Mixed-precision backward products, dx (+)= dy . W with dy rounded to bf16
 * and W from the packed bf16 copy, against the float64 product of the same
 * bf16 values: for row counts over every piece size, with and without
 * accumulation, and for a W over linear_dnnl.c's UNPACK_BYTES (16,500 x 256
 * bf16: chunks of 16,384 rows and a tail of 116, not a whole block of the
 * packed layout).  After packing, the checkpoint's data is overwritten with
 * NaN: a product that read it instead of the packed copy would show.
 */
static void
check_bf16_backward(int out, int in, const int *rows, int n_rows, int fail_chunk)
{
	int			max_m = 0;
	uint16_t   *src;
	float	   *dy,
			   *dx;
	double	   *ref,
			   *mag;
	PtLinear	lin = {.out_dim = out, .in_dim = in, .src_dtype = PT_DTYPE_BF16};

	for (int r = 0; r < n_rows; r++)
		max_m = rows[r] > max_m ? rows[r] : max_m;
	src = malloc(sizeof(uint16_t) * out * in);
	dy = malloc(sizeof(float) * max_m * out);
	dx = malloc(sizeof(float) * max_m * in);
	ref = malloc(sizeof(double) * max_m * in);
	mag = malloc(sizeof(double) * max_m * in);
	REQUIRE(src && dy && dx && ref && mag);
	for (size_t i = 0; i < (size_t) out * in; i++)
		src[i] = pt_f32_to_bf16(value(i, 5));
	for (size_t i = 0; i < (size_t) max_m * out; i++)
		dy[i] = value(i, 6) * 1.001f;	/* not bf16 values: the product rounds them */
	lin.src = src;
	REQUIRE(pt_linear_prepare_bf16(&lin) == 0);
	/* the reference, from the checkpoint's data while it is still there */
	for (int i = 0; i < max_m; i++)
		for (int j = 0; j < in; j++)
			ref[(size_t) i * in + j] = mag[(size_t) i * in + j] = 0.0;
	for (int i = 0; i < max_m; i++)
		for (int t = 0; t < out; t++)
		{
			double		g = pt_bf16_to_f32(pt_f32_to_bf16(dy[(size_t) i * out + t]));
			const uint16_t *w = src + (size_t) t * in;

			for (int j = 0; j < in; j++)
			{
				ref[(size_t) i * in + j] += g * pt_bf16_to_f32(w[j]);
				mag[(size_t) i * in + j] += fabs(g * pt_bf16_to_f32(w[j]));
			}
		}
	/*
	 * fail_chunk: oneDNN "fails" at that chunk, and pt_linear_backward
	 * finishes the rest in fp32 from the checkpoint's data, which must stay;
	 * the chunks before must count once (dy unrounded there: a looser bound).
	 */
	if (fail_chunk < 0)
		for (size_t i = 0; i < (size_t) out * in; i++)
			src[i] = 0x7fc0;	/* NaN */
	pt_dnnl_fail_backward_chunk(fail_chunk);
	for (int r = 0; r < n_rows; r++)
		for (int accumulate = 0; accumulate < 2; accumulate++)
		{
			int			m = rows[r];
			double		worst = 0.0;

			for (size_t i = 0; i < (size_t) m * in; i++)
				dx[i] = accumulate ? 1.0f : NAN;
			pt_linear_backward(&lin, dy, m, dx, accumulate);
			/* fp32 sums of bf16 products: off by a few float epsilons of the sum of magnitudes */
			for (size_t i = 0; i < (size_t) m * in; i++)
				worst = fmax(worst, fabs(dx[i] - accumulate - ref[i]) / (mag[i] + 1e-3));
			CHECKF(worst < (fail_chunk < 0 ? 1e-5 : 1e-3),
				   "W [%d, %d], %d rows%s%s: off the float64 product by %.3g of its magnitude", out, in, m,
				   accumulate ? ", accumulating" : "", fail_chunk < 0 ? "" : ", a chunk failing", worst);
		}
	pt_dnnl_fail_backward_chunk(-1);
	pt_linear_free(&lin);
	free(src);
	free(dy);
	free(dx);
	free(ref);
	free(mag);
}

void		test_bf16_backward_from_packed(void);
void
test_bf16_backward_from_packed(void)
{
	/* fewer than 16; a multiple of 16; two pieces of 64 + 32 + 12 (every piece size) */
	static const int rows[] = {5, 48, 2 * 64 + 32 + 12};
	static const int big_rows[] = {20};
	int			piece;

	REQUIRE(pt_engine_init() == 0);
	if (!pt_bf16_supported())
		SKIP("this CPU has no bfloat16 instructions (AVX512-BF16 or AMX)");
	piece = pt_dnnl_piece_rows(PT_MATH_BF16);
	pt_dnnl_set_piece_rows(PT_MATH_BF16, 64);
	check_bf16_backward(96, 80, rows, 3, -1);	/* one chunk, out not a whole block */
	check_bf16_backward(16500, 256, big_rows, 1, -1);	/* two chunks */
	check_bf16_backward(16500, 256, big_rows, 1, 1);	/* the second fails: fp32 from there on */
	pt_dnnl_set_piece_rows(PT_MATH_BF16, piece);
}

/*
 * Products run from two threads at once, each single-threaded on its own
 * rows (as a decoder step split by rows runs them), equal the same products
 * run one after the other: every fp32 kernel, bf16 and int8, forward and
 * accumulating, at row counts under 16, of every piece size (a whole
 * piece, a multiple of 16, fewer than 16) and of whole pieces.  With oneDNN's own scratchpad (the
 * creating thread's) two primitives running at once wrote into each other's
 * and gave wrong sums from the second round on (errors of order 1), which
 * is why each thread now passes its own (linear_dnnl.c).
 */
void		test_products_from_threads(void);
void
test_products_from_threads(void)
{
	enum
	{
		OUT = 1024, IN = 512, M = 2 * 64
	};
	float	   *w = malloc(sizeof(float) * OUT * IN),
			   *x = malloc(sizeof(float) * M * IN),
			   *serial = malloc(sizeof(float) * M * OUT),
			   *both = malloc(sizeof(float) * M * OUT);
	static const int row_counts[] = {5, 53, 64};	/* pieces of 32: 53 = 32 + 16 + 5 */
	PtLinear	lin[3];
	int			pieces[3],
				bad = 0;

	REQUIRE(w && x && serial && both);
	REQUIRE(pt_engine_init() == 0);
	for (size_t i = 0; i < (size_t) OUT * IN; i++)
		w[i] = value(i, 21);
	for (size_t i = 0; i < (size_t) M * IN; i++)
		x[i] = value(i, 22);
	for (int k = 0; k < 3; k++)
		lin[k] = (PtLinear) {.out_dim = OUT, .in_dim = IN, .w = w, .src = w, .src_dtype = PT_DTYPE_F32};
	REQUIRE(!pt_bf16_supported() || pt_linear_prepare_bf16(&lin[1]) == 0);
	REQUIRE(!pt_int8_supported() || pt_linear_prepare_int8(&lin[2]) == 0);
	for (int math = 0; math < 3; math++)
	{
		pieces[math] = pt_dnnl_piece_rows(math);
		pt_dnnl_set_piece_rows(math, 32);
	}
	/* kinds: fp32 OpenBLAS, fp32 oneDNN, bf16, int8 */
	for (int kind = 0; kind < 4; kind++)
		for (int accumulate = 0; accumulate < 2; accumulate++)
			for (size_t rc = 0; rc < sizeof(row_counts) / sizeof(row_counts[0]); rc++)
			{
				int			rows = row_counts[rc];
				const PtLinear *l = &lin[kind < 2 ? 0 : kind - 1];
				PtMath		math = kind < 2 ? PT_MATH_FP32 : kind == 2 ? PT_MATH_BF16 : PT_MATH_INT8;
				PtKernel	kernel = kind == 0 ? PT_KERNEL_OPENBLAS : PT_KERNEL_ONEDNN;

				if ((kind == 1 && !pt_dnnl_supported()) || (kind == 2 && !pt_bf16_supported()) ||
					(kind == 3 && !pt_int8_supported()))
					continue;
				for (int round = 0; round < 4; round++)
				{
					for (size_t i = 0; i < (size_t) 2 * rows * OUT; i++)
						serial[i] = both[i] = 0.25f * (float) (i % 7);
					for (int t = 0; t < 2; t++)
					{
						const float *xt = x + (size_t) t * rows * IN;
						float	   *yt = serial + (size_t) t * rows * OUT;

						if (kind < 2)
							CHECK(pt_fp32_product(kernel, false, l, xt, rows, yt, accumulate));
						else if (accumulate)
							pt_linear_forward_add(l, xt, rows, yt, math);
						else
							pt_linear_forward(l, xt, rows, yt, math);
					}
#pragma omp parallel num_threads(2)
					{
						int			t = omp_get_thread_num();
						const float *xt = x + (size_t) t * rows * IN;
						float	   *yt = both + (size_t) t * rows * OUT;

						omp_set_num_threads(1);
						if (kind < 2)
							pt_fp32_product(kernel, false, l, xt, rows, yt, accumulate);
						else if (accumulate)
							pt_linear_forward_add(l, xt, rows, yt, math);
						else
							pt_linear_forward(l, xt, rows, yt, math);
					}
					/* one thread's sums may be ordered otherwise than two threads' (OpenBLAS) */
					for (size_t i = 0; i < (size_t) 2 * rows * OUT; i++)
						if (!(fabsf(both[i] - serial[i]) <= 1e-5f * (1.0f + fabsf(serial[i]))) && bad++ < 5)
							fprintf(stderr, "  kind %d accumulate %d rows %d round %d [%zu]: %.7f from threads, %.7f serial\n",
									kind, accumulate, rows, round, i, both[i], serial[i]);
				}
			}
	CHECKF(bad == 0, "%d outputs of products run from two threads differ from serial ones", bad);
	for (int math = 0; math < 3; math++)
		pt_dnnl_set_piece_rows(math, pieces[math]);
	pt_linear_release_bf16(&lin[1]);
	pt_linear_release_bf16(&lin[2]);
	free(w), free(x), free(serial), free(both);
}

/*
 * bf16 inference's products that write bf16 (pt_bf16_matmul_to_bf16) give
 * the rounding of the fp32 product's outputs (pt_bf16_matmul), for row
 * counts over every piece size; and the activation from bf16 h0, h1
 * (pt_ff_activation_bf16) equals the one from the same values in fp32, bit
 * for bit, gated or not, for gelu (AVX-512 where present) and relu (the
 * portable path), at lengths that end mid-vector.
 */
void		test_bf16_outputs(void);
void
test_bf16_outputs(void)
{
	enum
	{
		OUT = 80, IN = 96, MAX_M = 2 * 64 + 32 + 12
	};
	static const int rows[] = {5, 48, MAX_M};
	static const size_t lengths[] = {1, 31, 4096 + 17, 70001};
	uint16_t   *src = malloc(sizeof(uint16_t) * OUT * IN),
			   *yb = malloc(sizeof(uint16_t) * MAX_M * OUT),
			   *b0 = malloc(sizeof(uint16_t) * 70001),
			   *b1 = malloc(sizeof(uint16_t) * 70001),
			   *from_f32 = malloc(sizeof(uint16_t) * 70001),
			   *from_bf16 = malloc(sizeof(uint16_t) * 70001);
	float	   *x = malloc(sizeof(float) * MAX_M * IN),
			   *y = malloc(sizeof(float) * MAX_M * OUT),
			   *f0 = malloc(sizeof(float) * 70001),
			   *f1 = malloc(sizeof(float) * 70001);
	PtLinear	lin = {.out_dim = OUT, .in_dim = IN, .src_dtype = PT_DTYPE_BF16};
	int			piece,
				bad = 0;

	REQUIRE(src && yb && b0 && b1 && from_f32 && from_bf16 && x && y && f0 && f1);
	for (size_t i = 0; i < 70001; i++)
	{
		b0[i] = pt_f32_to_bf16(6.0f * value(i, 11));
		b1[i] = pt_f32_to_bf16(value(i, 13));
		f0[i] = pt_bf16_to_f32(b0[i]);
		f1[i] = pt_bf16_to_f32(b1[i]);
	}
	for (int gated = 0; gated < 2; gated++)
		for (int a = 0; a < 2; a++)
			for (size_t l = 0; l < sizeof(lengths) / sizeof(lengths[0]); l++)
			{
				PtActivation act = a ? PT_ACT_RELU : PT_ACT_GELU_TANH;
				size_t		n = lengths[l];

				pt_ff_activation_forward_bf16(act, gated, f0, gated ? f1 : NULL, n, from_f32);
				pt_ff_activation_bf16(act, gated, b0, gated ? b1 : NULL, n, from_bf16);
				for (size_t i = 0; i < n; i++)
					if (from_bf16[i] != from_f32[i] && bad++ < 5)
						fprintf(stderr, "  activation %d gated %d n %zu [%zu]: %04x, want %04x\n", act, gated, n, i,
								from_bf16[i], from_f32[i]);
			}
	CHECKF(bad == 0, "%d activations from bf16 inputs differ from the fp32 ones", bad);

	REQUIRE(pt_engine_init() == 0);
	if (!pt_bf16_supported())
	{
		free(src), free(yb), free(b0), free(b1), free(from_f32), free(from_bf16), free(x), free(y), free(f0), free(f1);
		SKIP("this CPU has no bfloat16 instructions (AVX512-BF16 or AMX)");
	}
	for (size_t i = 0; i < (size_t) OUT * IN; i++)
		src[i] = pt_f32_to_bf16(value(i, 5));
	for (size_t i = 0; i < (size_t) MAX_M * IN; i++)
		x[i] = value(i, 6);
	lin.src = src;
	REQUIRE(pt_linear_prepare_bf16(&lin) == 0);
	piece = pt_dnnl_piece_rows(PT_MATH_BF16);
	pt_dnnl_set_piece_rows(PT_MATH_BF16, 64);
	bad = 0;
	for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++)
	{
		int			m = rows[r];

		REQUIRE(pt_bf16_load_input(x, (size_t) m * IN));
		REQUIRE(pt_bf16_matmul(&lin, m, y, false));
		REQUIRE(pt_bf16_matmul_to_bf16(&lin, m, yb));
		for (int i = 0; i < m * OUT; i++)
			if (yb[i] != pt_f32_to_bf16(y[i]) && bad++ < 5)
				fprintf(stderr, "  %d rows [%d]: %04x, want %04x (%.9g)\n", m, i, yb[i], pt_f32_to_bf16(y[i]), y[i]);
		/* the loaded input must be the product's: another shape is refused */
		CHECK(!pt_bf16_matmul_to_bf16(&lin, m + 1, yb));
	}
	CHECKF(bad == 0, "%d bf16 outputs differ from the rounding of the fp32 product", bad);
	pt_dnnl_set_piece_rows(PT_MATH_BF16, piece);
	pt_linear_free(&lin);
	free(src), free(yb), free(b0), free(b1), free(from_f32), free(from_bf16), free(x), free(y), free(f0), free(f1);
}

static bool
is_piece_candidate(int rows)
{
	for (int i = 0; i < N_PIECE_CANDIDATES; i++)
		if (rows == pt_piece_candidate(i))
			return true;
	return false;
}

/*
 * Loading a model chooses the fp32 kernels and oneDNN's piece sizes by
 * measurement and caches the choice (PTUNE_CACHE_DIR) for the next load to
 * read; the model's info names them.  An unwritable cache directory is no
 * error.
 */
void		test_kernel_choice_reported_and_cached(void);
void
test_kernel_choice_reported_and_cached(void)
{
	const char *dir = unit_model_dir("tiny-gated");
	const char *cache = unit_temp_dir();
	char	   *old = getenv("PTUNE_CACHE_DIR") ? strdup(getenv("PTUNE_CACHE_DIR")) : NULL;
	char		path[1024],
				line[2048];
	PtModel    *m;
	char	   *info;
	json_t	   *root,
			   *fp32;
	bool		pieces_measured = pt_dnnl_supported() && getenv("PTUNE_PIECE_ROWS") == NULL;
	FILE	   *f;
	bool		found = false;

	REQUIRE(dir != NULL);
	if (getenv("PTUNE_FP32_KERNEL"))
		SKIP("PTUNE_FP32_KERNEL forces the kernel");
	setenv("PTUNE_CACHE_DIR", cache, 1);

	/* forcing a kernel makes the process forget its choice; the fresh cache is empty: measured */
	setenv("PTUNE_FP32_KERNEL", "openblas", 1);
	pt_model_free(pt_model_load(dir));
	CHECK(pt_fp32_kernel(false) == PT_KERNEL_OPENBLAS && pt_fp32_kernel(true) == PT_KERNEL_OPENBLAS);
	CHECK(strcmp(pt_kernels_source(), "forced by PTUNE_FP32_KERNEL") == 0);
	if (pieces_measured)
	{
		/* the piece sizes are measured too, for bf16 and int8 whatever the fp32 kernel */
		CHECK(strcmp(pt_pieces_source(), "measured") == 0);
		if (pt_bf16_supported())
			CHECKF(is_piece_candidate(pt_dnnl_piece_rows(PT_MATH_BF16)), "bf16 pieces of %d rows",
				   pt_dnnl_piece_rows(PT_MATH_BF16));
		if (pt_int8_supported())
			CHECKF(is_piece_candidate(pt_dnnl_piece_rows(PT_MATH_INT8)), "int8 pieces of %d rows",
				   pt_dnnl_piece_rows(PT_MATH_INT8));
	}
	unsetenv("PTUNE_FP32_KERNEL");
	pt_model_free(pt_model_load(dir));
	CHECK(strcmp(pt_kernels_source(), "measured") == 0);
	snprintf(path, sizeof(path), "%s/kernels.tsv", cache);
	f = fopen(path, "r");
	REQUIREF(f != NULL, "no cache file %s", path);
	while (fgets(line, sizeof(line), f))
		found |= strstr(line, pt_cpu_model()) != NULL &&
			strstr(line, pt_kernel_name(pt_fp32_kernel(false))) != NULL;
	fclose(f);
	CHECKF(found, "%s has no line for this CPU and choice", path);

	/* the next load (say, another process) reads it */
	setenv("PTUNE_FP32_KERNEL", "openblas", 1);
	pt_model_free(pt_model_load(dir));
	unsetenv("PTUNE_FP32_KERNEL");
	m = pt_model_load(dir);
	REQUIRE(m != NULL);
	CHECK(strcmp(pt_kernels_source(), "cached") == 0);

	/* and the model's info names the choice */
	info = pt_model_info_json(m, 0.0);
	REQUIRE(info != NULL);
	root = json_loads(info, 0, NULL);
	REQUIRE(root != NULL);
	fp32 = json_object_get(json_object_get(root, "kernels"), "fp32");
	REQUIRE(fp32 != NULL);
	CHECK(strcmp(json_string_value(json_object_get(fp32, "forward")), pt_kernel_name(pt_fp32_kernel(false))) == 0);
	CHECK(strcmp(json_string_value(json_object_get(fp32, "backward")), pt_kernel_name(pt_fp32_kernel(true))) == 0);
	CHECK(strcmp(json_string_value(json_object_get(fp32, "chosen")), "cached") == 0);
	CHECK(json_string_value(json_object_get(json_object_get(root, "kernels"), "cpu")) != NULL);
	CHECK(strcmp(json_string_value(json_object_get(json_object_get(root, "kernels"), "attention")),
				 pt_attention_bf16_supported(m->cfg.d_kv) ? "bf16" : "fp32") == 0);
	if (pieces_measured)
	{
		json_t	   *pieces = json_object_get(json_object_get(root, "kernels"), "piece_rows");

		REQUIRE(pieces != NULL);
		CHECK(strcmp(json_string_value(json_object_get(pieces, "chosen")), "cached") == 0);
		for (int math = 0; math < 3; math++)
			CHECK(json_integer_value(json_object_get(pieces, pt_math_name(math))) == pt_dnnl_piece_rows(math));
		if (pt_int8_supported())
			CHECK(is_piece_candidate(json_integer_value(json_object_get(pieces, "int8"))));

		/* PTUNE_PIECE_ROWS forces one size (a multiple of 16) for every precision */
		setenv("PTUNE_PIECE_ROWS", "100", 1);
		pt_model_free(pt_model_load(dir));
		CHECK(strcmp(pt_pieces_source(), "forced by PTUNE_PIECE_ROWS") == 0);
		for (int math = 0; math < 3; math++)
			CHECK(pt_dnnl_piece_rows(math) == 96);
		unsetenv("PTUNE_PIECE_ROWS");
		pt_model_free(pt_model_load(dir));
		CHECK(strcmp(pt_pieces_source(), "cached") == 0);
		if (pt_int8_supported())
			CHECK(is_piece_candidate(pt_dnnl_piece_rows(PT_MATH_INT8)));
	}

	/* a cache directory that cannot be made (read-only): measured, no error */
	setenv("PTUNE_FP32_KERNEL", "openblas", 1);
	pt_model_free(pt_model_load(dir));
	unsetenv("PTUNE_FP32_KERNEL");
	setenv("PTUNE_CACHE_DIR", "/proc/ptune-cannot-exist", 1);
	pt_model_free(pt_model_load(dir));
	CHECK(strcmp(pt_kernels_source(), "measured") == 0);

	if (old)
		setenv("PTUNE_CACHE_DIR", old, 1);
	else
		unsetenv("PTUNE_CACHE_DIR");
	free(old);
	json_decref(root);
	free(info);
	pt_model_free(m);
}

/*
 * pt_small_gemm (attention's per-head products) against a float64 product,
 * over every layout attention uses (A B, A^T B, A B^T), with and without
 * accumulation, leading dimensions wider than the matrices, and sizes that
 * leave partial register blocks (rows not a multiple of 4, columns not a
 * multiple of 16 or 64).  Float32 sums of k <= 200 terms of size <= 1: the
 * bound is loose enough for any summation order, tight enough to catch a
 * wrong element, row or stride.
 */
void		test_small_gemm_matches_float64(void);
void
test_small_gemm_matches_float64(void)
{
	static const int sizes[][3] = {{1, 1, 1}, {3, 17, 5}, {4, 64, 64}, {5, 148, 64}, {9, 64, 148},
	{148, 148, 64}, {148, 64, 148}, {7, 200, 33}, {2, 15, 0},
	/* B over PT_SMALL_GEMM_MAX_COPY floats: no copy, pt_gemm() */
	{2, 1100, 1000}};
	unsigned	salt = 1;
	int			bad = 0;

	CHECK((size_t) 1100 * 1000 > PT_SMALL_GEMM_MAX_COPY);	/* the last size's B is over the cap */
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
		for (int layout = 0; layout < 3; layout++)
			for (int accumulate = 0; accumulate < 2; accumulate++)
			{
				int			m = sizes[s][0], n = sizes[s][1], k = sizes[s][2];
				bool		ta = layout == 1, tb = layout == 2;
				int			lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 5, ldc = n + 2;
				float	   *a = malloc(sizeof(float) * (size_t) lda * (ta ? k : m) + 4);
				float	   *b = malloc(sizeof(float) * (size_t) ldb * (tb ? n : k) + 4);
				float	   *c = malloc(sizeof(float) * (size_t) ldc * m);

				REQUIRE(a && b && c);
				for (int i = 0; i < lda * (ta ? k : m); i++)
					a[i] = value((size_t) i, salt++);
				for (int i = 0; i < ldb * (tb ? n : k); i++)
					b[i] = value((size_t) i, salt++);
				for (int i = 0; i < ldc * m; i++)
					c[i] = value((size_t) i, salt++);
				float	   *c0 = malloc(sizeof(float) * (size_t) ldc * m);

				REQUIRE(c0);
				memcpy(c0, c, sizeof(float) * (size_t) ldc * m);
				pt_small_gemm(ta, tb, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
				for (int i = 0; i < m; i++)
					for (int j = 0; j < ldc; j++)
					{
						double		want = c0[(size_t) i * ldc + j];	/* padding stays */

						if (j < n)
						{
							want = accumulate ? want : 0.0;
							for (int p = 0; p < k; p++)
								want += (double) (ta ? a[(size_t) p * lda + i] : a[(size_t) i * lda + p]) *
									(tb ? b[(size_t) j * ldb + p] : b[(size_t) p * ldb + j]);
						}
						if (fabs(c[(size_t) i * ldc + j] - want) > 1e-4 * (k + 1))
						{
							if (bad++ < 5)
								fprintf(stderr, "  %dx%dx%d layout %d acc %d: C[%d,%d] = %g, want %g\n",
										m, n, k, layout, accumulate, i, j, c[(size_t) i * ldc + j], want);
						}
					}
				free(a);
				free(b);
				free(c);
				free(c0);
			}
	CHECKF(bad == 0, "%d elements of pt_small_gemm differ from the float64 product", bad);
}

/*
 * pt_log_sum_exp_argmax reads a row once, in blocks, rescaling its total when
 * a later block raises the maximum: its log-sum-exp equals float64's, and its
 * argmax is the first index of the maximum, over lengths around the block
 * size, maxima in later blocks, ties across blocks and a NaN (passed over by
 * the argmax, a NaN log-sum-exp).  The decoder step's
 * serial activation equals the parallel one bit for bit.
 */
void		test_log_sum_exp_argmax_one_pass(void);
void
test_log_sum_exp_argmax_one_pass(void)
{
	static const int lengths[] = {1, 7, 1023, 1024, 1025, 3000, 32128};
	float	   *x = malloc(sizeof(float) * 32128);

	REQUIRE(x != NULL);
	for (size_t li = 0; li < sizeof(lengths) / sizeof(lengths[0]); li++)
		for (int pattern = 0; pattern < 4; pattern++)
		{
			int			n = lengths[li],
						want = 0,
						got = -1;
			double		mx = -INFINITY,
						sum = 0.0,
						lse;

			for (int i = 0; i < n; i++)
				x[i] = 20.0f * value((size_t) i, 7 + pattern);
			if (pattern == 1)
				x[n - 1] = 40.0f;	/* the maximum in the last block */
			if (pattern == 2 && n > 1)
				x[n / 3] = x[n - 1] = 40.0f;	/* a tie, possibly across blocks */
			if (pattern == 3)
				x[n / 2] = NAN;	/* passed over by the maximum and its index; the result is NaN */
			for (int i = 0; i < n; i++)
				if (x[i] > mx)
					mx = x[i], want = i;
			for (int i = 0; i < n; i++)
				sum += exp((double) x[i] - mx);
			lse = pt_log_sum_exp_argmax(x, n, &got);
			if (pattern == 3 && n == 1)
				continue;		/* no value but the NaN: no argmax to check */
			CHECKF(got == want, "n %d pattern %d: argmax %d, want %d", n, pattern, got, want);
			CHECKF(pattern == 3 ? isnan(lse) : fabs(lse - (mx + log(sum))) <= 1e-5 * fabs(mx + log(sum)) + 1e-6,
				   "n %d pattern %d: log-sum-exp %.9g, want %.9g", n, pattern, lse, pattern == 3 ? NAN : mx + log(sum));
		}
	free(x);

	{
		size_t		n = 32 * 1024 + 5;
		float	   *h0 = malloc(sizeof(float) * n),
				   *h1 = malloc(sizeof(float) * n),
				   *a = malloc(sizeof(float) * n),
				   *b = malloc(sizeof(float) * n);

		REQUIRE(h0 && h1 && a && b);
		for (size_t i = 0; i < n; i++)
			h0[i] = 4.0f * value(i, 3), h1[i] = value(i, 5);
		pt_ff_activation_forward(PT_ACT_GELU_TANH, true, h0, h1, n, a);
		pt_ff_activation_forward_serial(PT_ACT_GELU_TANH, true, h0, h1, n, b);
		CHECK(memcmp(a, b, sizeof(float) * n) == 0);
		free(h0), free(h1), free(a), free(b);
	}
}

/* T5's gelu (tanh form) in float64 */
static double
gelu_tanh64(double x)
{
	return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
}

/*
 * The vector kernels (AVX-512 where the CPU has it, the portable loops
 * elsewhere and under valgrind) against float64:
 * - softmax rows of every length around the 16-lane vectors, with and without
 *   bias and normalisation: each probability within 2e-6 of its value
 *   relative (exp's polynomial is good to ~2 ulp; the float sum of <= 300
 *   terms adds a few more), plus what rounding the float32 argument
 *   x + bias - max costs exp (2e-7 of the arguments' sizes); the returned
 *   1/sum within 2e-6;
 * - gelu (tanh) over [-12, 12], gated and not: within 1e-6 (|x| + |gelu|)
 *   (tanh as 1 - 2 / (exp(2u) + 1) loses ~1 ulp of 1 near u = 0);
 * - RMS norm within 1e-6 relative.
 * A wrong constant, lane mask or tail is off by far more than these bounds.
 * The bf16 forms equal pt_f32_to_bf16 of the fp32 forms bit for bit,
 * including ties, NaN, infinities and values that round up to infinity.
 */
void		test_vector_kernels_match_float64(void);
void
test_vector_kernels_match_float64(void)
{
	static const int lengths[] = {1, 2, 15, 16, 17, 31, 33, 64, 148, 300};
	float	   *row = malloc(sizeof(float) * 300),
			   *bias = malloc(sizeof(float) * 300);
	double	   *want = malloc(sizeof(double) * 300);
	int			bad = 0;

	REQUIRE(row && bias && want);
	for (size_t li = 0; li < sizeof(lengths) / sizeof(lengths[0]); li++)
		for (int variant = 0; variant < 4; variant++)
		{
			int			d = lengths[li];
			bool		with_bias = variant & 1,
						normalize = variant & 2;
			double		mx = -INFINITY,
						sum = 0.0;
			float		inv;

			for (int j = 0; j < d; j++)
			{
				row[j] = 30.0f * value((size_t) j, 11 + variant);
				bias[j] = 5.0f * value((size_t) j, 13);
				want[j] = (double) row[j] + (with_bias ? (double) bias[j] : 0.0);
				mx = want[j] > mx ? want[j] : mx;
			}
			for (int j = 0; j < d; j++)
				sum += exp(want[j] - mx);
			inv = pt_softmax_row(row, with_bias ? bias : NULL, d, normalize);
			if (fabs(inv * sum - 1.0) > 2e-6)
				bad++, fprintf(stderr, "  softmax d %d variant %d: 1/sum %.9g, want %.9g\n", d, variant, inv, 1.0 / sum);
			for (int j = 0; j < d; j++)
			{
				double		p = exp(want[j] - mx) / (normalize ? sum : 1.0);

				double		bound = (2e-6 + 2e-7 * (fabs(want[j]) + fabs(want[j] - mx))) * p;

				if (fabs(row[j] - p) > bound + 1e-37 && bad++ < 5)
					fprintf(stderr, "  softmax d %d variant %d: [%d] = %.9g, want %.9g\n", d, variant, j, row[j], p);
			}
		}
	CHECKF(bad == 0, "%d softmax values off float64", bad);

	{
		size_t		n = 3 * 4096 + 21;	/* chunks and a partial vector */
		float	   *h0 = malloc(sizeof(float) * n),
				   *h1 = malloc(sizeof(float) * n),
				   *g = malloc(sizeof(float) * n),
				   *gated = malloc(sizeof(float) * n);
		uint16_t   *gb = malloc(sizeof(uint16_t) * n);

		REQUIRE(h0 && h1 && g && gated && gb);
		for (size_t i = 0; i < n; i++)
			h0[i] = -12.0f + 24.0f * (float) i / (float) n, h1[i] = value(i, 17);
		pt_ff_activation_forward(PT_ACT_GELU_TANH, false, h0, NULL, n, g);
		pt_ff_activation_forward(PT_ACT_GELU_TANH, true, h0, h1, n, gated);
		bad = 0;
		for (size_t i = 0; i < n; i++)
		{
			double		w = gelu_tanh64(h0[i]);

			if ((fabs(g[i] - w) > 1e-6 * (fabs(h0[i]) + fabs(w)) ||
				 fabs(gated[i] - w * h1[i]) > 1e-6 * (fabs(h0[i]) + fabs(w)) * fabs(h1[i]) + 1e-12) && bad++ < 5)
				fprintf(stderr, "  gelu(%.9g) = %.9g (gated %.9g), want %.9g\n", h0[i], g[i], gated[i], w);
		}
		CHECKF(bad == 0, "%d gelu values off float64", bad);

		/*
		 * Extremes, as 0.5 x (1 + tanh(u)) gives them: about 0 far below
		 * zero (not x / 1.7e38, which the exponential's clamp would make
		 * -1.8 at -3e38), NaN at -inf and NaN, x far above zero; in the
		 * two-vector steps (first 32) and the tail (last 8) alike.
		 */
		{
			static const float xs[8] = {-INFINITY, -3e38f, -1e30f, -25.0f, -20.5f, 3e38f, INFINITY, NAN};
			float		in[40],
						out[40];

			for (int i = 0; i < 40; i++)
				in[i] = xs[i % 8];
			pt_ff_activation_forward(PT_ACT_GELU_TANH, false, in, NULL, 40, out);
			bad = 0;
			for (int i = 0; i < 40; i++)
			{
				float		x = in[i];
				bool		ok = isnan(x) || x == -INFINITY ? isnan(out[i])
					: x < 0 ? fabsf(out[i]) < 1e-30f : out[i] == x || fabsf(out[i] - x) <= 1e-6f * x;

				if (!ok && bad++ < 5)
					fprintf(stderr, "  gelu(%g) = %g\n", x, out[i]);
			}
			CHECKF(bad == 0, "%d extreme gelu values wrong", bad);
		}

		/* bf16 output: the rounding of the fp32 output, NaN and infinities included */
		h0[5] = NAN, h0[6] = INFINITY, h0[7] = -INFINITY, h0[8] = 3e38f;
		pt_ff_activation_forward(PT_ACT_GELU_TANH, true, h0, h1, n, gated);
		pt_ff_activation_forward_bf16(PT_ACT_GELU_TANH, true, h0, h1, n, gb);
		bad = 0;
		for (size_t i = 0; i < n; i++)
			if (gb[i] != pt_f32_to_bf16(gated[i]) && bad++ < 5)
				fprintf(stderr, "  gelu bf16 [%zu]: %04x, want %04x\n", i, gb[i], pt_f32_to_bf16(gated[i]));
		CHECKF(bad == 0, "%d bf16 gelu values differ from the rounded fp32 ones", bad);
		free(h0), free(h1), free(g), free(gated), free(gb);
	}

	{
		enum
		{
			ROWS = 7, D = 300
		};
		float	   *x = malloc(sizeof(float) * ROWS * D),
				   *w = malloc(sizeof(float) * D),
				   *y = malloc(sizeof(float) * ROWS * D),
				   *rstd = malloc(sizeof(float) * ROWS),
				   *rstd_b = malloc(sizeof(float) * ROWS);
		uint16_t   *yb = malloc(sizeof(uint16_t) * ROWS * D);

		REQUIRE(x && w && y && rstd && rstd_b && yb);
		bad = 0;
		for (int d = 1; d <= D; d += d < 40 ? 1 : 37)
		{
			for (int i = 0; i < ROWS * d; i++)
				x[i] = 3.0f * value((size_t) i, 19 + d);
			for (int j = 0; j < d; j++)
				w[j] = 1.0f + value((size_t) j, 23);
			pt_rmsnorm_forward(x, w, ROWS, d, 1e-6f, y, rstd);
			for (int i = 0; i < ROWS; i++)
			{
				double		ss = 0.0,
							r;

				for (int j = 0; j < d; j++)
					ss += (double) x[i * d + j] * x[i * d + j];
				r = 1.0 / sqrt(ss / d + 1e-6);
				if (fabs(rstd[i] - r) > 1e-6 * r)
					bad++;
				for (int j = 0; j < d; j++)
				{
					double		want_y = x[i * d + j] * r * w[j];

					if (fabs(y[i * d + j] - want_y) > 1e-6 * fabs(want_y) + 1e-30 && bad++ < 5)
						fprintf(stderr, "  rmsnorm d %d [%d,%d] = %.9g, want %.9g\n", d, i, j, y[i * d + j], want_y);
				}
			}
			pt_rmsnorm_forward_bf16(x, w, ROWS, d, 1e-6f, yb, rstd_b);
			for (int i = 0; i < ROWS * d; i++)
				if (yb[i] != pt_f32_to_bf16(y[i]) && bad++ < 5)
					fprintf(stderr, "  rmsnorm bf16 d %d [%d]: %04x, want %04x\n", d, i, yb[i], pt_f32_to_bf16(y[i]));
			CHECK(memcmp(rstd, rstd_b, sizeof(float) * ROWS) == 0);

			/*
			 * The residual sum first (pt_rmsnorm_add_forward[_bf16]): x
			 * becomes x + add, bit for bit as float adds it, and y, rstd
			 * are the norm's of that sum, in fp32 and in bf16.
			 */
			{
				float	   *xa = malloc(sizeof(float) * ROWS * d),
						   *xb = malloc(sizeof(float) * ROWS * d),
						   *add = malloc(sizeof(float) * ROWS * d),
						   *sum = malloc(sizeof(float) * ROWS * d),
						   *ya = malloc(sizeof(float) * ROWS * d);
				uint16_t   *yab = malloc(sizeof(uint16_t) * ROWS * d);

				REQUIRE(xa && xb && add && sum && ya && yab);
				for (int i = 0; i < ROWS * d; i++)
				{
					add[i] = value((size_t) i, 29 + d);
					xa[i] = xb[i] = x[i];
					sum[i] = x[i] + add[i];
				}
				pt_rmsnorm_forward(sum, w, ROWS, d, 1e-6f, y, rstd);
				pt_rmsnorm_add_forward(xa, add, w, ROWS, d, 1e-6f, ya, rstd_b);
				CHECK(memcmp(xa, sum, sizeof(float) * ROWS * d) == 0);
				CHECK(memcmp(ya, y, sizeof(float) * ROWS * d) == 0);
				CHECK(memcmp(rstd, rstd_b, sizeof(float) * ROWS) == 0);
				pt_rmsnorm_add_forward_bf16(xb, add, w, ROWS, d, 1e-6f, yab, rstd_b);
				CHECK(memcmp(xb, sum, sizeof(float) * ROWS * d) == 0);
				for (int i = 0; i < ROWS * d; i++)
					if (yab[i] != pt_f32_to_bf16(y[i]) && bad++ < 5)
						fprintf(stderr, "  add + rmsnorm bf16 d %d [%d]: %04x, want %04x\n", d, i, yab[i],
								pt_f32_to_bf16(y[i]));
				CHECK(memcmp(rstd, rstd_b, sizeof(float) * ROWS) == 0);
				free(xa), free(xb), free(add), free(sum), free(ya), free(yab);
			}
		}
		CHECKF(bad == 0, "%d RMS norm values off float64 or their bf16 rounding", bad);

		/*
		 * Rounding itself: x = 1 and eps = 0 make rstd 1 and y = w exactly,
		 * so w carries the cases: ties to even both ways, NaN, infinities,
		 * the largest float (rounds up to infinity), a subnormal.
		 */
		{
			static const uint32_t cases[] = {0x3f808000u, 0x3f818000u, 0x3f80ffffu, 0x3f807fffu,
				0xbf808000u, 0x7fc00001u, 0x7f800000u, 0xff800000u, 0x7f7fffffu, 0x00008001u,
			0x00000000u, 0x80000000u, 0x3f800000u, 0x40490fdbu, 0x7f7f8000u, 0x477fe000u, 0x477ff000u};
			int			d = (int) (sizeof(cases) / sizeof(cases[0]));

			for (int j = 0; j < d; j++)
			{
				x[j] = 1.0f;
				memcpy(&w[j], &cases[j], sizeof(float));
			}
			pt_rmsnorm_forward_bf16(x, w, 1, d, 0.0f, yb, NULL);
			bad = 0;
			for (int j = 0; j < d; j++)
				if (yb[j] != pt_f32_to_bf16(w[j]) && bad++ < 5)
					fprintf(stderr, "  bf16 of %08x: %04x, want %04x\n", cases[j], yb[j], pt_f32_to_bf16(w[j]));
			CHECKF(bad == 0, "%d roundings to bf16 differ from pt_f32_to_bf16", bad);
		}
		free(x), free(w), free(y), free(rstd), free(rstd_b), free(yb);
	}
	free(row);
	free(bias);
	free(want);
}

/*
 * Sequences of lens[0..S) tokens packed one after another, each attending
 * to itself (the encoder's self-attention): their first rows, one key group
 * per sequence, offsets of H heads' probabilities, and the rows in all.
 */
#define PACKED_MAX 4

typedef struct PackedSeqs
{
	int			S,
				rows,
				off[PACKED_MAX],
				begin[PACKED_MAX],
				end[PACKED_MAX];
	size_t		p_off[PACKED_MAX],
				probs_n;
} PackedSeqs;

static PackedSeqs
packed_seqs(const int *lens, int S, int H)
{
	PackedSeqs	ps = {.S = S};

	for (int s = 0; s < S; s++)
	{
		ps.off[s] = ps.rows, ps.begin[s] = s, ps.end[s] = s + 1, ps.p_off[s] = ps.probs_n;
		ps.rows += lens[s];
		ps.probs_n += (size_t) H * lens[s] * lens[s];
	}
	return ps;
}

/* Their attention layout, with the position bias table [H, 2 * max_len - 1]. */
static PtAttnLayout
packed_layout(PackedSeqs *ps, const int *lens, float *table, int max_len, bool causal)
{
	PtAttnLayout lay = {0};

	lay.q_off = ps->off, lay.q_len = lens, lay.n_kv = ps->S, lay.kv_off = ps->off, lay.kv_len = lens;
	lay.kv_q_begin = ps->begin, lay.kv_q_end = ps->end, lay.p_off = ps->p_off;
	lay.bias = table, lay.bias_max_len = max_len, lay.causal = causal;
	return lay;
}

/*
 * Attention's output row i of head h of a sequence at row `off`, in float64
 * (want[DK]): Q, K, V [rows, H * DK] (INNER = H * DK), the position bias
 * table [H, 2 * max_len - 1], causal or not.  With bf16, as the bf16 kernels
 * compute it: Q, K, V rounded to bf16, each score rounded to float before
 * the bias is added, the unnormalised probabilities exp(s - max) rounded to
 * bf16 and divided by their unrounded sum.  sc and pr hold `len` doubles.
 */
static void
attention_row64(const float *q, const float *k, const float *v, const float *table, int max_len,
				int H, int DK, int off, int len, int h, int i, bool causal, bool bf16,
				double *sc, double *pr, double *want)
{
	int			INNER = H * DK,
				visible = causal ? i + 1 : len;
	double		mx = -INFINITY,
				sum = 0.0;

#define AT(x, row, c) (bf16 ? pt_bf16_to_f32(pt_f32_to_bf16((x)[(size_t) (off + (row)) * INNER + h * DK + (c)])) \
					   : (double) (x)[(size_t) (off + (row)) * INNER + h * DK + (c)])
	for (int j = 0; j < visible; j++)
	{
		double		dot = 0.0,
					bias = table[h * (2 * max_len - 1) + (j - i) + max_len - 1];

		for (int c = 0; c < DK; c++)
			dot += AT(q, i, c) * AT(k, j, c);
		sc[j] = bf16 ? (float) ((float) dot + (float) bias) : dot + bias;
		mx = sc[j] > mx ? sc[j] : mx;
	}
	for (int j = 0; j < visible; j++)
	{
		double		e = exp(sc[j] - mx);

		sum += e;
		pr[j] = bf16 ? pt_bf16_to_f32(pt_f32_to_bf16((float) e)) : e;
	}
	for (int c = 0; c < DK; c++)
	{
		want[c] = 0.0;
		for (int j = 0; j < visible; j++)
			want[c] += pr[j] * AT(v, j, c);
		want[c] /= sum;
	}
#undef AT
}

/*
 * Attention's forward pass without a backward pass (probabilities in a
 * thread's scratch, query blocks shortened to fit it: a 300-token sequence
 * takes two) equals the one that keeps them, and both equal float64:
 * sequences of several lengths packed together, causal and not, with the
 * position bias.  Context values are averages of values in [-1, 1]: 2e-5 is
 * float32 rounding, a wrong row, block or scale is far off.
 */
void		test_attention_inference_blocks(void);
void
test_attention_inference_blocks(void)
{
	enum
	{
		H = 2, DK = 64, INNER = H * DK, S = 4, MAXLEN = 300
	};
	static const int lens[S] = {300, 148, 17, 1};
	PackedSeqs	ps = packed_seqs(lens, S, H);
	int			rows = ps.rows;
	_Static_assert(S <= PACKED_MAX, "PackedSeqs holds PACKED_MAX sequences");
	float	   *rel = malloc(sizeof(float) * 32 * H),
			   *table = malloc(sizeof(float) * H * (2 * MAXLEN - 1));
	float	   *q, *k, *v, *probs, *ctx_keep, *ctx_scratch;
	double	   *sc = malloc(sizeof(double) * MAXLEN),
			   *pr = malloc(sizeof(double) * MAXLEN);
	int			bad = 0;

	REQUIRE(rel && table && sc && pr);
	q = malloc(sizeof(float) * rows * INNER);
	k = malloc(sizeof(float) * rows * INNER);
	v = malloc(sizeof(float) * rows * INNER);
	probs = malloc(sizeof(float) * ps.probs_n);
	ctx_keep = malloc(sizeof(float) * rows * INNER);
	ctx_scratch = malloc(sizeof(float) * rows * INNER);
	REQUIRE(q && k && v && probs && ctx_keep && ctx_scratch);
	for (int i = 0; i < rows * INNER; i++)
		q[i] = 0.5f * value((size_t) i, 29), k[i] = 0.5f * value((size_t) i, 31), v[i] = value((size_t) i, 37);
	for (int i = 0; i < 32 * H; i++)
		rel[i] = 2.0f * value((size_t) i, 41);

	for (int causal = 0; causal < 2; causal++)
	{
		PtAttnLayout lay = packed_layout(&ps, lens, table, MAXLEN, causal);

		pt_position_bias_table(rel, H, 32, 128, !causal, MAXLEN, table);
		lay.normalize = true;
		pt_attention_forward(&lay, H, DK, q, k, v, probs, ctx_keep);
		lay.normalize = false;
		pt_attention_forward(&lay, H, DK, q, k, v, probs, ctx_scratch);

		for (int s = 0; s < S; s++)
			for (int h = 0; h < H; h++)
				for (int i = 0; i < lens[s]; i++)
				{
					double		want[DK];

					attention_row64(q, k, v, table, MAXLEN, H, DK, ps.off[s], lens[s], h, i, causal, false, sc, pr, want);
					for (int c = 0; c < DK; c++)
					{
						size_t		at = (size_t) (ps.off[s] + i) * INNER + h * DK + c;

						if ((fabs(ctx_keep[at] - want[c]) > 2e-5 || fabs(ctx_scratch[at] - want[c]) > 2e-5) &&
							bad++ < 5)
							fprintf(stderr, "  causal %d seq %d head %d row %d col %d: %.7g / %.7g, want %.7g\n",
									causal, s, h, i, c, ctx_keep[at], ctx_scratch[at], want[c]);
					}
				}
	}
	CHECKF(bad == 0, "%d attention outputs off float64", bad);
	free(rel), free(table), free(sc), free(pr), free(q), free(k), free(v), free(probs), free(ctx_keep), free(ctx_scratch);
}

/*
 * The bf16 inference path (attention_bf16.c: Q K^T and P V with bf16
 * operands, fp32 accumulation) against float64 computed from the same
 * rounded operands: Q, K and V rounded to bf16, the unnormalised
 * probabilities exp(s - max) rounded to bf16 and divided by their unrounded
 * sum.  Head sizes 16, 64 and 80 (one, four and five 16-lane vectors: the
 * full and partial register blocks), sequence lengths 1, 17, 148 and 300
 * (odd and even key counts, partial key vectors, two query blocks), causal
 * and not.  What is left is float32 rounding and an occasional probability
 * that rounds the other way (one bf16 step of one term): 1e-3 on averages of
 * values in [-1, 1]; a wrong pair, row or block is off by 0.1 or more.
 * Also: the result is within bf16 rounding (2e-2) of the fp32 path, and
 * the context written straight in bf16 (ctx_bf16) is its rounding.
 */
void		test_attention_bf16(void);
void
test_attention_bf16(void)
{
	enum
	{
		H = 2, S = 4, MAXLEN = 300, MAX_DK = 80
	};
	static const int lens[S] = {300, 148, 17, 1};
	static const int dks[] = {16, 64, 80};
	PackedSeqs	ps = packed_seqs(lens, S, H);
	int			rows = ps.rows;
	_Static_assert(S <= PACKED_MAX, "PackedSeqs holds PACKED_MAX sequences");
	float	   *rel = malloc(sizeof(float) * 32 * H),
			   *table = malloc(sizeof(float) * H * (2 * MAXLEN - 1));
	double	   *sc = malloc(sizeof(double) * MAXLEN),
			   *pr = malloc(sizeof(double) * MAXLEN);
	float	   *q, *k, *v, *ctx_bf16, *ctx_fp32;
	uint16_t   *ctx_rounded;
	int			bad = 0,
				far = 0,
				rounded = 0;

	if (!pt_attention_bf16_supported(64))
	{
		free(rel), free(table), free(sc), free(pr);
		SKIP("this CPU has no AVX512-BF16 (or valgrind hides it)");
	}
	CHECK(!pt_attention_bf16_supported(8) && !pt_attention_bf16_supported(72) &&
		  !pt_attention_bf16_supported(PT_ATTN_BF16_MAX_DK + 16));
	q = malloc(sizeof(float) * rows * H * MAX_DK);
	k = malloc(sizeof(float) * rows * H * MAX_DK);
	v = malloc(sizeof(float) * rows * H * MAX_DK);
	ctx_bf16 = malloc(sizeof(float) * rows * H * MAX_DK);
	ctx_fp32 = malloc(sizeof(float) * rows * H * MAX_DK);
	ctx_rounded = malloc(sizeof(uint16_t) * rows * H * MAX_DK);
	REQUIRE(rel && table && sc && pr && q && k && v && ctx_bf16 && ctx_fp32 && ctx_rounded);
	for (int i = 0; i < rows * H * MAX_DK; i++)
		q[i] = 0.5f * value((size_t) i, 29), k[i] = 0.5f * value((size_t) i, 31), v[i] = value((size_t) i, 37);
	for (int i = 0; i < 32 * H; i++)
		rel[i] = 2.0f * value((size_t) i, 41);

	for (size_t di = 0; di < sizeof(dks) / sizeof(dks[0]); di++)
		for (int causal = 0; causal < 2; causal++)
		{
			int			DK = dks[di],
						INNER = H * DK;
			PtAttnLayout lay = packed_layout(&ps, lens, table, MAXLEN, causal);

			pt_position_bias_table(rel, H, 32, 128, !causal, MAXLEN, table);
			lay.normalize = false;
			lay.bf16 = true;
			pt_attention_forward(&lay, H, DK, q, k, v, NULL, ctx_bf16);
			/* the context rounded straight to bf16 (the O product's input): the same values, rounded */
			lay.ctx_bf16 = ctx_rounded;
			pt_attention_forward(&lay, H, DK, q, k, v, NULL, ctx_fp32);
			lay.ctx_bf16 = NULL;
			for (int i = 0; i < rows * INNER; i++)
				if (ctx_rounded[i] != pt_f32_to_bf16(ctx_bf16[i]) && rounded++ < 5)
					fprintf(stderr, "  dk %d causal %d [%d]: %04x, want %04x\n", DK, causal, i, ctx_rounded[i],
							pt_f32_to_bf16(ctx_bf16[i]));
			lay.bf16 = false;
			pt_attention_forward(&lay, H, DK, q, k, v, NULL, ctx_fp32);

			for (int s = 0; s < S; s++)
				for (int h = 0; h < H; h++)
					for (int i = 0; i < lens[s]; i++)
					{
						double		want[MAX_DK];

						attention_row64(q, k, v, table, MAXLEN, H, DK, ps.off[s], lens[s], h, i, causal, true, sc, pr,
										want);
						for (int c = 0; c < DK; c++)
						{
							size_t		at = (size_t) (ps.off[s] + i) * INNER + h * DK + c;

							if (fabs(ctx_bf16[at] - want[c]) > 1e-3 && bad++ < 5)
								fprintf(stderr, "  dk %d causal %d seq %d head %d row %d col %d: %.7g, want %.7g\n",
										DK, causal, s, h, i, c, ctx_bf16[at], want[c]);
							if (fabs(ctx_bf16[at] - ctx_fp32[at]) > 2e-2 && far++ < 5)
								fprintf(stderr, "  dk %d causal %d seq %d head %d row %d col %d: %.7g, fp32 %.7g\n",
										DK, causal, s, h, i, c, ctx_bf16[at], ctx_fp32[at]);
						}
					}
		}
	CHECKF(bad == 0, "%d bf16 attention outputs off float64 of the rounded operands", bad);
	CHECKF(far == 0, "%d bf16 attention outputs beyond bf16 rounding of the fp32 path", far);
	CHECKF(rounded == 0, "%d bf16 context values differ from the rounded fp32 ones", rounded);
	free(rel), free(table), free(sc), free(pr), free(q), free(k), free(v), free(ctx_bf16), free(ctx_fp32);
	free(ctx_rounded);
}
