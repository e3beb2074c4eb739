/*
 * tasks.c - ownership of tasks: the task registry, who may see and change a
 * task, and the SQL functions that change tasks (activate, deactivate,
 * drop_task, reassign_task).  README's "Security model" is the rule book.
 *
 * Every check uses the caller's identity (GetUserId() outside
 * ptune_as_owner_begin); every read or write of ptune's tables runs as their
 * owner, since ordinary roles hold no write privilege on them (and perhaps
 * no SELECT either, yet may still manage their own tasks).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "prompt_store.h"
#include "tasks.h"

PG_FUNCTION_INFO_V1(ptune_activate);
PG_FUNCTION_INFO_V1(ptune_deactivate);
PG_FUNCTION_INFO_V1(ptune_drop_task);
PG_FUNCTION_INFO_V1(ptune_reassign_task);
PG_FUNCTION_INFO_V1(ptune_task_visible);

/* How many task names DROP ROLE's refusal lists. */
#define TASKS_NAMED_IN_DETAIL 5

/* A table of the extension, or the error that ptune is not installed here. */
static Oid
ptune_relid(const char *relname)
{
	Oid			nsp = get_namespace_oid("ptune", true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(relname, nsp) : InvalidOid;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("ptune is not installed in this database"),
				 errhint("Run CREATE EXTENSION ptune.")));
	return relid;
}

static Oid
tables_owner(void)
{
	Oid			relid = ptune_relid("task_owners");
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

void
ptune_as_owner_begin(PtuneAsOwner *s)
{
	Oid			owner = tables_owner();

	GetUserIdAndSecContext(&s->saved_user, &s->saved_sec_context);
	SetUserIdAndSecContext(owner, s->saved_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	/* GUC_ACTION_SAVE: allowed in parallel workers too (classify is parallel safe) */
	s->guc_level = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

void
ptune_as_owner_end(PtuneAsOwner *s)
{
	AtEOXact_GUC(false, s->guc_level);
	SetUserIdAndSecContext(s->saved_user, s->saved_sec_context);
}

/*
 * Runs one statement with a task name ($1) and an optional role ($2) as the
 * tables' owner; returns SPI_processed and the first column of the first
 * row as an Oid (InvalidOid when none) in *first.
 */
static uint64
run_as_owner(const char *sql, const char *task, Oid role, bool read_only, Oid *first)
{
	PtuneAsOwner as;
	Oid			types[2] = {TEXTOID, REGROLEOID};
	Datum		values[2] = {task ? CStringGetTextDatum(task) : (Datum) 0, ObjectIdGetDatum(role)};
	int			nargs = OidIsValid(role) ? 2 : 1;
	uint64		n;

	if (task == NULL)
	{
		/* statements about a role only: the role is $1 */
		types[0] = REGROLEOID;
		values[0] = ObjectIdGetDatum(role);
		nargs = 1;
	}
	ptune_as_owner_begin(&as);
	SPI_connect();
	if (SPI_execute_with_args(sql, nargs, types, values, NULL, read_only, 0) < 0)
		elog(ERROR, "ptune: \"%s\" failed", sql);
	n = SPI_processed;
	if (first)
	{
		bool		isnull = true;
		Datum		d = (SPI_tuptable && n > 0) ?
			SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull) : (Datum) 0;

		*first = isnull ? InvalidOid : DatumGetObjectId(d);
	}
	SPI_finish();
	ptune_as_owner_end(&as);
	return n;
}

Oid
ptune_task_owner(const char *task, PtuneTaskLock lock)
{
	static const char *const queries[] = {
		[PTUNE_LOCK_SNAPSHOT] = "SELECT owner FROM ptune.task_owners WHERE task = $1",
		[PTUNE_LOCK_NONE] = "SELECT owner FROM ptune.task_owners WHERE task = $1",
		[PTUNE_LOCK_KEY_SHARE] = "SELECT owner FROM ptune.task_owners WHERE task = $1 FOR KEY SHARE",
		[PTUNE_LOCK_UPDATE] = "SELECT owner FROM ptune.task_owners WHERE task = $1 FOR NO KEY UPDATE",
	};
	Oid			owner;

	run_as_owner(queries[lock], task, InvalidOid, lock == PTUNE_LOCK_SNAPSHOT, &owner);
	return owner;
}

bool
ptune_may_manage(Oid owner)
{
	/* has_privs_of_role: the owner itself, members that inherit it, superusers */
	return superuser() || (OidIsValid(owner) && has_privs_of_role(GetUserId(), owner));
}

bool
ptune_may_see(Oid owner)
{
	return ptune_may_manage(owner) ||
		pg_class_aclcheck(ptune_relid("prompts"), GetUserId(), ACL_SELECT) == ACLCHECK_OK;
}

/* "role "alice"", or for an owner that was dropped "a dropped role (OID 16390)" */
static char *
describe_owner(Oid owner)
{
	char	   *name = GetUserNameFromId(owner, true);

	return name ? psprintf("role \"%s\"", name) : psprintf("a dropped role (OID %u)", owner);
}

static void
ownership_error(const char *task, Oid owner, const char *action)
{
	bool		dropped = GetUserNameFromId(owner, true) == NULL;

	/*
	 * A caller who may not see the task learns that the name is taken (task
	 * names are one namespace per database), but not who holds it.
	 */
	if (!ptune_may_see(owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for task \"%s\"", task),
				 errdetail("Task names are shared by all roles of a database; this one is another role's."),
				 errhint("To train a task of your own, choose another name.")));
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("task \"%s\" belongs to %s", task, describe_owner(owner)),
			 dropped ?
			 errhint("A superuser may give it to another role with ptune.reassign_task().") :
			 errhint("Only its owner, roles with the owner's privileges and superusers may %s.",
					 action)));
}

