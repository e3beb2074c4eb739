/*
 * test_scoring.c - rank classification (T5X's): a label's score is the sum
 * of its target tokens' (label tokens + EOS) full-vocabulary
 * log-probabilities under teacher forcing.  The engine runs the decoder once
 * per distinct label prefix (a trie, tree attention); here the same scores
 * are computed the slow way, one teacher-forced pass per label and a
 * log-softmax in double, and compared.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "classifier.h"
#include "error.h"
#include "linear.h"
#include "prompt.h"
#include "rng.h"
#include "transformer.h"
#include "unit.h"

#define MAX_L 8

/* scores[j] = sum over label j's target of log softmax(full logits)[token], in double */
static int
brute_force_scores(const PtModel *m, PtWorkspace *ws, const PtTask *task, const float *prompt,
				   int prompt_len, const int32_t *ids, int n_ids, double *scores)
{
	int			V = m->cfg.vocab_size;
	PtExample	ex[MAX_L];
	const float *logits[MAX_L];

	for (int j = 0; j < task->n_labels; j++)
		ex[j] = (PtExample) {prompt, prompt_len, ids, n_ids, task->labels[j].target,
			task->labels[j].n_target, 1.0f};
	if (isnan(pt_objective(m, ws, ex, task->n_labels, NULL, NULL, logits)))
		return -1;
	for (int j = 0; j < task->n_labels; j++)
	{
		const PtLabel *l = &task->labels[j];

		scores[j] = 0.0;
		for (int t = 0; t < l->n_target; t++)
		{
			const float *row = logits[j] + (size_t) t * V;
			double		mx = row[0],
						sum = 0.0;

			for (int v = 1; v < V; v++)
				mx = fmax(mx, row[v]);
			for (int v = 0; v < V; v++)
				sum += exp(row[v] - mx);
			scores[j] += row[l->target[t]] - (mx + log(sum));
		}
	}
	return 0;
}

static void
softmax(const double *x, int n, double *p)
{
	double		mx = x[0],
				z = 0.0;

	for (int j = 1; j < n; j++)
		mx = fmax(mx, x[j]);
	for (int j = 0; j < n; j++)
		z += exp(x[j] - mx);
	for (int j = 0; j < n; j++)
		p[j] = exp(x[j] - mx) / z;
}

/*
 * A batch mixing rank rows of two label sets (one with labels that share
 * prefixes, one label the prefix of others, an ensemble of two prompts)
 * with label-token rows: every rank row's probabilities are the softmax of
 * the brute-force sequence log-probabilities (averaged over the ensemble),
 * its label the argmax (the vote, for the ensemble); every row gives what
 * it gives alone; 1 and 2 threads agree.
 */
