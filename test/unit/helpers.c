/*
 * helpers.c - see helpers.h.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "helpers.h"

char *
read_whole_file(const char *path, size_t *size)
{
	FILE	   *f = fopen(path, "rb");
	char	   *buf;
	long		n;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc(n + 1);
	if (buf == NULL || fread(buf, 1, n, f) != (size_t) n)
	{
		free(buf);
		fclose(f);
		return NULL;
	}
	buf[n] = '\0';
	fclose(f);
	if (size)
		*size = (size_t) n;
	return buf;
}

int
write_whole_file(const char *path, const void *data, size_t size)
{
	FILE	   *f = fopen(path, "wb");
	int			ok;

	if (f == NULL)
		return -1;
	ok = fwrite(data, 1, size, f) == size;
	return fclose(f) == 0 && ok ? 0 : -1;
}

int
copy_checkpoint(const char *src, const char *dst)
{
	static const char *files[] = {"config.json", "model.safetensors", "spiece.model"};

	mkdir(dst, 0700);
	for (int i = 0; i < 3; i++)
	{
		char		from[1024],
					to[1024];
		size_t		n;
		char	   *data;
		int			rc;

		snprintf(from, sizeof(from), "%s/%s", src, files[i]);
		snprintf(to, sizeof(to), "%s/%s", dst, files[i]);
		data = read_whole_file(from, &n);
		if (data == NULL)
			return -1;
		rc = write_whole_file(to, data, n);
		free(data);
		if (rc != 0)
			return -1;
	}
	return 0;
}

PtTokenizer *
load_tokenizer_file(const char *path)
{
	size_t		n;
	char	   *bytes = read_whole_file(path, &n);
	PtTokenizer *tok;

	if (bytes == NULL)
		return NULL;
	tok = pt_tokenizer_load(bytes, n, path);
	free(bytes);
	return tok;
}

uint64_t
test_rand(uint64_t *s)
{
	/* splitmix64 */
	uint64_t	z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

float
test_uniform(uint64_t *s, float lo, float hi)
{
	return lo + (hi - lo) * (float) ((test_rand(s) >> 40) / (double) (1ull << 24));
}

double
max_rel_error(const float *a, const float *b, size_t n)
{
	double		scale = 1e-30,
				err = 0.0;

	for (size_t i = 0; i < n; i++)
		scale = fmax(scale, fabs(b[i]));
	for (size_t i = 0; i < n; i++)
		err = fmax(err, fabs((double) a[i] - b[i]));
	return err / scale;
}
