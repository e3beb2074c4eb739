/*
 * cmd_check.c - `ptune check MODEL_DIR < cases.json > results.json`.
 *
 * For each case {input_ids, target_ids, prompt?, label_ids?}: the mean
 * target cross-entropy, the full logits at each target position and the
 * gradient of that loss with respect to the prompt; with label_ids (each
 * label's tokens, EOS appended here), rank_log_probs: the log of rank
 * classification's probability of each label.  Used to cross-check the
 * engine against an independent PyTorch implementation (ptune_py/t5_reference.py).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "classifier.h"
#include "cli.h"
#include "error.h"
#include "generate.h"
#include "objective.h"

typedef struct Case
{
	int32_t    *input,
			   *target;
	int			n_input,
				n_target;
	float	   *prompt;
	int			prompt_len;
	float	   *grad;
} Case;

/* Frees n cases (cs may be NULL) and their arrays. */
static void
free_cases(Case *cs, int n)
{
	for (int i = 0; i < n && cs; i++)
	{
		free(cs[i].input);
		free(cs[i].target);
		free(cs[i].prompt);
		free(cs[i].grad);
	}
	free(cs);
}

static int
read_ids(json_t *arr, int32_t **out, int *n, const char *what, int index)
{
	if (!json_is_array(arr))
	{
		fprintf(stderr, "ptune: case %d: \"%s\" must be an array of ids\n", index, what);
		return -1;
	}
	*n = (int) json_array_size(arr);
	*out = malloc(sizeof(int32_t) * (*n ? *n : 1));
	for (int i = 0; i < *n; i++)
	{
		json_t	   *v = json_array_get(arr, i);

		if (!json_is_integer(v))
		{
			fprintf(stderr, "ptune: case %d: \"%s\" holds a non-integer\n", index, what);
			return -1;
		}
		(*out)[i] = (int32_t) json_integer_value(v);
	}
	return 0;
}

static int
read_prompt(json_t *arr, int d, Case *c, int index)
{
	if (arr == NULL || json_is_null(arr))
		return 0;
	if (!json_is_array(arr))
	{
		fprintf(stderr, "ptune: case %d: \"prompt\" must be an array of rows\n", index);
		return -1;
	}
	c->prompt_len = (int) json_array_size(arr);
	c->prompt = malloc(sizeof(float) * ((size_t) c->prompt_len * d + 1));
	c->grad = malloc(sizeof(float) * ((size_t) c->prompt_len * d + 1));
	for (int p = 0; p < c->prompt_len; p++)
	{
		json_t	   *row = json_array_get(arr, p);

		if (!json_is_array(row) || (int) json_array_size(row) != d)
		{
			fprintf(stderr, "ptune: case %d: prompt row %d must hold d_model = %d numbers\n",
					index, p, d);
			return -1;
		}
		for (int j = 0; j < d; j++)
			c->prompt[(size_t) p * d + j] = (float) json_number_value(json_array_get(row, j));
	}
	return 0;
}

/* log of each label's rank probability for case c, or NULL (error printed) */
static json_t *
rank_log_probs(const PtModel *m, PtWorkspace *ws, const Case *c, json_t *labels, int index)
{
	int			L = json_is_array(labels) ? (int) json_array_size(labels) : 0;
	int32_t    *ids[PT_MAX_LABELS];
	int			n_ids[PT_MAX_LABELS];
	float		probs[PT_MAX_LABELS];
	const float *prompts[1] = {c->prompt};
	int			lens[1] = {c->prompt_len};
	PtTask	   *task = NULL;
	PtClassifyRow row;
	PtClassifyResult res = {0, probs};
	json_t	   *out = NULL;
	int			got = 0;

	if (L < 2 || L > PT_MAX_LABELS)
	{
		fprintf(stderr, "ptune: case %d: \"label_ids\" must hold 2 to %d labels\n", index, PT_MAX_LABELS);
		return NULL;
	}
	for (; got < L; got++)
		if (read_ids(json_array_get(labels, got), &ids[got], &n_ids[got], "label_ids", index) != 0)
			goto done;
	task = pt_task_new_from_ids(m, (const int32_t *const *) ids, n_ids, L, PT_MAX_INPUT_TOKENS);
	row = (PtClassifyRow) {task, PT_SCORE_RANK, 1, prompts, lens, c->input, c->n_input};
	if (task == NULL || pt_classify(m, ws, &row, 1, &res) != 0)
	{
		cli_engine_error("check");
		goto done;
	}
	out = json_array();
	for (int j = 0; j < L; j++)
		json_array_append_new(out, json_real(log(probs[j])));
done:
	for (int j = 0; j < got; j++)
		free(ids[j]);
	pt_task_free(task);
	return out;
}

