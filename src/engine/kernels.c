/*
 * kernels.c - element-wise and row-wise operations (see kernels.h).
 *
 * Performance notes:
 * - The work of each row (or chunk) is a separate function compiled for
 *   several instruction sets (target_clones: AVX-512, AVX2+FMA, baseline) and
 *   picked at load time, so one binary runs everywhere and uses wide vectors
 *   where the CPU has them.  Parallel loops over rows call these functions.
 * - exp and tanh use exp_inline below instead of libm, whose scalar calls
 *   would dominate the feed-forward layers' time.  It is written without
 *   branches or floorf so that GCC vectorises it.
 * - Sums and maxima carry "omp simd reduction": without it GCC may not
 *   reorder a float reduction and leaves the whole loop scalar.  (The order
 *   of the additions changes, deterministically.)
 */
#include <math.h>
#include <string.h>

#include "dtype.h"
#include "kernels.h"
#include "runtime.h"
#include "safetensors.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
#endif

#define PT_VECTORIZED __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

/* Parallelise loops only when there is enough work to pay for waking threads. */
#define PAR_MIN_ELEMS 32768
#define CHUNK 4096

/*
 * exp(x) = 2^n * exp(r), n = round(x / ln2), r = x - n ln2 in [-ln2/2, ln2/2],
 * exp(r) by a degree-6 polynomial (Cephes' expf), relative error ~1e-7.
 * x is clamped to [-87, 88], so exp(-inf) gives ~1e-38 rather than 0; callers
 * that mask positions skip them instead of relying on exp(-inf).
 */
static inline float
exp_inline(float x)
{
	const float round_magic = 12582912.0f;	/* 1.5 * 2^23: adding it rounds to an integer */
	float		n,
				r,
				p,
				scale;
	int32_t		bits;

	x = x < -87.0f ? -87.0f : x;
	x = x > 88.0f ? 88.0f : x;
	n = (x * 1.44269504088896341f + round_magic) - round_magic;
	r = x - n * 0.693359375f - n * -2.12194440e-4f;
	p = 1.9875691500E-4f;
	p = p * r + 1.3981999507E-3f;
	p = p * r + 8.3334519073E-3f;
	p = p * r + 4.1665795894E-2f;
	p = p * r + 1.6666665459E-1f;
	p = p * r + 5.0000001201E-1f;
	p = p * r * r + r + 1.0f;
	bits = ((int32_t) n + 127) << 23;
	memcpy(&scale, &bits, sizeof(scale));
	return p * scale;
}

/* tanh(u) = 1 - 2 / (exp(2u) + 1); |u| > 9 saturates to +-1 in float anyway */
static inline float
tanh_inline(float u)
{
	u = u > 9.0f ? 9.0f : u;
	u = u < -9.0f ? -9.0f : u;
	return 1.0f - 2.0f / (exp_inline(2.0f * u) + 1.0f);
}

/*
 * The same on 16 lanes, for the AVX-512 kernels below.  GCC vectorises the
 * portable loops for x86-64-v4 in 256-bit registers (its tuning for that
 * level), and its masked tails and spills cost as much as the vectors on
 * short rows; these kernels run where pt_cpu_has_avx512() (not under
 * valgrind, which hides AVX-512), the portable ones elsewhere.
 */
#if defined(__x86_64__)
/*
 * exp_inline on 16 lanes, step for step (the same clamps, rounding to the
 * nearest n, two-part ln 2 and polynomial); results may differ from it in
 * the last bit where the compiler fused other operations.
 */
static inline __attribute__((always_inline)) AVX512 __m512
exp16(__m512 x)
{
	__m512		n,
				r,
				p;
	__m512i		bits;

	x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
	n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
							 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
	r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
	p = _mm512_set1_ps(1.9875691500E-4f);
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
	p = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
	bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(n), _mm512_set1_epi32(127)), 23);
	return _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
}

