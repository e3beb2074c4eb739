/*
 * main.c - runs every engine unit test and prints "N passed, N failed".
 *
 * usage: test_engine [NAME_SUBSTRING]   (runs the tests whose name contains it)
 * A test that calls SKIP() is printed and counted as skipped, not passed.
 * PTUNE_UNIT_SKIP=a,b skips tests whose names contain a or b (the valgrind
 * run skips the long tests, which ASan already covers); they are listed and
 * counted as skipped.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit.h"

#define TESTS(X) \
	X(test_tokenizer_reference_cases) \
	X(test_tokenizer_truncation) \
	X(test_relative_buckets) \
	X(test_loader_errors) \
	X(test_loader_variants) \
	X(test_half_precision_checkpoints) \
	X(test_gradient_finite_differences) \
	X(test_mixed_precision_gradient) \
	X(test_cross_absorbed_matches_usual) \
	X(test_cross_absorb_choice) \
	X(test_cross_absorbed_random_shapes) \
	X(test_determinism) \
	X(test_packing_matches_single_rows) \
	X(test_random_shapes_match_single_rows) \
	X(test_gradient_deterministic_20_runs) \
	X(test_training_deterministic_20_runs) \
	X(test_prompt_roundtrip) \
	X(test_prompt_corruption) \
	X(test_score_plans) \
	X(test_optimizers) \
	X(test_label_scores_match_full_logits) \
	X(test_rank_scores_match_brute_force) \
	X(test_decoder_trees_checked) \
	X(test_rank_large_trie) \
	X(test_classify_mixed_tasks_and_ensembles) \
	X(test_classify_bf16_matches_fp32) \
	X(test_classify_int8_matches_fp32) \
	X(test_fp32_kernels_agree) \
	X(test_small_gemm_matches_float64) \
	X(test_int8_product_within_bound) \
	X(test_log_sum_exp_argmax_one_pass) \
	X(test_vector_kernels_match_float64) \
	X(test_attention_inference_blocks) \
	X(test_attention_bf16) \
	X(test_bf16_outputs) \
	X(test_products_from_threads) \
	X(test_bf16_backward_from_packed) \
	X(test_kernel_choice_reported_and_cached) \
	X(test_explain_nearest_pieces) \
	X(test_bf16_embedding_stays_in_checkpoint) \
	X(test_training_learns) \
	X(test_training_deterministic_and_cancellable) \
	X(test_training_micro_batches_match_steps) \
	X(test_yield_is_transparent) \
	X(test_training_stops_on_nan) \
	X(test_training_metadata_is_json) \
	X(test_training_option_errors) \
	X(test_generation_training_learns) \
	X(test_generation_training_errors) \
	X(test_squad_metrics) \
	X(test_model_info_json_escapes_name) \
	X(test_generate_cached_matches_teacher_forced) \
	X(test_generate_batch_matches_single_rows) \
	X(test_generate_split_matches_one_thread) \
	X(test_generate_many_rows_in_chunks) \
	X(test_generate_stops_at_eos_and_max_tokens) \
	X(test_generate_bf16_cache_matches_fp32) \
	X(test_generate_errors) \
	X(test_generate_cancel_points) \
	X(test_csv_rfc4180) \
	X(test_csv_errors)

#define DECLARE(name) void name(void);
TESTS(DECLARE)

int			unit_failures;
const char *unit_skip_reason;
static char temp_root[256];

void
unit_fail(const char *file, int line, const char *fmt,...)
{
	va_list		ap;

	fprintf(stdout, "    %s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	unit_failures++;
}

/* Paths live in a ring of buffers so a test can hold several at once. */
static char *
path_buffer(void)
{
	static char ring[8][1024];
	static int	next;

	return ring[next++ % 8];
}

const char *
unit_model_dir(const char *name)
{
	char	   *path = path_buffer();
	const char *root = getenv("PTUNE_TEST_MODELS");

	if (root == NULL)
		return NULL;
	snprintf(path, 1024, "%s/%s", root, name);
	return access(path, R_OK) == 0 ? path : NULL;
}

const char *
unit_shared_path(const char *rel)
{
	char	   *path = path_buffer();
	const char *root = getenv("PTUNE_SHARED");

	if (root == NULL)
		return NULL;
	snprintf(path, 1024, "%s/%s", root, rel);
	return access(path, R_OK) == 0 ? path : NULL;
}

const char *
unit_temp_dir(void)
{
	static int	counter;
	static char path[512];

	snprintf(path, sizeof(path), "%s/t%d", temp_root, counter++);
	if (mkdir(path, 0700) != 0)
		return NULL;
	return path;
}

static bool
skipped(const char *name)
{
	const char *skip = getenv("PTUNE_UNIT_SKIP");
	char		list[256],
			   *save = NULL;

	if (skip == NULL)
		return false;
	snprintf(list, sizeof(list), "%s", skip);
	for (char *s = strtok_r(list, ",", &save); s; s = strtok_r(NULL, ",", &save))
		if (strstr(name, s))
			return true;
	return false;
}

int
main(int argc, char **argv)
{
	static const struct
	{
		const char *name;
		void		(*fn) (void);
	}			tests[] = {
#define ENTRY(name) {#name, name},
		TESTS(ENTRY)
	};
	int			passed = 0,
				failed = 0,
				skips = 0;
	char		cmd[600];

	snprintf(temp_root, sizeof(temp_root), "/tmp/ptune-unit-XXXXXX");
	if (mkdtemp(temp_root) == NULL)
	{
		perror("mkdtemp");
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
	{
		if (argc > 1 && strstr(tests[i].name, argv[1]) == NULL)
			continue;
		if (skipped(tests[i].name))
		{
			printf("%s\n  skipped: PTUNE_UNIT_SKIP\n", tests[i].name);
			skips++;
			continue;
		}
		unit_failures = 0;
		unit_skip_reason = NULL;
		printf("%s\n", tests[i].name);
		tests[i].fn();
		if (unit_failures == 0 && unit_skip_reason)
		{
			printf("  skipped: %s\n", unit_skip_reason);
			skips++;
		}
		else if (unit_failures == 0)
		{
			printf("  ok\n");
			passed++;
		}
		else
		{
			printf("  FAILED (%d checks)\n", unit_failures);
			failed++;
		}
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", temp_root);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", temp_root);
	printf("%d passed, %d failed, %d skipped\n", passed, failed, skips);
	return failed ? 1 : 0;
}
