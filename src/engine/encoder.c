/*
 * encoder.c - the T5 encoder stack, forward and backward (see transformer.h).
 *
 * Each layer:   x_mid = x + O(Attention(Q, K, V))   with Q, K, V from RMSNorm(x)
 *               x'    = x_mid + FF(RMSNorm(x_mid))
 * then a final RMSNorm.  Shapes: x [N, d]; Q, K, V [N, I]; FF hidden [N, F].
 * Without a backward pass x, x_mid and x' are one buffer (see pass.c), and
 * each residual sum happens inside the product that feeds it.
 */
#include <string.h>

#include "kernels.h"
#include "transformer.h"

int
pt_encoder_forward(PtPass *p)
{
	const PtModel *m = p->model;
	const PtConfig *c = &m->cfg;
	int			N = p->enc_rows,
				d = c->d_model,
				L = c->num_layers;
	float		eps = c->layer_norm_eps;
	float	   *x0 = p->enc[0].x;

	/* input rows: the soft prompt, then the token embeddings */
	for (int s = 0; s < p->n_enc; s++)
	{
		const PtEncoderSeq *seq = &p->enc_seqs[s];
		float	   *dst = x0 + (size_t) p->enc_off[s] * d;

		if (seq->prompt_len > 0)
			memcpy(dst, seq->prompt, sizeof(float) * seq->prompt_len * d);
		pt_model_embed_rows(m, seq->ids, seq->n_ids, dst + (size_t) seq->prompt_len * d);
	}

	for (int l = 0; l < L; l++)
	{
		const PtEncoderLayer *w = &m->enc[l];
		PtEncLayerActs *a = &p->enc[l];
		float	   *next = l + 1 < L ? p->enc[l + 1].x : p->enc_final_in;

		const PtLinear *qkv[3] = {&w->attn.q, &w->attn.k, &w->attn.v};
		float	   *qkv_out[3] = {a->q, a->k, a->v};

		if (pt_yield(&p->yield) != 0)
			return -1;

		/* self-attention sublayer */
		pt_rmsnorm_forward(a->x, w->ln_attn, N, d, eps, p->ln, a->rstd_attn);
		pt_linear_forward_multi(qkv, 3, p->ln, N, qkv_out, p->math);
		pt_attention_forward(&p->enc_self, c->num_heads, c->d_kv, a->q, a->k, a->v, a->probs, p->ctx);
		pt_residual_projection(&w->attn.o, p->ctx, N, a->x, a->x_mid, p->sub, p->math);

		/* feed-forward sublayer */
		pt_rmsnorm_forward(a->x_mid, w->ln_ff, N, d, eps, p->ln, a->rstd_ff);
		pt_ff_forward(c, &w->ff, p->ln, N, a->h0, a->h1, p->act, a->x_mid, next, p->sub, p->math);
	}
	pt_rmsnorm_forward(p->enc_final_in, m->enc_final_ln, N, d, eps, p->enc_out, p->enc_rstd_final);
	return 0;
}

int
pt_encoder_backward(PtPass *p)
{
	const PtModel *m = p->model;
	const PtConfig *c = &m->cfg;
	int			N = p->enc_rows,
				d = c->d_model;
	float	   *g = p->d_x0;	/* gradient of the residual stream, [N, d] */

	/* final norm */
	memset(g, 0, sizeof(float) * N * d);
	pt_rmsnorm_backward(p->enc_final_in, m->enc_final_ln, p->enc_rstd_final, p->d_enc_out, N, d, g);

	for (int l = c->num_layers - 1; l >= 0; l--)
	{
		const PtEncoderLayer *w = &m->enc[l];
		const PtEncLayerActs *a = &p->enc[l];

		if (pt_yield(&p->yield) != 0)
			return -1;

		/* feed-forward sublayer: g is d(x'); after it, d(x_mid) */
		pt_ff_backward(c, &w->ff, a->h0, a->h1, g, N, p->g_act, p->g_h0, p->g_h1, p->g_ln);
		pt_rmsnorm_backward(a->x_mid, w->ln_ff, a->rstd_ff, p->g_ln, N, d, g);

		/* attention sublayer: after it, g is d(x) */
		pt_linear_backward(&w->attn.o, g, N, p->g_ctx, false);
		pt_attention_backward(&p->enc_self, c->num_heads, c->d_kv, a->q, a->k, a->v, a->probs,
							  p->g_ctx, p->g_q, p->g_k, p->g_v);
		pt_linear_backward(&w->attn.q, p->g_q, N, p->g_ln, false);
		pt_linear_backward(&w->attn.k, p->g_k, N, p->g_ln, true);
		pt_linear_backward(&w->attn.v, p->g_v, N, p->g_ln, true);
		pt_rmsnorm_backward(a->x, w->ln_attn, a->rstd_attn, p->g_ln, N, d, g);
	}
	return 0;
}
