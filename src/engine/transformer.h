/*
 * transformer.h - one forward (and optionally backward) pass of a T5 model over a
 * batch, with soft prompts.
 *
 * The batch is a list of encoder sequences (soft prompt rows followed by
 * token ids) and a list of decoder sequences (teacher-forced input ids), each
 * attending to one encoder sequence.  Sequences are packed back to back: the
 * `rows` of a pass are all tokens of all sequences, which is exactly what an
 * attention mask over a padded batch computes, without the padding's work.
 *
 * Usage:
 *   PtPass p;
 *   pt_pass_begin(&p, model, arena, enc, n_enc, dec, n_dec, keep_for_backward);
 *   pt_encoder_forward(&p);
 *   pt_decoder_forward(&p);          -> p.dec_out [dec_rows, d]
 *   ... a head turns dec_out into logits / loss and d(dec_out) ...
 *   pt_decoder_backward(&p, d_dec_out); -> p.d_enc_out
 *   pt_encoder_backward(&p);            -> p.d_x0 [enc_rows, d]
 *   pt_pass_prompt_grad(&p, s, out)     -> rows of d_x0 at sequence s's prompt
 *
 * A training pass may set p.yield after pt_pass_begin(): the four stages then
 * call it before each layer (see yield.h) and return -1 when it asks to stop.
 */
#ifndef PT_TRANSFORMER_H
#define PT_TRANSFORMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "attention.h"
#include "model.h"
#include "yield.h"

/* Limits that keep every size computation far from overflow. */
#define PT_MAX_SEQ_LEN   8192
#define PT_MAX_ROWS      (1 << 20)

typedef struct PtEncoderSeq
{
	const float *prompt;		/* [prompt_len, d_model], or NULL when prompt_len == 0 */
	int			prompt_len;
	const int32_t *ids;			/* token ids (the caller appends EOS) */
	int			n_ids;
} PtEncoderSeq;

typedef struct PtDecoderSeq
{
	int			enc;			/* index of the encoder sequence it attends to */
	const int32_t *ids;			/* decoder inputs: decoder_start, y_1, ..., y_{n-1} */
	int			n_ids;

	/*
	 * NULL: a chain, as above.  Otherwise a tree of n_ids nodes (inference
	 * only): parent[0] = -1 and 0 <= parent[i] < i; node i sees its
	 * ancestors and itself, at relative positions depth(ancestor) - depth(i).
	 * Each root-to-node path computes exactly what the chain of its ids
	 * would, so prefixes shared by several sequences run once.
	 */
	const int  *parent;
} PtDecoderSeq;

/* What one encoder layer keeps for its backward pass (shapes for N rows). */
typedef struct PtEncLayerActs
{
	float	   *x;				/* [N, d] layer input: the residual stream */
	float	   *rstd_attn;		/* [N] */
	float	   *q,
			   *k,
			   *v;				/* [N, I] */
	float	   *probs;			/* per sequence [H, T, T] */
	float	   *x_mid;			/* [N, d] x + attention */
	float	   *rstd_ff;		/* [N] */
	float	   *h0,
			   *h1;				/* [N, F] feed-forward pre-activations (h1: gated) */
} PtEncLayerActs;

/* Same for a decoder layer (Nd decoder rows, N encoder rows). */
typedef struct PtDecLayerActs
{
	float	   *y;				/* [Nd, d] layer input */
	float	   *rstd_self;
	float	   *q,
			   *k,
			   *v;				/* [Nd, I] self-attention */
	float	   *probs_self;		/* per sequence [H, Td, Td] */
	float	   *y_mid1;			/* [Nd, d] after self-attention */
	float	   *rstd_cross;
	float	   *q_cross;		/* [Nd, I] */
	float	   *k_cross,
			   *v_cross;		/* [N, I] projections of the encoder output (NULL when absorbed) */
	float	   *qk_cross;		/* absorbed only: [Nd * H, d], see cross_attention.h */
	float	   *probs_cross;	/* per sequence [H, Td, Te] ([Td * H, Te] when absorbed) */
	float	   *y_mid2;			/* [Nd, d] after cross-attention */
	float	   *rstd_ff;
	float	   *h0,
			   *h1;				/* [Nd, F] */
} PtDecLayerActs;

