/*
 * cli_data.h - helpers shared by the CLI's data commands: reading labelled
 * CSV files and parsing numeric options.
 */
#ifndef PT_CLI_DATA_H
#define PT_CLI_DATA_H

#include "csv.h"
#include "trainer.h"

typedef struct CliTextSet
{
	PtCsv	   *csv;
	PtTextSet	set;			/* points into csv */
	const char **texts;
	const char **labels;
} CliTextSet;

/* Reads path and selects the two columns; prints the error and returns -1. */
int			cli_read_text_set(const char *path, const char *text_column,
							  const char *label_column, CliTextSet *out);
void		cli_free_text_set(CliTextSet *s);

/* Parses an integer / float option value or prints an error and returns -1. */
int			cli_parse_int(const char *option, const char *value, long min, long max, long *out);
int			cli_parse_double(const char *option, const char *value, double *out);

#include "prompt.h"

/* A prompt file (one prompt or an ensemble) checked against the model, with its task. */
typedef struct CliPrompts
{
	PtPrompt  **prompts;
	int			n;
	PtTask	   *task;
	const float **values;		/* [n] */
	int		   *lens;			/* [n] */
} CliPrompts;

int			cli_load_prompts(const PtModel *m, const char *path, CliPrompts *out);
void		cli_free_prompts(CliPrompts *p);

/* The model of model_dir and the prompts of prompt_file; NULL (error printed) if either fails. */
PtModel    *cli_load_model_and_prompts(const char *model_dir, const char *prompt_file, CliPrompts *out);

#endif