static void
no_such_task(const char *task)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("task \"%s\" does not exist", task),
			 errhint("Train it with ptune.train_prompt(), or list tasks with SELECT task FROM ptune.tasks.")));
}

Oid
ptune_check_see(const char *task, const char *doing)
{
	Oid			owner = ptune_task_owner(task, PTUNE_LOCK_SNAPSHOT);

	if (!OidIsValid(owner))
		no_such_task(task);
	if (!ptune_may_see(owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for task \"%s\"", task),
				 errhint("%s another role's task needs SELECT on ptune.prompts (or the owner's privileges).",
						 doing)));
	return owner;
}

Oid
ptune_check_manage(const char *task, PtuneTaskLock lock, const char *action)
{
	/* check before locking, so that no role can lock another's task */
	for (;;)
	{
		Oid			owner = ptune_task_owner(task, PTUNE_LOCK_NONE);
		Oid			locked;

		if (!OidIsValid(owner))
			no_such_task(task);
		if (!ptune_may_manage(owner))
			ownership_error(task, owner, action);
		if (lock == PTUNE_LOCK_NONE)
			return owner;
		locked = ptune_task_owner(task, lock);
		if (locked == owner)
			return owner;
		/* dropped or reassigned meanwhile: decide again */
	}
}

void
ptune_claim_task(const char *task, const char *command, const char *action)
{
	PreventCommandIfReadOnly(command);
	for (;;)
	{
		Oid			owner;

		/*
		 * A new task: our row, uncommitted until the training is stored, makes
		 * a second session training the same new task wait here for our end.
		 */
		if (run_as_owner("INSERT INTO ptune.task_owners (task, owner) VALUES ($1, $2) "
						 "ON CONFLICT (task) DO NOTHING", task, GetUserId(), false, NULL) == 1)
			return;
		owner = ptune_task_owner(task, PTUNE_LOCK_NONE);
		if (!OidIsValid(owner))
			continue;			/* dropped since: try to create it again */
		if (!ptune_may_manage(owner))
			ownership_error(task, owner, action);
		/* an existing task: it cannot be dropped while this training runs */
		if (ptune_task_owner(task, PTUNE_LOCK_KEY_SHARE) == owner)
			return;
	}
}

/* ---- SQL functions ------------------------------------------------------- */

static int32
version_argument(FunctionCallInfo fcinfo, int argno)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("version must not be NULL")));
	return PG_GETARG_INT32(argno);
}

