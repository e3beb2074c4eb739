/*
 * sql_train.c - ptune.train_prompt(): read a labelled table with the
 * caller's privileges, let the worker train, store the prompt(s) as a new
 * version of the task.
 *
 * Training runs in the worker while this backend waits; progress appears as
 * NOTICEs here and in the view ptune.training_progress.  Query cancel or
 * statement_timeout stops the worker at its next step; the transaction then
 * aborts, so nothing is stored.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/relation.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "client.h"
#include "guc.h"
#include "task.h"				/* PtObjectiveKind, PT_MAX_TARGET_TOKENS: one definition, the engine's */
#include "prompt_store.h"
#include "wire.h"
#include "scoring.h"
#include "table_scan.h"
#include "tasks.h"

PG_FUNCTION_INFO_V1(ptune_train_prompt);

/* Arguments, in the order of the SQL signature. */
enum
{
	ARG_TASK, ARG_RELATION, ARG_TEXT_COLUMN, ARG_LABEL_COLUMN, ARG_PROMPT_LENGTH, ARG_INIT,
	ARG_OPTIMIZER, ARG_LEARNING_RATE, ARG_BATCH_SIZE, ARG_EPOCHS, ARG_MAX_STEPS,
	ARG_VALIDATION_FRACTION, ARG_ENSEMBLE_SIZE, ARG_MAX_INPUT_TOKENS, ARG_SEED, ARG_TEST_RELATION,
	ARG_SCORING, ARG_WEIGHT_DECAY, ARG_MAX_GRAD_NORM, ARG_MIN_DIM_SIZE_TO_FACTOR,
	ARG_ADAFACTOR_START_STEP, ARG_OBJECTIVE
};

typedef struct TrainArgs
{
	char	   *task;
	Oid			relation;
	char	   *text_column;
	char	   *label_column;
	int			prompt_length;
	char	   *init;
	char	   *optimizer;
	double		learning_rate;
	int			batch_size;
	int			epochs;
	int64		max_steps;
	double		validation_fraction;
	int			ensemble_size;
	int			max_input_tokens;
	int64		seed;
	Oid			test_relation;	/* held-out rows, or InvalidOid */
	int			scoring;		/* validation's, stored as the version's default */
	double		weight_decay;	/* -1: the optimizer's default */
	double		max_grad_norm;	/* -1: the optimizer's default */
	int			min_dim_size_to_factor;
	int			adafactor_start_step;
	/*
	 * classification: label_column holds class labels; generation: it holds
	 * each row's target text (any text, cut to PT_MAX_TARGET_TOKENS tokens)
	 */
	PtObjectiveKind objective;
} TrainArgs;

static void
require_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", name)));
}

static void
check_range(const char *name, double value, double min, double max, const char *hint)
{
	if (!(value >= min && value <= max))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s = %.15g is out of range [%.15g, %.15g]", name, value, min, max),
				 hint ? errhint("%s", hint) : 0));
}

