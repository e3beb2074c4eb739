/*
 * slot.c - the request-slot protocol (see slot.h and ipc.h).  Linked into
 * both ptune.so (backends) and ptune_worker.so (the worker).
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "slot.h"

/* A waiting backend re-checks its deadline this often even without a wake-up. */
#define TAKE_POLL_MS 200

/* What this backend holds, so that an error or exit can give it back. */
static int	my_waiter = -1;
static int	my_slot = -1;
static uint64 my_request_id = 0;
static dsa_pointer my_response = InvalidDsaPointer;
static Size my_response_len = 0;
static dsa_pointer my_chunk = InvalidDsaPointer;	/* allocated, not yet handed over */
static Size my_chunk_len = 0;
static bool exit_callback_registered = false;

static int
setting(const char *name, int fallback)
{
	const char *value = GetConfigOption(name, true, false);

	return value ? atoi(value) : fallback;
}

int
ptune_training_slot_cap(int n_slots)
{
	return Min(PTUNE_MAX_TRAININGS, n_slots / 2);
}

uint64
ptune_payload_bytes(void)
{
	return pg_atomic_read_u64(&ptune_shared->payload_bytes);
}

/* ---- payloads (never under the lock) ------------------------------------- */

static dsa_pointer
payload_alloc(Size len, const char *what)
{
	dsa_area   *area = ptune_dsa();
	size_t		limit = ptune_dsa_limit();
	dsa_pointer dp;

	ptune_dsa_apply_limit();
	/* the area's own bookkeeping takes some of it; a payload can use the rest */
	if (len > limit - PTUNE_DSA_INITIAL_SIZE / 2)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a ptune %s of %zu bytes does not fit in ptune.max_shared_memory (%zu kB)",
						what, (size_t) len, limit / 1024),
				 errhint("Send fewer or shorter rows per call, or raise ptune.max_shared_memory.")));
	dp = dsa_allocate_extended(area, Max(len, 1), DSA_ALLOC_HUGE | DSA_ALLOC_NO_OOM);
	if (!DsaPointerIsValid(dp))
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of shared memory for a ptune %s of %zu bytes", what, (size_t) len),
				 errdetail("Requests in flight use %llu bytes of ptune.max_shared_memory (%zu kB).",
						   (unsigned long long) ptune_payload_bytes(), limit / 1024),
				 errhint("Retry when fewer requests run, or raise ptune.max_shared_memory.")));
	pg_atomic_fetch_add_u64(&ptune_shared->payload_bytes, len);
	return dp;
}

static void
payload_free(dsa_pointer dp, Size len)
{
	if (!DsaPointerIsValid(dp))
		return;
	dsa_free(ptune_dsa(), dp);
	pg_atomic_fetch_sub_u64(&ptune_shared->payload_bytes, len);
}

/*
 * Empties a slot (the caller holds the lock) and hands back its payloads,
 * for the caller to free once the lock is released.
 */
typedef struct Payloads
{
	dsa_pointer request,
				response,
				chunk;
	Size		request_len,
				response_len,
				chunk_len;
} Payloads;

#define NO_PAYLOADS {InvalidDsaPointer, InvalidDsaPointer, InvalidDsaPointer, 0, 0, 0}

static Payloads
empty_slot(PtuneSlot *slot)
{
	Payloads	p = {slot->request, slot->response, slot->chunk, slot->request_len, slot->response_len,
	slot->chunk_len};

	slot->request = slot->response = slot->chunk = InvalidDsaPointer;
	slot->request_len = slot->response_len = slot->chunk_len = 0;
	slot->want_chunk = false;
	slot->state = PTUNE_SLOT_FREE;
	slot->backend_pid = 0;
	slot->backend_latch = NULL;
	slot->user = InvalidOid;
	return p;
}

/* After the lock: free what empty_slot() handed back and wake the waiters. */
static void
after_free(Payloads p)
{
	payload_free(p.request, p.request_len);
	payload_free(p.response, p.response_len);
	payload_free(p.chunk, p.chunk_len);
	ConditionVariableBroadcast(&ptune_shared->slot_freed);
}

/* ---- backend side ---------------------------------------------------------- */

static void
release_at_exit(int code, Datum arg)
{
	ptune_slot_release_mine();
}

static int
trainings_held(Oid user, int *by_user)
{
	int			n = 0;

	*by_user = 0;
	for (int i = 0; i < ptune_shared->n_slots; i++)
	{
		PtuneSlot  *s = &ptune_shared->slots[i];

		if (s->state != PTUNE_SLOT_FREE && s->kind == PTUNE_REQ_TRAIN)
		{
			n++;
			*by_user += s->user == user;
		}
	}
	return n;
}

