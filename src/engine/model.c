/*
 * model.c - load a T5 checkpoint directory into a PtModel (see model.h).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <jansson.h>
#include <xxhash.h>

#include "attention_bf16.h"
#include "dtype.h"
#include "error.h"
#include "kernel_choice.h"
#include "model.h"
#include "safetensors.h"

typedef struct Loader
{
	PtModel    *model;
	PtMath		math;			/* the form the weight matrices are kept in (see bind_linear) */
	XXH3_state_t *hash;
	char		name[256];		/* scratch for tensor names */
} Loader;

/* Reads a whole small file (config.json, spiece.model) into memory. */
static char *
read_file(const char *path, size_t *size)
{
	FILE	   *f = fopen(path, "rb");
	char	   *buf;
	long		n;

	if (f == NULL)
	{
		pt_fail(PT_ERR_IO, "could not open \"%s\": %s", path, strerror(errno));
		return NULL;
	}
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
	{
		fclose(f);
		pt_fail(PT_ERR_IO, "could not read \"%s\"", path);
		return NULL;
	}
	buf = pt_malloc((size_t) n + 1);
	if (buf && fread(buf, 1, (size_t) n, f) != (size_t) n)
	{
		free(buf);
		buf = NULL;
		pt_fail(PT_ERR_IO, "could not read \"%s\"", path);
	}
	fclose(f);
	if (buf)
	{
		buf[n] = '\0';
		*size = (size_t) n;
	}
	return buf;
}

static int
keep_owned(PtModel *m, void *p)
{
	if (m->n_owned == m->cap_owned)
	{
		int			cap = m->cap_owned ? 2 * m->cap_owned : 64;
		void	  **grown = realloc(m->owned, sizeof(void *) * cap);

		if (grown == NULL)
			return pt_fail(PT_ERR_NOMEM, "out of memory");
		m->owned = grown;
		m->cap_owned = cap;
	}
	m->owned[m->n_owned++] = p;
	return 0;
}

static const StTensor *
find_tensor(const PtModel *m, const char *name, const char **file)
{
	for (int i = 0; i < m->n_files; i++)
	{
		const StTensor *t = st_find(&m->files[i], name);

		if (t)
		{
			*file = m->files[i].path;
			return t;
		}
	}
	return NULL;
}

/*
 * Returns tensor `name`, checking that its shape is [rows, cols] (or [cols]
 * when rows == 0).  Adds it to the fingerprint.
 */
static const StTensor *
bind_tensor(Loader *ld, const char *name, int64_t rows, int64_t cols)
{
	PtModel    *m = ld->model;
	const char *file = NULL;
	const StTensor *t = find_tensor(m, name, &file);

	if (t == NULL)
	{
		pt_fail(PT_ERR_FORMAT, "%s: tensor \"%s\" is missing from the checkpoint",
				m->dir, name);
		return NULL;
	}
	if (t->dtype == PT_DTYPE_UNSUPPORTED)
	{
		pt_fail(PT_ERR_FORMAT, "%s: tensor \"%s\" has dtype %s; ptune reads F32, F16 and BF16",
				file, name, t->dtype_name);
		return NULL;
	}
	if ((rows == 0 && (t->ndim != 1 || t->shape[0] != cols)) ||
		(rows != 0 && (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols)))
	{
		char		got[64] = "";

		for (int i = 0; i < t->ndim; i++)
			snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%lld",
					 i ? ", " : "", (long long) t->shape[i]);
		if (rows == 0)
			pt_fail(PT_ERR_FORMAT, "%s: tensor \"%s\" has shape [%s], expected [%lld]",
					file, name, got, (long long) cols);
		else
			pt_fail(PT_ERR_FORMAT, "%s: tensor \"%s\" has shape [%s], expected [%lld, %lld]",
					file, name, got, (long long) rows, (long long) cols);
		return NULL;
	}

	XXH3_128bits_update(ld->hash, name, strlen(name) + 1);
	XXH3_128bits_update(ld->hash, t->dtype_name, strlen(t->dtype_name) + 1);
	XXH3_128bits_update(ld->hash, t->data, t->nbytes);
	m->n_parameters += t->numel;
	return t;
}