/* pt_f32_to_bf16 on 16 lanes: round to nearest even, NaN stays a (quiet) NaN */
static inline __attribute__((always_inline)) AVX512 __m256i
bf16x16(__m512 v)
{
	__m512i		bits = _mm512_castps_si512(v),
				high = _mm512_srli_epi32(bits, 16),
				r;
	__mmask16	nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);

	r = _mm512_add_epi32(bits, _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
												_mm512_and_si512(high, _mm512_set1_epi32(1))));
	r = _mm512_srli_epi32(r, 16);
	r = _mm512_mask_or_epi32(r, nan, high, _mm512_set1_epi32(0x40));
	return _mm512_cvtepi32_epi16(r);
}
#endif

/* ---- RMS norm ---------------------------------------------------------- */

/* one row; with add, x += add first (the residual sum, see pt_rmsnorm_add_forward) */
PT_VECTORIZED static float
rmsnorm_row(float *x, const float *add, const float *w, int d, float eps, float *y, uint16_t *yb)
{
	float		ss = 0.0f;
	float		r;

	if (add)
		for (int j = 0; j < d; j++)
			x[j] += add[j];
#pragma omp simd reduction(+:ss)
	for (int j = 0; j < d; j++)
		ss += x[j] * x[j];
	r = 1.0f / sqrtf(ss / (float) d + eps);
	if (y)
		for (int j = 0; j < d; j++)
			y[j] = (x[j] * r) * w[j];
	else
		for (int j = 0; j < d; j++)
			yb[j] = pt_f32_to_bf16((x[j] * r) * w[j]);
	return r;
}

#if defined(__x86_64__)
static AVX512 float
rmsnorm_row_avx512(float *x, const float *add, const float *w, int d, float eps, float *y, uint16_t *yb)
{
	__m512		ss = _mm512_setzero_ps(),
				r;
	float		rs;

	for (int j = 0; j < d; j += 16)
	{
		__mmask16	k = pt_lanes16(d - j);
		__m512		v = _mm512_maskz_loadu_ps(k, x + j);

		if (add)
		{
			v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, add + j));
			_mm512_mask_storeu_ps(x + j, k, v);
		}
		ss = _mm512_fmadd_ps(v, v, ss);
	}
	rs = 1.0f / sqrtf(_mm512_reduce_add_ps(ss) / (float) d + eps);
	r = _mm512_set1_ps(rs);
	for (int j = 0; j < d; j += 16)
	{
		__mmask16	k = pt_lanes16(d - j);
		__m512		v = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + j), r),
									  _mm512_maskz_loadu_ps(k, w + j));

		if (y)
			_mm512_mask_storeu_ps(y + j, k, v);
		else
			_mm256_mask_storeu_epi16(yb + j, k, bf16x16(v));
	}
	return rs;
}
#endif

/*
 * y[n, d] (fp32) or yb[n, d] (its bf16 rounding): one is NULL.  With add
 * (x then is written), each row first becomes x + add.
 */
static void
rmsnorm_rows(float *x, const float *add, const float *w, int n, int d, float eps, float *y,
			 uint16_t *yb, float *rstd)
{
#if defined(__x86_64__)
	bool		avx512 = pt_cpu_has_avx512();
#endif

#pragma omp parallel for if ((size_t) n * d >= PAR_MIN_ELEMS) schedule(static)
	for (int i = 0; i < n; i++)
	{
		float	   *yr = y ? y + (size_t) i * d : NULL;
		uint16_t   *ybr = yb ? yb + (size_t) i * d : NULL;
		float		r;

#if defined(__x86_64__)
		if (avx512)
			r = rmsnorm_row_avx512(x + (size_t) i * d, add ? add + (size_t) i * d : NULL, w, d, eps, yr, ybr);
		else
#endif
			r = rmsnorm_row(x + (size_t) i * d, add ? add + (size_t) i * d : NULL, w, d, eps, yr, ybr);
		if (rstd)
			rstd[i] = r;
	}
}

