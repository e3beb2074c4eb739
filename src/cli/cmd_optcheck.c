/*
 * cmd_optcheck.c - `ptune optimizer-check < case.json > params.json`.
 *
 * Runs the engine's optimizer on one [rows, cols] parameter over a given
 * sequence of gradients and prints the parameter after the last step.  The
 * case is {"optimizer", "rows", "cols", "learning_rate", "weight_decay",
 * "min_dim_size_to_factor", "start_step", "params": [rows*cols],
 * "grads": [[rows*cols], ...]}; the output is {"params": [rows*cols]}.
 * Used to check Adafactor against an independent float64 re-implementation
 * of T5X's (ptune_py/t5x_adafactor.py, the cross suite).
 */
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "cli.h"
#include "error.h"
#include "optimizer.h"

/* Reads a JSON array of n numbers into out; -1 (with a message) if it is not one. */
static int
read_floats(json_t *arr, size_t n, float *out, const char *what)
{
	if (!json_is_array(arr) || json_array_size(arr) != n)
	{
		fprintf(stderr, "ptune: \"%s\" must be an array of %zu numbers\n", what, n);
		return -1;
	}
	for (size_t k = 0; k < n; k++)
	{
		json_t	   *v = json_array_get(arr, k);

		if (!json_is_number(v))
		{
			fprintf(stderr, "ptune: \"%s\" holds a non-number at %zu\n", what, k);
			return -1;
		}
		out[k] = (float) json_number_value(v);
	}
	return 0;
}

int
cmd_optcheck(int argc, char **argv)
{
	json_error_t err;
	json_t	   *in = json_loadf(stdin, 0, &err),
			   *grads,
			   *out = NULL;
	PtOptimizerOptions oo;
	PtOptimizer *opt = NULL;
	const char *kind = "adafactor";
	int			rows = 0,
				cols = 0,
				rc = 1;
	float	   *p = NULL,
			   *g = NULL;

	if (argc != 0)
	{
		fputs("usage: ptune optimizer-check < case.json\n", stderr);
		return 2;
	}
	if (in == NULL)
	{
		fprintf(stderr, "ptune: invalid JSON on stdin: %s (line %d)\n", err.text, err.line);
		return 1;
	}
	json_unpack(in, "{s?s, s:i, s:i}", "optimizer", &kind, "rows", &rows, "cols", &cols);
	if (rows < 1 || cols < 1 || rows > 4096 || cols > 65536)
	{
		fprintf(stderr, "ptune: \"rows\" and \"cols\" must be positive\n");
		goto done;
	}
	pt_optimizer_options_default(&oo, PT_OPT_ADAFACTOR);
	if (pt_optimizer_parse(kind, &oo.kind) != 0)
	{
		rc = cli_engine_error("optimizer-check");
		goto done;
	}
	pt_optimizer_options_default(&oo, oo.kind);
	{
		json_int_t	min_dim = oo.min_dim_size_to_factor,
					start = oo.start_step;

		json_unpack(in, "{s?F, s?F, s?I, s?I}", "learning_rate", &oo.learning_rate,
					"weight_decay", &oo.weight_decay, "min_dim_size_to_factor", &min_dim,
					"start_step", &start);
		oo.min_dim_size_to_factor = (int) min_dim;
		oo.start_step = (long) start;
	}
	p = malloc(sizeof(float) * rows * cols);
	g = malloc(sizeof(float) * rows * cols);
	opt = pt_optimizer_new(&oo, rows, cols);
	if (p == NULL || g == NULL || opt == NULL)
	{
		fprintf(stderr, "ptune: out of memory\n");
		goto done;
	}
	grads = json_object_get(in, "grads");
	if (read_floats(json_object_get(in, "params"), (size_t) rows * cols, p, "params") != 0 ||
		!json_is_array(grads))
		goto done;
	for (size_t t = 0; t < json_array_size(grads); t++)
	{
		if (read_floats(json_array_get(grads, t), (size_t) rows * cols, g, "grads") != 0)
			goto done;
		pt_optimizer_step(opt, p, g);
	}
	out = json_array();
	for (size_t k = 0; k < (size_t) rows * cols; k++)
		json_array_append_new(out, json_real(p[k]));
	out = json_pack("{s:o}", "params", out);
	json_dumpf(out, stdout, JSON_REAL_PRECISION(9));
	putchar('\n');
	rc = 0;

done:
	json_decref(out);
	json_decref(in);
	pt_optimizer_free(opt);
	free(p);
	free(g);
	return rc;
}
