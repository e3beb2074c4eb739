/*
 * test_numeric.c - numerical and reporting edge cases: a NaN loss stops
 * training with an error naming the step; the metadata a prompt carries is
 * valid JSON with or without validation rows; option errors name the
 * option; model_info's JSON escapes the model's name.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "error.h"
#include "helpers.h"
#include "trainer.h"
#include "transformer.h"
#include "unit.h"

#define N_TEXTS 24

typedef struct Texts
{
	const char *texts[N_TEXTS];
	const char *labels[N_TEXTS];
	PtTextSet	set;
} Texts;

static void
make_texts(Texts *t)
{
	static const char *words[] = {"dog", "cat", "horse", "apple", "lemon", "grape"};

	for (int i = 0; i < N_TEXTS; i++)
	{
		t->texts[i] = words[i % 6];
		t->labels[i] = i % 6 < 3 ? "this" : "that";
	}
	t->set = (PtTextSet) {N_TEXTS, t->texts, NULL, t->labels};
}

static void
small_options(PtTrainOptions *o, double validation_fraction)
{
	pt_train_options_default(o);
	o->prompt_length = 2;
	o->init = PT_INIT_RANDOM_UNIFORM;
	o->batch_size = 4;
	o->epochs = 0;
	o->max_steps = 4;
	o->validation_fraction = validation_fraction;
}

/*
 * Writes value into element `index` of tensor `name` of the F32 checkpoint in
 * dir (model.safetensors: 8-byte header length, JSON header, data).
 */
static int
poison_tensor(const char *dir, const char *name, size_t index, float value)
{
	char		path[1024];
	size_t		size;
	char	   *bytes;
	uint64_t	header_len;
	json_t	   *header,
			   *offsets;
	int			rc = -1;

	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	if ((bytes = read_whole_file(path, &size)) == NULL)
		return -1;
	memcpy(&header_len, bytes, 8);
	header = json_loadb(bytes + 8, header_len, 0, NULL);
	offsets = json_object_get(json_object_get(header, name), "data_offsets");
	if (json_is_array(offsets))
	{
		size_t		at = 8 + header_len + (size_t) json_integer_value(json_array_get(offsets, 0)) +
			index * sizeof(float);

		if (at + sizeof(float) <= size)
		{
			memcpy(bytes + at, &value, sizeof(float));
			rc = write_whole_file(path, bytes, size);
		}
	}
	json_decref(header);
	free(bytes);
	return rc;
}

void		test_training_stops_on_nan(void);
void
test_training_stops_on_nan(void)
{
	const char *src = unit_model_dir("tiny-relu");
	const char *tmp = unit_temp_dir();
	char		dir[600];
	PtModel    *m;
	PtTrainer  *t;
	PtTrainOptions opt;
	Texts		texts;
	int			rc;

	REQUIRE(src != NULL && tmp != NULL);
	snprintf(dir, sizeof(dir), "%s/nan-model", tmp);
	REQUIRE(copy_checkpoint(src, dir) == 0);
	/* one NaN in the decoder's final layer norm: every loss is NaN */
	REQUIRE(poison_tensor(dir, "decoder.final_layer_norm.weight", 3, NAN) == 0);
	m = pt_model_load(dir);
	REQUIREF(m != NULL, "%s", pt_error_message());
	make_texts(&texts);
	small_options(&opt, 0.25);
	t = pt_trainer_new(m, &opt, &texts.set, NULL);
	REQUIREF(t != NULL, "%s", pt_error_message());
	pt_clear_error();
	rc = pt_trainer_step(t);
	CHECK(rc == -1);
	CHECKF(pt_error_kind() == PT_ERR_NUMERIC, "error kind %d", (int) pt_error_kind());
	CHECKF(strstr(pt_error_message(), "step 1") && strstr(pt_error_message(), "NaN"),
		   "message does not name the step and the NaN: %s", pt_error_message());
	printf("    %s\n", pt_error_message());
	/* the trainer stays stopped; no result, no prompt */
	CHECK(pt_trainer_step(t) == -1);
	CHECK(pt_trainer_result(t) == NULL);
	CHECK(pt_trainer_progress(t)->step == 0);
	pt_trainer_free(t);

	/* the simple loop reports the same error */
	t = pt_trainer_new(m, &opt, &texts.set, NULL);
	REQUIRE(t != NULL);
	CHECK(pt_train_run(t, NULL, NULL) == -1 && pt_error_kind() == PT_ERR_NUMERIC);
	pt_trainer_free(t);
	pt_model_free(m);
}

