/*
 * sql_classify.c - ptune.classify() for one text or an array, and
 * ptune.classify_scores().
 *
 * A call per row of a query reads the task's prompts once: they are kept in
 * the function's fn_extra for the rest of the query.  The last argument,
 * scoring, may differ per call (see scoring.h for what decides it).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "prompt_store.h"
#include "scoring.h"

PG_FUNCTION_INFO_V1(ptune_classify);
PG_FUNCTION_INFO_V1(ptune_classify_array);
PG_FUNCTION_INFO_V1(ptune_classify_scores);

/* argument 2 of every function here */
#define ARG_SCORING 2

/*
 * The task's prompts, cached in fn_extra while the task argument stays the
 * same, set to this call's scoring.
 */
static TaskPrompts *
task_for_call(FunctionCallInfo fcinfo)
{
	char	   *task = ptune_task_argument(fcinfo, 0);
	TaskPrompts *tp = fcinfo->flinfo->fn_extra;

	if (tp == NULL || strcmp(tp->task, task) != 0)
	{
		tp = ptune_load_task(task, fcinfo->flinfo->fn_mcxt);
		ptune_require_classification(tp);
		fcinfo->flinfo->fn_extra = tp;
	}
	tp->scoring = ptune_call_scoring(fcinfo, ARG_SCORING, tp->stored_scoring);
	return tp;
}

Datum
ptune_classify(PG_FUNCTION_ARGS)
{
	TaskPrompts *tp = task_for_call(fcinfo);
	text	   *input;
	int			label;

	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();
	input = PG_GETARG_TEXT_PP(1);
	ptune_classify_texts(tp, &input, 1, &label, NULL);
	PG_RETURN_TEXT_P(cstring_to_text(tp->labels[label]));
}

Datum
ptune_classify_array(PG_FUNCTION_ARGS)
{
	TaskPrompts *tp = task_for_call(fcinfo);
	int			n;
	text	  **texts;
	int		   *labels;
	char	  **out;

	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();
	texts = ptune_text_array_argument(fcinfo, 1, "ptune.classify", &n);
	labels = palloc(sizeof(int) * (n + 1));
	out = palloc(sizeof(char *) * (n + 1));
	ptune_classify_texts(tp, texts, n, labels, NULL);
	for (int i = 0; i < n; i++)
		out[i] = texts[i] == NULL ? NULL : tp->labels[labels[i]];
	PG_RETURN_DATUM(ptune_text_array_result(out, n));
}

Datum
ptune_classify_scores(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TaskPrompts *tp = task_for_call(fcinfo);
	text	   *input;
	int			label;
	float4	   *probs;

	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(1))
		return (Datum) 0;
	input = PG_GETARG_TEXT_PP(1);
	probs = palloc(sizeof(float4) * tp->n_labels);
	ptune_classify_texts(tp, &input, 1, &label, probs);
	for (int j = 0; j < tp->n_labels; j++)
	{
		Datum		values[2] = {CStringGetTextDatum(tp->labels[j]), Float8GetDatum(probs[j])};
		bool		isnull[2] = {false, false};

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, isnull);
	}
	return (Datum) 0;
}
