/*
 * slot.h - the request-slot protocol (see ipc.h for a request's life), the
 * one place where slots change state.  Backends (client.c) take a slot,
 * submit a payload, collect the answer or abandon it; the worker
 * (worker*.c) takes pending slots, reads them, and answers or fails them.
 *
 * Locking rules, kept here so callers need not know them: the shared lock is
 * held only to read or flip slot fields; payloads are allocated, copied and
 * freed outside it; nothing under it can raise an ERROR.
 */
#ifndef PTUNE_SLOT_H
#define PTUNE_SLOT_H

#include "lib/stringinfo.h"
#include "utils/timestamp.h"

#include "ipc.h"

/* ---- backend side ---- */

/*
 * Waits its turn (FIFO among waiters that could use a free slot) for a slot
 * and reserves it.  Honours query cancel, statement_timeout and `deadline`
 * (0: none; past it, ERROR 57014 naming ptune.request_timeout).  Trainings
 * take at most ptune_training_slot_cap() slots, so the rest stay for
 * classification; a role over ptune.max_trainings_per_role gets ERROR 53400.
 * Returns the slot's index; *request_id names this use of it.
 */
int			ptune_slot_take(PtuneRequestKind kind, TimestampTz deadline, uint64 *request_id);
/* Copies the payload into shared memory (outside the lock) and queues the reserved slot. */
void		ptune_slot_submit(int index, const char *data, Size len);
/*
 * If the worker answered: copies the response into `response` (initialised
 * here), frees the slot and returns true; a worker's error is re-raised
 * here with its SQLSTATE.  False while the request is still waiting.
 */
bool		ptune_slot_collect(int index, uint64 request_id, StringInfo response);
/* Gives a request up: freed now, or marked for the worker to free (and stop on). */
void		ptune_slot_abandon(int index, uint64 request_id);
/*
 * Streaming requests (training rows): after ptune_slot_submit() of the
 * header, the worker asks for each chunk; the backend posts it (copied into
 * shared memory outside the lock), the worker reads it in place and drops it.
 */
bool		ptune_slot_chunk_wanted(int index);
void		ptune_slot_post_chunk(int index, uint64 request_id, const char *data, Size len, bool last);
/*
 * Releases whatever this backend holds (waiter entry, slot, payloads): for
 * PG_CATCH blocks and at exit.  Safe to call with the lock held and twice.
 */
void		ptune_slot_release_mine(void);

/* Most slots trainings may hold at once; the others are classification's. */
int			ptune_training_slot_cap(int n_slots);

/* ---- worker side ---- */

/* Marks every PENDING slot of this kind RUNNING, oldest first; returns how many (indices in out). */
int			ptune_slot_take_pending(PtuneRequestKind kind, int *out, int max);
/* Copies a RUNNING slot's request payload into memory of the current context. */
void		ptune_slot_read(int index, StringInfo msg);
/* Answers a slot (DONE for its backend, or freed if the backend left). */
void		ptune_slot_answer(int index, StringInfo response);
void		ptune_slot_fail(int index, int sqlstate, const char *message, const char *detail,
							const char *hint);
/*
 * Fails a slot with the error being handled in a PG_CATCH block (releasing
 * every LWLock first, as each of the worker's error handlers must).
 */
void		ptune_slot_fail_caught(int index);

/*
 * In a PG_CATCH block: releases every LWLock (the error may have come while
 * one was held), switches to cxt and returns a copy of the error, flushed.
 */
ErrorData  *ptune_catch_error(MemoryContext cxt);
/* Streaming: ask the backend for the next chunk; read it in place (false: none yet); free it. */
void		ptune_slot_want_chunk(int index);
bool		ptune_slot_peek_chunk(int index, StringInfo view, bool *last);
void		ptune_slot_drop_chunk(int index);
/* True if the backend gave up on the slot (cancel, timeout, exit). */
bool		ptune_slot_abandoned(int index);
/* At the worker's exit: fail what generation `gen` was serving, free what was abandoned. */
void		ptune_slot_worker_exit(uint64 gen);

/* Bytes of payload now allocated in shared memory (for ptune.status()). */
uint64		ptune_payload_bytes(void);

#endif
