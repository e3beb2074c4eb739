/*
 * client.c - send a request to the model worker and wait for the answer
 * (the slot protocol is in slot.c; see ipc.h for a request's life).
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/wait_event.h"

#include "client.h"
#include "guc.h"
#include "slot.h"

/* A request waiting for a worker that is not running fails after this long. */
#define WORKER_ABSENT_GRACE_MS 15000
/* Waits wake up this often to check on the worker even without a signal. */
#define POLL_MS 200

void
ptune_require_shared(void)
{
	if (ptune_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("ptune is not loaded"),
				 errhint("Add ptune to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/* Why a request cannot be served by the current worker, or NULL if it can; the caller holds the lock. */
static const char *
worker_problem(PtuneSlot *slot, TimestampTz absent_since, TimestampTz now)
{
	PtuneWorkerState state = ptune_shared->worker_state;

	if (slot->state == PTUNE_SLOT_RUNNING && slot->generation != ptune_shared->generation)
		return "the ptune worker restarted while serving this request";
	if (slot->state == PTUNE_SLOT_PENDING && state == PTUNE_WORKER_FAILED)
		return "model";
	if (slot->state == PTUNE_SLOT_PENDING && state == PTUNE_WORKER_STOPPED &&
		absent_since != 0 && TimestampDifferenceExceeds(absent_since, now, WORKER_ABSENT_GRACE_MS))
		return "the ptune worker is not running";
	return NULL;
}

/*
 * Worker states are reported as 55000, never with class 08 (connection
 * exceptions) or 57P01-57P03: connection pools drop a connection on those,
 * and this connection is fine.
 */
static void
raise_worker_problem(const char *problem, const char *model_error)
{
	if (strcmp(problem, "model") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the ptune model is not loaded"),
				 errdetail("%s", model_error),
				 errhint("Fix ptune.model_path or the model files, then reload the configuration "
						 "(SELECT pg_reload_conf()).")));
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("%s", problem),
			 errhint("The worker restarts by itself; see the server log, then retry.")));
}

/* How long to sleep: until the next poll, or sooner if the deadline comes first. */
static long
wait_ms(TimestampTz deadline)
{
	long		remaining;

	if (deadline == 0)
		return POLL_MS;
	remaining = (long) ((deadline - GetCurrentTimestamp()) / 1000);
	return Max(1, Min(POLL_MS, remaining));
}

static void pg_attribute_noreturn()
raise_timeout(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_QUERY_CANCELED),
			 errmsg("ptune request timed out after %d ms", ptune_request_timeout),
			 errhint("Raise ptune.request_timeout, or check ptune.status() for a busy worker.")));
}

/*
 * Waits until the worker answers (then the response is collected: true) or,
 * when for_chunk, until it asks for the next chunk (false).  Raises the
 * worker's error, worker problems and timeouts; the caller's PG_CATCH gives
 * the slot back.
 */
static bool
wait_for_worker(PtuneCall *call, StringInfo response, bool for_chunk)
{
	for (;;)
	{
		const char *problem;
		char		model_error[PTUNE_ERROR_LEN];
		TimestampTz now = GetCurrentTimestamp();
		PtuneSlot  *slot = &ptune_shared->slots[call->index];
		int			progress_slot;

		if (ptune_slot_collect(call->index, call->request_id, response))
		{
			call->index = -1;
			return true;
		}
		if (for_chunk && ptune_slot_chunk_wanted(call->index))
			return false;

		LWLockAcquire(&ptune_shared->lock, LW_SHARED);
		if (ptune_shared->worker_state == PTUNE_WORKER_STOPPED)
			call->absent_since = call->absent_since ? call->absent_since : now;
		else
			call->absent_since = 0;
		problem = worker_problem(slot, call->absent_since, now);
		memcpy(model_error, ptune_shared->model_error, PTUNE_ERROR_LEN);
		progress_slot = slot->progress_slot;
		LWLockRelease(&ptune_shared->lock);
		if (problem)
			raise_worker_problem(problem, model_error);

		if (call->callback)
			call->callback(progress_slot, call->arg);
		if (call->deadline != 0 && now >= call->deadline)
			raise_timeout();

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait_ms(call->deadline), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

void
ptune_call_begin(PtuneCall *call, PtuneRequestKind kind, StringInfo request, bool timeout_applies,
				 PtuneWaitCallback callback, void *arg)
{
	ptune_require_shared();
	memset(call, 0, sizeof(*call));
	call->index = -1;
	call->callback = callback;
	call->arg = arg;
	if (ptune_shared->worker_state == PTUNE_WORKER_FAILED)
		raise_worker_problem("model", ptune_shared->model_error);
	if (timeout_applies && ptune_request_timeout > 0)
		call->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ptune_request_timeout);

	/* the wait for a slot is cancellable and bounded by the deadline; nothing is allocated yet */
	call->index = ptune_slot_take(kind, call->deadline, &call->request_id);
	PG_TRY();
	{
		ptune_slot_submit(call->index, request->data, request->len);
	}
	PG_CATCH();
	{
		ptune_slot_release_mine();
		PG_RE_THROW();
	}
	PG_END_TRY();
}

void
ptune_call_send(PtuneCall *call, StringInfo chunk, bool last)
{
	StringInfoData early;

	PG_TRY();
	{
		if (wait_for_worker(call, &early, true))
			elog(ERROR, "the ptune worker answered before it had all the rows");
		ptune_slot_post_chunk(call->index, call->request_id, chunk->data, chunk->len, last);
	}
	PG_CATCH();
	{
		ptune_slot_release_mine();
		PG_RE_THROW();
	}
	PG_END_TRY();
}

void
ptune_call_finish(PtuneCall *call, StringInfo response)
{
	PG_TRY();
	{
		(void) wait_for_worker(call, response, false);
	}
	PG_CATCH();
	{
		/* cancel, timeout, out of memory or a worker problem: give everything back */
		ptune_slot_release_mine();
		PG_RE_THROW();
	}
	PG_END_TRY();
}

void
ptune_call_abort(PtuneCall *call)
{
	ptune_slot_release_mine();
	call->index = -1;
}

void
ptune_call(PtuneRequestKind kind, StringInfo request, StringInfo response,
		   bool timeout_applies, PtuneWaitCallback callback, void *arg)
{
	PtuneCall	call;

	ptune_call_begin(&call, kind, request, timeout_applies, callback, arg);
	ptune_call_finish(&call, response);
}
