/*
 * attention_bf16.c - one attention head's two products in bfloat16 (see
 * attention_bf16.h for the layouts).
 *
 * Both products run in register blocks of up to ROWS output rows by COLS
 * 16-lane vectors of output columns (16 fp32 accumulators): each step of the
 * contraction loads COLS vectors of the packed operand once and uses each
 * for ROWS rows, with one 32-bit broadcast per row.  The block shape is a
 * compile-time constant in every call of the always-inline block functions,
 * so the compiler keeps the accumulators in registers.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attention_bf16.h"
#include "error.h"
#include "runtime.h"

#define ROWS 4					/* output rows per register block */
#define COLS 4					/* 16-lane output vectors per register block */

#if defined(__x86_64__)
#include <immintrin.h>

#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#define INLINE static inline __attribute__((always_inline)) BF16_TARGET

static bool
cpu_has_avx512_bf16(void)
{
	__builtin_cpu_init();
	return pt_cpu_has_avx512() && __builtin_cpu_supports("avx512bf16");
}

bool
pt_attention_bf16_supported(int dk)
{
	return dk > 0 && dk % 16 == 0 && dk <= PT_ATTN_BF16_MAX_DK && cpu_has_avx512_bf16();
}

/*
 * out[0 .. ceil(n / 2)) = x[0 .. n) rounded to bf16, two to a 32-bit word in
 * order (x[n] = 0 when n is odd).
 */
INLINE void
round_pairs(const float *x, int n, uint32_t *out)
{
	for (int i = 0; i < n; i += 32)
	{
		__m512		lo = _mm512_maskz_loadu_ps(pt_lanes16(n - i), x + i),
					hi = _mm512_maskz_loadu_ps(pt_lanes16(n - i - 16), x + i + 16);
		__m512i		b = (__m512i) _mm512_cvtne2ps_pbh(hi, lo);	/* lo's 16, then hi's 16 */

		_mm512_mask_storeu_epi32(out + i / 2, pt_lanes16((n - i + 1) / 2), b);
	}
}

/*
 * acc[r][c] = sum over p < steps of a[r][p] . b[p][16 c ...]: R rows of a
 * (bf16 pairs, rows lda words apart) by C 16-lane vectors of b (rows ldb
 * words apart), each step one vdpbf16ps per (row, vector).  Both products
 * below are this, with their own operands and stores.
 */
INLINE void
dot_block(const uint32_t *a, size_t lda, const uint32_t *b, size_t ldb, int steps, int R, int C,
		  __m512 acc[ROWS][COLS])
{
	for (int r = 0; r < R; r++)
		for (int c = 0; c < C; c++)
			acc[r][c] = _mm512_setzero_ps();
	for (int p = 0; p < steps; p++)
	{
		__m512bh	bv[COLS];

		for (int c = 0; c < C; c++)
			bv[c] = (__m512bh) _mm512_loadu_si512(b + (size_t) p * ldb + 16 * c);
		for (int r = 0; r < R; r++)
		{
			__m512bh	av = (__m512bh) _mm512_set1_epi32((int) a[(size_t) r * lda + p]);

			for (int c = 0; c < C; c++)
				acc[r][c] = _mm512_dpbf16_ps(acc[r][c], av, bv[c]);
		}
	}
}

/* ---- S = Q K^T ------------------------------------------------------------ */

/* S[R rows, C vectors from column j0] = q rows (pairs, dk2 each) . kp[., j0 ...] */
INLINE void
scores_block(const uint32_t *qb, int dk2, const uint32_t *kp, int tkp, int j0, int tk,
			 int R, int C, float *S, int lds)
{
	__m512		acc[ROWS][COLS];

	dot_block(qb, dk2, kp + j0, tkp, dk2, R, C, acc);
	for (int r = 0; r < R; r++)
		for (int c = 0; c < C; c++)
			_mm512_mask_storeu_ps(S + (size_t) r * lds + j0 + 16 * c, pt_lanes16(tk - j0 - 16 * c), acc[r][c]);
}

