/*
 * distribute.c - a trained task as one self-checking bytea, to carry it to
 * other servers: ptune.export_task() and ptune.import_task() (README,
 * "Scaling out").
 *
 * Export format (little-endian), format version 1:
 *
 *   off  size  field
 *   0    8     magic "PTUNETSK"
 *   8    1     format version (1)
 *   9    3     zero
 *   12   4     total size in bytes, including this header and the CRC
 *   16   ...   fields, in this order; a "string" is a 4-byte length then
 *              that many bytes (no NUL):
 *                string  task name (1..200 bytes)
 *                4       version on the exporting server
 *                string  model name
 *                16      model fingerprint (the prompts carry it too)
 *                4       prompt length P, 4 d_model
 *                4       number of labels L, then L strings
 *                string  hyperparameters (JSON)
 *                string  metrics (JSON)
 *                string  role that trained it, by name (OIDs mean nothing elsewhere)
 *                string  when it was trained (timestamptz as text)
 *                4       members K (an ensemble has several), then K strings:
 *                        the prompts in the engine's format (src/engine/prompt.h)
 *        4     CRC-32 (zlib's) of every byte before it
 *
 * Every length is checked against what is left before it is used, so a
 * truncated, corrupted or crafted blob is an ERROR (SQLSTATE 22P03, or XX001
 * for a checksum mismatch), never an out-of-bounds read.
 */
#include "postgres.h"

#include <math.h>
#include <zlib.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "client.h"
#include "ipc.h"
#include "prompt.h"
#include "ptune_limits.h"
#include "prompt_store.h"
#include "task.h"
#include "tasks.h"

PG_FUNCTION_INFO_V1(ptune_export_task);
PG_FUNCTION_INFO_V1(ptune_import_task);

#define TASK_MAGIC "PTUNETSK"
#define TASK_FORMAT_VERSION 1
#define TASK_HEADER_BYTES 16
#define TASK_MAX_TEXT_BYTES (1024 * 1024)	/* names, JSON */

/* ---- writing -------------------------------------------------------------- */

static void
put_u32(StringInfo buf, uint32 v)
{
	unsigned char b[4] = {v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >> 24) & 0xff};

	appendBinaryStringInfo(buf, (const char *) b, 4);
}

static void
put_string(StringInfo buf, const char *s, int len)
{
	put_u32(buf, (uint32) len);
	appendBinaryStringInfo(buf, s, len);
}

static void
put_cstring(StringInfo buf, const char *s)
{
	put_string(buf, s, strlen(s));
}

static uint32
get_u32_at(const unsigned char *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32) p[3] << 24;
}

static char *
column_text(HeapTuple row, TupleDesc desc, int col)
{
	char	   *s = SPI_getvalue(row, desc, col);

	return s ? s : "";
}

