/*
 * test_prompt.c - prompt files: round trips, corruption, model mismatch;
 * score plans; optimizer steps against a double-precision reference.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "helpers.h"
#include "optimizer.h"
#include "prompt.h"
#include "task.h"
#include "trainer.h"
#include "unit.h"

static const char *spam_labels[] = {"ham", "spam"};

static PtPrompt *
make_prompt(const PtModel *m, const PtTask *task, int length, uint64_t seed)
{
	PtRng		rng;

	pt_rng_seed(&rng, seed);
	return pt_prompt_new(m, task, length, PT_INIT_SAMPLED_VOCAB, &rng);
}

void		test_prompt_roundtrip(void);
void
test_prompt_roundtrip(void)
{
	const char *dir = unit_model_dir("tiny-gated");
	PtModel    *m;
	PtTask	   *task;
	PtPrompt   *p,
			   *q,
			  **from_file;
	uint8_t    *blob;
	size_t		len,
				used = 0;
	int			n = 0;
	char		path[1024];
	PtPrompt   *pair[2];

	REQUIRE(dir != NULL);
	m = pt_model_load(dir);
	REQUIRE(m != NULL);
	task = pt_task_new(m, spam_labels, 2, 64);
	REQUIRE(task != NULL);
	p = make_prompt(m, task, 7, 1);
	REQUIRE(p != NULL);
	p->metadata = pt_strdup("{\"note\": \"unit test\"}");

	REQUIRE(pt_prompt_encode(p, &blob, &len) == 0);
	q = pt_prompt_decode(blob, len, &used);
	REQUIREF(q != NULL, "%s", pt_error_message());
	CHECK(used == len);
	CHECK(q->length == 7 && q->d_model == m->cfg.d_model && q->max_input_tokens == 64);
	CHECK(q->n_labels == 2 && strcmp(q->labels[0], "ham") == 0 && strcmp(q->labels[1], "spam") == 0);
	CHECK(memcmp(q->values, p->values, sizeof(float) * 7 * m->cfg.d_model) == 0);
	CHECK(q->metadata && strcmp(q->metadata, p->metadata) == 0);
	CHECK(pt_prompt_check_model(q, m) == 0);

	/* a file of two prompts (an ensemble) reads back as two */
	snprintf(path, sizeof(path), "%s/ensemble.bin", unit_temp_dir());
	pair[0] = p;
	pair[1] = q;
	REQUIRE(pt_prompt_file_write(path, pair, 2) == 0);
	from_file = pt_prompt_file_read(path, &n);
	REQUIREF(from_file != NULL, "%s", pt_error_message());
	CHECK(n == 2);
	CHECK(memcmp(from_file[1]->values, p->values, sizeof(float) * 7 * m->cfg.d_model) == 0);

	pt_prompt_array_free(from_file, n);
	free(blob);
	pt_prompt_free(p);
	pt_prompt_free(q);
	pt_task_free(task);
	pt_model_free(m);
}

void		test_prompt_corruption(void);
void
test_prompt_corruption(void)
{
	const char *dir = unit_model_dir("tiny-gated");
	const char *other_dir = unit_model_dir("tiny-relu");
	PtModel    *m,
			   *other;
	PtTask	   *task;
	PtPrompt   *p,
			   *q;
	uint8_t    *blob;
	size_t		len;
	int			accepted = 0;

	REQUIRE(dir && other_dir);
	m = pt_model_load(dir);
	other = pt_model_load(other_dir);
	REQUIRE(m && other);
	task = pt_task_new(m, spam_labels, 2, 64);
	p = make_prompt(m, task, 3, 2);
	REQUIRE(pt_prompt_encode(p, &blob, &len) == 0);

	/* every truncation is an error */
	for (size_t cut = 0; cut < len; cut++)
		if ((q = pt_prompt_decode(blob, cut, NULL)) != NULL)
		{
			accepted++;
			pt_prompt_free(q);
		}
	CHECKF(accepted == 0, "%d truncated prompts were accepted", accepted);

	/* every single flipped bit is detected */
	for (size_t i = 0; i < len; i++)
		for (int bit = 0; bit < 8; bit += 3)
		{
			blob[i] ^= (uint8_t) (1 << bit);
			if ((q = pt_prompt_decode(blob, len, NULL)) != NULL)
			{
				accepted++;
				pt_prompt_free(q);
			}
			else
				CHECK(pt_error_kind() == PT_ERR_FORMAT);
			blob[i] ^= (uint8_t) (1 << bit);
		}
	CHECKF(accepted == 0, "%d corrupted prompts were accepted", accepted);

	/* intact, but for another model: a mismatch error naming both */
	q = pt_prompt_decode(blob, len, NULL);
	REQUIRE(q != NULL);
	CHECK(pt_prompt_check_model(q, other) != 0 && pt_error_kind() == PT_ERR_MISMATCH);
	pt_prompt_free(q);

	/* a valid CRC does not make NaN values acceptable */
	p->values[1] = NAN;
	free(blob);
	REQUIRE(pt_prompt_encode(p, &blob, &len) == 0);
	CHECK(pt_prompt_decode(blob, len, NULL) == NULL && strstr(pt_error_message(), "finite"));

	/* garbage and empty input */
	CHECK(pt_prompt_decode((const uint8_t *) "PTPROMPT", 8, NULL) == NULL);
	CHECK(pt_prompt_decode((const uint8_t *) "", 0, NULL) == NULL);
	CHECK(pt_prompt_file_read("/nonexistent/p.bin", &accepted) == NULL && pt_error_kind() == PT_ERR_IO);

	free(blob);
	pt_prompt_free(p);
	pt_task_free(task);
	pt_model_free(m);
	pt_model_free(other);
}