typedef struct PtPass
{
	const PtModel *model;
	bool		keep;			/* every layer keeps its activations (for backward) */
	PtYield		yield;			/* called before each layer; {NULL} for none */
	PtMath		math;			/* the model's precision; training in int8 models computes in fp32 */

	int			n_enc;
	const PtEncoderSeq *enc_seqs;
	int			n_dec;
	const PtDecoderSeq *dec_seqs;

	/* packing: sequence s occupies rows [off[s], off[s] + len[s]) */
	int		   *enc_off,
			   *enc_len;
	int			enc_rows,
				enc_max;
	int		   *dec_off,
			   *dec_len;
	int			dec_rows,
				dec_max;		/* longest chain or tree path */
	/* set when some decoder sequence is a tree: self-attention follows ancestors */
	bool		dec_tree;
	int		   *dec_parent;		/* [dec_rows] row of each row's parent, -1 at a root */
	int		   *dec_depth;		/* [dec_rows] position of each row in its path */
	PtAttnLayout enc_self,
				dec_self,
				dec_cross;
	/* cross-attention with keys and values absorbed into the queries (cross_attention.h) */
	bool		cross_absorbed;

	PtEncLayerActs *enc;		/* [num_layers] (all alias one set unless keep) */
	PtDecLayerActs *dec;		/* [num_decoder_layers] */
	float	   *enc_final_in,
			   *enc_rstd_final,
			   *enc_out;		/* [N, d] the encoder's output */
	float	   *dec_final_in,
			   *dec_rstd_final,
			   *dec_out;		/* [Nd, d] final decoder states, times lm_scale */

	/* scratch shared by all layers */
	float	   *ln,
			   *ctx,
			   *act,
			   *sub;			/* [rows, d] [rows, I] [rows, F] [rows, d] */
	/* backward scratch (keep only) */
	float	   *g,
			   *g_ln,
			   *g_ctx,
			   *g_q,
			   *g_k,
			   *g_v,
			   *g_act,
			   *g_h0,
			   *g_h1;
	float	   *g_k_cross,
			   *g_v_cross;		/* [N, I] (NULL when absorbed) */
	float	   *cross_stack,
			   *cross_pe;		/* absorbed only: [Nd * H, I] and [Nd * H, d] scratch */
	float	   *d_enc_out;		/* [N, d] */
	float	   *d_x0;			/* [N, d] gradient of the encoder's input rows */
} PtPass;

/* Validates the batch and lays out all activations in arena (which may grow). */
int			pt_pass_begin(PtPass *p, const PtModel *model, PtArena *arena,
						  const PtEncoderSeq *enc, int n_enc,
						  const PtDecoderSeq *dec, int n_dec, bool keep);

/*
 * The four stages return 0, or -1 when p->yield asked to stop (error
 * PT_ERR_CANCELLED; the pass's results are then undefined).  Without a
 * yield hook they cannot fail.
 */
int			pt_encoder_forward(PtPass *p);
int			pt_decoder_forward(PtPass *p);

/* d_dec_out: [Nd, d] gradient of the loss w.r.t. p->dec_out. Fills p->d_enc_out. */
int			pt_decoder_backward(PtPass *p, const float *d_dec_out);
/* Fills p->d_x0 from p->d_enc_out. */
int			pt_encoder_backward(PtPass *p);

/* out[prompt_len, d] (+)= gradient of encoder sequence s's prompt rows */
void		pt_pass_prompt_grad(const PtPass *p, int s, float *out, bool accumulate);

/*
 * Sublayers shared by the encoder and the decoder (blocks.c).
 * out = in + h . W^T, by one accumulating product onto out (in copied to out
 * first when they differ, as in training; scratch is unused).
 */
void		pt_residual_projection(const PtLinear *w, const float *h, int n, const float *in,
								   float *out, float *scratch, PtMath math);
/* out = in + FF(xn), saving h0 and h1 for the backward pass */
void		pt_ff_forward(const PtConfig *cfg, const PtFeedForwardWeights *w, const float *xn,
						  int n, float *h0, float *h1, float *act, const float *in, float *out,
						  float *scratch, PtMath math);
/*
 * pt_ff_forward's second half, from h0 = wi_0(xn) and h1 = wi_1(xn); in NULL:
 * no residual, out = FF's output alone (the encoder adds it later, encoder.c)
 */
void		pt_ff_output(const PtConfig *cfg, const PtFeedForwardWeights *w, int n, const float *h0,
						 const float *h1, float *act, const float *in, float *out, float *scratch,
						 PtMath math);
void		pt_ff_backward(const PtConfig *cfg, const PtFeedForwardWeights *w,
						   const float *h0, const float *h1, const float *dout, int n,
						   float *g_act, float *g_h0, float *g_h1, float *g_xn);

#endif
