/*
 * classifier.c - classification of a batch of rows by the scores of their
 * labels' target sequences (see classifier.h and task.h).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "classifier.h"
#include "error.h"
#include "head.h"
#include "transformer.h"

/* Rank scoring computes full-vocabulary logits for this many trie nodes at a time. */
#define RANK_HEAD_ROWS 64

/* Where one chunk's per-sequence data lives (carved from ws->head). */
typedef struct ChunkBuffers
{
	PtEncoderSeq *enc;			/* one per (row, prompt) */
	int		   *enc_row;		/* row of each encoder sequence */
	PtDecoderSeq *dec;
	int		   *first_dec;		/* first decoder sequence of each encoder sequence */
	double	   *scores;			/* [n_enc, max_labels] */
	float	   *cand_logits;	/* [PT_MAX_LABELS] one label-token term's candidates */
	/* rank scoring (head_rows = 0 without rank rows): */
	float	   *h;				/* [head_rows, d] gathered trie-node states */
	float	   *logits;			/* [head_rows, V] */
	double	   *lse;			/* [head_rows] log-sum-exp of each logits row */
	int		   *node_enc;		/* [head_rows] encoder sequence of each gathered node */
	int		   *node_id;		/* [head_rows] its node in the task's trie */
} ChunkBuffers;

static void
carve_chunk(PtArena *a, ChunkBuffers *b, int n_enc, int n_dec, int max_labels, int head_rows,
			int d, int V)
{
	b->enc = pt_arena_bytes(a, sizeof(PtEncoderSeq) * n_enc);
	b->enc_row = pt_arena_bytes(a, sizeof(int) * n_enc);
	b->dec = pt_arena_bytes(a, sizeof(PtDecoderSeq) * (n_dec + 1));
	b->first_dec = pt_arena_bytes(a, sizeof(int) * n_enc);
	b->scores = pt_arena_bytes(a, sizeof(double) * n_enc * max_labels);
	b->cand_logits = pt_arena_floats(a, PT_MAX_LABELS);
	b->h = pt_arena_floats(a, (size_t) head_rows * d);
	b->logits = pt_arena_floats(a, (size_t) head_rows * V);
	b->lse = pt_arena_bytes(a, sizeof(double) * (head_rows + 1));
	b->node_enc = pt_arena_bytes(a, sizeof(int) * (head_rows + 1));
	b->node_id = pt_arena_bytes(a, sizeof(int) * (head_rows + 1));
}

/*
 * Label-token scoring of encoder sequence e: sums each label's token
 * log-probabilities, each a softmax over the tokens that can follow the
 * label's prefix.
 */
static void
score_label_tokens(const PtModel *m, const PtPass *pass, const PtScorePlan *plan, int first_dec,
				   float *cand_logits, double *scores, int n_labels)
{
	int			d = m->cfg.d_model;

	for (int j = 0; j < n_labels; j++)
		scores[j] = 0.0;
	for (int t = 0; t < plan->n_terms; t++)
	{
		const PtScoreTerm *term = &plan->terms[t];
		int			row = pass->dec_off[first_dec + term->dec_seq] + term->position;
		const float *h = pass->dec_out + (size_t) row * d;
		int			nc = term->cand_end - term->cand_begin;
		float		own = 0.0f;

		pt_head_token_logits(m, h, plan->cands + term->cand_begin, nc, cand_logits);
		for (int c = 0; c < nc; c++)
			if (plan->cands[term->cand_begin + c] == term->token)
				own = cand_logits[c];
		scores[term->label] += own - pt_log_sum_exp(cand_logits, nc);
	}
}

/*
 * Rank scoring of the n gathered trie nodes in b->h: one product with the
 * whole vocabulary, then each node's terms add their token's log-softmax to
 * their label's score.
 */
static void
rank_flush(const PtModel *m, ChunkBuffers *b, int n, const PtClassifyRow *rows, int max_labels)
{
	int			V = m->cfg.vocab_size;

	if (n <= PT_HEAD_FEW_ROWS)
		pt_head_logits_few(m, b->h, n, b->logits);	/* batch 1: a thin product */
	else
		pt_head_logits(m, b->h, n, b->logits);
#pragma omp parallel for if (n > 1) schedule(static)
	for (int g = 0; g < n; g++)
		b->lse[g] = pt_log_sum_exp(b->logits + (size_t) g * V, V);
	for (int g = 0; g < n; g++)
	{
		int			e = b->node_enc[g],
					node = b->node_id[g];
		const PtLabelTrie *t = &rows[b->enc_row[e]].task->trie;
		const float *logits = b->logits + (size_t) g * V;
		double	   *scores = b->scores + (size_t) e * max_labels;

		for (int i = t->term_begin[node]; i < t->term_begin[node + 1]; i++)
			scores[t->term_label[i]] += logits[t->term_token[i]] - b->lse[g];
	}
}

/* softmax of label scores (log-probabilities, double) into probs (float) */
static void
label_probs(const double *scores, int n, float *probs)
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

/* Decoder rows one prompt of a row needs. */
static int
decoder_rows(const PtClassifyRow *row)
{
	const PtScorePlan *plan = &row->task->plan;
	int			n = 0;

	if (row->scoring == PT_SCORE_RANK)
		return row->task->trie.n_nodes;
	for (int q = 0; q < plan->n_dec; q++)
		n += plan->dec_len[q];
	return n;
}

