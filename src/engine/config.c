/*
 * config.c - parse and validate config.json (see config.h).
 */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "config.h"
#include "error.h"

/* Bounds that no real T5 reaches; they keep later size arithmetic in range. */
#define MAX_DIM		65536
#define MAX_VOCAB	4000000
#define MAX_LAYERS	256
#define MAX_HEADS	1024

const char *
pt_activation_name(PtActivation act)
{
	switch (act)
	{
		case PT_ACT_RELU:
			return "relu";
		case PT_ACT_GELU_TANH:
			return "gelu_new";
		case PT_ACT_GELU_ERF:
			return "gelu";
		case PT_ACT_SILU:
			return "silu";
	}
	return "?";
}

/* Reads an integer field; absent (or null) fields take the default if one is allowed. */
static int
get_int(json_t *root, const char *path, const char *key, bool required, int dflt,
		int min, int max, int *out)
{
	json_t	   *v = json_object_get(root, key);

	if (v == NULL || json_is_null(v))
	{
		if (required)
			return pt_fail(PT_ERR_FORMAT, "%s: required field \"%s\" is missing", path, key);
		*out = dflt;
		return 0;
	}
	if (!json_is_integer(v))
		return pt_fail(PT_ERR_FORMAT, "%s: field \"%s\" must be an integer", path, key);
	if (json_integer_value(v) < min || json_integer_value(v) > max)
		return pt_fail(PT_ERR_FORMAT, "%s: field \"%s\" = %lld is outside [%d, %d]",
					   path, key, (long long) json_integer_value(v), min, max);
	*out = (int) json_integer_value(v);
	return 0;
}

static int
parse_feed_forward(const char *path, const char *proj, PtConfig *cfg)
{
	const char *act = proj;

	snprintf(cfg->feed_forward_proj, sizeof(cfg->feed_forward_proj), "%s", proj);
	cfg->gated = strncmp(proj, "gated-", 6) == 0;
	if (cfg->gated)
		act = proj + 6;
	if (strcmp(act, "relu") == 0)
		cfg->activation = PT_ACT_RELU;
	else if (strcmp(act, "gelu") == 0)
		/* Hugging Face maps "gated-gelu" to gelu_new (tanh) but plain "gelu" to erf */
		cfg->activation = cfg->gated ? PT_ACT_GELU_TANH : PT_ACT_GELU_ERF;
	else if (strcmp(act, "gelu_new") == 0)
		cfg->activation = PT_ACT_GELU_TANH;
	else if (strcmp(act, "silu") == 0 || strcmp(act, "swish") == 0)
		cfg->activation = PT_ACT_SILU;
	else
		return pt_fail(PT_ERR_FORMAT, "%s: feed_forward_proj \"%s\" is not supported "
					   "(supported: relu, gated-gelu, gelu, gated-relu, gated-silu, silu)", path, proj);
	return 0;
}

static int	config_from_json(json_t *root, const char *path, PtConfig *cfg);

int
pt_config_load(const char *path, PtConfig *cfg)
{
	json_error_t jerr;
	json_t	   *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);

	memset(cfg, 0, sizeof(*cfg));
	if (root == NULL)
	{
		if (jerr.line < 0 || strstr(jerr.text, "unable to open"))
			return pt_fail(PT_ERR_IO, "could not read \"%s\": %s", path, jerr.text);
		return pt_fail(PT_ERR_FORMAT, "%s: invalid JSON at line %d: %s", path, jerr.line, jerr.text);
	}
	return config_from_json(root, path, cfg);
}

int
pt_config_parse(const char *json, size_t len, const char *name, PtConfig *cfg)
{
	json_error_t jerr;
	json_t	   *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);

	memset(cfg, 0, sizeof(*cfg));
	if (root == NULL)
		return pt_fail(PT_ERR_FORMAT, "%s: invalid JSON at line %d: %s", name, jerr.line, jerr.text);
	return config_from_json(root, name, cfg);
}