Datum
ptune_export_task(PG_FUNCTION_ARGS)
{
	char	   *task = ptune_task_argument(fcinfo, 0);
	bool		by_version = !PG_ARGISNULL(1);
	int32		version = by_version ? PG_GETARG_INT32(1) : 0;
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		args[2] = {CStringGetTextDatum(task), Int32GetDatum(version)};
	PtuneAsOwner as;
	StringInfoData buf;
	bytea	   *result;
	uint64		n;

	/* who may see (and classify with) the task may export it: the same bytes */
	(void) ptune_check_see(task, "Exporting");

	/* before SPI_connect: the export must outlive SPI_finish's memory context */
	initStringInfo(&buf);
	ptune_as_owner_begin(&as);
	SPI_connect();
	if (SPI_execute_with_args("SELECT version, model_name, prompt_length, d_model, labels, prompt, "
							  "hyperparameters::text, metrics::text, created_by::text, created_at::text "
							  "FROM ptune.prompts WHERE task = $1 "
							  "AND CASE WHEN $2 = 0 THEN is_active ELSE version = $2 END ORDER BY member",
							  2, types, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "reading ptune.prompts failed");
	n = SPI_processed;
	if (n == 0 && by_version)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("task \"%s\" has no version %d", task, version),
				 errhint("List its versions with SELECT version FROM ptune.versions WHERE task = ...")));
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("task \"%s\" has no active version", task),
				 errhint("Name a version: ptune.export_task('%s', version).", task)));

	appendBinaryStringInfo(&buf, TASK_MAGIC, 8);
	appendStringInfoChar(&buf, TASK_FORMAT_VERSION);
	appendBinaryStringInfo(&buf, "\0\0\0", 3);
	put_u32(&buf, 0);			/* total size, set below */
	{
		HeapTuple	row = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		bytea	   *first = DatumGetByteaPP(SPI_getbinval(row, desc, 6, &isnull));
		ArrayType  *labels = DatumGetArrayTypeP(SPI_getbinval(row, desc, 5, &isnull));
		Datum	   *elems;
		bool	   *nulls;
		int			n_labels;

		/* the fingerprint is the prompt's own (the column is informational) */
		PtPromptHeader h;

		if (!pt_prompt_read_header((const uint8_t *) VARDATA_ANY(first), VARSIZE_ANY_EXHDR(first), &h))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("task \"%s\" has a truncated or invalid prompt", task)));
		put_cstring(&buf, task);
		put_u32(&buf, DatumGetInt32(SPI_getbinval(row, desc, 1, &isnull)));
		put_cstring(&buf, column_text(row, desc, 2));
		appendBinaryStringInfo(&buf, (const char *) h.fingerprint, PT_FINGERPRINT_BYTES);
		put_u32(&buf, DatumGetInt32(SPI_getbinval(row, desc, 3, &isnull)));
		put_u32(&buf, DatumGetInt32(SPI_getbinval(row, desc, 4, &isnull)));
		deconstruct_array(labels, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n_labels);
		put_u32(&buf, n_labels);
		for (int j = 0; j < n_labels; j++)
			put_cstring(&buf, nulls[j] ? "" : TextDatumGetCString(elems[j]));
		put_cstring(&buf, column_text(row, desc, 7));
		put_cstring(&buf, column_text(row, desc, 8));
		put_cstring(&buf, column_text(row, desc, 9));
		put_cstring(&buf, column_text(row, desc, 10));
	}
	put_u32(&buf, (uint32) n);
	for (uint64 k = 0; k < n; k++)
	{
		bool		isnull;
		bytea	   *blob = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[k], SPI_tuptable->tupdesc,
														6, &isnull));

		put_string(&buf, VARDATA_ANY(blob), VARSIZE_ANY_EXHDR(blob));
	}
	SPI_finish();
	ptune_as_owner_end(&as);

	if ((Size) buf.len + 4 > MaxAllocSize - VARHDRSZ)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("task \"%s\" is too large to export (%d bytes)", task, buf.len)));
	{
		uint32		total = (uint32) buf.len + 4;
		unsigned char *p = (unsigned char *) buf.data + 12;

		p[0] = total & 0xff;
		p[1] = (total >> 8) & 0xff;
		p[2] = (total >> 16) & 0xff;
		p[3] = (total >> 24) & 0xff;
	}
	put_u32(&buf, (uint32) crc32(0L, (const Bytef *) buf.data, (uInt) buf.len));
	result = palloc(VARHDRSZ + buf.len);
	SET_VARSIZE(result, VARHDRSZ + buf.len);
	memcpy(VARDATA(result), buf.data, buf.len);
	PG_RETURN_BYTEA_P(result);
}

/* ---- reading -------------------------------------------------------------- */

typedef struct Reader
{
	const unsigned char *p;
	size_t		left;
} Reader;

static void
bad_blob(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
			 errmsg("not a valid ptune task export: %s", what),
			 errhint("Pass the unchanged bytea that ptune.export_task() returned.")));
}

static uint32
read_u32(Reader *r, const char *what)
{
	uint32		v;

	if (r->left < 4)
		bad_blob(psprintf("truncated at the %s", what));
	v = get_u32_at(r->p);
	r->p += 4;
	r->left -= 4;
	return v;
}

static const unsigned char *
read_bytes(Reader *r, size_t len, const char *what)
{
	const unsigned char *p = r->p;

	if (r->left < len)
		bad_blob(psprintf("truncated at the %s", what));
	r->p += len;
	r->left -= len;
	return p;
}

/* A string field: at most max_len bytes, valid in the database encoding, no NUL. */
static char *
read_text(Reader *r, uint32 min_len, uint32 max_len, const char *what)
{
	uint32		len = read_u32(r, what);
	const char *s;

	if (len < min_len || len > max_len)
		bad_blob(psprintf("the %s has %u bytes (allowed: %u to %u)", what, len, min_len, max_len));
	s = (const char *) read_bytes(r, len, what);
	if (!pg_verifymbstr(s, len, true))
		bad_blob(psprintf("the %s is not valid text in the database's encoding", what));
	return pnstrdup(s, len);
}

