/*
 * cli_data.c - see cli_data.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_data.h"
#include "error.h"

int
cli_read_text_set(const char *path, const char *text_column, const char *label_column,
				  CliTextSet *out)
{
	int			tc,
				lc,
				n;

	out->csv = pt_csv_read(path);
	if (out->csv == NULL)
	{
		fprintf(stderr, "ptune: %s\n", pt_error_message());
		return -1;
	}
	tc = pt_csv_column(out->csv, text_column);
	lc = tc < 0 ? -1 : pt_csv_column(out->csv, label_column);
	if (tc < 0 || lc < 0)
	{
		fprintf(stderr, "ptune: %s\n", pt_error_message());
		pt_csv_free(out->csv);
		return -1;
	}
	n = pt_csv_rows(out->csv);
	out->texts = calloc(n + 1, sizeof(char *));
	out->labels = calloc(n + 1, sizeof(char *));
	if (out->texts == NULL || out->labels == NULL)
	{
		fprintf(stderr, "ptune: out of memory\n");
		return -1;
	}
	for (int i = 0; i < n; i++)
	{
		out->texts[i] = pt_csv_field(out->csv, i, tc);
		out->labels[i] = pt_csv_field(out->csv, i, lc);
	}
	out->set = (PtTextSet) {n, out->texts, NULL, out->labels};
	return 0;
}

void
cli_free_text_set(CliTextSet *s)
{
	pt_csv_free(s->csv);
	free(s->texts);
	free(s->labels);
}

int
cli_parse_int(const char *option, const char *value, long min, long max, long *out)
{
	char	   *end;
	long		v;

	errno = 0;
	v = value ? strtol(value, &end, 10) : 0;
	if (value == NULL || errno || *end || end == value || v < min || v > max)
	{
		fprintf(stderr, "ptune: %s needs an integer between %ld and %ld\n", option, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

int
cli_parse_double(const char *option, const char *value, double *out)
{
	char	   *end;

	errno = 0;
	*out = value ? strtod(value, &end) : 0;
	if (value == NULL || errno || *end || end == value)
	{
		fprintf(stderr, "ptune: %s needs a number\n", option);
		return -1;
	}
	return 0;
}

int
cli_load_prompts(const PtModel *m, const char *path, CliPrompts *out)
{
	memset(out, 0, sizeof(*out));
	out->prompts = pt_prompt_file_read(path, &out->n);
	if (out->prompts == NULL)
		goto fail;
	out->values = calloc(out->n, sizeof(float *));
	out->lens = calloc(out->n, sizeof(int));
	for (int k = 0; k < out->n; k++)
	{
		const PtPrompt *p = out->prompts[k];

		if (pt_prompt_check_model(p, m) != 0)
			goto fail;
		if (p->n_labels != out->prompts[0]->n_labels)
		{
			pt_fail(PT_ERR_FORMAT, "%s: ensemble members have different labels", path);
			goto fail;
		}
		for (int j = 0; j < p->n_labels; j++)
			if (strcmp(p->labels[j], out->prompts[0]->labels[j]) != 0)
			{
				pt_fail(PT_ERR_FORMAT, "%s: ensemble members have different labels", path);
				goto fail;
			}
		out->values[k] = p->values;
		out->lens[k] = p->length;
	}
	/* (classify, evaluate and explain read prompts here; generate reads its own) */
	if (pt_prompt_objective(out->prompts[0]) == PT_OBJECTIVE_GENERATION)
	{
		pt_fail(PT_ERR_ARGUMENT, "%s is a generation prompt (it has no labels): use it with "
				"`ptune generate`", path);
		goto fail;
	}
	out->task = pt_task_new(m, (const char *const *) out->prompts[0]->labels,
							out->prompts[0]->n_labels, out->prompts[0]->max_input_tokens);
	if (out->task == NULL)
		goto fail;
	return 0;

fail:
	fprintf(stderr, "ptune: %s\n", pt_error_message());
	cli_free_prompts(out);
	return -1;
}

void
cli_free_prompts(CliPrompts *p)
{
	pt_prompt_array_free(p->prompts, p->n);
	pt_task_free(p->task);
	free(p->values);
	free(p->lens);
	memset(p, 0, sizeof(*p));
}

PtModel *
cli_load_model_and_prompts(const char *model_dir, const char *prompt_file, CliPrompts *out)
{
	PtModel    *m = cli_load_model(model_dir);

	memset(out, 0, sizeof(*out));
	if (m != NULL && cli_load_prompts(m, prompt_file, out) != 0)
	{
		pt_model_free(m);
		return NULL;
	}
	return m;
}

static int
compare_doubles(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return (x > y) - (x < y);
}

double
cli_median(double *v, int n)
{
	qsort(v, n, sizeof(double), compare_doubles);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
