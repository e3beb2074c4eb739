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
#include "request_job.h"

#define CACHE_SIZE 128
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

/* One open request: its rows (request_job.h), their engine rows and results. */
typedef struct Job
{
	RequestJob	base;			/* first: the slot, tokenized texts, rows done */
	PtScoring	scoring;
	int			n_prompts;
	const float **values;		/* [n_prompts] the ensemble's prompts, in the cache */
	int		   *lens;			/* [n_prompts] */
	const PtTask *task;
	PtClassifyRow *rows;		/* [base.n_rows] */
	PtClassifyResult *results;	/* [base.n_rows] */
} Job;

static bool parse_job(RequestJob *base, StringInfo msg);
static void answer_job(const RequestJob *base, StringInfo out);

static const RequestJobKind classify_kind = {
	PTUNE_REQ_CLASSIFY, "classification", "ptune classify request", sizeof(Job),
	parse_job, answer_job, ptune_wire_get_classify_text_count, ptune_wire_get_classify_text,
};
static RequestJobs jobs = {&classify_kind};

void
worker_cache_reset(const char *why)
{
	/* open requests point into the cache: they end first */
	request_jobs_fail_all(&jobs, why);
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
	for (int j = 0; j < jobs.n_open; j++)
		if (slot->task && ((Job *) jobs.open[j])->task == slot->task)
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

/* The kind's parse(): the prompts from the cache, then the texts (request_job.h). */
static bool
parse_job(RequestJob *base, StringInfo msg)
{
	Job		   *job = (Job *) base;
	int			scoring;

	ptune_wire_get_classify_head(msg, &scoring, &job->n_prompts);
	job->scoring = (PtScoring) scoring;
	job->values = palloc(sizeof(float *) * job->n_prompts);
	job->lens = palloc(sizeof(int) * job->n_prompts);
	for (int k = 0; k < job->n_prompts; k++)
	{
		const char *blob;
		int			len;
		const uint8 *key = ptune_wire_get_classify_prompt(msg, &blob, &len);
		CachedPrompt *c = cache_find(key);

		if (c == NULL && blob != NULL && (c = cache_add(blob, len, key)) == NULL)
		{
			worker_fail_engine(base->slot, pt_error_kind() == PT_ERR_MISMATCH ?
							   "the task's prompt does not fit the loaded model" : "invalid prompt");
			return false;
		}
		if (c == NULL)
		{
			/* the session sends the blob again; nothing else of this request is used */
			base->need_prompts = true;
			return true;
		}
		if (c->task == NULL)
		{
			/* the backend checks this first; a prompt swapped in since is refused here too */
			ptune_slot_fail(base->slot, ERRCODE_WRONG_OBJECT_TYPE,
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

	if (!request_job_read_texts(base, msg, job->task->max_input_tokens))
		return false;
	job->rows = palloc(sizeof(PtClassifyRow) * (base->n_rows + 1));
	job->results = palloc(sizeof(PtClassifyResult) * (base->n_rows + 1));
	for (int r = 0; r < base->n_rows; r++)
	{
		job->results[r].probs = palloc(sizeof(float) * job->task->n_labels);
		job->rows[r] = (PtClassifyRow) {job->task, job->scoring, job->n_prompts, job->values,
			job->lens, base->ids[r], base->n_ids[r]};
	}
	return true;
}

/* The kind's answer(): a label and probabilities per text, or "send the prompts". */
static void
answer_job(const RequestJob *base, StringInfo out)
{
	const Job  *job = (const Job *) base;

	ptune_wire_put_classify_answer_head(out, base->need_prompts ? CLASSIFY_NEED_PROMPTS : CLASSIFY_OK,
										base->need_prompts ? 0 : job->task->n_labels);
	if (!base->need_prompts)
		for (int i = 0; i < base->n_texts; i++)
		{
			int			r = base->row_of_text[i];

			ptune_wire_put_classify_answer_row(out, r < 0 ? -1 : job->results[r].label,
											   r < 0 ? NULL : job->results[r].probs, job->task->n_labels);
		}
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

	if (jobs.n_open >= last_batch_jobs || start - last_batch_end > window)
		return;
	while (jobs.n_open < last_batch_jobs && GetCurrentTimestamp() - start < window)
	{
		/* backends set our latch when they queue a request */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		request_jobs_open_new(&jobs);
	}
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
	RequestJob **from = palloc(sizeof(RequestJob *) * batch_size);
	int			n = 0,
				n_jobs = 0;
	TimestampTz start = GetCurrentTimestamp();

	/* a session that gave up (cancel, timeout, exit) must not keep the worker busy */
	request_jobs_fail_abandoned(&jobs);
	/* requests with nothing to compute (NULL texts only, or prompts to resend) are answered now */
	request_jobs_answer_finished(&jobs);
	if (jobs.n_open == 0)
		return false;

	request_jobs_sort(&jobs);
	for (int j = 0; j < jobs.n_open && n < batch_size; j++)
	{
		Job		   *job = (Job *) jobs.open[j];

		n_jobs++;
		for (int r = job->base.done_rows; r < job->base.n_rows && n < batch_size; r++)
		{
			rows[n] = job->rows[r];
			results[n] = job->results[r];
			from[n++] = &job->base;
		}
	}
	if (pt_classify(worker_model, &worker_workspace, rows, n, results) != 0)
	{
		/* an engine failure fails the requests of this batch, not the others */
		request_jobs_fail_batch(&jobs, from, n);
	}
	else
	{
		for (int i = 0; i < n; i++)
			((Job *) from[i])->results[from[i]->done_rows++].label = results[i].label;
		LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
		ptune_shared->forward_passes++;
		ptune_shared->rows_classified += n;
		LWLockRelease(&ptune_shared->lock);
		request_jobs_answer_finished(&jobs);
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

	/* one context for the worker's life, reset after each batch: an ERROR cannot leak it */
	static MemoryContext batch_cxt = NULL;

	if (batch_cxt == NULL)
		batch_cxt = AllocSetContextCreate(TopMemoryContext, "ptune classify batch", ALLOCSET_DEFAULT_SIZES);
	MemoryContextReset(batch_cxt);

	for (;;)
	{
		MemoryContext old;
		bool		ran;

		CHECK_FOR_INTERRUPTS();
		busy |= request_jobs_open_new(&jobs) > 0;
		if (jobs.n_open == 0 && busy && !TimestampDifferenceExceeds(last_batch_end, GetCurrentTimestamp(),
															   NEXT_REQUEST_GRACE_MS))
		{
			/* a session classifying row by row sends its next row now: serve it before a training slice */
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			continue;
		}
		if (jobs.n_open == 0)
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
	return busy;
}
