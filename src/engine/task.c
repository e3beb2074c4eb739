/*
 * task.c - labels, input encoding and score plans (see task.h).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "task.h"

int
pt_encode_input(const PtModel *m, int max_input_tokens, const char *text, size_t len, int32_t *ids)
{
	int			n;

	if (max_input_tokens < 1)
		return pt_fail(PT_ERR_ARGUMENT, "max_input_tokens must be at least 1");
	n = max_input_tokens > 1 ? pt_tokenizer_encode(m->tokenizer, text, len, ids, max_input_tokens - 1) : 0;
	if (n < 0)
		return -1;
	ids[n++] = m->cfg.eos_token_id;
	return n;
}

int
pt_encode_target(const PtModel *m, const char *text, size_t len, int32_t *ids)
{
	return pt_encode_input(m, PT_MAX_TARGET_TOKENS, text, len, ids);
}

int
pt_objective_parse(const char *name, PtObjectiveKind *out)
{
	if (strcmp(name, "classification") == 0)
		*out = PT_OBJECTIVE_CLASSIFICATION;
	else if (strcmp(name, "generation") == 0)
		*out = PT_OBJECTIVE_GENERATION;
	else
		return pt_fail(PT_ERR_ARGUMENT, "unknown objective \"%s\" (use classification or generation)", name);
	return 0;
}

const char *
pt_objective_name(PtObjectiveKind objective)
{
	return objective == PT_OBJECTIVE_GENERATION ? "generation" : "classification";
}

/* True when a[0..n) == b[0..n) */
static bool
same_prefix(const int32_t *a, const int32_t *b, int n)
{
	return memcmp(a, b, sizeof(int32_t) * n) == 0;
}

static void
free_plan(PtScorePlan *p)
{
	for (int i = 0; i < p->n_dec; i++)
		free(p->dec_ids[i]);
	free(p->dec_ids);
	free(p->dec_len);
	free(p->terms);
	free(p->cands);
	memset(p, 0, sizeof(*p));
}

/*
 * Builds the label-token plan.  For label j at position t, the competing
 * tokens are the t-th tokens of all labels that share j's first t tokens.
 */
