/*
 * guc.c - ptune's configuration parameters.
 *
 * Settings that decide which model runs and how many resources it takes are
 * PGC_SIGHUP (postgresql.conf or ALTER SYSTEM, so superuser-only); the
 * worker re-reads them on a configuration reload.
 */
#include "postgres.h"

#include "utils/guc.h"

#include "guc.h"
#include "ipc.h"
#include "ptune_limits.h"
#include "scoring.h"

char	   *ptune_model_path = NULL;
int			ptune_threads = 0;
int			ptune_batch_size = PTUNE_DEFAULT_BATCH_SIZE;
int			ptune_max_input_tokens = PT_DEFAULT_MAX_INPUT_TOKENS;
int			ptune_request_timeout = 0;
int			ptune_max_trainings_per_role = PTUNE_DEFAULT_TRAININGS_PER_ROLE;
int			ptune_training_slice_ms = PTUNE_DEFAULT_TRAINING_SLICE_MS;
int			ptune_precision = PTUNE_DEFAULT_PRECISION;

/* values as scoring.h: -1 defers to the task's stored mode, else the engine's PtScoring */
static const struct config_enum_entry scoring_options[] = {
	{"stored", PTUNE_SCORING_STORED, false},
	{"label_tokens", PTUNE_SCORING_DEFAULT, false},
	{"rank", 1, false},
	{NULL, 0, false}
};

static const struct config_enum_entry precision_options[] = {
	{"fp32", 0, false},
	{"bf16", 1, false},
	{NULL, 0, false}
};

void
ptune_define_gucs(void)
{
	DefineCustomStringVariable("ptune.model_path",
							   "Directory of the T5 checkpoint the ptune worker serves.",
							   "A Hugging Face checkpoint directory: config.json, model.safetensors, spiece.model.",
							   &ptune_model_path, "", PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ptune.threads",
							"Threads the ptune worker computes with (0: one per CPU core).",
							NULL, &ptune_threads, 0, 0, 256, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ptune.batch_size",
							"Most rows the ptune worker classifies in one forward pass.",
							"Requests of several sessions are batched together up to this size.",
							&ptune_batch_size, PTUNE_DEFAULT_BATCH_SIZE, 1, PT_MAX_BATCH_SIZE, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomEnumVariable("ptune.precision",
							 "Arithmetic of the worker's classification: bf16 (bfloat16 products, the default) or fp32.",
							 "bf16 needs a CPU with AVX512-BF16 or AMX; elsewhere the worker uses fp32. "
							 "Training always computes in fp32.",
							 &ptune_precision, PTUNE_DEFAULT_PRECISION, precision_options, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ptune.request_slots",
							"Requests that can wait for the ptune worker at once.",
							"Further callers wait for a free slot.",
							&ptune_request_slots, PTUNE_DEFAULT_REQUEST_SLOTS, 4, PTUNE_MAX_SLOTS, PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ptune.max_shared_memory",
							"Most shared memory the payloads of ptune requests may take.",
							"A request (or training chunk) larger than this fails with a clear error.",
							&ptune_max_shared_memory, PTUNE_DEFAULT_MAX_SHARED_MEMORY_KB, 8 * 1024, INT_MAX, PGC_SIGHUP,
							GUC_UNIT_KB, NULL, NULL, NULL);
	DefineCustomIntVariable("ptune.max_trainings_per_role",
							"Most prompts one role may train at once.",
							"Trainings together may also hold at most half of ptune.request_slots; "
							"the other slots are kept for classification.",
							&ptune_max_trainings_per_role, PTUNE_DEFAULT_TRAININGS_PER_ROLE, 1, PTUNE_MAX_TRAININGS, PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ptune.training_slice_ms",
							"Longest run of training work between two classification rounds of the worker.",
							"Training advances in slices of about this length (a micro-batch of a step, "
							"a part of a validation); classification requests are served between them.",
							&ptune_training_slice_ms, PTUNE_DEFAULT_TRAINING_SLICE_MS, 1, 10000, PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ptune.max_input_tokens",
							"Default input length, in tokens, for ptune.train_prompt().",
							"Longer texts are truncated.  A trained prompt keeps the value it was trained with.",
							&ptune_max_input_tokens, PT_DEFAULT_MAX_INPUT_TOKENS,
							PT_MIN_INPUT_TOKENS, PT_MAX_INPUT_TOKENS, PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ptune.request_timeout",
							"Longest wait for a classification by the ptune worker (0: no limit).",
							"statement_timeout applies as well; training is bounded by statement_timeout only.",
							&ptune_request_timeout, 0, 0, INT_MAX, PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomEnumVariable("ptune.scoring",
							 "How classify, classify_scores and evaluate score labels when the call gives no scoring.",
							 "stored: the mode stored with the task's active version; label_tokens: softmax over "
							 "the labels' tokens; rank: sum of full-vocabulary log-probabilities (T5X's rank classification).",
							 &ptune_scoring, PTUNE_SCORING_STORED, scoring_options, PGC_USERSET, 0,
							 NULL, NULL, NULL);
	MarkGUCPrefixReserved("ptune");
}
