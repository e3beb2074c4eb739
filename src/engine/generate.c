/*
 * generate.c - autoregressive decoding, greedy and beam search (see generate.h).
 *
 * Rows are processed in chunks that bound the caches' memory.  For a chunk:
 *
 *   1. One encoder pass over all rows (pass.c), then each decoder layer's
 *      cross-attention keys and values of every encoder row, once:
 *          kx[l], vx[l]  [N_enc, I]
 *   2. Steps t = 0, 1, ...: every live sequence feeds its last token (the
 *      decoder_start token at t = 0) through the decoder, one row each:
 *          y [B, d] -> per layer: self-attention over the sequence's cached
 *          keys/values of positions 0..t (this step's K, V are appended at
 *          position t), cross-attention over its row's kx/vx, feed-forward
 *          -> final norm -> logits [B, V]
 *      B shrinks as rows finish: a live sequence owns a cache slot, and the
 *      batch lists only the live ones, so finishing moves no memory.
 *   3. The search picks tokens: greedy takes each row's argmax; beam search
 *      (T5X's, see generate.h) picks each row's K new live beams among its
 *      2K best extensions, and their caches are gathered from their parents'
 *      slots into a second set of slots (double buffering), as are their
 *      token histories.
 *
 * The self-attention cache of one layer is [S, cap, I] (S slots, cap =
 * max_new_tokens positions); slot s of a beam row r is r * K + beam.
 * All sequences of a chunk advance in lockstep, so one position t serves all.
 *
 * Cache precision (PtGenerateOptions.cache): the cross-attention keys and
 * values are the largest thing a step reads (at batch 32, 128-token inputs,
 * flan-t5-small: 32 x 128 x 384 x 2 x 8 layers = 25 M values per step), more
 * than the decoder's weights.  Models whose products run in bf16 or int8
 * therefore keep both caches in bfloat16 (rounded once, to nearest even, when
 * a value is computed or appended): half the bytes to stream.  Attention
 * widens each key / value to float32 as it reads it and accumulates in
 * float32, so the only change is the rounding of the cached values, which
 * the bf16 products already apply to their own inputs.  fp32 models keep
 * fp32 caches: exact.
 */
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dtype.h"
#include "error.h"
#include "generate.h"
#include "kernels.h"
#include "prompt.h"
#include "runtime.h"
#include "transformer.h"

/*
 * A chunk's caches and step buffers stay under this many bytes (a single
 * row always runs, whatever it needs); its encoder pass under this many tokens.
 */
#define GEN_CHUNK_BYTES ((size_t) 256 << 20)
#define GEN_CHUNK_ENC_TOKENS 16384

/*
 * A decoder step runs its layers split by rows (decoder_step) where each
 * thread gets at least this many rows.  Measured on two cores of a Zen 5
 * (the only machine it was measured on), flan-t5-small shapes, bf16 (step
 * ms, split against not, 2 rounds): batch 4: 5.2-5.4 against 5.8-6.2; 8:
 * 5.1-5.3 against 6.5-6.8; 32: 8.7-9.1 against 10.8-11.6 (fp32 at 32:
 * 19.9-21.5 against 21.8-24.5).  One row per thread gained too (batch 2: 5.4
 * against 6.2-6.3), but each thread reads every weight (flan-t5-small in
 * bf16: 44 MB a step): with many cores and one row each, that is many times
 * the weights' bytes, so a thread takes two rows at least.  On many cores
 * this is a guess: `ptune bench-generate` reports both arrangements' products
 * (floor_whole_ms, floor_split_ms) to check it.
 */
#define DECODE_SPLIT_ROWS 2

/* One candidate extension in beam search. */
typedef struct Cand
{
	double		lp;				/* log-probability of the extended sequence */
	int			beam;			/* index of the parent among the row's live beams */
	int32_t		token;
} Cand;

/* Everything a chunk needs, carved from ws->head (see carve_chunk). */
typedef struct Chunk
{
	int			R,				/* rows */
				K,				/* beams (1: greedy) */
				S,				/* cache slots: R * K */
				cap,			/* max_new_tokens */
				n_buf,			/* 2 with beams (gather target), else 1 */
				N_enc,			/* encoder rows of all rows */
				smax;			/* longest attention row: max(encoder length, cap) */
	bool		bf16;			/* caches in bfloat16 (uint16_t), else float */
	size_t		esz;			/* bytes per cached value: 2 or 4 */
	PtEncoderSeq *enc;			/* [R] */
	int		   *enc_off,
			   *enc_len;		/* [R] each row's encoder rows within kx / vx */
	void	  **kx,
			  **vx;				/* [L] each [N_enc, I] (cache precision) */
	float	   *kv_tmp;			/* bf16 only: [2, N_enc, I] cross keys / values before rounding */
	void	   *kc[2],
			   *vc[2];			/* [L, S, cap, I] self-attention caches (cache precision) */
	int32_t    *seq[2];			/* [S, cap] tokens of each slot's sequence */
	double	   *seq_lp[2];		/* [S, cap] their log-probabilities */
	double	   *live_lp;		/* [S] (beam: of the buffer being read) */
	float	   *bias;			/* [H, 2 cap - 1] decoder self-attention position bias */
	/* step buffers, B <= S rows */
	int		   *act_slot,
			   *act_row;		/* [S] live sequences of this step */
	int32_t    *act_tok;		/* [S] their input tokens */
	int		   *next_slot,
			   *next_row;
	int32_t    *next_tok;		/* [S] the next step's */
	float	   *y,
			   *ln,
			   *sub;			/* [S, d] */
	float	   *q,
			   *k,
			   *v,
			   *ctx;			/* [S, I] */
	float	   *h0,
			   *h1,
			   *act;			/* [S, F] */
	float	   *logits;			/* [S, V] */
	double	   *lse;			/* [S] log-sum-exp of each logits row */
	int		   *best;			/* [S] its argmax (the lowest index among equals) */
	float	   *scores;			/* [S * H, smax] attention rows */
	/* beam search, per row */
	Cand	   *cands;			/* [S * 2] (2K per row) */
	int32_t    *fin_seq;		/* [S, cap] finished sequences, K per row, EOS included */
	double	   *fin_lp;			/* [S, cap] */
	double	   *fin_score;		/* [S] */
	int		   *fin_len;		/* [S] */
	int		   *n_fin;			/* [R] */
} Chunk;

const char *
pt_generate_profile_name(int part)
{
	static const char *const names[PT_GENERATE_PROFILE_PARTS] = {
		"products", "self_attention", "cross_attention", "rest", "lm_head", "argmax", "select"
	};

	return part >= 0 && part < PT_GENERATE_PROFILE_PARTS ? names[part] : "?";
}

/*
 * options.profile: the time since *mark goes to part, and *mark moves on.
 * Costs two clock reads per part and step, only when profiling.
 */