static void
check_model(const char *name)
{
	const char *dir = unit_model_dir(name);
	static const char *cities[] = {"new york", "new jersey", "boston", "new", "new york city"};
	static const char *spam[] = {"ham", "spam"};
	static const char *texts[] = {"where is the airport", "cheap pills buy now",
	"a", "the river is very long and the city is big"};
	enum
	{
		N_TEXTS = 4, ROWS_PER_TEXT = 3
	};
	PtModel    *m;
	PtTask	   *tc,
			   *ts;
	PtPrompt   *pc[2],
			   *ps;
	PtRng		rng;
	PtWorkspace ws = {0},
				ws_brute = {0};
	int32_t		ids[N_TEXTS][32];
	int			n_ids[N_TEXTS];
	const float *vc[2],
			   *vs[1];
	int			lc[2],
				ls[1];
	PtClassifyRow rows[N_TEXTS * ROWS_PER_TEXT];
	PtClassifyResult res[N_TEXTS * ROWS_PER_TEXT],
				one;
	float		probs[N_TEXTS * ROWS_PER_TEXT][MAX_L],
				probs_one[MAX_L],
				probs_2threads[N_TEXTS * ROWS_PER_TEXT][MAX_L];
	int			n = N_TEXTS * ROWS_PER_TEXT,
				threads = pt_get_threads();

	REQUIREF(dir != NULL, "test model %s is missing", name);
	m = pt_model_load(dir);
	REQUIRE(m != NULL);
	tc = pt_task_new(m, cities, 5, 32);
	ts = pt_task_new(m, spam, 2, 32);
	REQUIREF(tc && ts, "%s", pt_error_message());
	/* the point of the trie: fewer decoder rows than one chain per label */
	CHECK(tc->trie.n_nodes < tc->labels[0].n_target + tc->labels[1].n_target +
		  tc->labels[2].n_target + tc->labels[3].n_target + tc->labels[4].n_target);
	pt_rng_seed(&rng, 11);
	for (int k = 0; k < 2; k++)
	{
		pc[k] = pt_prompt_new(m, tc, 3 + 2 * k, PT_INIT_RANDOM_UNIFORM, &rng);
		vc[k] = pc[k]->values;
		lc[k] = pc[k]->length;
	}
	ps = pt_prompt_new(m, ts, 4, PT_INIT_RANDOM_UNIFORM, &rng);
	vs[0] = ps->values;
	ls[0] = ps->length;
	for (int i = 0; i < N_TEXTS; i++)
		n_ids[i] = pt_encode_input(m, 32, texts[i], strlen(texts[i]), ids[i]);

	for (int i = 0; i < N_TEXTS; i++)
	{
		rows[3 * i] = (PtClassifyRow) {tc, PT_SCORE_RANK, 2, vc, lc, ids[i], n_ids[i]};
		rows[3 * i + 1] = (PtClassifyRow) {tc, PT_SCORE_LABEL_TOKENS, 1, vc, lc, ids[i], n_ids[i]};
		rows[3 * i + 2] = (PtClassifyRow) {ts, PT_SCORE_RANK, 1, vs, ls, ids[i], n_ids[i]};
	}
	for (int r = 0; r < n; r++)
		res[r].probs = probs[r];
	REQUIREF(pt_classify(m, &ws, rows, n, res) == 0, "%s", pt_error_message());

	for (int r = 0; r < n; r++)
	{
		const PtClassifyRow *row = &rows[r];
		int			L = row->task->n_labels;

		if (row->scoring == PT_SCORE_RANK)
		{
			double		mean[MAX_L] = {0};
			int			votes[MAX_L] = {0},
						expect = 0;

			for (int k = 0; k < row->n_prompts; k++)
			{
				double		scores[MAX_L],
							p[MAX_L];
				int			w = 0;

				REQUIRE(brute_force_scores(m, &ws_brute, row->task, row->prompts[k],
										   row->prompt_lens[k], row->ids, row->n_ids, scores) == 0);
				softmax(scores, L, p);
				for (int j = 0; j < L; j++)
				{
					mean[j] += p[j] / row->n_prompts;
					w = p[j] > p[w] ? j : w;
				}
				votes[w]++;
			}
			for (int j = 0; j < L; j++)
			{
				/*
				 * Labels of different lengths have log-probabilities tens of
				 * nats apart, so most probabilities are tiny: compare their
				 * logarithms, which float keeps to 1e-7 relative down to 1e-38.
				 */
				if (mean[j] > 1e-30)
					CHECKF(fabs(log(probs[r][j]) - log(mean[j])) < 1e-4,
						   "%s row %d label %d: rank log p %.7f, brute force %.7f",
						   name, r, j, log(probs[r][j]), log(mean[j]));
				else
					CHECKF(probs[r][j] < 1e-29f, "%s row %d label %d: rank %g, brute force %g", name, r, j,
						   probs[r][j], mean[j]);
				if (votes[j] > votes[expect] || (votes[j] == votes[expect] && mean[j] > mean[expect]))
					expect = j;
			}
			CHECKF(res[r].label == expect, "%s row %d: label %d, brute force %d", name, r,
				   res[r].label, expect);

			/*
			 * Alone, a row's trie has few nodes (the spam task: 5), which
			 * take the thin head product instead of the batch's matrix
			 * product: the same scores.
			 */
			one.probs = probs_one;
			REQUIRE(pt_classify(m, &ws, row, 1, &one) == 0);
			CHECK(one.label == res[r].label);
			for (int j = 0; j < L; j++)
				CHECKF(fabs(log(probs_one[j]) - log(probs[r][j])) < 1e-4 || (probs_one[j] < 1e-29f && probs[r][j] < 1e-29f),
					   "%s row %d label %d: alone log p %.7f, in the batch %.7f", name, r, j,
					   log(probs_one[j]), log(probs[r][j]));
		}
		else
		{
			/* label tokens: in a batch with trees, the same as alone (chains only) */
			one.probs = probs_one;
			REQUIRE(pt_classify(m, &ws, row, 1, &one) == 0);
			CHECK(one.label == res[r].label);
			for (int j = 0; j < L; j++)
				CHECKF(fabsf(probs_one[j] - probs[r][j]) < 1e-5f, "%s row %d label %d: %.7f alone, %.7f in the batch",
					   name, r, j, probs_one[j], probs[r][j]);
		}
	}

	/* the tree attention's parallel loop: 1 and 2 threads agree */
	pt_set_threads(threads == 1 ? 2 : 1);
	for (int r = 0; r < n; r++)
		res[r].probs = probs_2threads[r];
	REQUIRE(pt_classify(m, &ws, rows, n, res) == 0);
	pt_set_threads(threads);
	for (int r = 0; r < n; r++)
		for (int j = 0; j < rows[r].task->n_labels; j++)
			CHECKF(fabsf(probs_2threads[r][j] - probs[r][j]) < 1e-6f, "%s row %d: thread counts differ", name, r);

	pt_workspace_free(&ws);
	pt_workspace_free(&ws_brute);
	pt_prompt_free(pc[0]);
	pt_prompt_free(pc[1]);
	pt_prompt_free(ps);
	pt_task_free(tc);
	pt_task_free(ts);
	pt_model_free(m);
}

void		test_rank_scores_match_brute_force(void);
void
test_rank_scores_match_brute_force(void)
{
	check_model("tiny-gated");
	check_model("tiny-relu");
}