static void
read_args(FunctionCallInfo fcinfo, TrainArgs *a)
{
	static const char *names[] = {"task", "relation", "text_column", "label_column", "prompt_length",
		"init", "optimizer", "learning_rate", "batch_size", "epochs", NULL, "validation_fraction",
	"ensemble_size", "max_input_tokens", "seed", NULL, "scoring", NULL, NULL,
	"min_dim_size_to_factor", "adafactor_start_step", "objective"};
	char	   *objective;

	a->task = ptune_task_argument(fcinfo, ARG_TASK);
	if (strlen(a->task) > PT_MAX_TASK_NAME_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("task name is longer than %d bytes", PT_MAX_TASK_NAME_BYTES)));
	for (int i = ARG_RELATION; i <= ARG_OBJECTIVE; i++)
		if (names[i])
			require_arg(fcinfo, i, names[i]);
	a->relation = PG_GETARG_OID(ARG_RELATION);
	a->text_column = pstrdup(NameStr(*PG_GETARG_NAME(ARG_TEXT_COLUMN)));
	a->label_column = pstrdup(NameStr(*PG_GETARG_NAME(ARG_LABEL_COLUMN)));
	a->prompt_length = PG_GETARG_INT32(ARG_PROMPT_LENGTH);
	a->init = text_to_cstring(PG_GETARG_TEXT_PP(ARG_INIT));
	a->optimizer = text_to_cstring(PG_GETARG_TEXT_PP(ARG_OPTIMIZER));
	a->learning_rate = PG_GETARG_FLOAT8(ARG_LEARNING_RATE);
	a->batch_size = PG_GETARG_INT32(ARG_BATCH_SIZE);
	a->epochs = PG_GETARG_INT32(ARG_EPOCHS);
	a->max_steps = PG_ARGISNULL(ARG_MAX_STEPS) ? 0 : PG_GETARG_INT32(ARG_MAX_STEPS);
	a->validation_fraction = PG_GETARG_FLOAT8(ARG_VALIDATION_FRACTION);
	a->ensemble_size = PG_GETARG_INT32(ARG_ENSEMBLE_SIZE);
	a->max_input_tokens = PG_GETARG_INT32(ARG_MAX_INPUT_TOKENS);
	a->seed = PG_GETARG_INT32(ARG_SEED);
	a->test_relation = PG_ARGISNULL(ARG_TEST_RELATION) ? InvalidOid : PG_GETARG_OID(ARG_TEST_RELATION);
	a->scoring = ptune_scoring_from_name(text_to_cstring(PG_GETARG_TEXT_PP(ARG_SCORING)));
	a->weight_decay = PG_ARGISNULL(ARG_WEIGHT_DECAY) ? -1.0 : PG_GETARG_FLOAT8(ARG_WEIGHT_DECAY);
	a->max_grad_norm = PG_ARGISNULL(ARG_MAX_GRAD_NORM) ? -1.0 : PG_GETARG_FLOAT8(ARG_MAX_GRAD_NORM);
	a->min_dim_size_to_factor = PG_GETARG_INT32(ARG_MIN_DIM_SIZE_TO_FACTOR);
	a->adafactor_start_step = PG_GETARG_INT32(ARG_ADAFACTOR_START_STEP);
	objective = text_to_cstring(PG_GETARG_TEXT_PP(ARG_OBJECTIVE));
	if (strcmp(objective, "classification") == 0)
		a->objective = PT_OBJECTIVE_CLASSIFICATION;
	else if (strcmp(objective, "generation") == 0)
		a->objective = PT_OBJECTIVE_GENERATION;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown objective \"%s\"", objective),
				 errhint("Use classification (label_column holds class labels) or generation "
						 "(label_column holds each row's target text).")));
	if (a->objective == PT_OBJECTIVE_GENERATION && a->ensemble_size != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("objective generation trains a single prompt (ensemble_size %d)", a->ensemble_size),
				 errhint("Leave ensemble_size at 1: decoded texts cannot be voted on.")));

	check_range("prompt_length", a->prompt_length, 1, PT_PROMPT_MAX_LENGTH, "The paper uses 1 to 150, typically 20 to 100.");
	check_range("learning_rate", a->learning_rate, 1e-9, PT_MAX_LEARNING_RATE, NULL);
	check_range("batch_size", a->batch_size, 1, PT_MAX_BATCH_SIZE, NULL);
	check_range("epochs", a->epochs, 0, PT_MAX_EPOCHS, "Use epochs => 0 to train for max_steps only.");
	check_range("max_steps", (double) a->max_steps, 0, PT_MAX_STEPS, NULL);
	check_range("validation_fraction", a->validation_fraction, 0, PT_MAX_VALIDATION_FRACTION, NULL);
	check_range("ensemble_size", a->ensemble_size, 1, PT_MAX_ENSEMBLE_SIZE, NULL);
	check_range("max_input_tokens", a->max_input_tokens, PT_MIN_INPUT_TOKENS, PT_MAX_INPUT_TOKENS, NULL);
	check_range("seed", (double) a->seed, 0, PG_INT32_MAX, NULL);
	if (!PG_ARGISNULL(ARG_WEIGHT_DECAY) && !(a->weight_decay >= 0 && a->weight_decay < 1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("weight_decay = %.15g is out of range [0, 1)", a->weight_decay),
				 errhint("Adafactor multiplies the prompt by 1 - weight_decay each step; the paper's is 1e-5.")));
	if (!PG_ARGISNULL(ARG_MAX_GRAD_NORM))
		check_range("max_grad_norm", a->max_grad_norm, 0, 1e9, "0 turns gradient-norm clipping off.");
	check_range("min_dim_size_to_factor", a->min_dim_size_to_factor, 0, PG_INT32_MAX,
				"0 factors Adafactor's second moment always; T5X's default is 128.");
	check_range("adafactor_start_step", a->adafactor_start_step, 0, PG_INT32_MAX, NULL);
	if (a->epochs == 0 && a->max_steps == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("epochs is 0 and max_steps is NULL: nothing to train"),
				 errhint("Give epochs, max_steps, or both.")));
	if (strcmp(a->init, "class_labels") != 0 && strcmp(a->init, "sampled_vocab") != 0 &&
		strcmp(a->init, "random_uniform") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown prompt initialisation \"%s\"", a->init),
				 errhint("Use class_labels, sampled_vocab or random_uniform.")));
	if (strcmp(a->optimizer, "adafactor") != 0 && strcmp(a->optimizer, "adam") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown optimizer \"%s\"", a->optimizer),
				 errhint("Use adafactor or adam.")));
}

