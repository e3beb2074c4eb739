/*
 * request_job.h - the open requests of a handler that batches rows across
 * sessions (classification, generation), in ptune_worker.so only.
 *
 * A request stays open across rounds of the worker loop until its last row
 * is computed: it is taken from its slot and parsed once, its rows join the
 * engine's batches with other sessions' rows, and it is answered, or failed
 * (cancelled, engine error, model reset), as a whole.  This module holds
 * what every such handler does with its requests; a kind (RequestJobKind)
 * says only how a request is parsed into rows and how a result is written
 * back.  The handlers keep their own scheduling (which rows form a batch,
 * when a round ends) and their engine calls.
 *
 * Memory: each job has its own context (a child of TopMemoryContext),
 * holding the job and everything its kind allocates for it; it is deleted
 * when the request is answered or failed, so nothing outlives its request.
 */
#ifndef PTUNE_REQUEST_JOB_H
#define PTUNE_REQUEST_JOB_H

#include "postgres.h"

#include <stdint.h>

#include "lib/stringinfo.h"

#include "ipc.h"

/*
 * One open request.  A kind's own job struct has this as its first member,
 * so a RequestJob * is also a pointer to the kind's job.
 */
typedef struct RequestJobKind RequestJobKind;

typedef struct RequestJob
{
	const RequestJobKind *kind;
	int			slot;
	uint64		request_id;		/* the slot's use: the older request goes first on ties */
	MemoryContext mcxt;			/* the job and all its kind allocates for it */
	bool		need_prompts;	/* a prompt is not cached: the answer asks for the blobs, nothing else */
	int			n_texts;
	int		   *row_of_text;	/* [n_texts] index into the rows; -1 for a NULL text */
	int32_t   **ids;			/* [n_rows] each row's input tokens */
	int		   *n_ids;			/* [n_rows] */
	int			n_rows;
	int			done_rows;		/* rows [0, done_rows) are computed */
} RequestJob;

struct RequestJobKind
{
	PtuneRequestKind kind;
	const char *what;			/* "classification": in "... was cancelled", "... failed" */
	const char *context_name;	/* of each request's memory context: a string constant */
	Size		job_size;		/* sizeof the kind's job struct (zeroed when opened) */

	/*
	 * Parses the request in msg into job, in job->mcxt, reading its texts
	 * with request_job_read_texts().  Returns false when it answered the
	 * request with an error itself; a protocol violation raises an ERROR.
	 */
	bool		(*parse) (RequestJob *job, StringInfo msg);
	/* Writes the answer of a job that needs prompts or has all rows computed. */
	void		(*answer) (const RequestJob *job, StringInfo out);
	/* the message's text list (each kind has its own wire decoders) */
	int			(*get_text_count) (StringInfo msg);
	const char *(*get_text) (StringInfo msg, int *len);
};

/* A handler's open requests: in service order after request_jobs_sort(). */
typedef struct RequestJobs
{
	const RequestJobKind *kind;
	RequestJob *open[PTUNE_MAX_SLOTS];
	int			n_open;
} RequestJobs;

/*
 * Opens a job for each newly pending request of the kind; one that cannot
 * be parsed (or arrives while no model is loaded) is failed at once.
 * Returns how many requests were taken.
 */
int			request_jobs_open_new(RequestJobs *jobs);

/*
 * For parse(): reads the message's texts and tokenizes each to at most
 * max_input_tokens (job->row_of_text, ids, n_ids, n_rows).  False when a
 * text could not be tokenized (the request is then failed).
 */
bool		request_job_read_texts(RequestJob *job, StringInfo msg, int max_input_tokens);

/* Order of service: fewest rows left first, then the oldest request. */
void		request_jobs_sort(RequestJobs *jobs);

/* Answers (inside PG_TRY) and closes every job that needs prompts or has all rows computed. */
void		request_jobs_answer_finished(RequestJobs *jobs);

/* Fails and closes the jobs whose session gave up (cancel, timeout, exit): 57014. */
void		request_jobs_fail_abandoned(RequestJobs *jobs);

/*
 * An engine call failed: fails (with the engine's error) and closes the
 * open jobs that are among batch[0 .. n), not the others.
 */
void		request_jobs_fail_batch(RequestJobs *jobs, RequestJob *const *batch, int n);

/* Fails and closes every open job (the model is reset or the worker exits). */
void		request_jobs_fail_all(RequestJobs *jobs, const char *why);

#endif