/* all columns of R rows of S, in blocks of COLS vectors and one of what is left */
INLINE void
scores_rows(const PtBf16Head *h, const uint32_t *qb, int R, float *S, int lds)
{
	int			dk2 = h->dk / 2,
				j0 = 0;

	for (; j0 + 16 * COLS <= h->tkp; j0 += 16 * COLS)
		scores_block(qb, dk2, h->kp, h->tkp, j0, h->tk, R, COLS, S, lds);
	switch ((h->tkp - j0) / 16)
	{
		case 3:
			scores_block(qb, dk2, h->kp, h->tkp, j0, h->tk, R, 3, S, lds);
			break;
		case 2:
			scores_block(qb, dk2, h->kp, h->tkp, j0, h->tk, R, 2, S, lds);
			break;
		case 1:
			scores_block(qb, dk2, h->kp, h->tkp, j0, h->tk, R, 1, S, lds);
			break;
	}
}

static BF16_TARGET void
scores(const PtBf16Head *h, const float *Q, int ldq, int n, float *S, int lds)
{
	uint32_t	qb[ROWS * PT_ATTN_BF16_MAX_DK / 2];
	int			dk2 = h->dk / 2;

	for (int i0 = 0; i0 < n; i0 += ROWS)
	{
		int			R = n - i0 < ROWS ? n - i0 : ROWS;

		for (int r = 0; r < R; r++)
			round_pairs(Q + (size_t) (i0 + r) * ldq, h->dk, qb + r * dk2);
		switch (R)
		{
			case 4:
				scores_rows(h, qb, 4, S + (size_t) i0 * lds, lds);
				break;
			case 3:
				scores_rows(h, qb, 3, S + (size_t) i0 * lds, lds);
				break;
			case 2:
				scores_rows(h, qb, 2, S + (size_t) i0 * lds, lds);
				break;
			default:
				scores_rows(h, qb, 1, S + (size_t) i0 * lds, lds);
				break;
		}
	}
}

/* ---- C = P V ---------------------------------------------------------------- */

/*
 * C[R rows, C vectors from column c0] = (p rows (pairs, tk2 each) . vp[., c0 ...]) * scale,
 * to out in fp32 or (out NULL) to outb rounded to bf16
 */
INLINE void
context_block(const uint32_t *pb, int tk2, const uint32_t *vp, int dk, int c0, int R, int C,
			  const float *scale, float *out, uint16_t *outb, int ldc)
{
	__m512		acc[ROWS][COLS];

	dot_block(pb, tk2, vp + c0, dk, tk2, R, C, acc);
	for (int r = 0; r < R; r++)
		for (int c = 0; c < C; c++)
		{
			__m512		y = _mm512_mul_ps(acc[r][c], _mm512_set1_ps(scale[r]));

			if (out)
				_mm512_storeu_ps(out + (size_t) r * ldc + c0 + 16 * c, y);
			else
				_mm256_storeu_si256((__m256i *) (outb + (size_t) r * ldc + c0 + 16 * c),
									(__m256i) _mm512_cvtneps_pbh(y));
		}
}

INLINE void
context_rows(const PtBf16Head *h, const uint32_t *pb, int R, const float *scale, float *out,
			 uint16_t *outb, int ldc)
{
	int			tk2 = (h->tk + 1) / 2,
				c0 = 0;

	for (; c0 + 16 * COLS <= h->dk; c0 += 16 * COLS)
		context_block(pb, tk2, h->vp, h->dk, c0, R, COLS, scale, out, outb, ldc);
	switch ((h->dk - c0) / 16)
	{
		case 3:
			context_block(pb, tk2, h->vp, h->dk, c0, R, 3, scale, out, outb, ldc);
			break;
		case 2:
			context_block(pb, tk2, h->vp, h->dk, c0, R, 2, scale, out, outb, ldc);
			break;
		case 1:
			context_block(pb, tk2, h->vp, h->dk, c0, R, 1, scale, out, outb, ldc);
			break;
	}
}

static __thread void *rows_buf;	/* context: ROWS rows of P in pairs */
static __thread size_t rows_cap;

static BF16_TARGET int
context(const PtBf16Head *h, const float *P, int ldp, int n, const float *row_scale, float *C,
		uint16_t *Cb, int ldc)
{
	int			tk2 = (h->tk + 1) / 2;
	uint32_t   *pb = pt_grow(&rows_buf, &rows_cap, sizeof(uint32_t) * ROWS * (size_t) tk2);

	if (pb == NULL)
		return -1;
	for (int i0 = 0; i0 < n; i0 += ROWS)
	{
		int			R = n - i0 < ROWS ? n - i0 : ROWS;
		float	   *out = C ? C + (size_t) i0 * ldc : NULL;
		uint16_t   *outb = C ? NULL : Cb + (size_t) i0 * ldc;

		for (int r = 0; r < R; r++)
			round_pairs(P + (size_t) (i0 + r) * ldp, h->tk, pb + (size_t) r * tk2);
		switch (R)
		{
			case 4:
				context_rows(h, pb, 4, row_scale + i0, out, outb, ldc);
				break;
			case 3:
				context_rows(h, pb, 3, row_scale + i0, out, outb, ldc);
				break;
			case 2:
				context_rows(h, pb, 2, row_scale + i0, out, outb, ldc);
				break;
			default:
				context_rows(h, pb, 1, row_scale + i0, out, outb, ldc);
				break;
		}
	}
	return 0;
}

