/*
 * prompt_store.h - reading a task's prompts from ptune.prompts, and what a
 * session remembers about them while a query runs.
 */
#ifndef PTUNE_PROMPT_STORE_H
#define PTUNE_PROMPT_STORE_H

#include "postgres.h"

#include "lib/stringinfo.h"

/* Texts per request to the worker: bounds the shared memory one request takes. */
#define PTUNE_TEXTS_PER_REQUEST 1024

typedef struct TaskPrompts
{
	char	   *task;
	int			version;
	int			n_prompts;		/* several for an ensemble */
	bytea	  **blobs;
	uint8	  (*keys)[32];		/* SHA-256 of each blob: its name in the worker's cache */
	int			n_labels;
	char	  **labels;
	int			max_input_tokens;
	bool		generation;		/* a generation prompt (no labels): ptune.generate only */
	int			stored_scoring; /* the version's default (scoring.h) */
	int			scoring;		/* what the next request asks for */
	bool		blobs_sent;		/* the worker has received them in this query */
} TaskPrompts;

/*
 * The active version of a task, read with the caller's privileges; ERRORs
 * with a hint when the task does not exist or has no active version.
 */
TaskPrompts *ptune_load_task(const char *task, MemoryContext mcxt);

/* An ERROR (42809, with a hint) unless the task is a classification task. */
void		ptune_require_classification(const TaskPrompts *tp);

/* The task text argument, checked: not NULL, not empty. */
char	   *ptune_task_argument(FunctionCallInfo fcinfo, int argno);

/*
 * The texts of a text[] argument (not NULL): *n of them, NULL for a NULL
 * element; a multi-dimensional array is an ERROR (2202E) naming `function`.
 */
text	  **ptune_text_array_argument(FunctionCallInfo fcinfo, int argno, const char *function, int *n);

/* A text[] of n strings (the array forms' result); a NULL string gives a NULL element. */
Datum		ptune_text_array_result(char **strings, int n);

/*
 * Classifies n texts (NULL entries give label -1) with the task's prompts:
 * labels[i] is the index of the predicted label, probs[i * n_labels + j]
 * the probability of label j (probs may be NULL).
 */
void		ptune_classify_texts(TaskPrompts *tp, text **texts, int n, int *labels, float4 *probs);

/* Cuts a text to what the tokenizer can use of it (a UTF-8-safe prefix). */
int			ptune_clip_text(const char *data, int len, int max_input_tokens);

#endif
