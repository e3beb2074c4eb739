/*
 * test_loader.c - checkpoints load in every supported variant, and every kind
 * of broken checkpoint is a clear error naming the file and tensor.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "dtype.h"
#include "error.h"
#include "helpers.h"
#include "model.h"
#include "unit.h"

/* Rewrites dir/model.safetensors after letting edit() change its header JSON. */
static int
edit_header(const char *dir, void (*edit) (json_t *header))
{
	char		path[1024];
	size_t		size;
	char	   *file;
	uint64_t	hlen = 0;
	json_t	   *header;
	char	   *text;
	size_t		tlen,
				data_len;
	char	   *out;
	int			rc;

	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	file = read_whole_file(path, &size);
	if (file == NULL)
		return -1;
	memcpy(&hlen, file, 8);
	header = json_loadb(file + 8, hlen, 0, NULL);
	if (header == NULL)
		return -1;
	edit(header);
	text = json_dumps(header, JSON_COMPACT);
	tlen = strlen(text);
	data_len = size - 8 - hlen;
	out = malloc(8 + tlen + data_len);
	memcpy(out, &tlen, 8);
	memcpy(out + 8, text, tlen);
	memcpy(out + 8 + tlen, file + 8 + hlen, data_len);
	rc = write_whole_file(path, out, 8 + tlen + data_len);
	free(out);
	free(text);
	free(file);
	json_decref(header);
	return rc;
}

static void
rename_final_norm(json_t *h)
{
	json_t	   *t = json_object_get(h, "encoder.final_layer_norm.weight");

	json_object_set(h, "encoder.final_layer_norm.renamed", t);
	json_object_del(h, "encoder.final_layer_norm.weight");
}

static void
reshape_final_norm(json_t *h)
{
	json_t	   *t = json_object_get(h, "encoder.final_layer_norm.weight");

	json_object_set_new(t, "shape", json_pack("[i, i]", 32, 2));
}

static void
retype_final_norm(json_t *h)
{
	json_object_set_new(json_object_get(h, "encoder.final_layer_norm.weight"), "dtype", json_string("I32"));
}

static void
overrun_offsets(json_t *h)
{
	json_t	   *t = json_object_get(h, "encoder.final_layer_norm.weight");

	json_object_set_new(t, "data_offsets", json_pack("[I, I]", (json_int_t) 1 << 40, ((json_int_t) 1 << 40) + 256));
}

/* Makes a fresh copy of tiny-relu, lets damage() break it, expects an error containing want. */
static void
expect_load_error(const char *label, int (*damage) (const char *dir), PtErrorKind kind,
				  const char *want1, const char *want2)
{
	const char *src = unit_model_dir("tiny-relu");
	const char *dir = unit_temp_dir();
	PtModel    *m;

	REQUIREF(src != NULL, "tiny-relu test model missing (PTUNE_TEST_MODELS)");
	REQUIRE(copy_checkpoint(src, dir) == 0);
	REQUIREF(damage(dir) == 0, "%s: could not damage the checkpoint", label);
	m = pt_model_load(dir);
	CHECKF(m == NULL, "%s: a broken checkpoint loaded", label);
	if (m)
	{
		pt_model_free(m);
		return;
	}
	CHECKF(pt_error_kind() == kind, "%s: error kind %d, expected %d (%s)", label,
		   pt_error_kind(), kind, pt_error_message());
	CHECKF(strstr(pt_error_message(), want1) != NULL, "%s: message \"%s\" lacks \"%s\"",
		   label, pt_error_message(), want1);
	CHECKF(want2 == NULL || strstr(pt_error_message(), want2) != NULL,
		   "%s: message \"%s\" lacks \"%s\"", label, pt_error_message(), want2);
}

static int
remove_config(const char *dir)
{
	char		p[1024];

	snprintf(p, sizeof(p), "%s/config.json", dir);
	return remove(p);
}

static int
remove_spiece(const char *dir)
{
	char		p[1024];

	snprintf(p, sizeof(p), "%s/spiece.model", dir);
	return remove(p);
}

static int
remove_weights(const char *dir)
{
	char		p[1024];

	snprintf(p, sizeof(p), "%s/model.safetensors", dir);
	return remove(p);
}

static int
write_config(const char *dir, const char *text)
{
	char		p[1024];

	snprintf(p, sizeof(p), "%s/config.json", dir);
	return write_whole_file(p, text, strlen(text));
}

static int
bad_json(const char *dir)
{
	return write_config(dir, "{\"model_type\": \"t5\", \"d_model\": 64,");
}

static int
bert_config(const char *dir)
{
	return write_config(dir, "{\"model_type\": \"bert\", \"d_model\": 64}");
}

