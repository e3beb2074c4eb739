/*
 * worker_generate.c - serve text-generation requests (ptune.generate),
 * batched across sessions.
 *
 * A request names at most one prompt (none: the frozen model alone) by its
 * SHA-256, with the blob on the session's first request or when the worker
 * asks for it (GENERATE_NEED_PROMPT), like classification; the prompts live
 * in classification's cache (worker_cached_prompt) and each request copies
 * its prompt's values, so an eviction never pulls them from under it.
 *
 * Scheduling: requests stay open across rounds.  One call of
 * worker_serve_generate() runs one engine call (a bounded unit, so that
 * classification and trainings get their turns): the rows of the open
 * requests that share the oldest request's decoding options (max_new_tokens,
 * num_beams: options are per engine call), at most ptune.batch_size rows,
 * fewest rows left first.  Rows of different requests and prompts share the
 * batch.
 *
 * Cancellation: the engine asks between decoding steps whether to stop; it
 * stops when a request of the batch was abandoned (query cancel,
 * statement_timeout, ptune.request_timeout, the session's exit).  The
 * abandoned requests are then failed and the others computed again in the
 * next round (at most one engine call of work is lost).
 */
#include "postgres.h"

#include "libpq/pqformat.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "generate.h"
#include "wire.h"
#include "task.h"
#include "worker.h"

#define MAX_OPEN_GENERATIONS PTUNE_MAX_SLOTS

/* One open request: its rows, tokenized, and how far they are computed. */
typedef struct GenJob
{
	int			slot;
	MemoryContext mcxt;			/* everything below; deleted when answered */
	bool		need_prompt;
	PtGenerateOptions opts;
	float	   *prompt;			/* [prompt_len, d_model], a copy; NULL: no prompt */
	int			prompt_len;
	int			n_texts;
	int		   *row_of_text;	/* index into rows; -1 for NULL texts */
	PtGenerateRow *rows;
	char	  **outputs;		/* [n_rows] the generated texts */
	int			n_rows;
	int			done_rows;		/* rows[0 .. done_rows) are computed */
	uint64		request_id;
} GenJob;

static GenJob *open_jobs[MAX_OPEN_GENERATIONS];
static int	n_open = 0;

static void
drop_job(int j)
{
	MemoryContextDelete(open_jobs[j]->mcxt);
	open_jobs[j] = open_jobs[--n_open];
}

void
worker_generate_reset(const char *why)
{
	while (n_open > 0)
	{
		ptune_slot_fail(open_jobs[0]->slot, ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, why, NULL,
						"Run the query again.");
		drop_job(0);
	}
}

/*
 * Parses one request into job (in job->mcxt) and tokenizes its texts.
 * Returns false when the request was answered with an error here; protocol
 * violations raise an ERROR.
 */
