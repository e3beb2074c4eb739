/*
 * sql_admin.c - ptune.explain_prompt(), ptune.model_info(), ptune.status()
 * and the function behind the view ptune.training_progress.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "client.h"
#include "guc.h"
#include "prompt_store.h"
#include "wire.h"
#include "slot.h"
#include "tasks.h"

PG_FUNCTION_INFO_V1(ptune_explain_prompt);
PG_FUNCTION_INFO_V1(ptune_model_info);
PG_FUNCTION_INFO_V1(ptune_status);
PG_FUNCTION_INFO_V1(ptune_training_progress);

Datum
ptune_explain_prompt(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *task = ptune_task_argument(fcinfo, 0);
	int			k = PG_ARGISNULL(1) ? 5 : PG_GETARG_INT32(1);
	TaskPrompts *tp;

	if (k < 1 || k > PT_MAX_EXPLAIN_K)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("k must be between 1 and %d", PT_MAX_EXPLAIN_K)));
	InitMaterializedSRF(fcinfo, 0);
	tp = ptune_load_task(task, CurrentMemoryContext);
	for (int member = 0; member < tp->n_prompts; member++)
	{
		StringInfoData req,
					resp;
		int			P,
					kk;

		initStringInfo(&req);
		ptune_wire_put_explain(&req, k, tp->blobs[member]);
		ptune_call(PTUNE_REQ_EXPLAIN, &req, &resp, true, NULL, NULL);
		ptune_wire_get_explain_answer_head(&resp, &P, &kk);
		for (int i = 0; i < P; i++)
			for (int r = 0; r < kk; r++)
			{
				double		sim;
				char	   *piece = ptune_wire_get_explain_piece(&resp, &sim);
				Datum		values[5] = {Int32GetDatum(member), Int32GetDatum(i), Int32GetDatum(r + 1),
				CStringGetTextDatum(piece), Float8GetDatum(sim)};
				bool		nulls[5] = {false, false, false, false, isnan(sim)};

				tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
			}
	}
	return (Datum) 0;
}

Datum
ptune_model_info(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[5];
	bool		nulls[5] = {false};
	char		info[4096],
				name[128],
				fp[33],
				path[MAXPGPATH],
				error[PTUNE_ERROR_LEN];
	PtuneWorkerState state;

	ptune_require_shared();
	LWLockAcquire(&ptune_shared->lock, LW_SHARED);
	state = ptune_shared->worker_state;
	strlcpy(info, ptune_shared->model_info, sizeof(info));
	strlcpy(name, ptune_shared->model_name, sizeof(name));
	values[4] = Int64GetDatum(ptune_shared->model_parameters);
	strlcpy(fp, ptune_shared->model_fingerprint, sizeof(fp));
	strlcpy(path, ptune_shared->model_path, sizeof(path));
	strlcpy(error, ptune_shared->model_error, sizeof(error));
	LWLockRelease(&ptune_shared->lock);

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "model_info must return a row");
	if (state != PTUNE_WORKER_READY)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no ptune model is loaded (worker %s)", ptune_worker_state_name(state)),
				 error[0] ? errdetail("%s", error) : 0,
				 errhint("Set ptune.model_path in postgresql.conf and SELECT pg_reload_conf().")));
	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum(path);
	values[2] = CStringGetTextDatum(fp);
	values[3] = DirectFunctionCall1(jsonb_in, CStringGetDatum(info));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

Datum
ptune_status(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[16];
	bool		nulls[16] = {false};
	PtuneShared copy;
	int			queued = 0,
				running = 0,
				free_slots = 0,
				waiting = 0;

	ptune_require_shared();
	LWLockAcquire(&ptune_shared->lock, LW_SHARED);
	memcpy(&copy, ptune_shared, offsetof(PtuneShared, slots));
	for (int i = 0; i < ptune_shared->n_slots; i++)
	{
		queued += ptune_shared->slots[i].state == PTUNE_SLOT_PENDING;
		running += ptune_shared->slots[i].state == PTUNE_SLOT_RUNNING;
		free_slots += ptune_shared->slots[i].state == PTUNE_SLOT_FREE;
	}
	for (int i = 0; i < ptune_shared->n_waiters; i++)
		waiting += ptune_waiters()[i].pid != 0;
	LWLockRelease(&ptune_shared->lock);

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "status must return a row");
	values[0] = CStringGetTextDatum(ptune_worker_state_name(copy.worker_state));
	values[1] = Int32GetDatum(copy.worker_pid);
	nulls[1] = copy.worker_pid == 0;
	values[2] = Int64GetDatum((int64) copy.generation);
	values[3] = TimestampTzGetDatum(copy.worker_started);
	nulls[3] = copy.worker_started == 0;
	values[4] = Int32GetDatum(queued);
	values[5] = Int32GetDatum(running);
	values[6] = Int64GetDatum((int64) copy.requests_served);
	values[7] = Int64GetDatum((int64) copy.requests_failed);
	values[8] = Int64GetDatum((int64) copy.forward_passes);
	values[9] = Int64GetDatum((int64) copy.rows_classified);
	values[10] = CStringGetTextDatum(copy.model_error);
	nulls[10] = copy.model_error[0] == '\0';
	values[11] = Int32GetDatum(free_slots);
	values[12] = Int32GetDatum(waiting);
	values[13] = Int64GetDatum((int64) ptune_payload_bytes());
	values[14] = Int64GetDatum((int64) copy.training_pauses);
	values[15] = Int64GetDatum((int64) copy.rows_generated);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/*
 * Trainings name tasks, so they are listed as tasks are: one's own (in any
 * database, as pg_stat_activity shows one's own sessions), those of roles
 * whose privileges one has, every training of this database with SELECT on
 * ptune.prompts, and all of them to pg_read_all_stats.
 */
static bool
training_visible(const PtuneTraining *t)
{
	if (ptune_may_manage(t->user) || has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS))
		return true;
	return t->database == MyDatabaseId && ptune_may_see(InvalidOid);
}

Datum
ptune_training_progress(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PtuneTraining trainings[PTUNE_MAX_TRAININGS];

	ptune_require_shared();
	InitMaterializedSRF(fcinfo, 0);
	LWLockAcquire(&ptune_shared->lock, LW_SHARED);
	memcpy(trainings, ptune_shared->trainings, sizeof(trainings));
	LWLockRelease(&ptune_shared->lock);
	for (int i = 0; i < PTUNE_MAX_TRAININGS; i++)
	{
		PtuneTraining *t = &trainings[i];
		Datum		values[13];
		bool		nulls[13] = {false};

		if (!t->active || !training_visible(t))
			continue;
		values[0] = Int32GetDatum(t->backend_pid);
		values[1] = ObjectIdGetDatum(t->database);
		values[2] = ObjectIdGetDatum(t->user);
		values[3] = CStringGetTextDatum(t->task);
		values[4] = CStringGetTextDatum(t->phase);
		values[5] = Int32GetDatum(t->member + 1);
		values[6] = Int32GetDatum(t->n_members);
		values[7] = Int64GetDatum(t->step);
		values[8] = Int64GetDatum(t->total_steps);
		values[9] = Float8GetDatum(t->loss);
		nulls[9] = t->change_count == 0;
		values[10] = Float8GetDatum(t->val_accuracy);
		nulls[10] = isnan(t->val_accuracy);
		values[11] = Float8GetDatum(t->rows_per_second);
		values[12] = TimestampTzGetDatum(t->started);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
