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
#include "tcop/utility.h"
#include "utils/acl.h"

#include "client.h"
#include "guc.h"
#include "ipc.h"
#include "tasks.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

PG_FUNCTION_INFO_V1(ptune_require_preloaded);

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static ProcessUtility_hook_type prev_process_utility_hook = NULL;

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

/*
 * Task owners are role OIDs kept in a table of each database, which DROP
 * ROLE cannot see (extensions have no pg_shdepend entries).  So: DROP ROLE of
 * a role that owns tasks in the current database is refused, and REASSIGN
 * OWNED / DROP OWNED carry its tasks along as they do its other objects.
 * In other databases its tasks keep the dropped OID: nobody but a superuser
 * may touch them (ptune.reassign_task gives them to a role).
 */
static void
ptune_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					  ProcessUtilityContext context, ParamListInfo params,
					  QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;

	if (IsA(stmt, DropRoleStmt))
		ptune_refuse_drop_of_owners(((DropRoleStmt *) stmt)->roles);
	if (prev_process_utility_hook)
		prev_process_utility_hook(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	/* after the command checked the caller's privileges over these roles */
	if (IsA(stmt, ReassignOwnedStmt))
		ptune_reassign_owned(((ReassignOwnedStmt *) stmt)->roles,
							 get_rolespec_oid(((ReassignOwnedStmt *) stmt)->newrole, false));
	else if (IsA(stmt, DropOwnedStmt))
		ptune_drop_owned(((DropOwnedStmt *) stmt)->roles);
}

/* Called by the install script: CREATE EXTENSION fails clearly without preloading. */
Datum
ptune_require_preloaded(PG_FUNCTION_ARGS)
{
	ptune_require_shared();
	PG_RETURN_VOID();
}

void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
	{
		/*
		 * Loaded by CREATE EXTENSION, LOAD or session_preload_libraries:
		 * ptune needs shared memory and its worker, which only preloading
		 * provides.  An ERROR here fails the statement (the library is not
		 * registered as loaded, so every later use fails the same way); but
		 * while a session starts (session_preload_libraries) no error can be
		 * caught yet and PostgreSQL would make it FATAL, refusing every
		 * connection: then only warn, and ptune's functions refuse to work.
		 * Nothing is defined before: PGC_POSTMASTER settings made after
		 * start-up are FATAL.
		 */
		ereport(PG_exception_stack == NULL ? WARNING : ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("ptune must be loaded by shared_preload_libraries"),
				 errhint("%s", PTUNE_PRELOAD_HINT)));
		return;
	}
	ptune_define_gucs();

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
	prev_process_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = ptune_process_utility;
	register_worker();
}