/*
 * One member's prompt: the engine's header agrees with the export's fields
 * (size, P, d_model, fingerprint, labels) and its own CRC holds.  The worker
 * checks the values again when it decodes the prompt.
 */
static void
check_prompt(const unsigned char *p, uint32 len, int k, uint32 prompt_length, uint32 d_model,
			 const unsigned char *fingerprint, char **labels, uint32 n_labels)
{
	Reader		r = {p, len};
	PtPromptHeader h;
	char	   *what = psprintf("prompt of member %d", k);

	if (len < PT_PROMPT_HEADER_BYTES + 4 || !pt_prompt_read_header(p, len, &h))
		bad_blob(psprintf("the %s is not a ptune prompt", what));
	if (h.version != PT_PROMPT_VERSION || h.total != len || h.length != prompt_length ||
		h.d_model != d_model || h.dtype != 1 ||
		memcmp(h.fingerprint, fingerprint, PT_FINGERPRINT_BYTES) != 0 || h.n_labels != n_labels)
		bad_blob(psprintf("the %s does not match the task's header", what));
	if (crc32(0L, p, len - 4) != get_u32_at(p + len - 4))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("not a valid ptune task export: the %s fails its checksum", what)));
	/* the rest of what the worker's decoder (pt_prompt_decode) refuses, refused here */
	if (pt_prompt_peek_max_input_tokens(p, len) == 0)
		bad_blob(psprintf("the %s has no valid max input tokens", what));
	read_bytes(&r, PT_PROMPT_HEADER_BYTES, what);
	for (uint32 j = 0; j < n_labels; j++)
	{
		uint32		l = read_u32(&r, what);

		if (l != strlen(labels[j]) || memcmp(read_bytes(&r, l, what), labels[j], l) != 0)
			bad_blob(psprintf("the %s has other labels than the task", what));
	}
	if (h.meta_bytes > 1 << 20 ||
		memchr(read_bytes(&r, h.meta_bytes, what), '\0', h.meta_bytes) != NULL)
		bad_blob(psprintf("the %s has invalid metadata", what));
	if (r.left != (size_t) prompt_length * d_model * 4 + 4)
		bad_blob(psprintf("the %s has %zu bytes of values and CRC, not P x d_model x 4 + 4",
						  what, r.left));
	/* the worker's decoder refuses a NaN or infinity: refuse it here, not at every classify */
	for (size_t i = 0; i < (size_t) prompt_length * d_model; i++)
	{
		uint32		bits = get_u32_at(r.p + 4 * i);
		float		v;

		memcpy(&v, &bits, 4);
		if (!isfinite(v))
			bad_blob(psprintf("value %zu of the %s is not a finite number", i, what));
	}
}

typedef struct TaskExport
{
	char	   *task;
	uint32		version;
	char	   *model_name;
	const unsigned char *fingerprint;
	uint32		prompt_length,
				d_model,
				n_labels;
	char	  **labels;
	char	   *hyperparameters,
			   *metrics,
			   *trained_by,
			   *trained_at;
	uint32		n_members;
	bytea	  **prompts;
} TaskExport;