/* x is only read without add: the cast lets one row function serve both */
void
pt_rmsnorm_forward(const float *x, const float *w, int n, int d, float eps,
				   float *y, float *rstd)
{
	rmsnorm_rows((float *) x, NULL, w, n, d, eps, y, NULL, rstd);
}

void
pt_rmsnorm_forward_bf16(const float *x, const float *w, int n, int d, float eps,
						uint16_t *y, float *rstd)
{
	rmsnorm_rows((float *) x, NULL, w, n, d, eps, NULL, y, rstd);
}

void
pt_rmsnorm_add_forward(float *x, const float *add, const float *w, int n, int d, float eps,
					   float *y, float *rstd)
{
	rmsnorm_rows(x, add, w, n, d, eps, y, NULL, rstd);
}

void
pt_rmsnorm_add_forward_bf16(float *x, const float *add, const float *w, int n, int d, float eps,
							uint16_t *y, float *rstd)
{
	rmsnorm_rows(x, add, w, n, d, eps, NULL, y, rstd);
}

/*
 * y_j = x_j r w_j with r = (mean(x^2) + eps)^-1/2 and dr/dx_j = -r^3 x_j / d, so
 *   dx_j = r w_j dy_j - x_j r^3 / d * sum_k w_k dy_k x_k
 */
PT_VECTORIZED static void
rmsnorm_backward_row(const float *x, const float *w, float r, const float *dy, int d, float *dx)
{
	float		dot = 0.0f;
	float		c;

#pragma omp simd reduction(+:dot)
	for (int j = 0; j < d; j++)
		dot += w[j] * dy[j] * x[j];
	c = dot * r * r * r / (float) d;
	for (int j = 0; j < d; j++)
		dx[j] += r * w[j] * dy[j] - c * x[j];
}

void
pt_rmsnorm_backward(const float *x, const float *w, const float *rstd,
					const float *dy, int n, int d, float *dx)
{
#pragma omp parallel for if ((size_t) n * d >= PAR_MIN_ELEMS) schedule(static)
	for (int i = 0; i < n; i++)
		rmsnorm_backward_row(x + (size_t) i * d, w, rstd[i], dy + (size_t) i * d, d,
							 dx + (size_t) i * d);
}

/* ---- feed-forward activations ------------------------------------------ */

static inline float
act_value(PtActivation act, float x)
{
	switch (act)
	{
		case PT_ACT_RELU:
			return x > 0.0f ? x : 0.0f;
		case PT_ACT_GELU_TANH:
			return 0.5f * x * (1.0f + tanh_inline(0.7978845608028654f * (x + 0.044715f * x * x * x)));
		case PT_ACT_GELU_ERF:
			return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
		case PT_ACT_SILU:
			return x / (1.0f + exp_inline(-x));
	}
	return 0.0f;
}

static inline float
act_derivative(PtActivation act, float x)
{
	switch (act)
	{
		case PT_ACT_RELU:
			return x > 0.0f ? 1.0f : 0.0f;
		case PT_ACT_GELU_TANH:
			{
				const float c = 0.7978845608028654f;
				float		t = tanh_inline(c * (x + 0.044715f * x * x * x));

				return 0.5f * (1.0f + t) +
					0.5f * x * (1.0f - t * t) * c * (1.0f + 3.0f * 0.044715f * x * x);
			}
		case PT_ACT_GELU_ERF:
			return 0.5f * (1.0f + erff(x * 0.7071067811865476f)) +
				x * 0.3989422804014327f * exp_inline(-0.5f * x * x);
		case PT_ACT_SILU:
			{
				float		s = 1.0f / (1.0f + exp_inline(-x));

				return s * (1.0f + x * (1.0f - s));
			}
	}
	return 0.0f;
}

/*
 * The loops take the activation as a parameter and are always inlined into a
 * switch over the four activations, so each copy has act_value's switch
 * folded away and is straight-line code.  restrict and "omp simd" tell GCC
 * that the arrays do not overlap and the loop may run in vector lanes.
 */