static int
missing_field(const char *dir)
{
	return write_config(dir, "{\"model_type\": \"t5\", \"vocab_size\": 1000, \"d_model\": 64, "
						"\"d_kv\": 16, \"d_ff\": 128, \"num_layers\": 2}");
}

static int
negative_field(const char *dir)
{
	return write_config(dir, "{\"model_type\": \"t5\", \"vocab_size\": 1000, \"d_model\": -64, "
						"\"d_kv\": 16, \"d_ff\": 128, \"num_layers\": 2, \"num_heads\": 4}");
}

static int
truncate_weights(const char *dir)
{
	char		p[1024];
	size_t		n;
	char	   *data;
	int			rc;

	snprintf(p, sizeof(p), "%s/model.safetensors", dir);
	data = read_whole_file(p, &n);
	if (data == NULL)
		return -1;
	rc = write_whole_file(p, data, n / 2);
	free(data);
	return rc;
}

static int
huge_header_length(const char *dir)
{
	char		p[1024];
	size_t		n;
	char	   *data;
	int			rc;
	uint64_t	len = (uint64_t) 1 << 33;

	snprintf(p, sizeof(p), "%s/model.safetensors", dir);
	data = read_whole_file(p, &n);
	if (data == NULL)
		return -1;
	memcpy(data, &len, 8);
	rc = write_whole_file(p, data, n);
	free(data);
	return rc;
}

static int
garbage_header(const char *dir)
{
	char		p[1024];
	size_t		n;
	char	   *data;
	int			rc;

	snprintf(p, sizeof(p), "%s/model.safetensors", dir);
	data = read_whole_file(p, &n);
	if (data == NULL)
		return -1;
	memset(data + 8, '#', 16);
	rc = write_whole_file(p, data, n);
	free(data);
	return rc;
}

static int
tiny_file(const char *dir)
{
	char		p[1024];

	snprintf(p, sizeof(p), "%s/model.safetensors", dir);
	return write_whole_file(p, "abc", 3);
}

static int
garbage_spiece(const char *dir)
{
	char		p[1024];

	snprintf(p, sizeof(p), "%s/spiece.model", dir);
	return write_whole_file(p, "not a sentencepiece model", 25);
}

static int
missing_tensor(const char *dir)
{
	return edit_header(dir, rename_final_norm);
}

static int
misshaped_tensor(const char *dir)
{
	return edit_header(dir, reshape_final_norm);
}

static int
unknown_dtype(const char *dir)
{
	return edit_header(dir, retype_final_norm);
}

static int
offsets_past_end(const char *dir)
{
	return edit_header(dir, overrun_offsets);
}

void		test_loader_errors(void);
void
test_loader_errors(void)
{
	PtModel    *m = pt_model_load("/nonexistent/ptune-model");

	CHECK(m == NULL && pt_error_kind() == PT_ERR_IO);
	CHECK(strstr(pt_error_message(), "/nonexistent/ptune-model/config.json") != NULL);

	expect_load_error("no config", remove_config, PT_ERR_IO, "config.json", NULL);
	expect_load_error("bad JSON", bad_json, PT_ERR_FORMAT, "config.json", "invalid JSON");
	expect_load_error("model_type", bert_config, PT_ERR_FORMAT, "model_type \"bert\"", NULL);
	expect_load_error("missing field", missing_field, PT_ERR_FORMAT, "num_heads", "missing");
	expect_load_error("negative field", negative_field, PT_ERR_FORMAT, "d_model", "outside");
	expect_load_error("no tokenizer", remove_spiece, PT_ERR_IO, "spiece.model", NULL);
	expect_load_error("bad tokenizer", garbage_spiece, PT_ERR_FORMAT, "spiece.model", NULL);
	expect_load_error("no weights", remove_weights, PT_ERR_IO, "model.safetensors", NULL);
	expect_load_error("truncated", truncate_weights, PT_ERR_FORMAT, "model.safetensors", "truncated");
	expect_load_error("header length", huge_header_length, PT_ERR_FORMAT, "model.safetensors", "header length");
	expect_load_error("garbage header", garbage_header, PT_ERR_FORMAT, "model.safetensors", "JSON");
	expect_load_error("3-byte file", tiny_file, PT_ERR_FORMAT, "model.safetensors", "too short");
	expect_load_error("missing tensor", missing_tensor, PT_ERR_FORMAT,
					  "\"encoder.final_layer_norm.weight\" is missing", NULL);
	expect_load_error("mis-shaped tensor", misshaped_tensor, PT_ERR_FORMAT,
					  "\"encoder.final_layer_norm.weight\" has shape [32, 2], expected [64]", NULL);
	expect_load_error("unknown dtype", unknown_dtype, PT_ERR_FORMAT,
					  "\"encoder.final_layer_norm.weight\" has dtype I32", NULL);
	expect_load_error("offsets", offsets_past_end, PT_ERR_FORMAT,
					  "encoder.final_layer_norm.weight", "truncated");
}

