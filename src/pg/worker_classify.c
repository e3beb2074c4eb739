/*
 * worker_classify.c - serve classification requests, batched across
 * sessions: every pending request of a round goes into one engine call.
 *
 * Prompts arrive as blobs named by a 64-bit key (a hash of the blob).  The
 * worker keeps decoded prompts and their tasks (tokenized labels, score
 * plans) in a small LRU cache, so a session sends a prompt's blob only with
 * its first request, or when the worker asks for it (CLASSIFY_NEED_PROMPTS).
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "classifier.h"
#include "prompt.h"
#include "protocol.h"
#include "task.h"
#include "worker.h"

#define CACHE_SIZE 128
#define MAX_ROUND_REQUESTS PTUNE_MAX_SLOTS
/* a text the backend sends is cut to its token budget first; this bounds the rest */
#define MAX_TEXT_BYTES (64 << 20)

typedef struct CachedPrompt
{
	uint64		key;
	PtPrompt   *prompt;
	PtTask	   *task;			/* built from this prompt's labels */
	uint64		last_used;
} CachedPrompt;

static CachedPrompt cache[CACHE_SIZE];
static uint64 cache_clock = 0;

void
worker_cache_reset(void)
{
	for (int i = 0; i < CACHE_SIZE; i++)
	{
		pt_prompt_free(cache[i].prompt);
		pt_task_free(cache[i].task);
	}
	memset(cache, 0, sizeof(cache));
}

static CachedPrompt *
cache_find(uint64 key)
{
	for (int i = 0; i < CACHE_SIZE; i++)
		if (cache[i].prompt && cache[i].key == key)
		{
			cache[i].last_used = ++cache_clock;
			return &cache[i];
		}
	return NULL;
}

/* Decodes a blob, checks it against the model, builds its task and caches it; NULL on error. */
static CachedPrompt *
cache_add(const char *blob, int len, uint64 claimed_key)
{
	uint64		key = hash_bytes_extended((const unsigned char *) blob, len, PROMPT_KEY_SEED);
	PtPrompt   *p;
	PtTask	   *task;
	CachedPrompt *slot = &cache[0];

	if (key != claimed_key)
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
	task = pt_task_new(worker_model, (const char *const *) p->labels, p->n_labels, p->max_input_tokens);
	if (task == NULL)
	{
		pt_prompt_free(p);
		return NULL;
	}
	/* evict the least recently used entry */
	for (int i = 1; i < CACHE_SIZE; i++)
		if (cache[i].last_used < slot->last_used)
			slot = &cache[i];
	pt_prompt_free(slot->prompt);
	pt_task_free(slot->task);
	*slot = (CachedPrompt) {key, p, task, ++cache_clock};
	return slot;
}

/* One request of the round, parsed. */
typedef struct Job
{
	int			slot;
	bool		failed;			/* already answered with an error */
	bool		need_prompts;
	PtScoring	scoring;
	int			n_prompts;
	const float **values;
	int		   *lens;
	const PtTask *task;
	int			n_texts;
	int		   *row_of_text;	/* its rows in the round's array; -1 for NULL texts */
	int			first_row;		/* its rows are rows[first_row .. first_row + n_rows) */
	int			n_rows;
} Job;

/*
 * Drops the jobs whose sessions gave up (cancel, timeout, exit) and tells
 * whether any live job has rows in rows[start .. end): a cancelled request
 * of thousands of rows must not keep the worker busy for minutes.
 */
static bool
rows_still_wanted(Job *jobs, int n_jobs, int start, int end)
{
	bool		wanted = false;

	for (int j = 0; j < n_jobs; j++)
	{
		if (jobs[j].failed || jobs[j].need_prompts)
			continue;
		if (worker_slot_abandoned(jobs[j].slot))
		{
			worker_fail(jobs[j].slot, ERRCODE_QUERY_CANCELED, "classification was cancelled", NULL, NULL);
			jobs[j].failed = true;
			continue;
		}
		if (jobs[j].first_row < end && jobs[j].first_row + jobs[j].n_rows > start)
			wanted = true;
	}
	return wanted;
}

/* The rows of all requests of a round. */
typedef struct RoundRows
{
	PtClassifyRow *rows;
	int			n;
	int			cap;
} RoundRows;

/*
 * Parses one request and appends its rows.  Returns false when the request
 * was answered with an error here; protocol violations raise an ERROR.
 */