/* ---- packing K and V ---------------------------------------------------------- */

static __thread void *kp_buf;
static __thread size_t kp_cap;
static __thread void *vp_buf;
static __thread size_t vp_cap;

static BF16_TARGET int
pack(const float *K, const float *V, int ld, int tk, int dk, PtBf16Head *h)
{
	int			dk2 = dk / 2,
				tkp = (tk + 15) & ~15,
				tk2 = (tk + 1) / 2;
	uint32_t   *kp = pt_grow(&kp_buf, &kp_cap, sizeof(uint32_t) * (size_t) dk2 * tkp),
			   *vp = pt_grow(&vp_buf, &vp_cap, sizeof(uint32_t) * (size_t) tk2 * dk);
	uint32_t	row[PT_ATTN_BF16_MAX_DK / 2];

	/* vp[q][c] interleaves rows 2q and 2q + 1 of V: vpermw puts lo[c], hi[c] side by side */
	const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
												23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);

	if (kp == NULL || vp == NULL)
		return -1;

	/* kp: each key row in pairs, written down its column j; columns tk .. tkp are zero */
	for (int j = 0; j < tkp; j++)
	{
		if (j < tk)
			round_pairs(K + (size_t) j * ld, dk, row);
		for (int p = 0; p < dk2; p++)
			kp[(size_t) p * tkp + j] = j < tk ? row[p] : 0;
	}

	for (int q = 0; q < tk2; q++)
	{
		const float *lo_row = V + (size_t) (2 * q) * ld,
				   *hi_row = 2 * q + 1 < tk ? V + (size_t) (2 * q + 1) * ld : NULL;

		for (int c = 0; c < dk; c += 16)
		{
			__m512		lo = _mm512_loadu_ps(lo_row + c),
						hi = hi_row ? _mm512_loadu_ps(hi_row + c) : _mm512_setzero_ps();
			__m512i		b = (__m512i) _mm512_cvtne2ps_pbh(hi, lo);

			_mm512_storeu_si512(vp + (size_t) q * dk + c, _mm512_permutexvar_epi16(interleave, b));
		}
	}
	*h = (PtBf16Head) {kp, vp, tk, tkp, dk};
	return 0;
}

int
pt_bf16_head_pack(const float *K, const float *V, int ld, int tk, int dk, PtBf16Head *head)
{
	if (!pt_attention_bf16_supported(dk) || tk <= 0)
		return -1;
	return pack(K, V, ld, tk, dk, head);
}

void
pt_bf16_head_scores(const PtBf16Head *head, const float *Q, int ldq, int n, float *S, int lds)
{
	scores(head, Q, ldq, n, S, lds);
}

int
pt_bf16_head_context(const PtBf16Head *head, const float *P, int ldp, int n,
					 const float *row_scale, float *C, uint16_t *Cb, int ldc)
{
	return context(head, P, ldp, n, row_scale, C, Cb, ldc);
}

#else							/* not x86-64: no bf16 path */

bool
pt_attention_bf16_supported(int dk)
{
	(void) dk;
	return false;
}

int
pt_bf16_head_pack(const float *K, const float *V, int ld, int tk, int dk, PtBf16Head *head)
{
	(void) K, (void) V, (void) ld, (void) tk, (void) dk, (void) head;
	return -1;
}

void
pt_bf16_head_scores(const PtBf16Head *head, const float *Q, int ldq, int n, float *S, int lds)
{
	(void) head, (void) Q, (void) ldq, (void) n, (void) S, (void) lds;
}

int
pt_bf16_head_context(const PtBf16Head *head, const float *P, int ldp, int n,
					 const float *row_scale, float *C, uint16_t *Cb, int ldc)
{
	(void) head, (void) P, (void) ldp, (void) n, (void) row_scale, (void) C, (void) Cb, (void) ldc;
	return -1;
}
#endif