/* The fp32 data of tensor `name` (see bind_tensor): layer norms and position biases. */
static const float *
bind(Loader *ld, const char *name, int64_t rows, int64_t cols)
{
	const StTensor *t = bind_tensor(ld, name, rows, cols);
	float	   *converted;
	PtModel    *m = ld->model;

	if (t == NULL)
		return NULL;
	/* F32 data aligned for float access is used in place, without a copy. */
	if (t->dtype == PT_DTYPE_F32 && ((uintptr_t) t->data % sizeof(float)) == 0)
		return t->data;

	converted = pt_malloc((size_t) t->numel * sizeof(float));
	if (converted == NULL || keep_owned(m, converted) != 0)
	{
		free(converted);
		return NULL;
	}
	pt_convert_to_f32(t->dtype, t->data, (size_t) t->numel, converted);
	return converted;
}

/* Gives the pages of a tensor's data back (the mapping stays: they fault in again if read). */
static void
drop_pages(const void *data, size_t nbytes)
{
	uintptr_t	page = 4096,
				begin = ((uintptr_t) data + page - 1) & ~(page - 1),
				end = ((uintptr_t) data + nbytes) & ~(page - 1);

	if (end > begin)
		madvise((void *) begin, end - begin, MADV_DONTNEED);
}

/*
 * A weight matrix.  In fp32 its w is the mapping (aligned F32) or a converted
 * copy; in bf16 it is packed straight from the checkpoint's data and no fp32
 * copy is made, and the tensor's pages, read once for the fingerprint and
 * the packing, are given back: peak memory is the packed weights plus one
 * tensor, whatever the file's dtype.  Nothing reads them again, training's
 * backward products included (they unpack rows from the packed copy).
 */
static int
bind_linear(Loader *ld, PtLinear *lin, int out_dim, int in_dim)
{
	const StTensor *t = bind_tensor(ld, ld->name, out_dim, in_dim);

	if (t == NULL)
		return -1;
	lin->out_dim = out_dim;
	lin->in_dim = in_dim;
	lin->src = t->data;
	lin->src_dtype = t->dtype;
	if (ld->math != PT_MATH_BF16)
		return pt_linear_materialize_f32(lin);
	if (pt_linear_prepare_bf16(lin) != 0)
		return pt_fail_context("%s: tensor \"%s\"", ld->model->dir, ld->name);
	drop_pages(t->data, t->nbytes);
	return 0;
}

/*
 * The embedding [V, d] (see model.h): in fp32 its w, the mapping (aligned
 * F32) or a converted copy; in bf16 nothing but the checkpoint's mapping,
 * whose pages, read once for the fingerprint, are given back: lookups fault
 * in the rows they read.
 */
static int
bind_embedding(Loader *ld, const char *name)
{
	PtModel    *m = ld->model;
	const StTensor *t = bind_tensor(ld, name, m->cfg.vocab_size, m->cfg.d_model);

	if (t == NULL)
		return -1;
	m->embed = (PtLinear) {
		.out_dim = m->cfg.vocab_size, .in_dim = m->cfg.d_model,
		.src = t->data, .src_dtype = t->dtype
	};
	if (ld->math != PT_MATH_BF16)
		return pt_linear_materialize_f32(&m->embed);
	drop_pages(t->data, t->nbytes);
	return 0;
}

/*
 * A tied lm_head is the embedding's data under another PtLinear: in fp32 it
 * shares the embedding's w (not owned); in bf16 it is packed like any weight
 * matrix (the fp32 table is never made), forward and backward products
 * reading the packed copy only.
 */
