/*
 * encoder.c - the T5 encoder stack, forward and backward (see transformer.h).
 *
 * Each layer:   x_mid = x + O(Attention(Q, K, V))   with Q, K, V from RMSNorm(x)
 *               x'    = x_mid + FF(RMSNorm(x_mid))
 * then a final RMSNorm.  Shapes: x [N, d]; Q, K, V [N, I]; FF hidden [N, F].
 * Without a backward pass x, x_mid and x' are one buffer (see pass.c).  Each
 * residual sum happens inside the product that feeds it, except in bf16
 * inference: there O's and wo's products go to p->sub as they are
 * ("pending") and the next RMS norm adds them to x as it reads x's rows.  A
 * sum inside the product (oneDNN's "sum" post-op) reads x from memory in the
 * middle of the kernel, which cost flan-t5-small's o and wo products 25-40%
 * (9.7 MB of x each).
 */
#include <string.h>

#include "dtype.h"
#include "kernels.h"
#include "linear.h"
#include "safetensors.h"
#include "transformer.h"

/*
 * ys[i] = RMSNorm(x) . W_i^T for n linear layers of in_dim d (rstd saved).
 * Where they all run in bf16 the norm rounds its output straight into their
 * input (no fp32 copy of it to write and read back); else p->ln holds it.
 * pending (or NULL): a sublayer's output still to be added to x first.
 */
static void
norm_then_products(PtPass *p, float *x, const float *pending, const float *ln, float *rstd,
				   const PtLinear *const *lins, int n, float *const *ys)
{
	const PtConfig *c = &p->model->cfg;
	int			N = p->enc_rows,
				d = c->d_model;
	bool		bf16 = N > 0;

	for (int i = 0; i < n; i++)
		bf16 = bf16 && pt_linear_runs_bf16(lins[i], p->math);
	if (bf16)
	{
		uint16_t   *xb = pt_bf16_input_room((size_t) N * d);

		if (xb != NULL)
		{
			int			done = 0;

			pt_rmsnorm_add_forward_bf16(x, pending, ln, N, d, c->layer_norm_eps, xb, rstd);
			while (done < n && pt_bf16_matmul(lins[done], N, ys[done], false))
				done++;
			if (done == n)
				return;
			/* oneDNN could not run one: all of them again, the usual way (x has its sum now) */
			pending = NULL;
		}
	}
	pt_rmsnorm_add_forward(x, pending, ln, N, d, c->layer_norm_eps, p->ln, rstd);
	pt_linear_forward_multi(lins, n, p->ln, N, ys, p->math);
}

/*
 * Attention, then p->sub = ctx . Wo^T (no residual: bf16 inference adds it
 * in the next norm).  Where O runs in bf16 the context rows are rounded
 * straight into its input (PtAttnLayout.ctx_bf16): by the bf16 attention
 * kernels as they compute them, or block by block after fp32 ones; no
 * separate pass over an fp32 context.
 */
static void
attention_then_o(PtPass *p, const PtEncoderLayer *w, const PtEncLayerActs *a)
{
	const PtConfig *c = &p->model->cfg;
	size_t		n = (size_t) p->enc_rows * c->num_heads * c->d_kv;
	uint16_t   *cb = NULL;

	if (pt_linear_runs_bf16(&w->attn.o, p->math))
		cb = pt_bf16_input_room(n);
	p->enc_self.ctx_bf16 = cb;
	pt_attention_forward(&p->enc_self, c->num_heads, c->d_kv, a->q, a->k, a->v, a->probs, p->ctx);
	p->enc_self.ctx_bf16 = NULL;
	if (cb != NULL && pt_bf16_matmul(&w->attn.o, p->enc_rows, p->sub, false))
		return;
	if (cb != NULL)				/* oneDNN could not run it: the context in fp32, the usual way */
		pt_convert_to_f32(PT_DTYPE_BF16, cb, n, p->ctx);
	pt_linear_forward(&w->attn.o, p->ctx, p->enc_rows, p->sub, p->math);
}

