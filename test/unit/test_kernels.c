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
	{148, 148, 64}, {148, 64, 148}, {7, 200, 33}, {2, 15, 0}};
	unsigned	salt = 1;
	int			bad = 0;

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
 * size, maxima in later blocks and ties across blocks.  The decoder step's
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
		for (int pattern = 0; pattern < 3; pattern++)
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
			for (int i = 0; i < n; i++)
				if (x[i] > mx)
					mx = x[i], want = i;
			for (int i = 0; i < n; i++)
				sum += exp((double) x[i] - mx);
			lse = pt_log_sum_exp_argmax(x, n, &got);
			CHECKF(got == want, "n %d pattern %d: argmax %d, want %d", n, pattern, got, want);
			CHECKF(fabs(lse - (mx + log(sum))) <= 1e-5 * fabs(mx + log(sum)) + 1e-6,
				   "n %d pattern %d: log-sum-exp %.9g, want %.9g", n, pattern, lse, mx + log(sum));
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