static bool
parse_job(GenJob *job)
{
	StringInfoData msg;
	int			max_input_tokens;
	bool		has_prompt;

	ptune_slot_read(job->slot, &msg);
	pt_generate_options_default(&job->opts);
	ptune_wire_get_generate_head(&msg, &job->opts.max_new_tokens, &job->opts.num_beams,
								 &max_input_tokens, &has_prompt);
	/* the backend checked the bounds; the engine's message names the option otherwise */
	if (pt_generate_options_check(&job->opts) != 0)
	{
		worker_fail_engine(job->slot, "invalid generation options");
		return false;
	}
	if (has_prompt)
	{
		const char *blob;
		int			len;
		const uint8 *key = ptune_wire_get_generate_prompt(&msg, &blob, &len);
		const PtPrompt *p;
		bool		missing;

		p = worker_cached_prompt(key, blob, len, &missing);
		if (p == NULL && missing)
		{
			job->need_prompt = true;	/* the session sends the blob again */
			return true;
		}
		if (p == NULL)
		{
			worker_fail_engine(job->slot, pt_error_kind() == PT_ERR_MISMATCH ?
							   "the task's prompt does not fit the loaded model" : "invalid prompt");
			return false;
		}
		job->prompt_len = p->length;
		job->prompt = palloc(sizeof(float) * (size_t) p->length * p->d_model);
		memcpy(job->prompt, p->values, sizeof(float) * (size_t) p->length * p->d_model);
	}

	job->n_texts = ptune_wire_get_generate_text_count(&msg);
	job->row_of_text = palloc(sizeof(int) * (job->n_texts + 1));
	job->rows = palloc(sizeof(PtGenerateRow) * (job->n_texts + 1));
	job->outputs = palloc0(sizeof(char *) * (job->n_texts + 1));
	for (int i = 0; i < job->n_texts; i++)
	{
		int			len;
		const char *text = ptune_wire_get_generate_text(&msg, &len);
		int32_t    *ids;
		int			n;

		job->row_of_text[i] = -1;
		if (text == NULL)
			continue;
		ids = palloc(sizeof(int32_t) * max_input_tokens);
		n = pt_encode_input(worker_model, max_input_tokens, text, (size_t) len, ids);
		if (n < 0)
		{
			worker_fail_engine(job->slot, "could not tokenize the input");
			return false;
		}
		job->row_of_text[i] = job->n_rows;
		job->rows[job->n_rows++] = (PtGenerateRow) {job->prompt, job->prompt_len, ids, n};
	}
	pq_getmsgend(&msg);
	pfree(msg.data);
	return true;
}

static void
answer_job(const GenJob *job)
{
	StringInfoData out;

	initStringInfo(&out);
	ptune_wire_put_generate_answer_head(&out, job->need_prompt ? GENERATE_NEED_PROMPT : GENERATE_OK);
	if (!job->need_prompt)
		for (int i = 0; i < job->n_texts; i++)
		{
			int			r = job->row_of_text[i];

			ptune_wire_put_generate_answer_text(&out, r < 0 ? NULL : job->outputs[r]);
		}
	ptune_slot_answer(job->slot, &out);
}

