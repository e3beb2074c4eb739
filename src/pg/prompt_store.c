/*
 * prompt_store.c - load a task's active prompts with SPI and classify texts
 * with them through the worker.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "client.h"
#include "prompt.h"
#include "prompt_store.h"
#include "wire.h"
#include "scoring.h"
#include "tasks.h"

/* A token covers at most 16 characters of 4 bytes: more text than this is never read. */
#define BYTES_PER_TOKEN 64

char *
ptune_task_argument(FunctionCallInfo fcinfo, int argno)
{
	char	   *task;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("task name must not be NULL")));
	task = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (task[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("task name must not be empty")));
	return task;
}

text	  **
ptune_text_array_argument(FunctionCallInfo fcinfo, int argno, const char *function, int *n)
{
	ArrayType  *inputs = PG_GETARG_ARRAYTYPE_P(argno);
	Datum	   *elems;
	bool	   *nulls;
	text	  **texts;

	if (ARR_NDIM(inputs) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s takes a one-dimensional array of texts", function)));
	deconstruct_array(inputs, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, n);
	texts = palloc(sizeof(text *) * (*n + 1));
	for (int i = 0; i < *n; i++)
		texts[i] = nulls[i] ? NULL : DatumGetTextPP(elems[i]);
	return texts;
}

Datum
ptune_text_array_result(char **strings, int n)
{
	Datum	   *out = palloc(sizeof(Datum) * (n + 1));
	bool	   *nulls = palloc(sizeof(bool) * (n + 1));
	int			dims[1] = {n},
				lbs[1] = {1};

	for (int i = 0; i < n; i++)
	{
		nulls[i] = strings[i] == NULL;
		out[i] = nulls[i] ? (Datum) 0 : CStringGetTextDatum(strings[i]);
	}
	return PointerGetDatum(construct_md_array(out, nulls, n ? 1 : 0, dims, lbs, TEXTOID, -1, false,
											  TYPALIGN_INT));
}

int
ptune_clip_text(const char *data, int len, int max_input_tokens)
{
	int			limit = (max_input_tokens + 1) * BYTES_PER_TOKEN;

	if (len <= limit)
		return len;
	return pg_mbcliplen(data, len, limit);
}

/*
 * The max input tokens of a prompt blob; an invalid blob gets the largest
 * (the worker's decoder rejects it anyway).
 */
static int
blob_max_input_tokens(bytea *blob)
{
	int			v = pt_prompt_peek_max_input_tokens((const uint8_t *) VARDATA_ANY(blob), VARSIZE_ANY_EXHDR(blob));

	return v > 0 ? v : PT_MAX_INPUT_TOKENS;
}

/*
 * The number of labels of a prompt blob (see src/engine/prompt.h): 0 marks a
 * generation prompt.  -1 when the blob is too short to say (the worker then
 * rejects it).
 */
static int
blob_n_labels(bytea *blob)
{
	const unsigned char *p = (const unsigned char *) VARDATA_ANY(blob);

	if (VARSIZE_ANY_EXHDR(blob) < 52)
		return -1;
	return (int) (p[48] | p[49] << 8 | p[50] << 16 | (uint32) p[51] << 24);
}

void
ptune_require_classification(const TaskPrompts *tp)
{
	if (tp->generation)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("task \"%s\" was trained for generation, not classification", tp->task),
				 errhint("Use ptune.generate('%s', input), and ptune.evaluate_generation() to measure it.",
						 tp->task)));
}

