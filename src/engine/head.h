/*
 * head.h - the language-model head: logits, cross-entropy and its gradient.
 *
 * h rows are the decoder's final states (pt_decoder_forward's dec_out, which
 * already carries the d_model^-0.5 factor of tied models).
 */
#ifndef PT_HEAD_H
#define PT_HEAD_H

#include <stdbool.h>
#include <stdint.h>

#include "model.h"

/* logits[n, V] = h[n, d] . lm_head^T */
void		pt_head_logits(const PtModel *m, const float *h, int n, float *logits);

/*
 * The same as pt_head_logits for a few rows (n <= PT_HEAD_FEW_ROWS): one
 * pass over lm_head computes every row's dot products, where a matrix
 * product would first copy the whole [V, d] weight for so thin a result.
 */
#define PT_HEAD_FEW_ROWS 6
void		pt_head_logits_few(const PtModel *m, const float *h, int n, float *logits);

/* out[j] = h[d] . lm_head[ids[j]]: logits of chosen tokens only */
void		pt_head_token_logits(const PtModel *m, const float *h, const int32_t *ids, int n_ids,
								 float *out);

/*
 * Cross-entropy of each row of logits[n, V] against targets[n]:
 *   ce_i = logsumexp(logits_i) - logits_i[target_i]      (written to ce[i])
 * If grad is true, logits is overwritten with d(sum_i weight_i ce_i)/d(logits)
 * = weight_i (softmax(logits_i) - onehot(target_i)).
 */
/*
 * log(sum_i exp(x[i])) of x[0..n), n >= 1, stable: the maximum is taken out
 * and the sum is accumulated in double.  The cross-entropy and both scorings
 * of the classifier use it.
 */
double		pt_log_sum_exp(const float *x, int n);

void		pt_cross_entropy(float *logits, int n, int V, const int32_t *targets,
							 const float *weights, bool grad, double *ce);

/* dh[n, d] = dlogits[n, V] . lm_head */
void		pt_head_backward(const PtModel *m, const float *dlogits, int n, float *dh);

#endif
