/*
 * head.c - logits and cross-entropy (see head.h).
 */
#include <math.h>

#include "head.h"
#include "kernels.h"

void
pt_head_logits(const PtModel *m, const float *h, int n, float *logits)
{
	pt_linear_forward(&m->lm_head, h, n, logits, PT_MATH_FP32);
}

void
pt_head_logits_few(const PtModel *m, const float *h, int n, float *logits)
{
	int			d = m->cfg.d_model,
				V = m->cfg.vocab_size;

#pragma omp parallel for schedule(static)
	for (int v = 0; v < V; v++)
	{
		const float *w = m->lm_head.w + (size_t) v * d;

		for (int i = 0; i < n; i++)
		{
			const float *x = h + (size_t) i * d;
			float		dot = 0.0f;

#pragma omp simd reduction(+:dot)
			for (int k = 0; k < d; k++)
				dot += x[k] * w[k];
			logits[(size_t) i * V + v] = dot;
		}
	}
}

void
pt_head_token_logits(const PtModel *m, const float *h, const int32_t *ids, int n_ids, float *out)
{
	int			d = m->cfg.d_model;

	for (int j = 0; j < n_ids; j++)
	{
		const float *w = m->lm_head.w + (size_t) ids[j] * d;
		float		dot = 0.0f;

		for (int k = 0; k < d; k++)
			dot += h[k] * w[k];
		out[j] = dot;
	}
}

double
pt_log_sum_exp(const float *x, int n)
{
	float		mx = x[0];
	double		sum = 0.0;

	for (int j = 1; j < n; j++)
		mx = x[j] > mx ? x[j] : mx;
	for (int j = 0; j < n; j++)
		sum += exp((double) (x[j] - mx));
	return mx + log(sum);
}

void
pt_cross_entropy(float *logits, int n, int V, const int32_t *targets,
				 const float *weights, bool grad, double *ce)
{
#pragma omp parallel for if (n >= 8) schedule(static)
	for (int i = 0; i < n; i++)
	{
		float	   *row = logits + (size_t) i * V;
		double		lse = pt_log_sum_exp(row, V);

		ce[i] = lse - row[targets[i]];
		if (grad)
		{
			float		w = weights ? weights[i] : 1.0f;

			for (int j = 0; j < V; j++)
				row[j] = w * (float) exp((double) row[j] - lse);
			row[targets[i]] -= w;
		}
	}
}

void
pt_head_backward(const PtModel *m, const float *dlogits, int n, float *dh)
{
	pt_linear_backward(&m->lm_head, dlogits, n, dh, false);
}
