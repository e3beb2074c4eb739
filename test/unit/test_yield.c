/*
 * test_yield.c - the pause points of a training pass (yield.h).
 *
 * The database worker serves classification from inside a suspended
 * training or validation pass.  That is only sound if the two share no mutable state:
 * here a hook runs a whole classification batch (in bfloat16 where the CPU
 * has it, so that its per-thread scratch is used too) at every pause point,
 * and the training must come out bitwise identical to a run without the
 * hook, while each of those classifications must equal the same batch run
 * alone.  A hook that asks to stop must end the unit of work cleanly (ASan
 * checks that nothing leaks).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "classifier.h"
#include "error.h"
#include "helpers.h"
#include "rng.h"
#include "trainer.h"
#include "unit.h"

#define N_ROWS 48
#define N_CLASSIFY 6

typedef struct Rows
{
	char		text[N_ROWS][96];
	const char *texts[N_ROWS];
	const char *labels[N_ROWS];
	PtTextSet	set;
} Rows;

static void
make_rows(Rows *r)
{
	static const char *words[] = {"dog", "apple", "river", "cheap", "meeting", "happy", "red"};
	uint64_t	seed = 11;

	for (int i = 0; i < N_ROWS; i++)
	{
		int			len = 0;

		/* 3 to 9 words, so that rows pack into sequences of different lengths */
		for (int w = 0; w < 3 + i % 7; w++)
			len += snprintf(r->text[i] + len, sizeof(r->text[i]) - len, "%s ",
							words[test_rand(&seed) % 7]);
		r->texts[i] = r->text[i];
		r->labels[i] = i % 3 == 0 ? "this" : i % 3 == 1 ? "that" : "new york";
	}
	r->set = (PtTextSet) {N_ROWS, r->texts, NULL, r->labels};
}

/* What the hook does at each pause point: one classification batch, checked against its reference. */
typedef struct Served
{
	const PtModel *m;
	PtWorkspace ws;				/* the classification's own workspace */
	PtClassifyRow rows[N_CLASSIFY];
	PtClassifyResult res[N_CLASSIFY];
	float		probs[N_CLASSIFY][3];
	int			ref_label[N_CLASSIFY];
	float		ref_probs[N_CLASSIFY][3];
	int			calls;
	int			mismatches;
	int			failures;
	int			stop_at;		/* 0: never stop; else ask to stop at this call */
} Served;

static int
classify_in_pause(void *arg)
{
	Served	   *s = arg;

	s->calls++;
	if (pt_classify(s->m, &s->ws, s->rows, N_CLASSIFY, s->res) != 0)
		s->failures++;
	else
		for (int i = 0; i < N_CLASSIFY; i++)
			if (s->res[i].label != s->ref_label[i] ||
				memcmp(s->probs[i], s->ref_probs[i], sizeof(s->probs[i])) != 0)
				s->mismatches++;
	return s->stop_at > 0 && s->calls >= s->stop_at;
}

static PtTrainer *
new_trainer(const PtModel *m, const Rows *rows)
{
	PtTrainOptions o;

	pt_train_options_default(&o);
	o.prompt_length = 6;
	o.init = PT_INIT_RANDOM_UNIFORM;
	o.optimizer = PT_OPT_ADAM;
	o.learning_rate = 0.1;
	o.batch_size = 8;
	o.max_steps = 3;
	o.epochs = 0;
	o.eval_every = 2;
	o.validation_fraction = 0.25;
	o.max_input_tokens = 16;
	return pt_trainer_new(m, &o, &rows->set, NULL);
}

