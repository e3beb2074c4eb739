/*
 * worker_train.c - training runs inside the worker.
 *
 * A training request becomes a job that advances one optimisation step per
 * round of the worker loop, between classification batches, so sessions
 * keep being served while a prompt trains.  Progress is published in
 * shared memory (the view ptune.training_progress); a cancelled request
 * (query cancel, statement_timeout, session exit) stops at the next step
 * and nothing is returned.
 */
#include "postgres.h"

#include "utils/float.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "protocol.h"
#include "trainer.h"
#include "worker.h"

#define MAX_ROW_BYTES (64 << 20)

typedef struct TrainJob
{
	bool		active;
	int			slot;
	int			progress;		/* index into ptune_shared->trainings */
	PtTrainer  *trainer;
} TrainJob;

static TrainJob jobs[PTUNE_MAX_TRAININGS];
static int	next_job = 0;		/* round-robin position */

static void
end_job(TrainJob *job)
{
	pt_trainer_free(job->trainer);
	LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
	ptune_shared->trainings[job->progress].active = false;
	LWLockRelease(&ptune_shared->lock);
	job->active = false;
	job->trainer = NULL;
}

void
worker_abort_trainings(const char *why)
{
	for (int i = 0; i < PTUNE_MAX_TRAININGS; i++)
		if (jobs[i].active)
		{
			ptune_slot_fail(jobs[i].slot, ERRCODE_ADMIN_SHUTDOWN, why, NULL, "Run ptune.train_prompt() again.");
			end_job(&jobs[i]);
		}
}

/* Parses a TRAIN request into options and rows (palloc'd in the current context). */
static void
parse_request(StringInfo msg, PtTrainOptions *o, char **task, PtTextSet *set, Oid *db, Oid *user)
{
	char	   *init,
			   *optimizer;
	int			n;
	const char **texts,
			  **labels;
	size_t	   *lens;

	pt_train_options_default(o);
	*task = pq_getstring_len(msg, 1024);
	*db = (Oid) pq_getmsgint(msg, 4);
	*user = (Oid) pq_getmsgint(msg, 4);
	o->prompt_length = pq_getmsgint(msg, 4);
	init = pq_getstring_len(msg, 64);
	optimizer = pq_getstring_len(msg, 64);
	o->learning_rate = pq_getmsgfloat8(msg);
	o->batch_size = pq_getmsgint(msg, 4);
	o->epochs = pq_getmsgint(msg, 4);
	o->max_steps = pq_getmsgint64(msg);
	o->validation_fraction = pq_getmsgfloat8(msg);
	o->eval_every = pq_getmsgint(msg, 4);
	o->patience = pq_getmsgint(msg, 4);
	o->ensemble_size = pq_getmsgint(msg, 4);
	o->max_input_tokens = pq_getmsgint(msg, 4);
	o->seed = (unsigned long long) pq_getmsgint64(msg);
	o->max_grad_norm = pq_getmsgfloat8(msg);
	o->weight_decay = pq_getmsgfloat8(msg);
	if (pt_init_parse(init, &o->init) != 0 || pt_optimizer_parse(optimizer, &o->optimizer) != 0)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s", pt_error_message())));

	n = pq_getmsgint(msg, 4);
	if (n < 0 || n > (1 << 26))
		ereport(ERROR, (errcode(ERRCODE_PROTOCOL_VIOLATION), errmsg("invalid number of training rows")));
	texts = palloc(sizeof(char *) * (n + 1));
	labels = palloc(sizeof(char *) * (n + 1));
	lens = palloc(sizeof(size_t) * (n + 1));
	for (int i = 0; i < n; i++)
	{
		texts[i] = pq_getstring_len(msg, MAX_ROW_BYTES);
		lens[i] = strlen(texts[i]);
		labels[i] = pq_getstring_len(msg, 1 << 20);
	}
	*set = (PtTextSet) {n, texts, lens, labels};
}

/* A free progress entry, or -1. */
static int
claim_progress(const char *task, int backend_pid, Oid db, Oid user, int n_members)
{
	int			found = -1;

	LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < PTUNE_MAX_TRAININGS && found < 0; i++)
		if (!ptune_shared->trainings[i].active)
		{
			PtuneTraining *t = &ptune_shared->trainings[i];

			memset(t, 0, sizeof(*t));
			t->active = true;
			t->backend_pid = backend_pid;
			t->database = db;
			t->user = user;
			strlcpy(t->task, task, sizeof(t->task));
			strlcpy(t->phase, "tokenizing", sizeof(t->phase));
			t->n_members = n_members;
			t->val_accuracy = t->best_val_accuracy = get_float8_nan();
			t->started = t->updated = GetCurrentTimestamp();
			found = i;
		}
	LWLockRelease(&ptune_shared->lock);
	return found;
}

