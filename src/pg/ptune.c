/*
 * ptune.c - the extension's entry point in every backend: configuration
 * parameters, shared memory, and the model worker's registration.
 *
 * This library (ptune.so) never loads the model or any math library: only
 * the worker process does, from ptune_worker.so.  So the postmaster and
 * ordinary backends stay free of BLAS and its threads.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/shmem.h"

#include "guc.h"
#include "ipc.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
ptune_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(ptune_shmem_size());
}

static void
ptune_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	ptune_shmem_init();
}

static void
register_worker(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS;
	worker.bgw_start_time = BgWorkerStart_PostmasterStart;
	/* restarted a second after it exits with status 1 (or is killed) */
	worker.bgw_restart_time = 1;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "ptune_worker");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "ptune_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "ptune model worker");
	snprintf(worker.bgw_type, BGW_MAXLEN, "ptune model worker");
	RegisterBackgroundWorker(&worker);
}

void
_PG_init(void)
{
	ptune_define_gucs();
	if (!process_shared_preload_libraries_in_progress)
		return;					/* loaded by CREATE EXTENSION only: functions will say what to do */

	/*
	 * OpenMP threads of the worker should sleep, not spin, while they wait:
	 * the worker shares the CPUs with every backend.  The worker inherits
	 * the postmaster's environment; libgomp reads it when it loads.
	 */
	setenv("OMP_WAIT_POLICY", "PASSIVE", 0);

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = ptune_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = ptune_shmem_startup;
	register_worker();
}
