/*
 * optimizer.c - Adafactor and Adam (see optimizer.h for the update rules).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "optimizer.h"

const char *
pt_optimizer_name(PtOptimizerKind kind)
{
	return kind == PT_OPT_ADAM ? "adam" : "adafactor";
}

int
pt_optimizer_parse(const char *name, PtOptimizerKind *out)
{
	if (strcmp(name, "adafactor") == 0)
		*out = PT_OPT_ADAFACTOR;
	else if (strcmp(name, "adam") == 0)
		*out = PT_OPT_ADAM;
	else
		return pt_fail(PT_ERR_ARGUMENT, "unknown optimizer \"%s\" (use adafactor or adam)", name);
	return 0;
}

PtOptimizer *
pt_optimizer_new(PtOptimizerKind kind, int rows, int cols, double lr, double weight_decay)
{
	PtOptimizer *o = pt_calloc(1, sizeof(PtOptimizer));
	size_t		n = (size_t) rows * cols;

	if (o == NULL)
		return NULL;
	*o = (PtOptimizer) {
		.kind = kind, .rows = rows, .cols = cols, .lr = lr, .weight_decay = weight_decay,
		.decay_rate = 0.8, .clip_threshold = 1.0, .eps1 = 1e-30,
		.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
	};
	o->update = pt_calloc(n, sizeof(float));
	if (kind == PT_OPT_ADAFACTOR)
	{
		o->row_avg = pt_calloc(rows, sizeof(float));
		o->col_avg = pt_calloc(cols, sizeof(float));
	}
	else
	{
		o->m = pt_calloc(n, sizeof(float));
		o->v = pt_calloc(n, sizeof(float));
	}
	if (o->update == NULL || (kind == PT_OPT_ADAFACTOR ? !o->row_avg || !o->col_avg : !o->m || !o->v))
	{
		pt_optimizer_free(o);
		return NULL;
	}
	return o;
}

void
pt_optimizer_free(PtOptimizer *o)
{
	if (o == NULL)
		return;
	free(o->row_avg);
	free(o->col_avg);
	free(o->m);
	free(o->v);
	free(o->update);
	free(o);
}

static void
adafactor_step(PtOptimizer *o, float *p, const float *g)
{
	int			R = o->rows,
				C = o->cols;
	double		beta = 1.0 - pow((double) o->step, -o->decay_rate);
	double		row_mean = 0.0,
				sq_sum = 0.0,
				rms,
				scale;

	/* factored second moments: row and column means of g^2 */
	for (int i = 0; i < R; i++)
	{
		double		s = 0.0;

		for (int j = 0; j < C; j++)
			s += (double) g[(size_t) i * C + j] * g[(size_t) i * C + j] + o->eps1;
		o->row_avg[i] = (float) (beta * o->row_avg[i] + (1.0 - beta) * s / C);
		row_mean += o->row_avg[i];
	}
	row_mean /= R;
	for (int j = 0; j < C; j++)
	{
		double		s = 0.0;

		for (int i = 0; i < R; i++)
			s += (double) g[(size_t) i * C + j] * g[(size_t) i * C + j] + o->eps1;
		o->col_avg[j] = (float) (beta * o->col_avg[j] + (1.0 - beta) * s / R);
	}

	/* u = g / sqrt(v_hat), v_hat = (R_i / mean R) C_j */
	for (int i = 0; i < R; i++)
	{
		double		r = 1.0 / sqrt(o->row_avg[i] / row_mean);

		for (int j = 0; j < C; j++)
		{
			double		u = g[(size_t) i * C + j] * r / sqrt(o->col_avg[j]);

			o->update[(size_t) i * C + j] = (float) u;
			sq_sum += u * u;
		}
	}
	/* update clipping: scale down so that RMS(u) <= clip_threshold */
	rms = sqrt(sq_sum / ((double) R * C));
	scale = o->lr / fmax(1.0, rms / o->clip_threshold);
	for (size_t k = 0; k < (size_t) R * C; k++)
		p[k] -= (float) (scale * o->update[k] + o->lr * o->weight_decay * p[k]);
}

static void
adam_step(PtOptimizer *o, float *p, const float *g)
{
	double		c1 = 1.0 - pow(o->beta1, (double) o->step);
	double		c2 = 1.0 - pow(o->beta2, (double) o->step);

	for (size_t k = 0; k < (size_t) o->rows * o->cols; k++)
	{
		double		m = o->beta1 * o->m[k] + (1.0 - o->beta1) * g[k];
		double		v = o->beta2 * o->v[k] + (1.0 - o->beta2) * (double) g[k] * g[k];

		o->m[k] = (float) m;
		o->v[k] = (float) v;
		p[k] -= (float) (o->lr * (m / c1) / (sqrt(v / c2) + o->eps) + o->lr * o->weight_decay * p[k]);
	}
}

void
pt_optimizer_step(PtOptimizer *o, float *param, const float *grad)
{
	o->step++;
	if (o->kind == PT_OPT_ADAFACTOR)
		adafactor_step(o, param, grad);
	else
		adam_step(o, param, grad);
}
