/*
 * objective.c - forward, loss and prompt gradient over a batch of examples.
 */
#include <math.h>
#include <string.h>

#include "error.h"
#include "head.h"
#include "objective.h"
#include "transformer.h"

void
pt_workspace_free(PtWorkspace *ws)
{
	pt_arena_free(&ws->pass);
	pt_arena_free(&ws->head);
}

/* Buffers of the head: decoder inputs, sequence lists, logits, weights. */
typedef struct HeadBuffers
{
	PtEncoderSeq *enc;
	PtDecoderSeq *dec;
	int32_t    *dec_ids;		/* all decoder inputs, back to back */
	int32_t    *targets;		/* all target ids, back to back */
	float	   *weights;		/* per target token */
	double	   *ce;				/* per target token */
	float	   *logits;			/* [T, V] */
	float	   *d_dec_out;		/* [T, d] */
} HeadBuffers;

static void
carve_head(PtArena *a, HeadBuffers *b, int n, size_t T, size_t V, size_t d)
{
	b->enc = pt_arena_bytes(a, sizeof(PtEncoderSeq) * n);
	b->dec = pt_arena_bytes(a, sizeof(PtDecoderSeq) * n);
	b->dec_ids = pt_arena_bytes(a, sizeof(int32_t) * T);
	b->targets = pt_arena_bytes(a, sizeof(int32_t) * T);
	b->weights = pt_arena_floats(a, T);
	b->ce = pt_arena_bytes(a, sizeof(double) * T);
	b->logits = pt_arena_floats(a, T * V);
	b->d_dec_out = pt_arena_floats(a, T * d);
}

double
pt_objective(const PtModel *m, PtWorkspace *ws, const PtExample *ex, int n,
			 double *mean_ce, float **prompt_grads, const float **logits)
{
	const PtConfig *c = &m->cfg;
	size_t		T = 0;
	size_t		V = c->vocab_size,
				d = c->d_model;
	HeadBuffers b;
	PtArena		counter = {0};
	PtPass		pass;
	bool		backward = prompt_grads != NULL;
	double		loss = 0.0;
	size_t		t = 0;

	for (int i = 0; i < n; i++)
	{
		if (ex[i].n_target < 1 || ex[i].n_target > PT_MAX_SEQ_LEN)
		{
			pt_fail(PT_ERR_ARGUMENT, "example %d has %d target tokens; it needs 1 to %d",
					i, ex[i].n_target, PT_MAX_SEQ_LEN);
			return NAN;
		}
		T += (size_t) ex[i].n_target;
	}
	if (T > PT_MAX_ROWS)
	{
		pt_fail(PT_ERR_ARGUMENT, "a batch may hold at most %d target tokens", PT_MAX_ROWS);
		return NAN;
	}
	carve_head(&counter, &b, n, T, V, d);
	if (pt_arena_reserve(&ws->head, counter.used) != 0)
		return NAN;
	carve_head(&ws->head, &b, n, T, V, d);

	/* decoder input = [decoder_start] + target[:-1] (teacher forcing) */
	for (int i = 0; i < n; i++)
	{
		int32_t    *ids = b.dec_ids + t;

		for (int j = 0; j < ex[i].n_target; j++)
		{
			if (ex[i].target_ids[j] < 0 || ex[i].target_ids[j] >= c->vocab_size)
			{
				pt_fail(PT_ERR_ARGUMENT, "target id %d is outside the vocabulary [0, %d)",
						ex[i].target_ids[j], c->vocab_size);
				return NAN;
			}
			ids[j] = j == 0 ? c->decoder_start_token_id : ex[i].target_ids[j - 1];
			b.targets[t + j] = ex[i].target_ids[j];
			b.weights[t + j] = ex[i].weight;
		}
		b.enc[i] = (PtEncoderSeq) {ex[i].prompt, ex[i].prompt_len, ex[i].input_ids, ex[i].n_input};
		b.dec[i] = (PtDecoderSeq) {i, ids, ex[i].n_target, NULL};
		t += ex[i].n_target;
	}

	if (pt_pass_begin(&pass, m, &ws->pass, b.enc, n, b.dec, n, backward) != 0)
		return NAN;
	pt_encoder_forward(&pass);
	pt_decoder_forward(&pass);
	pt_head_logits(m, pass.dec_out, (int) T, b.logits);

	if (logits)
	{
		/* the caller wants the logits themselves: hand them out before the gradient overwrites them */
		if (backward)
		{
			pt_fail(PT_ERR_ARGUMENT, "ask for logits and gradients in separate calls");
			return NAN;
		}
		for (int i = 0, off = 0; i < n; off += ex[i].n_target, i++)
			logits[i] = b.logits + (size_t) off * V;
	}

	pt_cross_entropy(b.logits, (int) T, (int) V, b.targets, b.weights, backward, b.ce);
	t = 0;
	for (int i = 0; i < n; i++)
	{
		double		sum = 0.0;

		for (int j = 0; j < ex[i].n_target; j++)
			sum += b.ce[t + j];
		if (mean_ce)
			mean_ce[i] = sum / ex[i].n_target;
		loss += ex[i].weight * sum;
		t += ex[i].n_target;
	}
	/* NaN is this function's error value: a NaN loss must not pass for one without a message */
	if (!isfinite(loss))
	{
		pt_fail(PT_ERR_NUMERIC, "the loss is %s (the model's weights, the prompt or the "
				"activations hold NaN or infinite values)", isnan(loss) ? "NaN" : "infinite");
		return NAN;
	}

	if (backward)
	{
		pt_head_backward(m, b.logits, (int) T, b.d_dec_out);
		pt_decoder_backward(&pass, b.d_dec_out);
		pt_encoder_backward(&pass);
		/* examples may share one gradient buffer (one prompt, many rows): zero, then add */
		for (int i = 0; i < n; i++)
			if (prompt_grads[i] && ex[i].prompt_len > 0)
				memset(prompt_grads[i], 0, sizeof(float) * ex[i].prompt_len * d);
		for (int i = 0; i < n; i++)
			if (prompt_grads[i] && ex[i].prompt_len > 0)
				pt_pass_prompt_grad(&pass, i, prompt_grads[i], true);
	}
	return loss;
}
