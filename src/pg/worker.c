/*
 * worker.c - the ptune model worker: loads the frozen model once and serves
 * every session's requests (see ipc.h for the request slots).
 *
 * Each round of the loop takes every pending classification request and
 * runs them as one batch, advances each active training by one step, and
 * then sleeps on its latch until a backend queues more work.
 *
 * Robustness rules: every request is handled inside PG_TRY, so a bad
 * request is an ERROR for its caller only; the engine validates all sizes
 * and offsets it reads, so bad data never crashes this process (a crash
 * here would restart every session of the cluster).
 */
#include "postgres.h"

#include <signal.h>
#include <time.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "linear.h"
#include "worker.h"

PG_MODULE_MAGIC;

PGDLLEXPORT void ptune_worker_main(Datum arg);

PtModel    *worker_model = NULL;
PtWorkspace worker_workspace;

int
worker_sqlstate(PtErrorKind kind)
{
	switch (kind)
	{
		case PT_ERR_IO:
			return ERRCODE_UNDEFINED_FILE;
		case PT_ERR_FORMAT:
			return ERRCODE_DATA_CORRUPTED;
		case PT_ERR_ARGUMENT:
			return ERRCODE_INVALID_PARAMETER_VALUE;
		case PT_ERR_MISMATCH:
			return ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;
		case PT_ERR_NOMEM:
			return ERRCODE_OUT_OF_MEMORY;
		case PT_ERR_CANCELLED:
			return ERRCODE_QUERY_CANCELED;
		case PT_ERR_NUMERIC:
			return ERRCODE_FLOATING_POINT_EXCEPTION;
		default:
			return ERRCODE_INTERNAL_ERROR;
	}
}

const char *
worker_model_path(void)
{
	const char *path = GetConfigOption("ptune.model_path", true, false);

	return path ? path : "";
}

int
worker_int_setting(const char *name)
{
	const char *value = GetConfigOption(name, true, false);

	return value ? atoi(value) : 0;
}

/* ---- slots --------------------------------------------------------------- */

int
worker_take_pending(PtuneRequestKind kind, int *out, int max)
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
	LWLockRelease(&ptune_shared->lock);
	return n;
}

void
worker_read_request(int index, StringInfo msg)
{
	PtuneSlot  *slot = &ptune_shared->slots[index];

	/* the backend wrote the payload before marking the slot PENDING and no longer touches it */
	initStringInfo(msg);
	if (DsaPointerIsValid(slot->request) && slot->request_len > 0)
		appendBinaryStringInfo(msg, dsa_get_address(ptune_dsa(), slot->request), (int) slot->request_len);
}

bool
worker_slot_abandoned(int index)
{
	bool		abandoned;

	LWLockAcquire(&ptune_shared->lock, LW_SHARED);
	abandoned = ptune_shared->slots[index].state == PTUNE_SLOT_ABANDONED;
	LWLockRelease(&ptune_shared->lock);
	return abandoned;
}

/* Frees a slot's payloads and marks it free; the caller holds the lock. */
static void
free_slot(PtuneSlot *slot)
{
	if (DsaPointerIsValid(slot->request))
		dsa_free(ptune_dsa(), slot->request);
	if (DsaPointerIsValid(slot->response))
		dsa_free(ptune_dsa(), slot->response);
	slot->request = slot->response = InvalidDsaPointer;
	slot->state = PTUNE_SLOT_FREE;
	slot->backend_pid = 0;
	slot->backend_latch = NULL;
}

/* Completes a slot: DONE for its backend, or freed if the backend left. */
static void
complete(int index, dsa_pointer response, Size len)
{
	PtuneSlot  *slot = &ptune_shared->slots[index];
	Latch	   *latch = NULL;

	LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
	if (slot->state == PTUNE_SLOT_ABANDONED)
	{
		if (DsaPointerIsValid(response))
			dsa_free(ptune_dsa(), response);
		free_slot(slot);
	}
	else
	{
		/* the request payload is no longer needed */
		if (DsaPointerIsValid(slot->request))
			dsa_free(ptune_dsa(), slot->request);
		slot->request = InvalidDsaPointer;
		slot->response = response;
		slot->response_len = len;
		slot->state = PTUNE_SLOT_DONE;
		latch = slot->backend_latch;
	}
	if (slot->failed)
		ptune_shared->requests_failed++;
	else
		ptune_shared->requests_served++;
	LWLockRelease(&ptune_shared->lock);
	if (latch)
		SetLatch(latch);
}

