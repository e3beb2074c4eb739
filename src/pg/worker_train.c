/*
 * worker_train.c - training runs inside the worker.
 *
 * A training request is a header (the options), then its rows in chunks
 * (see sql_train.c).  On the header the worker checks that a model is
 * loaded and a training may start, before a single row is sent; each chunk
 * is tokenized as it arrives (only token ids are kept).  Then the job
 * trains in bounded units: each call of worker_serve_training() gives one
 * job, round-robin, one slice of about ptune.training_slice_ms (a chunk to
 * tokenize, a micro-batch of a step, or a part of a validation), so the
 * worker serves classification between slices.  Progress is published in
 * shared memory (the view ptune.training_progress); a cancelled request
 * (query cancel, statement_timeout, session exit) stops at the next slice
 * and nothing is returned.
 */
#include "postgres.h"

#include <time.h>

#include "utils/float.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "protocol.h"
#include "trainer.h"
#include "worker.h"

/* the most rows one unit of work may put through the model */
#define MAX_UNIT_ROWS 4096

typedef enum JobState
{
	JOB_FREE = 0,
	JOB_RECEIVING,				/* rows arrive in chunks */
	JOB_TRAINING
} JobState;

typedef struct TrainJob
{
	JobState	state;
	int			slot;
	int			progress;		/* index into ptune_shared->trainings */
	PtTrainer  *trainer;
	int			unit_rows;		/* rows per unit of work, tuned to ptune.training_slice_ms */
	/* held-out rows, kept as text until the last chunk (pt_trainer_set_test takes them at once) */
	MemoryContext held_out_cxt;
	int			n_held_out,
				cap_held_out;
	const char **held_out_texts,
			  **held_out_labels;
	size_t	   *held_out_lens;
} TrainJob;

static TrainJob jobs[PTUNE_MAX_TRAININGS];
static int	next_job = 0;		/* round-robin position */

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static void
end_job(TrainJob *job)
{
	pt_trainer_free(job->trainer);
	if (job->held_out_cxt)
		MemoryContextDelete(job->held_out_cxt);
	job->held_out_cxt = NULL;
	job->n_held_out = job->cap_held_out = 0;
	if (job->progress >= 0)
	{
		LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
		ptune_shared->trainings[job->progress].active = false;
		LWLockRelease(&ptune_shared->lock);
	}
	job->state = JOB_FREE;
	job->trainer = NULL;
	job->progress = -1;
}

void
worker_abort_trainings(const char *why)
{
	for (int i = 0; i < PTUNE_MAX_TRAININGS; i++)
		if (jobs[i].state != JOB_FREE)
		{
			ptune_slot_fail(jobs[i].slot, ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, why, NULL, "Run ptune.train_prompt() again.");
			end_job(&jobs[i]);
		}
}

/* Parses a TRAIN header into options (palloc'd in the current context). */
static void
parse_header(StringInfo msg, PtTrainOptions *o, char **task, Oid *db, Oid *user)
{
	char	   *init,
			   *optimizer;

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
	o->min_dim_size_to_factor = pq_getmsgint(msg, 4);
	o->adafactor_start_step = (long) pq_getmsgint64(msg);
	o->scoring = (PtScoring) pq_getmsgint(msg, 4);
	o->objective = (PtObjectiveKind) pq_getmsgint(msg, 4);
	pq_getmsgend(msg);
	if (o->objective != PT_OBJECTIVE_CLASSIFICATION && o->objective != PT_OBJECTIVE_GENERATION)
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("invalid objective in a train request")));
	if (o->scoring != PT_SCORE_LABEL_TOKENS && o->scoring != PT_SCORE_RANK)
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("invalid scoring in a train request")));
	if (pt_init_parse(init, &o->init) != 0 || pt_optimizer_parse(optimizer, &o->optimizer) != 0)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s", pt_error_message())));
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
			strlcpy(t->phase, "receiving rows", sizeof(t->phase));
			t->n_members = n_members;
			t->val_accuracy = t->best_val_accuracy = get_float8_nan();
			t->started = t->updated = GetCurrentTimestamp();
			found = i;
		}
	LWLockRelease(&ptune_shared->lock);
	return found;
}

/*
 * Turns a pending TRAIN header into a job, or answers it with an error: no
 * model, no room, bad options.  Then asks for the first chunk of rows.
 */
