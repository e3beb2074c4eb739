/*
 * wire.c - encoders and decoders of the worker's messages, side by side (the
 * formats are in wire.h).  Linked into both ptune.so and ptune_worker.so.
 *
 * Decoders check every count and length against the limits of
 * ptune_limits.h before they allocate or read, so a malformed message is an
 * ERROR (our own bug: SQLSTATE XX000), never an oversized allocation.
 */
#include "postgres.h"

#include "common/cryptohash.h"
#include "libpq/pqformat.h"

#include "task.h"
#include "wire.h"

void
ptune_prompt_key(const char *blob, size_t len, uint8 *key)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);

	if (ctx == NULL || pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) blob, len) < 0 ||
		pg_cryptohash_final(ctx, key, PROMPT_KEY_BYTES) < 0)
		elog(ERROR, "could not compute the SHA-256 of a prompt: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
}

static void
bad_message(const char *what)
{
	ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("invalid %s in a ptune message", what)));
}

static void
put_version(StringInfo buf)
{
	pq_sendint32(buf, PTUNE_WIRE_VERSION);
}

static void
check_version(StringInfo msg)
{
	int			version = pq_getmsgint(msg, 4);

	if (version != PTUNE_WIRE_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("ptune message of format version %d, this build speaks %d", version, PTUNE_WIRE_VERSION),
				 errhint("The backends and the model worker run different ptune builds: restart the server "
						 "after installing ptune.")));
}

/* A byte string: int32 length, then the bytes. */
static void
put_bytes(StringInfo buf, const char *s, int len)
{
	pq_sendint32(buf, len);
	pq_sendbytes(buf, s, len);
}

static void
put_string(StringInfo buf, const char *s)
{
	put_bytes(buf, s, strlen(s));
}

/* A byte string of at most max_len bytes, read in place. */
static const char *
get_bytes(StringInfo msg, int max_len, int *len, const char *what)
{
	*len = pq_getmsgint(msg, 4);
	if (*len < 0 || *len > max_len)
		bad_message(what);
	return pq_getmsgbytes(msg, *len);
}

/* A byte string of at most max_len bytes as a palloc'd, NUL-terminated string. */
static char *
get_string(StringInfo msg, int max_len, const char *what)
{
	int			len;
	const char *bytes = get_bytes(msg, max_len, &len, what);
	char	   *s = palloc(len + 1);

	memcpy(s, bytes, len);
	s[len] = '\0';
	return s;
}

static int
get_count(StringInfo msg, int min, int max, const char *what)
{
	int			n = pq_getmsgint(msg, 4);

	if (n < min || n > max)
		bad_message(what);
	return n;
}

static void
check_scoring(int scoring)
{
	/* PtScoring: 0 label_tokens, 1 rank (src/engine/task.h) */
	if (scoring != PT_SCORE_LABEL_TOKENS && scoring != PT_SCORE_RANK)
		bad_message("scoring");
}

/*
 * Most texts in one classify or generate request (the backend sends at most
 * PTUNE_TEXTS_PER_REQUEST).
 */
#define MAX_REQUEST_TEXTS (1 << 20)

/* A prompt named by its key, with its blob or (blob NULL) without. */
static void
put_prompt_ref(StringInfo buf, const uint8 *key, const bytea *blob)
{
	pq_sendbytes(buf, (const char *) key, PROMPT_KEY_BYTES);
	if (blob)
		put_bytes(buf, VARDATA_ANY(blob), VARSIZE_ANY_EXHDR(blob));
	else
		pq_sendint32(buf, 0);
}

/* Returns the key; *blob is NULL where the request names the prompt by key only. */
static const uint8 *
get_prompt_ref(StringInfo msg, const char **blob, int *len)
{
	const uint8 *key = (const uint8 *) pq_getmsgbytes(msg, PROMPT_KEY_BYTES);

	*blob = get_bytes(msg, PT_MAX_FIELD_BYTES, len, "prompt length");
	if (*len == 0)
		*blob = NULL;
	return key;
}

