/*
 * small_gemm.c - attention's per-head products (see small_gemm.h).
 *
 * The AVX-512 kernel computes C in blocks of MR rows x NV vectors of 16
 * columns, keeping the block's MR x NV sums in registers while it walks k:
 *
 *   for p in 0 .. k-1:  b[v] = B[p, j0 + 16v .. +15]          (NV loads)
 *                       acc[r][v] += A[i0 + r, p] * b[v]      (MR x NV FMAs)
 *
 * so every loaded element of B feeds MR multiplications and every element of
 * A (broadcast) NV of them.  B must be row-major in n; a transposed B is
 * copied to a per-thread buffer first.  A's layout only changes the stride
 * of the broadcast, so A and A^T run the same code.  A transposed B costs a
 * copy of k x n floats, against m x n x k multiply-adds; so does a B whose
 * rows are far apart (see dense_copy).
 */
#include <stdint.h>
#include <stdlib.h>

#include "error.h"
#include "linear.h"
#include "runtime.h"
#include "small_gemm.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define MR 4					/* rows of a block */
#define NV_MAX 4				/* vectors of 16 columns in a block */
#define AVX512 __attribute__((target("avx512f")))

/*
 * One block: C[i0 .. i0+mr-1, j0 .. j0 + 16 nv - 16 + popcount(last)] (+)= A B.
 * mr and nv are constants at every call (see block_any), so the compiler
 * keeps acc in registers; last masks the columns of the block's last vector.
 * a points at A[i0, 0], b at B[0, j0], c at C[i0, j0]; A[r, p] is
 * a[r * a_row + p * a_col].
 */
static inline __attribute__((always_inline)) AVX512 void
block(int mr, int nv, __mmask16 last, int k, const float *a, size_t a_row, size_t a_col,
	  const float *b, int ldb, float *c, int ldc, bool accumulate)
{
	__m512		acc[MR][NV_MAX];
	__mmask16	mask[NV_MAX];

	/* every loop below is unrolled: constant indices keep acc in registers */
#pragma GCC unroll 4
	for (int v = 0; v < nv; v++)
		mask[v] = v == nv - 1 ? last : (__mmask16) 0xFFFF;
#pragma GCC unroll 4
	for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
		for (int v = 0; v < nv; v++)
			acc[r][v] = _mm512_setzero_ps();
	for (int p = 0; p < k; p++)
	{
		const float *bp = b + (size_t) p * ldb;
		__m512		bv[NV_MAX];

#pragma GCC unroll 4
		for (int v = 0; v < nv; v++)
			bv[v] = _mm512_maskz_loadu_ps(mask[v], bp + 16 * v);
#pragma GCC unroll 4
		for (int r = 0; r < mr; r++)
		{
			__m512		av = _mm512_set1_ps(a[r * a_row + p * a_col]);

#pragma GCC unroll 4
			for (int v = 0; v < nv; v++)
				acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
		}
	}
#pragma GCC unroll 4
	for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
		for (int v = 0; v < nv; v++)
		{
			float	   *cp = c + (size_t) r * ldc + 16 * v;

			if (accumulate)
				acc[r][v] = _mm512_add_ps(acc[r][v], _mm512_maskz_loadu_ps(mask[v], cp));
			_mm512_mask_storeu_ps(cp, mask[v], acc[r][v]);
		}
}

#define BLOCK_ARGS last, k, a, a_row, a_col, b, ldb, c, ldc, accumulate
#define NV_CASES(MR_) \
	switch (nv) \
	{ \
		case 1: block(MR_, 1, BLOCK_ARGS); return; \
		case 2: block(MR_, 2, BLOCK_ARGS); return; \
		case 3: block(MR_, 3, BLOCK_ARGS); return; \
		default: block(MR_, 4, BLOCK_ARGS); return; \
	}

/* block() with constant shape: one specialised copy per (mr, nv) */
static AVX512 void
block_any(int mr, int nv, __mmask16 last, int k, const float *a, size_t a_row, size_t a_col,
		  const float *b, int ldb, float *c, int ldc, bool accumulate)
{
	switch (mr)
	{
		case 1: NV_CASES(1);
		case 2: NV_CASES(2);
		case 3: NV_CASES(3);
		default: NV_CASES(4);
	}
}

/* C[m, n] (+)= A[m, k] B[k, n], A[i, p] = a[i * a_row + p * a_col], B row-major */
static AVX512 void
gemm_avx512(int m, int n, int k, const float *a, size_t a_row, size_t a_col,
			const float *b, int ldb, float *c, int ldc, bool accumulate)
{
	for (int j0 = 0; j0 < n; j0 += 16 * NV_MAX)
	{
		int			cols = n - j0 < 16 * NV_MAX ? n - j0 : 16 * NV_MAX;
		int			nv = (cols + 15) / 16;
		__mmask16	last = pt_lanes16(cols % 16 ? cols % 16 : 16);

		for (int i0 = 0; i0 < m; i0 += MR)
			block_any(m - i0 < MR ? m - i0 : MR, nv, last, k, a + (size_t) i0 * a_row, a_row, a_col,
					  b + j0, ldb, c + (size_t) i0 * ldc + j0, ldc, accumulate);
	}
}

