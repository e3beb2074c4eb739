/*
 * wire.h - the messages exchanged with the model worker: each one's encoder
 * and decoder side by side (wire.c), linked into both ptune.so (the backends)
 * and ptune_worker.so (the worker), so the two sides cannot drift apart.
 *
 * Messages are written with PostgreSQL's pqformat functions and read back
 * with pq_getmsg*, which raise an ERROR instead of reading past the end: a
 * malformed message is an ERROR, never an out-of-bounds read.  Strings and
 * byte strings are an int32 length and the bytes.  Every request and answer
 * begins with PTUNE_WIRE_VERSION; a decoder refuses any other (a backend
 * and a worker of different ptune builds, until the server restarts).
 *
 * CLASSIFY request:  version; int32 scoring; int32 n_prompts;
 *                      n_prompts x (PROMPT_KEY_BYTES key; int32 blob_len; blob_len bytes)
 *                      (blob_len 0: the worker should have it cached by key)
 *                    int32 n_texts; n_texts x (int32 len or -1 for NULL; bytes)
 *           answer:  version; int32 status (CLASSIFY_OK or CLASSIFY_NEED_PROMPTS);
 *                    with CLASSIFY_OK: int32 n_labels;
 *                      n_texts x (int32 label or -1; n_labels x float4)
 *
 * TRAIN request:     version; the options (PtuneTrainRequest, in its order; the
 *                    last, int32 objective, a PtObjectiveKind).
 *                    Then the rows in chunks (ptune_call_send), each: int32 kind
 *                    (CHUNK_TRAINING_ROWS or CHUNK_HELD_OUT_ROWS); int32 n_rows;
 *                    n_rows x (string text; string label), the label being the
 *                    row's target text for objective generation.  The last chunk
 *                    (flagged by the slot) says that all rows were sent.
 *        answer:     version; PtuneTrainAnswer in its order (metrics, labels:
 *                    none for generation, the prompts as blobs, the model's identity)
 *
 * GENERATE request:  version; int32 max_new_tokens; int32 num_beams;
 *                    int32 max_input_tokens; int32 has_prompt (0: the frozen
 *                    model alone; 1: then PROMPT_KEY_BYTES key; int32 blob_len;
 *                    blob_len bytes, 0 when the worker should have it cached);
 *                    int32 n_texts; n_texts x (int32 len or -1 for NULL; bytes)
 *           answer:  version; int32 status (GENERATE_OK or GENERATE_NEED_PROMPT);
 *                    with GENERATE_OK: n_texts x (int32 len or -1 for NULL;
 *                    the generated text)
 *
 * EXPLAIN request:   version; int32 k; blob
 *         answer:    version; int32 P; int32 k; P*k x (string piece; float8 similarity)
 */
#ifndef PTUNE_WIRE_H
#define PTUNE_WIRE_H

#include "postgres.h"

#include "common/sha2.h"
#include "lib/stringinfo.h"

#include "ptune_limits.h"

/*
 * A prompt blob's name in the worker's cache: its SHA-256.  A cryptographic
 * hash, because a request naming a cached prompt by key alone gets that
 * prompt: a key that two blobs shared would let one task's requests run with
 * another's prompt.
 */
#define PROMPT_KEY_BYTES PG_SHA256_DIGEST_LENGTH

void		ptune_prompt_key(const char *blob, size_t len, uint8 *key);

/* Raise it with any change to a message below. */
#define PTUNE_WIRE_VERSION 2

#define CLASSIFY_OK 0
#define CLASSIFY_NEED_PROMPTS 1
#define GENERATE_OK 0
#define GENERATE_NEED_PROMPT 1

/* Chunk kinds of a training request */
#define CHUNK_TRAINING_ROWS 0
#define CHUNK_HELD_OUT_ROWS 1

/* ---- CLASSIFY ------------------------------------------------------------ */

/*
 * texts[i] NULL: a NULL input (its answer row is label -1); blobs NULL or
 * blobs[k] NULL: prompt k named by its key only.
 */
void		ptune_wire_put_classify(StringInfo buf, int scoring, int n_prompts,
									const uint8 (*keys)[PROMPT_KEY_BYTES], bytea *const *blobs,
									int n_texts, const char *const *texts, const int *lens);
/* The decoder reads it piece by piece, as the worker looks each prompt up. */
void		ptune_wire_get_classify_head(StringInfo msg, int *scoring, int *n_prompts);
const uint8 *ptune_wire_get_classify_prompt(StringInfo msg, const char **blob, int *len);
int			ptune_wire_get_classify_text_count(StringInfo msg);
const char *ptune_wire_get_classify_text(StringInfo msg, int *len);

/* The answer: a head, then one row per text (probs NULL: zeros). */
void		ptune_wire_put_classify_answer_head(StringInfo buf, int status, int n_labels);
void		ptune_wire_put_classify_answer_row(StringInfo buf, int label, const float *probs, int n_labels);
/* Returns the status; *n_labels is set with CLASSIFY_OK. */
int			ptune_wire_get_classify_answer_head(StringInfo msg, int *n_labels);
/* probs may be NULL (read and dropped). */
int			ptune_wire_get_classify_answer_row(StringInfo msg, int n_labels, float4 *probs);

