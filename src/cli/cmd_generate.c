/*
 * cmd_generate.c - `ptune generate MODEL_DIR [PROMPT] [--max-new-tokens N]
 * [--num-beams N] [--length-penalty A] < lines`: for each input line, one
 * output line with the generated text.  Inside it a backslash is written
 * "\\", a newline "\n" and a carriage return "\r", so output lines match
 * input lines one to one.  Greedy by default; without PROMPT the frozen model
 * runs alone (zero-shot instructions with flan-t5).  Lines are generated in
 * batches of 32.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_data.h"
#include "error.h"
#include "generate.h"
#include "prompt.h"
#include "task.h"

#define BATCH 32

static void
print_escaped(const char *s)
{
	for (; *s; s++)
	{
		if (*s == '\\')
			fputs("\\\\", stdout);
		else if (*s == '\n')
			fputs("\\n", stdout);
		else if (*s == '\r')
			fputs("\\r", stdout);
		else
			putchar(*s);
	}
	putchar('\n');
}

static int
usage(void)
{
	fprintf(stderr, "usage: ptune generate MODEL_DIR [PROMPT] [--max-new-tokens N] [--num-beams N] "
			"[--length-penalty A] < lines\n");
	return 2;
}

/* Generates rows[0..n) and prints their texts; 0, or 1 after printing the error. */
static int
flush_batch(const PtModel *m, PtWorkspace *ws, const PtGenerateRow *rows, int n,
			const PtGenerateOptions *opts, PtGenerateResult *results)
{
	if (pt_generate(m, ws, rows, n, opts, results) != 0)
		return cli_engine_error("generate");
	for (int i = 0; i < n; i++)
	{
		char	   *text = pt_generate_text(m, results[i].ids, results[i].n_ids);

		if (text == NULL)
			return cli_engine_error("generate");
		print_escaped(text);
		free(text);
	}
	fflush(stdout);
	return 0;
}

int
cmd_generate(int argc, char **argv)
{
	PtGenerateOptions opts;
	const char *model_dir = NULL,
			   *prompt_path = NULL;
	PtModel    *m;
	PtPrompt  **prompts = NULL;
	int			n_prompts = 0,
				max_input = PT_GENERATE_MAX_INPUT_TOKENS,
				n = 0,
				rc = 0;
	PtWorkspace ws = {0};
	PtGenerateRow rows[BATCH];
	PtGenerateResult results[BATCH];
	int32_t    *ids = NULL,
			   *out_ids = NULL;
	char	   *line = NULL;
	size_t		cap = 0;
	bool		eof = false;

	pt_generate_options_default(&opts);
	for (int i = 0; i < argc; i++)
	{
		long		v;
		double		a;

		if (strcmp(argv[i], "--max-new-tokens") == 0 && i + 1 < argc)
		{
			if (cli_parse_int("--max-new-tokens", argv[++i], 1, PT_GENERATE_MAX_NEW_TOKENS, &v) != 0)
				return 2;
			opts.max_new_tokens = (int) v;
		}
		else if (strcmp(argv[i], "--num-beams") == 0 && i + 1 < argc)
		{
			if (cli_parse_int("--num-beams", argv[++i], 1, PT_GENERATE_MAX_BEAMS, &v) != 0)
				return 2;
			opts.num_beams = (int) v;
		}
		else if (strcmp(argv[i], "--length-penalty") == 0 && i + 1 < argc)
		{
			if (cli_parse_double("--length-penalty", argv[++i], &a) != 0)
				return 2;
			opts.length_penalty = a;
		}
		else if (argv[i][0] == '-')
			return usage();
		else if (model_dir == NULL)
			model_dir = argv[i];
		else if (prompt_path == NULL)
			prompt_path = argv[i];
		else
			return usage();
	}
	if (model_dir == NULL)
		return usage();
	if (pt_generate_options_check(&opts) != 0)
		return fprintf(stderr, "ptune: %s\n", pt_error_message()), 2;
	if ((m = cli_load_model(model_dir)) == NULL)
		return 1;
	if (prompt_path)
	{
		prompts = pt_prompt_file_read(prompt_path, &n_prompts);
		if (prompts == NULL || pt_prompt_check_model(prompts[0], m) != 0)
		{
			rc = cli_engine_error(prompt_path);
			goto done;
		}
		if (n_prompts != 1)
		{
			fprintf(stderr, "ptune: %s holds %d prompts (an ensemble); generate uses one\n",
					prompt_path, n_prompts);
			rc = 1;
			goto done;
		}
		max_input = prompts[0]->max_input_tokens;
	}
	ids = malloc(sizeof(int32_t) * BATCH * max_input);
	out_ids = malloc(sizeof(int32_t) * BATCH * opts.max_new_tokens);
	if (ids == NULL || out_ids == NULL)
	{
		fprintf(stderr, "ptune: out of memory\n");
		rc = 1;
		goto done;
	}

	while (!eof && rc == 0)
	{
		ssize_t		len = getline(&line, &cap, stdin);

		if (len >= 0)
		{
			int32_t    *row_ids = ids + (size_t) n * max_input;
			int			count;

			if (len > 0 && line[len - 1] == '\n')
				line[--len] = '\0';
			count = pt_encode_input(m, max_input, line, (size_t) len, row_ids);
			if (count < 0)
			{
				rc = cli_engine_error("generate");
				break;
			}
			rows[n] = (PtGenerateRow) {
				prompts ? prompts[0]->values : NULL, prompts ? prompts[0]->length : 0,
				row_ids, count
			};
			results[n] = (PtGenerateResult) {.ids = out_ids + (size_t) n * opts.max_new_tokens};
			n++;
		}
		else
			eof = true;
		if (n == BATCH || (eof && n > 0))
		{
			rc = flush_batch(m, &ws, rows, n, &opts, results);
			n = 0;
		}
	}

done:
	free(line);
	free(ids);
	free(out_ids);
	pt_workspace_free(&ws);
	if (prompts)
		pt_prompt_array_free(prompts, n_prompts);
	pt_model_free(m);
	return rc;
}
