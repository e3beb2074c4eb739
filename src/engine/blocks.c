/*
 * blocks.c - pieces shared by encoder and decoder layers: the residual
 * connection around a projection, and the feed-forward sublayer.
 *
 *   relu / plain:  FF(xn) = wo( act(wi(xn)) )
 *   gated:         FF(xn) = wo( act(wi_0(xn)) * wi_1(xn) )
 * xn is the layer-normed input [n, d]; h0, h1, act are [n, F].
 */
#include <string.h>

#include "kernels.h"
#include "linear.h"
#include "transformer.h"

void
pt_residual_projection(const PtLinear *w, const float *h, int n, const float *in, float *out,
					   float *scratch, PtMath math)
{
	/*
	 * The sum happens inside the product.  Training keeps both residual
	 * buffers (out != in): copying in and accumulating onto it moves less
	 * memory than a product into scratch plus a three-stream add, and computes
	 * what inference computes in place.
	 */
	if (out != in)
		memcpy(out, in, sizeof(float) * (size_t) n * w->out_dim);
	pt_linear_forward_add(w, h, n, out, math);
}

void
pt_ff_output(const PtConfig *cfg, const PtFeedForwardWeights *w, int n, const float *h0,
			 const float *h1, float *act, const float *in, float *out, float *scratch, PtMath math)
{
	size_t		nf = (size_t) n * cfg->d_ff;

	if (n > 0 && pt_linear_runs_bf16(&w->wo, math))
	{
		/*
		 * wo's input rounded to bf16 as it is computed: act in fp32 would
		 * be written and read back only to be rounded (n x d_ff values:
		 * 19 MB for 32 rows of 148 tokens of flan-t5-small).
		 */
		uint16_t   *xb = pt_bf16_input_room(nf);

		if (xb != NULL)
		{
			pt_ff_activation_forward_bf16(cfg->activation, cfg->gated, h0, h1, nf, xb);
			if (in != NULL && out != in)
				memcpy(out, in, sizeof(float) * (size_t) n * w->wo.out_dim);
			if (pt_bf16_matmul(&w->wo, n, out, in != NULL))
				return;
			/* oneDNN could not run it (as pt_linear_forward_add then does): fp32 */
		}
	}
	pt_ff_activation_forward(cfg->activation, cfg->gated, h0, h1, nf, act);
	if (in != NULL)
		pt_residual_projection(&w->wo, act, n, in, out, scratch, math);
	else
		pt_linear_forward(&w->wo, act, n, out, math);
}

void
pt_ff_forward(const PtConfig *cfg, const PtFeedForwardWeights *w, const float *xn,
			  int n, float *h0, float *h1, float *act, const float *in, float *out,
			  float *scratch, PtMath math)
{
	const PtLinear *wi[2] = {&w->wi0, &w->wi1};
	float	   *h[2] = {h0, h1};

	pt_linear_forward_multi(wi, cfg->gated ? 2 : 1, xn, n, h, math);
	pt_ff_output(cfg, w, n, h0, h1, act, in, out, scratch, math);
}

void
pt_ff_backward(const PtConfig *cfg, const PtFeedForwardWeights *w,
			   const float *h0, const float *h1, const float *dout, int n,
			   float *g_act, float *g_h0, float *g_h1, float *g_xn)
{
	/* g_act[n, F] = dout[n, d] wo */
	pt_linear_backward(&w->wo, dout, n, g_act, false);
	pt_ff_activation_backward(cfg->activation, cfg->gated, h0, h1, g_act,
							  (size_t) n * cfg->d_ff, g_h0, g_h1);
	/* g_xn[n, d] = g_h0 wi_0 (+ g_h1 wi_1) */
	pt_linear_backward(&w->wi0, g_h0, n, g_xn, false);
	if (cfg->gated)
		pt_linear_backward(&w->wi1, g_h1, n, g_xn, true);
}
