/*
 * main.c - `ptune`, the engine's command-line tool.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "error.h"
#include "linear.h"

static const struct
{
	const char *name;
	int			(*run) (int argc, char **argv);
	const char *usage;
}			commands[] = {
	{"tokenize", cmd_tokenize, "tokenize MODEL_DIR             ids of each stdin line (no EOS)"},
	{"check", cmd_check, "check MODEL_DIR < cases.json   loss, logits and prompt gradient as JSON"},
	{"optimizer-check", cmd_optcheck, "optimizer-check < case.json   the optimizer's steps on given gradients"},
	{"info", cmd_info, "info MODEL_DIR                 the model's config and fingerprint as JSON"},
	{"bench", cmd_bench, "bench MODEL_DIR [--quick]      speed figures as JSON"},
	{"bench-generate", cmd_bench_generate, "bench-generate MODEL_DIR [--batches 1,32] [--quick]   generation speed as JSON"},
	{"train", cmd_train, "train MODEL_DIR --train CSV ... --out PROMPT   train a soft prompt"},
	{"classify", cmd_classify, "classify MODEL_DIR PROMPT [--scoring label_tokens|rank] < texts   label and probability per line"},
	{"generate", cmd_generate, "generate MODEL_DIR [PROMPT] [--max-new-tokens N] [--num-beams N] [--length-penalty A] < lines   generated text per line"},
	{"generate-check", cmd_generate_check, "generate-check MODEL_DIR [options] < cases.json   generated ids and scores as JSON"},
	{"evaluate", cmd_evaluate, "evaluate MODEL_DIR PROMPT CSV --text-column C --label-column C [--scoring S]"},
	{"explain", cmd_explain, "explain MODEL_DIR PROMPT [-k 5]   nearest vocabulary pieces per position"},
};

static void
usage(FILE *out)
{
	fprintf(out, "usage: ptune COMMAND ...\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  ptune %s\n", commands[i].usage);
	fprintf(out, "\nenvironment: PTUNE_THREADS (default: all cores), PTUNE_PRECISION (fp32, bf16\n"
			"or int8: bfloat16 or int8 products for inference where the CPU has them; bf16\n"
			"keeps the weights in bfloat16 only and trains in mixed precision, int8 trains in\n"
			"fp32), PTUNE_FP32_KERNEL (openblas or onednn: overrides the measured\n"
			"choice), PTUNE_CACHE_DIR (where that choice is cached), PTUNE_PIECE_ROWS\n"
			"(16-8192: the most rows of one oneDNN product; otherwise measured per precision)\n");
}

PtModel *
cli_load_model(const char *dir)
{
	const char *precision = getenv("PTUNE_PRECISION");
	PtMath		math = precision && strcmp(precision, "bf16") == 0 ? PT_MATH_BF16 :
		precision && strcmp(precision, "int8") == 0 ? PT_MATH_INT8 : PT_MATH_FP32;
	/* loaded in its precision: a bf16 model never has an fp32 copy */
	PtModel    *m = pt_model_load_math(dir, math);

	if (m == NULL)
	{
		fprintf(stderr, "ptune: %s\n", pt_error_message());
		return NULL;
	}
	if (m->math != math && pt_model_set_math(m, math) != 0)
		fprintf(stderr, "ptune: %s unavailable, using fp32: %s\n", precision, pt_error_message());
	return m;
}

int
cli_engine_error(const char *what)
{
	fprintf(stderr, "ptune: %s: %s\n", what, pt_error_message());
	return 1;
}

/*
 * OpenMP threads that spin while they wait take the cores from BLAS and
 * from other processes: with another process busy on one of two cores, a
 * training ran 70x slower with spinning waiters than with sleeping ones;
 * on an idle machine both policies measure the same (46-48 rows/s).
 * libgomp reads OMP_WAIT_POLICY when it loads, before main(), so set it and
 * start again.  The user's own setting wins.
 */
static void
reexec_with_passive_waits(char **argv)
{
	if (getenv("OMP_WAIT_POLICY") != NULL)
		return;
	setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
	execv("/proc/self/exe", argv);
	/* if exec fails, run on with the default policy */
}

int
main(int argc, char **argv)
{
	const char *threads;

	reexec_with_passive_waits(argv);
	threads = getenv("PTUNE_THREADS");

	if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)
	{
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (threads && atoi(threads) > 0)
		pt_set_threads(atoi(threads));
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].run(argc - 2, argv + 2);
	fprintf(stderr, "ptune: unknown command \"%s\"\n\n", argv[1]);
	usage(stderr);
	return 2;
}
