/*
 * optimizer.c - Adafactor and Adam (see optimizer.h for the update rules and
 * where each Adafactor setting comes from).
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

double
pt_optimizer_default_weight_decay(PtOptimizerKind kind)
{
	/* prompt_tuning/configs/models/t5_1_1_prompt.gin: weight_decay_rate = 0.00001 */
	return kind == PT_OPT_ADAFACTOR ? 1e-5 : 0.0;
}

double
pt_optimizer_default_max_grad_norm(PtOptimizerKind kind)
{
	/* T5X Adafactor's global_norm_clip_threshold defaults to None, and the gin leaves it */
	return kind == PT_OPT_ADAFACTOR ? 0.0 : 1.0;
}

void
pt_optimizer_options_default(PtOptimizerOptions *o, PtOptimizerKind kind)
{
	*o = (PtOptimizerOptions) {
		.kind = kind,
		.learning_rate = kind == PT_OPT_ADAFACTOR ? 0.3 : 0.05,
		.weight_decay = pt_optimizer_default_weight_decay(kind),
		.min_dim_size_to_factor = PT_ADAFACTOR_MIN_DIM_TO_FACTOR,
		.start_step = 0,
	};
}

PtOptimizer *
pt_optimizer_new(const PtOptimizerOptions *opt, int rows, int cols)
{
	PtOptimizer *o = pt_calloc(1, sizeof(PtOptimizer));
	size_t		n = (size_t) rows * cols;
	int			ok;

	if (o == NULL)
		return NULL;
	*o = (PtOptimizer) {
		.opt = *opt, .rows = rows, .cols = cols,
		.decay_rate = 0.8, .clip_threshold = 1.0, .eps1 = 1e-30,
		.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
	};
	/* T5X's Adafactor._factored_dims: the smaller dimension must reach the threshold */
	o->factored = opt->kind == PT_OPT_ADAFACTOR &&
		(rows < cols ? rows : cols) >= opt->min_dim_size_to_factor;
	o->update = pt_calloc(n, sizeof(float));
	ok = o->update != NULL;
	if (o->factored)
	{
		o->row_avg = pt_calloc(rows, sizeof(float));
		o->col_avg = pt_calloc(cols, sizeof(float));
		ok = ok && o->row_avg && o->col_avg;
	}
	else
	{
		o->v = pt_calloc(n, sizeof(float));
		ok = ok && o->v;
	}
	if (opt->kind == PT_OPT_ADAM)
	{
		o->m = pt_calloc(n, sizeof(float));
		ok = ok && o->m;
	}
	if (!ok)
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

/*
 * Adafactor's second-moment decay for the t-th step (1-based), as T5X's
 * Adafactor._decay_rate_pow computes it: in float32.  At large t (a
 * checkpoint's step count) 1 - decay keeps few bits, so float32 matters.
 */
static double
adafactor_decay(long t, double exponent)
{
	float		decay = 1.0f - powf((float) t, (float) -exponent);

	return (double) decay;
}

/*
 * Factored second moment (T5X: v_row, v_col).  R [rows] averages g^2 along
 * the columns, C [cols] along the rows; v_hat_ij = R_i C_j / mean(S), where S
 * is the one that runs along the smaller dimension (T5X's v_row: its d1 is
 * the second-largest axis; rows when rows <= cols).  Writes y to update.
 */
static void
adafactor_factored(PtOptimizer *o, const float *g, double decay)
{
	int			R = o->rows,
				C = o->cols;
	double		mix = 1.0 - decay,
				s_mean = 0.0;

	for (int i = 0; i < R; i++)
	{
		double		s = 0.0;

		for (int j = 0; j < C; j++)
			s += (double) g[(size_t) i * C + j] * g[(size_t) i * C + j] + o->eps1;
		o->row_avg[i] = (float) (decay * o->row_avg[i] + mix * (s / C));
	}
	for (int j = 0; j < C; j++)
	{
		double		s = 0.0;

		for (int i = 0; i < R; i++)
			s += (double) g[(size_t) i * C + j] * g[(size_t) i * C + j] + o->eps1;
		o->col_avg[j] = (float) (decay * o->col_avg[j] + mix * (s / R));
	}
	if (R <= C)
	{
		for (int i = 0; i < R; i++)
			s_mean += o->row_avg[i];
		s_mean /= R;
	}
	else
	{
		for (int j = 0; j < C; j++)
			s_mean += o->col_avg[j];
		s_mean /= C;
	}
	for (int i = 0; i < R; i++)
		for (int j = 0; j < C; j++)
		{
			double		vhat = (double) o->row_avg[i] * o->col_avg[j] / s_mean;

			o->update[(size_t) i * C + j] = (float) (g[(size_t) i * C + j] / sqrt(vhat));
		}
}

static void
adafactor_step(PtOptimizer *o, float *p, const float *g)
{
	size_t		n = (size_t) o->rows * o->cols;
	double		decay = adafactor_decay(o->opt.start_step + o->step, o->decay_rate),
				sq_sum = 0.0,
				denom,
				keep = 1.0 - o->opt.weight_decay;

	if (o->factored)
		adafactor_factored(o, g, decay);
	else
		for (size_t k = 0; k < n; k++)
		{
			double		v = decay * o->v[k] + (1.0 - decay) * ((double) g[k] * g[k] + o->eps1);

			o->v[k] = (float) v;
			o->update[k] = (float) (g[k] / sqrt((double) o->v[k]));
		}

	/* update clipping: scale y down so that RMS(y) <= clipping_threshold */
	for (size_t k = 0; k < n; k++)
		sq_sum += (double) o->update[k] * o->update[k];
	denom = fmax(1.0, sqrt(sq_sum / (double) n) / o->clip_threshold);
	for (size_t k = 0; k < n; k++)
		p[k] = (float) (keep * p[k] - o->opt.learning_rate * (o->update[k] / denom));
}

static void
adam_step(PtOptimizer *o, float *p, const float *g)
{
	double		c1 = 1.0 - pow(o->beta1, (double) o->step);
	double		c2 = 1.0 - pow(o->beta2, (double) o->step);
	double		lr = o->opt.learning_rate,
				wd = o->opt.weight_decay;

	for (size_t k = 0; k < (size_t) o->rows * o->cols; k++)
	{
		double		m = o->beta1 * o->m[k] + (1.0 - o->beta1) * g[k];
		double		v = o->beta2 * o->v[k] + (1.0 - o->beta2) * (double) g[k] * g[k];

		o->m[k] = (float) m;
		o->v[k] = (float) v;
		p[k] -= (float) (lr * (m / c1) / (sqrt(v / c2) + o->eps) + lr * wd * p[k]);
	}
}

void
pt_optimizer_step(PtOptimizer *o, float *param, const float *grad)
{
	o->step++;
	if (o->opt.kind == PT_OPT_ADAFACTOR)
		adafactor_step(o, param, grad);
	else
		adam_step(o, param, grad);
}
