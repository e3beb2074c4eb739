/*
 * decoder.c - the T5 decoder stack with teacher forcing, forward and backward.
 *
 * Each layer:   y_mid1 = y + SelfAttention(RMSNorm(y))          (causal, position bias;
 *                                                       over ancestors in trees)
 *               y_mid2 = y_mid1 + CrossAttention(RMSNorm(y_mid1), enc_out)  (no bias)
 *               y'     = y_mid2 + FF(RMSNorm(y_mid2))
 * then a final RMSNorm, times d_model^-0.5 when the head is tied to the
 * embedding.  Shapes: y [Nd, d]; enc_out [N, d]; cross K, V [N, I].
 *
 * The backward pass only needs d(enc_out), which each layer's cross-attention
 * contributes to through its K and V projections.  With few decoder rows per
 * encoder row the pass absorbs K and V into the query side instead
 * (cross_attention.h): the same function without the [N, I] projections.
 */
#include <string.h>

#include "cross_attention.h"
#include "kernels.h"
#include "transformer.h"

int
pt_decoder_forward(PtPass *p)
{
	const PtModel *m = p->model;
	const PtConfig *c = &m->cfg;
	int			N = p->enc_rows,
				Nd = p->dec_rows,
				d = c->d_model,
				L = c->num_decoder_layers;
	float		eps = c->layer_norm_eps;

	if (p->n_dec == 0)
		return 0;
	for (int s = 0; s < p->n_dec; s++)
		pt_model_embed_rows(m, p->dec_seqs[s].ids, p->dec_seqs[s].n_ids,
							p->dec[0].y + (size_t) p->dec_off[s] * d);

	for (int l = 0; l < L; l++)
	{
		const PtDecoderLayer *w = &m->dec[l];
		PtDecLayerActs *a = &p->dec[l];
		float	   *next = l + 1 < L ? p->dec[l + 1].y : p->dec_final_in;

		const PtLinear *qkv[3] = {&w->self.q, &w->self.k, &w->self.v};
		float	   *qkv_out[3] = {a->q, a->k, a->v};
		const PtLinear *kv[2] = {&w->cross.k, &w->cross.v};
		float	   *kv_out[2] = {a->k_cross, a->v_cross};

		if (pt_yield(&p->yield) != 0)
			return -1;

		/* causal self-attention */
		pt_rmsnorm_forward(a->y, w->ln_self, Nd, d, eps, p->ln, a->rstd_self);
		pt_linear_forward_multi(qkv, 3, p->ln, Nd, qkv_out, p->math);
		if (p->dec_tree)
			pt_tree_attention_forward(Nd, p->dec_parent, p->dec_depth, p->dec_self.bias,
									  p->dec_self.bias_max_len, c->num_heads, c->d_kv,
									  a->q, a->k, a->v, p->ctx);
		else
			pt_attention_forward(&p->dec_self, c->num_heads, c->d_kv, a->q, a->k, a->v,
								 a->probs_self, p->ctx);
		pt_residual_projection(&w->self.o, p->ctx, Nd, a->y, a->y_mid1, p->sub, p->math);

		/* cross-attention over the encoder output */
		pt_rmsnorm_forward(a->y_mid1, w->ln_cross, Nd, d, eps, p->ln, a->rstd_cross);
		pt_linear_forward(&w->cross.q, p->ln, Nd, a->q_cross, p->math);
		if (p->cross_absorbed)
			pt_cross_absorbed_forward(&p->dec_cross, &w->cross.k, &w->cross.v, c->num_heads,
									  c->d_kv, d, Nd, a->q_cross, p->enc_out, a->qk_cross,
									  a->probs_cross, p->cross_stack, p->cross_pe, p->ctx, p->math);
		else
		{
			pt_linear_forward_multi(kv, 2, p->enc_out, N, kv_out, p->math);
			pt_attention_forward(&p->dec_cross, c->num_heads, c->d_kv, a->q_cross, a->k_cross,
								 a->v_cross, a->probs_cross, p->ctx);
		}
		pt_residual_projection(&w->cross.o, p->ctx, Nd, a->y_mid1, a->y_mid2, p->sub, p->math);

		/* feed-forward */
		pt_rmsnorm_forward(a->y_mid2, w->ln_ff, Nd, d, eps, p->ln, a->rstd_ff);
		pt_ff_forward(c, &w->ff, p->ln, Nd, a->h0, a->h1, p->act, a->y_mid2, next, p->sub, p->math);
	}
	pt_rmsnorm_forward(p->dec_final_in, m->dec_final_ln, Nd, d, eps, p->dec_out, p->dec_rstd_final);
	if (m->lm_scale != 1.0f)
		pt_scale(p->dec_out, m->lm_scale, (size_t) Nd * d);
	return 0;
}

