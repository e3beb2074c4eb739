/*
 * prompt.c - soft prompts: initialisation and the binary format (see prompt.h).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "error.h"
#include "prompt.h"

/* the paper samples from the 5,000 most frequent pieces: sentencepiece ids are by frequency */
#define FREQUENT_PIECES 5000

static const char *init_names[] = {"class_labels", "sampled_vocab", "random_uniform"};

const char *
pt_init_name(PtInit init)
{
	return init_names[init];
}

int
pt_init_parse(const char *name, PtInit *out)
{
	for (int i = 0; i < 3; i++)
		if (strcmp(name, init_names[i]) == 0)
		{
			*out = (PtInit) i;
			return 0;
		}
	return pt_fail(PT_ERR_ARGUMENT, "unknown prompt initialisation \"%s\" "
				   "(use class_labels, sampled_vocab or random_uniform)", name);
}

void
pt_prompt_free(PtPrompt *p)
{
	if (p == NULL)
		return;
	for (int i = 0; i < p->n_labels; i++)
		free(p->labels[i]);
	free(p->labels);
	free(p->values);
	free(p->metadata);
	free(p);
}

void
pt_prompt_array_free(PtPrompt **prompts, int n)
{
	for (int i = 0; i < n; i++)
		pt_prompt_free(prompts[i]);
	free(prompts);
}

/* Allocates a prompt with room for its values and labels, fields zeroed. */
static PtPrompt *
prompt_alloc(int length, int d_model, int n_labels)
{
	PtPrompt   *p = pt_calloc(1, sizeof(PtPrompt));

	if (p == NULL)
		return NULL;
	p->length = length;
	p->d_model = d_model;
	p->values = pt_calloc((size_t) length * d_model, sizeof(float));
	p->labels = pt_calloc(n_labels, sizeof(char *));
	if (p->values == NULL || p->labels == NULL)
	{
		pt_prompt_free(p);
		return NULL;
	}
	return p;
}

/* The embedding row of a random frequent, non-special vocabulary piece. */
static void
sample_vocab_row(const PtModel *m, PtRng *rng, float *out)
{
	int			pieces = pt_tokenizer_vocab_size(m->tokenizer);
	int			limit = pieces < FREQUENT_PIECES + 3 ? pieces : FREQUENT_PIECES + 3;
	int32_t		id;

	do
		id = (int) pt_rng_below(rng, (uint64_t) limit);
	while (pt_tokenizer_is_special(m->tokenizer, id));
	pt_model_embed_rows(m, &id, 1, out);
}

PtPrompt *
pt_prompt_new(const PtModel *m, const PtTask *task, int length, PtInit init, PtRng *rng)
{
	int			d = m->cfg.d_model;
	PtPrompt   *p;

	if (length < 1 || length > PT_PROMPT_MAX_LENGTH)
	{
		pt_fail(PT_ERR_ARGUMENT, "prompt length must be between 1 and %d (got %d)",
				PT_PROMPT_MAX_LENGTH, length);
		return NULL;
	}
	p = prompt_alloc(length, d, task->n_labels);
	if (p == NULL)
		return NULL;
	memcpy(p->fingerprint, m->fingerprint, PT_FINGERPRINT_BYTES);
	p->max_input_tokens = task->max_input_tokens;
	for (int j = 0; j < task->n_labels; j++)
	{
		p->labels[j] = pt_strdup(task->labels[j].text);
		if (p->labels[j] == NULL)
		{
			pt_prompt_free(p);
			return NULL;
		}
		p->n_labels = j + 1;
	}

	for (int i = 0; i < length; i++)
	{
		float	   *row = p->values + (size_t) i * d;

		if (init == PT_INIT_RANDOM_UNIFORM)
			for (int k = 0; k < d; k++)
				row[k] = (float) (pt_rng_uniform(rng) - 0.5);
		else if (init == PT_INIT_CLASS_LABELS && i < task->n_labels &&
				 task->labels[i].n_target > 1)
		{
			/* the mean embedding of the label's tokens (without EOS), as in the paper */
			const PtLabel *l = &task->labels[i];
			int			n = l->n_target - 1;
			float		e[d];	/* one token's embedding row */

			for (int t = 0; t < n; t++)
			{
				pt_model_embed_rows(m, &l->target[t], 1, e);
				for (int k = 0; k < d; k++)
					row[k] += e[k] / (float) n;
			}
		}
		else
			sample_vocab_row(m, rng, row);
	}
	return p;
}