/* A slot that a request of this class may take now, or -1; the caller holds the lock. */
static int
usable_slot(bool training)
{
	int			by_user;

	if (training && trainings_held(InvalidOid, &by_user) >= ptune_training_slot_cap(ptune_shared->n_slots))
		return -1;
	for (int i = 0; i < ptune_shared->n_slots; i++)
		if (ptune_shared->slots[i].state == PTUNE_SLOT_FREE)
			return i;
	return -1;
}

/* Our turn: no earlier waiter could take a slot now.  The caller holds the lock. */
static bool
my_turn(void)
{
	PtuneWaiter *w = ptune_waiters();
	uint64		mine = w[my_waiter].ticket;

	for (int i = 0; i < ptune_shared->n_waiters; i++)
		if (w[i].pid != 0 && w[i].ticket < mine && usable_slot(w[i].training) >= 0)
			return false;
	return true;
}

static void
training_cap_error(int cap)
{
	ereport(ERROR,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg("role \"%s\" already trains %d prompts at once", GetUserNameFromId(GetUserId(), false), cap),
			 errdetail("ptune.max_trainings_per_role is %d.", cap),
			 errhint("Wait for one of them to finish, or ask an administrator to raise ptune.max_trainings_per_role.")));
}

int
ptune_slot_take(PtuneRequestKind kind, TimestampTz deadline, uint64 *request_id)
{
	bool		training = kind == PTUNE_REQ_TRAIN;
	int			per_role = setting("ptune.max_trainings_per_role", 2);
	int			index = -1;
	int			by_user;
	PtuneWaiter *w = ptune_waiters();

	Assert(my_slot < 0 && my_waiter < 0);
	if (!exit_callback_registered)
	{
		before_shmem_exit(release_at_exit, (Datum) 0);
		exit_callback_registered = true;
	}

	LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
	if (training)
		(void) trainings_held(GetUserId(), &by_user);
	if (!training || by_user < per_role)
		for (int i = 0; i < ptune_shared->n_waiters; i++)
			if (w[i].pid == 0)
			{
				w[i] = (PtuneWaiter) {MyProcPid, training, ptune_shared->next_ticket++};
				my_waiter = i;
				break;
			}
	LWLockRelease(&ptune_shared->lock);
	if (training && by_user >= per_role)
		training_cap_error(per_role);
	if (my_waiter < 0)
		elog(ERROR, "no free entry in ptune's table of waiting sessions");

	PG_TRY();
	{
		ConditionVariablePrepareToSleep(&ptune_shared->slot_freed);
		for (;;)
		{
			bool		over_cap = false;
			long		sleep_ms = TAKE_POLL_MS;

			LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
			if (training)
			{
				(void) trainings_held(GetUserId(), &by_user);
				over_cap = by_user >= per_role;
			}
			if (!over_cap && my_turn() && (index = usable_slot(training)) >= 0)
			{
				PtuneSlot  *slot = &ptune_shared->slots[index];

				slot->state = PTUNE_SLOT_RESERVED;
				slot->kind = kind;
				slot->request_id = ptune_shared->next_request_id++;
				slot->generation = 0;
				slot->backend_pid = MyProcPid;
				slot->backend_latch = MyLatch;
				slot->user = GetUserId();
				slot->cancelled = false;
				slot->failed = false;
				slot->request = slot->response = slot->chunk = InvalidDsaPointer;
				slot->request_len = slot->response_len = slot->chunk_len = 0;
				slot->want_chunk = slot->chunk_last = false;
				slot->progress_slot = -1;
				my_slot = index;
				my_request_id = *request_id = slot->request_id;
				w[my_waiter].pid = 0;
				my_waiter = -1;
			}
			LWLockRelease(&ptune_shared->lock);
			if (over_cap)
				training_cap_error(per_role);
			if (index >= 0)
				break;

			if (deadline != 0)
			{
				TimestampTz now = GetCurrentTimestamp();

				if (now >= deadline)
					ereport(ERROR,
							(errcode(ERRCODE_QUERY_CANCELED),
							 errmsg("ptune request timed out after %s ms waiting for a free request slot",
									GetConfigOption("ptune.request_timeout", true, false)),
							 errhint("Raise ptune.request_timeout or ptune.request_slots, or check ptune.status() for a busy worker.")));
				sleep_ms = Max(1, Min(sleep_ms, (long) ((deadline - now) / 1000)));
			}
			/* sleeps on the latch and runs CHECK_FOR_INTERRUPTS: cancel and timeouts end it */
			(void) ConditionVariableTimedSleep(&ptune_shared->slot_freed, sleep_ms, PG_WAIT_EXTENSION);
		}
		ConditionVariableCancelSleep();
	}
	PG_CATCH();
	{
		ConditionVariableCancelSleep();
		ptune_slot_release_mine();
		PG_RE_THROW();
	}
	PG_END_TRY();
	/* the next waiter may be next in line for another free slot */
	ConditionVariableBroadcast(&ptune_shared->slot_freed);
	return index;
}

