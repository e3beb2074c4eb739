/*
 * tasks.h - who owns a task and who may see or change it (the security
 * model of README's "Security model", in one place).
 *
 * Ownership lives in ptune.task_owners (task -> owner role OID).  Nobody but
 * the tables' owner writes ptune.prompts or ptune.task_owners: ptune's
 * functions check the caller's rights here, with the caller's identity, and
 * then run their queries as the tables' owner (ptune_as_owner_begin).
 */
#ifndef PTUNE_TASKS_H
#define PTUNE_TASKS_H

#include "postgres.h"

#include "nodes/pg_list.h"

/* Row lock taken on a task's registry row while reading its owner. */
typedef enum PtuneTaskLock
{
	PTUNE_LOCK_SNAPSHOT,		/* no lock, the query's snapshot (stable functions, parallel workers) */
	PTUNE_LOCK_NONE,			/* no lock, the latest committed state and this transaction's own */
	PTUNE_LOCK_KEY_SHARE,		/* a training: the task cannot be dropped meanwhile */
	PTUNE_LOCK_UPDATE			/* storing or activating a version, reassigning */
} PtuneTaskLock;

/* What a session was before ptune_as_owner_begin(). */
typedef struct PtuneAsOwner
{
	Oid			saved_user;
	int			saved_sec_context;
	int			guc_level;
} PtuneAsOwner;

/*
 * Runs what follows as the owner of ptune's tables, in a security-restricted
 * operation, with search_path = pg_catalog, pg_temp (as PostgreSQL runs index
 * expressions as a table's owner).  Errors undo it with the transaction.
 */
void		ptune_as_owner_begin(PtuneAsOwner *s);
void		ptune_as_owner_end(PtuneAsOwner *s);

/* The task's owner, InvalidOid when there is no such task. */
Oid			ptune_task_owner(const char *task, PtuneTaskLock lock);

/* May the current role change tasks of this owner?  (superuser, or the owner's privileges) */
bool		ptune_may_manage(Oid owner);

/* May it see and classify with them?  (may manage, or SELECT on ptune.prompts) */
bool		ptune_may_see(Oid owner);

/*
 * The owner of an existing task the current role may see (read as of the
 * snapshot); otherwise the "does not exist" or permission error, whose hint
 * starts with `doing`: "Using", "Exporting" (another role's task needs ...).
 */
Oid			ptune_check_see(const char *task, const char *doing);

/*
 * The owner of an existing task the current role may manage, locked as
 * asked; otherwise the "does not exist" or ownership error.  `action` ends
 * the ownership hint: "retrain it", "activate it", ...
 */
Oid			ptune_check_manage(const char *task, PtuneTaskLock lock, const char *action);

/*
 * A training or an import storing a new version of task (a text Datum):
 * deactivates the task's active version and returns the next version
 * number, whose rows the caller then inserts as active.  Runs inside SPI as
 * the tables' owner, after ptune_check_manage(task, PTUNE_LOCK_UPDATE): the
 * registry row's lock makes one trainer, import or activation of the task
 * at a time compute the number.
 */
int			ptune_begin_new_version(Datum task);

/*
 * Before a training or an import (command and action, "retrain it", name
 * it in errors): refuses a read-only transaction, then registers a
 * new task as the current role's (a racing first training of the same task
 * waits for this one's transaction and then gets the ownership error) or
 * checks the ownership of an existing one and keeps it from being dropped
 * while training.
 */
void		ptune_claim_task(const char *task, const char *command, const char *action);

/* ptune's reaction to DROP ROLE, REASSIGN OWNED and DROP OWNED (see ptune.c). */
void		ptune_refuse_drop_of_owners(List *roles);
void		ptune_reassign_owned(List *roles, Oid new_owner);
void		ptune_drop_owned(List *roles);

#endif