/*
 * Rows go to the worker in chunks of at most this many rows or bytes (a
 * row's text is already cut to its token budget), so neither process ever
 * holds the table: the backend one chunk, the worker the token ids.
 */
#define CHUNK_ROWS 1000
#define CHUNK_BYTES (1 << 20)

static void
send_chunk(PtuneCall *call, StringInfo chunk, int kind, int n, StringInfo body, bool last)
{
	resetStringInfo(chunk);
	ptune_wire_put_chunk(chunk, kind, n, body);
	ptune_call_send(call, chunk, last);
	resetStringInfo(body);
}

/*
 * Reads (text, label) rows of relation with the caller's privileges and
 * streams them to the worker as chunks of `kind` (CHUNK_TRAINING_ROWS or
 * CHUNK_HELD_OUT_ROWS); rows with a NULL text or label are skipped and
 * counted.  The word that all rows were sent is a separate, last chunk.
 */
static int
stream_rows(PtuneCall *call, const TrainArgs *a, Oid relation, int kind, int *skipped, int *n_labels_out)
{
	PtuneRowScan scan;
	int			rows = 0,
				in_chunk = 0,
				n;
	HTAB	   *labels;
	HASHCTL		ctl = {.keysize = 264, .entrysize = 264};
	StringInfoData chunk,
				body;
	MemoryContext fetch_cxt = AllocSetContextCreate(CurrentMemoryContext, "ptune training rows",
													ALLOCSET_DEFAULT_SIZES);

	labels = hash_create("ptune labels", 64, &ctl, HASH_ELEM | HASH_STRINGS);
	initStringInfo(&chunk);
	initStringInfo(&body);
	ptune_scan_open(&scan, relation, a->text_column, a->label_column, CHUNK_ROWS);
	while ((n = ptune_scan_fetch(&scan)) > 0)
	{
		for (int i = 0; i < n; i++)
		{
			Datum		t,
						l;
			text	   *tt,
					   *lt;
			char		key[264];
			MemoryContext old;

			if (!ptune_scan_row(&scan, i, &t, &l))
				continue;
			old = MemoryContextSwitchTo(fetch_cxt);
			tt = DatumGetTextPP(t);
			lt = DatumGetTextPP(l);
			if (a->objective == PT_OBJECTIVE_GENERATION)
			{
				/* a target text: cut to what its token budget can use; no label set to count */
				ptune_wire_put_row(&body, VARDATA_ANY(tt),
								   ptune_clip_text(VARDATA_ANY(tt), VARSIZE_ANY_EXHDR(tt), a->max_input_tokens),
								   VARDATA_ANY(lt),
								   ptune_clip_text(VARDATA_ANY(lt), VARSIZE_ANY_EXHDR(lt), PT_MAX_TARGET_TOKENS));
				MemoryContextSwitchTo(old);
				MemoryContextReset(fetch_cxt);
				rows++;
				if (++in_chunk == CHUNK_ROWS || body.len >= CHUNK_BYTES)
				{
					send_chunk(call, &chunk, kind, in_chunk, &body, false);
					in_chunk = 0;
				}
				CHECK_FOR_INTERRUPTS();
				continue;
			}
			if (VARSIZE_ANY_EXHDR(lt) > PT_MAX_LABEL_BYTES)
				ereport(ERROR,
						(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
						 errmsg("a label is longer than %d bytes", PT_MAX_LABEL_BYTES),
						 errhint("Labels are short class names such as 'spam' or 'positive'.")));
			ptune_wire_put_row(&body, VARDATA_ANY(tt),
							   ptune_clip_text(VARDATA_ANY(tt), VARSIZE_ANY_EXHDR(tt), a->max_input_tokens),
							   VARDATA_ANY(lt), VARSIZE_ANY_EXHDR(lt));
			text_to_cstring_buffer(lt, key, sizeof(key));
			MemoryContextSwitchTo(old);
			MemoryContextReset(fetch_cxt);
			(void) hash_search(labels, key, HASH_ENTER, NULL);
			rows++;
			in_chunk++;
			if (in_chunk == CHUNK_ROWS || body.len >= CHUNK_BYTES)
			{
				send_chunk(call, &chunk, kind, in_chunk, &body, false);
				in_chunk = 0;
			}
			CHECK_FOR_INTERRUPTS();
		}
	}
	ptune_scan_close(&scan);
	*skipped += (int) scan.skipped;
	*n_labels_out = (int) hash_get_num_entries(labels);
	hash_destroy(labels);
	if (in_chunk > 0)
		send_chunk(call, &chunk, kind, in_chunk, &body, false);
	pfree(chunk.data);
	pfree(body.data);
	MemoryContextDelete(fetch_cxt);
	return rows;
}