TaskPrompts *
ptune_load_task(const char *task, MemoryContext mcxt)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(task)};
	TaskPrompts *tp;
	PtuneAsOwner as;
	int			rc;

	/* the caller's rights decide; the rows are then read as the tables' owner */
	(void) ptune_check_see(task, "Using");

	ptune_as_owner_begin(&as);
	SPI_connect();
	rc = SPI_execute_with_args("SELECT version, labels, prompt, hyperparameters->>'scoring' FROM ptune.prompts "
							   "WHERE task = $1 AND is_active ORDER BY member",
							   1, argtypes, args, NULL, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "reading ptune.prompts failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("task \"%s\" has no active version", task),
				 errhint("Activate one with SELECT ptune.activate('%s', version).", task)));

	tp = MemoryContextAllocZero(mcxt, sizeof(TaskPrompts));
	tp->task = MemoryContextStrdup(mcxt, task);
	tp->n_prompts = (int) SPI_processed;
	tp->blobs = MemoryContextAlloc(mcxt, sizeof(bytea *) * tp->n_prompts);
	tp->keys = MemoryContextAlloc(mcxt, sizeof(tp->keys[0]) * tp->n_prompts);
	for (int k = 0; k < tp->n_prompts; k++)
	{
		HeapTuple	row = SPI_tuptable->vals[k];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;
		MemoryContext old;

		tp->version = DatumGetInt32(SPI_getbinval(row, desc, 1, &isnull));
		d = SPI_getbinval(row, desc, 3, &isnull);
		if (isnull)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("task \"%s\" version %d has a NULL prompt", task, tp->version)));
		old = MemoryContextSwitchTo(mcxt);
		tp->blobs[k] = DatumGetByteaPCopy(d);
		if (k == 0)
		{
			ArrayType  *labels = DatumGetArrayTypeP(SPI_getbinval(row, desc, 2, &isnull));
			Datum	   *elems;
			bool	   *nulls;

			deconstruct_array(labels, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &tp->n_labels);
			tp->labels = palloc(sizeof(char *) * tp->n_labels);
			for (int j = 0; j < tp->n_labels; j++)
				tp->labels[j] = nulls[j] ? pstrdup("") : TextDatumGetCString(elems[j]);
			tp->max_input_tokens = blob_max_input_tokens(tp->blobs[k]);
			tp->generation = blob_n_labels(tp->blobs[k]) == 0;
			d = SPI_getbinval(row, desc, 4, &isnull);
			tp->stored_scoring = isnull ? PTUNE_SCORING_DEFAULT : ptune_scoring_from_name(TextDatumGetCString(d));
			tp->scoring = tp->stored_scoring;
		}
		MemoryContextSwitchTo(old);
		ptune_prompt_key(VARDATA_ANY(tp->blobs[k]), VARSIZE_ANY_EXHDR(tp->blobs[k]), tp->keys[k]);
	}
	SPI_finish();
	ptune_as_owner_end(&as);
	return tp;
}

/* texts cut to the task's token budget (NULL stays NULL) */
static void
build_request(StringInfo buf, TaskPrompts *tp, bool with_blobs, text **texts, int n)
{
	const char **data = palloc(sizeof(char *) * (n + 1));
	int		   *lens = palloc(sizeof(int) * (n + 1));

	for (int i = 0; i < n; i++)
	{
		data[i] = texts[i] ? VARDATA_ANY(texts[i]) : NULL;
		lens[i] = texts[i] ? ptune_clip_text(data[i], VARSIZE_ANY_EXHDR(texts[i]), tp->max_input_tokens) : -1;
	}
	initStringInfo(buf);
	ptune_wire_put_classify(buf, tp->scoring, tp->n_prompts, (const uint8 (*)[PROMPT_KEY_BYTES]) tp->keys,
							with_blobs ? tp->blobs : NULL, n, data, lens);
	pfree(data);
	pfree(lens);
}

/* One request for up to TEXTS_PER_REQUEST texts. */
static void
classify_chunk(TaskPrompts *tp, text **texts, int n, int *labels, float4 *probs)
{
	for (int attempt = 0;; attempt++)
	{
		StringInfoData request,
					response;
		int			status,
					n_labels;

		build_request(&request, tp, !tp->blobs_sent || attempt > 0, texts, n);
		ptune_call(PTUNE_REQ_CLASSIFY, &request, &response, true, NULL, NULL);
		pfree(request.data);
		tp->blobs_sent = true;
		status = ptune_wire_get_classify_answer_head(&response, &n_labels);
		if (status == CLASSIFY_NEED_PROMPTS && attempt == 0)
			continue;			/* the worker restarted or evicted them: send the blobs */
		if (status != CLASSIFY_OK)
			elog(ERROR, "unexpected ptune classify status %d", status);
		if (n_labels != tp->n_labels)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("task \"%s\" lists %d labels but its prompt has %d", tp->task,
							tp->n_labels, n_labels)));
		for (int i = 0; i < n; i++)
			labels[i] = ptune_wire_get_classify_answer_row(&response, n_labels,
														   probs ? probs + (size_t) i * n_labels : NULL);
		pfree(response.data);
		return;
	}
}

void
ptune_classify_texts(TaskPrompts *tp, text **texts, int n, int *labels, float4 *probs)
{
	for (int start = 0; start < n; start += PTUNE_TEXTS_PER_REQUEST)
		classify_chunk(tp, texts + start, Min(PTUNE_TEXTS_PER_REQUEST, n - start), labels + start,
					   probs ? probs + (size_t) start * tp->n_labels : NULL);
}