static int
bind_tied_head(Loader *ld)
{
	PtModel    *m = ld->model;
	const PtLinear *e = &m->embed;

	m->lm_head = (PtLinear) {
		.out_dim = e->out_dim, .in_dim = e->in_dim, .w = e->w,
		.src = e->src, .src_dtype = e->src_dtype
	};
	if (ld->math != PT_MATH_BF16)
		return 0;
	if (pt_linear_prepare_bf16(&m->lm_head) != 0)
		return pt_fail_context("%s: the tied lm_head", m->dir);
	drop_pages(e->src, (size_t) e->out_dim * e->in_dim * pt_dtype_size(e->src_dtype));
	return 0;
}

/* Formats the tensor name into ld->name and binds it. */
#define BIND_VEC(ld, dst, len, ...) \
	(snprintf((ld)->name, sizeof((ld)->name), __VA_ARGS__), \
	 ((dst) = bind((ld), (ld)->name, 0, (len))) ? 0 : -1)
#define BIND_LIN(ld, lin, out, in, ...) \
	(snprintf((ld)->name, sizeof((ld)->name), __VA_ARGS__), \
	 bind_linear((ld), (lin), (out), (in)))

static int
bind_attention(Loader *ld, PtAttentionWeights *a, const char *prefix)
{
	const PtConfig *c = &ld->model->cfg;
	int			inner = pt_config_inner(c);

	return BIND_LIN(ld, &a->q, inner, c->d_model, "%s.q.weight", prefix) ||
		BIND_LIN(ld, &a->k, inner, c->d_model, "%s.k.weight", prefix) ||
		BIND_LIN(ld, &a->v, inner, c->d_model, "%s.v.weight", prefix) ||
		BIND_LIN(ld, &a->o, c->d_model, inner, "%s.o.weight", prefix) ? -1 : 0;
}

static int
bind_feed_forward(Loader *ld, PtFeedForwardWeights *ff, const char *prefix)
{
	const PtConfig *c = &ld->model->cfg;

	if (c->gated)
	{
		if (BIND_LIN(ld, &ff->wi0, c->d_ff, c->d_model, "%s.wi_0.weight", prefix) ||
			BIND_LIN(ld, &ff->wi1, c->d_ff, c->d_model, "%s.wi_1.weight", prefix))
			return -1;
	}
	else if (BIND_LIN(ld, &ff->wi0, c->d_ff, c->d_model, "%s.wi.weight", prefix))
		return -1;
	return BIND_LIN(ld, &ff->wo, c->d_model, c->d_ff, "%s.wo.weight", prefix);
}