/* A request's texts: int32 count, then each as int32 length (-1: NULL) and bytes. */
static void
put_texts(StringInfo buf, int n_texts, const char *const *texts, const int *lens)
{
	pq_sendint32(buf, n_texts);
	for (int i = 0; i < n_texts; i++)
	{
		if (texts[i] == NULL)
			pq_sendint32(buf, -1);
		else
			put_bytes(buf, texts[i], lens[i]);
	}
}

/* NULL for a NULL text; else the text, read in place. */
static const char *
get_nullable_bytes(StringInfo msg, int *len, const char *what)
{
	*len = pq_getmsgint(msg, 4);
	if (*len < 0)
		return NULL;
	if (*len > PT_MAX_FIELD_BYTES)
		bad_message(what);
	return pq_getmsgbytes(msg, *len);
}

/* ---- CLASSIFY ------------------------------------------------------------ */

void
ptune_wire_put_classify(StringInfo buf, int scoring, int n_prompts,
						const uint8 (*keys)[PROMPT_KEY_BYTES], bytea *const *blobs,
						int n_texts, const char *const *texts, const int *lens)
{
	put_version(buf);
	pq_sendint32(buf, scoring);
	pq_sendint32(buf, n_prompts);
	for (int k = 0; k < n_prompts; k++)
		put_prompt_ref(buf, keys[k], blobs ? blobs[k] : NULL);
	put_texts(buf, n_texts, texts, lens);
}

void
ptune_wire_get_classify_head(StringInfo msg, int *scoring, int *n_prompts)
{
	check_version(msg);
	*scoring = pq_getmsgint(msg, 4);
	check_scoring(*scoring);
	*n_prompts = get_count(msg, 1, PT_MAX_ENSEMBLE_SIZE, "number of prompts");
}

/* Returns the key; *blob is NULL where the request names the prompt by key only. */
const uint8 *
ptune_wire_get_classify_prompt(StringInfo msg, const char **blob, int *len)
{
	return get_prompt_ref(msg, blob, len);
}

int
ptune_wire_get_classify_text_count(StringInfo msg)
{
	return get_count(msg, 0, MAX_REQUEST_TEXTS, "number of texts");
}

/* NULL for a NULL input; else the text, read in place. */
const char *
ptune_wire_get_classify_text(StringInfo msg, int *len)
{
	return get_nullable_bytes(msg, len, "text length");
}

void
ptune_wire_put_classify_answer_head(StringInfo buf, int status, int n_labels)
{
	put_version(buf);
	pq_sendint32(buf, status);
	if (status == CLASSIFY_OK)
		pq_sendint32(buf, n_labels);
}

void
ptune_wire_put_classify_answer_row(StringInfo buf, int label, const float *probs, int n_labels)
{
	pq_sendint32(buf, label);
	for (int j = 0; j < n_labels; j++)
		pq_sendfloat4(buf, probs ? probs[j] : 0.0f);
}

int
ptune_wire_get_classify_answer_head(StringInfo msg, int *n_labels)
{
	int			status;

	check_version(msg);
	status = pq_getmsgint(msg, 4);
	if (status != CLASSIFY_OK && status != CLASSIFY_NEED_PROMPTS)
		bad_message("classify status");
	if (status == CLASSIFY_OK)
		*n_labels = get_count(msg, 2, PT_MAX_LABELS, "number of labels");
	return status;
}

int
ptune_wire_get_classify_answer_row(StringInfo msg, int n_labels, float4 *probs)
{
	int			label = pq_getmsgint(msg, 4);

	if (label < -1 || label >= n_labels)
		bad_message("label");
	for (int j = 0; j < n_labels; j++)
	{
		float4		p = pq_getmsgfloat4(msg);

		if (probs)
			probs[j] = p;
	}
	return label;
}

/* ---- TRAIN --------------------------------------------------------------- */

/* init and optimizer names are short words */
#define MAX_NAME_BYTES 64