static inline __attribute__((always_inline)) void
activation_loop(PtActivation A, bool gated, const float *restrict h0, const float *restrict h1,
				size_t n, float *restrict out)
{
	if (gated)
	{
#pragma omp simd
		for (size_t i = 0; i < n; i++)
			out[i] = act_value(A, h0[i]) * h1[i];
	}
	else
	{
#pragma omp simd
		for (size_t i = 0; i < n; i++)
			out[i] = act_value(A, h0[i]);
	}
}

static inline __attribute__((always_inline)) void
activation_backward_loop(PtActivation A, bool gated, const float *restrict h0,
						 const float *restrict h1, const float *restrict dout, size_t n,
						 float *restrict dh0, float *restrict dh1)
{
	if (gated)
	{
#pragma omp simd
		for (size_t i = 0; i < n; i++)
		{
			dh0[i] = dout[i] * h1[i] * act_derivative(A, h0[i]);
			dh1[i] = dout[i] * act_value(A, h0[i]);
		}
	}
	else
	{
#pragma omp simd
		for (size_t i = 0; i < n; i++)
			dh0[i] = dout[i] * act_derivative(A, h0[i]);
	}
}

PT_VECTORIZED static void
activation_chunk(PtActivation act, bool gated, const float *h0, const float *h1,
				 size_t n, float *out)
{
	switch (act)
	{
		case PT_ACT_RELU:
			activation_loop(PT_ACT_RELU, gated, h0, h1, n, out);
			break;
		case PT_ACT_GELU_TANH:
			activation_loop(PT_ACT_GELU_TANH, gated, h0, h1, n, out);
			break;
		case PT_ACT_GELU_ERF:
			activation_loop(PT_ACT_GELU_ERF, gated, h0, h1, n, out);
			break;
		case PT_ACT_SILU:
			activation_loop(PT_ACT_SILU, gated, h0, h1, n, out);
			break;
	}
}

PT_VECTORIZED static void
activation_backward_chunk(PtActivation act, bool gated, const float *h0, const float *h1,
						  const float *dout, size_t n, float *dh0, float *dh1)
{
	switch (act)
	{
		case PT_ACT_RELU:
			activation_backward_loop(PT_ACT_RELU, gated, h0, h1, dout, n, dh0, dh1);
			break;
		case PT_ACT_GELU_TANH:
			activation_backward_loop(PT_ACT_GELU_TANH, gated, h0, h1, dout, n, dh0, dh1);
			break;
		case PT_ACT_GELU_ERF:
			activation_backward_loop(PT_ACT_GELU_ERF, gated, h0, h1, dout, n, dh0, dh1);
			break;
		case PT_ACT_SILU:
			activation_backward_loop(PT_ACT_SILU, gated, h0, h1, dout, n, dh0, dh1);
			break;
	}
}

#if defined(__x86_64__)
/*
 * gelu (tanh) on 16 lanes: 0.5 x (1 + tanh(u)) with u = sqrt(2 / pi) (x + 0.044715 x^3),
 * computed as x / (1 + exp(-2u)), the same function with one exponential and
 * no tanh: 1 + tanh(u) = 2 / (1 + exp(-2u)).  The reciprocal is rcp14's
 * estimate with one Newton step (relative error about 2^-23), which is
 * cheaper than a division.  For x > 0 large, exp(-2u) -> 0 and the result
 * is x.  For x < 0 exp16's clamp stops 1 + exp(-2u) at about 1.7e38, so
 * below -20 (where gelu is under 1e-80 in magnitude) the result is x * 0:
 * -0, and NaN for -inf, as 0.5 x (1 + tanh(u)) gives.
 */