static int
bind_weights(Loader *ld)
{
	PtModel    *m = ld->model;
	const PtConfig *c = &m->cfg;
	const char *unused;
	char		prefix[128];

	/* shared.weight is the embedding; some exports keep only the per-stack copies */
	if (bind_embedding(ld, find_tensor(m, "shared.weight", &unused) ? "shared.weight"
					   : "encoder.embed_tokens.weight") != 0)
		return -1;

	if (BIND_VEC(ld, m->enc_final_ln, c->d_model, "encoder.final_layer_norm.weight") ||
		BIND_VEC(ld, m->dec_final_ln, c->d_model, "decoder.final_layer_norm.weight"))
		return -1;
	m->enc_rel_bias = bind(ld, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
						   c->rel_buckets, c->num_heads);
	m->dec_rel_bias = bind(ld, "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
						   c->rel_buckets, c->num_heads);
	if (m->enc_rel_bias == NULL || m->dec_rel_bias == NULL)
		return -1;

	for (int l = 0; l < c->num_layers; l++)
	{
		PtEncoderLayer *e = &m->enc[l];

		snprintf(prefix, sizeof(prefix), "encoder.block.%d.layer.0.SelfAttention", l);
		if (BIND_VEC(ld, e->ln_attn, c->d_model, "encoder.block.%d.layer.0.layer_norm.weight", l) ||
			bind_attention(ld, &e->attn, prefix) ||
			BIND_VEC(ld, e->ln_ff, c->d_model, "encoder.block.%d.layer.1.layer_norm.weight", l))
			return -1;
		snprintf(prefix, sizeof(prefix), "encoder.block.%d.layer.1.DenseReluDense", l);
		if (bind_feed_forward(ld, &e->ff, prefix))
			return -1;
	}
	for (int l = 0; l < c->num_decoder_layers; l++)
	{
		PtDecoderLayer *d = &m->dec[l];

		snprintf(prefix, sizeof(prefix), "decoder.block.%d.layer.0.SelfAttention", l);
		if (BIND_VEC(ld, d->ln_self, c->d_model, "decoder.block.%d.layer.0.layer_norm.weight", l) ||
			bind_attention(ld, &d->self, prefix))
			return -1;
		snprintf(prefix, sizeof(prefix), "decoder.block.%d.layer.1.EncDecAttention", l);
		if (BIND_VEC(ld, d->ln_cross, c->d_model, "decoder.block.%d.layer.1.layer_norm.weight", l) ||
			bind_attention(ld, &d->cross, prefix))
			return -1;
		snprintf(prefix, sizeof(prefix), "decoder.block.%d.layer.2.DenseReluDense", l);
		if (BIND_VEC(ld, d->ln_ff, c->d_model, "decoder.block.%d.layer.2.layer_norm.weight", l) ||
			bind_feed_forward(ld, &d->ff, prefix))
			return -1;
	}

	if (c->tie_word_embeddings)
	{
		if (bind_tied_head(ld) != 0)
			return -1;
		m->lm_scale = 1.0f / sqrtf((float) c->d_model);
	}
	else
	{
		snprintf(ld->name, sizeof(ld->name), "lm_head.weight");
		if (bind_linear(ld, &m->lm_head, c->vocab_size, c->d_model) != 0)
			return -1;
		m->lm_scale = 1.0f;
	}
	return 0;
}

/* A shard name from an index file must be a plain file name inside the directory. */
static bool
safe_file_name(const char *s)
{
	return s[0] != '\0' && s[0] != '.' && strchr(s, '/') == NULL && strlen(s) < 200;
}

static int
open_weight_files(PtModel *m)
{
	char		path[4096];
	struct stat st;

	snprintf(path, sizeof(path), "%s/model.safetensors", m->dir);
	if (stat(path, &st) == 0)
	{
		m->files = pt_calloc(1, sizeof(StFile));
		if (m->files == NULL || st_open(path, &m->files[0]) != 0)
			return -1;
		m->n_files = 1;
		return 0;
	}

	snprintf(path, sizeof(path), "%s/model.safetensors.index.json", m->dir);
	if (stat(path, &st) == 0)
	{
		json_error_t jerr;
		json_t	   *root = json_load_file(path, 0, &jerr);
		json_t	   *map = root ? json_object_get(root, "weight_map") : NULL;
		const char *key;
		json_t	   *value;
		const char **names;
		int			n_names = 0;
		int			rc = 0;

		if (!json_is_object(map))
		{
			json_decref(root);
			return pt_fail(PT_ERR_FORMAT, "%s: no \"weight_map\" object", path);
		}
		names = pt_calloc(json_object_size(map), sizeof(char *));
		m->files = pt_calloc(json_object_size(map), sizeof(StFile));
		if (names == NULL || m->files == NULL)
			rc = -1;
		json_object_foreach(map, key, value)
		{
			bool		seen = false;

			if (rc != 0)
				break;
			if (!json_is_string(value) || !safe_file_name(json_string_value(value)))
			{
				rc = pt_fail(PT_ERR_FORMAT, "%s: tensor \"%s\" maps to an invalid file name", path, key);
				break;
			}
			for (int i = 0; i < n_names && !seen; i++)
				seen = strcmp(names[i], json_string_value(value)) == 0;
			if (seen)
				continue;
			names[n_names++] = json_string_value(value);
			snprintf(path, sizeof(path), "%s/%s", m->dir, json_string_value(value));
			if (st_open(path, &m->files[m->n_files]) != 0)
				rc = -1;
			else
				m->n_files++;
		}
		free(names);
		json_decref(root);
		return rc;
	}

	return pt_fail(PT_ERR_IO, "%s: no model.safetensors (nor model.safetensors.index.json); "
				   "ptune reads Hugging Face checkpoints in the safetensors format", m->dir);
}

