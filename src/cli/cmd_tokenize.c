/*
 * cmd_tokenize.c - `ptune tokenize MODEL_DIR`: the ids of each stdin line.
 *
 * Only the tokenizer is loaded (spiece.model), so this works on a directory
 * without weights too.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "error.h"
#include "tokenizer.h"

#define MAX_IDS (1 << 20)

int
cmd_tokenize(int argc, char **argv)
{
	char		path[4096];
	FILE	   *f;
	char	   *bytes,
			   *line = NULL;
	long		size;
	size_t		cap = 0;
	ssize_t		len;
	PtTokenizer *tok;
	int32_t    *ids;

	if (argc != 1)
	{
		fprintf(stderr, "usage: ptune tokenize MODEL_DIR < lines\n");
		return 2;
	}
	snprintf(path, sizeof(path), "%s/spiece.model", argv[0]);
	f = fopen(path, "rb");
	if (f == NULL)
	{
		fprintf(stderr, "ptune: could not open \"%s\": %s\n", path, strerror(errno));
		return 1;
	}
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fseek(f, 0, SEEK_SET);
	bytes = malloc(size > 0 ? size : 1);
	if (bytes == NULL || fread(bytes, 1, size, f) != (size_t) size)
	{
		fprintf(stderr, "ptune: could not read \"%s\"\n", path);
		fclose(f);
		free(bytes);
		return 1;
	}
	fclose(f);
	tok = pt_tokenizer_load(bytes, size, path);
	free(bytes);
	if (tok == NULL)
		return cli_engine_error("tokenize");

	ids = malloc(sizeof(int32_t) * MAX_IDS);
	while (ids && (len = getline(&line, &cap, stdin)) >= 0)
	{
		int			n;

		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		n = pt_tokenizer_encode(tok, line, (size_t) len, ids, MAX_IDS);
		if (n < 0)
			return cli_engine_error("tokenize");
		for (int i = 0; i < n; i++)
			printf(i ? " %d" : "%d", ids[i]);
		putchar('\n');
	}
	free(line);
	free(ids);
	pt_tokenizer_free(tok);
	return 0;
}