/* Answers (or fails) job j inside PG_TRY and closes it. */
static void
finish_job(int j)
{
	GenJob	   *job = open_jobs[j];
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
static void
open_new_jobs(void)
{
	int			slots[MAX_OPEN_GENERATIONS];
	int			n = ptune_slot_take_pending(PTUNE_REQ_GENERATE, slots, MAX_OPEN_GENERATIONS - n_open);

	for (int i = 0; i < n; i++)
	{
		MemoryContext mcxt = AllocSetContextCreate(TopMemoryContext, "ptune generate request",
												   ALLOCSET_DEFAULT_SIZES);
		MemoryContext old = MemoryContextSwitchTo(mcxt);
		GenJob	   *job = palloc0(sizeof(GenJob));
		volatile bool ok = false;

		job->slot = slots[i];
		job->mcxt = mcxt;
		job->request_id = ptune_shared->slots[slots[i]].request_id;
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
}

/* Order of service: fewest rows left first, then the oldest. */
static int
compare_jobs(const void *a, const void *b)
{
	const GenJob *x = *(GenJob *const *) a;
	const GenJob *y = *(GenJob *const *) b;
	int			lx = x->n_rows - x->done_rows,
				ly = y->n_rows - y->done_rows;

	if (lx != ly)
		return lx < ly ? -1 : 1;
	return x->request_id < y->request_id ? -1 : 1;
}

/* The jobs of the running engine call, for the cancel check. */
typedef struct BatchJobs
{
	GenJob	  **jobs;
	int			n;
} BatchJobs;

/* Called by the engine between decoding steps: stop when a request of the batch was given up. */
static int
batch_abandoned(void *arg)
{
	BatchJobs  *b = arg;

	for (int j = 0; j < b->n; j++)
		if (ptune_slot_abandoned(b->jobs[j]->slot))
			return 1;
	return 0;
}

static void
fail_abandoned(void)
{
	for (int j = n_open - 1; j >= 0; j--)
		if (ptune_slot_abandoned(open_jobs[j]->slot))
		{
			ptune_slot_fail(open_jobs[j]->slot, ERRCODE_QUERY_CANCELED, "generation was cancelled", NULL, NULL);
			drop_job(j);
		}
}

/* An engine failure fails the requests of the batch (with the engine's error), not the others. */
static void
fail_batch(const BatchJobs *batch)
{
	for (int j = n_open - 1; j >= 0; j--)
		for (int b = 0; b < batch->n; b++)
			if (batch->jobs[b] == open_jobs[j])
			{
				worker_fail_engine(open_jobs[j]->slot, "generation failed");
				drop_job(j);
				break;
			}
}

/* One engine call over rows of the open jobs that share the first job's options. */
static void
run_one_batch(int batch_size)
{
	PtGenerateRow *rows = palloc(sizeof(PtGenerateRow) * batch_size);
	PtGenerateResult *results = palloc0(sizeof(PtGenerateResult) * batch_size);
	GenJob	  **from = palloc(sizeof(GenJob *) * batch_size);
	GenJob	  **jobs = palloc(sizeof(GenJob *) * n_open);
	BatchJobs	batch = {jobs, 0};
	PtGenerateOptions opts;
	int			n = 0;

	qsort(open_jobs, n_open, sizeof(GenJob *), compare_jobs);
	opts = open_jobs[0]->opts;
	opts.cancel = batch_abandoned;
	opts.cancel_arg = &batch;
	for (int j = 0; j < n_open && n < batch_size; j++)
	{
		GenJob	   *job = open_jobs[j];

		if (job->opts.max_new_tokens != opts.max_new_tokens || job->opts.num_beams != opts.num_beams)
			continue;
		jobs[batch.n++] = job;
		for (int r = job->done_rows; r < job->n_rows && n < batch_size; r++)
		{
			rows[n] = job->rows[r];
			results[n].ids = palloc(sizeof(int32_t) * opts.max_new_tokens);
			from[n++] = job;
		}
	}

	if (pt_generate(worker_model, &worker_workspace, rows, n, &opts, results) != 0)
	{
		if (pt_error_kind() == PT_ERR_CANCELLED)
		{
			/* the abandoned requests end; the others are computed again next round */
			fail_abandoned();
			return;
		}
		fail_batch(&batch);
		return;
	}
	for (int i = 0; i < n; i++)
	{
		GenJob	   *job = from[i];
		char	   *text = pt_generate_text(worker_model, results[i].ids, results[i].n_ids);

		if (text == NULL)
		{
			fail_batch(&batch);
			return;
		}
		job->outputs[job->done_rows++] = MemoryContextStrdup(job->mcxt, text);
		free(text);
	}
	LWLockAcquire(&ptune_shared->lock, LW_EXCLUSIVE);
	ptune_shared->forward_passes++;
	ptune_shared->rows_generated += n;
	LWLockRelease(&ptune_shared->lock);
}

bool
worker_serve_generate(void)
{
	MemoryContext batch_cxt,
				old;

	open_new_jobs();
	fail_abandoned();
	/* requests with nothing to compute (NULL texts only, or a prompt to resend) are answered now */
	for (int j = n_open - 1; j >= 0; j--)
		if (open_jobs[j]->need_prompt || open_jobs[j]->done_rows == open_jobs[j]->n_rows)
			finish_job(j);
	if (n_open == 0)
		return false;

	batch_cxt = AllocSetContextCreate(TopMemoryContext, "ptune generate batch", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(batch_cxt);
	PG_TRY();
	{
		run_one_batch(Max(1, worker_int_setting("ptune.batch_size")));
	}
	PG_FINALLY();
	{
		MemoryContextSwitchTo(old);
		MemoryContextDelete(batch_cxt);
	}
	PG_END_TRY();
	for (int j = n_open - 1; j >= 0; j--)
		if (open_jobs[j]->done_rows == open_jobs[j]->n_rows)
			finish_job(j);
	return true;
}