/*
 * Times the fp32 kernels and oneDNN's piece sizes on this model's weight
 * shapes (or reads the cached result, kernel_choice.h).  The first encoder
 * and decoder layers hold every shape the model has.
 */
static void
choose_kernels(PtModel *m)
{
	const PtLinear *lins[18];
	int			n = 0;

	if (m->cfg.num_layers > 0)
	{
		PtEncoderLayer *e = &m->enc[0];

		lins[n++] = &e->attn.q, lins[n++] = &e->attn.o, lins[n++] = &e->ff.wi0, lins[n++] = &e->ff.wo;
	}
	if (m->cfg.num_decoder_layers > 0)
	{
		PtDecoderLayer *d = &m->dec[0];

		lins[n++] = &d->self.q, lins[n++] = &d->self.o, lins[n++] = &d->ff.wi0, lins[n++] = &d->ff.wo;
	}
	pt_kernels_choose(lins, n);
}

PtModel *
pt_model_load(const char *dir)
{
	return pt_model_load_math(dir, PT_MATH_FP32);
}

PtModel *
pt_model_load_math(const char *dir, PtMath math)
{
	PtModel    *m = pt_calloc(1, sizeof(PtModel));
	Loader		ld = {0};
	char		path[4096];
	char	   *config_bytes = NULL;
	char	   *spiece_bytes = NULL;
	size_t		config_size = 0,
				spiece_size = 0;
	XXH128_hash_t digest;

	if (m == NULL)
		return NULL;
	if (pt_engine_init() != 0)
	{
		free(m);
		return NULL;
	}
	ld.model = m;
	/* bf16 from the start where the CPU has it; int8 is quantised from fp32 after loading */
	ld.math = math == PT_MATH_BF16 && pt_bf16_supported() ? PT_MATH_BF16 : PT_MATH_FP32;
	if (strlen(dir) > 3000)
	{
		pt_fail(PT_ERR_ARGUMENT, "model directory path is too long");
		goto fail;
	}
	m->dir = pt_strdup(dir);
	if (m->dir == NULL)
		goto fail;

	snprintf(path, sizeof(path), "%s/config.json", dir);
	if (pt_config_load(path, &m->cfg) != 0 ||
		(config_bytes = read_file(path, &config_size)) == NULL)
		goto fail;
	if (m->cfg.model_name[0] == '\0')
	{
		const char *base = strrchr(dir, '/');

		snprintf(m->cfg.model_name, sizeof(m->cfg.model_name), "%s",
				 base && base[1] ? base + 1 : dir);
	}

	snprintf(path, sizeof(path), "%s/spiece.model", dir);
	spiece_bytes = read_file(path, &spiece_size);
	if (spiece_bytes == NULL)
		goto fail;
	m->tokenizer = pt_tokenizer_load(spiece_bytes, spiece_size, path);
	if (m->tokenizer == NULL)
		goto fail;
	if (pt_tokenizer_vocab_size(m->tokenizer) > m->cfg.vocab_size)
	{
		pt_fail(PT_ERR_FORMAT, "%s: the tokenizer has %d pieces but the model's vocab_size is %d",
				path, pt_tokenizer_vocab_size(m->tokenizer), m->cfg.vocab_size);
		goto fail;
	}

	if (open_weight_files(m) != 0)
		goto fail;
	for (int i = 0; i < m->n_files; i++)
		m->file_bytes += m->files[i].map_size;

	m->enc = pt_calloc(m->cfg.num_layers, sizeof(PtEncoderLayer));
	m->dec = pt_calloc(m->cfg.num_decoder_layers, sizeof(PtDecoderLayer));
	ld.hash = XXH3_createState();
	if (m->enc == NULL || m->dec == NULL || ld.hash == NULL)
	{
		pt_fail(PT_ERR_NOMEM, "out of memory");
		goto fail;
	}
	XXH3_128bits_reset(ld.hash);
	XXH3_128bits_update(ld.hash, config_bytes, config_size);
	XXH3_128bits_update(ld.hash, spiece_bytes, spiece_size);
	if (bind_weights(&ld) != 0)
		goto fail;
	digest = XXH3_128bits_digest(ld.hash);
	XXH128_canonicalFromHash((XXH128_canonical_t *) m->fingerprint, digest);
	m->math = ld.math;
	/* in bf16 too: oneDNN's piece sizes (the fp32 kernels need fp32 weights to time) */
	choose_kernels(m);
	XXH3_freeState(ld.hash);
	ld.hash = NULL;
	/* the rest of the asked precision (int8), or its error, as pt_model_set_math gives it */
	if (math != m->math && pt_model_set_math(m, math) != 0)
		pt_clear_error();

	free(config_bytes);
	free(spiece_bytes);
	return m;

fail:
	if (ld.hash)
		XXH3_freeState(ld.hash);
	free(config_bytes);
	free(spiece_bytes);
	pt_model_free(m);
	return NULL;
}