PtPrompt *
pt_prompt_copy(const PtPrompt *src)
{
	PtPrompt   *p = prompt_alloc(src->length, src->d_model, src->n_labels);

	if (p == NULL)
		return NULL;
	memcpy(p->values, src->values, sizeof(float) * src->length * src->d_model);
	memcpy(p->fingerprint, src->fingerprint, PT_FINGERPRINT_BYTES);
	p->max_input_tokens = src->max_input_tokens;
	for (int j = 0; j < src->n_labels; j++)
	{
		p->labels[j] = pt_strdup(src->labels[j]);
		if (p->labels[j] == NULL)
		{
			pt_prompt_free(p);
			return NULL;
		}
		p->n_labels = j + 1;
	}
	if (src->metadata && (p->metadata = pt_strdup(src->metadata)) == NULL)
	{
		pt_prompt_free(p);
		return NULL;
	}
	return p;
}

/* ---- encoding ------------------------------------------------------------ */

static void
put_u32(uint8_t *dst, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		dst[i] = (uint8_t) (v >> (8 * i));
}

static uint32_t
get_u32(const uint8_t *src)
{
	return (uint32_t) src[0] | (uint32_t) src[1] << 8 | (uint32_t) src[2] << 16 | (uint32_t) src[3] << 24;
}

int
pt_prompt_encode(const PtPrompt *p, uint8_t **out, size_t *len)
{
	size_t		meta = p->metadata ? strlen(p->metadata) : 0;
	size_t		total = PT_PROMPT_HEADER_BYTES + meta + (size_t) p->length * p->d_model * 4 + 4;
	uint8_t    *buf,
			   *w;

	for (int j = 0; j < p->n_labels; j++)
		total += 4 + strlen(p->labels[j]);
	if (total > UINT32_MAX)
		return pt_fail(PT_ERR_ARGUMENT, "prompt is too large to encode");
	buf = pt_malloc(total);
	if (buf == NULL)
		return -1;
	memcpy(buf, PT_PROMPT_MAGIC, 8);
	put_u32(buf + PT_PROMPT_OFF_VERSION, PT_PROMPT_VERSION);
	put_u32(buf + PT_PROMPT_OFF_TOTAL, (uint32_t) total);
	put_u32(buf + PT_PROMPT_OFF_LENGTH, (uint32_t) p->length);
	put_u32(buf + PT_PROMPT_OFF_D_MODEL, (uint32_t) p->d_model);
	put_u32(buf + PT_PROMPT_OFF_DTYPE, 1);
	put_u32(buf + PT_PROMPT_OFF_MAX_INPUT_TOKENS, (uint32_t) p->max_input_tokens);
	memcpy(buf + PT_PROMPT_OFF_FINGERPRINT, p->fingerprint, PT_FINGERPRINT_BYTES);
	put_u32(buf + PT_PROMPT_OFF_N_LABELS, (uint32_t) p->n_labels);
	put_u32(buf + PT_PROMPT_OFF_META_BYTES, (uint32_t) meta);
	w = buf + PT_PROMPT_HEADER_BYTES;
	for (int j = 0; j < p->n_labels; j++)
	{
		size_t		n = strlen(p->labels[j]);

		put_u32(w, (uint32_t) n);
		memcpy(w + 4, p->labels[j], n);
		w += 4 + n;
	}
	if (meta)
		memcpy(w, p->metadata, meta);
	w += meta;
	for (size_t i = 0; i < (size_t) p->length * p->d_model; i++)
	{
		uint32_t	bits;

		memcpy(&bits, &p->values[i], 4);
		put_u32(w, bits);
		w += 4;
	}
	put_u32(w, (uint32_t) crc32(0L, buf, (uInt) (w - buf)));
	*out = buf;
	*len = total;
	return 0;
}