static void
parse_export(bytea *data, TaskExport *t)
{
	const unsigned char *base = (const unsigned char *) VARDATA_ANY(data);
	size_t		len = VARSIZE_ANY_EXHDR(data);
	Reader		r;

	if (len < TASK_HEADER_BYTES + 4 || memcmp(base, TASK_MAGIC, 8) != 0)
		bad_blob("it does not start with \"" TASK_MAGIC "\"");
	if (base[8] != TASK_FORMAT_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("ptune task export of format version %d; this ptune reads version %d",
						base[8], TASK_FORMAT_VERSION),
				 errhint("Import it with the ptune version that exported it, or export it again here.")));
	if (get_u32_at(base + 12) != len)
		bad_blob(psprintf("it says %u bytes but has %zu (truncated or padded)", get_u32_at(base + 12), len));
	if (crc32(0L, base, len - 4) != get_u32_at(base + len - 4))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("not a valid ptune task export: the checksum does not match"),
				 errhint("The bytes were changed or cut on the way; export the task again.")));

	r.p = base + TASK_HEADER_BYTES;
	r.left = len - TASK_HEADER_BYTES - 4;
	t->task = read_text(&r, 1, PT_MAX_TASK_NAME_BYTES, "task name");
	t->version = read_u32(&r, "version");
	t->model_name = read_text(&r, 0, TASK_MAX_TEXT_BYTES, "model name");
	t->fingerprint = read_bytes(&r, PT_FINGERPRINT_BYTES, "fingerprint");
	t->prompt_length = read_u32(&r, "prompt length");
	t->d_model = read_u32(&r, "d_model");
	if (t->prompt_length < 1 || t->prompt_length > PT_PROMPT_MAX_LENGTH || t->d_model < 1 ||
		t->d_model > 65536)
		bad_blob("the prompt length or d_model is out of range");
	t->n_labels = read_u32(&r, "label count");
	/* 0 (a generation task) or 2 to PT_MAX_LABELS, as the worker's prompt decoder requires */
	if (t->n_labels == 1 || t->n_labels > PT_MAX_LABELS)
		bad_blob(psprintf("%u labels (allowed: none for a generation task, or 2 to %d)",
						  t->n_labels, PT_MAX_LABELS));
	t->labels = palloc(sizeof(char *) * Max(t->n_labels, 1));
	for (uint32 j = 0; j < t->n_labels; j++)
	{
		/* each label once, as a training finds them (two equal labels make classify ambiguous) */
		t->labels[j] = read_text(&r, 0, PT_MAX_LABEL_BYTES, "label");
		for (uint32 i = 0; i < j; i++)
			if (strcmp(t->labels[i], t->labels[j]) == 0)
				bad_blob(psprintf("label \"%s\" appears twice", t->labels[j]));
	}
	t->hyperparameters = read_text(&r, 0, TASK_MAX_TEXT_BYTES, "hyperparameters");
	t->metrics = read_text(&r, 0, TASK_MAX_TEXT_BYTES, "metrics");
	t->trained_by = read_text(&r, 0, TASK_MAX_TEXT_BYTES, "trainer's name");
	t->trained_at = read_text(&r, 0, TASK_MAX_TEXT_BYTES, "training time");
	t->n_members = read_u32(&r, "member count");
	if (t->n_members < 1 || t->n_members > PT_MAX_ENSEMBLE_SIZE)
		bad_blob(psprintf("%u members (allowed: 1 to %d)", t->n_members, PT_MAX_ENSEMBLE_SIZE));
	t->prompts = palloc(sizeof(bytea *) * t->n_members);
	for (uint32 k = 0; k < t->n_members; k++)
	{
		uint32		plen = read_u32(&r, "prompt size");
		const unsigned char *p;

		if (plen > PT_MAX_FIELD_BYTES)
			bad_blob(psprintf("the prompt of member %u has %u bytes (at most %d)", k, plen, PT_MAX_FIELD_BYTES));
		p = read_bytes(&r, plen, "prompt");

		check_prompt(p, plen, k, t->prompt_length, t->d_model, t->fingerprint, t->labels, t->n_labels);
		t->prompts[k] = palloc(VARHDRSZ + plen);
		SET_VARSIZE(t->prompts[k], VARHDRSZ + plen);
		memcpy(VARDATA(t->prompts[k]), p, plen);
	}
	if (r.left != 0)
		bad_blob(psprintf("%zu bytes follow the last prompt", r.left));
}

/* The loaded model must be the one the task was trained on. */
static void
check_loaded_model(const TaskExport *t, const char *task)
{
	char		loaded[33],
				wanted[33];
	PtuneWorkerState state;

	ptune_require_shared();
	LWLockAcquire(&ptune_shared->lock, LW_SHARED);
	state = ptune_shared->worker_state;
	strlcpy(loaded, ptune_shared->model_fingerprint, sizeof(loaded));
	LWLockRelease(&ptune_shared->lock);
	for (int i = 0; i < PT_FINGERPRINT_BYTES; i++)
		snprintf(wanted + 2 * i, 3, "%02x", t->fingerprint[i]);
	if (state != PTUNE_WORKER_READY || loaded[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot import task \"%s\": no ptune model is loaded to check it against", task),
				 errhint("Set ptune.model_path to the model the task was trained on (fingerprint %s) and SELECT pg_reload_conf().",
						 wanted)));
	if (strcmp(loaded, wanted) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("task \"%s\" was trained on model %s (fingerprint %s), not on the loaded model (fingerprint %s)",
						task, t->model_name, wanted, loaded),
				 errhint("Load the same checkpoint on this server (ptune.model_path), or retrain the task here.")));
}

