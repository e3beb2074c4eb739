/*
 * ipc.h - what backends and the model worker share: the state of the
 * worker, a fixed pool of request slots, training progress, and a dynamic
 * shared memory area (DSA) for request and response payloads.
 *
 * A request's life (see client.c and worker.c):
 *
 *   backend:  takes a FREE slot, copies the request payload into the DSA,
 *             marks the slot PENDING and sets the worker's latch
 *   worker:   takes every PENDING slot (RUNNING), serves them together,
 *             writes each response into the DSA, marks it DONE and sets the
 *             backend's latch
 *   backend:  reads the response, frees it, marks the slot FREE
 *
 * A backend that stops waiting (query cancel, timeout, exit) marks its slot
 * ABANDONED; whoever touches it next (the worker when it finishes, or the
 * backend itself if the worker never started on it) frees the payloads.
 * Every wake-up of a waiting backend compares the worker's generation with
 * the one that took its request, so a worker that died or restarted is an
 * error, never a hang.
 */
#ifndef PTUNE_IPC_H
#define PTUNE_IPC_H

#include "postgres.h"

#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/dsa.h"
#include "utils/timestamp.h"

#define PTUNE_MAX_SLOTS 1024
#define PTUNE_MAX_TRAININGS 16
#define PTUNE_ERROR_LEN 512
#define PTUNE_DSA_INITIAL_SIZE (4 * 1024 * 1024)

typedef enum PtuneWorkerState
{
	PTUNE_WORKER_STOPPED = 0,	/* not running (or restarting) */
	PTUNE_WORKER_LOADING,		/* loading the model */
	PTUNE_WORKER_READY,			/* serving */
	PTUNE_WORKER_FAILED			/* running, but the model could not be loaded */
} PtuneWorkerState;

typedef enum PtuneSlotState
{
	PTUNE_SLOT_FREE = 0,
	PTUNE_SLOT_PENDING,
	PTUNE_SLOT_RUNNING,
	PTUNE_SLOT_DONE,
	PTUNE_SLOT_ABANDONED
} PtuneSlotState;

typedef enum PtuneRequestKind
{
	PTUNE_REQ_CLASSIFY = 1,
	PTUNE_REQ_TRAIN,
	PTUNE_REQ_EXPLAIN
} PtuneRequestKind;

typedef struct PtuneSlot
{
	PtuneSlotState state;
	PtuneRequestKind kind;
	uint64		request_id;
	uint64		generation;		/* worker generation that took the request */
	int			backend_pid;
	Latch	   *backend_latch;
	bool		cancelled;		/* the backend asked the worker to stop (training) */
	dsa_pointer request;		/* payload, owned by the slot */
	Size		request_len;
	dsa_pointer response;
	Size		response_len;
	/* the worker's error, if the request failed */
	bool		failed;
	int			sqlstate;
	char		message[PTUNE_ERROR_LEN];
	char		detail[PTUNE_ERROR_LEN];
	char		hint[PTUNE_ERROR_LEN];
	int			progress_slot;	/* training: index into trainings[], or -1 */
} PtuneSlot;

/* Progress of one training run, shown by the view ptune.training_progress. */
typedef struct PtuneTraining
{
	bool		active;
	int			backend_pid;
	Oid			database;
	Oid			user;
	char		task[NAMEDATALEN * 2];
	char		phase[32];		/* tokenizing, training, validating, done */
	int			member;
	int			n_members;
	int64		step;
	int64		total_steps;
	int			epoch;
	double		loss;
	double		val_accuracy;
	double		best_val_accuracy;
	double		rows_per_second;
	TimestampTz started;
	TimestampTz updated;
	uint64		change_count;	/* bumped on every validation, for NOTICEs */
} PtuneTraining;

typedef struct PtuneShared
{
	LWLock		lock;			/* protects everything below but the DSA */
	int			lwlock_tranche;
	int			dsa_tranche;

	/* the worker */
	PtuneWorkerState worker_state;
	int			worker_pid;
	Latch	   *worker_latch;
	uint64		generation;		/* bumped each time a worker starts */
	TimestampTz worker_started;
	char		model_path[MAXPGPATH];
	char		model_error[PTUNE_ERROR_LEN];
	char		model_name[128];
	int64		model_parameters;
	char		model_info[4096];	/* JSON describing the loaded model */
	char		model_fingerprint[33];

	/* counters */
	uint64		next_request_id;
	uint64		requests_served;
	uint64		requests_failed;
	uint64		forward_passes;
	uint64		rows_classified;

	int			n_slots;
	PtuneTraining trainings[PTUNE_MAX_TRAININGS];
	PtuneSlot	slots[FLEXIBLE_ARRAY_MEMBER];
	/* followed by the DSA's initial segment (dsa_area_place) */
} PtuneShared;

extern PtuneShared *ptune_shared;
extern int	ptune_request_slots;	/* GUC ptune.request_slots */

/* Size of the shared struct plus the DSA's in-place segment. */
Size		ptune_shmem_size(void);
/* Creates or finds the shared struct (called from the shmem startup hook). */
void		ptune_shmem_init(void);
/* Attaches this process to the shared struct and the payload DSA (once). */
dsa_area   *ptune_dsa(void);
/* Finds the shared struct if the postmaster created it; false if ptune was not preloaded. */
bool		ptune_shmem_attach(void);

const char *ptune_worker_state_name(PtuneWorkerState state);

#endif