/*
 * bf16 inference, the feed-forward sublayer whole: x_mid += pending and its
 * norm, wi_0 and wi_1 writing bf16 (into the first halves of h0 and h1:
 * what reads them, the activation, takes bf16), the activation rounding
 * into wo's input, and p->sub = wo's product (its residual sum waits for the
 * next norm).  Half the bytes of fp32 h0 and h1 to write and read back.
 * false if it did not all run in bf16; *pending is NULL once the sum is in
 * x_mid (the caller's usual way then norms x_mid again).
 */
static bool
ff_in_bf16(PtPass *p, const PtEncoderLayer *w, const PtEncLayerActs *a, const float **pending)
{
	const PtConfig *c = &p->model->cfg;
	int			N = p->enc_rows;
	size_t		nf = (size_t) N * c->d_ff;
	uint16_t   *h0 = (uint16_t *) a->h0,
			   *h1 = (uint16_t *) a->h1,
			   *in;

	if (!pt_linear_runs_bf16(&w->ff.wi0, p->math) || !pt_linear_runs_bf16(&w->ff.wo, p->math) ||
		(c->gated && !pt_linear_runs_bf16(&w->ff.wi1, p->math)) ||
		(in = pt_bf16_input_room((size_t) N * c->d_model)) == NULL)
		return false;
	pt_rmsnorm_add_forward_bf16(a->x_mid, *pending, w->ln_ff, N, c->d_model, c->layer_norm_eps, in, a->rstd_ff);
	*pending = NULL;
	if (!pt_bf16_matmul_to_bf16(&w->ff.wi0, N, h0) ||
		(c->gated && !pt_bf16_matmul_to_bf16(&w->ff.wi1, N, h1)) ||
		(in = pt_bf16_input_room(nf)) == NULL)
		return false;
	pt_ff_activation_bf16(c->activation, c->gated, h0, c->gated ? h1 : NULL, nf, in);
	return pt_bf16_matmul(&w->ff.wo, N, p->sub, false);
}

int
pt_encoder_forward(PtPass *p)
{
	const PtModel *m = p->model;
	const PtConfig *c = &m->cfg;
	int			N = p->enc_rows,
				d = c->d_model,
				L = c->num_layers;
	float		eps = c->layer_norm_eps;
	int			n_wi = c->gated ? 2 : 1;
	float	   *x0 = p->enc[0].x;
	/* inference in bf16: residual sums wait in p->sub for the next norm (see the top) */
	bool		defer = !p->keep && N > 0 && p->math == PT_MATH_BF16;
	const float *pending = NULL;

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
		const PtLinear *wi[2] = {&w->ff.wi0, &w->ff.wi1};
		float	   *h[2] = {a->h0, a->h1};

		if (pt_yield(&p->yield) != 0)
			return -1;

		/* self-attention sublayer */
		norm_then_products(p, a->x, pending, w->ln_attn, a->rstd_attn, qkv, 3, qkv_out);
		if (defer)
			attention_then_o(p, w, a), pending = p->sub;
		else
		{
			pt_attention_forward(&p->enc_self, c->num_heads, c->d_kv, a->q, a->k, a->v, a->probs, p->ctx);
			pt_residual_projection(&w->attn.o, p->ctx, N, a->x, a->x_mid, p->sub, p->math);
		}

		/* feed-forward sublayer */
		if (defer && ff_in_bf16(p, w, a, &pending))
		{
			pending = p->sub;
			continue;
		}
		norm_then_products(p, a->x_mid, pending, w->ln_ff, a->rstd_ff, wi, n_wi, h);
		if (defer)
			pt_ff_output(c, &w->ff, N, a->h0, a->h1, p->act, NULL, p->sub, p->sub, p->math), pending = p->sub;
		else
			pt_ff_output(c, &w->ff, N, a->h0, a->h1, p->act, a->x_mid, next, p->sub, p->math);
	}
	pt_rmsnorm_add_forward(p->enc_final_in, pending, m->enc_final_ln, N, d, eps, p->enc_out, p->enc_rstd_final);
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
