/*
 * worker_classify.c - serve classification requests, batched across
 * sessions: rows of every open request share the engine's batches.
 *
 * Prompts arrive as blobs named by their SHA-256.  The worker keeps decoded
 * prompts and their tasks (tokenized labels, score plans) in a small LRU
 * cache, so a session sends a prompt's blob only with its first request, or
 * when the worker asks for it (CLASSIFY_NEED_PROMPTS).
 *
 * Scheduling: requests stay open across rounds of the worker loop.  Each
 * engine batch of ptune.batch_size rows takes the rows of the requests with
 * the fewest rows left first, and new requests join between batches, so a
 * one-row request never waits behind a request of a million rows; a request
 * is answered as soon as its last row is computed.  One call of
 * worker_serve_classify() runs batches until no request is open (nor
 * arrives within NEXT_REQUEST_GRACE_MS) or CLASSIFY_ROUND_MS have passed,
 * so that trainings get their slices too.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "classifier.h"
#include "prompt.h"
#include "wire.h"
#include "task.h"
#include "worker.h"

#define CACHE_SIZE 128
#define MAX_ROUND_REQUESTS PTUNE_MAX_SLOTS
/* a text the backend sends is cut to its token budget first; this bounds the rest */
/* longest run of classification batches before the other handlers get a turn */
#define CLASSIFY_ROUND_MS 500
/*
 * After answering, wait this long for the sessions' next requests before
 * the round ends: a session classifying row by row sends its next row some
 * 100 us after its answer, and would otherwise wait behind a whole training
 * slice every time.
 */
#define NEXT_REQUEST_GRACE_MS 2

typedef struct CachedPrompt
{
	uint8		key[PROMPT_KEY_BYTES];
	PtPrompt   *prompt;
	PtTask	   *task;			/* built from this prompt's labels; NULL for a generation prompt */
	uint64		last_used;
} CachedPrompt;

static CachedPrompt cache[CACHE_SIZE];
static uint64 cache_clock = 0;

/* One open request: its rows, tokenized, and how far they are computed. */
typedef struct Job
{
	int			slot;
	MemoryContext mcxt;			/* everything below; deleted when answered */
	bool		need_prompts;
	PtScoring	scoring;
	int			n_prompts;
	const float **values;
	int		   *lens;
	const PtTask *task;
	int			n_texts;
	int		   *row_of_text;	/* index into rows; -1 for NULL texts */
	PtClassifyRow *rows;
	PtClassifyResult *results;
	int			n_rows;
	int			done_rows;		/* rows[0 .. done_rows) are computed */
} Job;

static Job *open_jobs[MAX_ROUND_REQUESTS];
static int	n_open = 0;

static void
drop_job(int j)
{
	MemoryContextDelete(open_jobs[j]->mcxt);
	open_jobs[j] = open_jobs[--n_open];
}

void
worker_cache_reset(const char *why)
{
	/* open requests point into the cache: they end first */
	while (n_open > 0)
	{
		ptune_slot_fail(open_jobs[0]->slot, ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, why, NULL,
						"Run the query again.");
		drop_job(0);
	}
	for (int i = 0; i < CACHE_SIZE; i++)
	{
		pt_prompt_free(cache[i].prompt);
		pt_task_free(cache[i].task);
	}
	memset(cache, 0, sizeof(cache));
}

static CachedPrompt *
cache_find(const uint8 *key)
{
	for (int i = 0; i < CACHE_SIZE; i++)
		if (cache[i].prompt && memcmp(cache[i].key, key, PROMPT_KEY_BYTES) == 0)
		{
			cache[i].last_used = ++cache_clock;
			return &cache[i];
		}
	return NULL;
}