void
ptune_wire_put_train(StringInfo buf, const PtuneTrainRequest *r)
{
	put_version(buf);
	put_string(buf, r->task);
	pq_sendint32(buf, r->database);
	pq_sendint32(buf, r->user);
	pq_sendint32(buf, r->prompt_length);
	put_string(buf, r->init);
	put_string(buf, r->optimizer);
	pq_sendfloat8(buf, r->learning_rate);
	pq_sendint32(buf, r->batch_size);
	pq_sendint32(buf, r->epochs);
	pq_sendint64(buf, r->max_steps);
	pq_sendfloat8(buf, r->validation_fraction);
	pq_sendint32(buf, r->eval_every);
	pq_sendint32(buf, r->patience);
	pq_sendint32(buf, r->ensemble_size);
	pq_sendint32(buf, r->max_input_tokens);
	pq_sendint64(buf, r->seed);
	pq_sendfloat8(buf, r->max_grad_norm);
	pq_sendfloat8(buf, r->weight_decay);
	pq_sendint32(buf, r->min_dim_size_to_factor);
	pq_sendint64(buf, r->adafactor_start_step);
	pq_sendint32(buf, r->scoring);
	pq_sendint32(buf, r->objective);
}

/* The engine checks the options' ranges (pt_trainer_open); this, the format. */
void
ptune_wire_get_train(StringInfo msg, PtuneTrainRequest *r)
{
	check_version(msg);
	r->task = get_string(msg, PT_MAX_TASK_NAME_BYTES, "task name");
	r->database = (Oid) pq_getmsgint(msg, 4);
	r->user = (Oid) pq_getmsgint(msg, 4);
	r->prompt_length = pq_getmsgint(msg, 4);
	r->init = get_string(msg, MAX_NAME_BYTES, "init");
	r->optimizer = get_string(msg, MAX_NAME_BYTES, "optimizer");
	r->learning_rate = pq_getmsgfloat8(msg);
	r->batch_size = pq_getmsgint(msg, 4);
	r->epochs = pq_getmsgint(msg, 4);
	r->max_steps = pq_getmsgint64(msg);
	r->validation_fraction = pq_getmsgfloat8(msg);
	r->eval_every = pq_getmsgint(msg, 4);
	r->patience = pq_getmsgint(msg, 4);
	r->ensemble_size = pq_getmsgint(msg, 4);
	r->max_input_tokens = pq_getmsgint(msg, 4);
	r->seed = pq_getmsgint64(msg);
	r->max_grad_norm = pq_getmsgfloat8(msg);
	r->weight_decay = pq_getmsgfloat8(msg);
	r->min_dim_size_to_factor = pq_getmsgint(msg, 4);
	r->adafactor_start_step = pq_getmsgint64(msg);
	r->scoring = pq_getmsgint(msg, 4);
	r->objective = pq_getmsgint(msg, 4);
	pq_getmsgend(msg);
	check_scoring(r->scoring);
	if (r->objective != PT_OBJECTIVE_CLASSIFICATION && r->objective != PT_OBJECTIVE_GENERATION)
		bad_message("objective");
}

/* Most rows in one chunk (the backend sends at most CHUNK_ROWS). */
#define MAX_CHUNK_ROWS 1000000

void
ptune_wire_put_row(StringInfo body, const char *text, int text_len, const char *label, int label_len)
{
	put_bytes(body, text, text_len);
	put_bytes(body, label, label_len);
}

void
ptune_wire_put_chunk(StringInfo chunk, int kind, int n_rows, StringInfo body)
{
	pq_sendint32(chunk, kind);
	pq_sendint32(chunk, n_rows);
	appendBinaryStringInfo(chunk, body->data, body->len);
}

int
ptune_wire_get_chunk(StringInfo msg, int *kind)
{
	*kind = pq_getmsgint(msg, 4);
	if (*kind != CHUNK_TRAINING_ROWS && *kind != CHUNK_HELD_OUT_ROWS)
		bad_message("chunk kind");
	return get_count(msg, 0, MAX_CHUNK_ROWS, "number of training rows");
}

char *
ptune_wire_get_row(StringInfo msg, int objective, const char **text, int *text_len)
{
	*text = get_bytes(msg, PT_MAX_FIELD_BYTES, text_len, "text length");
	if (objective == PT_OBJECTIVE_GENERATION)
		return get_string(msg, PT_MAX_FIELD_BYTES, "target text length");
	return get_string(msg, PT_MAX_LABEL_BYTES, "label length");
}