/*
 * Every (label, position) is exactly one term of the rank trie, at the node
 * whose path from the root spells decoder_start + the label's prefix.
 */
static void
check_trie(const PtModel *m, const PtTask *task)
{
	const PtLabelTrie *t = &task->trie;
	int			n_terms = 0;

	CHECK(t->n_nodes >= 1 && t->parent[0] == -1 && t->ids[0] == m->cfg.decoder_start_token_id);
	for (int i = 1; i < t->n_nodes; i++)
		CHECK(t->parent[i] >= 0 && t->parent[i] < i);
	for (int j = 0; j < task->n_labels; j++)
		n_terms += task->labels[j].n_target;
	CHECK(t->term_begin[0] == 0 && t->term_begin[t->n_nodes] == n_terms);
	for (int j = 0; j < task->n_labels; j++)
	{
		const PtLabel *l = &task->labels[j];

		for (int pos = 0; pos < l->n_target; pos++)
		{
			int			found = 0;

			for (int node = 0; node < t->n_nodes; node++)
				for (int i = t->term_begin[node]; i < t->term_begin[node + 1]; i++)
				{
					int32_t		path[64];
					int			depth = 0;

					if (t->term_label[i] != j || t->term_token[i] != l->target[pos])
						continue;
					for (int a = node; a > 0; a = t->parent[a])
						path[depth++] = t->ids[a];
					if (depth != pos)
						continue;
					/* path holds the prefix backwards */
					for (int q = 0; q < depth; q++)
						if (path[depth - 1 - q] != l->target[q])
							depth = -1;
					found += depth == pos;
				}
			CHECKF(found == 1, "label %d position %d is %d terms of the trie", j, pos, found);
		}
	}
}