/* Classifies rows[0..n), which fit one chunk. */
static int
classify_chunk(const PtModel *m, PtWorkspace *ws, const PtClassifyRow *rows, int n,
			   PtClassifyResult *results)
{
	int			n_enc = 0,
				n_dec = 0,
				max_labels = 0,
				rank_nodes = 0,
				head_rows,
				filled = 0,
				e = 0,
				s = 0;
	int			d = m->cfg.d_model,
				V = m->cfg.vocab_size;
	ChunkBuffers b;
	PtArena		counter = {0};
	PtPass		pass;

	for (int i = 0; i < n; i++)
	{
		bool		rank = rows[i].scoring == PT_SCORE_RANK;

		n_enc += rows[i].n_prompts;
		n_dec += rows[i].n_prompts * (rank ? 1 : rows[i].task->plan.n_dec);
		if (rank)
			rank_nodes += rows[i].n_prompts * rows[i].task->trie.n_nodes;
		if (rows[i].task->n_labels > max_labels)
			max_labels = rows[i].task->n_labels;
	}
	head_rows = rank_nodes < RANK_HEAD_ROWS ? rank_nodes : RANK_HEAD_ROWS;
	carve_chunk(&counter, &b, n_enc, n_dec, max_labels, head_rows, d, V);
	if (pt_arena_reserve(&ws->head, counter.used) != 0)
		return -1;
	carve_chunk(&ws->head, &b, n_enc, n_dec, max_labels, head_rows, d, V);

	/*
	 * One encoder sequence per (row, prompt).  Its decoder sequences: the
	 * plan's label prefixes (label tokens), or the task's trie as one tree
	 * (rank).
	 */
	for (int i = 0; i < n; i++)
	{
		const PtTask *task = rows[i].task;

		for (int k = 0; k < rows[i].n_prompts; k++, e++)
		{
			b.enc[e] = (PtEncoderSeq) {rows[i].prompts[k], rows[i].prompt_lens[k], rows[i].ids, rows[i].n_ids};
			b.enc_row[e] = i;
			b.first_dec[e] = s;
			if (rows[i].scoring == PT_SCORE_RANK)
				b.dec[s++] = (PtDecoderSeq) {e, task->trie.ids, task->trie.n_nodes, task->trie.parent};
			else
				for (int q = 0; q < task->plan.n_dec; q++, s++)
					b.dec[s] = (PtDecoderSeq) {e, task->plan.dec_ids[q], task->plan.dec_len[q], NULL};
		}
	}

	if (pt_pass_begin(&pass, m, &ws->pass, b.enc, n_enc, b.dec, n_dec, false) != 0)
		return -1;
	pt_encoder_forward(&pass);
	pt_decoder_forward(&pass);

	for (e = 0; e < n_enc; e++)
	{
		const PtClassifyRow *row = &rows[b.enc_row[e]];
		double	   *scores = b.scores + (size_t) e * max_labels;

		if (row->scoring != PT_SCORE_RANK)
		{
			score_label_tokens(m, &pass, &row->task->plan, b.first_dec[e], b.cand_logits,
							   scores, row->task->n_labels);
			continue;
		}
		/* gather the trie's node states; full products of RANK_HEAD_ROWS nodes at a time */
		for (int j = 0; j < row->task->n_labels; j++)
			scores[j] = 0.0;
		for (int node = 0; node < row->task->trie.n_nodes; node++)
		{
			int			r = pass.dec_off[b.first_dec[e]] + node;

			memcpy(b.h + (size_t) filled * d, pass.dec_out + (size_t) r * d, sizeof(float) * d);
			b.node_enc[filled] = e;
			b.node_id[filled] = node;
			if (++filled == head_rows)
			{
				rank_flush(m, &b, filled, rows, max_labels);
				filled = 0;
			}
		}
	}
	if (filled > 0)
		rank_flush(m, &b, filled, rows, max_labels);

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

			label_probs(b.scores + (size_t) e * max_labels, L, p);
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
		if (rows[i].scoring != PT_SCORE_LABEL_TOKENS && rows[i].scoring != PT_SCORE_RANK)
			return pt_fail(PT_ERR_ARGUMENT, "row %d has unknown scoring %d", i, (int) rows[i].scoring);
	}

	/* chunks bound the activation memory whatever the number of rows */
	while (start < n)
	{
		long		tokens = 0,
					dec_tokens = 0;
		int			end = start;

		while (end < n)
		{
			long		row_tokens = 0,
						row_dec = (long) rows[end].n_prompts * decoder_rows(&rows[end]);

			for (int k = 0; k < rows[end].n_prompts; k++)
				row_tokens += rows[end].prompt_lens[k] + rows[end].n_ids;
			if (end > start && (tokens + row_tokens > PT_CLASSIFY_MAX_TOKENS ||
								dec_tokens + row_dec > PT_CLASSIFY_MAX_TOKENS))
				break;
			tokens += row_tokens;
			dec_tokens += row_dec;
			end++;
		}
		if (classify_chunk(m, ws, rows + start, end - start, results + start) != 0)
			return -1;
		start = end;
	}
	return 0;
}