/* Turns a pending TRAIN request into a job (or answers it with an error). */
static void
start_job(int slot)
{
	TrainJob   *volatile job = NULL;	/* read in PG_CATCH */
	MemoryContext ctx = AllocSetContextCreate(TopMemoryContext, "ptune training request",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(ctx);

	for (int i = 0; i < PTUNE_MAX_TRAININGS && job == NULL; i++)
		if (!jobs[i].active)
			job = &jobs[i];
	if (job)
		job->progress = -1;

	PG_TRY();
	{
		StringInfoData msg;
		PtTrainOptions opt;
		PtTextSet	set;
		char	   *task;
		Oid			db,
					user;

		if (worker_model == NULL)
			ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
							errmsg("the ptune model is not loaded"), errdetail("%s", ptune_shared->model_error)));
		if (job == NULL)
			ereport(ERROR, (errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
							errmsg("%d prompts are training already", PTUNE_MAX_TRAININGS),
							errhint("Wait for one to finish.")));
		ptune_slot_read(slot, &msg);
		parse_request(&msg, &opt, &task, &set, &db, &user);
		job->progress = claim_progress(task, ptune_shared->slots[slot].backend_pid, db, user,
									   opt.ensemble_size);
		if (job->progress < 0)
			ereport(ERROR, (errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED), errmsg("no free training progress entry")));
		job->trainer = pt_trainer_new(worker_model, &opt, &set, NULL);
		if (job->trainer == NULL)
		{
			LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
			ptune_shared->trainings[job->progress].active = false;
			LWLockRelease(&ptune_shared->lock);
			worker_fail_engine(slot, "cannot train");
		}
		else
		{
			job->active = true;
			job->slot = slot;
			LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
			ptune_shared->slots[slot].progress_slot = job->progress;
			strlcpy(ptune_shared->trainings[job->progress].phase, "training", 32);
			ptune_shared->trainings[job->progress].total_steps = pt_trainer_progress(job->trainer)->total_steps;
			LWLockRelease(&ptune_shared->lock);
		}
	}
	PG_CATCH();
	{
		LWLockReleaseAll();
		if (job && !job->active && job->progress >= 0)
		{
			LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
			ptune_shared->trainings[job->progress].active = false;
			LWLockRelease(&ptune_shared->lock);
		}
		worker_fail_caught(slot);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	MemoryContextDelete(ctx);
}

static void
publish_progress(TrainJob *job)
{
	const PtTrainProgress *p = pt_trainer_progress(job->trainer);
	PtuneTraining *t = &ptune_shared->trainings[job->progress];

	LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
	t->member = p->member;
	t->step = p->step;
	t->total_steps = p->total_steps;
	t->epoch = p->epoch;
	t->rows_per_second = p->rows_per_second;
	if (p->evaluated)
	{
		t->loss = p->loss;
		t->val_accuracy = p->val_accuracy;
		t->best_val_accuracy = p->best_val_accuracy;
		t->change_count++;
	}
	t->updated = GetCurrentTimestamp();
	LWLockRelease(&ptune_shared->lock);
}

/* The response of a finished training: metrics, labels, prompts, model. */
static void
answer_job(TrainJob *job)
{
	const PtTrainResult *r = pt_trainer_result(job->trainer);
	StringInfoData out;
	char		fp[2 * PT_FINGERPRINT_BYTES + 1];

	initStringInfo(&out);
	pq_sendint32(&out, r->train_rows);
	pq_sendint32(&out, r->val_rows);
	pq_sendint32(&out, r->skipped_rows);
	pq_sendint64(&out, r->steps);
	pq_sendfloat8(&out, r->seconds);
	pq_sendfloat8(&out, r->final_loss);
	pq_sendfloat8(&out, r->val_accuracy);
	pq_sendfloat8(&out, pt_trainer_progress(job->trainer)->rows_per_second);
	pq_sendint32(&out, r->n_labels);
	for (int j = 0; j < r->n_labels; j++)
		pq_sendstring_len(&out, r->labels[j], strlen(r->labels[j]));
	pq_sendint32(&out, r->n_prompts);
	for (int k = 0; k < r->n_prompts; k++)
	{
		uint8_t    *blob;
		size_t		len;

		if (pt_prompt_encode(r->prompts[k], &blob, &len) != 0)
		{
			worker_fail_engine(job->slot, "cannot encode the prompt");
			return;
		}
		pq_sendstring_len(&out, (const char *) blob, (int) len);
		free(blob);
	}
	pt_model_fingerprint_hex(worker_model, fp);
	pq_sendstring_len(&out, worker_model->cfg.model_name, strlen(worker_model->cfg.model_name));
	pq_sendstring_len(&out, fp, strlen(fp));
	pq_sendint32(&out, worker_model->cfg.d_model);
	ptune_slot_answer(job->slot, &out);
	pfree(out.data);
}

/* One step of one job; true if there was a job to advance. */
static bool
step_one_job(void)
{
	for (int tries = 0; tries < PTUNE_MAX_TRAININGS; tries++)
	{
		TrainJob   *job = &jobs[next_job];
		int			rc;

		next_job = (next_job + 1) % PTUNE_MAX_TRAININGS;
		if (!job->active)
			continue;
		if (ptune_slot_abandoned(job->slot))
		{
			/* cancelled by its session: stop now, store nothing */
			ptune_slot_fail(job->slot, ERRCODE_QUERY_CANCELED, "training was cancelled", NULL, NULL);
			end_job(job);
			return true;
		}
		rc = pt_trainer_step(job->trainer);
		if (rc < 0)
		{
			worker_fail_engine(job->slot, "training failed");
			end_job(job);
		}
		else
		{
			publish_progress(job);
			if (rc == 1)
			{
				answer_job(job);
				end_job(job);
			}
		}
		return true;
	}
	return false;
}

bool
worker_serve_training(void)
{
	int			slots[PTUNE_MAX_TRAININGS];
	int			n = ptune_slot_take_pending(PTUNE_REQ_TRAIN, slots, PTUNE_MAX_TRAININGS);

	for (int i = 0; i < n; i++)
		start_job(slots[i]);
	return step_one_job() || n > 0;
}