/* Reads a length-prefixed string at *pos, bounded by end; NULL on failure. */
static char *
take_string(const uint8_t *data, size_t *pos, size_t end, size_t max_len, const char *what)
{
	uint32_t	n;
	char	   *s;

	if (end - *pos < 4)
	{
		pt_fail(PT_ERR_FORMAT, "prompt is truncated in its %s", what);
		return NULL;
	}
	n = get_u32(data + *pos);
	if (n > max_len || end - *pos - 4 < n)
	{
		pt_fail(PT_ERR_FORMAT, "prompt has an invalid %s length %u", what, n);
		return NULL;
	}
	if (memchr(data + *pos + 4, '\0', n) != NULL)
	{
		pt_fail(PT_ERR_FORMAT, "prompt %s contains a NUL byte", what);
		return NULL;
	}
	s = pt_malloc(n + 1);
	if (s == NULL)
		return NULL;
	memcpy(s, data + *pos + 4, n);
	s[n] = '\0';
	*pos += 4 + n;
	return s;
}

PtPrompt *
pt_prompt_decode(const uint8_t *data, size_t len, size_t *used)
{
	PtPromptHeader h;
	size_t		pos = PT_PROMPT_HEADER_BYTES,
				values_bytes;
	uint32_t	total,
				n_labels,
				meta;
	PtPrompt   *p;

	if (len < PT_PROMPT_HEADER_BYTES + 4 || !pt_prompt_read_header(data, len, &h))
	{
		pt_fail(PT_ERR_FORMAT, "not a ptune prompt (bad magic or only %zu bytes)", len);
		return NULL;
	}
	if (h.version != PT_PROMPT_VERSION)
	{
		pt_fail(PT_ERR_FORMAT, "prompt format version %u is not supported (this build reads %d)",
				h.version, PT_PROMPT_VERSION);
		return NULL;
	}
	total = h.total;
	n_labels = h.n_labels;
	meta = h.meta_bytes;
	if (total > len || total < PT_PROMPT_HEADER_BYTES + 4)
	{
		pt_fail(PT_ERR_FORMAT, "prompt is truncated: it declares %u bytes, %zu are present", total, len);
		return NULL;
	}
	if (crc32(0L, data, total - 4) != get_u32(data + total - 4))
	{
		pt_fail(PT_ERR_FORMAT, "prompt is corrupted (checksum mismatch)");
		return NULL;
	}
	if (h.dtype != 1)
	{
		pt_fail(PT_ERR_FORMAT, "prompt values have unknown dtype %u", h.dtype);
		return NULL;
	}
	if (h.length < 1 || h.length > PT_PROMPT_MAX_LENGTH || h.d_model < 1 || h.d_model > 65536 ||
		n_labels == 1 || n_labels > PT_MAX_LABELS || pt_prompt_peek_max_input_tokens(data, len) == 0)
	{
		pt_fail(PT_ERR_FORMAT, "prompt header is invalid (length %u, d_model %u, %u labels)",
				h.length, h.d_model, n_labels);
		return NULL;
	}
	p = prompt_alloc((int) h.length, (int) h.d_model, (int) n_labels);
	if (p == NULL)
		return NULL;
	p->max_input_tokens = pt_prompt_peek_max_input_tokens(data, len);
	memcpy(p->fingerprint, h.fingerprint, PT_FINGERPRINT_BYTES);

	for (uint32_t j = 0; j < n_labels; j++)
	{
		p->labels[j] = take_string(data, &pos, total - 4, PT_MAX_LABEL_BYTES, "label");
		if (p->labels[j] == NULL)
			goto fail;
		p->n_labels = (int) j + 1;
	}
	if (meta > 0)
	{
		if (meta > 1 << 20 || total - 4 - pos < meta || memchr(data + pos, '\0', meta) != NULL)
		{
			pt_fail(PT_ERR_FORMAT, "prompt metadata (%u bytes) is invalid", meta);
			goto fail;
		}
		p->metadata = pt_malloc(meta + 1);
		if (p->metadata == NULL)
			goto fail;
		memcpy(p->metadata, data + pos, meta);
		p->metadata[meta] = '\0';
		pos += meta;
	}
	values_bytes = (size_t) h.length * h.d_model * 4;
	if (total - 4 - pos != values_bytes)
	{
		pt_fail(PT_ERR_FORMAT, "prompt holds %zu bytes of values, %u x %u floats need %zu",
				total - 4 - pos, h.length, h.d_model, values_bytes);
		goto fail;
	}
	for (size_t i = 0; i < (size_t) h.length * h.d_model; i++)
	{
		uint32_t	bits = get_u32(data + pos + 4 * i);

		memcpy(&p->values[i], &bits, 4);
		if (!isfinite(p->values[i]))
		{
			pt_fail(PT_ERR_FORMAT, "prompt value %zu is not a finite number", i);
			goto fail;
		}
	}
	if (used)
		*used = total;
	return p;

fail:
	pt_prompt_free(p);
	return NULL;
}

