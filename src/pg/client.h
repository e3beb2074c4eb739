/*
 * client.h - the backend side of a request to the model worker.
 */
#ifndef PTUNE_CLIENT_H
#define PTUNE_CLIENT_H

#include "lib/stringinfo.h"

#include "ipc.h"

/* Called on every wake-up while a request waits (training progress). */
typedef void (*PtuneWaitCallback) (int progress_slot, void *arg);

/*
 * Sends `request` to the worker and waits for its answer, which is copied
 * into `response` (initialised here).  Errors of the worker are re-raised
 * here with their SQLSTATE.  Query cancel, statement_timeout and
 * ptune.request_timeout (when timeout_applies) interrupt the wait; the
 * request is then abandoned and the worker stops work on it.
 */
void		ptune_call(PtuneRequestKind kind, StringInfo request, StringInfo response,
					   bool timeout_applies, PtuneWaitCallback callback, void *arg);

/*
 * The same in steps, for a request that streams its data after a header:
 *   ptune_call_begin(&call, kind, header, ...);
 *   for each chunk: ptune_call_send(&call, chunk, last);
 *   ptune_call_finish(&call, response);
 * Each step gives the slot back when it raises an error; an error raised by
 * the caller between steps must call ptune_call_abort() (in its PG_CATCH).
 */
typedef struct PtuneCall
{
	int			index;
	uint64		request_id;
	TimestampTz deadline;
	TimestampTz absent_since;
	PtuneWaitCallback callback;
	void	   *arg;
} PtuneCall;

void		ptune_call_begin(PtuneCall *call, PtuneRequestKind kind, StringInfo header,
							 bool timeout_applies, PtuneWaitCallback callback, void *arg);
void		ptune_call_send(PtuneCall *call, StringInfo chunk, bool last);
void		ptune_call_finish(PtuneCall *call, StringInfo response);
void		ptune_call_abort(PtuneCall *call);

/* Raises the error "ptune is not loaded" unless the shared state exists. */
void		ptune_require_shared(void);

#endif
