/*
 * arena.c - see arena.h.
 */
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "arena.h"
#include "error.h"

/*
 * Under AddressSanitizer the unused tail of the block is poisoned, so a pass
 * that writes past what its counting run sized is caught at once instead of
 * landing in the block's spare capacity.
 */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(addr, n)   ASAN_POISON_MEMORY_REGION((addr), (n))
#define UNPOISON(addr, n) ASAN_UNPOISON_MEMORY_REGION((addr), (n))
#else
#define POISON(addr, n)   ((void) (addr), (void) (n))
#define UNPOISON(addr, n) ((void) (addr), (void) (n))
#endif

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
		if (a->base)
			UNPOISON(a->base, a->cap);
		free(a->base);
#ifdef __GLIBC__

		/*
		 * A larger batch's activations are about to be touched: first give
		 * back the heap memory the process freed earlier (conversion buffers
		 * of the model's load, an earlier pass's scratch), which glibc keeps
		 * below its trim threshold (up to 2 x 32 MB once large blocks have
		 * been freed).  Otherwise the new peak stacks on memory nobody uses:
		 * 20-50 MB more peak RSS in a flan-t5-small training step (ptune
		 * bench), varying from run to run.  Rare (the arena only grows), and
		 * cheap next to the pass.
		 */
		malloc_trim(0);
#endif
		a->base = block;
		a->cap = cap;
	}
	UNPOISON(a->base, bytes);
	POISON(a->base + bytes, a->cap - bytes);
	a->used = 0;
	return 0;
}

void
pt_arena_free(PtArena *a)
{
	if (a->base)
		UNPOISON(a->base, a->cap);
	free(a->base);
	a->base = NULL;
	a->cap = a->used = 0;
}