/* Runs a statement on one task's rows: $1 the task, $2 an integer. */
static uint64
run_on_task(const char *sql, const char *task, int32 number)
{
	PtuneAsOwner as;
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		values[2] = {CStringGetTextDatum(task), Int32GetDatum(number)};
	uint64		n;

	ptune_as_owner_begin(&as);
	SPI_connect();
	if (SPI_execute_with_args(sql, 2, types, values, NULL, false, 0) < 0)
		elog(ERROR, "ptune: \"%s\" failed", sql);
	n = SPI_processed;
	SPI_finish();
	ptune_as_owner_end(&as);
	return n;
}

int
ptune_begin_new_version(Datum task)
{
	Oid			type = TEXTOID;
	int			version;

	if (SPI_execute_with_args("SELECT coalesce(max(version), 0) + 1 FROM ptune.prompts WHERE task = $1",
							  1, &type, &task, NULL, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "ptune: could not read the task's versions");
	version = atoi(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	if (SPI_execute_with_args("UPDATE ptune.prompts SET is_active = false WHERE task = $1 AND is_active",
							  1, &type, &task, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "ptune: could not deactivate the task's version");
	return version;
}

Datum
ptune_activate(PG_FUNCTION_ARGS)
{
	char	   *task = ptune_task_argument(fcinfo, 0);
	int32		version = version_argument(fcinfo, 1);

	PreventCommandIfReadOnly("ptune.activate()");
	/* the registry row's lock orders activations and trainings of the task */
	ptune_check_manage(task, PTUNE_LOCK_UPDATE, "activate it");
	if (run_on_task("SELECT 1 FROM ptune.prompts WHERE task = $1 AND version = $2 LIMIT 1",
					task, version) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("task \"%s\" has no version %d", task, version),
				 errhint("List its versions with SELECT version FROM ptune.versions WHERE task = ...")));
	run_on_task("UPDATE ptune.prompts SET is_active = false "
				"WHERE task = $1 AND is_active AND version <> $2", task, version);
	run_on_task("UPDATE ptune.prompts SET is_active = true "
				"WHERE task = $1 AND version = $2 AND NOT is_active", task, version);
	PG_RETURN_VOID();
}

Datum
ptune_deactivate(PG_FUNCTION_ARGS)
{
	char	   *task = ptune_task_argument(fcinfo, 0);

	PreventCommandIfReadOnly("ptune.deactivate()");
	ptune_check_manage(task, PTUNE_LOCK_UPDATE, "deactivate it");
	run_on_task("UPDATE ptune.prompts SET is_active = false WHERE task = $1 AND is_active",
				task, 0);
	PG_RETURN_VOID();
}

Datum
ptune_drop_task(PG_FUNCTION_ARGS)
{
	char	   *task = ptune_task_argument(fcinfo, 0);
	uint64		dropped;

	PreventCommandIfReadOnly("ptune.drop_task()");
	/*
	 * FOR UPDATE waits for the trainings of the task (they hold KEY SHARE)
	 * to end, so that the versions they store go too.
	 */
	ptune_check_manage(task, PTUNE_LOCK_NONE, "drop it");
	if (run_as_owner("SELECT owner FROM ptune.task_owners WHERE task = $1 FOR UPDATE",
					 task, InvalidOid, false, NULL) == 0)
		no_such_task(task);
	ptune_check_manage(task, PTUNE_LOCK_NONE, "drop it");	/* reassigned meanwhile? */
	dropped = run_on_task("DELETE FROM ptune.prompts WHERE task = $1", task, 0);
	run_on_task("DELETE FROM ptune.task_owners WHERE task = $1", task, 0);
	PG_RETURN_INT32((int32) dropped);
}

Datum
ptune_reassign_task(PG_FUNCTION_ARGS)
{
	char	   *task = ptune_task_argument(fcinfo, 0);
	Oid			new_owner;
	char	   *new_name;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("new_owner must not be NULL")));
	new_owner = PG_GETARG_OID(1);
	new_name = GetUserNameFromId(new_owner, true);
	if (new_name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role with OID %u does not exist", new_owner)));
	PreventCommandIfReadOnly("ptune.reassign_task()");
	ptune_check_manage(task, PTUNE_LOCK_UPDATE, "give it to another role");
	/* the rule of ALTER ... OWNER TO: the caller must be able to become the new owner */
	if (!superuser() && !is_member_of_role(GetUserId(), new_owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be member of role \"%s\" to give it task \"%s\"", new_name, task)));
	run_as_owner("UPDATE ptune.task_owners SET owner = $2 WHERE task = $1", task, new_owner, false, NULL);
	PG_RETURN_VOID();
}

