/*
 * cmd_classify.c - `ptune classify MODEL_DIR PROMPT_FILE < texts`: for each
 * input line, the predicted label and its probability, tab-separated.
 * Lines are classified in batches of 32.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classifier.h"
#include "error.h"
#include "cli.h"
#include "cli_data.h"

#define BATCH 32

int
cmd_classify(int argc, char **argv)
{
	PtModel    *m;
	CliPrompts	cp;
	PtWorkspace ws = {0};
	PtScoring	scoring = PT_SCORE_LABEL_TOKENS;
	char	   *line = NULL;
	size_t		cap = 0;
	int32_t    *ids;
	PtClassifyRow rows[BATCH];
	PtClassifyResult results[BATCH];
	float	   *probs;
	int			n = 0,
				rc = 0;
	bool		eof = false;

	if (argc == 4 && strcmp(argv[2], "--scoring") == 0)
	{
		if (pt_scoring_parse(argv[3], &scoring) != 0)
			return fprintf(stderr, "ptune: %s\n", pt_error_message()), 2;
	}
	else if (argc != 2)
	{
		fprintf(stderr, "usage: ptune classify MODEL_DIR PROMPT_FILE [--scoring label_tokens|rank] < texts\n");
		return 2;
	}
	if ((m = cli_load_model_and_prompts(argv[0], argv[1], &cp)) == NULL)
		return 1;
	ids = malloc(sizeof(int32_t) * BATCH * cp.task->max_input_tokens);
	probs = malloc(sizeof(float) * BATCH * cp.task->n_labels);

	while (!eof)
	{
		ssize_t		len = getline(&line, &cap, stdin);

		if (len >= 0)
		{
			int32_t    *row_ids = ids + (size_t) n * cp.task->max_input_tokens;
			int			count;

			if (len > 0 && line[len - 1] == '\n')
				line[--len] = '\0';
			count = pt_encode_input(m, cp.task->max_input_tokens, line, (size_t) len, row_ids);
			if (count < 0)
			{
				rc = cli_engine_error("classify");
				break;
			}
			rows[n] = (PtClassifyRow) {cp.task, scoring, cp.n, cp.values, cp.lens, row_ids, count};
			results[n].probs = probs + (size_t) n * cp.task->n_labels;
			n++;
		}
		else
			eof = true;
		if (n == BATCH || (eof && n > 0))
		{
			if (pt_classify(m, &ws, rows, n, results) != 0)
			{
				rc = cli_engine_error("classify");
				break;
			}
			for (int i = 0; i < n; i++)
				printf("%s\t%.6f\n", cp.task->labels[results[i].label].text,
					   results[i].probs[results[i].label]);
			fflush(stdout);
			n = 0;
		}
	}
	free(line);
	free(ids);
	free(probs);
	pt_workspace_free(&ws);
	cli_free_prompts(&cp);
	pt_model_free(m);
	return rc;
}
