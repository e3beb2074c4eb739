/*
 * client.c - send a request to the model worker and wait for the answer
 * (see ipc.h for the life of a request slot).
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/wait_event.h"

#include "client.h"
#include "guc.h"

/* A request waiting for a worker that is not running fails after this long. */
#define WORKER_ABSENT_GRACE_MS 15000
/* Waits wake up this often to check on the worker even without a signal. */
#define POLL_MS 200

static bool exit_callback_registered = false;

void
ptune_require_shared(void)
{
	if (ptune_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("ptune is not loaded"),
				 errhint("Add ptune to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/* Frees the payloads of a slot and marks it free; the caller holds the lock. */
static void
release_slot(PtuneSlot *slot)
{
	dsa_area   *area = ptune_dsa();

	if (DsaPointerIsValid(slot->request))
		dsa_free(area, slot->request);
	if (DsaPointerIsValid(slot->response))
		dsa_free(area, slot->response);
	slot->request = slot->response = InvalidDsaPointer;
	slot->state = PTUNE_SLOT_FREE;
	slot->backend_pid = 0;
	slot->backend_latch = NULL;
}

/*
 * Gives up on a request: a slot the worker has not taken is freed now; one
 * it is working on is marked so that the worker frees it when done (and a
 * training stops at its next step).  The caller holds the lock.
 */
static void
abandon_slot(PtuneSlot *slot)
{
	if (slot->state == PTUNE_SLOT_RUNNING)
	{
		slot->cancelled = true;
		slot->state = PTUNE_SLOT_ABANDONED;
	}
	else if (slot->state != PTUNE_SLOT_FREE && slot->state != PTUNE_SLOT_ABANDONED)
		release_slot(slot);
}

/* At backend exit (including pg_terminate_backend), give back our slots. */
static void
release_my_slots(int code, Datum arg)
{
	if (ptune_shared == NULL)
		return;
	LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < ptune_shared->n_slots; i++)
		if (ptune_shared->slots[i].backend_pid == MyProcPid)
			abandon_slot(&ptune_shared->slots[i]);
	LWLockRelease(&ptune_shared->lock);
	if (ptune_shared->worker_latch)
		SetLatch(ptune_shared->worker_latch);
}

/* Waits (cancellably) for a free slot, then queues the request in it. */
static int
submit(PtuneRequestKind kind, dsa_pointer payload, Size len)
{
	for (;;)
	{
		LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
		for (int i = 0; i < ptune_shared->n_slots; i++)
		{
			PtuneSlot  *slot = &ptune_shared->slots[i];

			if (slot->state != PTUNE_SLOT_FREE)
				continue;
			slot->state = PTUNE_SLOT_PENDING;
			slot->kind = kind;
			slot->request_id = ptune_shared->next_request_id++;
			slot->generation = 0;
			slot->backend_pid = MyProcPid;
			slot->backend_latch = MyLatch;
			slot->cancelled = false;
			slot->failed = false;
			slot->request = payload;
			slot->request_len = len;
			slot->response = InvalidDsaPointer;
			slot->response_len = 0;
			slot->progress_slot = -1;
			LWLockRelease(&ptune_shared->lock);
			if (ptune_shared->worker_latch)
				SetLatch(ptune_shared->worker_latch);
			return i;
		}
		LWLockRelease(&ptune_shared->lock);

		/* every slot is busy: wait for one, as a lock wait would */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 10,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* Why a request cannot be served by the current worker, or NULL if it can. */
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
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("%s", problem),
			 errhint("The worker restarts by itself; see the server log, then retry.")));
}

/* How long to sleep: until the next poll, or sooner if ptune.request_timeout expires first. */
static long
wait_ms(TimestampTz started, bool timeout_applies)
{
	long		remaining;

	if (!timeout_applies || ptune_request_timeout <= 0)
		return POLL_MS;
	remaining = ptune_request_timeout -
		(long) ((GetCurrentTimestamp() - started) / 1000);
	return Max(1, Min(POLL_MS, remaining));
}

void
ptune_call(PtuneRequestKind kind, StringInfo request, StringInfo response,
		   bool timeout_applies, PtuneWaitCallback callback, void *arg)
{
	dsa_area   *area;
	dsa_pointer payload;
	int			index;
	PtuneSlot  *slot;
	uint64		request_id;
	TimestampTz started = GetCurrentTimestamp();
	TimestampTz absent_since = 0;

	ptune_require_shared();
	if (!exit_callback_registered)
	{
		before_shmem_exit(release_my_slots, (Datum) 0);
		exit_callback_registered = true;
	}
	if (ptune_shared->worker_state == PTUNE_WORKER_FAILED)
		raise_worker_problem("model", ptune_shared->model_error);

	area = ptune_dsa();
	payload = dsa_allocate_extended(area, Max(request->len, 1), DSA_ALLOC_HUGE | DSA_ALLOC_NO_OOM);
	if (!DsaPointerIsValid(payload))
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of shared memory for a ptune request of %d bytes", request->len)));
	memcpy(dsa_get_address(area, payload), request->data, request->len);
	index = submit(kind, payload, request->len);
	slot = &ptune_shared->slots[index];
	request_id = slot->request_id;

	PG_TRY();
	{
		for (;;)
		{
			const char *problem;
			char		model_error[PTUNE_ERROR_LEN];
			TimestampTz now = GetCurrentTimestamp();

			LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
			Assert(slot->request_id == request_id);
			if (slot->state == PTUNE_SLOT_DONE)
			{
				PtuneSlot	copy = *slot;

				initStringInfo(response);
				if (!copy.failed && DsaPointerIsValid(copy.response))
					appendBinaryStringInfo(response, dsa_get_address(area, copy.response),
										   (int) copy.response_len);
				release_slot(slot);
				LWLockRelease(&ptune_shared->lock);
				if (copy.failed)
					ereport(ERROR,
							(errcode(copy.sqlstate),
							 errmsg("%s", copy.message),
							 copy.detail[0] ? errdetail("%s", copy.detail) : 0,
							 copy.hint[0] ? errhint("%s", copy.hint) : 0));
				break;
			}
			if (ptune_shared->worker_state == PTUNE_WORKER_STOPPED)
				absent_since = absent_since ? absent_since : now;
			else
				absent_since = 0;
			problem = worker_problem(slot, absent_since, now);
			strlcpy(model_error, ptune_shared->model_error, sizeof(model_error));
			if (problem)
				release_slot(slot);
			LWLockRelease(&ptune_shared->lock);
			if (problem)
				raise_worker_problem(problem, model_error);

			if (callback)
				callback(slot->progress_slot, arg);
			if (timeout_applies && ptune_request_timeout > 0 &&
				TimestampDifferenceExceeds(started, now, ptune_request_timeout))
				ereport(ERROR,
						(errcode(ERRCODE_QUERY_CANCELED),
						 errmsg("ptune request timed out after %d ms", ptune_request_timeout),
						 errhint("Raise ptune.request_timeout, or check ptune.status() for a busy worker.")));

			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 wait_ms(started, timeout_applies), PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_CATCH();
	{
		/* cancel, timeout or a worker problem: give the slot back and tell the worker */
		LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
		if (slot->request_id == request_id && slot->backend_pid == MyProcPid)
			abandon_slot(slot);
		LWLockRelease(&ptune_shared->lock);
		if (ptune_shared->worker_latch)
			SetLatch(ptune_shared->worker_latch);
		PG_RE_THROW();
	}
	PG_END_TRY();
}
