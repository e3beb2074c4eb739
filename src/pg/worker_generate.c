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
 * Cancellation: the engine asks before each encoder layer, each decoder
 * layer's cross-attention keys and values, and each decoding step whether
 * to stop; it stops when a request of the batch was abandoned (query cancel,
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
#include "request_job.h"

/* One open request: its rows (request_job.h), their engine rows and outputs. */
typedef struct GenJob
{
	RequestJob	base;			/* first: the slot, tokenized texts, rows done */
	PtGenerateOptions opts;
	float	   *prompt;			/* [prompt_len, d_model], a copy; NULL: no prompt */
	int			prompt_len;
	PtGenerateRow *rows;		/* [base.n_rows] */
	char	  **outputs;		/* [base.n_rows] the generated texts */
} GenJob;

static bool parse_job(RequestJob *base, StringInfo msg);
static void answer_job(const RequestJob *base, StringInfo out);

static const RequestJobKind generate_kind = {
	PTUNE_REQ_GENERATE, "generation", "ptune generate request", sizeof(GenJob),
	parse_job, answer_job, ptune_wire_get_generate_text_count, ptune_wire_get_generate_text,
};
static RequestJobs jobs = {&generate_kind};

void
worker_generate_reset(const char *why)
{
	request_jobs_fail_all(&jobs, why);
}

/* The kind's parse(): options, the prompt from the cache (copied), then the texts (request_job.h). */
static bool
parse_job(RequestJob *base, StringInfo msg)
{
	GenJob	   *job = (GenJob *) base;
	int			max_input_tokens;
	bool		has_prompt;

	pt_generate_options_default(&job->opts);
	ptune_wire_get_generate_head(msg, &job->opts.max_new_tokens, &job->opts.num_beams,
								 &max_input_tokens, &has_prompt);
	/* the backend checked the bounds; the engine's message names the option otherwise */
	if (pt_generate_options_check(&job->opts) != 0)
	{
		worker_fail_engine(base->slot, "invalid generation options");
		return false;
	}
	if (has_prompt)
	{
		const char *blob;
		int			len;
		const uint8 *key = ptune_wire_get_generate_prompt(msg, &blob, &len);
		const PtPrompt *p;
		bool		missing;

		p = worker_cached_prompt(key, blob, len, &missing);
		if (p == NULL && missing)
		{
			base->need_prompts = true;	/* the session sends the blob again */
			return true;
		}
		if (p == NULL)
		{
			worker_fail_engine(base->slot, pt_error_kind() == PT_ERR_MISMATCH ?
							   "the task's prompt does not fit the loaded model" : "invalid prompt");
			return false;
		}
		job->prompt_len = p->length;
		job->prompt = palloc(sizeof(float) * (size_t) p->length * p->d_model);
		memcpy(job->prompt, p->values, sizeof(float) * (size_t) p->length * p->d_model);
	}

	if (!request_job_read_texts(base, msg, max_input_tokens))
		return false;
	job->rows = palloc(sizeof(PtGenerateRow) * (base->n_rows + 1));
	job->outputs = palloc0(sizeof(char *) * (base->n_rows + 1));
	for (int r = 0; r < base->n_rows; r++)
		job->rows[r] = (PtGenerateRow) {job->prompt, job->prompt_len, base->ids[r], base->n_ids[r]};
	return true;
}

/* The kind's answer(): the generated text per input text, or "send the prompt". */
static void
answer_job(const RequestJob *base, StringInfo out)
{
	const GenJob *job = (const GenJob *) base;

	ptune_wire_put_generate_answer_head(out, base->need_prompts ? GENERATE_NEED_PROMPT : GENERATE_OK);
	if (!base->need_prompts)
		for (int i = 0; i < base->n_texts; i++)
		{
			int			r = base->row_of_text[i];

			ptune_wire_put_generate_answer_text(out, r < 0 ? NULL : job->outputs[r]);
		}
}

/* The jobs of the running engine call, for the cancel check. */
typedef struct BatchJobs
{
	RequestJob **jobs;
	int			n;
} BatchJobs;

/* Called by the engine between layers and decoding steps: stop when a request of the batch was given up. */
static int
batch_abandoned(void *arg)
{
	BatchJobs  *b = arg;

	for (int j = 0; j < b->n; j++)
		if (ptune_slot_abandoned(b->jobs[j]->slot))
			return 1;
	return 0;
}

/* One engine call over rows of the open jobs that share the first job's options. */
static void
run_one_batch(int batch_size)
{
	PtGenerateRow *rows = palloc(sizeof(PtGenerateRow) * batch_size);
	PtGenerateResult *results = palloc0(sizeof(PtGenerateResult) * batch_size);
	GenJob	  **from = palloc(sizeof(GenJob *) * batch_size);
	RequestJob **batch_jobs = palloc(sizeof(RequestJob *) * jobs.n_open);
	BatchJobs	batch = {batch_jobs, 0};
	PtGenerateOptions opts;
	int			n = 0;

	request_jobs_sort(&jobs);
	opts = ((GenJob *) jobs.open[0])->opts;
	opts.cancel = batch_abandoned;
	opts.cancel_arg = &batch;
	for (int j = 0; j < jobs.n_open && n < batch_size; j++)
	{
		GenJob	   *job = (GenJob *) jobs.open[j];

		if (job->opts.max_new_tokens != opts.max_new_tokens || job->opts.num_beams != opts.num_beams)
			continue;
		batch_jobs[batch.n++] = &job->base;
		for (int r = job->base.done_rows; r < job->base.n_rows && n < batch_size; r++)
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
			request_jobs_fail_abandoned(&jobs);
			return;
		}
		request_jobs_fail_batch(&jobs, batch.jobs, batch.n);
		return;
	}
	for (int i = 0; i < n; i++)
	{
		GenJob	   *job = from[i];
		char	   *text = pt_generate_text(worker_model, results[i].ids, results[i].n_ids);

		if (text == NULL)
		{
			request_jobs_fail_batch(&jobs, batch.jobs, batch.n);
			return;
		}
		job->outputs[job->base.done_rows++] = MemoryContextStrdup(job->base.mcxt, text);
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

	request_jobs_open_new(&jobs);
	request_jobs_fail_abandoned(&jobs);
	/* requests with nothing to compute (NULL texts only, or a prompt to resend) are answered now */
	request_jobs_answer_finished(&jobs);
	if (jobs.n_open == 0)
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
	request_jobs_answer_finished(&jobs);
	return true;
}
