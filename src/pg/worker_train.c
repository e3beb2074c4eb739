/*
 * worker_train.c - training runs inside the worker.
 *
 * A training request is a header (the options), then its rows in chunks
 * (see sql_train.c).  On the header the worker checks that a model is
 * loaded and a training may start, before a single row is sent; each chunk
 * is tokenized as it arrives (only token ids are kept), for at most
 * ptune.training_slice_ms per round.  Then the job trains in bounded units:
 * each call of worker_serve_training() gives one job, round-robin, one unit
 * (a micro-batch of a step, or a part of a validation: UNIT_TOKENS), so the
 * worker serves classification between units, and, through the engine's
 * pause points, between the layers of each pass (pause_for_others).
 * Progress is published in shared memory (the view
 * ptune.training_progress); a cancelled request (query cancel,
 * statement_timeout, session exit) stops at the next pause point and
 * nothing is returned.
 */
#include "postgres.h"

#include <time.h>

#include "postmaster/interrupt.h"
#include "utils/float.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "wire.h"
#include "trainer.h"
#include "worker.h"

/*
 * Encoder tokens (prompt plus input, at max_input_tokens) one unit of work
 * puts through the model: a micro-batch of a step, or a validation slice.
 * Units are sized from the options alone, never from timings: the step
 * computed from micro-batches differs in float rounding with their sizes,
 * so timing-sized units would make a training's result depend on the
 * machine's load.  Latency does not need small units: the passes pause
 * between layers (pause_for_others), and a layer of 512 tokens takes some
 * 10-40 ms on flan-t5-small.
 */
#define UNIT_TOKENS 512

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
	int			unit_rows;		/* rows per unit of work (see UNIT_TOKENS) */
	/* why the pause hook stopped the pass in progress (an error message), or "" */
	char		stopped_why[PTUNE_ERROR_LEN];
	int			stopped_sqlstate;
	int			objective;		/* PtObjectiveKind: how a row's label is bounded on the wire */
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

/*
 * The pause points of a training pass (the engine calls this between two
 * layers, see yield.h): serve the classification and explain requests that
 * arrived meanwhile, so that a one-row classify waits for one layer of a
 * training row, not for the whole row (~0.45 s on flan-t5-small).  Stop the
 * pass (return 1) when its session gave up or the worker must exit.
 *
 * This runs inside engine frames, so no ERROR may leave it: everything is
 * inside PG_TRY, and an error becomes a stop with its message.  It serves
 * no training (nor the rows of one), so the suspended pass, its trainer and
 * workspace stay untouched; classification has its own workspace and cache.
 * Config reloads (which may reload the model) wait for the main loop.
 */
static int
pause_for_others(void *arg)
{
	TrainJob   *job = arg;
	volatile int stop = 0;
	MemoryContext old = CurrentMemoryContext;

	if (ShutdownRequestPending)
	{
		strlcpy(job->stopped_why, "the ptune worker was terminated", sizeof(job->stopped_why));
		job->stopped_sqlstate = ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;
		return 1;
	}
	PG_TRY();
	{
		if (ptune_slot_abandoned(job->slot))
		{
			strlcpy(job->stopped_why, "training was cancelled", sizeof(job->stopped_why));
			job->stopped_sqlstate = ERRCODE_QUERY_CANCELED;
			stop = 1;
		}
		else if (worker_serve_urgent())
		{
			LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
			ptune_shared->training_pauses++;
			LWLockRelease(&ptune_shared->lock);
		}
	}
	PG_CATCH();
	{
		ErrorData  *edata = ptune_catch_error(old);

		strlcpy(job->stopped_why, edata->message ? edata->message : "an error between two layers",
				sizeof(job->stopped_why));
		job->stopped_sqlstate = edata->sqlerrcode;
		FreeErrorData(edata);
		stop = 1;
	}
	PG_END_TRY();
	return stop;
}

