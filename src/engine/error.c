/*
 * error.c - per-thread error message and category (see error.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

#define PT_ERROR_MAX 1024

static __thread char error_message[PT_ERROR_MAX];
static __thread PtErrorKind error_kind;

int
pt_fail(PtErrorKind kind, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(error_message, sizeof(error_message), fmt, ap);
	va_end(ap);
	error_kind = kind;
	return -1;
}

int
pt_fail_context(const char *fmt,...)
{
	char		prefix[PT_ERROR_MAX];
	char		old[PT_ERROR_MAX];
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, error_message, sizeof(old));
	snprintf(error_message, sizeof(error_message), "%s: %s", prefix, old);
	return -1;
}

const char *
pt_error_message(void)
{
	return error_message[0] ? error_message : "no error";
}

PtErrorKind
pt_error_kind(void)
{
	return error_kind;
}

void
pt_clear_error(void)
{
	error_message[0] = '\0';
	error_kind = PT_OK;
}

void *
pt_malloc(size_t size)
{
	void	   *p = malloc(size ? size : 1);

	if (p == NULL)
		pt_fail(PT_ERR_NOMEM, "out of memory allocating %zu bytes", size);
	return p;
}

void *
pt_grow(void **buf, size_t *cap, size_t bytes)
{
	if (bytes > *cap)
	{
		void	   *grown = realloc(*buf, bytes);

		if (grown == NULL)
			return NULL;
		*buf = grown;
		*cap = bytes;
	}
	return *buf;
}

void *
pt_calloc(size_t count, size_t size)
{
	void	   *p;

	if (size != 0 && count > ((size_t) -1) / size)
	{
		pt_fail(PT_ERR_NOMEM, "allocation of %zu x %zu bytes overflows", count, size);
		return NULL;
	}
	p = calloc(count ? count : 1, size ? size : 1);
	if (p == NULL)
		pt_fail(PT_ERR_NOMEM, "out of memory allocating %zu x %zu bytes", count, size);
	return p;
}

char *
pt_strdup(const char *s)
{
	size_t		n = strlen(s) + 1;
	char	   *p = pt_malloc(n);

	if (p)
		memcpy(p, s, n);
	return p;
}
