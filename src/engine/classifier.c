/*
 * classifier.c - rank classification over a batch of rows (see classifier.h).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define Max(a, b) ((a) > (b) ? (a) : (b))

#include "classifier.h"
#include "error.h"
#include "head.h"
#include "t5.h"

/* Where one chunk's per-sequence data lives (carved from ws->head). */
typedef struct ChunkBuffers
{
	PtEncoderSeq *enc;			/* one per (row, prompt) */
	int		   *enc_row;		/* row of each encoder sequence */
	PtDecoderSeq *dec;
	int		   *first_dec;		/* first decoder sequence of each encoder sequence */
	double	   *scores;			/* [n_enc, max_labels] */
	float	   *logits;			/* candidate logits, or full rows [V] */
} ChunkBuffers;

static void
carve_chunk(PtArena *a, ChunkBuffers *b, int n_enc, int n_dec, int max_labels, size_t logit_floats)
{
	b->enc = pt_arena_bytes(a, sizeof(PtEncoderSeq) * n_enc);
	b->enc_row = pt_arena_bytes(a, sizeof(int) * n_enc);
	b->dec = pt_arena_bytes(a, sizeof(PtDecoderSeq) * (n_dec + 1));
	b->first_dec = pt_arena_bytes(a, sizeof(int) * n_enc);
	b->scores = pt_arena_bytes(a, sizeof(double) * n_enc * max_labels);
	b->logits = pt_arena_floats(a, logit_floats);
}

/* log sum exp of x[0..n) */
static double
log_sum_exp(const float *x, int n)
{
	float		mx = x[0];
	double		s = 0.0;

	for (int i = 1; i < n; i++)
		mx = x[i] > mx ? x[i] : mx;
	for (int i = 0; i < n; i++)
		s += exp((double) x[i] - mx);
	return mx + log(s);
}

/* Sums each label's token log-probabilities for encoder sequence e. */
static void
score_sequence(const PtModel *m, const PtPass *pass, const PtScorePlan *plan, PtScoring scoring,
			   int first_dec, float *cand_logits, double *scores, int n_labels)
{
	int			d = m->cfg.d_model;
	int			V = m->cfg.vocab_size;

	for (int j = 0; j < n_labels; j++)
		scores[j] = 0.0;
	for (int t = 0; t < plan->n_terms; t++)
	{
		const PtScoreTerm *term = &plan->terms[t];
		int			row = pass->dec_off[first_dec + term->dec_seq] + term->position;
		const float *h = pass->dec_out + (size_t) row * d;

		if (scoring == PT_SCORE_FULL_VOCAB)
		{
			/* the full softmax over the vocabulary */
			pt_head_logits(m, h, 1, cand_logits);
			scores[term->label] += cand_logits[term->token] - log_sum_exp(cand_logits, V);
		}
		else
		{
			/* softmax over the tokens that can follow this label prefix */
			int			nc = term->cand_end - term->cand_begin;
			float		own = 0.0f;

			pt_head_token_logits(m, h, plan->cands + term->cand_begin, nc, cand_logits);
			for (int c = 0; c < nc; c++)
				if (plan->cands[term->cand_begin + c] == term->token)
					own = cand_logits[c];
			scores[term->label] += own - log_sum_exp(cand_logits, nc);
		}
	}
}

/* softmax of label scores into probs (float) */
static void
scores_to_probs(const double *scores, int n, float *probs)
{
	double		mx = scores[0],
				s = 0.0;

	for (int j = 1; j < n; j++)
		mx = fmax(mx, scores[j]);
	for (int j = 0; j < n; j++)
		s += exp(scores[j] - mx);
	for (int j = 0; j < n; j++)
		probs[j] = (float) (exp(scores[j] - mx) / s);
}

