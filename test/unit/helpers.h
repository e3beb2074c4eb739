/*
 * helpers.h - small utilities shared by the unit tests.
 */
#ifndef PT_UNIT_HELPERS_H
#define PT_UNIT_HELPERS_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "tokenizer.h"

/* Whole file into a malloc'ed buffer (NUL-terminated); NULL on failure. */
char	   *read_whole_file(const char *path, size_t *size);
int			write_whole_file(const char *path, const void *data, size_t size);
/* Copies a checkpoint directory's three files into dst (created). */
int			copy_checkpoint(const char *src, const char *dst);

PtTokenizer *load_tokenizer_file(const char *path);

/* Deterministic pseudo-random numbers for test inputs. */
uint64_t	test_rand(uint64_t *state);
float		test_uniform(uint64_t *state, float lo, float hi);

/* max |a - b| / max(max |b|, 1e-30) over n values */
double		max_rel_error(const float *a, const float *b, size_t n);

#endif