/*
 * Calls fn on every weight matrix of the model's layers, and on lm_head
 * (tied or not) when with_head.  The embedding is not one of them.
 */
static int
for_each_weight(PtModel *m, bool with_head, int (*fn) (PtLinear *lin))
{
	if (with_head && m->lm_head.src && fn(&m->lm_head) != 0)
		return -1;
	for (int l = 0; l < m->cfg.num_layers; l++)
	{
		PtEncoderLayer *e = &m->enc[l];
		PtLinear   *lins[] = {&e->attn.q, &e->attn.k, &e->attn.v, &e->attn.o, &e->ff.wi0, &e->ff.wi1, &e->ff.wo};

		for (size_t i = 0; i < sizeof(lins) / sizeof(lins[0]); i++)
			if (lins[i]->src && fn(lins[i]) != 0)
				return -1;
	}
	for (int l = 0; l < m->cfg.num_decoder_layers; l++)
	{
		PtDecoderLayer *d = &m->dec[l];
		PtLinear   *lins[] = {&d->self.q, &d->self.k, &d->self.v, &d->self.o, &d->cross.q, &d->cross.k,
		&d->cross.v, &d->cross.o, &d->ff.wi0, &d->ff.wi1, &d->ff.wo};

		for (size_t i = 0; i < sizeof(lins) / sizeof(lins[0]); i++)
			if (lins[i]->src && fn(lins[i]) != 0)
				return -1;
	}
	return 0;
}

static int
for_each_linear(PtModel *m, int (*fn) (PtLinear *lin))
{
	return for_each_weight(m, false, fn);
}

static int
release_bf16(PtLinear *lin)
{
	pt_linear_release_bf16(lin);
	return 0;
}

static int
drop_f32(PtLinear *lin)
{
	pt_linear_drop_f32(lin);
	return 0;
}

static int
free_linear(PtLinear *lin)
{
	pt_linear_free(lin);
	return 0;
}

/* Gives the mapped files' pages back; what is read later faults back in from the page cache. */
static void
drop_file_pages(PtModel *m)
{
	for (int i = 0; i < m->n_files; i++)
		madvise(m->files[i].map, m->files[i].map_size, MADV_DONTNEED);
}

/*
 * bf16 keeps only the packed bf16 weights (and lm_head's, tied or not),
 * dropping the fp32 ones and the embedding's fp32 table; fp32 and int8 make
 * the fp32 weights again from the checkpoint's data (int8 then quantises
 * them).  A failure leaves the model computing in fp32.
 */
