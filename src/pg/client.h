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

/* Raises the error "ptune is not loaded" unless the shared state exists. */
void		ptune_require_shared(void);

#endif
