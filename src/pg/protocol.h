/*
 * protocol.h - the payloads exchanged with the model worker.
 *
 * Payloads are written with PostgreSQL's pqformat functions (pq_sendint32,
 * ...) and read back with pq_getmsg*, which raise an error instead of
 * reading past the end: a malformed payload is an ERROR in the worker, never
 * an out-of-bounds read.  Strings are an int32 length and the bytes.
 *
 * CLASSIFY request:  int32 scoring; int32 n_prompts;
 *                      n_prompts x (PROMPT_KEY_BYTES key; int32 blob_len; blob_len bytes)
 *                      (blob_len 0: the worker should have it cached by key)
 *                    int32 n_texts; n_texts x (int32 len or -1 for NULL; bytes)
 *          response: int32 status (CLASSIFY_OK or CLASSIFY_NEED_PROMPTS);
 *                    int32 n_labels; n_texts x (int32 label or -1; n_labels x float4)
 *
 * TRAIN request:     string task; the options (see sql_train.c, worker_train.c;
 *                    then int32 scoring, validation's; last int32 objective,
 *                    PtObjectiveKind: for generation a row's "label" is its
 *                    target text).  Then the rows
 *                    in chunks (ptune_call_send), each: int32 kind (0 training
 *                    rows, 1 held-out rows); int32 n_rows; n_rows x (string
 *                    text; string label).  The last chunk (flagged by the
 *                    slot) says that all rows were sent.
 *       response:    metrics, string[] labels, the prompts as blobs, model identity
 *
 * GENERATE request: int32 max_new_tokens; int32 num_beams; int32 max_input_tokens;
 *                    int32 has_prompt (0: the frozen model alone; 1: then
 *                      PROMPT_KEY_BYTES key; int32 blob_len; blob_len bytes,
 *                      0 when the worker should have it cached);
 *                    int32 n_texts; n_texts x (int32 len or -1 for NULL; bytes)
 *          response: int32 status (GENERATE_OK or GENERATE_NEED_PROMPT);
 *                    n_texts x (int32 len or -1 for NULL; the generated text)
 *
 * EXPLAIN request:   int32 k; blob   response: int32 P; int32 k; P*k x (string piece; float8 sim)
 */
#ifndef PTUNE_PROTOCOL_H
#define PTUNE_PROTOCOL_H

#include "postgres.h"

#include "common/cryptohash.h"
#include "common/sha2.h"
#include "lib/stringinfo.h"
#include "libpq/pqformat.h"

#include "ptune_limits.h"

#define CLASSIFY_OK 0
#define CLASSIFY_NEED_PROMPTS 1
#define GENERATE_OK 0
#define GENERATE_NEED_PROMPT 1

/*
 * A prompt blob's name in the worker's cache: its SHA-256.  A cryptographic
 * hash, because a request naming a cached prompt by key alone gets that
 * prompt: a key that two blobs shared would let one task's requests run with
 * another's prompt.
 */
#define PROMPT_KEY_BYTES PG_SHA256_DIGEST_LENGTH

static inline void
ptune_prompt_key(const char *blob, size_t len, uint8 *key)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);

	if (ctx == NULL || pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) blob, len) < 0 ||
		pg_cryptohash_final(ctx, key, PROMPT_KEY_BYTES) < 0)
		elog(ERROR, "could not compute the SHA-256 of a prompt: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
}

static inline void
pq_sendstring_len(StringInfo buf, const char *s, int len)
{
	pq_sendint32(buf, len);
	pq_sendbytes(buf, s, len);
}

/* Reads a length-prefixed string into palloc'd memory (NUL-terminated). */
static inline char *
pq_getstring_len(StringInfo msg, int max_len)
{
	int			len = pq_getmsgint(msg, 4);
	char	   *s;

	if (len < 0 || len > max_len)
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR),
						errmsg("invalid string length %d in a ptune payload", len)));
	s = palloc(len + 1);
	memcpy(s, pq_getmsgbytes(msg, len), len);
	s[len] = '\0';
	return s;
}

#endif
