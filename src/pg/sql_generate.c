/*
 * sql_generate.c - ptune.generate() for one text or an array: decode text
 * with a task's soft prompt, or with the frozen model alone (task NULL).
 *
 * Who may generate with a task is who may classify with it (README,
 * "Security model"): ptune_load_task checks it with the caller's rights.  A
 * classification task works too: its prompt decodes freely (the paper's
 * evaluation); an ensemble does not (decoded texts cannot be voted on).
 *
 * A call per row of a query reads the task's prompt once: it is kept in the
 * function's fn_extra for the rest of the query.  The worker batches the
 * rows of all sessions (worker_generate.c) and stops decoding between steps
 * when the query is cancelled or times out.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "client.h"
#include "generate.h"			/* the bounds of the options: the engine's, one definition */
#include "guc.h"
#include "prompt_store.h"
#include "protocol.h"

PG_FUNCTION_INFO_V1(ptune_generate);
PG_FUNCTION_INFO_V1(ptune_generate_array);

enum
{
	ARG_TASK, ARG_INPUT, ARG_MAX_NEW_TOKENS, ARG_NUM_BEAMS
};

/* What a query's calls share (fn_extra): the task's prompt, loaded once. */
typedef struct GenerateCall
{
	char	   *task;			/* NULL: the frozen model */
	TaskPrompts *tp;
} GenerateCall;

static int
bounded_int_arg(FunctionCallInfo fcinfo, int argno, const char *name, int max, const char *hint)
{
	int			v;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", name)));
	v = PG_GETARG_INT32(argno);
	if (v < 1 || v > max)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s = %d is out of range [1, %d]", name, v, max),
				 errhint("%s", hint)));
	return v;
}

/* The task of this call (NULL: none), its prompt cached across the query's calls. */
static TaskPrompts *
task_for_call(FunctionCallInfo fcinfo)
{
	GenerateCall *gc = fcinfo->flinfo->fn_extra;
	char	   *task = PG_ARGISNULL(ARG_TASK) ? NULL : ptune_task_argument(fcinfo, ARG_TASK);

	if (gc == NULL)
	{
		gc = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(GenerateCall));
		fcinfo->flinfo->fn_extra = gc;
	}
	if (task == NULL)
		return NULL;
	if (gc->task == NULL || strcmp(gc->task, task) != 0)
	{
		gc->tp = ptune_load_task(task, fcinfo->flinfo->fn_mcxt);
		gc->task = MemoryContextStrdup(fcinfo->flinfo->fn_mcxt, task);
		if (gc->tp->n_prompts > 1)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("task \"%s\" is an ensemble of %d prompts; generation uses one prompt",
							task, gc->tp->n_prompts),
					 errhint("Train the task with ensemble_size => 1 to generate with it.")));
	}
	return gc->tp;
}

static void
build_request(StringInfo buf, TaskPrompts *tp, bool with_blob, text **texts, int n,
			  int max_new_tokens, int num_beams)
{
	int			max_input_tokens = tp ? tp->max_input_tokens : ptune_max_input_tokens;

	initStringInfo(buf);
	pq_sendint32(buf, max_new_tokens);
	pq_sendint32(buf, num_beams);
	pq_sendint32(buf, max_input_tokens);
	pq_sendint32(buf, tp != NULL);
	if (tp)
	{
		pq_sendbytes(buf, (const char *) tp->keys[0], PROMPT_KEY_BYTES);
		if (with_blob)
			pq_sendstring_len(buf, VARDATA_ANY(tp->blobs[0]), VARSIZE_ANY_EXHDR(tp->blobs[0]));
		else
			pq_sendint32(buf, 0);
	}
	pq_sendint32(buf, n);
	for (int i = 0; i < n; i++)
	{
		if (texts[i] == NULL)
			pq_sendint32(buf, -1);
		else
		{
			const char *data = VARDATA_ANY(texts[i]);

			/* a huge input is cut to what its token budget can use, as classify does */
			pq_sendstring_len(buf, data, ptune_clip_text(data, VARSIZE_ANY_EXHDR(texts[i]), max_input_tokens));
		}
	}
}

