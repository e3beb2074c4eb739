/*
 * optimizer.h - Adafactor and Adam for one [rows, cols] parameter matrix
 * (the soft prompt).
 *
 * Adafactor (Shazeer & Stern 2018) as the prompt-tuning paper uses it:
 * fixed learning rate (0.3), no momentum, second moments factored into row
 * and column averages, decay rate 0.8 (beta2_t = 1 - t^-0.8), update
 * clipping at RMS 1.0, epsilon1 1e-30, no parameter scaling, weight decay
 * 1e-5.  Each step, with g the gradient:
 *   R = b R + (1-b) mean_cols(g^2 + eps1)       C = b C + (1-b) mean_rows(g^2 + eps1)
 *   u = g / sqrt(R_i / mean(R) * C_j);  u /= max(1, RMS(u) / clip)
 *   p -= lr * (u + weight_decay * p)
 * Adam (Kingma & Ba) with bias correction:
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
 *   p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)  (+ decoupled weight decay)
 */
#ifndef PT_OPTIMIZER_H
#define PT_OPTIMIZER_H

typedef enum PtOptimizerKind
{
	PT_OPT_ADAFACTOR,
	PT_OPT_ADAM
} PtOptimizerKind;

typedef struct PtOptimizer
{
	PtOptimizerKind kind;
	int			rows,
				cols;
	double		lr;
	double		weight_decay;
	long		step;
	/* Adafactor */
	double		decay_rate;		/* 0.8 */
	double		clip_threshold; /* 1.0 */
	double		eps1;			/* 1e-30 */
	float	   *row_avg;		/* [rows] */
	float	   *col_avg;		/* [cols] */
	/* Adam */
	double		beta1,
				beta2,
				eps;
	float	   *m,
			   *v;				/* [rows * cols] */
	float	   *update;			/* scratch [rows * cols] */
} PtOptimizer;

PtOptimizer *pt_optimizer_new(PtOptimizerKind kind, int rows, int cols, double lr,
							  double weight_decay);
void		pt_optimizer_free(PtOptimizer *opt);
void		pt_optimizer_step(PtOptimizer *opt, float *param, const float *grad);

const char *pt_optimizer_name(PtOptimizerKind kind);
int			pt_optimizer_parse(const char *name, PtOptimizerKind *out);

#endif