void
ptune_slot_submit(int index, const char *data, Size len)
{
	PtuneSlot  *slot = &ptune_shared->slots[index];

	Assert(index == my_slot && slot->state == PTUNE_SLOT_RESERVED);
	/* a RESERVED slot is this backend's alone: the worker never reads it */
	slot->request = payload_alloc(len, "request");
	slot->request_len = len;
	memcpy(dsa_get_address(ptune_dsa(), slot->request), data, len);
	LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
	slot->state = PTUNE_SLOT_PENDING;
	LWLockRelease(&ptune_shared->lock);
	if (ptune_shared->worker_latch)
		SetLatch(ptune_shared->worker_latch);
}

bool
ptune_slot_collect(int index, uint64 request_id, StringInfo response)
{
	PtuneSlot  *slot = &ptune_shared->slots[index];
	bool		failed = false;
	int			sqlstate = 0;
	char		message[PTUNE_ERROR_LEN],
				detail[PTUNE_ERROR_LEN],
				hint[PTUNE_ERROR_LEN];
	Payloads	p;

	LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
	Assert(slot->request_id == request_id);
	if (slot->state != PTUNE_SLOT_DONE)
	{
		LWLockRelease(&ptune_shared->lock);
		return false;
	}
	failed = slot->failed;
	if (failed)
	{
		sqlstate = slot->sqlstate;
		memcpy(message, slot->message, PTUNE_ERROR_LEN);
		memcpy(detail, slot->detail, PTUNE_ERROR_LEN);
		memcpy(hint, slot->hint, PTUNE_ERROR_LEN);
	}
	p = empty_slot(slot);
	/* the response is ours now: freed below, or by ptune_slot_release_mine() on error */
	my_response = p.response;
	my_response_len = p.response_len;
	p.response = InvalidDsaPointer;
	my_slot = -1;
	LWLockRelease(&ptune_shared->lock);
	after_free(p);

	initStringInfo(response);
	if (!failed && DsaPointerIsValid(my_response))
	{
		enlargeStringInfo(response, (int) my_response_len);
		appendBinaryStringInfo(response, dsa_get_address(ptune_dsa(), my_response), (int) my_response_len);
	}
	payload_free(my_response, my_response_len);
	my_response = InvalidDsaPointer;
	if (failed)
		ereport(ERROR,
				(errcode(sqlstate),
				 errmsg("%s", message),
				 detail[0] ? errdetail("%s", detail) : 0,
				 hint[0] ? errhint("%s", hint) : 0));
	return true;
}

void
ptune_slot_abandon(int index, uint64 request_id)
{
	PtuneSlot  *slot = &ptune_shared->slots[index];
	Payloads	p = NO_PAYLOADS;

	LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
	if (slot->request_id == request_id && slot->backend_pid == MyProcPid)
	{
		if (slot->state == PTUNE_SLOT_RUNNING && slot->generation == ptune_shared->generation &&
			ptune_shared->worker_state != PTUNE_WORKER_STOPPED)
		{
			/* the worker frees it when it next looks, and a training stops there */
			slot->cancelled = true;
			slot->state = PTUNE_SLOT_ABANDONED;
		}
		else if (slot->state != PTUNE_SLOT_FREE && slot->state != PTUNE_SLOT_ABANDONED)
			p = empty_slot(slot);
	}
	LWLockRelease(&ptune_shared->lock);
	if (index == my_slot)
		my_slot = -1;
	after_free(p);
	if (ptune_shared->worker_latch)
		SetLatch(ptune_shared->worker_latch);
}

void
ptune_slot_release_mine(void)
{
	if (ptune_shared == NULL)
		return;
	/* an error raised while we held the lock must not make us wait for ourselves */
	if (LWLockHeldByMe(&ptune_shared->lock))
		LWLockRelease(&ptune_shared->lock);
	if (my_waiter >= 0)
	{
		LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
		ptune_waiters()[my_waiter].pid = 0;
		LWLockRelease(&ptune_shared->lock);
		my_waiter = -1;
		ConditionVariableBroadcast(&ptune_shared->slot_freed);
	}
	if (my_slot >= 0)
		ptune_slot_abandon(my_slot, my_request_id);
	if (DsaPointerIsValid(my_response))
	{
		payload_free(my_response, my_response_len);
		my_response = InvalidDsaPointer;
	}
	if (DsaPointerIsValid(my_chunk))
	{
		payload_free(my_chunk, my_chunk_len);
		my_chunk = InvalidDsaPointer;
	}
}