void		test_yield_is_transparent(void);
void
test_yield_is_transparent(void)
{
	const char *dir = unit_model_dir("tiny-gated");
	static const char *labels[] = {"ham", "spam", "maybe"};
	static const char *texts[N_CLASSIFY] = {"cheap pills buy now", "meeting at noon", "the river",
	"call me", "win a free prize now or never", "red"};
	PtModel    *m;
	PtTask	   *task;
	PtPrompt   *p;
	PtRng		rng;
	Served	   *s = calloc(1, sizeof(Served));
	int32_t		ids[N_CLASSIFY][24];
	const float *pv[1];
	int			pl[1];
	Rows		rows;
	PtTrainer  *plain,
			   *paused;
	int			rc_plain = 0,
				rc_paused = 0,
				training_units = 0,
				validation_units = 0,
				per_pass;
	size_t		n;

	REQUIRE(dir != NULL && s != NULL);
	m = pt_model_load(dir);
	REQUIRE(m != NULL);
	/* classification in bfloat16 where possible: training stays fp32, so both runs still agree */
	if (pt_bf16_supported())
		REQUIRE(pt_model_set_math(m, PT_MATH_BF16) == 0);
	per_pass = 2 * (m->cfg.num_layers + m->cfg.num_decoder_layers);

	/* the classification the hook runs, and its answer when run alone */
	task = pt_task_new(m, labels, 3, 24);
	REQUIRE(task != NULL);
	pt_rng_seed(&rng, 3);
	p = pt_prompt_new(m, task, 5, PT_INIT_RANDOM_UNIFORM, &rng);
	REQUIRE(p != NULL);
	pv[0] = p->values;
	pl[0] = p->length;
	s->m = m;
	for (int i = 0; i < N_CLASSIFY; i++)
	{
		s->rows[i] = (PtClassifyRow) {task, i % 2 ? PT_SCORE_RANK : PT_SCORE_LABEL_TOKENS, 1, pv, pl,
			ids[i], pt_encode_input(m, 24, texts[i], strlen(texts[i]), ids[i])};
		s->res[i].probs = s->probs[i];
	}
	REQUIRE(pt_classify(m, &s->ws, s->rows, N_CLASSIFY, s->res) == 0);
	for (int i = 0; i < N_CLASSIFY; i++)
	{
		s->ref_label[i] = s->res[i].label;
		memcpy(s->ref_probs[i], s->probs[i], sizeof(s->probs[i]));
	}

	/* the gradient of one batch, with and without a classification at every pause point */
	{
		PtWorkspace ws_plain = {0},
					ws_paused = {0};
		PtExample	ex[3];
		int32_t		in[3][16],
					target[2] = {5, 1};
		float	   *g_plain = calloc(3 * 6 * (size_t) m->cfg.d_model, sizeof(float)),
				   *g_paused = calloc(3 * 6 * (size_t) m->cfg.d_model, sizeof(float));
		float	   *gp[3],
				   *gq[3];
		double		l_plain,
					l_paused;
		float	   *prompt = calloc(6 * (size_t) m->cfg.d_model, sizeof(float));

		REQUIRE(g_plain && g_paused && prompt);
		for (size_t k = 0; k < 6 * (size_t) m->cfg.d_model; k++)
			prompt[k] = 0.01f * (float) ((k * 7919) % 101) - 0.5f;
		for (int i = 0; i < 3; i++)
		{
			int			len = pt_encode_input(m, 16, texts[i], strlen(texts[i]), in[i]);

			ex[i] = (PtExample) {prompt, 6, in[i], len, target, 1 + i % 2, 0.25f};
			gp[i] = g_plain + (size_t) i * 6 * m->cfg.d_model;
			gq[i] = g_paused + (size_t) i * 6 * m->cfg.d_model;
		}
		s->calls = 0;
		l_plain = pt_objective(m, &ws_plain, ex, 3, NULL, gp, NULL);
		ws_paused.yield = (PtYield) {classify_in_pause, s};
		l_paused = pt_objective(m, &ws_paused, ex, 3, NULL, gq, NULL);
		CHECKF(s->calls == per_pass, "%d pause points in one pass, expected %d", s->calls, per_pass);
		CHECK(!isnan(l_plain) && memcmp(&l_plain, &l_paused, sizeof(double)) == 0);
		CHECK(memcmp(g_plain, g_paused, sizeof(float) * 3 * 6 * m->cfg.d_model) == 0);
		/* a forward-only pass pauses before each layer too */
		s->calls = 0;
		REQUIRE(!isnan(pt_objective(m, &ws_paused, ex, 3, NULL, NULL, NULL)));
		CHECK(s->calls == per_pass / 2);
		pt_workspace_free(&ws_plain);
		pt_workspace_free(&ws_paused);
		free(g_plain);
		free(g_paused);
		free(prompt);
	}

	/* whole training runs in micro-batches of 3 rows: identical prompts after every unit */
	make_rows(&rows);
	plain = new_trainer(m, &rows);
	paused = new_trainer(m, &rows);
	REQUIREF(plain && paused, "%s", pt_error_message());
	n = (size_t) 6 * m->cfg.d_model;
	s->calls = 0;
	pt_trainer_set_yield(paused, classify_in_pause, s);
	while (rc_plain == 0 && rc_paused == 0)
	{
		bool		training = strcmp(pt_trainer_phase(paused), "training") == 0;
		int			calls = s->calls;

		rc_plain = pt_trainer_advance(plain, 3);
		rc_paused = pt_trainer_advance(paused, 3);
		training_units += training;
		validation_units += !training;
		REQUIRE(rc_plain >= 0 && rc_paused == rc_plain);
		/* a micro-batch pauses in its forward and backward; a validation slice (one pass) in its forward */
		CHECKF(s->calls - calls == (training ? per_pass : per_pass / 2), "%s unit: %d pauses",
			   training ? "training" : "validation", s->calls - calls);
		CHECK(pt_trainer_unit_yield_seconds(paused) > 0.0);
		CHECK(memcmp(pt_trainer_prompt(plain)->values, pt_trainer_prompt(paused)->values,
					 sizeof(float) * n) == 0);
	}
	CHECK(training_units == 3 * 3);	/* 3 steps of 8 rows in micro-batches of 3 */
	CHECK(validation_units > 0);
	CHECKF(s->failures == 0 && s->mismatches == 0, "%d failures, %d mismatches in %d classifications", s->failures, s->mismatches, s->calls);
	{
		const PtTrainResult *a = pt_trainer_result(plain),
				   *b = pt_trainer_result(paused);

		REQUIRE(a && b);
		CHECK(memcmp(&a->selection_accuracy, &b->selection_accuracy, sizeof(double)) == 0);
		CHECK(memcmp(&a->final_loss, &b->final_loss, sizeof(double)) == 0);
		CHECK(memcmp(a->prompts[0]->values, b->prompts[0]->values, sizeof(float) * n) == 0);
	}
	pt_trainer_free(plain);
	pt_trainer_free(paused);

	/* a hook that asks to stop in the middle of a backward pass ends the unit with PT_ERR_CANCELLED */
	paused = new_trainer(m, &rows);
	REQUIRE(paused != NULL);
	s->calls = 0;
	s->stop_at = per_pass - 2;
	pt_trainer_set_yield(paused, classify_in_pause, s);
	CHECK(pt_trainer_advance(paused, 3) == -1);
	CHECKF(pt_error_kind() == PT_ERR_CANCELLED, "%s", pt_error_message());
	CHECK(s->calls == per_pass - 2);
	CHECK(pt_trainer_advance(paused, 3) == -1);	/* it takes no more steps */
	CHECK(pt_trainer_progress(paused)->step == 0);
	pt_trainer_free(paused);

	pt_workspace_free(&s->ws);
	free(s);
	pt_prompt_free(p);
	pt_task_free(task);
	pt_model_free(m);
}
