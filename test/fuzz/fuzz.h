/*
 * fuzz.h - shared by the libFuzzer harnesses: a rejected input must leave an
 * error message and category behind, or the harness aborts (a finding).
 */
#ifndef PT_FUZZ_H
#define PT_FUZZ_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

static inline void
expect_error_reported(const char *what)
{
	if (pt_error_kind() == PT_OK || pt_error_message()[0] == '\0' ||
		strcmp(pt_error_message(), "no error") == 0)
	{
		fprintf(stderr, "%s rejected an input without an error message\n", what);
		abort();
	}
}

#endif