static void
start_job(int slot)
{
	TrainJob   *volatile job = NULL;	/* read in PG_CATCH */
	MemoryContext ctx = AllocSetContextCreate(TopMemoryContext, "ptune training request",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(ctx);

	for (int i = 0; i < PTUNE_MAX_TRAININGS && job == NULL; i++)
		if (jobs[i].state == JOB_FREE)
			job = &jobs[i];
	if (job)
		job->progress = -1;

	PG_TRY();
	{
		StringInfoData msg;
		PtTrainOptions opt;
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
		parse_header(&msg, &opt, &task, &db, &user);
		job->trainer = pt_trainer_open(worker_model, &opt);
		if (job->trainer == NULL)
			worker_fail_engine(slot, "cannot train");
		else
		{
			job->progress = claim_progress(task, ptune_shared->slots[slot].backend_pid, db, user,
										   opt.ensemble_size);
			if (job->progress < 0)
				ereport(ERROR, (errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
								errmsg("no free training progress entry")));
			job->state = JOB_RECEIVING;
			job->slot = slot;
			job->unit_rows = 1;
			LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
			ptune_shared->slots[slot].progress_slot = job->progress;
			LWLockRelease(&ptune_shared->lock);
			ptune_slot_want_chunk(slot);
		}
	}
	PG_CATCH();
	{
		LWLockReleaseAll();
		if (job && job->state == JOB_FREE)
			end_job(job);		/* frees a trainer and progress entry taken before the error */
		ptune_slot_fail_caught(slot);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	MemoryContextDelete(ctx);
}

static void
publish_progress(TrainJob *job, const char *phase)
{
	const PtTrainProgress *p = pt_trainer_progress(job->trainer);
	PtuneTraining *t = &ptune_shared->trainings[job->progress];

	LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
	strlcpy(t->phase, phase, sizeof(t->phase));
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
	pq_sendint32(&out, r->test_rows);
	pq_sendint32(&out, r->skipped_rows);
	pq_sendint64(&out, r->steps);
	pq_sendfloat8(&out, r->seconds);
	pq_sendfloat8(&out, r->final_loss);
	pq_sendfloat8(&out, r->selection_accuracy);
	pq_sendfloat8(&out, r->test_accuracy);
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
}

/* Chunk kinds (see sql_train.c). */
#define CHUNK_TRAINING_ROWS 0
#define CHUNK_HELD_OUT_ROWS 1

/* Copies held-out rows into the job's memory, to be tokenized once all have come. */
static void
keep_held_out(TrainJob *job, const PtTextSet *set)
{
	MemoryContext old;

	if (job->held_out_cxt == NULL)
		job->held_out_cxt = AllocSetContextCreate(TopMemoryContext, "ptune held-out rows",
												  ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(job->held_out_cxt);
	if (job->n_held_out + set->n > job->cap_held_out)
	{
		int			cap = Max(2 * job->cap_held_out, job->n_held_out + set->n);

		job->held_out_texts = job->cap_held_out ? repalloc(job->held_out_texts, sizeof(char *) * cap)
			: palloc(sizeof(char *) * cap);
		job->held_out_labels = job->cap_held_out ? repalloc(job->held_out_labels, sizeof(char *) * cap)
			: palloc(sizeof(char *) * cap);
		job->held_out_lens = job->cap_held_out ? repalloc(job->held_out_lens, sizeof(size_t) * cap)
			: palloc(sizeof(size_t) * cap);
		job->cap_held_out = cap;
	}
	for (int i = 0; i < set->n; i++)
	{
		job->held_out_texts[job->n_held_out] = pnstrdup(set->texts[i], set->lens[i]);
		job->held_out_lens[job->n_held_out] = set->lens[i];
		job->held_out_labels[job->n_held_out] = pstrdup(set->labels[i]);
		job->n_held_out++;
	}
	MemoryContextSwitchTo(old);
}

/*
 * Tokenizes the chunk of rows the backend handed over, if there is one.
 * Returns false when none has arrived yet.  The chunk is copied out and the
 * next one asked for first, so that the backend reads the table while we
 * tokenize.  The last chunk closes the rows (labels, validation split);
 * then training starts.
 */
static bool
receive_chunk(TrainJob *job)
{
	StringInfoData view,
				msg;
	bool		last;
	int			kind,
				n;
	const char **texts,
			  **labels;
	size_t	   *lens;
	PtTextSet	set;

	if (!ptune_slot_peek_chunk(job->slot, &view, &last))
		return false;
	initStringInfo(&msg);
	enlargeStringInfo(&msg, view.len);
	appendBinaryStringInfo(&msg, view.data, view.len);
	ptune_slot_drop_chunk(job->slot);
	if (!last)
		ptune_slot_want_chunk(job->slot);

	kind = pq_getmsgint(&msg, 4);
	n = pq_getmsgint(&msg, 4);
	if ((kind != CHUNK_TRAINING_ROWS && kind != CHUNK_HELD_OUT_ROWS) || n < 0 || n > 1000000)
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("invalid number of training rows")));
	texts = palloc(sizeof(char *) * (n + 1));
	labels = palloc(sizeof(char *) * (n + 1));
	lens = palloc(sizeof(size_t) * (n + 1));
	for (int i = 0; i < n; i++)
	{
		int			len = pq_getmsgint(&msg, 4);

		/* the text is read in place (with its length); the label is copied to end in NUL */
		if (len < 0 || len > PT_MAX_FIELD_BYTES)
			ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("invalid text length %d", len)));
		texts[i] = pq_getmsgbytes(&msg, len);
		lens[i] = (size_t) len;
		labels[i] = pq_getstring_len(&msg, 1 << 20);
	}
	pq_getmsgend(&msg);
	set = (PtTextSet) {n, texts, lens, labels};
	if (kind == CHUNK_HELD_OUT_ROWS)
		keep_held_out(job, &set);
	else if (pt_trainer_add_rows(job->trainer, &set) != 0)
	{
		worker_fail_engine(job->slot, "cannot read the training rows");
		end_job(job);
		return true;
	}
	if (!last)
		return true;
	if (pt_trainer_close_rows(job->trainer, NULL) != 0)
	{
		worker_fail_engine(job->slot, "cannot train");
		end_job(job);
		return true;
	}
	if (job->n_held_out > 0)
	{
		PtTextSet	held_out = {job->n_held_out, job->held_out_texts, job->held_out_lens,
		job->held_out_labels};

		if (pt_trainer_set_test(job->trainer, &held_out) != 0)
		{
			worker_fail_engine(job->slot, "cannot read the held-out rows");
			end_job(job);
			return true;
		}
		MemoryContextDelete(job->held_out_cxt);
		job->held_out_cxt = NULL;
		job->n_held_out = 0;
	}
	job->state = JOB_TRAINING;
	publish_progress(job, pt_trainer_phase(job->trainer));
	return true;
}

