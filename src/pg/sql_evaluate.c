/*
 * sql_evaluate.c - ptune.evaluate(): accuracy, macro-F1 and confusion of a
 * task on any table, read with the caller's privileges.  Rows stream through
 * a cursor and go to the worker in batches, so large tables are fine.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "metrics.h"
#include "prompt_store.h"
#include "scoring.h"

PG_FUNCTION_INFO_V1(ptune_evaluate);

#define FETCH_ROWS 512

/* Index of a label name, appended to names when new (labels the task does not know). */
static int
label_index(char ***names, int *n, int *cap, const char *label)
{
	for (int j = 0; j < *n; j++)
		if (strcmp((*names)[j], label) == 0)
			return j;
	if (*n == *cap)
	{
		*cap *= 2;
		*names = repalloc(*names, sizeof(char *) * *cap);
	}
	(*names)[*n] = pstrdup(label);
	return (*n)++;
}

Datum
ptune_evaluate(PG_FUNCTION_ARGS)
{
	char	   *task = ptune_task_argument(fcinfo, 0);
	Oid			relid;
	char	   *query;
	TaskPrompts *tp;
	Portal		portal;
	char	  **names;
	int			n_names,
				cap;
	int		   *truth_list = NULL,
			   *pred_list = NULL;
	long		n_rows = 0,
				list_cap = 1024,
				skipped = 0;
	PtConfusion conf;
	StringInfoData json;
	TupleDesc	desc;
	Datum		values[4];
	bool		nulls[4] = {false};
	MemoryContext batch_ctx,
				fn_ctx = CurrentMemoryContext;	/* SPI_finish frees what SPI's context holds */

	for (int i = 1; i <= 3; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
							errmsg("relation and column names must not be NULL")));
	relid = PG_GETARG_OID(1);
	if (get_rel_name(relid) == NULL)
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE), errmsg("relation %u does not exist", relid)));
	/* names come from the catalog and are quoted: no SQL is built from raw input */
	query = psprintf("SELECT (%s)::text, (%s)::text FROM %s",
					 quote_identifier(NameStr(*PG_GETARG_NAME(2))),
					 quote_identifier(NameStr(*PG_GETARG_NAME(3))),
					 quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												get_rel_name(relid)));
	tp = ptune_load_task(task, CurrentMemoryContext);
	ptune_require_classification(tp);
	tp->scoring = ptune_call_scoring(fcinfo, 4, tp->stored_scoring);

	n_names = tp->n_labels;
	cap = n_names + 16;
	names = palloc(sizeof(char *) * cap);
	for (int j = 0; j < n_names; j++)
		names[j] = tp->labels[j];
	truth_list = palloc(sizeof(int) * list_cap);
	pred_list = palloc(sizeof(int) * list_cap);
	batch_ctx = AllocSetContextCreate(CurrentMemoryContext, "ptune evaluate batch", ALLOCSET_DEFAULT_SIZES);

	SPI_connect();
	portal = SPI_cursor_open_with_args(NULL, query, 0, NULL, NULL, NULL, true, 0);
	for (;;)
	{
		MemoryContext old;
		text	  **texts;
		int		   *truth,
				   *pred;
		int			n = 0;

		SPI_cursor_fetch(portal, true, FETCH_ROWS);
		if (SPI_processed == 0)
			break;
		old = MemoryContextSwitchTo(batch_ctx);
		texts = palloc(sizeof(text *) * SPI_processed);
		truth = palloc(sizeof(int) * SPI_processed);
		pred = palloc(sizeof(int) * SPI_processed);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			bool		tnull,
						lnull;
			Datum		t = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &tnull);
			Datum		l = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &lnull);

			if (tnull || lnull)
			{
				skipped++;
				continue;
			}
			texts[n] = DatumGetTextPP(t);
			MemoryContextSwitchTo(fn_ctx);
			truth[n] = label_index(&names, &n_names, &cap, TextDatumGetCString(l));
			MemoryContextSwitchTo(batch_ctx);
			n++;
		}
		ptune_classify_texts(tp, texts, n, pred, NULL);
		MemoryContextSwitchTo(old);
		for (int i = 0; i < n; i++)
		{
			if (n_rows == list_cap)
			{
				list_cap *= 2;
				truth_list = repalloc(truth_list, sizeof(int) * list_cap);
				pred_list = repalloc(pred_list, sizeof(int) * list_cap);
			}
			truth_list[n_rows] = truth[i];
			pred_list[n_rows] = pred[i];
			n_rows++;
		}
		MemoryContextReset(batch_ctx);
		SPI_freetuptable(SPI_tuptable);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(portal);
	SPI_finish();
	if (skipped > 0)
		ereport(NOTICE, (errmsg("ptune: skipped %ld rows with a NULL text or label", skipped)));

	if (pt_confusion_init(&conf, n_names) != 0)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	for (long i = 0; i < n_rows; i++)
		pt_confusion_add(&conf, truth_list[i], pred_list[i]);

	/* confusion: {"true label": {"predicted label": rows, ...}, ...} */
	initStringInfo(&json);
	appendStringInfoChar(&json, '{');
	for (int t = 0; t < n_names; t++)
	{
		appendStringInfoString(&json, t ? ", " : "");
		escape_json(&json, names[t]);
		appendStringInfoString(&json, ": {");
		for (int p = 0; p < n_names; p++)
		{
			appendStringInfoString(&json, p ? ", " : "");
			escape_json(&json, names[p]);
			appendStringInfo(&json, ": %ld", conf.counts[(size_t) t * n_names + p]);
		}
		appendStringInfoChar(&json, '}');
	}
	appendStringInfoChar(&json, '}');

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "evaluate must return a row");
	values[0] = Int64GetDatum(n_rows);
	values[1] = Float8GetDatum(pt_accuracy(&conf));
	values[2] = Float8GetDatum(pt_macro_f1(&conf));
	values[3] = DirectFunctionCall1(jsonb_in, CStringGetDatum(json.data));
	nulls[1] = nulls[2] = n_rows == 0;
	pt_confusion_free(&conf);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
