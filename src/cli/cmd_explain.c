/*
 * cmd_explain.c - `ptune explain MODEL_DIR PROMPT_FILE [-k 5]`: for each
 * prompt position, the nearest vocabulary pieces by cosine similarity.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_data.h"
#include "explain.h"

int
cmd_explain(int argc, char **argv)
{
	long		k = 5;
	PtModel    *m;
	CliPrompts	cp;
	int32_t    *ids;
	float	   *sims;
	int			rc = 0;

	if (argc == 4 && strcmp(argv[2], "-k") == 0)
	{
		if (cli_parse_int("-k", argv[3], 1, PT_MAX_EXPLAIN_K, &k) != 0)
			return 2;
	}
	else if (argc != 2)
	{
		fprintf(stderr, "usage: ptune explain MODEL_DIR PROMPT_FILE [-k 5]\n");
		return 2;
	}
	if ((m = cli_load_model_and_prompts(argv[0], argv[1], &cp)) == NULL)
		return 1;
	for (int member = 0; member < cp.n && rc == 0; member++)
	{
		const PtPrompt *p = cp.prompts[member];

		ids = malloc(sizeof(int32_t) * p->length * k);
		sims = malloc(sizeof(float) * p->length * k);
		if (pt_explain(m, p, (int) k, ids, sims) != 0)
			rc = cli_engine_error("explain");
		for (int i = 0; rc == 0 && i < p->length; i++)
		{
			if (cp.n > 1)
				printf("%d.", member);
			printf("%d", i);
			for (int r = 0; r < k; r++)
				if (ids[i * k + r] >= 0)
					printf("\t%s (%.3f)", pt_tokenizer_piece(m->tokenizer, ids[i * k + r]), sims[i * k + r]);
			putchar('\n');
		}
		free(ids);
		free(sims);
	}
	cli_free_prompts(&cp);
	pt_model_free(m);
	return rc;
}
