/*
 * request_job.c - the open requests of the batching handlers
 * (worker_classify.c, worker_generate.c); see request_job.h.
 *
 * Error rules, as everywhere in the worker: a request's own trouble is an
 * ERROR for its session only.  Parsing and answering run inside PG_TRY and
 * fail just that slot; a job is always closed (its context deleted) once
 * its slot is answered or failed.
 */
#include "postgres.h"

#include "libpq/pqformat.h"
#include "utils/memutils.h"

#include "task.h"
#include "worker.h"
#include "request_job.h"

/* Closes job j: deletes its memory and fills its place with the last job. */
static void
drop_job(RequestJobs *jobs, int j)
{
	MemoryContextDelete(jobs->open[j]->mcxt);
	jobs->open[j] = jobs->open[--jobs->n_open];
}

/* Answers (or fails) job j inside PG_TRY and closes it. */
static void
finish_job(RequestJobs *jobs, int j)
{
	RequestJob *job = jobs->open[j];
	MemoryContext old = MemoryContextSwitchTo(job->mcxt);

	PG_TRY();
	{
		StringInfoData out;

		initStringInfo(&out);
		job->kind->answer(job, &out);
		ptune_slot_answer(job->slot, &out);
	}
	PG_CATCH();
	{
		ptune_slot_fail_caught(job->slot);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	drop_job(jobs, j);
}

/* Reads the request of job's slot and has its kind parse it; false: the slot was failed. */
static bool
parse_job(RequestJob *job)
{
	volatile bool ok = false;

	if (worker_model == NULL)
	{
		ptune_slot_fail(job->slot, ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, "the ptune model is not loaded",
						ptune_shared->model_error, "Fix ptune.model_path, then SELECT pg_reload_conf().");
		return false;
	}
	PG_TRY();
	{
		StringInfoData msg;

		ptune_slot_read(job->slot, &msg);
		ok = job->kind->parse(job, &msg);
		pfree(msg.data);
	}
	PG_CATCH();
	{
		ptune_slot_fail_caught(job->slot);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

int
request_jobs_open_new(RequestJobs *jobs)
{
	const RequestJobKind *kind = jobs->kind;
	int			slots[PTUNE_MAX_SLOTS];
	int			n = ptune_slot_take_pending(kind->kind, slots, PTUNE_MAX_SLOTS - jobs->n_open);

	for (int i = 0; i < n; i++)
	{
		MemoryContext volatile mcxt = NULL;
		RequestJob *volatile job = NULL;
		MemoryContext old;
		bool		ok;

		/*
		 * The slots are already RUNNING: an ERROR here (out of memory) must
		 * fail this one, not leave it unanswered while the others go on.
		 */
		PG_TRY();
		{
			/*
			 * The macro AllocSetContextCreate accepts only a literal name (the
			 * context keeps the pointer); the kind's name is a string constant
			 * too.
			 */
			mcxt = AllocSetContextCreateInternal(TopMemoryContext, kind->context_name,
												 ALLOCSET_DEFAULT_SIZES);
			job = MemoryContextAllocZero(mcxt, kind->job_size);
		}
		PG_CATCH();
		{
			ptune_slot_fail_caught(slots[i]);
			if (mcxt != NULL)
				MemoryContextDelete(mcxt);
			job = NULL;
		}
		PG_END_TRY();
		if (job == NULL)
			continue;

		old = MemoryContextSwitchTo(mcxt);
		job->kind = kind;
		job->slot = slots[i];
		job->request_id = ptune_shared->slots[slots[i]].request_id;
		job->mcxt = mcxt;
		ok = parse_job(job);
		MemoryContextSwitchTo(old);
		if (ok)
			jobs->open[jobs->n_open++] = job;
		else
			MemoryContextDelete(mcxt);
	}
	return n;
}

bool
request_job_read_texts(RequestJob *job, StringInfo msg, int max_input_tokens)
{
	const RequestJobKind *kind = job->kind;

	job->n_texts = kind->get_text_count(msg);
	job->row_of_text = palloc(sizeof(int) * (job->n_texts + 1));
	job->ids = palloc(sizeof(int32_t *) * (job->n_texts + 1));
	job->n_ids = palloc(sizeof(int) * (job->n_texts + 1));
	for (int i = 0; i < job->n_texts; i++)
	{
		int			len;
		const char *text = kind->get_text(msg, &len);
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
		job->ids[job->n_rows] = ids;
		job->n_ids[job->n_rows++] = n;
	}
	pq_getmsgend(msg);			/* the texts end every request (wire.c): more is an ERROR */
	return true;
}

static int
compare_jobs(const void *a, const void *b)
{
	const RequestJob *x = *(RequestJob *const *) a;
	const RequestJob *y = *(RequestJob *const *) b;
	int			lx = x->n_rows - x->done_rows,
				ly = y->n_rows - y->done_rows;

	if (lx != ly)
		return lx < ly ? -1 : 1;
	if (x->request_id != y->request_id)
		return x->request_id < y->request_id ? -1 : 1;
	return 0;

}

void
request_jobs_sort(RequestJobs *jobs)
{
	qsort(jobs->open, jobs->n_open, sizeof(RequestJob *), compare_jobs);
}

void
request_jobs_answer_finished(RequestJobs *jobs)
{
	for (int j = jobs->n_open - 1; j >= 0; j--)
		if (jobs->open[j]->need_prompts || jobs->open[j]->done_rows == jobs->open[j]->n_rows)
			finish_job(jobs, j);
}

void
request_jobs_fail_abandoned(RequestJobs *jobs)
{
	char		message[PTUNE_ERROR_LEN];

	snprintf(message, sizeof(message), "%s was cancelled", jobs->kind->what);
	for (int j = jobs->n_open - 1; j >= 0; j--)
		if (ptune_slot_abandoned(jobs->open[j]->slot))
		{
			ptune_slot_fail(jobs->open[j]->slot, ERRCODE_QUERY_CANCELED, message, NULL, NULL);
			drop_job(jobs, j);
		}
}

void
request_jobs_fail_batch(RequestJobs *jobs, RequestJob *const *batch, int n)
{
	char		context[PTUNE_ERROR_LEN];

	snprintf(context, sizeof(context), "%s failed", jobs->kind->what);
	for (int j = jobs->n_open - 1; j >= 0; j--)
		for (int b = 0; b < n; b++)
			if (batch[b] == jobs->open[j])
			{
				worker_fail_engine(jobs->open[j]->slot, context);
				drop_job(jobs, j);
				break;
			}
}

void
request_jobs_fail_all(RequestJobs *jobs, const char *why)
{
	while (jobs->n_open > 0)
	{
		ptune_slot_fail(jobs->open[0]->slot, ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, why, NULL,
						"Run the query again.");
		drop_job(jobs, 0);
	}
}