static int
build_plan(const PtModel *m, PtTask *task, PtScorePlan *p)
{
	int			L = task->n_labels;
	int			max_terms = 0;
	int		   *need_len = pt_calloc(L, sizeof(int));	/* decoder inputs label j needs */
	bool	   *kept = pt_calloc(L, sizeof(bool));

	if (need_len == NULL || kept == NULL)
		goto fail;
	for (int j = 0; j < L; j++)
		max_terms += task->labels[j].n_target;
	p->terms = pt_calloc(max_terms, sizeof(PtScoreTerm));
	p->cands = pt_calloc((size_t) max_terms * L, sizeof(int32_t));
	p->dec_ids = pt_calloc(L, sizeof(int32_t *));
	p->dec_len = pt_calloc(L, sizeof(int));
	if (!p->terms || !p->cands || !p->dec_ids || !p->dec_len)
		goto fail;

	/* 1. the terms, with their competitors, and how far each label's decoder must run */
	for (int j = 0; j < L; j++)
	{
		const PtLabel *lj = &task->labels[j];

		for (int t = 0; t < lj->n_target; t++)
		{
			PtScoreTerm *term = &p->terms[p->n_terms];
			int			begin = p->n_cands;

			for (int k = 0; k < L; k++)
			{
				const PtLabel *lk = &task->labels[k];
				bool		dup = false;

				if (lk->n_target <= t || !same_prefix(lk->target, lj->target, t))
					continue;
				for (int c = begin; c < p->n_cands && !dup; c++)
					dup = p->cands[c] == lk->target[t];
				if (!dup)
					p->cands[p->n_cands++] = lk->target[t];
			}
			if (p->n_cands - begin < 2)
			{
				/* the only possible token: probability 1 within the label set */
				p->n_cands = begin;
				continue;
			}
			*term = (PtScoreTerm) {j, -1, t, lj->target[t], begin, p->n_cands};
			p->n_terms++;
			need_len[j] = t + 1;
		}
	}

	/* 2. keep the decoder inputs not contained in a longer (or earlier equal) one */
	for (int j = 0; j < L; j++)
	{
		kept[j] = need_len[j] > 0;
		for (int k = 0; k < L && kept[j]; k++)
		{
			if (k == j || need_len[k] < need_len[j])
				continue;
			if (same_prefix(task->labels[k].target, task->labels[j].target, need_len[j] - 1) &&
				(need_len[k] > need_len[j] || k < j))
				kept[j] = false;
		}
	}
	for (int j = 0; j < L; j++)
	{
		int32_t    *ids;

		if (!kept[j])
			continue;
		ids = pt_calloc(need_len[j], sizeof(int32_t));
		if (ids == NULL)
			goto fail;
		ids[0] = m->cfg.decoder_start_token_id;
		memcpy(ids + 1, task->labels[j].target, sizeof(int32_t) * (need_len[j] - 1));
		p->dec_ids[p->n_dec] = ids;
		p->dec_len[p->n_dec] = need_len[j];
		p->n_dec++;
	}

	/* 3. each term reads the decoder sequence that has its prefix */
	for (int i = 0; i < p->n_terms; i++)
	{
		PtScoreTerm *term = &p->terms[i];
		const int32_t *prefix = task->labels[term->label].target;

		for (int s = 0; s < p->n_dec && term->dec_seq < 0; s++)
			if (p->dec_len[s] > term->position &&
				same_prefix(p->dec_ids[s] + 1, prefix, term->position))
				term->dec_seq = s;
		if (term->dec_seq < 0)
		{
			pt_fail(PT_ERR_INTERNAL, "score plan: no decoder input for label %d position %d",
					term->label, term->position);
			goto fail;
		}
	}
	free(need_len);
	free(kept);
	return 0;

fail:
	free(need_len);
	free(kept);
	free_plan(p);
	return -1;
}

static void
free_trie(PtLabelTrie *t)
{
	free(t->ids);
	free(t->parent);
	free(t->term_begin);
	free(t->term_label);
	free(t->term_token);
	memset(t, 0, sizeof(*t));
}

/*
 * Builds the rank trie (see task.h).  A label of n target tokens walks n
 * nodes: the root, then one per token but the last (EOS is predicted, never
 * fed).  Children are found through first-child / next-sibling lists, so the
 * build is linear in the number of target tokens.
 */