/* One request for up to PTUNE_TEXTS_PER_REQUEST texts; outputs[i] NULL for NULL texts. */
static void
generate_chunk(TaskPrompts *tp, text **texts, int n, int max_new_tokens, int num_beams, char **outputs)
{
	for (int attempt = 0;; attempt++)
	{
		StringInfoData request,
					response;
		int			status;

		build_request(&request, tp, tp && (!tp->blobs_sent || attempt > 0), texts, n,
					  max_new_tokens, num_beams);
		ptune_call(PTUNE_REQ_GENERATE, &request, &response, true, NULL, NULL);
		pfree(request.data);
		if (tp)
			tp->blobs_sent = true;
		status = pq_getmsgint(&response, 4);
		if (status == GENERATE_NEED_PROMPT && attempt == 0)
			continue;			/* the worker restarted or evicted it: send the blob */
		if (status != GENERATE_OK)
			elog(ERROR, "unexpected ptune generate status %d", status);
		for (int i = 0; i < n; i++)
		{
			int			len = pq_getmsgint(&response, 4);

			if (len < 0)
			{
				outputs[i] = NULL;
				continue;
			}
			if (len > (64 << 20))
				elog(ERROR, "invalid text length %d from the ptune worker", len);
			outputs[i] = palloc(len + 1);
			memcpy(outputs[i], pq_getmsgbytes(&response, len), len);
			outputs[i][len] = '\0';
		}
		pq_getmsgend(&response);
		pfree(response.data);
		return;
	}
}

static void
generate_texts(TaskPrompts *tp, text **texts, int n, int max_new_tokens, int num_beams, char **outputs)
{
	for (int start = 0; start < n; start += PTUNE_TEXTS_PER_REQUEST)
		generate_chunk(tp, texts + start, Min(PTUNE_TEXTS_PER_REQUEST, n - start), max_new_tokens,
					   num_beams, outputs + start);
}

/* The decoding options of this call, checked against the engine's bounds. */
static void
read_options(FunctionCallInfo fcinfo, int *max_new_tokens, int *num_beams)
{
	*max_new_tokens = bounded_int_arg(fcinfo, ARG_MAX_NEW_TOKENS, "max_new_tokens", PT_GENERATE_MAX_NEW_TOKENS,
									  "max_new_tokens counts the generated tokens, EOS included.");
	*num_beams = bounded_int_arg(fcinfo, ARG_NUM_BEAMS, "num_beams", PT_GENERATE_MAX_BEAMS,
								 "1 decodes greedily; more runs beam search.");
}

Datum
ptune_generate(PG_FUNCTION_ARGS)
{
	int			max_new_tokens,
				num_beams;
	TaskPrompts *tp;
	text	   *input;
	char	   *output;

	read_options(fcinfo, &max_new_tokens, &num_beams);
	tp = task_for_call(fcinfo);
	if (PG_ARGISNULL(ARG_INPUT))
		PG_RETURN_NULL();
	input = PG_GETARG_TEXT_PP(ARG_INPUT);
	generate_texts(tp, &input, 1, max_new_tokens, num_beams, &output);
	PG_RETURN_TEXT_P(cstring_to_text(output));
}

Datum
ptune_generate_array(PG_FUNCTION_ARGS)
{
	int			max_new_tokens,
				num_beams;
	TaskPrompts *tp;
	ArrayType  *inputs;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	text	  **texts;
	char	  **outputs;
	Datum	   *out;
	int			dims[1],
				lbs[1] = {1};

	read_options(fcinfo, &max_new_tokens, &num_beams);
	tp = task_for_call(fcinfo);
	if (PG_ARGISNULL(ARG_INPUT))
		PG_RETURN_NULL();
	inputs = PG_GETARG_ARRAYTYPE_P(ARG_INPUT);
	if (ARR_NDIM(inputs) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("ptune.generate takes a one-dimensional array of texts")));
	deconstruct_array(inputs, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	texts = palloc(sizeof(text *) * (n + 1));
	outputs = palloc(sizeof(char *) * (n + 1));
	out = palloc(sizeof(Datum) * (n + 1));
	for (int i = 0; i < n; i++)
		texts[i] = nulls[i] ? NULL : DatumGetTextPP(elems[i]);
	generate_texts(tp, texts, n, max_new_tokens, num_beams, outputs);
	for (int i = 0; i < n; i++)
		out[i] = nulls[i] ? (Datum) 0 : CStringGetTextDatum(outputs[i]);
	dims[0] = n;
	PG_RETURN_ARRAYTYPE_P(construct_md_array(out, nulls, n ? 1 : 0, dims, lbs, TEXTOID, -1, false,
											 TYPALIGN_INT));
}