/* NOTICE on each new validation of the training this session waits for. */
static void
report_progress(int progress_slot, void *arg)
{
	uint64	   *seen = arg;
	PtuneTraining t;

	if (progress_slot < 0 || progress_slot >= PTUNE_MAX_TRAININGS)
		return;
	LWLockAcquire(&ptune_shared->lock, LW_SHARED);
	t = ptune_shared->trainings[progress_slot];
	LWLockRelease(&ptune_shared->lock);
	if (!t.active || t.backend_pid != MyProcPid || t.change_count == *seen)
		return;
	*seen = t.change_count;
	ereport(NOTICE,
			(errmsg("ptune: task \"%s\" member %d/%d step %lld/%lld: loss %.4f, validation accuracy %.4f, %.1f rows/s",
					t.task, t.member + 1, t.n_members, (long long) t.step, (long long) t.total_steps,
					t.loss, t.val_accuracy, t.rows_per_second)));
}

/* The request's header: the options as the worker's trainer takes them. */
static void
train_request(const TrainArgs *a, PtuneTrainRequest *r)
{
	memset(r, 0, sizeof(*r));
	r->task = a->task;
	r->database = MyDatabaseId;
	r->user = GetUserId();
	r->prompt_length = a->prompt_length;
	r->init = a->init;
	r->optimizer = a->optimizer;
	r->learning_rate = a->learning_rate;
	r->batch_size = a->batch_size;
	r->epochs = a->epochs;
	r->max_steps = a->max_steps;
	r->validation_fraction = a->validation_fraction;
	r->eval_every = 0;			/* automatic */
	r->patience = 0;			/* off */
	r->ensemble_size = a->ensemble_size;
	r->max_input_tokens = a->max_input_tokens;
	r->seed = a->seed;
	r->max_grad_norm = a->max_grad_norm;	/* < 0: the optimizer's default */
	r->weight_decay = a->weight_decay;	/* < 0: the optimizer's default */
	r->min_dim_size_to_factor = a->min_dim_size_to_factor;
	r->adafactor_start_step = a->adafactor_start_step;
	r->scoring = a->scoring;
	r->objective = a->objective;
}

/* A float8 as JSON: null where there is nothing to report (NaN, infinite). */
static char *
json_number(double x)
{
	return isfinite(x) ? psprintf("%.6f", x) : "null";
}

static char *
json_string(const char *s)
{
	StringInfoData buf;

	initStringInfo(&buf);
	escape_json(&buf, s);
	return buf.data;
}