/* Reads the fields of a parsed config.json (and releases root). */
static int
config_from_json(json_t *root, const char *path, PtConfig *cfg)
{
	json_t	   *v;
	int			rc = -1;

	if (!json_is_object(root))
	{
		pt_fail(PT_ERR_FORMAT, "%s: expected a JSON object", path);
		goto done;
	}

	v = json_object_get(root, "model_type");
	if (!json_is_string(v))
	{
		pt_fail(PT_ERR_FORMAT, "%s: field \"model_type\" is missing", path);
		goto done;
	}
	/* mt5 has T5's v1.1 architecture with another vocabulary; umt5 and longt5 differ */
	if (strcmp(json_string_value(v), "t5") != 0 && strcmp(json_string_value(v), "mt5") != 0)
	{
		pt_fail(PT_ERR_FORMAT, "%s: model_type \"%s\" is not supported (ptune runs \"t5\" and \"mt5\")",
				path, json_string_value(v));
		goto done;
	}

	if (get_int(root, path, "vocab_size", true, 0, 3, MAX_VOCAB, &cfg->vocab_size) ||
		get_int(root, path, "d_model", true, 0, 1, MAX_DIM, &cfg->d_model) ||
		get_int(root, path, "d_kv", true, 0, 1, MAX_DIM, &cfg->d_kv) ||
		get_int(root, path, "d_ff", true, 0, 1, 4 * MAX_DIM, &cfg->d_ff) ||
		get_int(root, path, "num_heads", true, 0, 1, MAX_HEADS, &cfg->num_heads) ||
		get_int(root, path, "num_layers", true, 0, 1, MAX_LAYERS, &cfg->num_layers) ||
		get_int(root, path, "num_decoder_layers", false, cfg->num_layers, 1, MAX_LAYERS,
				&cfg->num_decoder_layers) ||
		get_int(root, path, "relative_attention_num_buckets", false, 32, 4, 4096, &cfg->rel_buckets) ||
		get_int(root, path, "relative_attention_max_distance", false, 128, 2, 1 << 20,
				&cfg->rel_max_distance) ||
		get_int(root, path, "decoder_start_token_id", false, 0, 0, MAX_VOCAB, &cfg->decoder_start_token_id) ||
		get_int(root, path, "eos_token_id", false, 1, 0, MAX_VOCAB, &cfg->eos_token_id) ||
		get_int(root, path, "pad_token_id", false, 0, 0, MAX_VOCAB, &cfg->pad_token_id))
		goto done;

	if ((long) cfg->num_heads * cfg->d_kv > MAX_DIM)
	{
		pt_fail(PT_ERR_FORMAT, "%s: num_heads * d_kv = %ld is too large", path,
				(long) cfg->num_heads * cfg->d_kv);
		goto done;
	}
	/* the bucket formula divides log(distance / max_exact) by log(max_distance / max_exact) */
	if (cfg->rel_max_distance <= cfg->rel_buckets / 4)
	{
		pt_fail(PT_ERR_FORMAT, "%s: relative_attention_max_distance (%d) must exceed "
				"relative_attention_num_buckets / 4 (%d)", path, cfg->rel_max_distance,
				cfg->rel_buckets / 4);
		goto done;
	}
	if (cfg->decoder_start_token_id >= cfg->vocab_size || cfg->eos_token_id >= cfg->vocab_size ||
		cfg->pad_token_id >= cfg->vocab_size)
	{
		pt_fail(PT_ERR_FORMAT, "%s: special token ids must be below vocab_size %d", path, cfg->vocab_size);
		goto done;
	}

	v = json_object_get(root, "layer_norm_epsilon");
	if (v == NULL || json_is_null(v))
		cfg->layer_norm_eps = 1e-6f;
	else if (json_is_number(v) && json_number_value(v) >= 1e-12 && json_number_value(v) < 1)
		cfg->layer_norm_eps = (float) json_number_value(v);
	else
	{
		/* (a smaller value would round to 0 in float: a division by zero on a zero row) */
		pt_fail(PT_ERR_FORMAT, "%s: field \"layer_norm_epsilon\" must be a number in [1e-12, 1)", path);
		goto done;
	}

	v = json_object_get(root, "feed_forward_proj");
	if (v != NULL && !json_is_null(v) && !json_is_string(v))
	{
		pt_fail(PT_ERR_FORMAT, "%s: field \"feed_forward_proj\" must be a string", path);
		goto done;
	}
	if (parse_feed_forward(path, json_is_string(v) ? json_string_value(v) : "relu", cfg) != 0)
		goto done;

	v = json_object_get(root, "tie_word_embeddings");
	if (v != NULL && !json_is_null(v) && !json_is_boolean(v))
	{
		pt_fail(PT_ERR_FORMAT, "%s: field \"tie_word_embeddings\" must be true or false", path);
		goto done;
	}
	cfg->tie_word_embeddings = (v == NULL || json_is_null(v)) ? true : json_is_true(v);

	v = json_object_get(root, "_name_or_path");
	if (json_is_string(v) && json_string_length(v) > 0)
		snprintf(cfg->model_name, sizeof(cfg->model_name), "%s", json_string_value(v));
	rc = 0;

done:
	json_decref(root);
	return rc;
}