static inline __attribute__((always_inline)) AVX512 __m512
gelu_tanh16(__m512 x)
{
	const float c = 0.7978845608028654f;	/* sqrt(2 / pi) */
	__m512		minus_2u = _mm512_mul_ps(x, _mm512_fmadd_ps(_mm512_mul_ps(x, x), _mm512_set1_ps(-2.0f * c * 0.044715f),
															 _mm512_set1_ps(-2.0f * c))),
				den = _mm512_add_ps(_mm512_set1_ps(1.0f), exp16(minus_2u)),
				r = _mm512_rcp14_ps(den);
	__mmask16	tiny = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-20.0f), _CMP_LT_OQ);

	r = _mm512_mul_ps(r, _mm512_fnmadd_ps(den, r, _mm512_set1_ps(2.0f)));
	return _mm512_mul_ps(x, _mm512_mask_blend_ps(tiny, r, _mm512_setzero_ps()));
}

/* 16 values at x + i (fewer: the mask's): from fp32 x, or (x NULL) from bf16 xb, widened exactly */
static inline __attribute__((always_inline)) AVX512 __m512
load16(__mmask16 k, const float *x, const uint16_t *xb, size_t i)
{
	if (x)
		return _mm512_maskz_loadu_ps(k, x + i);
	return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, xb + i)), 16));
}

/* 16 values (fewer: the mask's) to out + i, or (out NULL) their bf16 rounding to outb + i */
static inline __attribute__((always_inline)) AVX512 void
store16(__mmask16 k, __m512 v, float *out, uint16_t *outb, size_t i)
{
	if (out)
		_mm512_mask_storeu_ps(out + i, k, v);
	else
		_mm256_mask_storeu_epi16(outb + i, k, bf16x16(v));
}

/*
 * The gelu (tanh) activation of activation_loop: h0, h1 in fp32, or (h0
 * NULL) b0, b1 in bf16; to out, or (out NULL) its bf16 rounding outb.
 */
static AVX512 void
gelu_tanh_avx512(bool gated, const float *h0, const float *h1, const uint16_t *b0, const uint16_t *b1,
				 size_t n, float *out, uint16_t *outb)
{
	size_t		i = 0;

	/* two vectors per step: the exponential's dependency chain is long */
	for (; i + 32 <= n; i += 32)
	{
		__m512		g0 = gelu_tanh16(load16(0xFFFF, h0, b0, i)),
					g1 = gelu_tanh16(load16(0xFFFF, h0, b0, i + 16));

		if (gated)
		{
			g0 = _mm512_mul_ps(g0, load16(0xFFFF, h1, b1, i));
			g1 = _mm512_mul_ps(g1, load16(0xFFFF, h1, b1, i + 16));
		}
		store16(0xFFFF, g0, out, outb, i);
		store16(0xFFFF, g1, out, outb, i + 16);
	}
	for (; i < n; i += 16)
	{
		__mmask16	k = pt_lanes16(n - i < 16 ? (int) (n - i) : 16);
		__m512		g = gelu_tanh16(load16(k, h0, b0, i));

		if (gated)
			g = _mm512_mul_ps(g, load16(k, h1, b1, i));
		store16(k, g, out, outb, i);
	}
}
#endif

/*
 * n <= CHUNK values of h0, h1 in fp32, or (h0 NULL) of b0, b1 in bf16, to
 * out, or (out NULL) their bf16 rounding to outb.  bf16 inputs widen as the
 * AVX-512 gelu loads them, else into fp32 on the stack (in L1) first.
 */
static void
activation_run(PtActivation act, bool gated, const float *h0, const float *h1, const uint16_t *b0,
			   const uint16_t *b1, size_t n, float *out, uint16_t *outb)
{
	float		f0[CHUNK],
				f1[CHUNK];

#if defined(__x86_64__)
	if (act == PT_ACT_GELU_TANH && pt_cpu_has_avx512())
	{
		gelu_tanh_avx512(gated, h0, h1, b0, b1, n, out, outb);
		return;
	}
#endif
	if (h0 == NULL)
	{
		pt_convert_to_f32(PT_DTYPE_BF16, b0, n, f0);
		if (gated)
			pt_convert_to_f32(PT_DTYPE_BF16, b1, n, f1);
		h0 = f0, h1 = gated ? f1 : NULL;
	}
	if (out)
		activation_chunk(act, gated, h0, h1, n, out);
	else
	{
		float		tmp[CHUNK];

		activation_chunk(act, gated, h0, h1, n, tmp);
		for (size_t i = 0; i < n; i++)
			outb[i] = pt_f32_to_bf16(tmp[i]);
	}
}