static int
build_trie(const PtModel *m, PtTask *task, PtLabelTrie *t)
{
	int			L = task->n_labels;
	int			n_terms = 0;
	int		   *first_child = NULL,
			   *next_sibling = NULL,
			   *term_node = NULL,
			   *fill = NULL;

	for (int j = 0; j < L; j++)
		n_terms += task->labels[j].n_target;
	/* at most one node per term: the root, plus one per fed token */
	t->ids = pt_calloc(n_terms, sizeof(int32_t));
	t->parent = pt_calloc(n_terms, sizeof(int));
	t->term_begin = pt_calloc(n_terms + 1, sizeof(int));
	t->term_label = pt_calloc(n_terms, sizeof(int));
	t->term_token = pt_calloc(n_terms, sizeof(int32_t));
	first_child = pt_calloc(n_terms, sizeof(int));
	next_sibling = pt_calloc(n_terms, sizeof(int));
	term_node = pt_calloc(n_terms, sizeof(int));
	fill = pt_calloc(n_terms + 1, sizeof(int));
	if (!t->ids || !t->parent || !t->term_begin || !t->term_label || !t->term_token ||
		!first_child || !next_sibling || !term_node || !fill)
		goto fail;

	/* 1. the nodes, and the node of each (label, position) term in label order */
	t->ids[0] = m->cfg.decoder_start_token_id;
	t->parent[0] = -1;
	first_child[0] = next_sibling[0] = -1;
	t->n_nodes = 1;
	for (int j = 0, term = 0; j < L; j++)
	{
		const PtLabel *lj = &task->labels[j];
		int			node = 0;

		for (int pos = 0; pos < lj->n_target; pos++)
		{
			int			child;

			term_node[term++] = node;
			if (pos + 1 == lj->n_target)
				break;
			/* descend by the token just scored: it is the next node's input */
			for (child = first_child[node]; child >= 0; child = next_sibling[child])
				if (t->ids[child] == lj->target[pos])
					break;
			if (child < 0)
			{
				child = t->n_nodes++;
				t->ids[child] = lj->target[pos];
				t->parent[child] = node;
				first_child[child] = -1;
				next_sibling[child] = first_child[node];
				first_child[node] = child;
			}
			node = child;
		}
	}

	/* 2. group the terms by node (counting sort, stable in label order) */
	for (int i = 0; i < n_terms; i++)
		t->term_begin[term_node[i] + 1]++;
	for (int n = 0; n < t->n_nodes; n++)
		t->term_begin[n + 1] += t->term_begin[n];
	memcpy(fill, t->term_begin, sizeof(int) * (t->n_nodes + 1));
	for (int j = 0, term = 0; j < L; j++)
		for (int pos = 0; pos < task->labels[j].n_target; pos++, term++)
		{
			int			slot = fill[term_node[term]]++;

			t->term_label[slot] = j;
			t->term_token[slot] = task->labels[j].target[pos];
		}

	free(first_child);
	free(next_sibling);
	free(term_node);
	free(fill);
	return 0;

fail:
	free(first_child);
	free(next_sibling);
	free(term_node);
	free(fill);
	free_trie(t);
	return -1;
}

int
pt_scoring_parse(const char *name, PtScoring *out)
{
	if (strcmp(name, "label_tokens") == 0)
		*out = PT_SCORE_LABEL_TOKENS;
	else if (strcmp(name, "rank") == 0)
		*out = PT_SCORE_RANK;
	else
		return pt_fail(PT_ERR_ARGUMENT, "unknown scoring \"%s\" (use label_tokens or rank)", name);
	return 0;
}

const char *
pt_scoring_name(PtScoring scoring)
{
	return scoring == PT_SCORE_RANK ? "rank" : "label_tokens";
}

