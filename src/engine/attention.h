/*
 * attention.h - T5 multi-head attention over packed sequences, forward and
 * backward, and T5's relative position bias.
 *
 * Sequences of a batch are packed one after another (no padding), so a
 * query sequence s occupies rows [q_off[s], q_off[s] + q_len[s]) of Q and the
 * rows of its key/value sequence g = kv_seq[s] in K and V.  Q, K and V are
 * [rows, I] with I = H * dk; head h uses columns [h*dk, (h+1)*dk).
 *
 * T5 specifics: scores are Q K^T *without* 1/sqrt(dk) scaling; self-attention
 * adds a learned bias indexed by the bucketed relative position (key - query)
 * from layer 0's table, shared by every layer; cross-attention has no bias.
 */
#ifndef PT_ATTENTION_H
#define PT_ATTENTION_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

typedef struct PtAttnLayout
{
	const int  *q_off;
	const int  *q_len;
	int			n_kv;			/* key/value sequences */
	const int  *kv_off;
	const int  *kv_len;
	/* query sequences attending to kv sequence g: [kv_q_begin[g], kv_q_end[g]) */
	int		   *kv_q_begin;
	int		   *kv_q_end;
	size_t	   *p_off;			/* per query sequence: offset of its probs [H, Tq, Tk] */
	float	   *bias;			/* NULL, or a table from pt_position_bias_table() */
	int			bias_max_len;	/* the max_len the table was built for */
	bool		causal;			/* query i sees keys j <= i */
	bool		normalize;		/* store normalised probabilities (the backward pass needs them) */
	/*
	 * Without normalize: the per-head products in bfloat16 where the CPU
	 * has them (attention_bf16.h); pass.c sets it for the encoder of bf16
	 * and int8 inference passes.
	 */
	bool		bf16;
	/*
	 * Or NULL: the context rows go here rounded to bf16 ([Nq, H * dk], the O
	 * product's input).  Blocks of the bf16 kernels write only here; blocks
	 * computed in fp32 write ctx first and round it, so ctx must still be
	 * valid.  Values below bf16's normal range (|x| < 1.2e-38) may become 0.
	 */
	uint16_t   *ctx_bf16;
	/*
	 * Backward only: per-thread room for one (sequence, head) block of score
	 * gradients dS [Tq, Tk].  Thread t uses dscores[t * dscores_stride ...];
	 * dscores_stride must be at least the largest Tq * Tk of the layout and
	 * there must be a slice for every thread (pt_attention_backward checks).
	 */
	float	   *dscores;
	size_t		dscores_stride;	/* floats per thread */
	int			dscores_threads;	/* slices */
} PtAttnLayout;

/* T5's bucket for relative_position = key_pos - query_pos (float32 math, as PyTorch). */
int			pt_relative_bucket(int relative_position, bool bidirectional, int num_buckets,
							   int max_distance);

/*
 * table[h, r + max_len - 1] = rel_bias[bucket(r), h] for r in (-max_len, max_len).
 * rel_bias is [buckets, H]; table is [H, 2 * max_len - 1].
 */
void		pt_position_bias_table(const float *rel_bias, int H, int buckets, int max_distance,
								   bool bidirectional, int max_len, float *table);

/* probs[p_off[s] + ...] = softmax(Q K^T + bias); ctx[Nq, I] = probs V */
void		pt_attention_forward(const PtAttnLayout *lay, int H, int dk,
								 const float *q, const float *k, const float *v,
								 float *probs, float *ctx);

/* Given dctx[Nq, I]: dq[Nq, I], dk[Nk, I], dv[Nk, I] (all overwritten). */
void		pt_attention_backward(const PtAttnLayout *lay, int H, int dk,
								  const float *q, const float *k, const float *v,
								  const float *probs, const float *dctx,
								  float *dq, float *dkey, float *dval);

/*
 * The calling thread's slice of lay->dscores for a [tq, tk] block of score
 * gradients; aborts (a sizing bug of the caller) if it does not fit.
 */
float	   *pt_attention_dscores(const PtAttnLayout *lay, int tq, int tk);

/* Softmax's backward, row by row over [rows, cols]: dS = P * (dS - rowsum(P * dS)) */
void		pt_softmax_backward_rows(const float *P, float *dS, int rows, int cols);

/*
 * Self-attention over trees of rows (inference only): row r sees the rows
 * on its path to the root, r = a_n, parent[a_n] = a_{n-1}, ..., a_0 (parent
 * -1), with the causal position bias of depth[a] - depth[r] from a table of
 * pt_position_bias_table(..., false, bias_max_len, bias).  A chain
 * (parent[r] = r - 1) computes what causal pt_attention_forward does.
 * q, k, v, ctx are [n_rows, H * dk]; each path has at most PT_MAX_SEQ_LEN rows.
 */
void		pt_tree_attention_forward(int n_rows, const int *parent, const int *depth,
									  const float *bias, int bias_max_len, int H, int dk,
									  const float *q, const float *k, const float *v, float *ctx);

#endif