/* Trains briefly and checks the prompt's metadata parses, with the expected accuracy field. */
static void
check_metadata(const PtModel *m, double validation_fraction)
{
	PtTrainOptions opt;
	Texts		texts;
	PtTrainer  *t;
	const PtTrainResult *r;
	json_error_t jerr;
	json_t	   *meta,
			   *acc;

	make_texts(&texts);
	small_options(&opt, validation_fraction);
	t = pt_trainer_new(m, &opt, &texts.set, NULL);
	REQUIREF(t != NULL, "%s", pt_error_message());
	REQUIREF(pt_train_run(t, NULL, NULL) == 0, "%s", pt_error_message());
	r = pt_trainer_result(t);
	REQUIRE(r != NULL && r->n_prompts == 1 && r->prompts[0]->metadata != NULL);
	meta = json_loads(r->prompts[0]->metadata, JSON_REJECT_DUPLICATES, &jerr);
	CHECKF(meta != NULL, "metadata is not JSON (%s): %s", jerr.text, r->prompts[0]->metadata);
	acc = json_object_get(meta, "selection_accuracy");
	if (validation_fraction > 0)
	{
		CHECKF(json_is_real(acc) && json_real_value(acc) >= 0 && json_real_value(acc) <= 1,
			   "selection_accuracy missing or out of range: %s", r->prompts[0]->metadata);
		CHECK(json_integer_value(json_object_get(meta, "selection_rows")) == r->val_rows);
		CHECK(r->val_rows > 0 && !isnan(r->selection_accuracy));
	}
	else
	{
		CHECKF(json_is_null(acc), "without validation rows selection_accuracy must be null: %s",
			   r->prompts[0]->metadata);
		CHECK(r->val_rows == 0 && isnan(r->selection_accuracy));
	}
	CHECK(isnan(r->test_accuracy) && r->test_rows == 0);
	CHECK(json_is_string(json_object_get(meta, "optimizer")));
	json_decref(meta);
	pt_trainer_free(t);
}

void		test_training_metadata_is_json(void);
void
test_training_metadata_is_json(void)
{
	const char *dir = unit_model_dir("tiny-relu");
	PtModel    *m;

	REQUIRE(dir != NULL);
	m = pt_model_load(dir);
	REQUIREF(m != NULL, "%s", pt_error_message());
	check_metadata(m, 0.0);
	check_metadata(m, 0.25);
	pt_model_free(m);
}