static bool
parse_job(Job *job, RoundRows *rr)
{
	StringInfoData msg;

	worker_read_request(job->slot, &msg);
	job->scoring = (PtScoring) pq_getmsgint(&msg, 4);
	job->n_prompts = pq_getmsgint(&msg, 4);
	if ((job->scoring != PT_SCORE_LABEL_TOKENS && job->scoring != PT_SCORE_RANK) ||
		job->n_prompts < 1 || job->n_prompts > 64)
		ereport(ERROR, (errcode(ERRCODE_PROTOCOL_VIOLATION), errmsg("invalid classify request")));
	job->values = palloc(sizeof(float *) * job->n_prompts);
	job->lens = palloc(sizeof(int) * job->n_prompts);
	for (int k = 0; k < job->n_prompts; k++)
	{
		uint64		key = pq_getmsgint64(&msg);
		int			len = pq_getmsgint(&msg, 4);
		const char *blob = len > 0 && len <= (64 << 20) ? pq_getmsgbytes(&msg, len) : NULL;
		CachedPrompt *c;

		if (len < 0 || len > (64 << 20))
			ereport(ERROR, (errcode(ERRCODE_PROTOCOL_VIOLATION), errmsg("invalid prompt length")));
		c = cache_find(key);
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
		if (k == 0)
			job->task = c->task;
		else if (c->task->n_labels != job->task->n_labels)
			ereport(ERROR, (errcode(ERRCODE_DATA_CORRUPTED),
							errmsg("the prompts of an ensemble have different labels")));
		job->values[k] = c->prompt->values;
		job->lens[k] = c->prompt->length;
	}

	job->n_texts = pq_getmsgint(&msg, 4);
	if (job->n_texts < 0 || job->n_texts > (1 << 20))
		ereport(ERROR, (errcode(ERRCODE_PROTOCOL_VIOLATION), errmsg("invalid number of texts")));
	job->row_of_text = palloc(sizeof(int) * (job->n_texts + 1));
	if (rr->n + job->n_texts > rr->cap)
	{
		rr->cap = Max(rr->cap * 2, rr->n + job->n_texts);
		rr->rows = repalloc(rr->rows, sizeof(PtClassifyRow) * rr->cap);
	}
	for (int i = 0; i < job->n_texts; i++)
	{
		int			len = pq_getmsgint(&msg, 4);
		int32_t    *ids;
		int			n;

		job->row_of_text[i] = -1;
		if (len < 0)
			continue;
		if (len > MAX_TEXT_BYTES)
			ereport(ERROR, (errcode(ERRCODE_PROTOCOL_VIOLATION), errmsg("invalid text length")));
		ids = palloc(sizeof(int32_t) * job->task->max_input_tokens);
		n = pt_encode_input(worker_model, job->task->max_input_tokens, pq_getmsgbytes(&msg, len),
							(size_t) len, ids);
		if (n < 0)
		{
			worker_fail_engine(job->slot, "could not tokenize the input");
			return false;
		}
		job->row_of_text[i] = rr->n;
		rr->rows[rr->n++] = (PtClassifyRow) {job->task, job->scoring, job->n_prompts, job->values,
			job->lens, ids, n};
	}
	return true;
}

static void
answer_job(const Job *job, const PtClassifyResult *results)
{
	StringInfoData out;

	initStringInfo(&out);
	pq_sendint32(&out, job->need_prompts ? CLASSIFY_NEED_PROMPTS : CLASSIFY_OK);
	if (!job->need_prompts)
	{
		pq_sendint32(&out, job->task->n_labels);
		for (int i = 0; i < job->n_texts; i++)
		{
			int			r = job->row_of_text[i];

			pq_sendint32(&out, r < 0 ? -1 : results[r].label);
			for (int j = 0; j < job->task->n_labels; j++)
				pq_sendfloat4(&out, r < 0 ? 0.0f : results[r].probs[j]);
		}
	}
	worker_answer(job->slot, &out);
}

/*
 * Sessions that classify row by row send their next request as soon as the
 * previous answer arrives, but a woken backend takes some 100 us to do so.
 * Starting the next pass at once would catch only the fastest of them and
 * leave the others for the pass after: batches of 1 and 3 instead of 4.  So
 * when fewer requests are pending than the last round answered, and that
 * round just ended, wait briefly for the others: at most GATHER_MAX_US, and
 * at most 1/GATHER_SHARE of the last round's time, so that a round of short
 * passes is not slowed.  A single session never waits (1 is not < 1).
 */