void		test_score_plans(void);
void
test_score_plans(void)
{
	const char *dir = unit_model_dir("tiny-gated");
	static const char *cities[] = {"new york", "new jersey", "boston", "new"};
	static const char *dupes[] = {"spam", "spam"};
	PtModel    *m;
	PtTask	   *task;
	const PtScorePlan *plan;
	int32_t		ids[64];
	int			n;

	REQUIRE(dir != NULL);
	m = pt_model_load(dir);
	REQUIRE(m != NULL);

	/* labels that tokenize to different first tokens need one decoder step */
	task = pt_task_new(m, spam_labels, 2, 64);
	REQUIRE(task != NULL);
	plan = &task->plan;
	if (task->labels[0].target[0] != task->labels[1].target[0])
	{
		CHECK(plan->n_dec == 1 && plan->dec_len[0] == 1);
		CHECK(plan->n_terms == 2);
	}
	for (int t = 0; t < plan->n_terms; t++)
		CHECK(plan->terms[t].cand_end - plan->terms[t].cand_begin >= 2);
	/* rank scoring scores every target token; distinct first tokens branch at the root */
	CHECK(task->trie.term_begin[task->trie.n_nodes] == task->labels[0].n_target + task->labels[1].n_target);
	check_trie(m, task);
	pt_task_free(task);

	/* shared prefixes: "new" vs "new york" vs "new jersey" branch after "new" */
	task = pt_task_new(m, cities, 4, 64);
	REQUIREF(task != NULL, "%s", pt_error_message());
	plan = &task->plan;
	for (int t = 0; t < plan->n_terms; t++)
	{
		const PtScoreTerm *term = &plan->terms[t];
		const PtLabel *l = &task->labels[term->label];

		/* the decoder input that serves the term starts with the label's prefix */
		CHECK(plan->dec_len[term->dec_seq] > term->position);
		CHECK(memcmp(plan->dec_ids[term->dec_seq] + 1, l->target, sizeof(int32_t) * term->position) == 0);
		CHECK(plan->dec_ids[term->dec_seq][0] == m->cfg.decoder_start_token_id);
		CHECK(l->target[term->position] == term->token);
	}
	CHECK(plan->n_dec < 4);		/* prefixes are shared, not repeated */
	check_trie(m, task);
	{
		/* one node per distinct decoder prefix: the root, "new", "new york", ... */
		int			distinct = 0;

		for (int j = 0; j < 4; j++)
			for (int t = 1; t < task->labels[j].n_target; t++)
			{
				bool		seen = false;

				for (int k = 0; k < j && !seen; k++)
					seen = task->labels[k].n_target > t &&
						memcmp(task->labels[k].target, task->labels[j].target, sizeof(int32_t) * t) == 0;
				distinct += !seen;
			}
		CHECKF(task->trie.n_nodes == 1 + distinct, "trie has %d nodes, %d distinct prefixes",
			   task->trie.n_nodes, 1 + distinct);
		CHECK(task->trie.n_nodes < 1 + (task->labels[0].n_target - 1) + (task->labels[1].n_target - 1) +
			  (task->labels[2].n_target - 1) + (task->labels[3].n_target - 1));
	}
	pt_task_free(task);

	/* labels that tokenize identically are refused */
	CHECK(pt_task_new(m, dupes, 2, 64) == NULL && strstr(pt_error_message(), "same tokens"));
	CHECK(pt_task_new(m, dupes, 1, 64) == NULL);

	/* inputs are truncated to max_input_tokens including EOS */
	n = pt_encode_input(m, 5, "a long sentence with many words in it", 38, ids);
	CHECK(n == 5 && ids[4] == m->cfg.eos_token_id);
	n = pt_encode_input(m, 5, "", 0, ids);
	CHECK(n == 1 && ids[0] == m->cfg.eos_token_id);
	pt_model_free(m);
}

/*
 * Adafactor as T5X's apply_param_gradient computes it (t5x/adafactor.py),
 * written again in double precision: factored second moment when
 * min(R, C) >= min_dim, else a full one; update clipping at RMS 1; weight
 * decay p = (1 - wd) p - lr y.  (ptune_py/t5x_adafactor.py is the
 * independent float64 reference the cross suite compares against.)
 */
static void
reference_adafactor(int R, int C, int min_dim, int steps, const float *grads, double *p)
{
	double	   *row = calloc(R, sizeof(double)),
			   *col = calloc(C, sizeof(double)),
			   *v = calloc((size_t) R * C, sizeof(double)),
			   *y = calloc((size_t) R * C, sizeof(double));
	bool		factored = (R < C ? R : C) >= min_dim;

	for (int t = 1; t <= steps; t++)
	{
		const float *g = grads + (size_t) (t - 1) * R * C;
		double		decay = 1.0 - pow(t, -0.8),
					smean = 0,
					ss = 0,
					denom;

		for (int i = 0; i < R; i++)
		{
			double		s = 0;

			for (int j = 0; j < C; j++)
				s += (double) g[i * C + j] * g[i * C + j] + 1e-30;
			row[i] = decay * row[i] + (1 - decay) * s / C;
			smean += R <= C ? row[i] / R : 0;
		}
		for (int j = 0; j < C; j++)
		{
			double		s = 0;

			for (int i = 0; i < R; i++)
				s += (double) g[i * C + j] * g[i * C + j] + 1e-30;
			col[j] = decay * col[j] + (1 - decay) * s / R;
			smean += R > C ? col[j] / C : 0;
		}
		for (int i = 0; i < R; i++)
			for (int j = 0; j < C; j++)
			{
				double		gij = g[i * C + j];

				v[i * C + j] = decay * v[i * C + j] + (1 - decay) * (gij * gij + 1e-30);
				y[i * C + j] = gij / sqrt(factored ? row[i] * col[j] / smean : v[i * C + j]);
				ss += y[i * C + j] * y[i * C + j];
			}
		denom = fmax(1.0, sqrt(ss / (R * C)));
		for (int k = 0; k < R * C; k++)
			p[k] = (1 - 1e-5) * p[k] - 0.3 * y[k] / denom;
	}
	free(row);
	free(col);
	free(v);
	free(y);
}