/* Stores the prompts as a new, active version of the task; returns the version. */
static int
store_prompts(const TrainArgs *a, const PtuneTrainAnswer *r, const char *relname, const char *test_relname)
{
	Oid			types[12] = {TEXTOID, INT4OID, INT4OID, TEXTOID, TEXTOID, INT4OID, INT4OID,
	TEXTARRAYOID, BYTEAOID, JSONBOID, JSONBOID, REGROLEOID};
	Datum		values[12];
	Oid			trainer = GetUserId();
	PtuneAsOwner as;
	Datum	   *label_datums = palloc(sizeof(Datum) * r->n_labels);
	char	   *hyper,
			   *metrics;
	int			version;
	Datum		task_datum = CStringGetTextDatum(a->task);

	for (int j = 0; j < r->n_labels; j++)
		label_datums[j] = CStringGetTextDatum(r->labels[j]);
	hyper = psprintf("{\"relation\": %s, \"text_column\": %s, \"label_column\": %s, "
					 "\"prompt_length\": %d, \"init\": %s, \"optimizer\": %s, \"learning_rate\": %g, "
					 "\"batch_size\": %d, \"epochs\": %d, \"max_steps\": %lld, "
					 "\"validation_fraction\": %g, \"ensemble_size\": %d, \"max_input_tokens\": %d, "
					 "\"seed\": %lld, \"test_relation\": %s, \"scoring\": %s, \"weight_decay\": %s, "
					 "\"max_grad_norm\": %s, \"min_dim_size_to_factor\": %d, \"adafactor_start_step\": %d, "
					 "\"objective\": %s}",
					 json_string(relname), json_string(a->text_column), json_string(a->label_column),
					 a->prompt_length, json_string(a->init), json_string(a->optimizer), a->learning_rate,
					 a->batch_size, a->epochs, (long long) a->max_steps, a->validation_fraction,
					 a->ensemble_size, a->max_input_tokens, (long long) a->seed,
					 test_relname ? json_string(test_relname) : "null",
					 json_string(ptune_scoring_to_name(a->scoring)),
					 a->weight_decay < 0 ? "null" : psprintf("%.15g", a->weight_decay),
					 a->max_grad_norm < 0 ? "null" : psprintf("%.15g", a->max_grad_norm),
					 a->min_dim_size_to_factor, a->adafactor_start_step,
					 json_string(a->objective == PT_OBJECTIVE_GENERATION ? "generation" : "classification"));
	metrics = psprintf("{\"train_rows\": %d, \"validation_rows\": %d, \"test_rows\": %d, "
					   "\"skipped_rows\": %d, \"steps\": %lld, \"seconds\": %.3f, \"final_loss\": %s, "
					   "\"selection_accuracy\": %s, \"test_accuracy\": %s, \"rows_per_second\": %s}",
					   r->train_rows, r->val_rows, r->test_rows, r->skipped, (long long) r->steps,
					   r->seconds, json_number(r->final_loss), json_number(r->selection_accuracy),
					   json_number(r->test_accuracy), json_number(r->rows_per_second));

	/*
	 * Still ours?  (A superuser may have reassigned the task meanwhile.)  The
	 * registry row's lock makes one trainer or activation of the task at a
	 * time compute the next version number.
	 */
	ptune_check_manage(a->task, PTUNE_LOCK_UPDATE, "retrain it");
	ptune_as_owner_begin(&as);
	SPI_connect();
	version = ptune_begin_new_version(task_datum);
	for (int k = 0; k < r->n_prompts; k++)
	{
		values[0] = task_datum;
		values[1] = Int32GetDatum(version);
		values[2] = Int32GetDatum(k);
		values[3] = CStringGetTextDatum(r->model_name);
		values[4] = CStringGetTextDatum(r->fingerprint);
		values[5] = Int32GetDatum(a->prompt_length);
		values[6] = Int32GetDatum(r->d_model);
		values[7] = PointerGetDatum(construct_array(label_datums, r->n_labels, TEXTOID, -1, false,
													TYPALIGN_INT));
		values[8] = PointerGetDatum(r->prompts[k]);
		values[9] = DirectFunctionCall1(jsonb_in, CStringGetDatum(hyper));
		values[10] = DirectFunctionCall1(jsonb_in, CStringGetDatum(metrics));
		values[11] = ObjectIdGetDatum(trainer);
		if (SPI_execute_with_args("INSERT INTO ptune.prompts (task, version, member, is_active, "
								  "model_name, model_fingerprint, prompt_length, d_model, labels, "
								  "prompt, hyperparameters, metrics, created_by) "
								  "VALUES ($1, $2, $3, true, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
								  12, types, values, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not store the prompt");
	}
	SPI_finish();
	ptune_as_owner_end(&as);
	return version;
}

Datum
ptune_train_prompt(PG_FUNCTION_ARGS)
{
	TrainArgs	a;
	StringInfoData req,
				resp;
	int		   *counts = palloc0(sizeof(int) * 2);	/* rows skipped (training, held-out): set in PG_TRY */
	int			version;
	PtuneCall	call;
	PtuneTrainRequest header;
	PtuneTrainAnswer r;
	TupleDesc	desc;
	Datum		values[9];
	bool		nulls[9] = {false};
	uint64		seen = 0;
	char	   *relname,
			   *test_relname = NULL;

	ptune_require_shared();
	read_args(fcinfo, &a);
	/* read-only transaction, ownership, name taken: refused before any work */
	ptune_claim_task(a.task, "ptune.train_prompt()", "retrain it");
	relname = get_rel_name(a.relation);
	if (relname == NULL)
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE), errmsg("relation %u does not exist", a.relation)));

	initStringInfo(&req);
	train_request(&a, &header);
	ptune_wire_put_train(&req, &header);
	if (OidIsValid(a.test_relation))
	{
		test_relname = get_rel_name(a.test_relation);
		if (test_relname == NULL)
			ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE),
							errmsg("relation %u does not exist", a.test_relation)));
		test_relname = quote_qualified_identifier(get_namespace_name(get_rel_namespace(a.test_relation)),
												  test_relname);
	}

	/*
	 * The worker checks the model and its capacity on this header, before a
	 * single row is read; then the rows follow in chunks.
	 */
	ptune_call_begin(&call, PTUNE_REQ_TRAIN, &req, false, report_progress, &seen);
	PG_TRY();
	{
		int			rows,
					n_labels,
					test_labels;
		StringInfoData chunk,
					none;

		rows = stream_rows(&call, &a, a.relation, CHUNK_TRAINING_ROWS, &counts[0], &n_labels);
		if (rows == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("relation \"%s\" has no rows with both a text and a label", relname),
					 counts[0] ? errdetail("%d rows have a NULL text or label.", counts[0]) : 0));
		if (n_labels < 2 && a.objective == PT_OBJECTIVE_CLASSIFICATION)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("column \"%s\" has a single distinct label", a.label_column),
					 errhint("A classifier needs rows of at least two labels.")));
		if (counts[0] > 0)
			ereport(NOTICE, (errmsg("ptune: skipped %d rows with a NULL text or label", counts[0])));
		if (OidIsValid(a.test_relation))
			(void) stream_rows(&call, &a, a.test_relation, CHUNK_HELD_OUT_ROWS, &counts[1], &test_labels);
		/* all rows sent: training may start */
		initStringInfo(&chunk);
		initStringInfo(&none);
		send_chunk(&call, &chunk, CHUNK_TRAINING_ROWS, 0, &none, true);
		ptune_call_finish(&call, &resp);
	}
	PG_CATCH();
	{
		ptune_call_abort(&call);
		PG_RE_THROW();
	}
	PG_END_TRY();
	pfree(req.data);
	ptune_wire_get_train_answer(&resp, &r);
	r.skipped += counts[0] + counts[1];
	version = store_prompts(&a, &r, quote_qualified_identifier(get_namespace_name(get_rel_namespace(a.relation)),
															   relname), test_relname);

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "train_prompt must return a row");
	values[0] = CStringGetTextDatum(a.task);
	values[1] = Int32GetDatum(version);
	{
		Datum	   *ld = palloc(sizeof(Datum) * r.n_labels);

		for (int j = 0; j < r.n_labels; j++)
			ld[j] = CStringGetTextDatum(r.labels[j]);
		values[2] = PointerGetDatum(construct_array(ld, r.n_labels, TEXTOID, -1, false, TYPALIGN_INT));
	}
	values[3] = Int32GetDatum(r.train_rows);
	values[4] = Int64GetDatum(r.steps);
	values[5] = Float8GetDatum(r.seconds);
	values[6] = Float8GetDatum(r.final_loss);
	nulls[6] = isnan(r.final_loss);
	values[7] = Float8GetDatum(r.selection_accuracy);
	nulls[7] = isnan(r.selection_accuracy);
	values[8] = Float8GetDatum(r.test_accuracy);
	nulls[8] = isnan(r.test_accuracy);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