/* activation_run over n values in chunks, on the threads where n is large */
static void
activation_parallel(PtActivation act, bool gated, const float *h0, const float *h1, const uint16_t *b0,
					const uint16_t *b1, size_t n, float *out, uint16_t *outb)
{
	long		chunks = (long) ((n + CHUNK - 1) / CHUNK);

#pragma omp parallel for if (n >= PAR_MIN_ELEMS) schedule(static)
	for (long c = 0; c < chunks; c++)
	{
		size_t		start = (size_t) c * CHUNK;
		size_t		len = n - start < CHUNK ? n - start : CHUNK;

		activation_run(act, gated, h0 ? h0 + start : NULL, h0 && gated ? h1 + start : NULL,
					   h0 ? NULL : b0 + start, !h0 && gated ? b1 + start : NULL, len,
					   out ? out + start : NULL, out ? NULL : outb + start);
	}
}

void
pt_ff_activation_forward(PtActivation act, bool gated, const float *h0,
						 const float *h1, size_t n, float *out)
{
	activation_parallel(act, gated, h0, h1, NULL, NULL, n, out, NULL);
}

void
pt_ff_activation_forward_bf16(PtActivation act, bool gated, const float *h0,
							  const float *h1, size_t n, uint16_t *out)
{
	activation_parallel(act, gated, h0, h1, NULL, NULL, n, NULL, out);
}

void
pt_ff_activation_bf16(PtActivation act, bool gated, const uint16_t *h0, const uint16_t *h1,
					  size_t n, uint16_t *out)
{
	activation_parallel(act, gated, NULL, NULL, h0, h1, n, NULL, out);
}

void
pt_ff_activation_forward_serial(PtActivation act, bool gated, const float *h0,
								const float *h1, size_t n, float *out)
{
	for (size_t start = 0; start < n; start += CHUNK)
	{
		size_t		len = n - start < CHUNK ? n - start : CHUNK;

		activation_run(act, gated, h0 + start, gated ? h1 + start : NULL, NULL, NULL, len, out + start, NULL);
	}
}

void
pt_ff_activation_backward(PtActivation act, bool gated, const float *h0,
						  const float *h1, const float *dout, size_t n,
						  float *dh0, float *dh1)
{
	long		chunks = (long) ((n + CHUNK - 1) / CHUNK);

#pragma omp parallel for if (n >= PAR_MIN_ELEMS) schedule(static)
	for (long c = 0; c < chunks; c++)
	{
		size_t		start = (size_t) c * CHUNK;
		size_t		len = n - start < CHUNK ? n - start : CHUNK;

		activation_backward_chunk(act, gated, h0 + start, gated ? h1 + start : NULL,
								  dout + start, len, dh0 + start, gated ? dh1 + start : NULL);
	}
}

/* ---- small helpers ------------------------------------------------------ */

void
pt_add(float *y, const float *a, const float *b, size_t n)
{
#pragma omp parallel for if (n >= PAR_MIN_ELEMS) schedule(static)
	for (size_t i = 0; i < n; i++)
		y[i] = a[i] + b[i];
}

void
pt_scale(float *y, float s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] *= s;
}