#define GATHER_MAX_US 2000
#define GATHER_SHARE 20

static int	last_round_jobs = 0;
static TimestampTz last_round_end = 0;
static long last_round_us = 0;

static int
gather_more(int *slots, int n_jobs)
{
	TimestampTz start = GetCurrentTimestamp();
	long		window = Min(GATHER_MAX_US, last_round_us / GATHER_SHARE);

	if (n_jobs >= last_round_jobs || start - last_round_end > window)
		return n_jobs;
	while (n_jobs < last_round_jobs && GetCurrentTimestamp() - start < window)
	{
		/* backends set our latch when they queue a request */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		n_jobs += worker_take_pending(PTUNE_REQ_CLASSIFY, slots + n_jobs, MAX_ROUND_REQUESTS - n_jobs);
	}
	return n_jobs;
}

bool
worker_serve_classify(void)
{
	static int	slots[MAX_ROUND_REQUESTS];
	int			n_jobs = worker_take_pending(PTUNE_REQ_CLASSIFY, slots, MAX_ROUND_REQUESTS);
	TimestampTz round_start;
	MemoryContext round,
				old;
	Job		   *jobs;
	RoundRows	rr;
	PtClassifyResult *results;
	int			batch_size = Max(1, worker_int_setting("ptune.batch_size"));

	if (n_jobs == 0)
		return false;
	n_jobs = gather_more(slots, n_jobs);
	round_start = GetCurrentTimestamp();
	if (worker_model == NULL)
	{
		for (int j = 0; j < n_jobs; j++)
			worker_fail(slots[j], ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, "the ptune model is not loaded",
						ptune_shared->model_error, "Fix ptune.model_path, then SELECT pg_reload_conf().");
		return true;
	}

	round = AllocSetContextCreate(TopMemoryContext, "ptune classify round", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(round);
	jobs = palloc0(sizeof(Job) * n_jobs);
	rr.cap = 256;
	rr.n = 0;
	rr.rows = palloc(sizeof(PtClassifyRow) * rr.cap);

	for (int j = 0; j < n_jobs; j++)
	{
		int			rows_before = rr.n;

		jobs[j].slot = slots[j];
		PG_TRY();
		{
			jobs[j].failed = !parse_job(&jobs[j], &rr);
		}
		PG_CATCH();
		{
			worker_fail_caught(jobs[j].slot);
			MemoryContextSwitchTo(round);
			jobs[j].failed = true;
		}
		PG_END_TRY();
		if (jobs[j].failed || jobs[j].need_prompts)
			rr.n = rows_before;
		jobs[j].first_row = rows_before;
		jobs[j].n_rows = rr.n - rows_before;
	}

	/* one engine call per ptune.batch_size rows, whatever request they came from */
	results = palloc(sizeof(PtClassifyResult) * (rr.n + 1));
	for (int r = 0; r < rr.n; r++)
		results[r].probs = palloc(sizeof(float) * rr.rows[r].task->n_labels);
	for (int start = 0; start < rr.n; start += batch_size)
	{
		int			n = Min(batch_size, rr.n - start);

		CHECK_FOR_INTERRUPTS();
		if (!rows_still_wanted(jobs, n_jobs, start, start + n))
			continue;
		if (pt_classify(worker_model, &worker_workspace, rr.rows + start, n, results + start) != 0)
		{
			for (int j = 0; j < n_jobs; j++)
				if (!jobs[j].failed && !jobs[j].need_prompts)
				{
					worker_fail_engine(jobs[j].slot, "classification failed");
					jobs[j].failed = true;
				}
			break;
		}
		LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
		ptune_shared->forward_passes++;
		ptune_shared->rows_classified += n;
		LWLockRelease(&ptune_shared->lock);
	}

	for (int j = 0; j < n_jobs; j++)
		if (!jobs[j].failed)
			answer_job(&jobs[j], results);
	last_round_jobs = n_jobs;
	last_round_end = GetCurrentTimestamp();
	last_round_us = (long) (last_round_end - round_start);

	MemoryContextSwitchTo(old);
	MemoryContextDelete(round);
	return true;
}
