/*
 * worker.h - the model worker's parts (worker*.c), built into
 * ptune_worker.so, the only library that links the engine.
 */
#ifndef PTUNE_WORKER_H
#define PTUNE_WORKER_H

#include "postgres.h"

#include "lib/stringinfo.h"

#include "error.h"
#include "ipc.h"
#include "slot.h"
#include "model.h"
#include "objective.h"
#include "prompt.h"

extern PtModel *worker_model;
extern PtWorkspace worker_workspace;

/* Fails a slot with the engine's last error. */
void		worker_fail_engine(int index, const char *context);

int			worker_sqlstate(PtErrorKind kind);

/*
 * Settings, read by name: the GUC variables live in ptune.so, and this
 * library keeps its symbols to itself.
 */
const char *worker_model_path(void);
int			worker_int_setting(const char *name);

/*
 * A kind of request the worker serves (the loop in worker.c iterates over
 * a table of these): serve() runs at most one bounded unit of its work and
 * says whether it did anything; on_model_reset() drops what depends on the
 * loaded model (NULL: nothing), answering its requests with `why`.
 */
typedef struct WorkerHandler
{
	PtuneRequestKind kind;
	const char *name;
	bool		(*serve) (void);
	void		(*on_model_reset) (const char *why);
	/* also served from a training pass's pause points (worker_serve_urgent) */
	bool		urgent;
} WorkerHandler;

/*
 * Serves the urgent handlers' waiting requests (classification, explain),
 * each inside its own PG_TRY; for a training pass's pause points (see
 * worker_train.c), which must never see an ERROR.  True if any did work.
 */
bool		worker_serve_urgent(void);

/* worker_classify.c */
bool		worker_serve_classify(void);
void		worker_cache_reset(const char *why);

/*
 * The prompt cached under key (a blob's SHA-256), adding blob (len > 0) when
 * it is not cached.  NULL with *missing set: not cached and no blob given
 * (the session sends it again).  NULL otherwise: the engine's error is set
 * (an invalid blob, or one for another model).  The prompt stays valid until
 * the worker's next round of classification at least; copy what must live
 * longer.
 */
const PtPrompt *worker_cached_prompt(const uint8 *key, const char *blob, int len, bool *missing);

/* worker_generate.c */
bool		worker_serve_generate(void);
void		worker_generate_reset(const char *why);

/* worker_train.c */
bool		worker_serve_training(void);
void		worker_abort_trainings(const char *why);

/* worker_explain.c */
bool		worker_serve_explain(void);

#endif