/* The "cases" array of stdin's {"cases": [...]}; NULL (said on stderr) if there is none. *root must be freed. */
static json_t *
read_cases(json_t **root)
{
	json_error_t jerr;
	json_t	   *cases;

	*root = json_loadf(stdin, 0, &jerr);
	cases = *root ? json_object_get(*root, "cases") : NULL;
	if (!json_is_array(cases))
	{
		fprintf(stderr, "ptune: stdin must be {\"cases\": [...]}: %s\n", *root ? "no cases array" : jerr.text);
		return NULL;
	}
	return cases;
}

/* Prints {"results": results} on one line (and frees results), reals with `digits` significant digits. */
static void
print_results(json_t *results, int digits)
{
	json_t	   *out = json_object();

	json_object_set_new(out, "results", results);
	json_dumpf(out, stdout, JSON_COMPACT | JSON_REAL_PRECISION(digits));
	putchar('\n');
	json_decref(out);
}

static json_t *
float_rows(const float *x, int rows, int cols)
{
	json_t	   *out = json_array();

	for (int r = 0; r < rows; r++)
	{
		json_t	   *row = json_array();

		for (int j = 0; j < cols; j++)
			json_array_append_new(row, json_real(x[(size_t) r * cols + j]));
		json_array_append_new(out, row);
	}
	return out;
}

int
cmd_check(int argc, char **argv)
{
	PtModel    *m;
	json_t	   *root,
			   *cases,
			   *results;
	int			n;
	Case	   *cs;
	PtExample  *ex;
	double	   *ce;
	float	  **grads;
	const float **logits;
	PtWorkspace ws = {0};
	int			rc = 1;

	if (argc != 1)
	{
		fprintf(stderr, "usage: ptune check MODEL_DIR < cases.json > results.json\n");
		return 2;
	}
	if ((m = cli_load_model(argv[0])) == NULL)
		return 1;
	if ((cases = read_cases(&root)) == NULL)
	{
		json_decref(root);
		pt_model_free(m);
		return 1;
	}
	n = (int) json_array_size(cases);
	cs = calloc(n + 1, sizeof(Case));
	ex = calloc(n + 1, sizeof(PtExample));
	ce = calloc(n + 1, sizeof(double));
	grads = calloc(n + 1, sizeof(float *));
	logits = calloc(n + 1, sizeof(float *));
	for (int i = 0; i < n; i++)
	{
		json_t	   *c = json_array_get(cases, i);

		if (read_ids(json_object_get(c, "input_ids"), &cs[i].input, &cs[i].n_input, "input_ids", i) ||
			read_ids(json_object_get(c, "target_ids"), &cs[i].target, &cs[i].n_target, "target_ids", i) ||
			read_prompt(json_object_get(c, "prompt"), m->cfg.d_model, &cs[i], i))
			goto done;
		ex[i] = (PtExample) {cs[i].prompt, cs[i].prompt_len, cs[i].input, cs[i].n_input,
			cs[i].target, cs[i].n_target, cs[i].n_target ? 1.0f / cs[i].n_target : 0.0f};
		grads[i] = cs[i].grad;
	}

	/* one batched pass for the logits, one for the gradients: cases stay independent */
	if (isnan(pt_objective(m, &ws, ex, n, ce, NULL, logits)))
	{
		cli_engine_error("check");
		goto done;
	}
	results = json_array();
	for (int i = 0; i < n; i++)
	{
		json_t	   *r = json_object();

		json_object_set_new(r, "loss", json_real(ce[i]));
		json_object_set_new(r, "logits", float_rows(logits[i], cs[i].n_target, m->cfg.vocab_size));
		json_array_append_new(results, r);
	}
	if (isnan(pt_objective(m, &ws, ex, n, ce, grads, NULL)))
	{
		cli_engine_error("check");
		goto done;
	}
	for (int i = 0; i < n; i++)
	{
		json_t	   *labels = json_object_get(json_array_get(cases, i), "label_ids");
		json_t	   *lp;

		json_object_set_new(json_array_get(results, i), "prompt_grad",
							float_rows(cs[i].grad, cs[i].prompt_len, m->cfg.d_model));
		if (labels == NULL)
			continue;
		if ((lp = rank_log_probs(m, &ws, &cs[i], labels, i)) == NULL)
		{
			json_decref(results);
			goto done;
		}
		json_object_set_new(json_array_get(results, i), "rank_log_probs", lp);
	}
	print_results(results, 9);
	rc = 0;

done:
	free_cases(cs, n);
	free(ex);
	free(ce);
	free(grads);
	free(logits);
	json_decref(root);
	pt_workspace_free(&ws);
	pt_model_free(m);
	return rc;
}