/*
 * x[q] = column q of the 16 x 16 tile whose rows are x[0..15] (in place).
 * Three rounds of shuffles, as usual: pairs of rows within 128-bit lanes,
 * then quadruples, then the four lanes.  After the second round r[4i + c]
 * holds, in lane L, column 4L + c of rows 4i .. 4i+3.
 */
static inline __attribute__((always_inline)) AVX512 void
transpose16(__m512 x[16])
{
	__m512		t[16],
				r[16];

	for (int i = 0; i < 8; i++)
	{
		t[2 * i] = _mm512_unpacklo_ps(x[2 * i], x[2 * i + 1]);
		t[2 * i + 1] = _mm512_unpackhi_ps(x[2 * i], x[2 * i + 1]);
	}
	for (int i = 0; i < 4; i++)
	{
		r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
		r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
		r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
		r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
	}
	for (int c = 0; c < 4; c++)
	{
		/* lanes 0, 2 (0x88) and 1, 3 (0xdd) of rows 0-7, then of rows 8-15 */
		t[c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88);
		t[4 + c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xdd);
		t[8 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
		t[12 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xdd);
	}
	for (int c = 0; c < 4; c++)
	{
		x[c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88);
		x[8 + c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0xdd);
		x[4 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0x88);
		x[12 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0xdd);
	}
}

/*
 * The calling thread's buffer for a copy of B, grown as needed; it lives with
 * the thread (attention's threads are the OpenMP pool's), so it never grows
 * past PT_SMALL_GEMM_MAX_COPY floats.  NULL if it cannot grow: the caller
 * then runs pt_gemm().  One call of pt_small_gemm uses it for its one
 * operand B.
 */
static float *
b_buffer(size_t floats)
{
	static __thread void *buf;
	static __thread size_t cap;

	if (floats > PT_SMALL_GEMM_MAX_COPY)
		return NULL;
	return pt_grow(&buf, &cap, floats * sizeof(float));
}

/*
 * B^T as a row-major [k, n] copy in b_buffer(), or NULL.  b is [n, k] with
 * leading dimension ldb; it is copied in 16 x 16 tiles, partial at the edges.
 */
static AVX512 float *
transposed_copy(int n, int k, const float *b, int ldb)
{
	float	   *buf = b_buffer((size_t) n * k);

	if (buf == NULL)
		return NULL;
	for (int j0 = 0; j0 < n; j0 += 16)
		for (int p0 = 0; p0 < k; p0 += 16)
		{
			__m512		x[16];
			int			rows = n - j0 < 16 ? n - j0 : 16,
						cols = k - p0 < 16 ? k - p0 : 16;

			for (int i = 0; i < 16; i++)
				x[i] = i < rows ? _mm512_maskz_loadu_ps(pt_lanes16(cols), b + (size_t) (j0 + i) * ldb + p0)
					: _mm512_setzero_ps();
			transpose16(x);
			for (int q = 0; q < cols; q++)
				_mm512_mask_storeu_ps(buf + (size_t) (p0 + q) * n + j0, pt_lanes16(rows), x[q]);
		}
	return buf;
}

/*
 * B [k, n] with rows ldb apart as a dense [k, n] copy in b_buffer(), or NULL.
 * Attention's V is a head's 64 columns of rows 384 floats (1536 bytes) apart:
 * such rows fall in a quarter of L1's sets, so the k rows that every block
 * of C walks do not stay in L1 (k = 148 rows need 18 ways of 12); densely
 * they do.  The copy costs k x n loads against m x n x k multiply-adds.
 */
static AVX512 float *
dense_copy(int n, int k, const float *b, int ldb)
{
	float	   *buf = b_buffer((size_t) n * k);

	if (buf == NULL)
		return NULL;
	for (int p = 0; p < k; p++)
		for (int j = 0; j < n; j += 16)
			_mm512_mask_storeu_ps(buf + (size_t) p * n + j, pt_lanes16(n - j),
								  _mm512_maskz_loadu_ps(pt_lanes16(n - j), b + (size_t) p * ldb + j));
	return buf;
}

/* rows of C below which a dense copy of B does not pay for itself */
#define DENSE_COPY_MIN_ROWS 16
#endif							/* __x86_64__ */

void
pt_small_gemm(bool trans_a, bool trans_b, int m, int n, int k,
			  const float *a, int lda, const float *b, int ldb,
			  float *c, int ldc, bool accumulate)
{
	if (m <= 0 || n <= 0)
		return;
#if defined(__x86_64__)
	if (pt_cpu_has_avx512())
	{
		bool		dense = !trans_b && ldb != n && m >= DENSE_COPY_MIN_ROWS && k > 1;
		const float *bt = trans_b ? transposed_copy(n, k, b, ldb) : dense ? dense_copy(n, k, b, ldb) : b;

		if (bt != NULL)
		{
			gemm_avx512(m, n, k, a, trans_a ? 1 : (size_t) lda, trans_a ? (size_t) lda : 1,
						bt, trans_b || dense ? n : ldb, c, ldc, accumulate);
			return;
		}
	}
#endif
	pt_gemm(trans_a, trans_b, m, n, k, 1.0f, a, lda, b, ldb, accumulate ? 1.0f : 0.0f, c, ldc);
}
