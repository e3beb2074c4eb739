/*
 * ptune_limits.h - every limit and default of training, classification and generation,
 * defined once (as pgvector's hnsw.h keeps its own).  Not named limits.h:
 * that would shadow the C library's <limits.h> wherever -Isrc/engine is given.
 *
 * The engine checks its arguments against these; the CLI's option parser, the
 * extension's argument checks, its GUC definitions and its wire decoders use
 * the same names (the PostgreSQL layer includes engine headers, never the
 * engine's code), and build their error messages from them.  README's table
 * of limits lists them.  The SQL signatures in sql/ptune--0.1.0.sql repeat the
 * defaults as DEFAULT clauses (SQL cannot include a C header); keep them equal.
 */
#ifndef PT_PTUNE_LIMITS_H
#define PT_PTUNE_LIMITS_H

/* A soft prompt: 1 to PT_PROMPT_MAX_LENGTH rows (the paper uses 1 to 150). */
#define PT_PROMPT_MAX_LENGTH 1024
#define PT_DEFAULT_PROMPT_LENGTH 20

/* Tokens of one input row, its EOS included (longer texts are truncated). */
#define PT_MIN_INPUT_TOKENS 2
#define PT_MAX_INPUT_TOKENS 4096
#define PT_DEFAULT_MAX_INPUT_TOKENS 128

/* Labels of a task: distinct values, bytes of one, tokens of one (EOS included). */
#define PT_MAX_LABELS 1000
#define PT_MAX_LABEL_BYTES 256
#define PT_MAX_LABEL_TOKENS 32

/*
 * Generation (the training objective): a row's target text is cut to this
 * many tokens, EOS included (PT_MAX_TARGET_TOKENS - 1 text tokens, then EOS).
 */
#define PT_MAX_TARGET_TOKENS 64

/* Training: rows per step, prompts of an ensemble, epochs and steps. */
#define PT_MAX_BATCH_SIZE 4096
#define PT_DEFAULT_BATCH_SIZE 8
#define PT_MAX_ENSEMBLE_SIZE 64
#define PT_MAX_EPOCHS 100000
/* validations without improvement before training stops (the CLI's --patience) */
#define PT_MAX_PATIENCE 100000
#define PT_DEFAULT_EPOCHS 3
#define PT_MAX_STEPS 100000000
#define PT_MAX_LEARNING_RATE 100
#define PT_DEFAULT_LEARNING_RATE 0.3
#define PT_DEFAULT_SEED 42
/* far beyond any real schedule (the paper's runs start at 1,100,000) */
#define PT_MAX_ADAFACTOR_START_STEP 1000000000000L

/*
 * The share of the rows held out for validation: at most 0.9, so that at
 * least a tenth of the rows trains (the same bound for SQL, the CLI and the
 * engine, which checks it).
 */
#define PT_MAX_VALIDATION_FRACTION 0.9
#define PT_DEFAULT_VALIDATION_FRACTION 0.1

/* ptune.explain_prompt(): nearest vocabulary pieces per prompt row. */
#define PT_MAX_EXPLAIN_K 100

/*
 * Text generation (generate.h): new tokens per row (EOS included), beams,
 * T5X's length penalty alpha, and the input tokens (EOS included) of a row
 * without a prompt (a prompt brings its own max_input_tokens).
 */
#define PT_GENERATE_MAX_NEW_TOKENS 512
#define PT_GENERATE_DEFAULT_MAX_NEW_TOKENS 32
#define PT_GENERATE_MAX_BEAMS 16
#define PT_GENERATE_DEFAULT_BEAMS 1
#define PT_GENERATE_MAX_ALPHA 10.0
#define PT_GENERATE_DEFAULT_ALPHA 0.6
#define PT_GENERATE_MAX_INPUT_TOKENS 512

/* A task's name (the extension's; sql/ptune--0.1.0.sql's CHECK repeats it). */
#define PT_MAX_TASK_NAME_BYTES 200

/*
 * The largest variable-length field of a worker message (a text, a prompt
 * blob, the rows of a training chunk) and the largest prompt file: 64 MB.
 * A prompt of 1024 rows of d_model 4096 in fp32 is 16 MB.
 */
#define PT_MAX_FIELD_BYTES (64 << 20)

#endif