void
ptune_wire_get_chunk_end(StringInfo msg)
{
	pq_getmsgend(msg);
}

/* model names are directory-like names; a fingerprint is hex */
#define MAX_MODEL_NAME_BYTES 1024
#define MAX_FINGERPRINT_BYTES 64

void
ptune_wire_put_train_answer(StringInfo buf, const PtuneTrainAnswer *a)
{
	put_version(buf);
	pq_sendint32(buf, a->train_rows);
	pq_sendint32(buf, a->val_rows);
	pq_sendint32(buf, a->test_rows);
	pq_sendint32(buf, a->skipped);
	pq_sendint64(buf, a->steps);
	pq_sendfloat8(buf, a->seconds);
	pq_sendfloat8(buf, a->final_loss);
	pq_sendfloat8(buf, a->selection_accuracy);
	pq_sendfloat8(buf, a->test_accuracy);
	pq_sendfloat8(buf, a->rows_per_second);
	pq_sendint32(buf, a->n_labels);
	for (int j = 0; j < a->n_labels; j++)
		put_string(buf, a->labels[j]);
	pq_sendint32(buf, a->n_prompts);
	for (int k = 0; k < a->n_prompts; k++)
		put_bytes(buf, VARDATA_ANY(a->prompts[k]), VARSIZE_ANY_EXHDR(a->prompts[k]));
	put_string(buf, a->model_name);
	put_string(buf, a->fingerprint);
	pq_sendint32(buf, a->d_model);
}

void
ptune_wire_get_train_answer(StringInfo msg, PtuneTrainAnswer *a)
{
	check_version(msg);
	a->train_rows = pq_getmsgint(msg, 4);
	a->val_rows = pq_getmsgint(msg, 4);
	a->test_rows = pq_getmsgint(msg, 4);
	a->skipped = pq_getmsgint(msg, 4);
	a->steps = pq_getmsgint64(msg);
	a->seconds = pq_getmsgfloat8(msg);
	a->final_loss = pq_getmsgfloat8(msg);
	a->selection_accuracy = pq_getmsgfloat8(msg);
	a->test_accuracy = pq_getmsgfloat8(msg);
	a->rows_per_second = pq_getmsgfloat8(msg);
	/* 0: a generation prompt, which has no label set */
	a->n_labels = get_count(msg, 0, PT_MAX_LABELS, "number of labels");
	if (a->n_labels == 1)
		bad_message("number of labels");
	a->labels = palloc(sizeof(char *) * (a->n_labels + 1));
	for (int j = 0; j < a->n_labels; j++)
		a->labels[j] = get_string(msg, PT_MAX_LABEL_BYTES, "label length");
	a->n_prompts = get_count(msg, 1, PT_MAX_ENSEMBLE_SIZE, "number of prompts");
	a->prompts = palloc(sizeof(bytea *) * a->n_prompts);
	for (int k = 0; k < a->n_prompts; k++)
	{
		int			len;
		const char *blob = get_bytes(msg, PT_MAX_FIELD_BYTES, &len, "prompt size");

		a->prompts[k] = palloc(VARHDRSZ + len);
		SET_VARSIZE(a->prompts[k], VARHDRSZ + len);
		memcpy(VARDATA(a->prompts[k]), blob, len);
	}
	a->model_name = get_string(msg, MAX_MODEL_NAME_BYTES, "model name");
	a->fingerprint = get_string(msg, MAX_FINGERPRINT_BYTES, "model fingerprint");
	a->d_model = pq_getmsgint(msg, 4);
	pq_getmsgend(msg);
}

/* ---- GENERATE ------------------------------------------------------------ */

void
ptune_wire_put_generate(StringInfo buf, int max_new_tokens, int num_beams, int max_input_tokens,
						const uint8 *key, const bytea *blob,
						int n_texts, const char *const *texts, const int *lens)
{
	put_version(buf);
	pq_sendint32(buf, max_new_tokens);
	pq_sendint32(buf, num_beams);
	pq_sendint32(buf, max_input_tokens);
	pq_sendint32(buf, key != NULL);
	if (key)
		put_prompt_ref(buf, key, blob);
	put_texts(buf, n_texts, texts, lens);
}