/* Parses a TRAIN header into the trainer's options (palloc'd in the current context). */
static void
parse_header(StringInfo msg, PtTrainOptions *o, char **task, Oid *db, Oid *user)
{
	PtuneTrainRequest r;

	ptune_wire_get_train(msg, &r);
	pt_train_options_default(o);
	*task = r.task;
	*db = r.database;
	*user = r.user;
	o->prompt_length = r.prompt_length;
	o->learning_rate = r.learning_rate;
	o->batch_size = r.batch_size;
	o->epochs = r.epochs;
	o->max_steps = r.max_steps;
	o->validation_fraction = r.validation_fraction;
	o->eval_every = r.eval_every;
	o->patience = r.patience;
	o->ensemble_size = r.ensemble_size;
	o->max_input_tokens = r.max_input_tokens;
	o->seed = (unsigned long long) r.seed;
	o->max_grad_norm = r.max_grad_norm;
	o->weight_decay = r.weight_decay;
	o->min_dim_size_to_factor = r.min_dim_size_to_factor;
	o->adafactor_start_step = (long) r.adafactor_start_step;
	o->scoring = (PtScoring) r.scoring;
	o->objective = (PtObjectiveKind) r.objective;
	if (pt_init_parse(r.init, &o->init) != 0 || pt_optimizer_parse(r.optimizer, &o->optimizer) != 0)
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
		job->objective = opt.objective;
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
			job->unit_rows = Max(1, UNIT_TOKENS / (opt.prompt_length + opt.max_input_tokens));
			job->stopped_why[0] = '\0';
			pt_trainer_set_yield(job->trainer, pause_for_others, job);
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
	PtuneTrainAnswer a;
	StringInfoData out;
	char		fp[2 * PT_FINGERPRINT_BYTES + 1];

	a.train_rows = r->train_rows;
	a.val_rows = r->val_rows;
	a.test_rows = r->test_rows;
	a.skipped = r->skipped_rows;
	a.steps = r->steps;
	a.seconds = r->seconds;
	a.final_loss = r->final_loss;
	a.selection_accuracy = r->selection_accuracy;
	a.test_accuracy = r->test_accuracy;
	a.rows_per_second = pt_trainer_progress(job->trainer)->rows_per_second;
	a.n_labels = r->n_labels;
	a.labels = r->labels;
	a.n_prompts = r->n_prompts;
	a.prompts = palloc(sizeof(bytea *) * r->n_prompts);
	for (int k = 0; k < r->n_prompts; k++)
	{
		uint8_t    *blob;
		size_t		len;

		if (pt_prompt_encode(r->prompts[k], &blob, &len) != 0)
		{
			worker_fail_engine(job->slot, "cannot encode the prompt");
			return;
		}
		a.prompts[k] = palloc(VARHDRSZ + len);
		SET_VARSIZE(a.prompts[k], VARHDRSZ + len);
		memcpy(VARDATA(a.prompts[k]), blob, len);
		free(blob);
	}
	pt_model_fingerprint_hex(worker_model, fp);
	a.model_name = worker_model->cfg.model_name;
	a.fingerprint = fp;
	a.d_model = worker_model->cfg.d_model;
	initStringInfo(&out);
	ptune_wire_put_train_answer(&out, &a);
	ptune_slot_answer(job->slot, &out);
}

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

	n = ptune_wire_get_chunk(&msg, &kind);
	texts = palloc(sizeof(char *) * (n + 1));
	labels = palloc(sizeof(char *) * (n + 1));
	lens = palloc(sizeof(size_t) * (n + 1));
	for (int i = 0; i < n; i++)
	{
		int			len;

		labels[i] = ptune_wire_get_row(&msg, job->objective, &texts[i], &len);
		lens[i] = (size_t) len;
	}
	ptune_wire_get_chunk_end(&msg);
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

/* One unit of training: at most unit_rows rows through the model. */
static void
train_unit(TrainJob *job)
{
	int			rc = pt_trainer_advance(job->trainer, job->unit_rows);

	if (rc < 0)
	{
		/* stopped at a pause point (cancel, shutdown, an error there), or the engine failed */
		if (job->stopped_why[0])
			ptune_slot_fail(job->slot, job->stopped_sqlstate, job->stopped_why, NULL,
							job->stopped_sqlstate == ERRCODE_QUERY_CANCELED ? NULL :
							"Run ptune.train_prompt() again.");
		else
			worker_fail_engine(job->slot, "training failed");
		end_job(job);
		return;
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