static inline void
prof_lap(double *profile, double *mark, int part)
{
	struct timespec ts;
	double		t;

	if (profile == NULL)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	t = ts.tv_sec + ts.tv_nsec * 1e-9;
	if (part >= 0)
		profile[part] += t - *mark;
	*mark = t;
}

void
pt_generate_options_default(PtGenerateOptions *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->max_new_tokens = PT_GENERATE_DEFAULT_MAX_NEW_TOKENS;
	opts->num_beams = PT_GENERATE_DEFAULT_BEAMS;
	opts->length_penalty = PT_GENERATE_DEFAULT_ALPHA;
}

int
pt_generate_options_check(const PtGenerateOptions *opts)
{
	if (opts == NULL)
		return pt_fail(PT_ERR_ARGUMENT, "generation options are missing");
	if (opts->max_new_tokens < 1 || opts->max_new_tokens > PT_GENERATE_MAX_NEW_TOKENS)
		return pt_fail(PT_ERR_ARGUMENT, "max_new_tokens must be between 1 and %d, not %d",
					   PT_GENERATE_MAX_NEW_TOKENS, opts->max_new_tokens);
	if (opts->num_beams < 1 || opts->num_beams > PT_GENERATE_MAX_BEAMS)
		return pt_fail(PT_ERR_ARGUMENT, "num_beams must be between 1 and %d, not %d",
					   PT_GENERATE_MAX_BEAMS, opts->num_beams);
	if (!(opts->length_penalty >= 0.0 && opts->length_penalty <= PT_GENERATE_MAX_ALPHA))
		return pt_fail(PT_ERR_ARGUMENT, "length_penalty must be between 0 and %g, not %g",
					   PT_GENERATE_MAX_ALPHA, opts->length_penalty);
	if (opts->cache < PT_GEN_CACHE_AUTO || opts->cache > PT_GEN_CACHE_BF16)
		return pt_fail(PT_ERR_ARGUMENT, "unknown cache precision %d", (int) opts->cache);
	if (opts->ignore_eos && opts->num_beams > 1)
		return pt_fail(PT_ERR_ARGUMENT, "ignore_eos works with greedy decoding only (num_beams 1)");
	return 0;
}

/* T5X's brevity penalty ((5 + length) / 6) ^ alpha */
static double
brevity_penalty(double alpha, int length)
{
	return pow((5.0 + length) / 6.0, alpha);
}

static int
check_rows(const PtModel *m, const PtGenerateRow *rows, int n, const PtGenerateResult *results)
{
	int			V = m->cfg.vocab_size;

	if (n < 0 || n > PT_MAX_ROWS)
		return pt_fail(PT_ERR_ARGUMENT, "generation takes 0 to %d rows, not %d", PT_MAX_ROWS, n);
	if (n > 0 && (rows == NULL || results == NULL))
		return pt_fail(PT_ERR_ARGUMENT, "generation rows or results are missing");
	for (int i = 0; i < n; i++)
	{
		const PtGenerateRow *r = &rows[i];

		if (r->n_ids < 1 || r->ids == NULL)
			return pt_fail(PT_ERR_ARGUMENT, "row %d has no input tokens (at least EOS is needed)", i);
		if (r->prompt_len < 0 || r->prompt_len > PT_PROMPT_MAX_LENGTH ||
			(r->prompt_len > 0 && r->prompt == NULL))
			return pt_fail(PT_ERR_ARGUMENT, "row %d has a bad prompt (length %d; 0 to %d rows with values)",
						   i, r->prompt_len, PT_PROMPT_MAX_LENGTH);
		if ((long) r->prompt_len + r->n_ids > PT_MAX_SEQ_LEN)
			return pt_fail(PT_ERR_ARGUMENT, "row %d is %d prompt rows + %d tokens long; at most %d",
						   i, r->prompt_len, r->n_ids, PT_MAX_SEQ_LEN);
		for (int j = 0; j < r->n_ids; j++)
			if (r->ids[j] < 0 || r->ids[j] >= V)
				return pt_fail(PT_ERR_ARGUMENT, "row %d: token id %d is outside the vocabulary [0, %d)",
							   i, r->ids[j], V);
		if (results[i].ids == NULL)
			return pt_fail(PT_ERR_ARGUMENT, "result %d has no room for tokens", i);
	}
	return 0;
}

/* Whether the caches of a generation with options o on model m are bfloat16. */
static bool
cache_is_bf16(const PtModel *m, const PtGenerateOptions *o)
{
	if (o->cache == PT_GEN_CACHE_AUTO)
		return m->math != PT_MATH_FP32;
	return o->cache == PT_GEN_CACHE_BF16;
}

/* Bytes one row adds to a chunk (caches and step buffers), roughly. */
static size_t
row_bytes(const PtModel *m, const PtGenerateRow *row, const PtGenerateOptions *o)
{
	const PtConfig *c = &m->cfg;
	size_t		I = pt_config_inner(c),
				L = c->num_decoder_layers,
				K = o->num_beams,
				cap = o->max_new_tokens,
				bufs = K > 1 ? 2 : 1;
	size_t		te = (size_t) row->prompt_len + row->n_ids;
	size_t		smax = te > cap ? te : cap;
	bool		bf16 = cache_is_bf16(m, o);
	size_t		esz = bf16 ? 2 : 4;

	return esz * (L * 2 * te * I		/* cross keys / values */
				  + bufs * L * 2 * K * cap * I)	/* self-attention caches */
		+ (bf16 ? 4 * 2 * te * I : 0)	/* kv_tmp */
		+ 4 * (K * (c->vocab_size + 3 * c->d_model + 4 * I + 3 * c->d_ff)
			   + K * c->num_heads * smax)
		+ K * cap * (bufs + 1) * (4 + 8);	/* token histories */
}