void		test_loader_variants(void);
void
test_loader_variants(void)
{
	const char *relu_dir = unit_model_dir("tiny-relu");
	const char *gated_dir = unit_model_dir("tiny-gated");
	PtModel    *relu,
			   *gated;

	REQUIREF(relu_dir && gated_dir, "tiny test models missing (PTUNE_TEST_MODELS)");
	relu = pt_model_load(relu_dir);
	REQUIREF(relu != NULL, "tiny-relu: %s", pt_error_message());
	CHECK(relu->cfg.activation == PT_ACT_RELU && !relu->cfg.gated);
	CHECK(relu->cfg.tie_word_embeddings);
	CHECK(relu->lm_head.w == relu->embed.w && relu->lm_head.w_owned == false);
	CHECK(relu->lm_scale > 0.12f && relu->lm_scale < 0.13f);	/* 64^-0.5 */
	CHECK(relu->cfg.num_heads * relu->cfg.d_kv == relu->cfg.d_model);

	gated = pt_model_load(gated_dir);
	REQUIREF(gated != NULL, "tiny-gated: %s", pt_error_message());
	CHECK(gated->cfg.activation == PT_ACT_GELU_TANH && gated->cfg.gated);
	CHECK(!gated->cfg.tie_word_embeddings);
	CHECK(gated->lm_head.w != gated->embed.w && gated->lm_scale == 1.0f);
	CHECK(gated->cfg.num_heads * gated->cfg.d_kv != gated->cfg.d_model);
	CHECK(gated->cfg.num_decoder_layers != gated->cfg.num_layers);
	CHECK(gated->cfg.rel_buckets == 16 && gated->cfg.rel_max_distance == 20);
	CHECK(gated->cfg.layer_norm_eps > 0.99e-5f && gated->cfg.layer_norm_eps < 1.01e-5f);
	CHECK(memcmp(relu->fingerprint, gated->fingerprint, PT_FINGERPRINT_BYTES) != 0);

	pt_model_free(relu);
	pt_model_free(gated);

	/* the same files give the same fingerprint */
	relu = pt_model_load(relu_dir);
	gated = pt_model_load(relu_dir);
	REQUIRE(relu && gated);
	CHECK(memcmp(relu->fingerprint, gated->fingerprint, PT_FINGERPRINT_BYTES) == 0);
	pt_model_free(relu);
	pt_model_free(gated);
}

/* BF16 and F16 checkpoints of the same seed load as the rounded F32 weights. */
void		test_half_precision_checkpoints(void);
void
test_half_precision_checkpoints(void)
{
	const char *f32_dir = unit_model_dir("tiny-gated");
	const char *bf16_dir = unit_model_dir("tiny-gated-bf16");
	const char *f16_dir = unit_model_dir("tiny-gated-f16");
	PtModel    *f32,
			   *bf16,
			   *f16;
	size_t		n;
	int			bad_bf16 = 0,
				bad_f16 = 0;

	REQUIREF(f32_dir && bf16_dir && f16_dir, "tiny-gated(-bf16, -f16) test models missing");
	f32 = pt_model_load(f32_dir);
	bf16 = pt_model_load(bf16_dir);
	f16 = pt_model_load(f16_dir);
	REQUIREF(f32 && bf16 && f16, "%s", pt_error_message());
	n = (size_t) f32->cfg.vocab_size * f32->cfg.d_model;
	for (size_t i = 0; i < n; i++)
	{
		bad_bf16 += bf16->embed.w[i] != pt_bf16_to_f32(pt_f32_to_bf16(f32->embed.w[i]));
		bad_f16 += fabsf(f16->embed.w[i] - f32->embed.w[i]) > 1e-3f * fabsf(f32->embed.w[i]) + 1e-7f;
	}
	CHECKF(bad_bf16 == 0, "%d BF16 embedding values differ from the rounded F32 ones", bad_bf16);
	CHECKF(bad_f16 == 0, "%d F16 embedding values are off", bad_f16);
	CHECK(memcmp(f32->fingerprint, bf16->fingerprint, PT_FINGERPRINT_BYTES) != 0);
	pt_model_free(f32);
	pt_model_free(bf16);
	pt_model_free(f16);
}