int
pt_decoder_backward(PtPass *p, const float *d_dec_out)
{
	const PtModel *m = p->model;
	const PtConfig *c = &m->cfg;
	int			N = p->enc_rows,
				Nd = p->dec_rows,
				d = c->d_model;
	float	   *g = p->g;		/* gradient of the decoder's residual stream [Nd, d] */

	memset(p->d_enc_out, 0, sizeof(float) * N * d);
	if (p->n_dec == 0)
		return 0;

	/* final norm, through the lm_scale factor */
	memcpy(p->g_ln, d_dec_out, sizeof(float) * Nd * d);
	if (m->lm_scale != 1.0f)
		pt_scale(p->g_ln, m->lm_scale, (size_t) Nd * d);
	memset(g, 0, sizeof(float) * Nd * d);
	pt_rmsnorm_backward(p->dec_final_in, m->dec_final_ln, p->dec_rstd_final, p->g_ln, Nd, d, g);

	for (int l = c->num_decoder_layers - 1; l >= 0; l--)
	{
		const PtDecoderLayer *w = &m->dec[l];
		const PtDecLayerActs *a = &p->dec[l];

		if (pt_yield(&p->yield) != 0)
			return -1;

		/* feed-forward: g becomes d(y_mid2) */
		pt_ff_backward(c, &w->ff, a->h0, a->h1, g, Nd, p->g_act, p->g_h0, p->g_h1, p->g_ln);
		pt_rmsnorm_backward(a->y_mid2, w->ln_ff, a->rstd_ff, p->g_ln, Nd, d, g);

		/* cross-attention: g becomes d(y_mid1); K and V feed d(enc_out) */
		pt_linear_backward(&w->cross.o, g, Nd, p->g_ctx, false);
		if (p->cross_absorbed)
			pt_cross_absorbed_backward(&p->dec_cross, &w->cross.k, &w->cross.v, c->num_heads,
									   c->d_kv, d, Nd, p->enc_out, a->qk_cross, a->probs_cross,
									   p->g_ctx, p->cross_stack, p->cross_pe, p->g_q,
									   p->d_enc_out, p->math);
		else
		{
			pt_attention_backward(&p->dec_cross, c->num_heads, c->d_kv, a->q_cross, a->k_cross,
								  a->v_cross, a->probs_cross, p->g_ctx, p->g_q,
								  p->g_k_cross, p->g_v_cross);
			pt_linear_backward(&w->cross.k, p->g_k_cross, N, p->d_enc_out, true);
			pt_linear_backward(&w->cross.v, p->g_v_cross, N, p->d_enc_out, true);
		}
		pt_linear_backward(&w->cross.q, p->g_q, Nd, p->g_ln, false);
		pt_rmsnorm_backward(a->y_mid1, w->ln_cross, a->rstd_cross, p->g_ln, Nd, d, g);

		/* the first layer's self-attention only leads to the (frozen) input embeddings */
		if (l == 0)
			break;

		/* causal self-attention: g becomes d(y) */
		pt_linear_backward(&w->self.o, g, Nd, p->g_ctx, false);
		pt_attention_backward(&p->dec_self, c->num_heads, c->d_kv, a->q, a->k, a->v,
							  a->probs_self, p->g_ctx, p->g_q, p->g_k, p->g_v);
		pt_linear_backward(&w->self.q, p->g_q, Nd, p->g_ln, false);
		pt_linear_backward(&w->self.k, p->g_k, Nd, p->g_ln, true);
		pt_linear_backward(&w->self.v, p->g_v, Nd, p->g_ln, true);
		pt_rmsnorm_backward(a->y, w->ln_self, a->rstd_self, p->g_ln, Nd, d, g);
	}
	return 0;
}