static void
carve_chunk(PtArena *a, Chunk *ch, const PtModel *m)
{
	const PtConfig *c = &m->cfg;
	size_t		I = pt_config_inner(c),
				d = c->d_model,
				F = c->d_ff,
				V = c->vocab_size,
				H = c->num_heads,
				L = c->num_decoder_layers,
				S = ch->S,
				cap = ch->cap;

	ch->enc = pt_arena_bytes(a, sizeof(PtEncoderSeq) * ch->R);
	ch->enc_off = pt_arena_bytes(a, sizeof(int) * ch->R);
	ch->enc_len = pt_arena_bytes(a, sizeof(int) * ch->R);
	ch->kx = pt_arena_bytes(a, sizeof(void *) * L);
	ch->vx = pt_arena_bytes(a, sizeof(void *) * L);
	for (size_t l = 0; l < L; l++)
	{
		void	   *kx = pt_arena_bytes(a, ch->esz * ch->N_enc * I);
		void	   *vx = pt_arena_bytes(a, ch->esz * ch->N_enc * I);

		if (ch->kx)
			ch->kx[l] = kx, ch->vx[l] = vx;
	}
	ch->kv_tmp = ch->bf16 ? pt_arena_floats(a, 2 * (size_t) ch->N_enc * I) : NULL;
	for (int b = 0; b < 2; b++)
	{
		bool		used = b < ch->n_buf;

		ch->kc[b] = used ? pt_arena_bytes(a, ch->esz * L * S * cap * I) : NULL;
		ch->vc[b] = used ? pt_arena_bytes(a, ch->esz * L * S * cap * I) : NULL;
		ch->seq[b] = used ? pt_arena_bytes(a, sizeof(int32_t) * S * cap) : NULL;
		ch->seq_lp[b] = used ? pt_arena_bytes(a, sizeof(double) * S * cap) : NULL;
	}
	ch->live_lp = pt_arena_bytes(a, sizeof(double) * S);
	ch->bias = pt_arena_floats(a, H * (2 * cap - 1));
	ch->act_slot = pt_arena_bytes(a, sizeof(int) * S);
	ch->act_row = pt_arena_bytes(a, sizeof(int) * S);
	ch->act_tok = pt_arena_bytes(a, sizeof(int32_t) * S);
	ch->next_slot = pt_arena_bytes(a, sizeof(int) * S);
	ch->next_row = pt_arena_bytes(a, sizeof(int) * S);
	ch->next_tok = pt_arena_bytes(a, sizeof(int32_t) * S);
	ch->y = pt_arena_floats(a, S * d);
	ch->ln = pt_arena_floats(a, S * d);
	ch->sub = pt_arena_floats(a, S * d);
	ch->q = pt_arena_floats(a, S * I);
	ch->k = pt_arena_floats(a, S * I);
	ch->v = pt_arena_floats(a, S * I);
	ch->ctx = pt_arena_floats(a, S * I);
	ch->h0 = pt_arena_floats(a, S * F);
	ch->h1 = pt_arena_floats(a, S * F);
	ch->act = pt_arena_floats(a, S * F);
	ch->logits = pt_arena_floats(a, S * V);
	ch->lse = pt_arena_bytes(a, sizeof(double) * S);
	ch->best = pt_arena_bytes(a, sizeof(int) * S);
	ch->scores = pt_arena_floats(a, S * H * (size_t) ch->smax);
	if (ch->K > 1)
	{
		ch->cands = pt_arena_bytes(a, sizeof(Cand) * S * 2);
		ch->fin_seq = pt_arena_bytes(a, sizeof(int32_t) * S * cap);
		ch->fin_lp = pt_arena_bytes(a, sizeof(double) * S * cap);
		ch->fin_score = pt_arena_bytes(a, sizeof(double) * S);
		ch->fin_len = pt_arena_bytes(a, sizeof(int) * S);
		ch->n_fin = pt_arena_bytes(a, sizeof(int) * ch->R);
	}
}

/* The K / V cache of layer l, slot s, position 0, within one buffer's base. */
static inline void *
cache_at(const Chunk *ch, void *base, int I, int l, int s)
{
	return (char *) base + (((size_t) l * ch->S + s) * ch->cap) * I * ch->esz;
}

/*
 * dst[i] = src[i] rounded to bfloat16 (nearest even, NaN kept a NaN), as
 * pt_f32_to_bf16 does, written without branches so that it vectorises.
 */
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
static void
round_to_bf16(const float *restrict src, size_t n, uint16_t *restrict dst)
{
#pragma omp simd
	for (size_t i = 0; i < n; i++)
	{
		uint32_t	bits;
		uint32_t	rounded;

		memcpy(&bits, &src[i], sizeof(bits));
		rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
		dst[i] = (uint16_t) ((bits & 0x7fffffffu) > 0x7f800000u ? (bits >> 16) | 0x40u : rounded);
	}
}

/* Writes n values of src to a cache at dst in the chunk's cache precision. */
static inline void
cache_store(const Chunk *ch, const float *src, size_t n, void *dst)
{
	if (ch->bf16)
		round_to_bf16(src, n, dst);
	else
		memcpy(dst, src, sizeof(float) * n);
}

/* Scores to probabilities, head by head: sc's rows [h1 - h0, smax], n keys, bias as T5's relative one. */
static inline void
softmax_heads(float *sc, int smax, int n, int h0, int h1, const float *bias, int width, int bias_at)
{
	for (int h = h0; h < h1; h++)
		pt_softmax_row(sc + (size_t) (h - h0) * smax, bias ? bias + (size_t) h * width + bias_at : NULL,
					   n, true);
}

/*
 * Heads [h0, h1) of one single query over its n keys:
 *   out[h] = softmax(q[h] . K[:, h]^T + bias_h) V[:, h]
 * q, out: [I] rows (head h at h * dk); K, V: n rows of stride I; sc: this
 * item's score rows, [h1 - h0, smax].  Key and value rows are read whole
 * (contiguous, h0 * dk .. h1 * dk), which streams the caches from memory at
 * full speed; the score of (j, h) and the sums over j are computed in the
 * same order however the heads are grouped, so results do not depend on it.
 * Compiled for AVX-512 and AVX2 as well: the engine's default target is
 * SSE2, too narrow for these dk-long dot products.
 *
 * bf16: K and V hold bfloat16 (uint16_t) values, each widened to float32 as
 * it is read (a 16-bit shift: exact), with the same float32 arithmetic in
 * the same order as for float32 caches.
 */
static inline void
attend_heads_body(const float *restrict q, const void *restrict K, const void *restrict V, bool bf16,
				  int n, int I, int dk, int h0, int h1, const float *bias, int width, int bias_at,
				  float *restrict sc, int smax, float *restrict out)
{
	for (int j = 0; j < n; j++)
	{
		for (int h = h0; h < h1; h++)
		{
			const float *qh = q + h * dk;
			size_t		at = (size_t) j * I + h * dk;
			float		s = 0.0f;

			if (bf16)
			{
				const uint16_t *kh = (const uint16_t *) K + at;

#pragma omp simd reduction(+:s)
				for (int i = 0; i < dk; i++)
					s += qh[i] * pt_bf16_to_f32(kh[i]);
			}
			else
			{
				const float *kh = (const float *) K + at;

#pragma omp simd reduction(+:s)
				for (int i = 0; i < dk; i++)
					s += qh[i] * kh[i];
			}
			sc[(size_t) (h - h0) * smax + j] = s;
		}
	}
	softmax_heads(sc, smax, n, h0, h1, bias, width, bias_at);
	memset(out + h0 * dk, 0, sizeof(float) * (size_t) (h1 - h0) * dk);
	for (int j = 0; j < n; j++)
	{
		for (int h = h0; h < h1; h++)
		{
			float		p = sc[(size_t) (h - h0) * smax + j];
			float	   *o = out + h * dk;
			size_t		at = (size_t) j * I + h * dk;

			if (bf16)
			{
				const uint16_t *vh = (const uint16_t *) V + at;

#pragma omp simd
				for (int i = 0; i < dk; i++)
					o[i] += p * pt_bf16_to_f32(vh[i]);
			}
			else
			{
				const float *vh = (const float *) V + at;

#pragma omp simd
				for (int i = 0; i < dk; i++)
					o[i] += p * vh[i];
			}
		}
	}
}