void
ptune_wire_get_generate_head(StringInfo msg, int *max_new_tokens, int *num_beams,
							 int *max_input_tokens, bool *has_prompt)
{
	int			prompt;

	check_version(msg);
	*max_new_tokens = pq_getmsgint(msg, 4);
	*num_beams = pq_getmsgint(msg, 4);
	*max_input_tokens = get_count(msg, PT_MIN_INPUT_TOKENS, PT_MAX_INPUT_TOKENS, "max_input_tokens");
	prompt = pq_getmsgint(msg, 4);
	if (prompt != 0 && prompt != 1)
		bad_message("prompt flag");
	*has_prompt = prompt == 1;
}

const uint8 *
ptune_wire_get_generate_prompt(StringInfo msg, const char **blob, int *len)
{
	return get_prompt_ref(msg, blob, len);
}

int
ptune_wire_get_generate_text_count(StringInfo msg)
{
	return get_count(msg, 0, MAX_REQUEST_TEXTS, "number of texts");
}

const char *
ptune_wire_get_generate_text(StringInfo msg, int *len)
{
	return get_nullable_bytes(msg, len, "text length");
}

void
ptune_wire_put_generate_answer_head(StringInfo buf, int status)
{
	put_version(buf);
	pq_sendint32(buf, status);
}

void
ptune_wire_put_generate_answer_text(StringInfo buf, const char *text)
{
	if (text == NULL)
		pq_sendint32(buf, -1);
	else
		put_string(buf, text);
}

int
ptune_wire_get_generate_answer_head(StringInfo msg)
{
	int			status;

	check_version(msg);
	status = pq_getmsgint(msg, 4);
	if (status != GENERATE_OK && status != GENERATE_NEED_PROMPT)
		bad_message("generate status");
	return status;
}

char *
ptune_wire_get_generate_answer_text(StringInfo msg)
{
	int			len;
	const char *bytes = get_nullable_bytes(msg, &len, "generated text length");
	char	   *s;

	if (bytes == NULL)
		return NULL;
	s = palloc(len + 1);
	memcpy(s, bytes, len);
	s[len] = '\0';
	return s;
}

/* ---- EXPLAIN ------------------------------------------------------------- */

/* a vocabulary piece: a few bytes of sentencepiece text */
#define MAX_PIECE_BYTES 1024

void
ptune_wire_put_explain(StringInfo buf, int k, const bytea *blob)
{
	put_version(buf);
	pq_sendint32(buf, k);
	put_bytes(buf, VARDATA_ANY(blob), VARSIZE_ANY_EXHDR(blob));
}

const char *
ptune_wire_get_explain(StringInfo msg, int *k, int *len)
{
	const char *blob;

	check_version(msg);
	*k = get_count(msg, 1, PT_MAX_EXPLAIN_K, "k");
	blob = get_bytes(msg, PT_MAX_FIELD_BYTES, len, "prompt size");
	if (*len == 0)
		bad_message("prompt size");
	return blob;
}

void
ptune_wire_put_explain_answer_head(StringInfo buf, int rows, int k)
{
	put_version(buf);
	pq_sendint32(buf, rows);
	pq_sendint32(buf, k);
}

void
ptune_wire_put_explain_piece(StringInfo buf, const char *piece, double similarity)
{
	put_string(buf, piece);
	pq_sendfloat8(buf, similarity);
}

void
ptune_wire_get_explain_answer_head(StringInfo msg, int *rows, int *k)
{
	check_version(msg);
	*rows = get_count(msg, 1, PT_PROMPT_MAX_LENGTH, "prompt length");
	*k = get_count(msg, 1, PT_MAX_EXPLAIN_K, "k");
}

char *
ptune_wire_get_explain_piece(StringInfo msg, double *similarity)
{
	char	   *piece = get_string(msg, MAX_PIECE_BYTES, "piece length");

	*similarity = pq_getmsgfloat8(msg);
	return piece;
}
