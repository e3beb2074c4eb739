/*
 * blocks.c - the feed-forward sublayer, shared by encoder and decoder layers.
 *
 *   relu / plain:  out = wo( act(wi(xn)) )
 *   gated:         out = wo( act(wi_0(xn)) * wi_1(xn) )
 * xn is the layer-normed input [n, d]; h0, h1, act are [n, F]; out is [n, d].
 */
#include "kernels.h"
#include "t5.h"

void
pt_ff_forward(const PtConfig *cfg, const PtFeedForwardWeights *w, const float *xn,
			  int n, float *h0, float *h1, float *act, float *out, PtMath math)
{
	pt_linear_forward(&w->wi0, xn, n, h0, math);
	if (cfg->gated)
		pt_linear_forward(&w->wi1, xn, n, h1, math);
	pt_ff_activation_forward(cfg->activation, cfg->gated, h0, h1, (size_t) n * cfg->d_ff, act);
	pt_linear_forward(&w->wo, act, n, out, math);
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
