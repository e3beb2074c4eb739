/*
 * cmd_train.c - `ptune train`: prompt tuning on a labelled CSV file.
 *
 * --objective classification (the default): the label column holds class
 * labels.  --objective generation: it holds each row's target text, the
 * prompt learns to write it (validation: exact match of greedy decoding,
 * reported as the accuracies below), as train_prompt(objective =>
 * 'generation') does in SQL.
 *
 * Progress goes to stderr, one line per validation; the final metrics go to
 * stdout as one JSON object; --curve FILE also writes every validation as a
 * CSV row (for learning curves).
 *
 * --dev rows (else a --validation-fraction of --train) choose the best
 * checkpoint: their accuracy is "selection_accuracy".  --test rows take no
 * part in training or selection: their accuracy is "test_accuracy".
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "cli_data.h"
#include "error.h"
#include "trainer.h"

static const char *usage_text =
"usage: ptune train MODEL_DIR --train CSV [--dev CSV] [--test CSV] --text-column C --label-column C\n"
"         [--prompt-length 20] [--init class_labels|sampled_vocab|random_uniform]\n"
"         [--optimizer adafactor|adam] [--lr 0.3] [--batch-size 8]\n"
"         [--epochs N] [--steps N] [--max-input-tokens 128] [--ensemble K] [--seed S]\n"
"         [--validation-fraction 0.1] [--eval-every N] [--patience N]\n"
"         [--max-grad-norm N] [--weight-decay W] [--scoring label_tokens|rank]\n"
"         [--min-dim-size-to-factor 128] [--adafactor-start-step 0]\n"
"         [--objective classification|generation]\n"
"         [--curve FILE] --out PROMPT_FILE\n";

typedef struct CurveWriter
{
	FILE	   *file;
	double		started;
	bool		quiet;
} CurveWriter;

static int
report(const PtTrainProgress *p, void *arg)
{
	CurveWriter *w = arg;

	if (!p->evaluated)
		return 0;
	fprintf(stderr, "member %d/%d step %ld/%ld epoch %d loss %.4f val_accuracy %.4f val_loss %.4f rows/s %.1f\n",
			p->member + 1, p->n_members, p->step, p->total_steps, p->epoch, p->loss,
			p->val_accuracy, p->val_loss, p->rows_per_second);
	if (w->file)
		fprintf(w->file, "%d,%ld,%d,%.6f,%.6f,%.6f,%.2f\n", p->member, p->step, p->epoch, p->loss,
				p->val_accuracy, p->val_loss, p->rows_per_second);
	return 0;
}

/* Parses the options into opt and the file names; 2 on a usage error. */
static int
parse_options(int argc, char **argv, PtTrainOptions *opt, const char **files, const char **columns,
			  const char **curve)
{
	bool		epochs_given = false;

	for (int i = 1; i < argc; i++)
	{
		const char *o = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		long		n;
		double		x;

		if (v == NULL)
			break;
		i++;
		if (strcmp(o, "--train") == 0)
			files[0] = v;
		else if (strcmp(o, "--dev") == 0)
			files[1] = v;
		else if (strcmp(o, "--out") == 0)
			files[2] = v;
		else if (strcmp(o, "--test") == 0)
			files[3] = v;
		else if (strcmp(o, "--text-column") == 0)
			columns[0] = v;
		else if (strcmp(o, "--label-column") == 0)
			columns[1] = v;
		else if (strcmp(o, "--curve") == 0)
			*curve = v;
		else if (strcmp(o, "--init") == 0)
		{
			if (pt_init_parse(v, &opt->init) != 0)
				return fprintf(stderr, "ptune: %s\n", pt_error_message()), 2;
		}
		else if (strcmp(o, "--optimizer") == 0)
		{
			if (pt_optimizer_parse(v, &opt->optimizer) != 0)
				return fprintf(stderr, "ptune: %s\n", pt_error_message()), 2;
		}
		else if (strcmp(o, "--objective") == 0)
		{
			if (strcmp(v, "classification") == 0)
				opt->objective = PT_OBJECTIVE_CLASSIFICATION;
			else if (strcmp(v, "generation") == 0)
				opt->objective = PT_OBJECTIVE_GENERATION;
			else
				return fprintf(stderr, "ptune: --objective takes classification (the label column holds "
							   "class labels) or generation (it holds each row's target text), not %s\n", v), 2;
		}
		else if (strcmp(o, "--scoring") == 0)
		{
			if (pt_scoring_parse(v, &opt->scoring) != 0)
				return fprintf(stderr, "ptune: %s\n", pt_error_message()), 2;
		}
		else if (strcmp(o, "--prompt-length") == 0 && cli_parse_int(o, v, 1, PT_PROMPT_MAX_LENGTH, &n) == 0)
			opt->prompt_length = (int) n;
		else if (strcmp(o, "--batch-size") == 0 && cli_parse_int(o, v, 1, PT_MAX_BATCH_SIZE, &n) == 0)
			opt->batch_size = (int) n;
		else if (strcmp(o, "--epochs") == 0 && cli_parse_int(o, v, 0, PT_MAX_EPOCHS, &n) == 0)
			opt->epochs = (int) n, epochs_given = true;
		else if (strcmp(o, "--steps") == 0 && cli_parse_int(o, v, 1, PT_MAX_STEPS, &n) == 0)
		{
			opt->max_steps = n;
			if (!epochs_given)
				opt->epochs = 0;
		}
		else if (strcmp(o, "--max-input-tokens") == 0 && cli_parse_int(o, v, PT_MIN_INPUT_TOKENS, PT_MAX_INPUT_TOKENS, &n) == 0)
			opt->max_input_tokens = (int) n;
		else if (strcmp(o, "--ensemble") == 0 && cli_parse_int(o, v, 1, PT_MAX_ENSEMBLE_SIZE, &n) == 0)
			opt->ensemble_size = (int) n;
		else if (strcmp(o, "--seed") == 0 && cli_parse_int(o, v, 0, 2147483647L, &n) == 0)
			opt->seed = (unsigned long long) n;
		else if (strcmp(o, "--eval-every") == 0 && cli_parse_int(o, v, 1, PT_MAX_STEPS, &n) == 0)
			opt->eval_every = (int) n;
		else if (strcmp(o, "--patience") == 0 && cli_parse_int(o, v, 0, PT_MAX_PATIENCE, &n) == 0)
			opt->patience = (int) n;
		else if (strcmp(o, "--min-dim-size-to-factor") == 0 && cli_parse_int(o, v, 0, 2147483647L, &n) == 0)
			opt->min_dim_size_to_factor = (int) n;
		else if (strcmp(o, "--adafactor-start-step") == 0 && cli_parse_int(o, v, 0, PT_MAX_ADAFACTOR_START_STEP, &n) == 0)
			opt->adafactor_start_step = n;
		else if (strcmp(o, "--lr") == 0 && cli_parse_double(o, v, &x) == 0)
			opt->learning_rate = x;
		else if (strcmp(o, "--validation-fraction") == 0 && cli_parse_double(o, v, &x) == 0)
			opt->validation_fraction = x;
		else if (strcmp(o, "--max-grad-norm") == 0 && cli_parse_double(o, v, &x) == 0)
			opt->max_grad_norm = x;
		else if (strcmp(o, "--weight-decay") == 0 && cli_parse_double(o, v, &x) == 0)
			opt->weight_decay = x;
		else
		{
			fprintf(stderr, "ptune: unknown or invalid option %s\n", o);
			return 2;
		}
	}
	if (!files[0] || !files[2] || !columns[0] || !columns[1])
	{
		fputs(usage_text, stderr);
		return 2;
	}
	return 0;
}

