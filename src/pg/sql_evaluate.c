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
#include "table_scan.h"

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

/* The rows of a relation, each as (true label, predicted label): indices into names. */
typedef struct Predictions
{
	char	  **names;			/* the task's labels, then labels only the table has */
	int			n_names,
				cap_names;
	int		   *truth,
			   *pred;
	long		n_rows,
				cap_rows;
} Predictions;

static void
add_prediction(Predictions *out, int truth, int pred)
{
	if (out->n_rows == out->cap_rows)
	{
		out->cap_rows *= 2;
		out->truth = repalloc(out->truth, sizeof(int) * out->cap_rows);
		out->pred = repalloc(out->pred, sizeof(int) * out->cap_rows);
	}
	out->truth[out->n_rows] = truth;
	out->pred[out->n_rows] = pred;
	out->n_rows++;
}

/*
 * Scan: classifies every row of relation with a text and a label, a batch
 * of FETCH_ROWS rows per request to the worker.
 */
static void
classify_relation(TaskPrompts *tp, Oid relation, const char *text_column, const char *label_column,
				  Predictions *out)
{
	PtuneRowScan scan;
	int			n;
	MemoryContext fn_ctx = CurrentMemoryContext;	/* SPI_finish frees what SPI's context holds */
	MemoryContext batch_ctx = AllocSetContextCreate(CurrentMemoryContext, "ptune evaluate batch",
													ALLOCSET_DEFAULT_SIZES);

	out->n_names = tp->n_labels;
	out->cap_names = out->n_names + 16;
	out->names = palloc(sizeof(char *) * out->cap_names);
	for (int j = 0; j < out->n_names; j++)
		out->names[j] = tp->labels[j];
	out->n_rows = 0;
	out->cap_rows = 1024;
	out->truth = palloc(sizeof(int) * out->cap_rows);
	out->pred = palloc(sizeof(int) * out->cap_rows);

	ptune_scan_open(&scan, relation, text_column, label_column, FETCH_ROWS);
	while ((n = ptune_scan_fetch(&scan)) > 0)
	{
		MemoryContext old = MemoryContextSwitchTo(batch_ctx);
		text	  **texts = palloc(sizeof(text *) * n);
		int		   *truth = palloc(sizeof(int) * n),
				   *pred = palloc(sizeof(int) * n);
		int			kept = 0;

		for (int i = 0; i < n; i++)
		{
			Datum		t,
						l;

			if (!ptune_scan_row(&scan, i, &t, &l))
				continue;
			texts[kept] = DatumGetTextPP(t);
			MemoryContextSwitchTo(fn_ctx);
			truth[kept] = label_index(&out->names, &out->n_names, &out->cap_names, TextDatumGetCString(l));
			MemoryContextSwitchTo(batch_ctx);
			kept++;
		}
		ptune_classify_texts(tp, texts, kept, pred, NULL);
		MemoryContextSwitchTo(old);
		for (int i = 0; i < kept; i++)
			add_prediction(out, truth[i], pred[i]);
		MemoryContextReset(batch_ctx);
		CHECK_FOR_INTERRUPTS();
	}
	ptune_scan_close(&scan);
	MemoryContextDelete(batch_ctx);
	if (scan.skipped > 0)
		ereport(NOTICE, (errmsg("ptune: skipped %ld rows with a NULL text or label", scan.skipped)));
}

/* Report: {"true label": {"predicted label": rows, ...}, ...} */
static char *
confusion_json(const PtConfusion *conf, char **names, int n_names)
{
	StringInfoData json;

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
			appendStringInfo(&json, ": %ld", conf->counts[(size_t) t * n_names + p]);
		}
		appendStringInfoChar(&json, '}');
	}
	appendStringInfoChar(&json, '}');
	return json.data;
}

Datum
ptune_evaluate(PG_FUNCTION_ARGS)
{
	char	   *task = ptune_task_argument(fcinfo, 0);
	Oid			relid;
	TaskPrompts *tp;
	Predictions preds;
	PtConfusion conf;
	TupleDesc	desc;
	Datum		values[4];
	bool		nulls[4] = {false};

	for (int i = 1; i <= 3; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
							errmsg("relation and column names must not be NULL")));
	relid = PG_GETARG_OID(1);
	if (get_rel_name(relid) == NULL)
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE), errmsg("relation %u does not exist", relid)));
	tp = ptune_load_task(task, CurrentMemoryContext);
	ptune_require_classification(tp);
	tp->scoring = ptune_call_scoring(fcinfo, 4, tp->stored_scoring);

	classify_relation(tp, relid, NameStr(*PG_GETARG_NAME(2)), NameStr(*PG_GETARG_NAME(3)), &preds);

	/* score */
	if (pt_confusion_init(&conf, preds.n_names) != 0)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	for (long i = 0; i < preds.n_rows; i++)
		pt_confusion_add(&conf, preds.truth[i], preds.pred[i]);

	/* report */
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "evaluate must return a row");
	values[0] = Int64GetDatum(preds.n_rows);
	values[1] = Float8GetDatum(pt_accuracy(&conf));
	values[2] = Float8GetDatum(pt_macro_f1(&conf));
	values[3] = DirectFunctionCall1(jsonb_in, CStringGetDatum(confusion_json(&conf, preds.names, preds.n_names)));
	nulls[1] = nulls[2] = preds.n_rows == 0;
	pt_confusion_free(&conf);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
