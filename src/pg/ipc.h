/*
 * ipc.h - what backends and the model worker share: the state of the
 * worker, a fixed pool of request slots, training progress, and a dynamic
 * shared memory area (DSA) for request and response payloads.
 *
 * A request's life (the protocol is in slot.c, used by client.c and worker*.c):
 *
 *   backend:  waits its turn (FIFO, on a condition variable) for a FREE slot
 *             and RESERVEs it; then, without the lock, copies the request
 *             payload into the DSA, marks the slot PENDING and sets the
 *             worker's latch
 *   worker:   takes every PENDING slot (RUNNING), serves them together,
 *             writes each response into the DSA, marks it DONE and sets the
 *             backend's latch
 *   backend:  reads the response, frees it, marks the slot FREE
 *
 * A backend that stops waiting (query cancel, timeout, exit) marks its slot
 * ABANDONED; whoever touches it next (the worker when it finishes, or the
 * backend itself if the worker never started on it) frees the payloads.
 * Payloads are allocated and copied only outside the lock, and only once a
 * slot holds them, so no exit path can lose one.
 * Every wake-up of a waiting backend compares the worker's generation with
 * the one that took its request, so a worker that died or restarted is an
 * error, never a hang.
 */
#ifndef PTUNE_IPC_H
#define PTUNE_IPC_H

#include "postgres.h"

#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/dsa.h"
#include "utils/timestamp.h"

#define PTUNE_MAX_SLOTS 1024
#define PTUNE_MAX_TRAININGS 16
#define PTUNE_ERROR_LEN 512
#define PTUNE_DSA_INITIAL_SIZE (4 * 1024 * 1024)

/*
 * Bump whenever PtuneShared (or anything in it) changes: a worker or backend
 * library of another build then refuses the shared memory with a clear error
 * instead of reading it with the wrong offsets.
 */
#ifndef PTUNE_SHMEM_LAYOUT_OTHER
#define PTUNE_SHMEM_LAYOUT 5
#else
#define PTUNE_SHMEM_LAYOUT 999	/* a library "of another build", for test/pg/tests.sh */
#endif
#define PTUNE_SHMEM_MAGIC 0x7074756e	/* "ptun" */

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
	PTUNE_SLOT_RESERVED,		/* taken by a backend that is copying its payload in */
	PTUNE_SLOT_PENDING,
	PTUNE_SLOT_RUNNING,
	PTUNE_SLOT_DONE,
	PTUNE_SLOT_ABANDONED
} PtuneSlotState;

typedef enum PtuneRequestKind
{
	PTUNE_REQ_CLASSIFY = 1,
	PTUNE_REQ_TRAIN,
	PTUNE_REQ_EXPLAIN,
	PTUNE_REQ_GENERATE
} PtuneRequestKind;

typedef struct PtuneSlot
{
	PtuneSlotState state;
	PtuneRequestKind kind;
	uint64		request_id;
	uint64		generation;		/* worker generation that took the request */
	int			backend_pid;
	Oid			user;			/* the role that sent it (per-role training cap) */
	Latch	   *backend_latch;
	bool		cancelled;		/* the backend asked the worker to stop (training) */
	dsa_pointer request;		/* payload, owned by the slot */
	Size		request_len;
	dsa_pointer response;
	Size		response_len;
	/* a request that streams its data (training rows): the chunk handed over */
	bool		want_chunk;		/* the worker is ready for the next chunk */
	dsa_pointer chunk;			/* the chunk the worker has not consumed yet */
	Size		chunk_len;
	bool		chunk_last;
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
	char		phase[32];		/* receiving rows, then pt_trainer_phase()'s */
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

/* A backend waiting for a free slot; the lowest ticket that may take one goes first. */
typedef struct PtuneWaiter
{
	int			pid;			/* 0: unused entry */
	bool		training;
	uint64		ticket;
} PtuneWaiter;

/*
 * Found under its own name, with a size that never changes, so that any
 * build can read it and compare layouts before touching PtuneShared.
 */
typedef struct PtuneShmemHeader
{
	uint32		magic;
	uint32		layout;
	Size		size;			/* of the "ptune" struct */
} PtuneShmemHeader;

typedef struct PtuneShared
{
	uint32		layout;			/* PTUNE_SHMEM_LAYOUT of the build that created it */
	LWLock		lock;			/* protects everything below but the DSA and atomics */
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
	uint64		training_pauses;	/* training passes paused to serve requests */
	uint64		rows_generated;	/* texts decoded by ptune.generate (NULL inputs not counted) */

	/* payload bytes now allocated in the DSA (requests and responses) */
	pg_atomic_uint64 payload_bytes;

	/* backends waiting for a slot: FIFO by ticket */
	ConditionVariable slot_freed;	/* broadcast when a slot frees or a waiter leaves */
	uint64		next_ticket;
	int			n_waiters;		/* entries of ptune_waiters() (MaxBackends) */

	int			n_slots;
	PtuneTraining trainings[PTUNE_MAX_TRAININGS];
	PtuneSlot	slots[FLEXIBLE_ARRAY_MEMBER];
	/* followed by n_waiters PtuneWaiters, then the DSA's initial segment */
} PtuneShared;

extern PtuneShared *ptune_shared;
extern int	ptune_request_slots;	/* GUC ptune.request_slots */
extern int	ptune_max_shared_memory;	/* GUC ptune.max_shared_memory, in kB */

/* Size of the shared struct plus the DSA's in-place segment. */
Size		ptune_shmem_size(void);
/* Creates or finds the shared struct (called from the shmem startup hook). */
void		ptune_shmem_init(void);
/* Attaches this process to the shared struct and the payload DSA (once). */
dsa_area   *ptune_dsa(void);
/*
 * Finds the shared struct if the postmaster created it; false if ptune was
 * not preloaded.  Raises an ERROR (SQLSTATE 55000) when the struct was made
 * by a build with another layout.
 */
bool		ptune_shmem_attach(void);
/* The waiters' table that follows the slots. */
PtuneWaiter *ptune_waiters(void);
/* Applies ptune.max_shared_memory to the payload area (every process may). */
void		ptune_dsa_apply_limit(void);
/* ptune.max_shared_memory in bytes (at least twice the area's first segment). */
size_t		ptune_dsa_limit(void);

const char *ptune_worker_state_name(PtuneWorkerState state);

#endif
