/*
 * arena.c - see arena.h.
 */
#include <stdlib.h>

#include "arena.h"
#include "error.h"

void *
pt_arena_bytes(PtArena *a, size_t n)
{
	size_t		start = (a->used + PT_ARENA_ALIGN - 1) & ~(size_t) (PT_ARENA_ALIGN - 1);

	a->used = start + n;
	if (a->base == NULL)
		return NULL;
	/* the counting run sized the block, so running past it is a bug */
	if (a->used > a->cap)
		abort();
	return a->base + start;
}

float *
pt_arena_floats(PtArena *a, size_t n)
{
	return pt_arena_bytes(a, n * sizeof(float));
}

int
pt_arena_reserve(PtArena *a, size_t bytes)
{
	if (bytes > a->cap || a->base == NULL)
	{
		/* grow by half again so slowly growing batches do not reallocate each time */
		size_t		cap = bytes + bytes / 2 + PT_ARENA_ALIGN;
		char	   *block = aligned_alloc(PT_ARENA_ALIGN, (cap + PT_ARENA_ALIGN - 1) & ~(size_t) (PT_ARENA_ALIGN - 1));

		if (block == NULL)
			return pt_fail(PT_ERR_NOMEM, "out of memory reserving %zu MB of activations", bytes >> 20);
		free(a->base);
		a->base = block;
		a->cap = cap;
	}
	a->used = 0;
	return 0;
}

void
pt_arena_free(PtArena *a)
{
	free(a->base);
	a->base = NULL;
	a->cap = a->used = 0;
}
