/*
 * guc.h - ptune's configuration parameters (see README.md, "Configuration").
 */
#ifndef PTUNE_GUC_H
#define PTUNE_GUC_H

extern char *ptune_model_path;
extern int	ptune_threads;
extern int	ptune_batch_size;
extern int	ptune_max_input_tokens;
extern int	ptune_request_timeout;
extern int	ptune_precision;
extern int	ptune_max_trainings_per_role;
extern int	ptune_training_slice_ms;

/* Defaults: each the variable's initial value and its GUC's boot value */
#define PTUNE_DEFAULT_BATCH_SIZE 32
#define PTUNE_DEFAULT_REQUEST_SLOTS 64
#define PTUNE_DEFAULT_MAX_SHARED_MEMORY_KB (1024 * 1024)	/* 1 GB */
#define PTUNE_DEFAULT_TRAININGS_PER_ROLE 2
#define PTUNE_DEFAULT_TRAINING_SLICE_MS 100
#define PTUNE_DEFAULT_PRECISION 1	/* bf16: as accurate as fp32 in our measurements, twice as fast */

void		ptune_define_gucs(void);

/* What to do when ptune was not preloaded (one text for every place that says it). */
#define PTUNE_PRELOAD_HINT \
	"Add ptune to shared_preload_libraries in postgresql.conf and restart the server."

#endif