Datum
ptune_task_visible(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(ptune_may_see(PG_GETARG_OID(0)));
}

/* ---- DROP ROLE, REASSIGN OWNED, DROP OWNED --------------------------------- */

static bool
installed_here(void)
{
	return OidIsValid(get_extension_oid("ptune", true));
}

void
ptune_refuse_drop_of_owners(List *roles)
{
	ListCell   *lc;

	if (!installed_here())
		return;

	/*
	 * This runs before DROP ROLE checks the caller's privileges.  A caller
	 * who may not drop roles gets PostgreSQL's own permission error, not a
	 * list of another role's tasks (which it might not be allowed to see).
	 */
	if (!has_createrole_privilege(GetUserId()))
		return;
	foreach(lc, roles)
	{
		Oid			role = get_rolespec_oid(lfirst(lc), true);
		PtuneAsOwner as;
		uint64		n;
		StringInfoData names;

		if (!OidIsValid(role))
			continue;
		/* the same for a superuser target and a caller that is not one */
		if (superuser_arg(role) && !superuser())
			return;
		initStringInfo(&names);
		ptune_as_owner_begin(&as);
		SPI_connect();
		{
			Oid			types[1] = {REGROLEOID};
			Datum		values[1] = {ObjectIdGetDatum(role)};

			if (SPI_execute_with_args("SELECT task FROM ptune.task_owners WHERE owner = $1 ORDER BY task",
									  1, types, values, NULL, true, 0) != SPI_OK_SELECT)
				elog(ERROR, "ptune: reading ptune.task_owners failed");
		}
		n = SPI_processed;
		for (uint64 i = 0; i < n && i < TASKS_NAMED_IN_DETAIL; i++)
			appendStringInfo(&names, "%s\"%s\"", i ? ", " : "",
							 SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
		if (n > TASKS_NAMED_IN_DETAIL)
			appendStringInfo(&names, " and %llu more", (unsigned long long) (n - TASKS_NAMED_IN_DETAIL));
		SPI_finish();
		ptune_as_owner_end(&as);
		if (n > 0)
		{
			char	   *name = GetUserNameFromId(role, false);

			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("role \"%s\" cannot be dropped because it owns %llu ptune task%s",
							name, (unsigned long long) n, n == 1 ? "" : "s"),
					 errdetail("In database \"%s\": %s.", get_database_name(MyDatabaseId), names.data),
					 errhint("Give them to another role (REASSIGN OWNED BY %s TO ..., or "
							 "ptune.reassign_task()) or drop them (DROP OWNED BY %s, or "
							 "ptune.drop_task()) first.", quote_identifier(name), quote_identifier(name))));
		}
	}
}

void
ptune_reassign_owned(List *roles, Oid new_owner)
{
	ListCell   *lc;

	if (!installed_here())
		return;
	foreach(lc, roles)
	{
		Oid			role = get_rolespec_oid(lfirst(lc), false);
		PtuneAsOwner as;
		Oid			types[2] = {REGROLEOID, REGROLEOID};
		Datum		values[2] = {ObjectIdGetDatum(role), ObjectIdGetDatum(new_owner)};

		ptune_as_owner_begin(&as);
		SPI_connect();
		if (SPI_execute_with_args("UPDATE ptune.task_owners SET owner = $2 WHERE owner = $1",
								  2, types, values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "ptune: updating ptune.task_owners failed");
		SPI_finish();
		ptune_as_owner_end(&as);
	}
}

void
ptune_drop_owned(List *roles)
{
	ListCell   *lc;

	if (!installed_here())
		return;					/* DROP OWNED may have dropped the extension itself */
	foreach(lc, roles)
	{
		Oid			role = get_rolespec_oid(lfirst(lc), false);

		/* the prompts go with their registry row (ON DELETE CASCADE) */
		run_as_owner("DELETE FROM ptune.task_owners WHERE owner = $1", NULL, role, false, NULL);
	}
}
