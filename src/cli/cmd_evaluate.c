/*
 * cmd_evaluate.c - `ptune evaluate MODEL_DIR PROMPT_FILE DATA.csv
 * --text-column C --label-column C [--scoring label_tokens|rank]`: accuracy,
 * macro-F1 and the confusion matrix as one JSON object
 * {rows, accuracy, macro_f1, confusion}, where
 * confusion[true_label][predicted_label] counts rows.  Rows whose label the
 * prompt does not know count as errors under their own true label.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "classifier.h"
#include "error.h"
#include "cli.h"
#include "cli_data.h"
#include "metrics.h"

#define BATCH 32

/* The index of label text in names[0..*n), appended if new. */
static int
label_slot(const char **names, int *n, const char *text)
{
	for (int j = 0; j < *n; j++)
		if (strcmp(names[j], text) == 0)
			return j;
	names[*n] = text;
	return (*n)++;
}

int
cmd_evaluate(int argc, char **argv)
{
	const char *text_col = NULL,
			   *label_col = NULL;
	PtModel    *m = NULL;
	CliPrompts	cp = {0};
	CliTextSet	data = {0};
	PtWorkspace ws = {0};
	PtConfusion conf = {0};
	const char **names = NULL;
	int			n_names,
				rc = 1;
	int32_t    *ids = NULL;
	float	   *probs = NULL;
	int		   *truth = NULL;
	PtScoring	scoring = PT_SCORE_LABEL_TOKENS;
	bool		bad = argc != 7 && argc != 9;

	for (int i = 3; i + 1 < argc; i += 2)
	{
		if (strcmp(argv[i], "--text-column") == 0)
			text_col = argv[i + 1];
		else if (strcmp(argv[i], "--label-column") == 0)
			label_col = argv[i + 1];
		else if (strcmp(argv[i], "--scoring") == 0 && pt_scoring_parse(argv[i + 1], &scoring) != 0)
			return fprintf(stderr, "ptune: %s\n", pt_error_message()), 2;
		else if (strcmp(argv[i], "--scoring") != 0)
			bad = true;
	}
	if (bad || !text_col || !label_col)
	{
		fprintf(stderr, "usage: ptune evaluate MODEL_DIR PROMPT_FILE DATA.csv --text-column C --label-column C "
				"[--scoring label_tokens|rank]\n");
		return 2;
	}
	if ((m = cli_load_model(argv[0])) == NULL || cli_load_prompts(m, argv[1], &cp) != 0 ||
		cli_read_text_set(argv[2], text_col, label_col, &data) != 0)
		goto done;

	/* the prompt's labels first, then any other true labels found in the data */
	names = calloc(cp.task->n_labels + data.set.n + 1, sizeof(char *));
	truth = calloc(data.set.n + 1, sizeof(int));
	n_names = cp.task->n_labels;
	for (int j = 0; j < n_names; j++)
		names[j] = cp.task->labels[j].text;
	for (int i = 0; i < data.set.n; i++)
		truth[i] = label_slot(names, &n_names, data.set.labels[i]);
	if (pt_confusion_init(&conf, n_names) != 0)
		goto done;

	ids = malloc(sizeof(int32_t) * BATCH * cp.task->max_input_tokens);
	probs = malloc(sizeof(float) * BATCH * cp.task->n_labels);
	for (int start = 0; start < data.set.n; start += BATCH)
	{
		int			n = data.set.n - start < BATCH ? data.set.n - start : BATCH;
		PtClassifyRow rows[BATCH];
		PtClassifyResult results[BATCH];

		for (int i = 0; i < n; i++)
		{
			const char *text = data.set.texts[start + i];
			int32_t    *row_ids = ids + (size_t) i * cp.task->max_input_tokens;
			int			count = pt_encode_input(m, cp.task->max_input_tokens, text, strlen(text), row_ids);

			if (count < 0)
			{
				cli_engine_error("evaluate");
				goto done;
			}
			rows[i] = (PtClassifyRow) {cp.task, scoring, cp.n, cp.values, cp.lens, row_ids, count};
			results[i].probs = probs + (size_t) i * cp.task->n_labels;
		}
		if (pt_classify(m, &ws, rows, n, results) != 0)
		{
			cli_engine_error("evaluate");
			goto done;
		}
		for (int i = 0; i < n; i++)
			pt_confusion_add(&conf, truth[start + i], results[i].label);
	}

	{
		json_t	   *confusion = json_object();
		json_t	   *out;

		for (int t = 0; t < n_names; t++)
		{
			json_t	   *row = json_object();

			for (int p = 0; p < n_names; p++)
				json_object_set_new(row, names[p], json_integer(conf.counts[(size_t) t * n_names + p]));
			json_object_set_new(confusion, names[t], row);
		}
		out = json_pack("{s:I, s:f, s:f, s:o}", "rows", (json_int_t) conf.rows,
						"accuracy", pt_accuracy(&conf), "macro_f1", pt_macro_f1(&conf),
						"confusion", confusion);
		json_dumpf(out, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
		putchar('\n');
		json_decref(out);
	}
	rc = 0;

done:
	free(names);
	free(truth);
	free(ids);
	free(probs);
	pt_confusion_free(&conf);
	pt_workspace_free(&ws);
	cli_free_text_set(&data);
	cli_free_prompts(&cp);
	pt_model_free(m);
	return rc;
}