bool
ptune_slot_chunk_wanted(int index)
{
	bool		wanted;

	LWLockAcquire(&ptune_shared->lock, LW_SHARED);
	wanted = ptune_shared->slots[index].want_chunk;
	LWLockRelease(&ptune_shared->lock);
	return wanted;
}

void
ptune_slot_post_chunk(int index, uint64 request_id, const char *data, Size len, bool last)
{
	PtuneSlot  *slot = &ptune_shared->slots[index];
	bool		handed = false;

	my_chunk = payload_alloc(len, "chunk of training rows");
	my_chunk_len = len;
	memcpy(dsa_get_address(ptune_dsa(), my_chunk), data, len);
	LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
	if (slot->request_id == request_id && slot->state == PTUNE_SLOT_RUNNING && slot->want_chunk &&
		!DsaPointerIsValid(slot->chunk))
	{
		slot->chunk = my_chunk;
		slot->chunk_len = len;
		slot->chunk_last = last;
		slot->want_chunk = false;
		handed = true;
	}
	LWLockRelease(&ptune_shared->lock);
	if (!handed)
		payload_free(my_chunk, my_chunk_len);	/* the worker answered meanwhile: collect says how */
	my_chunk = InvalidDsaPointer;
	if (ptune_shared->worker_latch)
		SetLatch(ptune_shared->worker_latch);
}

/* ---- worker side ----------------------------------------------------------- */

int
ptune_slot_take_pending(PtuneRequestKind kind, int *out, int max)
{
	int			n = 0;

	LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < ptune_shared->n_slots && n < max; i++)
	{
		PtuneSlot  *slot = &ptune_shared->slots[i];

		if (slot->state == PTUNE_SLOT_PENDING && slot->kind == kind)
		{
			slot->state = PTUNE_SLOT_RUNNING;
			slot->generation = ptune_shared->generation;
			out[n++] = i;
		}
	}
	/* oldest request first (insertion sort: a round has few) */
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && ptune_shared->slots[out[j]].request_id < ptune_shared->slots[out[j - 1]].request_id; j--)
		{
			int			t = out[j];

			out[j] = out[j - 1];
			out[j - 1] = t;
		}
	LWLockRelease(&ptune_shared->lock);
	return n;
}

void
ptune_slot_read(int index, StringInfo msg)
{
	PtuneSlot  *slot = &ptune_shared->slots[index];

	/* RUNNING or ABANDONED: only the worker frees the payload now */
	initStringInfo(msg);
	if (DsaPointerIsValid(slot->request) && slot->request_len > 0)
	{
		enlargeStringInfo(msg, (int) slot->request_len);
		appendBinaryStringInfo(msg, dsa_get_address(ptune_dsa(), slot->request), (int) slot->request_len);
	}
}

bool
ptune_slot_abandoned(int index)
{
	bool		abandoned;

	LWLockAcquire(&ptune_shared->lock, LW_SHARED);
	abandoned = ptune_shared->slots[index].state == PTUNE_SLOT_ABANDONED;
	LWLockRelease(&ptune_shared->lock);
	return abandoned;
}

/* Completes a slot: DONE for its backend, or freed if the backend left. */
static void
complete(int index, dsa_pointer response, Size len)
{
	PtuneSlot  *slot = &ptune_shared->slots[index];
	Latch	   *latch = NULL;
	Payloads	p = NO_PAYLOADS;

	LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
	if (slot->failed)
		ptune_shared->requests_failed++;
	else
		ptune_shared->requests_served++;
	if (slot->state == PTUNE_SLOT_ABANDONED)
	{
		p = empty_slot(slot);
		p.response = response;
		p.response_len = len;
	}
	else if (slot->state == PTUNE_SLOT_RUNNING)
	{
		/* the request payload is no longer needed */
		p.request = slot->request;
		p.request_len = slot->request_len;
		p.chunk = slot->chunk;
		p.chunk_len = slot->chunk_len;
		slot->request = slot->chunk = InvalidDsaPointer;
		slot->request_len = slot->chunk_len = 0;
		slot->want_chunk = false;
		slot->response = response;
		slot->response_len = len;
		slot->state = PTUNE_SLOT_DONE;
		latch = slot->backend_latch;
	}
	else
	{
		/* answered twice (a bug): keep the first answer */
		p.response = response;
		p.response_len = len;
	}
	LWLockRelease(&ptune_shared->lock);
	after_free(p);
	if (latch)
		SetLatch(latch);
}