PT_VECTORIZED static float
softmax_row_portable(float *restrict row, const float *restrict bias, int d, bool normalize)
{
	float		mx = -INFINITY;
	float		sum = 0.0f;
	float		inv;

	/* one pass adds the bias and finds the maximum, one exponentiates, one scales */
	if (bias)
	{
#pragma omp simd reduction(max:mx)
		for (int j = 0; j < d; j++)
		{
			row[j] += bias[j];
			mx = row[j] > mx ? row[j] : mx;
		}
	}
	else
	{
#pragma omp simd reduction(max:mx)
		for (int j = 0; j < d; j++)
			mx = row[j] > mx ? row[j] : mx;
	}
#pragma omp simd reduction(+:sum)
	for (int j = 0; j < d; j++)
	{
		row[j] = exp_inline(row[j] - mx);
		sum += row[j];
	}
	inv = 1.0f / sum;
	if (normalize)
		for (int j = 0; j < d; j++)
			row[j] *= inv;
	return inv;
}

#if defined(__x86_64__)
/*
 * softmax_row_portable with 16 lanes and a masked last vector.  Attention
 * calls it on rows of ~150 scores: there GCC's version of the portable one
 * spent more time on its scalar tails, spills and set-up than on the
 * vectors (3 ms of a 10 ms head loop).
 */
static AVX512 float
softmax_row_avx512(float *row, const float *bias, int d, bool normalize)
{
	__m512		vmax = _mm512_set1_ps(-INFINITY),
				vsum = _mm512_setzero_ps(),
				m;
	float		inv;

	for (int j = 0; j < d; j += 16)
	{
		__mmask16	k = pt_lanes16(d - j);
		__m512		x = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, row + j);

		if (bias)
		{
			x = _mm512_mask_add_ps(x, k, x, _mm512_maskz_loadu_ps(k, bias + j));
			_mm512_mask_storeu_ps(row + j, k, x);
		}
		vmax = _mm512_max_ps(vmax, x);
	}
	m = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
	for (int j = 0; j < d; j += 16)
	{
		__mmask16	k = pt_lanes16(d - j);
		__m512		e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, row + j), m));

		_mm512_mask_storeu_ps(row + j, k, e);
		vsum = _mm512_mask_add_ps(vsum, k, vsum, e);
	}
	inv = 1.0f / _mm512_reduce_add_ps(vsum);
	if (normalize)
		for (int j = 0; j < d; j += 16)
		{
			__mmask16	k = pt_lanes16(d - j);

			_mm512_mask_storeu_ps(row + j, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, row + j), _mm512_set1_ps(inv)));
		}
	return inv;
}
#endif

float
pt_softmax_row(float *row, const float *bias, int d, bool normalize)
{
#if defined(__x86_64__)
	if (pt_cpu_has_avx512())
		return softmax_row_avx512(row, bias, d, normalize);
#endif
	return softmax_row_portable(row, bias, d, normalize);
}

/*
 * One pass over x, in blocks of LSE_BLOCK values that stay in L1 between
 * the block's two loops: the block's maximum, then its float sum of
 * exp(x - running maximum), added in double.  When a block raises the
 * maximum, the total so far is rescaled once (exp of the difference, in
 * double).  A decoder step calls this on every row of its logits (batch 32 x
 * 32,128 values, 4 MB, mostly not in cache): the former three passes (max,
 * a scalar scan for its index, exponentials) read each row two to three
 * times.
 */
#define LSE_BLOCK 1024

#if defined(__x86_64__)
/*
 * pt_log_sum_exp_argmax on 16 lanes: the same blocks, rescaling, ties and
 * NaN (the maximum and its index pass NaNs over, the result is NaN), two
 * accumulators per loop.  The compiled portable loop used 8-lane (ymm)
 * vectors at best and scanned for the maximum's index one value at a time:
 * 0.43 ms for a batch of 32 x 32,128 logits on one Zen 5 core.
 */
