/*
 * worker.c - the ptune model worker: loads the frozen model once and serves
 * every session's requests (see ipc.h for the request slots).
 *
 * Each round of the loop gives each handler (classification, explain,
 * training: the table `handlers`) one bounded unit of work, then sleeps on
 * its latch when none had any.  Classification comes first; a training
 * advances by one slice of ptune.training_slice_ms per round, and its
 * passes pause between layers to serve classification that arrived
 * meanwhile (worker_serve_urgent).
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
#include "utils/resowner.h"
#include "utils/wait_event.h"

#include "linear.h"
#include "worker.h"

PG_MODULE_MAGIC;

PGDLLEXPORT void ptune_worker_main(Datum arg);

PtModel    *worker_model = NULL;
PtWorkspace worker_workspace;

/*
 * What the worker serves, in order of priority: each round of the loop gives
 * each handler one bounded unit of work, classification first.
 */
static const WorkerHandler handlers[] = {
	{PTUNE_REQ_CLASSIFY, "classify", worker_serve_classify, worker_cache_reset, true},
	{PTUNE_REQ_GENERATE, "generate", worker_serve_generate, worker_generate_reset, false},
	{PTUNE_REQ_EXPLAIN, "explain", worker_serve_explain, NULL, true},
	{PTUNE_REQ_TRAIN, "train", worker_serve_training, worker_abort_trainings, false},
};

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

/* ---- failing a slot -------------------------------------------------------- */

void
worker_fail_engine(int index, const char *context)
{
	char		message[PTUNE_ERROR_LEN];
	PtErrorKind kind = pt_error_kind();

	snprintf(message, sizeof(message), "%s: %s", context, pt_error_message());
	ptune_slot_fail(index, worker_sqlstate(kind), message, NULL,
				kind == PT_ERR_MISMATCH ? "Retrain the task with ptune.train_prompt() on the loaded model." :
				kind == PT_ERR_NUMERIC ? "Try a lower learning_rate; if the loss is NaN from the first step, "
				"check the model's weights." : NULL);
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

/* The precision ptune.precision asks for. */
static PtMath
wanted_precision(void)
{
	const char *want = GetConfigOption("ptune.precision", true, false);

	return want && strcmp(want, "bf16") == 0 ? PT_MATH_BF16 :
		want && strcmp(want, "int8") == 0 ? PT_MATH_INT8 : PT_MATH_FP32;
}

/* Prepares the model for the arithmetic ptune.precision asks for. */
static void
apply_precision(void)
{
	PtMath		math = wanted_precision();

	if (worker_model == NULL || worker_model->math == math)
		return;
	if (pt_model_set_math(worker_model, math) != 0)
		ereport(LOG, (errmsg("ptune worker: %s is not available, computing in fp32: %s",
							 pt_math_name(math), pt_error_message())));
}

/* (Re)loads the model named by ptune.model_path; failures leave the worker FAILED. */
static void
load_model(void)
{
	struct timespec t0,
				t1;

	for (int h = 0; h < lengthof(handlers); h++)
		if (handlers[h].on_model_reset)
			handlers[h].on_model_reset("the ptune model is being reloaded");
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
	/* in its precision from the start: a bf16 model never has an fp32 copy */
	worker_model = pt_model_load_math(worker_model_path(), wanted_precision());
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
	/* an error or signal may have come while we held a lock */
	LWLockReleaseAll();
	for (int h = 0; h < lengthof(handlers); h++)
		if (handlers[h].on_model_reset)
			handlers[h].on_model_reset("the ptune worker was terminated");
	ptune_slot_worker_exit(ptune_shared->generation);
	LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
	ptune_shared->worker_state = PTUNE_WORKER_STOPPED;
	ptune_shared->worker_pid = 0;
	ptune_shared->worker_latch = NULL;
	LWLockRelease(&ptune_shared->lock);
	ConditionVariableBroadcast(&ptune_shared->slot_freed);
}

/*
 * Runs one handler's unit of work.  Each handler answers its own requests'
 * errors; this is the net under them, so that an ERROR that escapes one
 * fails at most that round, never the worker (whose restart would fail
 * every request in flight).
 */
static bool
serve(const WorkerHandler *h)
{
	volatile bool busy = false;
	MemoryContext old = CurrentMemoryContext;

	PG_TRY();
	{
		busy = h->serve();
	}
	PG_CATCH();
	{
		ErrorData  *edata = ptune_catch_error(old);

		ereport(LOG, (errmsg("ptune worker: %s: %s", h->name, edata->message)));
		FreeErrorData(edata);
		busy = true;
	}
	PG_END_TRY();
	return busy;
}

bool
worker_serve_urgent(void)
{
	bool		busy = false;

	for (int h = 0; h < lengthof(handlers); h++)
		if (handlers[h].urgent)
			busy |= serve(&handlers[h]);
	return busy;
}

/*
 * Attaches to shared memory; a library of another build (the files were
 * replaced while the server ran) logs why and exits with status 0, which
 * the postmaster does not restart: no crash loop.
 */
static void
attach_or_stop(void)
{
	bool		attached = false;

	PG_TRY();
	{
		attached = ptune_shmem_attach();
	}
	PG_CATCH();
	{
		EmitErrorReport();
		FlushErrorState();
		ereport(LOG, (errmsg("ptune worker: not starting; restart the server to use this build of ptune")));
		proc_exit(0);
	}
	PG_END_TRY();
	if (!attached)
		ereport(FATAL, (errmsg("ptune worker: shared memory is missing")));
}

void
ptune_worker_main(Datum arg)
{
	char	   *loaded_path;

	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	/* SHA-256 (the prompt cache's keys) registers its contexts with a resource owner */
	CurrentResourceOwner = ResourceOwnerCreate(NULL, "ptune worker");
	attach_or_stop();
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
			ptune_dsa_apply_limit();
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

		for (int h = 0; h < lengthof(handlers); h++)
			busy |= serve(&handlers[h]);

		if (!busy)
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1000,
							 PG_WAIT_EXTENSION);
	}
}