/* labels as texts (tokenized here), or as token ids (label_ids != NULL, named by index) */
static PtTask *
task_new(const PtModel *m, const char *const *labels, const int32_t *const *label_ids,
		 const int *n_label_ids, int n_labels, int max_input_tokens)
{
	PtTask	   *task;

	if (n_labels < 2 || n_labels > PT_MAX_LABELS)
	{
		pt_fail(PT_ERR_ARGUMENT, "a task needs 2 to %d labels (got %d)", PT_MAX_LABELS, n_labels);
		return NULL;
	}
	if (max_input_tokens < PT_MIN_INPUT_TOKENS || max_input_tokens > PT_MAX_INPUT_TOKENS)
	{
		pt_fail(PT_ERR_ARGUMENT, "max_input_tokens must be between %d and %d (got %d)",
				PT_MIN_INPUT_TOKENS, PT_MAX_INPUT_TOKENS, max_input_tokens);
		return NULL;
	}
	task = pt_calloc(1, sizeof(PtTask));
	if (task == NULL)
		return NULL;
	task->max_input_tokens = max_input_tokens;
	task->labels = pt_calloc(n_labels, sizeof(PtLabel));
	if (task->labels == NULL)
		goto fail;
	for (int j = 0; j < n_labels; j++)
	{
		PtLabel    *l = &task->labels[j];
		char		name[16];
		const char *text = labels ? labels[j] : name;
		size_t		len;
		int32_t		ids[PT_MAX_LABEL_TOKENS];
		int			n;

		snprintf(name, sizeof(name), "%d", j);
		len = strlen(text);
		task->n_labels = j + 1;
		if (len > PT_MAX_LABEL_BYTES)
		{
			pt_fail(PT_ERR_ARGUMENT, "label \"%.40s...\" is longer than %d bytes", text, PT_MAX_LABEL_BYTES);
			goto fail;
		}
		l->text = pt_strdup(text);
		if (label_ids == NULL)
			n = pt_tokenizer_encode(m->tokenizer, text, len, ids, PT_MAX_LABEL_TOKENS);
		else
		{
			n = n_label_ids[j] < PT_MAX_LABEL_TOKENS ? n_label_ids[j] : PT_MAX_LABEL_TOKENS;
			for (int t = 0; t < n; t++)
				if ((ids[t] = label_ids[j][t]) < 0 || ids[t] >= m->cfg.vocab_size)
				{
					pt_fail(PT_ERR_ARGUMENT, "label %d has token id %d outside the vocabulary", j, ids[t]);
					goto fail;
				}
		}
		if (l->text == NULL || n < 0)
			goto fail;
		if (n == PT_MAX_LABEL_TOKENS)
		{
			pt_fail(PT_ERR_ARGUMENT, "label \"%s\" has more than %d tokens", text, PT_MAX_LABEL_TOKENS - 1);
			goto fail;
		}
		l->target = pt_calloc(n + 1, sizeof(int32_t));
		if (l->target == NULL)
			goto fail;
		memcpy(l->target, ids, sizeof(int32_t) * n);
		l->target[n] = m->cfg.eos_token_id;
		l->n_target = n + 1;
		for (int k = 0; k < j; k++)
			if (task->labels[k].n_target == l->n_target &&
				same_prefix(task->labels[k].target, l->target, l->n_target))
			{
				pt_fail(PT_ERR_ARGUMENT, "labels \"%s\" and \"%s\" have the same tokens, so the "
						"model cannot tell them apart", task->labels[k].text, l->text);
				goto fail;
			}
	}
	if (build_plan(m, task, &task->plan) != 0 || build_trie(m, task, &task->trie) != 0)
		goto fail;
	return task;

fail:
	pt_task_free(task);
	return NULL;
}

PtTask *
pt_task_new(const PtModel *m, const char *const *labels, int n_labels, int max_input_tokens)
{
	return task_new(m, labels, NULL, NULL, n_labels, max_input_tokens);
}

PtTask *
pt_task_new_from_ids(const PtModel *m, const int32_t *const *label_ids, const int *n_label_ids,
					 int n_labels, int max_input_tokens)
{
	return task_new(m, NULL, label_ids, n_label_ids, n_labels, max_input_tokens);
}

PtTask *
pt_task_new_generation(int max_input_tokens)
{
	PtTask	   *task;

	if (max_input_tokens < PT_MIN_INPUT_TOKENS || max_input_tokens > PT_MAX_INPUT_TOKENS)
	{
		pt_fail(PT_ERR_ARGUMENT, "max_input_tokens must be between %d and %d (got %d)",
				PT_MIN_INPUT_TOKENS, PT_MAX_INPUT_TOKENS, max_input_tokens);
		return NULL;
	}
	task = pt_calloc(1, sizeof(PtTask));
	if (task != NULL)
		task->max_input_tokens = max_input_tokens;
	return task;
}

void
pt_task_free(PtTask *task)
{
	if (task == NULL)
		return;
	for (int j = 0; j < task->n_labels; j++)
	{
		free(task->labels[j].text);
		free(task->labels[j].target);
	}
	free(task->labels);
	free_plan(&task->plan);
	free_trie(&task->trie);
	free(task);
}

int
pt_task_label_index(const PtTask *task, const char *text)
{
	for (int j = 0; j < task->n_labels; j++)
		if (strcmp(task->labels[j].text, text) == 0)
			return j;
	return -1;
}
