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
#include "model.h"
#include "objective.h"

extern PtModel *worker_model;
extern PtWorkspace worker_workspace;

/* Marks every PENDING slot of this kind RUNNING; returns how many (indices in out). */
int			worker_take_pending(PtuneRequestKind kind, int *out, int max);
/* Copies a RUNNING slot's request payload into memory of the current context. */
void		worker_read_request(int index, StringInfo msg);
/* Answers a slot: its response, or its error (then response is unused). */
void		worker_answer(int index, StringInfo response);
void		worker_fail(int index, int sqlstate, const char *message, const char *detail,
						const char *hint);
/* Fails a slot with the engine's last error. */
void		worker_fail_engine(int index, const char *context);
/* Fails a slot with the error being handled in a PG_CATCH block. */
void		worker_fail_caught(int index);
/* True if the backend gave up on the slot (cancel, timeout, exit). */
bool		worker_slot_abandoned(int index);

int			worker_sqlstate(PtErrorKind kind);

/*
 * Settings, read by name: the GUC variables live in ptune.so, and this
 * library keeps its symbols to itself.
 */
const char *worker_model_path(void);
int			worker_int_setting(const char *name);

/* worker_classify.c */
bool		worker_serve_classify(void);
void		worker_cache_reset(void);

/* worker_train.c */
bool		worker_serve_training(void);
void		worker_abort_trainings(const char *why);

/* worker_explain.c */
bool		worker_serve_explain(void);

#endif