static void
reference_adam(int n, int steps, const float *grads, double *p)
{
	double	   *m = calloc(n, sizeof(double)),
			   *v = calloc(n, sizeof(double));

	for (int t = 1; t <= steps; t++)
		for (int k = 0; k < n; k++)
		{
			double		g = grads[(size_t) (t - 1) * n + k];

			m[k] = 0.9 * m[k] + 0.1 * g;
			v[k] = 0.999 * v[k] + 0.001 * g * g;
			p[k] -= 0.05 * (m[k] / (1 - pow(0.9, t))) / (sqrt(v[k] / (1 - pow(0.999, t))) + 1e-8);
		}
	free(m);
	free(v);
}

/* Steps one optimizer and its reference over the same gradients; the worst difference. */
static double
compare_optimizer(PtOptimizerKind kind, int R, int C, int min_dim, int steps, double *moved)
{
	PtOptimizerOptions oo;
	PtOptimizer *opt;
	float	   *grads = malloc(sizeof(float) * steps * R * C),
			   *p = malloc(sizeof(float) * R * C);
	double	   *ref = malloc(sizeof(double) * R * C),
			   *initial = malloc(sizeof(double) * R * C),
				worst = 0;
	uint64_t	seed = 3 + R * 131 + C;

	pt_optimizer_options_default(&oo, kind);
	oo.min_dim_size_to_factor = min_dim;
	opt = pt_optimizer_new(&oo, R, C);
	for (int k = 0; k < steps * R * C; k++)
		grads[k] = test_uniform(&seed, -1.0f, 1.0f) * (k % 7 == 0 ? 10.0f : 0.1f);
	for (int k = 0; k < R * C; k++)
		initial[k] = ref[k] = p[k] = test_uniform(&seed, -0.5f, 0.5f);
	for (int t = 0; t < steps; t++)
		pt_optimizer_step(opt, p, grads + (size_t) t * R * C);
	if (kind == PT_OPT_ADAFACTOR)
		reference_adafactor(R, C, min_dim, steps, grads, ref);
	else
		reference_adam(R * C, steps, grads, ref);
	*moved = 0;
	for (int k = 0; k < R * C; k++)
	{
		worst = fmax(worst, fabs(p[k] - ref[k]));
		*moved = fmax(*moved, fabs(p[k] - initial[k]));
	}
	pt_optimizer_free(opt);
	free(grads);
	free(p);
	free(ref);
	free(initial);
	return worst;
}

void		test_optimizers(void);
void
test_optimizers(void)
{
	/* rows x cols, factoring threshold: unfactored (T5X's default 128), factored wide and tall */
	static const int cases[][3] = {{5, 8, 128}, {5, 8, 1}, {9, 4, 4}, {3, 3, 0}};
	double		moved;

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++)
	{
		double		worst = compare_optimizer(PT_OPT_ADAFACTOR, cases[c][0], cases[c][1], cases[c][2], 6, &moved);

		CHECKF(worst < 1e-6, "Adafactor %dx%d (factor at %d) differs from the reference by %.3g",
			   cases[c][0], cases[c][1], cases[c][2], worst);
		CHECKF(moved > 0.1, "Adafactor barely moved the parameters (%.3g)", moved);
	}
	CHECKF(compare_optimizer(PT_OPT_ADAM, 5, 8, 128, 6, &moved) < 1e-6, "Adam differs from the reference");

	/* defaults: the paper's Adafactor has weight decay 1e-5 and no gradient-norm clipping */
	CHECK(pt_optimizer_default_max_grad_norm(PT_OPT_ADAFACTOR) == 0.0);
	CHECK(pt_optimizer_default_max_grad_norm(PT_OPT_ADAM) == 1.0);
	CHECK(pt_optimizer_default_weight_decay(PT_OPT_ADAFACTOR) == 1e-5);
	{
		PtTrainOptions to;

		/* training defaults to them: no clip unless asked, T5X's factoring, a fresh schedule */
		pt_train_options_default(&to);
		CHECK(to.optimizer == PT_OPT_ADAFACTOR && to.learning_rate == 0.3);
		CHECK(to.max_grad_norm < 0 && to.weight_decay < 0);
		CHECK(to.min_dim_size_to_factor == 128 && to.adafactor_start_step == 0);
	}
}