/*
 * One unit of training: at most unit_rows rows through the model.  Then
 * unit_rows is sized from the time a row took so that the next unit takes
 * about ptune.training_slice_ms (growing at most fourfold at a time, as a
 * training row, with its backward pass, costs more than a validation row).
 */
static void
train_unit(TrainJob *job)
{
	double		slice_ms = Max(1, worker_int_setting("ptune.training_slice_ms"));
	double		start = now_ms(),
				took;
	int			rc = pt_trainer_advance(job->trainer, job->unit_rows);
	int			rows = pt_trainer_unit_rows(job->trainer);

	took = now_ms() - start;
	if (rc < 0)
	{
		worker_fail_engine(job->slot, "training failed");
		end_job(job);
		return;
	}
	if (rows > 0)
	{
		double		fit = slice_ms / Max(took / rows, 1e-3);

		job->unit_rows = (int) Max(1, Min(Min(fit, 4.0 * job->unit_rows), MAX_UNIT_ROWS));
	}
	publish_progress(job, pt_trainer_phase(job->trainer));
	if (rc == 1)
	{
		answer_job(job);
		end_job(job);
	}
}

/* One unit of work of one job (inside PG_TRY: an ERROR fails this training only). */
static bool
work_on(TrainJob *job)
{
	volatile bool worked = true;
	MemoryContext ctx = AllocSetContextCreate(TopMemoryContext, "ptune training unit",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(ctx);

	PG_TRY();
	{
		if (ptune_slot_abandoned(job->slot))
		{
			/* cancelled by its session: stop now, store nothing */
			ptune_slot_fail(job->slot, ERRCODE_QUERY_CANCELED, "training was cancelled", NULL, NULL);
			end_job(job);
		}
		else if (job->state == JOB_RECEIVING)
			worked = receive_chunk(job);
		else
			train_unit(job);
	}
	PG_CATCH();
	{
		ptune_slot_fail_caught(job->slot);
		end_job(job);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	MemoryContextDelete(ctx);
	return worked;
}

bool
worker_serve_training(void)
{
	int			slots[PTUNE_MAX_TRAININGS];
	int			n = ptune_slot_take_pending(PTUNE_REQ_TRAIN, slots, PTUNE_MAX_TRAININGS);
	double		slice_ms = Max(1, worker_int_setting("ptune.training_slice_ms"));
	double		start = now_ms();
	bool		received = false;

	for (int i = 0; i < n; i++)
		start_job(slots[i]);

	/*
	 * Chunks of rows first (a chunk is a bounded unit too): a table loads at
	 * the pace its backend reads it, not one chunk per round of every
	 * training.  As many as arrived, within one slice.
	 */
	for (int i = 0; i < PTUNE_MAX_TRAININGS && now_ms() - start < slice_ms; i++)
		if (jobs[i].state == JOB_RECEIVING)
			received |= work_on(&jobs[i]);
	if (received)
		return true;

	/* else the next training job, round-robin: one unit of it */
	for (int tries = 0; tries < PTUNE_MAX_TRAININGS; tries++)
	{
		TrainJob   *job = &jobs[next_job];

		next_job = (next_job + 1) % PTUNE_MAX_TRAININGS;
		if (job->state == JOB_TRAINING && work_on(job))
			return true;
	}
	return n > 0;
}