#define ATTEND_ARGS const float *restrict q, const void *restrict K, const void *restrict V, bool bf16, \
	int n, int I, int dk, int h0, int h1, const float *bias, int width, int bias_at, \
	float *restrict sc, int smax, float *restrict out
#define ATTEND_PASS(dk_) q, K, V, bf16, n, I, dk_, h0, h1, bias, width, bias_at, sc, smax, out

/* 16 cached values at base[at..] widened to float32 (bf16: a 16-bit shift, exact) */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
static inline __m512
load16(const void *base, size_t at, bool bf16)
{
	if (bf16)
		return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(
			_mm256_loadu_si256((const __m256i *) ((const uint16_t *) base + at))), 16));
	return _mm512_loadu_ps((const float *) base + at);
}

/*
 * attend_heads_body with AVX-512 for head sizes that are a multiple of 16
 * (T5's are 64): a head's dot product is dk / 16 full vectors in two
 * accumulators and one tree reduction.  (The compiled loop reduced the 16
 * lanes one after another, through memory: most of cross-attention's time.)
 * Float32 arithmetic as the portable path, in another summation order.
 */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
static void
attend_heads_avx512(ATTEND_ARGS)
{
	int			vecs = dk / 16;

	for (int j = 0; j < n; j++)
		for (int h = h0; h < h1; h++)
		{
			const float *qh = q + h * dk;
			size_t		at = (size_t) j * I + (size_t) h * dk;
			__m512		a0 = _mm512_setzero_ps(),
						a1 = _mm512_setzero_ps();
			int			c = 0;

			for (; c + 1 < vecs; c += 2)
			{
				a0 = _mm512_fmadd_ps(_mm512_loadu_ps(qh + 16 * c), load16(K, at + 16 * c, bf16), a0);
				a1 = _mm512_fmadd_ps(_mm512_loadu_ps(qh + 16 * c + 16), load16(K, at + 16 * c + 16, bf16), a1);
			}
			if (c < vecs)
				a0 = _mm512_fmadd_ps(_mm512_loadu_ps(qh + 16 * c), load16(K, at + 16 * c, bf16), a0);
			sc[(size_t) (h - h0) * smax + j] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
		}
	softmax_heads(sc, smax, n, h0, h1, bias, width, bias_at);
	memset(out + h0 * dk, 0, sizeof(float) * (size_t) (h1 - h0) * dk);
	for (int j = 0; j < n; j++)
		for (int h = h0; h < h1; h++)
		{
			__m512		p = _mm512_set1_ps(sc[(size_t) (h - h0) * smax + j]);
			float	   *o = out + h * dk;
			size_t		at = (size_t) j * I + (size_t) h * dk;

			for (int c = 0; c < vecs; c++)
				_mm512_storeu_ps(o + 16 * c, _mm512_fmadd_ps(p, load16(V, at + 16 * c, bf16),
															 _mm512_loadu_ps(o + 16 * c)));
		}
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
static void
attend_heads_portable(ATTEND_ARGS)
{
	attend_heads_body(ATTEND_PASS(dk));
}

static void
attend_heads(ATTEND_ARGS)
{
	if (dk % 16 == 0 && pt_cpu_has_avx512())
		attend_heads_avx512(ATTEND_PASS(dk));
	else
		attend_heads_portable(ATTEND_PASS(dk));
}

/*
 * Attention of B single queries (one per live sequence), all H heads:
 *   ctx[b, h] = softmax(q[b, h] . K_b^T + bias_h) V_b
 * K_b / V_b: keys of sequence b, `key_len[b]` rows of stride I from keys[b]
 * (in the chunk's cache precision).
 * bias: NULL, or [H, width] where key j uses bias[h * width + bias_at + j].
 * new_k, new_v: NULL, or [B, I] this step's keys / values (self-attention),
 * first stored at the cache's last position, key_len[b] - 1: in the same
 * parallel region, each item its own heads' part, because the cache lines
 * written are mostly not in cache and one thread alone waited on them (about
 * 20 us per layer at batch 32).
 * The threads share rows; with fewer rows than a few per thread, (row, head)
 * pairs.
 */
static void
single_query_attention(const Chunk *ch, int B, int H, int dk, const float *q,
					   const float *new_k, const float *new_v,
					   void *const *keys, void *const *vals, const int *key_len,
					   const float *bias, int width, int bias_at, float *ctx)
{
	int			I = H * dk;
	int			per = B >= 2 * omp_get_max_threads() ? H : 1;	/* heads per item */
	int			groups = H / per;

#pragma omp parallel for schedule(static) if (B * groups > 1)
	for (int item = 0; item < B * groups; item++)
	{
		int			b = item / groups,
					h0 = (item % groups) * per;

		if (new_k)
		{
			size_t		at = ((size_t) (key_len[b] - 1) * I + (size_t) h0 * dk) * ch->esz;

			cache_store(ch, new_k + (size_t) b * I + h0 * dk, (size_t) per * dk, (char *) keys[b] + at);
			cache_store(ch, new_v + (size_t) b * I + h0 * dk, (size_t) per * dk, (char *) vals[b] + at);
		}
		attend_heads(q + (size_t) b * I, keys[b], vals[b], ch->bf16, key_len[b], I, dk, h0, h0 + per,
					 bias, width, bias_at, ch->scores + ((size_t) b * H + h0) * ch->smax, ch->smax,
					 ctx + (size_t) b * I);
	}
}

/*
 * The embedding and every decoder layer of one step, for the B live
 * sequences listed in ch->act_*: appends their keys / values to the caches
 * of buffer buf and leaves the last layer's output in ch->y [B, d].  prof
 * (NULL: none) gathers the parts' times, lapped from *mark.
 */
static void
decoder_layers(const PtModel *m, Chunk *ch, int B, int t, int buf, void **keys, void **vals,
			   int *key_len, double *prof, double *mark)
{
	const PtConfig *c = &m->cfg;
	int			d = c->d_model,
				I = pt_config_inner(c),
				H = c->num_heads,
				dk = c->d_kv;
	float		eps = c->layer_norm_eps;
	PtMath		math = m->math;

	pt_model_embed_rows(m, ch->act_tok, B, ch->y);
	for (int l = 0; l < c->num_decoder_layers; l++)
	{
		const PtDecoderLayer *w = &m->dec[l];
		const PtLinear *qkv[3] = {&w->self.q, &w->self.k, &w->self.v};
		float	   *qkv_out[3] = {ch->q, ch->k, ch->v};
		const PtLinear *wi[2] = {&w->ff.wi0, &w->ff.wi1};
		float	   *h[2] = {ch->h0, ch->h1};

		/* self-attention: this step's key / value join the cache at position t */
		pt_rmsnorm_forward(ch->y, w->ln_self, B, d, eps, ch->ln, NULL);
		prof_lap(prof, mark, PT_GEN_PROF_REST);
		pt_linear_forward_multi(qkv, 3, ch->ln, B, qkv_out, math);
		prof_lap(prof, mark, PT_GEN_PROF_PRODUCTS);
		for (int b = 0; b < B; b++)
		{
			keys[b] = cache_at(ch, ch->kc[buf], I, l, ch->act_slot[b]);
			vals[b] = cache_at(ch, ch->vc[buf], I, l, ch->act_slot[b]);
			key_len[b] = t + 1;
		}
		/* key j of query t: relative position j - t, at table column j - t + cap - 1 */
		single_query_attention(ch, B, H, dk, ch->q, ch->k, ch->v, keys, vals, key_len, ch->bias,
							   2 * ch->cap - 1, ch->cap - 1 - t, ch->ctx);
		prof_lap(prof, mark, PT_GEN_PROF_SELF_ATTN);
		pt_residual_projection(&w->self.o, ch->ctx, B, ch->y, ch->y, ch->sub, math);
		prof_lap(prof, mark, PT_GEN_PROF_PRODUCTS);

		/* cross-attention over the row's encoder output */
		pt_rmsnorm_forward(ch->y, w->ln_cross, B, d, eps, ch->ln, NULL);
		prof_lap(prof, mark, PT_GEN_PROF_REST);
		pt_linear_forward(&w->cross.q, ch->ln, B, ch->q, math);
		prof_lap(prof, mark, PT_GEN_PROF_PRODUCTS);
		for (int b = 0; b < B; b++)
		{
			int			r = ch->act_row[b];

			keys[b] = (char *) ch->kx[l] + (size_t) ch->enc_off[r] * I * ch->esz;
			vals[b] = (char *) ch->vx[l] + (size_t) ch->enc_off[r] * I * ch->esz;
			key_len[b] = ch->enc_len[r];
		}
		single_query_attention(ch, B, H, dk, ch->q, NULL, NULL, keys, vals, key_len, NULL, 0, 0,
							   ch->ctx);
		prof_lap(prof, mark, PT_GEN_PROF_CROSS_ATTN);
		pt_residual_projection(&w->cross.o, ch->ctx, B, ch->y, ch->y, ch->sub, math);
		prof_lap(prof, mark, PT_GEN_PROF_PRODUCTS);

		/* feed-forward (pt_ff_forward's steps, timed apart) */
		pt_rmsnorm_forward(ch->y, w->ln_ff, B, d, eps, ch->ln, NULL);
		prof_lap(prof, mark, PT_GEN_PROF_REST);
		pt_linear_forward_multi(wi, c->gated ? 2 : 1, ch->ln, B, h, math);
		prof_lap(prof, mark, PT_GEN_PROF_PRODUCTS);
		pt_ff_activation_forward_serial(c->activation, c->gated, ch->h0, ch->h1,
										(size_t) B * c->d_ff, ch->act);
		prof_lap(prof, mark, PT_GEN_PROF_REST);
		pt_residual_projection(&w->ff.wo, ch->act, B, ch->y, ch->y, ch->sub, math);
		prof_lap(prof, mark, PT_GEN_PROF_PRODUCTS);
	}
}

/*
 * ch's step buffers from row b0 on, as a chunk of their own for
 * decoder_layers (every row buffer of a step moved by b0 rows; selection's
 * next_* and beam buffers are not used there); the caches, the position
 * bias and the encoder rows stay shared (rows only read them, or write
 * their own slots).
 */
static Chunk
chunk_from_row(const Chunk *ch, const PtConfig *c, int b0)
{
	Chunk		sub = *ch;
	size_t		d = c->d_model,
				I = pt_config_inner(c),
				F = c->d_ff;

	sub.act_slot += b0;
	sub.act_row += b0;
	sub.act_tok += b0;
	sub.y += b0 * d;
	sub.ln += b0 * d;
	sub.sub += b0 * d;
	sub.q += b0 * I;
	sub.k += b0 * I;
	sub.v += b0 * I;
	sub.ctx += b0 * I;
	sub.h0 += b0 * F;
	sub.h1 += b0 * F;
	sub.act += b0 * F;
	sub.logits += b0 * (size_t) c->vocab_size;
	sub.lse += b0;
	sub.best += b0;
	sub.scores += (size_t) b0 * c->num_heads * ch->smax;
	return sub;
}

/*
 * How many threads a decoder step of B rows splits its layers between: one
 * (not split) unless every thread gets DECODE_SPLIT_ROWS rows.  Split, each
 * thread takes rows [B i / n, B (i + 1) / n) through every layer alone, its
 * products single-threaded (linear_dnnl.c keys primitives by thread count
 * and gives each thread its own scratchpad): on few cores, oneDNN's split
 * of one small product between threads costs a wake-up and a join per
 * product, about 50 per step, and measured 5.6-5.9 ms of a batch-32 bf16
 * step's layer products against 3.7-3.9 ms for two threads of 16 rows each.
 */
static int
split_threads(int B)
{
	int			threads = omp_get_max_threads(),
				n = B / DECODE_SPLIT_ROWS;

	return n < 2 ? 1 : n < threads ? n : threads;
}

/*
 * Inside a split region: this thread's rows of B, [*b0, *b0 + the count
 * returned), and from here on its products and loops run on it alone.
 */
static int
split_share(int B, int *b0)
{
	int			i = omp_get_thread_num(),
				n = omp_get_num_threads();

	*b0 = (int) ((long) B * i / n);
	omp_set_num_threads(1);
	return (int) ((long) B * (i + 1) / n) - *b0;
}

/*
 * One decoder step at position t for the B live sequences listed in
 * ch->act_*: appends their keys / values to the caches of buffer buf and
 * leaves logits [B, V] and their log-sum-exp.
 *
 * With enough rows the layers run split by rows: each thread takes its own
 * share of the sequences through every layer alone (its products
 * single-threaded, see split_threads), and the threads meet again for the
 * LM head.  A row's results are the same either way, up to the products'
 * rounding (test_generate_split_matches_one_thread).
 */
static void
decoder_step(const PtModel *m, Chunk *ch, int B, int t, int buf, void **keys, void **vals,
			 int *key_len, double *prof)
{
	const PtConfig *c = &m->cfg;
	int			d = c->d_model,
				V = c->vocab_size,
				threads = split_threads(B);
	double		mark = 0;

	prof_lap(prof, &mark, -1);
	if (threads > 1)
	{
#pragma omp parallel num_threads(threads)
		{
			int			b0,
						rows = split_share(B, &b0);
			Chunk		mine = chunk_from_row(ch, c, b0);

			decoder_layers(m, &mine, rows, t, buf, keys + b0, vals + b0, key_len + b0,
						   omp_get_thread_num() == 0 ? prof : NULL, &mark);
		}
		prof_lap(prof, &mark, PT_GEN_PROF_REST);	/* the first thread waiting for the others */
	}
	else
		decoder_layers(m, ch, B, t, buf, keys, vals, key_len, prof, &mark);

	/* the LM head on all threads again: one product of B rows (split measured slower) */
	pt_rmsnorm_forward(ch->y, m->dec_final_ln, B, d, c->layer_norm_eps, ch->ln, NULL);
	if (m->lm_scale != 1.0f)
		pt_scale(ch->ln, m->lm_scale, (size_t) B * d);
	pt_linear_forward(&m->lm_head, ch->ln, B, ch->logits, m->math);
	prof_lap(prof, &mark, PT_GEN_PROF_LM_HEAD);

#pragma omp parallel for schedule(static) if (B > 1)
	for (int b = 0; b < B; b++)
		ch->lse[b] = pt_log_sum_exp_argmax(ch->logits + (size_t) b * V, V, &ch->best[b]);
	prof_lap(prof, &mark, PT_GEN_PROF_ARGMAX);
}

/*
 * Layer products of decoder_layers alone for B rows: x [B, d] is every
 * product's input (y[0] that of self O, cross O and wo), y[0..3] their
 * outputs; returns their FLOPs.
 */
static double
layer_products(const PtModel *m, int B, const float *x, float *const *y)
{
	const PtConfig *c = &m->cfg;
	int			n_wi = c->gated ? 2 : 1;
	double		flops = 0;

	for (int l = 0; l < c->num_decoder_layers; l++)
	{
		const PtDecoderLayer *w = &m->dec[l];
		const PtLinear *qkv[3] = {&w->self.q, &w->self.k, &w->self.v};
		const PtLinear *wi[2] = {&w->ff.wi0, &w->ff.wi1};

		pt_linear_forward_multi(qkv, 3, x, B, y, m->math);
		pt_linear_forward_add(&w->self.o, y[0], B, y[3], m->math);
		pt_linear_forward(&w->cross.q, x, B, y[0], m->math);
		pt_linear_forward_add(&w->cross.o, y[0], B, y[3], m->math);
		pt_linear_forward_multi(wi, n_wi, x, B, y, m->math);
		pt_linear_forward_add(&w->ff.wo, y[0], B, y[3], m->math);
		flops += 2.0 * B * ((4.0 + 2.0) * c->d_model * pt_config_inner(c)
							+ (n_wi + 1.0) * c->d_model * c->d_ff);
	}
	return flops;
}

double
pt_generate_step_products(const PtModel *m, int B, const float *x, float *const *y, float *logits,
						  bool split)
{
	const PtConfig *c = &m->cfg;
	size_t		width = pt_generate_step_width(c);
	int			threads = split ? split_threads(B) : 1;
	double		flops = 0;

	if (threads > 1)
	{
#pragma omp parallel num_threads(threads) reduction(+:flops)
		{
			int			b0,
						rows = split_share(B, &b0);
			float	   *mine[4];

			for (int k = 0; k < 4; k++)
				mine[k] = y[k] + b0 * width;
			flops += layer_products(m, rows, x + (size_t) b0 * c->d_model, mine);
		}
	}
	else
		flops = layer_products(m, B, x, y);
	pt_linear_forward(&m->lm_head, x, B, logits, m->math);
	return flops + 2.0 * B * c->d_model * (double) c->vocab_size;
}

size_t
pt_generate_step_width(const PtConfig *c)
{
	size_t		I = pt_config_inner(c),
				w = c->d_model > c->d_ff ? c->d_model : c->d_ff;

	return w > I ? w : I;
}

/* Writes a finished sequence (tokens[0..len), EOS last when eos) to a result. */
static void
emit(PtGenerateResult *res, const int32_t *tokens, const double *lps, int len, bool eos,
	 double score)
{
	int			n = eos ? len - 1 : len;

	memcpy(res->ids, tokens, sizeof(int32_t) * n);
	res->n_ids = n;
	res->eos = eos;
	res->score = score;
	if (res->token_logprobs)
		memcpy(res->token_logprobs, lps, sizeof(double) * len);
}

/* Greedy: each live row takes its argmax; returns the next step's batch size. */
static int
greedy_select(const PtModel *m, Chunk *ch, int B, int t, const PtGenerateOptions *o,
			  PtGenerateResult *results)
{
	int			V = m->cfg.vocab_size,
				eos_id = m->cfg.eos_token_id,
				next = 0;

	for (int b = 0; b < B; b++)
	{
		const float *x = ch->logits + (size_t) b * V;
		int			s = ch->act_slot[b],
					best = ch->best[b];
		int32_t    *seq = ch->seq[0] + (size_t) s * ch->cap;
		double	   *lps = ch->seq_lp[0] + (size_t) s * ch->cap;
		bool		eos;

		seq[t] = best;
		lps[t] = (double) x[best] - ch->lse[b];
		ch->live_lp[s] += lps[t];
		eos = best == eos_id && !o->ignore_eos;
		if (eos || t + 1 == ch->cap)
			emit(&results[ch->act_row[b]], seq, lps, t + 1, eos, ch->live_lp[s]);
		else
		{
			ch->next_slot[next] = s;
			ch->next_row[next] = ch->act_row[b];
			ch->next_tok[next] = best;
			next++;
		}
	}
	return next;
}

/* a before b in beam order: higher log-probability, then lower (beam, token) */
static bool
cand_before(const Cand *a, const Cand *b)
{
	if (a->lp != b->lp)
		return a->lp > b->lp;
	return a->beam != b->beam ? a->beam < b->beam : a->token < b->token;
}

/*
 * Beam search step for row r, whose n_live live sequences are the batch
 * entries [first, first + n_live) of buffer `buf`: the row's 2K best
 * extensions, its finished set, and (unless the row is done) its K new live
 * beams in buffer 1 - buf (caches gathered from their parents).  Returns the
 * number of new batch entries written at ch->next_*[next].
 */
static int
beam_select(const PtModel *m, Chunk *ch, int r, int first, int n_live, int t, int buf,
			const PtGenerateOptions *o, PtGenerateResult *res, int next)
{
	const PtConfig *c = &m->cfg;
	int			V = c->vocab_size,
				I = pt_config_inner(c),
				K = ch->K,
				want = 2 * K,
				n_c = 0,
				n_new = 0,
				cap = ch->cap;
	Cand	   *cand = ch->cands + (size_t) r * 2 * K;
	int			new_parent[PT_GENERATE_MAX_BEAMS];
	int32_t		new_tok[PT_GENERATE_MAX_BEAMS];
	double		new_lp[PT_GENERATE_MAX_BEAMS];
	bool		done;

	/* the 2K best extensions over all live beams, kept sorted */
	for (int j = 0; j < n_live; j++)
	{
		int			b = first + j;
		const float *x = ch->logits + (size_t) b * V;
		double		base = ch->live_lp[ch->act_slot[b]] - ch->lse[b];

		for (int v = 0; v < V; v++)
		{
			Cand		cv = {base + x[v], j, v};
			int			pos;

			if (n_c == want && !cand_before(&cv, &cand[n_c - 1]))
				continue;
			pos = n_c < want ? n_c++ : n_c - 1;
			while (pos > 0 && cand_before(&cv, &cand[pos - 1]))
			{
				cand[pos] = cand[pos - 1];
				pos--;
			}
			cand[pos] = cv;
		}
	}

	/* split: extensions by EOS join the finished set, the K best others live on */
	for (int i = 0; i < n_c; i++)
	{
		const Cand *cv = &cand[i];
		int			parent_slot = ch->act_slot[first + cv->beam];

		if (cv->token == c->eos_token_id)
		{
			double		score = cv->lp / brevity_penalty(o->length_penalty, t + 1);
			int			nf = ch->n_fin[r],
						pos;
			int32_t    *dst_seq;
			double	   *dst_lp;

			/* the finished set keeps its K best, earlier entries first on ties */
			if (nf == K && !(score > ch->fin_score[r * K + K - 1]))
				continue;
			pos = nf < K ? nf++ : K - 1;
			while (pos > 0 && score > ch->fin_score[r * K + pos - 1])
			{
				int			from = r * K + pos - 1;

				ch->fin_score[from + 1] = ch->fin_score[from];
				ch->fin_len[from + 1] = ch->fin_len[from];
				memcpy(ch->fin_seq + (size_t) (from + 1) * cap, ch->fin_seq + (size_t) from * cap,
					   sizeof(int32_t) * cap);
				memcpy(ch->fin_lp + (size_t) (from + 1) * cap, ch->fin_lp + (size_t) from * cap,
					   sizeof(double) * cap);
				pos--;
			}
			ch->n_fin[r] = nf;
			ch->fin_score[r * K + pos] = score;
			ch->fin_len[r * K + pos] = t + 1;
			dst_seq = ch->fin_seq + (size_t) (r * K + pos) * cap;
			dst_lp = ch->fin_lp + (size_t) (r * K + pos) * cap;
			memcpy(dst_seq, ch->seq[buf] + (size_t) parent_slot * cap, sizeof(int32_t) * t);
			memcpy(dst_lp, ch->seq_lp[buf] + (size_t) parent_slot * cap, sizeof(double) * t);
			dst_seq[t] = cv->token;
			dst_lp[t] = cv->lp - ch->live_lp[parent_slot];
		}
		else if (n_new < K)
		{
			new_parent[n_new] = parent_slot;
			new_tok[n_new] = cv->token;
			new_lp[n_new] = cv->lp;
			n_new++;
		}
	}

	/*
	 * Done at max_new_tokens, or once no live beam can beat the K finished
	 * ones: a live sequence's log-probability only falls, and its penalty
	 * divides by at most brevity_penalty(max_new_tokens + 1) (T5X's bound).
	 */
	done = t + 1 == cap || n_new == 0;
	if (!done && ch->n_fin[r] == K)
		done = ch->fin_score[r * K + K - 1] >
			new_lp[0] / brevity_penalty(o->length_penalty, cap + 1);
	if (done)
	{
		if (ch->n_fin[r] > 0)
		{
			size_t		at = (size_t) r * K * cap;

			emit(res, ch->fin_seq + at, ch->fin_lp + at, ch->fin_len[r * K], true,
				 ch->fin_score[r * K]);
		}
		else
		{
			/* nothing finished: the best live sequence, raw log-probability (as T5X) */
			int32_t    *tmp_seq = ch->fin_seq + (size_t) r * K * cap;
			double	   *tmp_lp = ch->fin_lp + (size_t) r * K * cap;

			memcpy(tmp_seq, ch->seq[buf] + (size_t) new_parent[0] * cap, sizeof(int32_t) * t);
			memcpy(tmp_lp, ch->seq_lp[buf] + (size_t) new_parent[0] * cap, sizeof(double) * t);
			tmp_seq[t] = new_tok[0];
			tmp_lp[t] = new_lp[0] - ch->live_lp[new_parent[0]];
			emit(res, tmp_seq, tmp_lp, t + 1, false, new_lp[0]);
		}
		return 0;
	}

	/* the new live beams: slots r*K + j of the other buffer, gathered from their parents */
	for (int j = 0; j < n_new; j++)
	{
		int			s = r * K + j,
					p = new_parent[j];

		for (int l = 0; l < c->num_decoder_layers; l++)
		{
			memcpy(cache_at(ch, ch->kc[1 - buf], I, l, s), cache_at(ch, ch->kc[buf], I, l, p),
				   ch->esz * (t + 1) * I);
			memcpy(cache_at(ch, ch->vc[1 - buf], I, l, s), cache_at(ch, ch->vc[buf], I, l, p),
				   ch->esz * (t + 1) * I);
		}
		memcpy(ch->seq[1 - buf] + (size_t) s * cap, ch->seq[buf] + (size_t) p * cap,
			   sizeof(int32_t) * t);
		memcpy(ch->seq_lp[1 - buf] + (size_t) s * cap, ch->seq_lp[buf] + (size_t) p * cap,
			   sizeof(double) * t);
		ch->seq[1 - buf][(size_t) s * cap + t] = new_tok[j];
		ch->seq_lp[1 - buf][(size_t) s * cap + t] = new_lp[j] - ch->live_lp[p];
		ch->next_slot[next + j] = s;
		ch->next_row[next + j] = r;
		ch->next_tok[next + j] = new_tok[j];
	}
	/* (only this row reads its slots: the parents' values are no longer needed) */
	for (int j = 0; j < n_new; j++)
		ch->live_lp[r * K + j] = new_lp[j];
	return n_new;
}

/* Generates rows[0..R) (one chunk). */
static int
generate_chunk(const PtModel *m, PtWorkspace *ws, const PtGenerateRow *rows, int R,
			   const PtGenerateOptions *o, PtGenerateResult *results)
{
	const PtConfig *c = &m->cfg;
	int			K = o->num_beams;
	Chunk		ch = {0};
	PtArena		counter = {0};
	PtPass		pass;
	void	  **keys,
			  **vals;
	int		   *key_len;
	int			B,
				buf = 0;
	double		mark = 0;

	ch.R = R;
	ch.K = K;
	ch.S = R * K;
	ch.cap = o->max_new_tokens;
	ch.n_buf = K > 1 ? 2 : 1;
	ch.bf16 = cache_is_bf16(m, o);
	ch.esz = ch.bf16 ? sizeof(uint16_t) : sizeof(float);
	ch.smax = ch.cap;
	for (int i = 0; i < R; i++)
	{
		int			te = rows[i].prompt_len + rows[i].n_ids;

		ch.N_enc += te;
		if (te > ch.smax)
			ch.smax = te;
	}
	carve_chunk(&counter, &ch, m);
	counter.used += 3 * sizeof(void *) * ch.S + PT_ARENA_ALIGN * 3;
	if (pt_arena_reserve(&ws->head, counter.used) != 0)
		return -1;
	carve_chunk(&ws->head, &ch, m);
	keys = pt_arena_bytes(&ws->head, sizeof(void *) * ch.S);
	vals = pt_arena_bytes(&ws->head, sizeof(void *) * ch.S);
	key_len = pt_arena_bytes(&ws->head, sizeof(int) * ch.S);

	/* encoder, then every layer's cross-attention keys and values */
	for (int i = 0; i < R; i++)
		ch.enc[i] = (PtEncoderSeq) {rows[i].prompt, rows[i].prompt_len, rows[i].ids, rows[i].n_ids};
	if (pt_pass_begin(&pass, m, &ws->pass, ch.enc, R, NULL, 0, false) != 0)
		return -1;
	/*
	 * A chunk's encoder pass takes up to a second or so: the cancel hook runs
	 * before each of its layers, and before each layer's keys and values,
	 * as it does before each decoding step.
	 */
	pass.yield = (PtYield) {o->cancel, o->cancel_arg};
	if (pt_encoder_forward(&pass) != 0)
		return pt_fail(PT_ERR_CANCELLED, "generation was cancelled");
	for (int i = 0; i < R; i++)
	{
		ch.enc_off[i] = pass.enc_off[i];
		ch.enc_len[i] = pass.enc_len[i];
	}
	for (int l = 0; l < c->num_decoder_layers; l++)
	{
		const PtLinear *kv[2] = {&m->dec[l].cross.k, &m->dec[l].cross.v};
		size_t		n = (size_t) ch.N_enc * pt_config_inner(c);
		float	   *kv_out[2] = {ch.kv_tmp, ch.kv_tmp + n};

		if (pt_yield(&pass.yield) != 0)
			return pt_fail(PT_ERR_CANCELLED, "generation was cancelled");
		if (!ch.bf16)
		{
			kv_out[0] = ch.kx[l];
			kv_out[1] = ch.vx[l];
		}
		pt_linear_forward_multi(kv, 2, pass.enc_out, ch.N_enc, kv_out, m->math);
		if (ch.bf16)
		{
			int			pieces = 64;
			size_t		per = (n + pieces - 1) / pieces;

#pragma omp parallel for schedule(static)
			for (int i = 0; i < 2 * pieces; i++)
			{
				size_t		at = (i % pieces) * per,
							len = at < n ? (n - at < per ? n - at : per) : 0;
				void	   *dst = i < pieces ? ch.kx[l] : ch.vx[l];

				if (len > 0)
					round_to_bf16(kv_out[i / pieces] + at, len, (uint16_t *) dst + at);
			}
		}
	}
	pt_position_bias_table(m->dec_rel_bias, c->num_heads, c->rel_buckets, c->rel_max_distance,
						   false, ch.cap, ch.bias);

	/* step 0: one sequence per row (beam search's other beams start at -inf) */
	for (int i = 0; i < R; i++)
	{
		ch.act_slot[i] = i * K;
		ch.act_row[i] = i;
		ch.act_tok[i] = c->decoder_start_token_id;
		ch.live_lp[i * K] = 0.0;
		if (K > 1)
			ch.n_fin[i] = 0;
	}
	B = R;
	for (int t = 0; B > 0; t++)
	{
		int			next = 0;

		if (o->cancel && o->cancel(o->cancel_arg) != 0)
			return pt_fail(PT_ERR_CANCELLED, "generation was cancelled");
		decoder_step(m, &ch, B, t, buf, keys, vals, key_len, o->profile);
		prof_lap(o->profile, &mark, -1);
		if (K == 1)
			next = greedy_select(m, &ch, B, t, o, results);
		else
		{
			for (int b = 0; b < B;)
			{
				int			r = ch.act_row[b],
							n_live = 0;

				while (b + n_live < B && ch.act_row[b + n_live] == r)
					n_live++;
				next += beam_select(m, &ch, r, b, n_live, t, buf, o, &results[r], next);
				b += n_live;
			}
			buf = 1 - buf;
		}
		prof_lap(o->profile, &mark, PT_GEN_PROF_SELECT);
		memcpy(ch.act_slot, ch.next_slot, sizeof(int) * next);
		memcpy(ch.act_row, ch.next_row, sizeof(int) * next);
		memcpy(ch.act_tok, ch.next_tok, sizeof(int32_t) * next);
		B = next;
	}
	return 0;
}

int
pt_generate(const PtModel *m, PtWorkspace *ws, const PtGenerateRow *rows, int n,
			const PtGenerateOptions *opts, PtGenerateResult *results)
{
	int			start = 0;

	if (pt_generate_options_check(opts) != 0 || check_rows(m, rows, n, results) != 0)
		return -1;
	while (start < n)
	{
		size_t		bytes = 0;
		long		tokens = 0;
		int			end = start;

		if (opts->cancel && opts->cancel(opts->cancel_arg) != 0)
			return pt_fail(PT_ERR_CANCELLED, "generation was cancelled");
		while (end < n)
		{
			size_t		rb = row_bytes(m, &rows[end], opts);
			long		rt = (long) rows[end].prompt_len + rows[end].n_ids;

			if (end > start && (bytes + rb > GEN_CHUNK_BYTES || tokens + rt > GEN_CHUNK_ENC_TOKENS))
				break;
			bytes += rb;
			tokens += rt;
			end++;
		}
		if (generate_chunk(m, ws, rows + start, end - start, opts, results + start) != 0)
			return -1;
		start = end;
	}
	return 0;
}

char *
pt_generate_text(const PtModel *m, const int32_t *ids, int n)
{
	if (n < 0 || (n > 0 && ids == NULL))
		return pt_fail(PT_ERR_ARGUMENT, "bad ids to decode"), NULL;
	return pt_tokenizer_decode(m->tokenizer, ids, n);
}