/* Decodes a blob, checks it against the model, builds its task and caches it; NULL on error. */
static CachedPrompt *
cache_add(const char *blob, int len, const uint8 *claimed_key)
{
	uint8		key[PROMPT_KEY_BYTES];
	PtPrompt   *p;
	PtTask	   *task;
	CachedPrompt *slot = &cache[0];

	ptune_prompt_key(blob, len, key);
	if (memcmp(key, claimed_key, PROMPT_KEY_BYTES) != 0)
	{
		pt_fail(PT_ERR_FORMAT, "prompt blob does not match its key");
		return NULL;
	}
	p = pt_prompt_decode((const uint8_t *) blob, (size_t) len, NULL);
	if (p == NULL)
		return NULL;
	if (pt_prompt_check_model(p, worker_model) != 0)
	{
		pt_prompt_free(p);
		return NULL;
	}
	/* a generation prompt has no labels to score: generation requests use its values only */
	task = pt_prompt_objective(p) == PT_OBJECTIVE_GENERATION ? NULL :
		pt_task_new(worker_model, (const char *const *) p->labels, p->n_labels, p->max_input_tokens);
	if (task == NULL && pt_prompt_objective(p) != PT_OBJECTIVE_GENERATION)
	{
		pt_prompt_free(p);
		return NULL;
	}
	/* evict the least recently used entry that no open request uses */
	for (int i = 1; i < CACHE_SIZE; i++)
		if (cache[i].last_used < slot->last_used)
			slot = &cache[i];
	for (int j = 0; j < n_open; j++)
		if (slot->task && open_jobs[j]->task == slot->task)
		{
			/* every entry busy (128 prompts in flight): fail rather than pull one from under a request */
			pt_prompt_free(p);
			pt_task_free(task);
			pt_fail(PT_ERR_NOMEM, "the worker's prompt cache is full of prompts in use");
			return NULL;
		}
	pt_prompt_free(slot->prompt);
	pt_task_free(slot->task);
	memcpy(slot->key, key, PROMPT_KEY_BYTES);
	slot->prompt = p;
	slot->task = task;
	slot->last_used = ++cache_clock;
	return slot;
}

const PtPrompt *
worker_cached_prompt(const uint8 *key, const char *blob, int len, bool *missing)
{
	CachedPrompt *c = cache_find(key);

	*missing = false;
	if (c == NULL && len > 0)
		c = cache_add(blob, len, key);
	else if (c == NULL)
		*missing = true;
	return c ? c->prompt : NULL;
}

/*
 * Parses one request into job (in job->mcxt) and tokenizes its texts.
 * Returns false when the request was answered with an error here; protocol
 * violations raise an ERROR.
 */
static bool
parse_job(Job *job)
{
	StringInfoData msg;
	int			scoring;

	ptune_slot_read(job->slot, &msg);
	ptune_wire_get_classify_head(&msg, &scoring, &job->n_prompts);
	job->scoring = (PtScoring) scoring;
	job->values = palloc(sizeof(float *) * job->n_prompts);
	job->lens = palloc(sizeof(int) * job->n_prompts);
	for (int k = 0; k < job->n_prompts; k++)
	{
		const char *blob;
		int			len;
		const uint8 *key = ptune_wire_get_classify_prompt(&msg, &blob, &len);
		CachedPrompt *c = cache_find(key);

		if (c == NULL && blob != NULL && (c = cache_add(blob, len, key)) == NULL)
		{
			worker_fail_engine(job->slot, pt_error_kind() == PT_ERR_MISMATCH ?
							   "the task's prompt does not fit the loaded model" : "invalid prompt");
			return false;
		}
		if (c == NULL)
		{
			/* the session sends the blob again; nothing else of this request is used */
			job->need_prompts = true;
			return true;
		}
		if (c->task == NULL)
		{
			/* the backend checks this first; a prompt swapped in since is refused here too */
			ptune_slot_fail(job->slot, ERRCODE_WRONG_OBJECT_TYPE,
							"the task's prompt was trained for generation, not classification", NULL,
							"Use ptune.generate() with this task.");
			return false;
		}
		if (k == 0)
			job->task = c->task;
		else if (c->task->n_labels != job->task->n_labels)
			ereport(ERROR, (errcode(ERRCODE_DATA_CORRUPTED),
							errmsg("the prompts of an ensemble have different labels")));
		job->values[k] = c->prompt->values;
		job->lens[k] = c->prompt->length;
	}

	job->n_texts = ptune_wire_get_classify_text_count(&msg);
	job->row_of_text = palloc(sizeof(int) * (job->n_texts + 1));
	job->rows = palloc(sizeof(PtClassifyRow) * (job->n_texts + 1));
	job->results = palloc(sizeof(PtClassifyResult) * (job->n_texts + 1));
	for (int i = 0; i < job->n_texts; i++)
	{
		int			len;
		const char *text = ptune_wire_get_classify_text(&msg, &len);
		int32_t    *ids;
		int			n;

		job->row_of_text[i] = -1;
		if (text == NULL)
			continue;
		ids = palloc(sizeof(int32_t) * job->task->max_input_tokens);
		n = pt_encode_input(worker_model, job->task->max_input_tokens, text, (size_t) len, ids);
		if (n < 0)
		{
			worker_fail_engine(job->slot, "could not tokenize the input");
			return false;
		}
		job->row_of_text[i] = job->n_rows;
		job->results[job->n_rows].probs = palloc(sizeof(float) * job->task->n_labels);
		job->rows[job->n_rows++] = (PtClassifyRow) {job->task, job->scoring, job->n_prompts, job->values,
			job->lens, ids, n};
	}
	pfree(msg.data);
	return true;
}