Datum
ptune_import_task(PG_FUNCTION_ARGS)
{
	TaskExport	t;
	char	   *task;
	int			version;
	PtuneAsOwner as;
	Oid			types[16] = {TEXTOID, INT4OID, INT4OID, TEXTOID, TEXTOID, INT4OID, INT4OID,
	TEXTARRAYOID, BYTEAOID, TEXTOID, TEXTOID, REGROLEOID, TEXTOID, TEXTOID, INT8OID, TEXTOID};
	Datum		values[16];
	Datum	   *label_datums;
	Datum		task_datum;
	TupleDesc	desc;
	Datum		out[5];
	bool		out_nulls[5] = {false};
	char		fp_hex[33];
	Oid			importer = GetUserId();	/* before ptune_as_owner_begin() changes it */

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the task export must not be NULL")));
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "import_task must return a row");
	parse_export(PG_GETARG_BYTEA_PP(0), &t);
	task = PG_ARGISNULL(1) ? t.task : ptune_task_argument(fcinfo, 1);
	if (strlen(task) > PT_MAX_TASK_NAME_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("task name is longer than %d bytes", PT_MAX_TASK_NAME_BYTES)));
	check_loaded_model(&t, task);
	/* the JSON must parse before anything is written */
	(void) DirectFunctionCall1(jsonb_in, CStringGetDatum(t.hyperparameters));
	(void) DirectFunctionCall1(jsonb_in, CStringGetDatum(t.metrics));

	/*
	 * The same rules as a training: a new task becomes the caller's, an
	 * existing one must be the caller's to manage (then a new version).
	 */
	ptune_claim_task(task, "ptune.import_task()", "import into it");
	ptune_check_manage(task, PTUNE_LOCK_UPDATE, "import into it");

	label_datums = palloc(sizeof(Datum) * t.n_labels);
	for (uint32 j = 0; j < t.n_labels; j++)
		label_datums[j] = CStringGetTextDatum(t.labels[j]);
	for (int i = 0; i < PT_FINGERPRINT_BYTES; i++)
		snprintf(fp_hex + 2 * i, 3, "%02x", t.fingerprint[i]);
	task_datum = CStringGetTextDatum(task);

	ptune_as_owner_begin(&as);
	SPI_connect();
	version = ptune_begin_new_version(task_datum);
	for (uint32 k = 0; k < t.n_members; k++)
	{
		values[0] = task_datum;
		values[1] = Int32GetDatum(version);
		values[2] = Int32GetDatum((int32) k);
		values[3] = CStringGetTextDatum(t.model_name);
		values[4] = CStringGetTextDatum(fp_hex);
		values[5] = Int32GetDatum((int32) t.prompt_length);
		values[6] = Int32GetDatum((int32) t.d_model);
		values[7] = PointerGetDatum(construct_array(label_datums, t.n_labels, TEXTOID, -1, false,
													TYPALIGN_INT));
		values[8] = PointerGetDatum(t.prompts[k]);
		values[9] = CStringGetTextDatum(t.hyperparameters);
		values[10] = CStringGetTextDatum(t.metrics);
		values[11] = ObjectIdGetDatum(importer);
		values[12] = CStringGetTextDatum(t.task);
		values[13] = CStringGetTextDatum(t.trained_by);
		values[14] = Int64GetDatum((int64) t.version);
		values[15] = CStringGetTextDatum(t.trained_at);
		if (SPI_execute_with_args("INSERT INTO ptune.prompts (task, version, member, is_active, "
								  "model_name, model_fingerprint, prompt_length, d_model, labels, "
								  "prompt, hyperparameters, metrics, created_by) "
								  "VALUES ($1, $2, $3, true, $4, $5, $6, $7, $8, $9, $10::jsonb, "
								  "$11::jsonb || jsonb_build_object('imported', jsonb_build_object("
								  "'task', $13, 'version', $15, 'trained_by', $14, "
								  "'trained_at', $16)), $12)",
								  16, types, values, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not store the imported prompt");
	}
	SPI_finish();
	ptune_as_owner_end(&as);

	out[0] = task_datum;
	out[1] = Int32GetDatum(version);
	out[2] = Int64GetDatum((int64) t.version);
	out[3] = Int32GetDatum((int32) t.n_members);
	out[4] = PointerGetDatum(construct_array(label_datums, t.n_labels, TEXTOID, -1, false, TYPALIGN_INT));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), out, out_nulls)));
}