void
worker_answer(int index, StringInfo response)
{
	dsa_pointer dp = dsa_allocate_extended(ptune_dsa(), Max(response->len, 1),
										   DSA_ALLOC_HUGE | DSA_ALLOC_NO_OOM);

	if (!DsaPointerIsValid(dp))
	{
		worker_fail(index, ERRCODE_OUT_OF_MEMORY, "out of shared memory for a ptune response", NULL,
					NULL);
		return;
	}
	memcpy(dsa_get_address(ptune_dsa(), dp), response->data, response->len);
	complete(index, dp, response->len);
}

void
worker_fail(int index, int sqlstate, const char *message, const char *detail, const char *hint)
{
	PtuneSlot  *slot = &ptune_shared->slots[index];

	LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
	slot->failed = true;
	slot->sqlstate = sqlstate;
	strlcpy(slot->message, message, PTUNE_ERROR_LEN);
	strlcpy(slot->detail, detail ? detail : "", PTUNE_ERROR_LEN);
	strlcpy(slot->hint, hint ? hint : "", PTUNE_ERROR_LEN);
	LWLockRelease(&ptune_shared->lock);
	complete(index, InvalidDsaPointer, 0);
}

void
worker_fail_engine(int index, const char *context)
{
	char		message[PTUNE_ERROR_LEN];
	PtErrorKind kind = pt_error_kind();

	snprintf(message, sizeof(message), "%s: %s", context, pt_error_message());
	worker_fail(index, worker_sqlstate(kind), message, NULL,
				kind == PT_ERR_MISMATCH ? "Retrain the task with ptune.train_prompt() on the loaded model." :
				kind == PT_ERR_NUMERIC ? "Try a lower learning_rate; if the loss is NaN from the first step, "
				"check the model's weights." : NULL);
}

void
worker_fail_caught(int index)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(TopMemoryContext);
	edata = CopyErrorData();
	FlushErrorState();
	worker_fail(index, edata->sqlerrcode, edata->message, edata->detail, edata->hint);
	FreeErrorData(edata);
}

/* ---- the model ----------------------------------------------------------- */

static double load_seconds = 0.0;

/* JSON that ptune.model_info() shows (built by the engine, which escapes names). */
static void
publish_model_info(void)
{
	const PtConfig *c = &worker_model->cfg;
	char		fp[2 * PT_FINGERPRINT_BYTES + 1];
	char	   *info = pt_model_info_json(worker_model, load_seconds);

	pt_model_fingerprint_hex(worker_model, fp);
	LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
	strlcpy(ptune_shared->model_fingerprint, fp, sizeof(ptune_shared->model_fingerprint));
	strlcpy(ptune_shared->model_name, c->model_name, sizeof(ptune_shared->model_name));
	ptune_shared->model_parameters = worker_model->n_parameters;
	/* cut JSON is no JSON: an object that does not fit is left out */
	strlcpy(ptune_shared->model_info,
			info && strlen(info) < sizeof(ptune_shared->model_info) ? info : "{}",
			sizeof(ptune_shared->model_info));
	ptune_shared->model_error[0] = '\0';
	ptune_shared->worker_state = PTUNE_WORKER_READY;
	LWLockRelease(&ptune_shared->lock);
	free(info);
}

static void
set_state(PtuneWorkerState state, const char *error)
{
	LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
	ptune_shared->worker_state = state;
	if (error)
		strlcpy(ptune_shared->model_error, error, PTUNE_ERROR_LEN);
	strlcpy(ptune_shared->model_path, worker_model_path(), MAXPGPATH);
	LWLockRelease(&ptune_shared->lock);
}

/* Prepares the model for the arithmetic ptune.precision asks for. */
static void
apply_precision(void)
{
	const char *want = GetConfigOption("ptune.precision", true, false);
	PtMath		math = want && strcmp(want, "bf16") == 0 ? PT_MATH_BF16 : PT_MATH_FP32;

	if (worker_model == NULL || worker_model->math == math)
		return;
	if (pt_model_set_math(worker_model, math) != 0)
		ereport(LOG, (errmsg("ptune worker: bf16 is not available, computing in fp32: %s",
							 pt_error_message())));
}