int
cmd_train(int argc, char **argv)
{
	PtTrainOptions opt;
	const char *files[4] = {NULL, NULL, NULL, NULL};	/* train, dev, out, test */
	const char *columns[2] = {NULL, NULL};
	const char *curve = NULL;
	CliTextSet	train = {0},
				dev = {0},
				test = {0};
	CurveWriter writer = {0};
	PtModel    *m = NULL;
	PtTrainer  *t = NULL;
	const PtTrainResult *r;
	int			rc;

	pt_train_options_default(&opt);
	if (argc < 1 || argv[0][0] == '-')
	{
		fputs(usage_text, stderr);
		return 2;
	}
	if ((rc = parse_options(argc, argv, &opt, files, columns, &curve)) != 0)
		return rc;
	rc = 1;
	if ((m = cli_load_model(argv[0])) == NULL ||
		cli_read_text_set(files[0], columns[0], columns[1], &train) != 0 ||
		(files[1] && cli_read_text_set(files[1], columns[0], columns[1], &dev) != 0) ||
		(files[3] && cli_read_text_set(files[3], columns[0], columns[1], &test) != 0))
		goto done;
	if (curve && (writer.file = fopen(curve, "w")) == NULL)
	{
		perror(curve);
		goto done;
	}
	if (writer.file)
		fprintf(writer.file, "member,step,epoch,train_loss,val_accuracy,val_loss,rows_per_s\n");

	t = pt_trainer_new(m, &opt, &train.set, files[1] ? &dev.set : NULL);
	if (t == NULL || (files[3] && pt_trainer_set_test(t, &test.set) != 0) ||
		pt_train_run(t, report, &writer) != 0)
	{
		cli_engine_error("train");
		goto done;
	}
	r = pt_trainer_result(t);
	if (pt_prompt_file_write(files[2], r->prompts, r->n_prompts) != 0)
	{
		cli_engine_error("train");
		goto done;
	}
	{
		json_t	   *labels = json_array();
		json_t	   *out;

		for (int j = 0; j < r->n_labels; j++)
			json_array_append_new(labels, json_string(r->labels[j]));
		/* null, not NaN or a sentinel, where there is nothing to measure */
		out = json_pack("{s:s, s:o, s:i, s:i, s:i, s:i, s:I, s:f, s:o, s:o, s:o, s:f, s:s, s:s, s:i, s:i}",
						"objective", opt.objective == PT_OBJECTIVE_GENERATION ? "generation" : "classification",
						"labels", labels,
						"train_rows", r->train_rows,
						"val_rows", r->val_rows,
						"test_rows", r->test_rows,
						"skipped_rows", r->skipped_rows,
						"steps", (json_int_t) r->steps,
						"seconds", r->seconds,
						"final_loss", isfinite(r->final_loss) ? json_real(r->final_loss) : json_null(),
						"selection_accuracy",
						isnan(r->selection_accuracy) ? json_null() : json_real(r->selection_accuracy),
						"test_accuracy",
						isnan(r->test_accuracy) ? json_null() : json_real(r->test_accuracy),
						"train_rows_per_s", pt_trainer_progress(t)->rows_per_second,
						"init", pt_init_name(opt.init),
						"optimizer", pt_optimizer_name(opt.optimizer),
						"prompt_length", opt.prompt_length,
						"ensemble", r->n_prompts);
		json_dumpf(out, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
		putchar('\n');
		json_decref(out);
	}
	rc = 0;

done:
	if (writer.file)
		fclose(writer.file);
	pt_trainer_free(t);
	cli_free_text_set(&train);
	cli_free_text_set(&dev);
	cli_free_text_set(&test);
	pt_model_free(m);
	return rc;
}