/* Classifies rows[0..n), which fit one chunk. */
static int
classify_chunk(const PtModel *m, PtWorkspace *ws, const PtClassifyRow *rows, int n,
			   PtClassifyResult *results)
{
	int			n_enc = 0,
				n_dec = 0,
				max_labels = 0,
				e = 0,
				s = 0;
	size_t		logit_floats = PT_MAX_LABELS;
	ChunkBuffers b;
	PtArena		counter = {0};
	PtPass		pass;

	for (int i = 0; i < n; i++)
	{
		n_enc += rows[i].n_prompts;
		n_dec += rows[i].n_prompts * rows[i].task->plan[rows[i].scoring].n_dec;
		if (rows[i].scoring == PT_SCORE_FULL_VOCAB)
			logit_floats = Max(logit_floats, (size_t) m->cfg.vocab_size);
		if (rows[i].task->n_labels > max_labels)
			max_labels = rows[i].task->n_labels;
	}
	carve_chunk(&counter, &b, n_enc, n_dec, max_labels, logit_floats);
	if (pt_arena_reserve(&ws->head, counter.used) != 0)
		return -1;
	carve_chunk(&ws->head, &b, n_enc, n_dec, max_labels, logit_floats);

	/* one encoder sequence per (row, prompt); its label prefixes as decoder sequences */
	for (int i = 0; i < n; i++)
	{
		const PtScorePlan *plan = &rows[i].task->plan[rows[i].scoring];

		for (int k = 0; k < rows[i].n_prompts; k++, e++)
		{
			b.enc[e] = (PtEncoderSeq) {rows[i].prompts[k], rows[i].prompt_lens[k], rows[i].ids, rows[i].n_ids};
			b.enc_row[e] = i;
			b.first_dec[e] = s;
			for (int q = 0; q < plan->n_dec; q++, s++)
				b.dec[s] = (PtDecoderSeq) {e, plan->dec_ids[q], plan->dec_len[q]};
		}
	}

	if (pt_pass_begin(&pass, m, &ws->pass, b.enc, n_enc, b.dec, n_dec, false) != 0)
		return -1;
	pt_encoder_forward(&pass);
	pt_decoder_forward(&pass);

	for (e = 0; e < n_enc; e++)
	{
		const PtClassifyRow *row = &rows[b.enc_row[e]];
		const PtTask *task = row->task;

		score_sequence(m, &pass, &task->plan[row->scoring], row->scoring, b.first_dec[e], b.logits,
					   b.scores + (size_t) e * max_labels, task->n_labels);
	}

	/* combine each row's prompts: majority vote, ties by mean probability */
	e = 0;
	for (int i = 0; i < n; i++)
	{
		int			L = rows[i].task->n_labels;
		int			votes[PT_MAX_LABELS] = {0};
		float		p[PT_MAX_LABELS];
		int			best = 0;

		for (int j = 0; j < L; j++)
			results[i].probs[j] = 0.0f;
		for (int k = 0; k < rows[i].n_prompts; k++, e++)
		{
			int			winner = 0;

			scores_to_probs(b.scores + (size_t) e * max_labels, L, p);
			for (int j = 0; j < L; j++)
			{
				results[i].probs[j] += p[j] / rows[i].n_prompts;
				if (p[j] > p[winner])
					winner = j;
			}
			votes[winner]++;
		}
		for (int j = 1; j < L; j++)
			if (votes[j] > votes[best] ||
				(votes[j] == votes[best] && results[i].probs[j] > results[i].probs[best]))
				best = j;
		results[i].label = best;
	}
	return 0;
}

int
pt_classify(const PtModel *m, PtWorkspace *ws, const PtClassifyRow *rows, int n,
			PtClassifyResult *results)
{
	int			start = 0;

	for (int i = 0; i < n; i++)
	{
		if (rows[i].task == NULL || rows[i].n_prompts < 1 || rows[i].n_ids < 1)
			return pt_fail(PT_ERR_ARGUMENT, "row %d has no task, prompt or input", i);
		if (rows[i].scoring != PT_SCORE_LABEL_TOKENS && rows[i].scoring != PT_SCORE_FULL_VOCAB)
			return pt_fail(PT_ERR_ARGUMENT, "row %d has unknown scoring %d", i, (int) rows[i].scoring);
	}

	/* chunks bound the activation memory whatever the number of rows */
	while (start < n)
	{
		long		tokens = 0;
		int			end = start;

		while (end < n)
		{
			long		row_tokens = 0;

			for (int k = 0; k < rows[end].n_prompts; k++)
				row_tokens += rows[end].prompt_lens[k] + rows[end].n_ids;
			if (end > start && tokens + row_tokens > PT_CLASSIFY_MAX_TOKENS)
				break;
			tokens += row_tokens;
			end++;
		}
		if (classify_chunk(m, ws, rows + start, end - start, results + start) != 0)
			return -1;
		start = end;
	}
	return 0;
}