/* (Re)loads the model named by ptune.model_path; failures leave the worker FAILED. */
static void
load_model(void)
{
	struct timespec t0,
				t1;

	worker_abort_trainings("the ptune model is being reloaded");
	worker_cache_reset();
	pt_workspace_free(&worker_workspace);
	pt_model_free(worker_model);
	worker_model = NULL;

	if (worker_model_path()[0] == '\0')
	{
		set_state(PTUNE_WORKER_FAILED, "ptune.model_path is not set");
		ereport(LOG, (errmsg("ptune worker: ptune.model_path is not set; no model loaded")));
		return;
	}
	set_state(PTUNE_WORKER_LOADING, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	worker_model = pt_model_load(worker_model_path());
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (worker_model == NULL)
	{
		set_state(PTUNE_WORKER_FAILED, pt_error_message());
		ereport(LOG, (errmsg("ptune worker: could not load the model: %s", pt_error_message())));
		return;
	}
	load_seconds = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
	apply_precision();
	publish_model_info();
	ereport(LOG, (errmsg("ptune worker: loaded model \"%s\" from %s (%lld parameters)",
						 worker_model->cfg.model_name, worker_model_path(),
						 (long long) worker_model->n_parameters)));
}

/*
 * Starts the engine's threads (or as many more as ptune.threads now asks
 * for) with every signal blocked, so that they inherit the mask and
 * PostgreSQL's signal handlers always run on the main thread.
 */
static void
start_engine_threads(void)
{
	sigset_t	all,
				old;
	int			threads = worker_int_setting("ptune.threads");

	if (threads <= 0)
		threads = (int) sysconf(_SC_NPROCESSORS_ONLN);

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	if (pt_engine_init() != 0)
		ereport(LOG, (errmsg("ptune worker: %s", pt_error_message())));
	else
	{
		pt_set_threads(threads);
		pt_engine_start_threads();
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* ---- life cycle ------------------------------------------------------------ */

/* On exit: answer what we were serving with an error and leave the stage. */
static void
worker_exit(int code, Datum arg)
{
	if (ptune_shared == NULL)
		return;
	worker_abort_trainings("the ptune worker was terminated");
	for (int i = 0; i < ptune_shared->n_slots; i++)
	{
		PtuneSlot  *slot = &ptune_shared->slots[i];

		if (slot->state == PTUNE_SLOT_RUNNING && slot->generation == ptune_shared->generation)
			worker_fail(i, ERRCODE_ADMIN_SHUTDOWN, "the ptune worker was terminated while serving this request",
						NULL, "The worker restarts by itself; retry in a moment.");
		else if (slot->state == PTUNE_SLOT_ABANDONED && slot->generation == ptune_shared->generation)
		{
			LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
			free_slot(slot);
			LWLockRelease(&ptune_shared->lock);
		}
	}
	LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
	ptune_shared->worker_state = PTUNE_WORKER_STOPPED;
	ptune_shared->worker_pid = 0;
	ptune_shared->worker_latch = NULL;
	LWLockRelease(&ptune_shared->lock);
}

void
ptune_worker_main(Datum arg)
{
	char	   *loaded_path;

	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	if (!ptune_shmem_attach())
		ereport(FATAL, (errmsg("ptune worker: shared memory is missing")));
	before_shmem_exit(worker_exit, (Datum) 0);

	LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
	ptune_shared->generation++;
	ptune_shared->worker_pid = MyProcPid;
	ptune_shared->worker_latch = MyLatch;
	ptune_shared->worker_started = GetCurrentTimestamp();
	ptune_shared->worker_state = PTUNE_WORKER_LOADING;
	LWLockRelease(&ptune_shared->lock);

	start_engine_threads();
	load_model();
	loaded_path = pstrdup(worker_model_path());

	for (;;)
	{
		bool		busy = false;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending)
			proc_exit(1);		/* status 1: the postmaster restarts us unless it is shutting down */
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			start_engine_threads();	/* ptune.threads may have changed */
			/* a new path, or a failed load that the user may have fixed */
			if (strcmp(loaded_path, worker_model_path()) != 0 ||
				ptune_shared->worker_state == PTUNE_WORKER_FAILED)
			{
				load_model();
				pfree(loaded_path);
				loaded_path = pstrdup(worker_model_path());
			}
			else if (worker_model && ptune_shared->worker_state == PTUNE_WORKER_READY)
			{
				/* the same model, maybe another precision or thread count */
				apply_precision();
				publish_model_info();
			}
		}

		busy |= worker_serve_classify();
		busy |= worker_serve_explain();
		busy |= worker_serve_training();

		if (!busy)
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1000,
							 PG_WAIT_EXTENSION);
	}
}