static AVX512 double
log_sum_exp_argmax_avx512(const float *restrict x, int n, int *argmax)
{
	const __m512 neg_inf = _mm512_set1_ps(-INFINITY);
	float		mx = -INFINITY;
	double		total = 0.0;
	int			best = 0;
	__mmask16	nan = 0;		/* exp16 would pass a NaN over: the portable loop returns NaN */

	for (int start = 0; start < n; start += LSE_BLOCK)
	{
		int			end = start + LSE_BLOCK < n ? start + LSE_BLOCK : n,
					j;
		__m512		m0 = neg_inf,
					m1 = neg_inf,
					s0 = _mm512_setzero_ps(),
					s1 = _mm512_setzero_ps(),
					m;
		float		bmx;

		for (j = start; j + 32 <= end; j += 32)
		{
			m0 = _mm512_max_ps(_mm512_loadu_ps(x + j), m0);	/* a NaN in x is passed over */
			m1 = _mm512_max_ps(_mm512_loadu_ps(x + j + 16), m1);
		}
		for (; j < end; j += 16)
			m0 = _mm512_max_ps(_mm512_mask_loadu_ps(neg_inf, pt_lanes16(end - j), x + j), m0);
		bmx = _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
		if (bmx > mx)
		{
			/* a new maximum: its first index is in this block (ties keep the earlier one) */
			total *= exp((double) mx - (double) bmx);	/* 0 for the first block */
			mx = bmx;
			m = _mm512_set1_ps(mx);
			for (j = start; j < end; j += 16)
			{
				__mmask16	hit = _mm512_mask_cmp_ps_mask(pt_lanes16(end - j),
														  _mm512_maskz_loadu_ps(pt_lanes16(end - j), x + j),
														  m, _CMP_EQ_OQ);

				if (hit)
				{
					best = j + __builtin_ctz(hit);
					break;
				}
			}
		}
		m = _mm512_set1_ps(mx);
		for (j = start; j + 32 <= end; j += 32)
		{
			__m512		v0 = _mm512_loadu_ps(x + j),
						v1 = _mm512_loadu_ps(x + j + 16);

			nan |= _mm512_cmp_ps_mask(v0, v1, _CMP_UNORD_Q);
			s0 = _mm512_add_ps(s0, exp16(_mm512_sub_ps(v0, m)));
			s1 = _mm512_add_ps(s1, exp16(_mm512_sub_ps(v1, m)));
		}
		for (; j < end; j += 16)
		{
			__mmask16	k = pt_lanes16(end - j);
			__m512		v = _mm512_maskz_loadu_ps(k, x + j);

			nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
			s0 = _mm512_mask_add_ps(s0, k, s0, exp16(_mm512_sub_ps(v, m)));
		}
		total += _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
	}
	if (argmax)
		*argmax = best;
	return nan ? NAN : mx + log(total);
}
#endif

static double
log_sum_exp_argmax_portable(const float *restrict x, int n, int *argmax);

double
pt_log_sum_exp_argmax(const float *restrict x, int n, int *argmax)
{
#if defined(__x86_64__)
	if (pt_cpu_has_avx512())
		return log_sum_exp_argmax_avx512(x, n, argmax);
#endif
	return log_sum_exp_argmax_portable(x, n, argmax);
}

PT_VECTORIZED static double
log_sum_exp_argmax_portable(const float *restrict x, int n, int *argmax)
{
	float		mx = -INFINITY;
	double		total = 0.0;
	int			best = 0;

	for (int start = 0; start < n; start += LSE_BLOCK)
	{
		int			end = start + LSE_BLOCK < n ? start + LSE_BLOCK : n;
		float		bmx = -INFINITY;
		float		sum = 0.0f;

#pragma omp simd reduction(max:bmx)
		for (int i = start; i < end; i++)
			bmx = x[i] > bmx ? x[i] : bmx;
		if (bmx > mx)
		{
			/* a new maximum: its first index is in this block (ties keep the earlier one) */
			total *= exp((double) mx - (double) bmx);	/* 0 for the first block */
			mx = bmx;
			best = start;
			while (best < end - 1 && x[best] != mx)
				best++;
		}
#pragma omp simd reduction(+:sum)
		for (int i = start; i < end; i++)
			sum += exp_inline(x[i] - mx);
		total += sum;
	}
	if (argmax)
		*argmax = best;
	return mx + log(total);
}