void
ptune_slot_answer(int index, StringInfo response)
{
	dsa_pointer dp = InvalidDsaPointer;

	PG_TRY();
	{
		dp = payload_alloc(response->len, "response");
		memcpy(dsa_get_address(ptune_dsa(), dp), response->data, response->len);
	}
	PG_CATCH();
	{
		ptune_slot_fail_caught(index);
		return;
	}
	PG_END_TRY();
	complete(index, dp, response->len);
}

ErrorData *
ptune_catch_error(MemoryContext cxt)
{
	ErrorData  *edata;

	LWLockReleaseAll();
	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	FlushErrorState();
	return edata;
}

void
ptune_slot_fail_caught(int index)
{
	/* the error may have come while we held the shared lock: ptune_slot_fail takes it */
	ErrorData  *edata = ptune_catch_error(TopMemoryContext);

	ptune_slot_fail(index, edata->sqlerrcode, edata->message, edata->detail, edata->hint);
	FreeErrorData(edata);
}

void
ptune_slot_fail(int index, int sqlstate, const char *message, const char *detail, const char *hint)
{
	PtuneSlot  *slot = &ptune_shared->slots[index];

	/*
	 * Never class 08 (connection exception): pools drop a connection on it,
	 * and a malformed payload (pq_getmsg* raise 08P01) is our own bug, not
	 * the connection's.
	 */
	if (ERRCODE_TO_CATEGORY(sqlstate) == ERRCODE_CONNECTION_EXCEPTION)
		sqlstate = ERRCODE_INTERNAL_ERROR;
	LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
	slot->failed = true;
	slot->sqlstate = sqlstate;
	strlcpy(slot->message, message ? message : "", PTUNE_ERROR_LEN);
	strlcpy(slot->detail, detail ? detail : "", PTUNE_ERROR_LEN);
	strlcpy(slot->hint, hint ? hint : "", PTUNE_ERROR_LEN);
	LWLockRelease(&ptune_shared->lock);
	complete(index, InvalidDsaPointer, 0);
}

void
ptune_slot_want_chunk(int index)
{
	PtuneSlot  *slot = &ptune_shared->slots[index];
	Latch	   *latch = NULL;

	LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
	if (slot->state == PTUNE_SLOT_RUNNING)
	{
		slot->want_chunk = true;
		latch = slot->backend_latch;
	}
	LWLockRelease(&ptune_shared->lock);
	if (latch)
		SetLatch(latch);
}

bool
ptune_slot_peek_chunk(int index, StringInfo view, bool *last)
{
	PtuneSlot  *slot = &ptune_shared->slots[index];
	bool		have;

	LWLockAcquire(&ptune_shared->lock, LW_SHARED);
	have = DsaPointerIsValid(slot->chunk);
	if (have)
	{
		/* read in place: only the worker frees it from now on (ptune_slot_drop_chunk) */
		view->data = dsa_get_address(ptune_dsa(), slot->chunk);
		view->len = view->maxlen = (int) slot->chunk_len;
		view->cursor = 0;
		*last = slot->chunk_last;
	}
	LWLockRelease(&ptune_shared->lock);
	return have;
}

void
ptune_slot_drop_chunk(int index)
{
	PtuneSlot  *slot = &ptune_shared->slots[index];
	Payloads	p = NO_PAYLOADS;

	LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
	p.chunk = slot->chunk;
	p.chunk_len = slot->chunk_len;
	slot->chunk = InvalidDsaPointer;
	slot->chunk_len = 0;
	LWLockRelease(&ptune_shared->lock);
	payload_free(p.chunk, p.chunk_len);
}

void
ptune_slot_worker_exit(uint64 gen)
{
	for (int i = 0; i < ptune_shared->n_slots; i++)
	{
		PtuneSlot  *slot = &ptune_shared->slots[i];
		bool		running,
					abandoned;

		LWLockAcquire(&ptune_shared->lock, LW_SHARED);
		running = slot->state == PTUNE_SLOT_RUNNING && slot->generation == gen;
		abandoned = slot->state == PTUNE_SLOT_ABANDONED && slot->generation == gen;
		LWLockRelease(&ptune_shared->lock);
		if (running)
			ptune_slot_fail(i, ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, "the ptune worker was terminated while serving this request",
							NULL, "The worker restarts by itself; retry in a moment.");
		else if (abandoned)
			complete(i, InvalidDsaPointer, 0);
	}
}
