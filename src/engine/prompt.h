/*
 * prompt.h - a soft prompt: P x d_model learned vectors, the labels they were
 * trained for, and the model they belong to; its binary format and its
 * initialisation.
 *
 * Binary format (little-endian), version 1 - what the database stores as
 * bytea and the CLI writes to files:
 *
 *   off  size  field
 *   0    8     magic "PTPROMPT"
 *   8    4     format version (1)
 *   12   4     total size in bytes, including this header and the CRC
 *   16   4     prompt length P
 *   20   4     d_model
 *   24   4     dtype of the values (1 = float32)
 *   28   4     max input tokens (with EOS)
 *   32   16    fingerprint of the model (see model.h)
 *   48   4     number of labels L (0: a generation prompt, see
 *                 PtObjectiveKind; otherwise 2 to PT_MAX_LABELS)
 *   52   4     bytes of metadata JSON M (0 if none)
 *   56   ...   L labels, each a 4-byte length then UTF-8 bytes
 *        M     metadata JSON (training settings; informational)
 *        P*d*4 the values, row-major
 *        4     CRC-32 of every byte before it
 *
 * Several prompts (an ensemble) are simply concatenated in a file.
 */
#ifndef PT_PROMPT_H
#define PT_PROMPT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "model.h"
#include "ptune_limits.h"
#include "rng.h"
#include "task.h"

#define PT_PROMPT_MAGIC "PTPROMPT"
#define PT_PROMPT_VERSION 1
#define PT_PROMPT_HEADER_BYTES 56

/* byte offsets of the fixed header's fields (the table above) */
enum
{
	PT_PROMPT_OFF_VERSION = 8,
	PT_PROMPT_OFF_TOTAL = 12,
	PT_PROMPT_OFF_LENGTH = 16,
	PT_PROMPT_OFF_D_MODEL = 20,
	PT_PROMPT_OFF_DTYPE = 24,
	PT_PROMPT_OFF_MAX_INPUT_TOKENS = 28,
	PT_PROMPT_OFF_FINGERPRINT = 32,
	PT_PROMPT_OFF_N_LABELS = 48,
	PT_PROMPT_OFF_META_BYTES = 52,
};

/* The fixed header of an encoded prompt, as stored (nothing checked). */
typedef struct PtPromptHeader
{
	uint32_t	version;
	uint32_t	total;			/* bytes, header and CRC included */
	uint32_t	length;			/* P */
	uint32_t	d_model;
	uint32_t	dtype;			/* 1 = float32 */
	uint32_t	max_input_tokens;
	const uint8_t *fingerprint; /* PT_FINGERPRINT_BYTES, inside the data */
	uint32_t	n_labels;
	uint32_t	meta_bytes;
} PtPromptHeader;

static inline uint32_t
pt_prompt_u32_at(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t) p[3] << 24;
}

/*
 * Reads the fixed header of an encoded prompt; false where data is shorter
 * than the header or does not start with the magic.  It checks no field:
 * pt_prompt_decode() does, and so does the extension before it stores a
 * prompt it did not make.  Inline because the extension's backends link
 * none of the engine's code, yet read prompt headers (this is the only
 * place that knows the offsets).
 */
static inline int
pt_prompt_read_header(const uint8_t *data, size_t len, PtPromptHeader *h)
{
	if (len < PT_PROMPT_HEADER_BYTES || memcmp(data, PT_PROMPT_MAGIC, 8) != 0)
		return 0;
	h->version = pt_prompt_u32_at(data + PT_PROMPT_OFF_VERSION);
	h->total = pt_prompt_u32_at(data + PT_PROMPT_OFF_TOTAL);
	h->length = pt_prompt_u32_at(data + PT_PROMPT_OFF_LENGTH);
	h->d_model = pt_prompt_u32_at(data + PT_PROMPT_OFF_D_MODEL);
	h->dtype = pt_prompt_u32_at(data + PT_PROMPT_OFF_DTYPE);
	h->max_input_tokens = pt_prompt_u32_at(data + PT_PROMPT_OFF_MAX_INPUT_TOKENS);
	h->fingerprint = data + PT_PROMPT_OFF_FINGERPRINT;
	h->n_labels = pt_prompt_u32_at(data + PT_PROMPT_OFF_N_LABELS);
	h->meta_bytes = pt_prompt_u32_at(data + PT_PROMPT_OFF_META_BYTES);
	return 1;
}

/*
 * The max input tokens of an encoded prompt, read from its header alone; 0
 * where data is too short or the value is out of range.  The backends clip
 * texts by it; pt_prompt_decode() checks the whole prompt.
 */
static inline int
pt_prompt_peek_max_input_tokens(const uint8_t *data, size_t len)
{
	uint32_t	v;

	if (len < PT_PROMPT_OFF_MAX_INPUT_TOKENS + 4)
		return 0;
	v = pt_prompt_u32_at(data + PT_PROMPT_OFF_MAX_INPUT_TOKENS);
	return v >= PT_MIN_INPUT_TOKENS && v <= PT_MAX_INPUT_TOKENS ? (int) v : 0;
}

typedef struct PtPrompt
{
	int			length;			/* P */
	int			d_model;
	float	   *values;			/* [P, d_model] */
	int			max_input_tokens;
	uint8_t		fingerprint[PT_FINGERPRINT_BYTES];
	int			n_labels;		/* 0: a generation prompt (no label set) */
	char	  **labels;
	char	   *metadata;		/* JSON text or NULL */
} PtPrompt;

typedef enum PtInit
{
	PT_INIT_CLASS_LABELS,		/* label embeddings first, then sampled vocabulary */
	PT_INIT_SAMPLED_VOCAB,		/* embeddings of frequent pieces */
	PT_INIT_RANDOM_UNIFORM		/* uniform in [-0.5, 0.5] */
} PtInit;

/* A prompt of `length` rows for task on model m, initialised by `init`. */
PtPrompt   *pt_prompt_new(const PtModel *m, const PtTask *task, int length, PtInit init,
						  PtRng *rng);
PtPrompt   *pt_prompt_copy(const PtPrompt *p);
void		pt_prompt_free(PtPrompt *p);

/* Serialises into a malloc'ed buffer. */
int			pt_prompt_encode(const PtPrompt *p, uint8_t **out, size_t *len);

/*
 * Parses one prompt from data[0..len).  Every field is checked (sizes, counts,
 * CRC, finite values), so corrupted or truncated input is an error, never an
 * out-of-bounds read.  *used receives the bytes consumed (may be NULL).
 */
PtPrompt   *pt_prompt_decode(const uint8_t *data, size_t len, size_t *used);

/* What p was trained for: a prompt without labels is a generation prompt. */
static inline PtObjectiveKind
pt_prompt_objective(const PtPrompt *p)
{
	return p->n_labels == 0 ? PT_OBJECTIVE_GENERATION : PT_OBJECTIVE_CLASSIFICATION;
}

/* An error (PT_ERR_MISMATCH) unless p was trained on model m. */
int			pt_prompt_check_model(const PtPrompt *p, const PtModel *m);

/* Files holding one or more prompts (an ensemble). */
int			pt_prompt_file_write(const char *path, PtPrompt *const *prompts, int n);
PtPrompt  **pt_prompt_file_read(const char *path, int *n);
void		pt_prompt_array_free(PtPrompt **prompts, int n);

const char *pt_init_name(PtInit init);
int			pt_init_parse(const char *name, PtInit *out);

#endif