int
pt_prompt_check_model(const PtPrompt *p, const PtModel *m)
{
	char		want[2 * PT_FINGERPRINT_BYTES + 1];
	char		have[2 * PT_FINGERPRINT_BYTES + 1];

	if (p->d_model != m->cfg.d_model)
		return pt_fail(PT_ERR_MISMATCH, "the prompt has d_model %d but the model \"%s\" has %d",
					   p->d_model, m->cfg.model_name, m->cfg.d_model);
	if (memcmp(p->fingerprint, m->fingerprint, PT_FINGERPRINT_BYTES) != 0)
	{
		for (int i = 0; i < PT_FINGERPRINT_BYTES; i++)
		{
			snprintf(want + 2 * i, 3, "%02x", p->fingerprint[i]);
			snprintf(have + 2 * i, 3, "%02x", m->fingerprint[i]);
		}
		return pt_fail(PT_ERR_MISMATCH, "the prompt was trained on model %s, not on the loaded "
					   "model \"%s\" (%s)", want, m->cfg.model_name, have);
	}
	return 0;
}

int
pt_prompt_file_write(const char *path, PtPrompt *const *prompts, int n)
{
	FILE	   *f = fopen(path, "wb");
	int			rc = 0;

	if (f == NULL)
		return pt_fail(PT_ERR_IO, "could not create \"%s\": %s", path, strerror(errno));
	for (int i = 0; i < n && rc == 0; i++)
	{
		uint8_t    *buf;
		size_t		len;

		if (pt_prompt_encode(prompts[i], &buf, &len) != 0)
			rc = -1;
		else
		{
			if (fwrite(buf, 1, len, f) != len)
				rc = pt_fail(PT_ERR_IO, "could not write \"%s\": %s", path, strerror(errno));
			free(buf);
		}
	}
	if (fclose(f) != 0 && rc == 0)
		rc = pt_fail(PT_ERR_IO, "could not write \"%s\": %s", path, strerror(errno));
	return rc;
}

PtPrompt **
pt_prompt_file_read(const char *path, int *n)
{
	FILE	   *f = fopen(path, "rb");
	uint8_t    *data = NULL;
	size_t		len = 0,
				pos = 0;
	long		size;
	PtPrompt  **out = NULL;
	int			count = 0;

	*n = 0;
	if (f == NULL)
	{
		pt_fail(PT_ERR_IO, "could not open \"%s\": %s", path, strerror(errno));
		return NULL;
	}
	if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || size > PT_MAX_FIELD_BYTES ||
		fseek(f, 0, SEEK_SET) != 0)
	{
		fclose(f);
		pt_fail(PT_ERR_FORMAT, "\"%s\" is not a prompt file (unreadable or over %d MB)", path, PT_MAX_FIELD_BYTES >> 20);
		return NULL;
	}
	len = (size_t) size;
	data = pt_malloc(len);
	if (data == NULL || fread(data, 1, len, f) != len)
	{
		fclose(f);
		free(data);
		if (data)
			pt_fail(PT_ERR_IO, "could not read \"%s\"", path);
		return NULL;
	}
	fclose(f);
	while (pos < len)
	{
		size_t		used;
		PtPrompt   *p = pt_prompt_decode(data + pos, len - pos, &used);
		PtPrompt  **grown;

		if (p == NULL)
		{
			pt_fail_context("%s", path);
			goto fail;
		}
		grown = realloc(out, sizeof(PtPrompt *) * (count + 1));
		if (grown == NULL)
		{
			pt_prompt_free(p);
			pt_fail(PT_ERR_NOMEM, "out of memory");
			goto fail;
		}
		out = grown;
		out[count++] = p;
		pos += used;
	}
	if (count == 0)
	{
		pt_fail(PT_ERR_FORMAT, "\"%s\" holds no prompt", path);
		goto fail;
	}
	free(data);
	*n = count;
	return out;

fail:
	free(data);
	pt_prompt_array_free(out, count);
	return NULL;
}
