/*
 * arena.h - one growable block of scratch memory for a forward/backward pass.
 *
 * A pass carves all of its activations out of an arena in two steps: a
 * counting run (base == NULL) that only adds up sizes, then pt_arena_reserve()
 * and the real run.  The arena keeps its block between passes, so the steady
 * state allocates nothing.
 */
#ifndef PT_ARENA_H
#define PT_ARENA_H

#include <stddef.h>

typedef struct PtArena
{
	char	   *base;			/* NULL while counting */
	size_t		cap;
	size_t		used;
} PtArena;

#define PT_ARENA_ALIGN 64

/* n floats, 64-byte aligned; NULL in counting mode. */
float	   *pt_arena_floats(PtArena *a, size_t n);
void	   *pt_arena_bytes(PtArena *a, size_t n);

/* Makes room for `bytes` (may move the block) and resets used to 0. */
int			pt_arena_reserve(PtArena *a, size_t bytes);
void		pt_arena_free(PtArena *a);

#endif