/*
 * `ptune generate-check MODEL_DIR [--max-new-tokens N] [--num-beams K]
 * [--length-penalty A] [--eos-id E] < cases.json`: decodes every case
 * ({input_ids, prompt?}) in one batched pt_generate call and prints
 * {"results": [{ids, eos, score, token_logprobs}]}.  --eos-id overrides the
 * model's EOS so that random test models stop early (cross_check.sh).
 */
int
cmd_generate_check(int argc, char **argv)
{
	PtGenerateOptions opts;
	PtModel    *m;
	json_t	   *root = NULL,
			   *cases,
			   *results;
	int			n = 0,
				eos_id = -1,
				rc = 1;
	Case	   *cs = NULL;
	PtGenerateRow *rows = NULL;
	PtGenerateResult *res = NULL;
	PtWorkspace ws = {0};

	pt_generate_options_default(&opts);
	if (argc < 1 || argc % 2 != 1)
	{
		fprintf(stderr, "usage: ptune generate-check MODEL_DIR [--max-new-tokens N] [--num-beams K] "
				"[--length-penalty A] [--eos-id E] < cases.json\n");
		return 2;
	}
	for (int i = 1; i + 1 < argc; i += 2)
	{
		if (strcmp(argv[i], "--max-new-tokens") == 0)
			opts.max_new_tokens = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--num-beams") == 0)
			opts.num_beams = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--length-penalty") == 0)
			opts.length_penalty = atof(argv[i + 1]);
		else if (strcmp(argv[i], "--eos-id") == 0)
			eos_id = atoi(argv[i + 1]);
		else
		{
			fprintf(stderr, "ptune: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	if ((m = cli_load_model(argv[0])) == NULL)
		return 1;
	if (eos_id >= 0)
		m->cfg.eos_token_id = eos_id;
	if ((cases = read_cases(&root)) == NULL)
		goto done;
	n = (int) json_array_size(cases);
	cs = calloc(n + 1, sizeof(Case));
	rows = calloc(n + 1, sizeof(PtGenerateRow));
	res = calloc(n + 1, sizeof(PtGenerateResult));
	for (int i = 0; i < n; i++)
	{
		json_t	   *c = json_array_get(cases, i);

		if (read_ids(json_object_get(c, "input_ids"), &cs[i].input, &cs[i].n_input, "input_ids", i) ||
			read_prompt(json_object_get(c, "prompt"), m->cfg.d_model, &cs[i], i))
			goto done;
		rows[i] = (PtGenerateRow) {cs[i].prompt, cs[i].prompt_len, cs[i].input, cs[i].n_input};
		res[i].ids = calloc(opts.max_new_tokens > 0 ? opts.max_new_tokens : 1, sizeof(int32_t));
		res[i].token_logprobs = calloc(opts.max_new_tokens > 0 ? opts.max_new_tokens : 1, sizeof(double));
	}
	if (pt_generate(m, &ws, rows, n, &opts, res) != 0)
	{
		cli_engine_error("generate-check");
		goto done;
	}
	results = json_array();
	for (int i = 0; i < n; i++)
	{
		json_t	   *r = json_object(),
				   *ids = json_array(),
				   *lps = json_array();

		for (int j = 0; j < res[i].n_ids; j++)
			json_array_append_new(ids, json_integer(res[i].ids[j]));
		for (int j = 0; j < res[i].n_ids + (res[i].eos ? 1 : 0); j++)
			json_array_append_new(lps, json_real(res[i].token_logprobs[j]));
		json_object_set_new(r, "ids", ids);
		json_object_set_new(r, "eos", json_boolean(res[i].eos));
		json_object_set_new(r, "score", json_real(res[i].score));
		json_object_set_new(r, "token_logprobs", lps);
		json_array_append_new(results, r);
	}
	print_results(results, 12);
	rc = 0;
done:
	for (int i = 0; i < n && res; i++)
	{
		free(res[i].ids);
		free(res[i].token_logprobs);
	}
	free_cases(cs, n);
	free(rows);
	free(res);
	json_decref(root);
	pt_workspace_free(&ws);
	pt_model_free(m);
	return rc;
}
