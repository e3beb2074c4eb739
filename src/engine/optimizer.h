/*
 * optimizer.h - Adafactor and Adam for one [rows, cols] parameter matrix
 * (the soft prompt: rows = prompt length P, cols = d_model).
 *
 * Adafactor is T5X's (t5x/adafactor.py, Adafactor.apply_param_gradient) with
 * the settings google-research/prompt-tuning's gin gives it for the paper
 * (configs/models/t5_1_1_prompt.gin: decay_rate 0.8, step_offset 0,
 * multiply_by_parameter_scale False, weight_decay_rate 1e-5) and T5X's
 * defaults where the gin is silent (factored, min_dim_size_to_factor 128,
 * clipping_threshold 1.0, epsilon1 1e-30, beta1 None = no momentum, no
 * global gradient-norm clipping).  Each step, with g the gradient and t the
 * 1-based step count (start_step + updates so far):
 *   decay = 1 - t^-0.8   (computed in float32, as T5X does)
 *   min(rows, cols) >= min_dim_size_to_factor: factored second moment
 *     R = decay R + (1-decay) mean_cols(g^2 + eps1)    [rows]
 *     C = decay C + (1-decay) mean_rows(g^2 + eps1)    [cols]
 *     y = g / sqrt(v_hat),  v_hat_ij = R_i C_j / mean(S)  where S is the one
 *         of R, C that runs along the smaller dimension (T5X's v_row)
 *   otherwise a full one
 *     V = decay V + (1-decay) (g^2 + eps1);  y = g / sqrt(V)      [rows, cols]
 *   y /= max(1, RMS(y) / clipping_threshold)
 *   p = (1 - weight_decay) p - lr y        (T5X: the decay is not scaled by lr)
 * Adam (Kingma & Ba) with bias correction and decoupled (AdamW) weight decay:
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
 *   p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) + lr * weight_decay * p
 * State is kept in float32 (as T5X keeps it); each step computes in double.
 */
#ifndef PT_OPTIMIZER_H
#define PT_OPTIMIZER_H

typedef enum PtOptimizerKind
{
	PT_OPT_ADAFACTOR,
	PT_OPT_ADAM
} PtOptimizerKind;

/* T5X's Adafactor default: factor only when both dimensions are at least this. */
#define PT_ADAFACTOR_MIN_DIM_TO_FACTOR 128

typedef struct PtOptimizerOptions
{
	PtOptimizerKind kind;
	double		learning_rate;
	double		weight_decay;	/* in [0, 1); see the update rules above */
	/* Adafactor */
	int			min_dim_size_to_factor; /* >= 0; 0 or 1: always factor (ptune before issue 10) */
	long		start_step;		/* T5X's step - step_offset before the first update */
} PtOptimizerOptions;

typedef struct PtOptimizer
{
	PtOptimizerOptions opt;
	int			rows,
				cols;
	long		step;			/* updates done */
	/* Adafactor */
	double		decay_rate;		/* 0.8: the exponent of the decay schedule */
	double		clip_threshold; /* 1.0 */
	double		eps1;			/* 1e-30 */
	int			factored;		/* min(rows, cols) >= min_dim_size_to_factor */
	float	   *row_avg;		/* factored: [rows] */
	float	   *col_avg;		/* factored: [cols] */
	float	   *v;				/* Adafactor unfactored and Adam: [rows * cols] */
	/* Adam */
	double		beta1,
				beta2,
				eps;
	float	   *m;				/* [rows * cols] */
	float	   *update;			/* scratch [rows * cols] */
} PtOptimizer;

/* The defaults of the optimizer named by kind (for Adafactor: the paper's). */
void		pt_optimizer_options_default(PtOptimizerOptions *o, PtOptimizerKind kind);
/* The recipe's default weight decay (Adafactor 1e-5, Adam 0). */
double		pt_optimizer_default_weight_decay(PtOptimizerKind kind);

/*
 * The recipe's default gradient-norm clipping, which the trainer applies
 * before the step: none for Adafactor (the paper's T5X runs had none;
 * Adafactor clips its update's RMS instead), 1.0 for Adam (the usual
 * fine-tuning practice, and what ptune always did).
 */
double		pt_optimizer_default_max_grad_norm(PtOptimizerKind kind);

PtOptimizer *pt_optimizer_new(const PtOptimizerOptions *o, int rows, int cols);
void		pt_optimizer_free(PtOptimizer *opt);
void		pt_optimizer_step(PtOptimizer *opt, float *param, const float *grad);

const char *pt_optimizer_name(PtOptimizerKind kind);
int			pt_optimizer_parse(const char *name, PtOptimizerKind *out);

#endif