/* A tree decoder sequence is checked: parents point back, inference only. */
void		test_decoder_trees_checked(void);
void
test_decoder_trees_checked(void)
{
	const char *dir = unit_model_dir("tiny-relu");
	PtModel    *m;
	PtArena		arena = {0};
	PtPass		pass;
	int32_t		ids[4] = {0, 5, 6, 7};
	int			good[4] = {-1, 0, 0, 1},
				forward[4] = {-1, 2, 0, 1},
				two_roots[4] = {-1, 0, -1, 1};
	PtEncoderSeq enc = {NULL, 0, ids, 4};
	PtDecoderSeq dec = {0, ids, 4, good};

	REQUIRE(dir != NULL);
	m = pt_model_load(dir);
	REQUIRE(m != NULL);
	CHECK(pt_pass_begin(&pass, m, &arena, &enc, 1, &dec, 1, false) == 0);
	CHECK(pass.dec_tree && pass.dec_depth[3] == 2 && pass.dec_parent[3] == 1);
	CHECK(pt_pass_begin(&pass, m, &arena, &enc, 1, &dec, 1, true) != 0 &&
		  strstr(pt_error_message(), "only inference"));
	dec.parent = forward;
	CHECK(pt_pass_begin(&pass, m, &arena, &enc, 1, &dec, 1, false) != 0 &&
		  strstr(pt_error_message(), "node 1 has parent 2"));
	dec.parent = two_roots;
	CHECK(pt_pass_begin(&pass, m, &arena, &enc, 1, &dec, 1, false) != 0);
	pt_arena_free(&arena);
	pt_model_free(m);
}

/*
 * A trie larger than the longest chain (PT_MAX_SEQ_LEN nodes): 400 labels of
 * 25 random tokens.  Its cross-attention has more query rows than a chain
 * ever has; the forward pass once kept one float per query row on the stack
 * and overflowed it (a worker crash).  The label must be the brute-force
 * argmax, and the log-ratio of the two most likely labels must match.
 */
void		test_rank_large_trie(void);
void
test_rank_large_trie(void)
{
	enum
	{
		L = 400, T = 25
	};
	const char *dir = unit_model_dir("tiny-relu");
	PtModel    *m;
	PtTask	   *task;
	PtRng		rng;
	PtWorkspace ws = {0};
	static int32_t label_ids[L][T];
	const int32_t *label_ptrs[L];
	int			n_label_ids[L];
	static double brute[L];
	static float probs[L];
	float		prompt[4 * 512];
	const float *prompts[1] = {prompt};
	int			prompt_lens[1] = {4};
	int32_t		input[3] = {7, 8, 1};
	PtClassifyRow row;
	PtClassifyResult res = {-1, probs};
	int			best = 0,
				second = -1;

	REQUIRE(dir != NULL);
	m = pt_model_load(dir);
	REQUIRE(m != NULL);
	REQUIRE(m->cfg.d_model <= 512);
	pt_rng_seed(&rng, 7);
	for (int j = 0; j < L; j++)
	{
		for (int t = 0; t < T; t++)
			label_ids[j][t] = 2 + (int32_t) (pt_rng_next(&rng) % (uint64_t) (m->cfg.vocab_size - 2));
		label_ptrs[j] = label_ids[j];
		n_label_ids[j] = T;
	}
	for (int i = 0; i < 4 * m->cfg.d_model; i++)
		prompt[i] = 0.5f * pt_rng_uniform(&rng) - 0.25f;
	task = pt_task_new_from_ids(m, label_ptrs, n_label_ids, L, 64);
	REQUIREF(task != NULL, "%s", pt_error_message());
	CHECKF(task->trie.n_nodes > PT_MAX_SEQ_LEN, "the trie has only %d nodes", task->trie.n_nodes);

	row = (PtClassifyRow) {task, PT_SCORE_RANK, 1, prompts, prompt_lens, input, 3};
	REQUIREF(pt_classify(m, &ws, &row, 1, &res) == 0, "%s", pt_error_message());

	/* brute force, MAX_L labels at a time through a view of the task */
	for (int j0 = 0; j0 < L; j0 += MAX_L)
	{
		PtTask		part = *task;

		part.labels = task->labels + j0;
		part.n_labels = L - j0 < MAX_L ? L - j0 : MAX_L;
		REQUIRE(brute_force_scores(m, &ws, &part, prompt, 4, input, 3, brute + j0) == 0);
	}
	for (int j = 1; j < L; j++)
		if (brute[j] > brute[best])
			best = j;
	for (int j = 0; j < L; j++)
		if (j != best && (second < 0 || brute[j] > brute[second]))
			second = j;
	CHECKF(res.label == best, "rank label %d, brute force %d", res.label, best);
	if (probs[second] > 1e-30f)
		CHECKF(fabs(log((double) probs[best] / probs[second]) - (brute[best] - brute[second])) < 1e-3,
			   "log ratio %.6f, brute force %.6f", log((double) probs[best] / probs[second]),
			   brute[best] - brute[second]);
	pt_workspace_free(&ws);
	pt_task_free(task);
	pt_model_free(m);
}