/* ---- TRAIN --------------------------------------------------------------- */

typedef struct PtuneTrainRequest
{
	char	   *task;
	Oid			database;
	Oid			user;
	int			prompt_length;
	char	   *init;			/* a pt_init_name() */
	char	   *optimizer;		/* "adafactor" or "adam" */
	double		learning_rate;
	int			batch_size;
	int			epochs;
	int64		max_steps;		/* 0: none */
	double		validation_fraction;
	int			eval_every;		/* 0: automatic */
	int			patience;		/* 0: off */
	int			ensemble_size;
	int			max_input_tokens;
	int64		seed;
	double		max_grad_norm;	/* < 0: the optimizer's default */
	double		weight_decay;	/* < 0: the optimizer's default */
	int			min_dim_size_to_factor;
	int64		adafactor_start_step;
	int			scoring;		/* the validation's PtScoring */
	int			objective;		/* PtObjectiveKind: for generation a row's label is its target text */
} PtuneTrainRequest;

void		ptune_wire_put_train(StringInfo buf, const PtuneTrainRequest *r);
void		ptune_wire_get_train(StringInfo msg, PtuneTrainRequest *r);

/* A chunk of rows: rows go into body one by one, then body into a chunk. */
void		ptune_wire_put_row(StringInfo body, const char *text, int text_len,
							   const char *label, int label_len);
void		ptune_wire_put_chunk(StringInfo chunk, int kind, int n_rows, StringInfo body);
/* Returns n_rows; *kind is checked. */
int			ptune_wire_get_chunk(StringInfo msg, int *kind);
/*
 * The text is read in place (*text_len bytes, no NUL); the label is a palloc'd
 * string of at most PT_MAX_LABEL_BYTES, or for objective generation a target
 * text (the backend cuts it to PT_MAX_TARGET_TOKENS tokens' worth of bytes).
 */
char	   *ptune_wire_get_row(StringInfo msg, int objective, const char **text, int *text_len);
/* After the last row: an ERROR if bytes are left over. */
void		ptune_wire_get_chunk_end(StringInfo msg);

typedef struct PtuneTrainAnswer
{
	int			train_rows,
				val_rows,
				test_rows,
				skipped;
	int64		steps;
	double		seconds,
				final_loss,
				selection_accuracy,	/* on the validation rows, which chose the checkpoint */
				test_accuracy,	/* on the held-out rows (NaN if none) */
				rows_per_second;
	int			n_labels;
	char	  **labels;
	int			n_prompts;
	bytea	  **prompts;		/* encoded PtPrompts (src/engine/prompt.h) */
	char	   *model_name;
	char	   *fingerprint;	/* hex */
	int			d_model;
} PtuneTrainAnswer;

void		ptune_wire_put_train_answer(StringInfo buf, const PtuneTrainAnswer *a);
void		ptune_wire_get_train_answer(StringInfo msg, PtuneTrainAnswer *a);

/* ---- GENERATE ------------------------------------------------------------ */

/*
 * key NULL: the frozen model alone; blob NULL: the prompt named by its key
 * only.  texts[i] NULL: a NULL input (its answer is NULL); lens[i] its bytes.
 */
void		ptune_wire_put_generate(StringInfo buf, int max_new_tokens, int num_beams, int max_input_tokens,
									const uint8 *key, const bytea *blob,
									int n_texts, const char *const *texts, const int *lens);
/*
 * The decoder reads it piece by piece: the head (max_input_tokens checked;
 * max_new_tokens and num_beams are the engine's to check, whose message names
 * the option), the prompt where *has_prompt, then the texts.
 */
void		ptune_wire_get_generate_head(StringInfo msg, int *max_new_tokens, int *num_beams,
										 int *max_input_tokens, bool *has_prompt);
/* Returns the key; *blob is NULL where the request names the prompt by key only. */
const uint8 *ptune_wire_get_generate_prompt(StringInfo msg, const char **blob, int *len);
int			ptune_wire_get_generate_text_count(StringInfo msg);
/* NULL for a NULL input; else the text, read in place. */
const char *ptune_wire_get_generate_text(StringInfo msg, int *len);

/* The answer: a head, then (GENERATE_OK) one text per input, NULL for a NULL input. */
void		ptune_wire_put_generate_answer_head(StringInfo buf, int status);
void		ptune_wire_put_generate_answer_text(StringInfo buf, const char *text);
int			ptune_wire_get_generate_answer_head(StringInfo msg);
/* A palloc'd string, or NULL. */
char	   *ptune_wire_get_generate_answer_text(StringInfo msg);

/* ---- EXPLAIN ------------------------------------------------------------- */

void		ptune_wire_put_explain(StringInfo buf, int k, const bytea *blob);
/* Returns the blob (read in place, *len bytes); k is checked. */
const char *ptune_wire_get_explain(StringInfo msg, int *k, int *len);

void		ptune_wire_put_explain_answer_head(StringInfo buf, int rows, int k);
void		ptune_wire_put_explain_piece(StringInfo buf, const char *piece, double similarity);
void		ptune_wire_get_explain_answer_head(StringInfo msg, int *rows, int *k);
char	   *ptune_wire_get_explain_piece(StringInfo msg, double *similarity);

#endif
