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

#include "kernels.h"

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

/* ---- RMS norm ---------------------------------------------------------- */

PT_VECTORIZED static float
rmsnorm_row(const float *x, const float *w, int d, float eps, float *y)
{
	float		ss = 0.0f;
	float		r;

#pragma omp simd reduction(+:ss)
	for (int j = 0; j < d; j++)
		ss += x[j] * x[j];
	r = 1.0f / sqrtf(ss / (float) d + eps);
	for (int j = 0; j < d; j++)
		y[j] = (x[j] * r) * w[j];
	return r;
}

void
pt_rmsnorm_forward(const float *x, const float *w, int n, int d, float eps,
				   float *y, float *rstd)
{
#pragma omp parallel for if ((size_t) n * d >= PAR_MIN_ELEMS) schedule(static)
	for (int i = 0; i < n; i++)
	{
		float		r = rmsnorm_row(x + (size_t) i * d, w, d, eps, y + (size_t) i * d);

		if (rstd)
			rstd[i] = r;
	}
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

void
pt_ff_activation_forward(PtActivation act, bool gated, const float *h0,
						 const float *h1, size_t n, float *out)
{
	long		chunks = (long) ((n + CHUNK - 1) / CHUNK);

#pragma omp parallel for if (n >= PAR_MIN_ELEMS) schedule(static)
	for (long c = 0; c < chunks; c++)
	{
		size_t		start = (size_t) c * CHUNK;
		size_t		len = n - start < CHUNK ? n - start : CHUNK;

		activation_chunk(act, gated, h0 + start, gated ? h1 + start : NULL, len, out + start);
	}
}

void
pt_ff_activation_forward_serial(PtActivation act, bool gated, const float *h0,
								const float *h1, size_t n, float *out)
{
	for (size_t start = 0; start < n; start += CHUNK)
	{
		size_t		len = n - start < CHUNK ? n - start : CHUNK;

		activation_chunk(act, gated, h0 + start, gated ? h1 + start : NULL, len, out + start);
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

PT_VECTORIZED float
pt_softmax_row(float *restrict row, const float *restrict bias, int d, bool normalize)
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

PT_VECTORIZED double
pt_log_sum_exp_argmax(const float *restrict x, int n, int *argmax)
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