/* Range errors name the option that is wrong. */
void		test_training_option_errors(void);
void
test_training_option_errors(void)
{
	const char *dir = unit_model_dir("tiny-relu");
	PtModel    *m;
	PtTrainOptions opt;
	Texts		texts;
	PtTrainer  *t;

	REQUIRE(dir != NULL);
	m = pt_model_load(dir);
	REQUIREF(m != NULL, "%s", pt_error_message());
	make_texts(&texts);
	small_options(&opt, 0.25);
	opt.weight_decay = 1.5;
	t = pt_trainer_new(m, &opt, &texts.set, NULL);
	CHECK(t == NULL && pt_error_kind() == PT_ERR_ARGUMENT);
	CHECKF(strstr(pt_error_message(), "weight_decay") != NULL, "message: %s", pt_error_message());
	pt_trainer_free(t);

	/* the bounds of ptune_limits.h, the same the SQL layer applies, and named in the message */
	small_options(&opt, PT_MAX_VALIDATION_FRACTION + 0.05);
	t = pt_trainer_new(m, &opt, &texts.set, NULL);
	CHECK(t == NULL && pt_error_kind() == PT_ERR_ARGUMENT);
	CHECKF(strstr(pt_error_message(), "validation_fraction must be in [0, 0.9]") != NULL, "message: %s",
		   pt_error_message());
	small_options(&opt, 0.25);
	opt.max_input_tokens = PT_MAX_INPUT_TOKENS + 1;
	t = pt_trainer_new(m, &opt, &texts.set, NULL);
	CHECK(t == NULL && pt_error_kind() == PT_ERR_ARGUMENT);
	CHECKF(strstr(pt_error_message(), "max_input_tokens must be between 2 and 4096") != NULL, "message: %s",
		   pt_error_message());

	/* held-out rows whose label the training rows lack */
	{
		const char *texts2[1] = {"dog"};
		const char *labels2[1] = {"other"};
		PtTextSet	test = {1, texts2, NULL, labels2};

		small_options(&opt, 0.25);
		t = pt_trainer_new(m, &opt, &texts.set, NULL);
		REQUIRE(t != NULL);
		CHECK(pt_trainer_set_test(t, &test) == -1);
		CHECKF(strstr(pt_error_message(), "held-out label \"other\""), "message: %s", pt_error_message());
		pt_trainer_free(t);
	}

	/* a bad decoder count is reported as such (it used to speak of encoder sequences) */
	{
		static const int32_t ids[2] = {5, 1};
		PtEncoderSeq enc = {NULL, 0, ids, 2};
		PtArena		arena = {0};
		PtPass		pass;

		CHECK(pt_pass_begin(&pass, m, &arena, &enc, 1, NULL, -1, false) == -1);
		CHECKF(strstr(pt_error_message(), "decoder sequences (got -1)"), "message: %s", pt_error_message());
		CHECK(pt_pass_begin(&pass, m, &arena, &enc, 0, NULL, 0, false) == -1);
		CHECKF(strstr(pt_error_message(), "encoder sequences (got 0)"), "message: %s", pt_error_message());
		pt_arena_free(&arena);
	}
	pt_model_free(m);
}

/* model_info's JSON escapes a model name holding a quote and a backslash. */
void		test_model_info_json_escapes_name(void);
void
test_model_info_json_escapes_name(void)
{
	static const char *name = "we\"ird\\name/t5 \xc3\xa9";	/* quote, backslash, UTF-8 */
	const char *src = unit_model_dir("tiny-relu");
	const char *tmp = unit_temp_dir();
	char		dir[600],
				path[700];
	json_t	   *cfg,
			   *info;
	json_error_t jerr;
	PtModel    *m;
	char	   *text;

	REQUIRE(src != NULL && tmp != NULL);
	snprintf(dir, sizeof(dir), "%s/odd-name", tmp);
	REQUIRE(copy_checkpoint(src, dir) == 0);
	snprintf(path, sizeof(path), "%s/config.json", dir);
	cfg = json_load_file(path, 0, &jerr);
	REQUIREF(cfg != NULL, "%s", jerr.text);
	json_object_set_new(cfg, "_name_or_path", json_string(name));
	REQUIRE(json_dump_file(cfg, path, JSON_INDENT(2)) == 0);
	json_decref(cfg);

	m = pt_model_load(dir);
	REQUIREF(m != NULL, "%s", pt_error_message());
	CHECK(strcmp(m->cfg.model_name, name) == 0);
	text = pt_model_info_json(m, 0.25);
	REQUIREF(text != NULL, "%s", pt_error_message());
	info = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	CHECKF(info != NULL, "model info is not JSON (%s): %s", jerr.text, text);
	CHECKF(info && json_is_string(json_object_get(info, "model_name")) &&
		   strcmp(json_string_value(json_object_get(info, "model_name")), name) == 0,
		   "model_name does not survive: %s", text);
	CHECK(info && json_integer_value(json_object_get(info, "d_model")) == m->cfg.d_model);
	CHECK(info && json_is_string(json_object_get(info, "fingerprint")));
	json_decref(info);
	free(text);
	pt_model_free(m);
}