int
pt_model_set_math(PtModel *m, PtMath math)
{
	bool		was_bf16 = m->math == PT_MATH_BF16;

	if (math == PT_MATH_BF16)
	{
		if (!pt_bf16_supported())
			return pt_fail(PT_ERR_ARGUMENT, "this CPU has no bfloat16 matrix instructions");
		if (for_each_weight(m, true, pt_linear_prepare_bf16) != 0)
		{
			for_each_weight(m, true, release_bf16);
			m->math = PT_MATH_FP32;
			return -1;
		}
		for_each_weight(m, true, drop_f32);	/* a tied lm_head's w is the embedding's: not freed */
		pt_linear_drop_f32(&m->embed);
		m->math = PT_MATH_BF16;
		drop_file_pages(m);
		return 0;
	}

	/* fp32 weights first: int8 is quantised from them, and a failed int8 falls back on them */
	if (pt_linear_materialize_f32(&m->embed) != 0)
		return -1;
	if (m->cfg.tie_word_embeddings && m->lm_head.w == NULL)
		m->lm_head.w = m->embed.w;	/* shared, not owned */
	if (for_each_weight(m, true, pt_linear_materialize_f32) != 0)
		return -1;				/* the model stays as it was, with some fp32 weights made */
	for_each_weight(m, true, release_bf16);
	m->math = PT_MATH_FP32;
	if (was_bf16)
		choose_kernels(m);
	if (math == PT_MATH_INT8 && for_each_linear(m, pt_linear_prepare_int8) != 0)
	{
		for_each_linear(m, release_bf16);
		return -1;
	}
	m->math = math;

	/*
	 * int8 inference no longer reads the fp32 weights: give their pages back.
	 * The mapping stays, so training (fp32) or an embedding lookup faults the
	 * pages it needs back in from the page cache.
	 */
	if (math == PT_MATH_INT8)
		drop_file_pages(m);
	return 0;
}

void
pt_model_free(PtModel *m)
{
	if (m == NULL)
		return;
	if (m->enc && m->dec)
		for_each_weight(m, true, free_linear);	/* lm_head before the embedding it may share */
	pt_linear_free(&m->embed);
	for (int i = 0; i < m->n_owned; i++)
		free(m->owned[i]);
	free(m->owned);
	for (int i = 0; i < m->n_files; i++)
		st_close(&m->files[i]);
	free(m->files);
	free(m->enc);
	free(m->dec);
	if (m->tokenizer)
		pt_tokenizer_free(m->tokenizer);
	free(m->dir);
	free(m);
}

void
pt_model_fingerprint_hex(const PtModel *m, char out[2 * PT_FINGERPRINT_BYTES + 1])
{
	for (int i = 0; i < PT_FINGERPRINT_BYTES; i++)
		snprintf(out + 2 * i, 3, "%02x", m->fingerprint[i]);
}

/* A JSON string of s, or null if s is not valid UTF-8 (jansson refuses it). */
static json_t *
json_text(const char *s)
{
	json_t	   *v = json_string(s);

	return v ? v : json_null();
}

/*
 * Which kernel runs each precision's products here, as a JSON object:
 * {"fp32": {"forward": "onednn", "backward": "onednn", "chosen": "measured",
 *  "gflops": {...}}, "bf16": "brg:avx512_core_bf16" or null, "int8": ...,
 *  "piece_rows": {"fp32": 4096, "bf16": 4096, "int8": 1024, "chosen": "measured",
 *                 "gflops": {"fp32": {"256": ..., "1024": ..., "4096": ...}, ...}}:
 *  the most rows of one oneDNN product per precision (0: no oneDNN) and the
 *  trial that chose them (kernel_choice.h)}
 */
