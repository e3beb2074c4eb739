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

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "client.h"
#include "generate.h"			/* the bounds of the options: the engine's, one definition */
#include "metrics.h"
#include "prompt_store.h"
#include "wire.h"

PG_FUNCTION_INFO_V1(ptune_generate);
PG_FUNCTION_INFO_V1(ptune_generate_array);

/* arguments of ptune.generate; ARG_NUM_BEAMS follows ARG_MAX_NEW_TOKENS (read_options) */
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

/* texts cut to the token budget (NULL stays NULL) */
static void
build_request(StringInfo buf, TaskPrompts *tp, bool with_blob, text **texts, int n,
			  int max_new_tokens, int num_beams)
{
	/* the prompt's own budget; the frozen model's is the engine's (as the CLI's) */
	int			max_input_tokens = tp ? tp->max_input_tokens : PT_GENERATE_MAX_INPUT_TOKENS;
	const char **data = palloc(sizeof(char *) * (n + 1));
	int		   *lens = palloc(sizeof(int) * (n + 1));

	for (int i = 0; i < n; i++)
	{
		data[i] = texts[i] ? VARDATA_ANY(texts[i]) : NULL;
		/* a huge input is cut to what its token budget can use, as classify does */
		lens[i] = texts[i] ? ptune_clip_text(data[i], VARSIZE_ANY_EXHDR(texts[i]), max_input_tokens) : -1;
	}
	initStringInfo(buf);
	ptune_wire_put_generate(buf, max_new_tokens, num_beams, max_input_tokens,
							tp ? tp->keys[0] : NULL, tp && with_blob ? tp->blobs[0] : NULL, n, data, lens);
	pfree(data);
	pfree(lens);
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
		status = ptune_wire_get_generate_answer_head(&response);
		if (status == GENERATE_NEED_PROMPT)
		{
			if (attempt == 0)
				continue;		/* the worker restarted or evicted it: send the blob */
			elog(ERROR, "the ptune worker asked again for a prompt it was sent");
		}
		for (int i = 0; i < n; i++)
			outputs[i] = ptune_wire_get_generate_answer_text(&response);
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

/*
 * The decoding options of this call (arguments argno, argno + 1), checked
 * against the engine's bounds.
 */
static void
read_options(FunctionCallInfo fcinfo, int argno, int *max_new_tokens, int *num_beams)
{
	*max_new_tokens = bounded_int_arg(fcinfo, argno, "max_new_tokens", PT_GENERATE_MAX_NEW_TOKENS,
									  "max_new_tokens counts the generated tokens, EOS included.");
	*num_beams = bounded_int_arg(fcinfo, argno + 1, "num_beams", PT_GENERATE_MAX_BEAMS,
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

	read_options(fcinfo, ARG_MAX_NEW_TOKENS, &max_new_tokens, &num_beams);
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
	int			n;
	text	  **texts;
	char	  **outputs;

	read_options(fcinfo, ARG_MAX_NEW_TOKENS, &max_new_tokens, &num_beams);
	tp = task_for_call(fcinfo);
	if (PG_ARGISNULL(ARG_INPUT))
		PG_RETURN_NULL();
	texts = ptune_text_array_argument(fcinfo, ARG_INPUT, "ptune.generate", &n);
	outputs = palloc(sizeof(char *) * (n + 1));
	generate_texts(tp, texts, n, max_new_tokens, num_beams, outputs);	/* NULL for NULL texts */
	PG_RETURN_DATUM(ptune_text_array_result(outputs, n));
}

/*
 * ptune.evaluate_generation(task, relation, text_column, target_column,
 * max_new_tokens, num_beams): decodes every row's text and compares it with
 * its target.
 *   exact_match      the share of rows whose output equals the target exactly
 *                    (what training's validation measures)
 *   f1               the mean of SQuAD's token F1 (normalised: lower case, no
 *                    punctuation or articles; see metrics.h)
 *   invalid_outputs  for a classification task (the paper's evaluation by
 *                    free decoding): outputs that are none of the task's
 *                    labels; they count as wrong.  NULL for generation tasks
 *                    and the frozen model (task NULL).
 * Rows stream through a cursor with the caller's privileges; rows with a NULL
 * text or target are skipped (a NOTICE counts them).
 */
PG_FUNCTION_INFO_V1(ptune_evaluate_generation);

#define EVAL_FETCH_ROWS 512
/* arguments 0-3: task, relation, text_column, target_column; then the options */
#define EVAL_ARG_MAX_NEW_TOKENS 4

Datum
ptune_evaluate_generation(PG_FUNCTION_ARGS)
{
	int			max_new_tokens,
				num_beams;
	TaskPrompts *tp;
	Oid			relid;
	char	   *query;
	Portal		portal;
	long		n_rows = 0,
				exact = 0,
				invalid = 0,
				skipped = 0;
	double		f1_sum = 0.0;
	TupleDesc	desc;
	Datum		values[4];
	bool		nulls[4] = {false};
	MemoryContext batch_ctx;

	for (int i = 1; i <= 3; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
							errmsg("relation and column names must not be NULL")));
	read_options(fcinfo, EVAL_ARG_MAX_NEW_TOKENS, &max_new_tokens, &num_beams);
	relid = PG_GETARG_OID(1);
	if (get_rel_name(relid) == NULL)
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE), errmsg("relation %u does not exist", relid)));
	/* names come from the catalog and are quoted: no SQL is built from raw input */
	query = psprintf("SELECT (%s)::text, (%s)::text FROM %s",
					 quote_identifier(NameStr(*PG_GETARG_NAME(2))),
					 quote_identifier(NameStr(*PG_GETARG_NAME(3))),
					 quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												get_rel_name(relid)));
	tp = task_for_call(fcinfo);
	batch_ctx = AllocSetContextCreate(CurrentMemoryContext, "ptune evaluate batch", ALLOCSET_DEFAULT_SIZES);

	SPI_connect();
	portal = SPI_cursor_open_with_args(NULL, query, 0, NULL, NULL, NULL, true, 0);
	for (;;)
	{
		MemoryContext old;
		text	  **texts;
		char	  **targets,
				  **outputs;
		int			n = 0;

		SPI_cursor_fetch(portal, true, EVAL_FETCH_ROWS);
		if (SPI_processed == 0)
			break;
		old = MemoryContextSwitchTo(batch_ctx);
		texts = palloc(sizeof(text *) * SPI_processed);
		targets = palloc(sizeof(char *) * SPI_processed);
		outputs = palloc(sizeof(char *) * SPI_processed);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			bool		tnull,
						gnull;
			Datum		t = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &tnull);
			Datum		g = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &gnull);

			if (tnull || gnull)
			{
				skipped++;
				continue;
			}
			texts[n] = DatumGetTextPP(t);
			targets[n] = TextDatumGetCString(g);
			n++;
		}
		generate_texts(tp, texts, n, max_new_tokens, num_beams, outputs);
		for (int i = 0; i < n; i++)
		{
			double		f1 = pt_squad_f1(outputs[i], targets[i]);

			if (f1 < 0)
				ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
			f1_sum += f1;
			exact += strcmp(outputs[i], targets[i]) == 0;
			if (tp && !tp->generation)
			{
				bool		is_label = false;

				for (int j = 0; j < tp->n_labels && !is_label; j++)
					is_label = strcmp(outputs[i], tp->labels[j]) == 0;
				invalid += !is_label;
			}
			n_rows++;
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(batch_ctx);
		SPI_freetuptable(SPI_tuptable);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(portal);
	SPI_finish();
	if (skipped > 0)
		ereport(NOTICE, (errmsg("ptune: skipped %ld rows with a NULL text or target", skipped)));

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "evaluate_generation must return a row");
	values[0] = Int64GetDatum(n_rows);
	values[1] = Float8GetDatum(n_rows ? (double) exact / n_rows : 0.0);
	values[2] = Float8GetDatum(n_rows ? f1_sum / n_rows : 0.0);
	values[3] = Int64GetDatum(invalid);
	nulls[1] = nulls[2] = n_rows == 0;
	nulls[3] = tp == NULL || tp->generation;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
