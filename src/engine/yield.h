/*
 * yield.h - pause points inside a training pass.
 *
 * One training row's forward and backward pass is the smallest unit the
 * trainer can schedule (about 0.45 s on flan-t5-small), too long for a
 * server that must answer a one-row classification within some 100 ms.  So
 * a pass run in a workspace with a hook (a trainer's: its training and
 * validation passes) calls it before every layer of its forward and
 * backward (encoder layers + decoder layers times per direction), and the
 * caller may do other work there: the database worker serves pending
 * classification requests.
 *
 * The hook runs on the thread that runs the pass, outside any OpenMP
 * parallel region, while the pass's activations sit in its own arena.  It
 * may run other passes on the same model with another workspace (weights
 * are read-only; per-thread scratch such as the bfloat16 input copy is never
 * live across a layer boundary), but must not touch the suspended pass, its
 * workspace or its trainer.  It returns 0 to go on, or non-zero to stop: the
 * pass then unwinds (no longjmp: every layer function returns) and fails
 * with PT_ERR_CANCELLED.
 */
#ifndef PT_YIELD_H
#define PT_YIELD_H

typedef int (*PtYieldFn) (void *arg);

typedef struct PtYield
{
	PtYieldFn	fn;				/* NULL: no pause points */
	void	   *arg;
} PtYield;

/* Calls the hook if any: 0 to go on, -1 (error PT_ERR_CANCELLED set) when it asked to stop. */
int			pt_yield(const PtYield *y);

#endif