static void
answer_job(const Job *job)
{
	StringInfoData out;

	initStringInfo(&out);
	ptune_wire_put_classify_answer_head(&out, job->need_prompts ? CLASSIFY_NEED_PROMPTS : CLASSIFY_OK,
										job->need_prompts ? 0 : job->task->n_labels);
	if (!job->need_prompts)
		for (int i = 0; i < job->n_texts; i++)
		{
			int			r = job->row_of_text[i];

			ptune_wire_put_classify_answer_row(&out, r < 0 ? -1 : job->results[r].label,
											   r < 0 ? NULL : job->results[r].probs, job->task->n_labels);
		}
	ptune_slot_answer(job->slot, &out);
}

/* Answers (or fails) job j inside PG_TRY and closes it. */
static void
finish_job(int j)
{
	Job		   *job = open_jobs[j];
	MemoryContext old = MemoryContextSwitchTo(job->mcxt);

	PG_TRY();
	{
		answer_job(job);
	}
	PG_CATCH();
	{
		ptune_slot_fail_caught(job->slot);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	drop_job(j);
}

/* Opens a job for each newly pending request (parse errors answer it at once). */
static int
open_new_jobs(void)
{
	int			slots[MAX_ROUND_REQUESTS];
	int			n = ptune_slot_take_pending(PTUNE_REQ_CLASSIFY, slots, MAX_ROUND_REQUESTS - n_open);

	for (int i = 0; i < n; i++)
	{
		MemoryContext mcxt = AllocSetContextCreate(TopMemoryContext, "ptune classify request",
												   ALLOCSET_DEFAULT_SIZES);
		MemoryContext old = MemoryContextSwitchTo(mcxt);
		Job		   *job = palloc0(sizeof(Job));
		volatile bool ok = false;

		job->slot = slots[i];
		job->mcxt = mcxt;
		if (worker_model == NULL)
			ptune_slot_fail(slots[i], ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, "the ptune model is not loaded",
							ptune_shared->model_error, "Fix ptune.model_path, then SELECT pg_reload_conf().");
		else
		{
			PG_TRY();
			{
				ok = parse_job(job);
			}
			PG_CATCH();
			{
				ptune_slot_fail_caught(job->slot);
				ok = false;
			}
			PG_END_TRY();
		}
		MemoryContextSwitchTo(old);
		if (ok)
			open_jobs[n_open++] = job;
		else
			MemoryContextDelete(mcxt);
	}
	return n;
}

/*
 * Sessions that classify row by row send their next request as soon as the
 * previous answer arrives, but a woken backend takes some 100 us to do so.
 * Starting the next pass at once would catch only the fastest of them and
 * leave the others for the pass after: batches of 1 and 3 instead of 4.  So
 * when fewer requests are open than the last batch answered, and that batch
 * just ended, wait briefly for the others: at most GATHER_MAX_US, and at
 * most 1/GATHER_SHARE of the last batch's time, so that short passes are not
 * slowed.  A single session never waits (1 is not < 1).
 */
#define GATHER_MAX_US 2000
#define GATHER_SHARE 20

static int	last_batch_jobs = 0;
static TimestampTz last_batch_end = 0;
static long last_batch_us = 0;

static void
gather_more(void)
{
	TimestampTz start = GetCurrentTimestamp();
	long		window = Min(GATHER_MAX_US, last_batch_us / GATHER_SHARE);

	if (n_open >= last_batch_jobs || start - last_batch_end > window)
		return;
	while (n_open < last_batch_jobs && GetCurrentTimestamp() - start < window)
	{
		/* backends set our latch when they queue a request */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		open_new_jobs();
	}
}

/* Order of service: fewest rows left first, then the oldest. */
static int
compare_jobs(const void *a, const void *b)
{
	const Job  *x = *(Job *const *) a;
	const Job  *y = *(Job *const *) b;
	int			lx = x->n_rows - x->done_rows,
				ly = y->n_rows - y->done_rows;

	if (lx != ly)
		return lx < ly ? -1 : 1;
	return ptune_shared->slots[x->slot].request_id < ptune_shared->slots[y->slot].request_id ? -1 : 1;
}

/*
 * One engine batch over the open jobs: drops abandoned ones, answers the
 * finished ones.  Returns false when there was nothing to compute.
 */
static bool
run_one_batch(int batch_size)
{
	PtClassifyRow *rows = palloc(sizeof(PtClassifyRow) * batch_size);
	PtClassifyResult *results = palloc(sizeof(PtClassifyResult) * batch_size);
	Job		  **from = palloc(sizeof(Job *) * batch_size);
	int			n = 0,
				n_jobs = 0;
	TimestampTz start = GetCurrentTimestamp();

	/* a session that gave up (cancel, timeout, exit) must not keep the worker busy */
	for (int j = n_open - 1; j >= 0; j--)
		if (ptune_slot_abandoned(open_jobs[j]->slot))
		{
			ptune_slot_fail(open_jobs[j]->slot, ERRCODE_QUERY_CANCELED, "classification was cancelled", NULL, NULL);
			drop_job(j);
		}
	/* requests with nothing to compute (NULL texts only, or prompts to resend) are answered now */
	for (int j = n_open - 1; j >= 0; j--)
		if (open_jobs[j]->need_prompts || open_jobs[j]->done_rows == open_jobs[j]->n_rows)
			finish_job(j);
	if (n_open == 0)
		return false;

	qsort(open_jobs, n_open, sizeof(Job *), compare_jobs);
	for (int j = 0; j < n_open && n < batch_size; j++)
	{
		Job		   *job = open_jobs[j];

		n_jobs++;
		for (int r = job->done_rows; r < job->n_rows && n < batch_size; r++)
		{
			rows[n] = job->rows[r];
			results[n] = job->results[r];
			from[n++] = job;
		}
	}
	if (pt_classify(worker_model, &worker_workspace, rows, n, results) != 0)
	{
		/* an engine failure fails the requests of this batch, not the others */
		for (int j = n_open - 1; j >= 0; j--)
			for (int i = 0; i < n; i++)
				if (from[i] == open_jobs[j])
				{
					worker_fail_engine(open_jobs[j]->slot, "classification failed");
					drop_job(j);
					break;
				}
	}
	else
	{
		for (int i = 0; i < n; i++)
			from[i]->results[from[i]->done_rows++].label = results[i].label;
		LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
		ptune_shared->forward_passes++;
		ptune_shared->rows_classified += n;
		LWLockRelease(&ptune_shared->lock);
		for (int j = n_open - 1; j >= 0; j--)
			if (open_jobs[j]->done_rows == open_jobs[j]->n_rows)
				finish_job(j);
	}
	last_batch_jobs = n_jobs;
	last_batch_end = GetCurrentTimestamp();
	last_batch_us = (long) (last_batch_end - start);
	pfree(rows);
	pfree(results);
	pfree(from);
	return true;
}

bool
worker_serve_classify(void)
{
	TimestampTz start = GetCurrentTimestamp();
	int			batch_size = Max(1, worker_int_setting("ptune.batch_size"));
	bool		busy = false;
	MemoryContext batch_cxt = AllocSetContextCreate(TopMemoryContext, "ptune classify batch",
													ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		MemoryContext old;
		bool		ran;

		CHECK_FOR_INTERRUPTS();
		busy |= open_new_jobs() > 0;
		if (n_open == 0 && busy && !TimestampDifferenceExceeds(last_batch_end, GetCurrentTimestamp(),
															   NEXT_REQUEST_GRACE_MS))
		{
			/* a session classifying row by row sends its next row now: serve it before a training slice */
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			continue;
		}
		if (n_open == 0)
			break;
		gather_more();
		old = MemoryContextSwitchTo(batch_cxt);
		ran = run_one_batch(batch_size);
		MemoryContextSwitchTo(old);
		MemoryContextReset(batch_cxt);
		busy = true;
		if (!ran || TimestampDifferenceExceeds(start, GetCurrentTimestamp(), CLASSIFY_ROUND_MS))
			break;
	}
	MemoryContextDelete(batch_cxt);
	return busy;
}