json_t *
pt_kernels_json(const PtModel *model)
{
	json_t	   *fp32 = json_pack("{s:s, s:s, s:s, s:{s:f, s:f, s:f, s:f}}",
								 "forward", pt_kernel_name(pt_fp32_kernel(false)),
								 "backward", pt_kernel_name(pt_fp32_kernel(true)),
								 "chosen", pt_kernels_source(),
								 "gflops",
								 "openblas_forward", pt_kernels_gflops(PT_KERNEL_OPENBLAS, false),
								 "onednn_forward", pt_kernels_gflops(PT_KERNEL_ONEDNN, false),
								 "openblas_backward", pt_kernels_gflops(PT_KERNEL_OPENBLAS, true),
								 "onednn_backward", pt_kernels_gflops(PT_KERNEL_ONEDNN, true));

	json_t	   *pieces = json_pack("{s:i, s:i, s:i, s:s}",
									   "fp32", pt_dnnl_piece_rows(PT_MATH_FP32),
									   "bf16", pt_dnnl_piece_rows(PT_MATH_BF16),
									   "int8", pt_dnnl_piece_rows(PT_MATH_INT8),
									   "chosen", pt_pieces_source());
	/*
	 * json_pack("{}"), never json_object(): in the model worker, postgres's own
	 * SQL function json_object() wins the name (test/check_symbols.sh).
	 */
	json_t	   *gflops = json_pack("{}");

	for (int math = 0; math < 3 && pieces && gflops; math++)
	{
		json_t	   *per = json_pack("{}");

		for (int i = 0; i < N_PIECE_CANDIDATES && per; i++)
		{
			char		rows[16];

			snprintf(rows, sizeof(rows), "%d", pt_piece_candidate(i));
			json_object_set_new(per, rows, json_real(pt_piece_gflops(math, i)));
		}
		json_object_set_new(gflops, pt_math_name(math), per ? per : json_null());
	}
	if (pieces)
		json_object_set_new(pieces, "gflops", gflops ? gflops : json_null());
	else
		json_decref(gflops);

	return json_pack("{s:o, s:o, s:o, s:o, s:s, s:s, s:s}",
					 "fp32", fp32 ? fp32 : json_null(),
					 "bf16", pt_bf16_supported() ? json_text(pt_dnnl_kernel(PT_MATH_BF16)) : json_null(),
					 "int8", pt_int8_supported() ? json_text(pt_dnnl_kernel(PT_MATH_INT8)) : json_null(),
					 "piece_rows", pieces ? pieces : json_null(),
					 "attention", pt_attention_bf16_supported(model->cfg.d_kv) ? "bf16" : "fp32",
					 "cpu", pt_cpu_model(),
					 "cpu_flags", pt_cpu_flags());
}

char *
pt_model_info_json(const PtModel *model, double load_seconds)
{
	const PtConfig *c = &model->cfg;
	char		fp[2 * PT_FINGERPRINT_BYTES + 1];
	json_t	   *info;
	char	   *text;

	pt_model_fingerprint_hex(model, fp);
	info = json_pack("{s:o, s:s, s:I, s:I, s:f, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:o, s:b, "
					 "s:i, s:i, s:i, s:o, s:s, s:o}",
					 "model_name", json_text(c->model_name),
					 "fingerprint", fp,
					 "parameters", (json_int_t) model->n_parameters,
					 "file_bytes", (json_int_t) model->file_bytes,
					 "load_seconds", isfinite(load_seconds) ? load_seconds : 0.0,
					 "vocab_size", c->vocab_size,
					 "d_model", c->d_model,
					 "d_kv", c->d_kv,
					 "d_ff", c->d_ff,
					 "num_heads", c->num_heads,
					 "num_layers", c->num_layers,
					 "num_decoder_layers", c->num_decoder_layers,
					 "feed_forward_proj", json_text(c->feed_forward_proj),
					 "tie_word_embeddings", (int) c->tie_word_embeddings,
					 "relative_attention_num_buckets", c->rel_buckets,
					 "relative_attention_max_distance", c->rel_max_distance,
					 "threads", pt_get_threads(),
					 "blas_kernels", json_text(pt_blas_core()),
					 "precision", pt_math_name(model->math),
					 "kernels", pt_kernels_json(model));
	text = info ? json_dumps(info, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6)) : NULL;
	json_decref(info);
	if (text == NULL)
		pt_fail(PT_ERR_NOMEM, "out of memory describing the model");
	return text;
}
