/*
 * ipc.c - the shared state of ptune (see ipc.h).  Linked into both the
 * backend library (ptune.so) and the worker library (ptune_worker.so).
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "guc.h"
#include "ipc.h"

PtuneShared *ptune_shared = NULL;
int			ptune_request_slots = PTUNE_DEFAULT_REQUEST_SLOTS;	/* GUC ptune.request_slots (see guc.c) */
int			ptune_max_shared_memory = PTUNE_DEFAULT_MAX_SHARED_MEMORY_KB;	/* GUC ptune.max_shared_memory, kB */
static dsa_area *payload_area = NULL;
static size_t applied_limit = 0;

const char *
ptune_worker_state_name(PtuneWorkerState state)
{
	switch (state)
	{
		case PTUNE_WORKER_STOPPED:
			return "stopped";
		case PTUNE_WORKER_LOADING:
			return "loading";
		case PTUNE_WORKER_READY:
			return "ready";
		case PTUNE_WORKER_FAILED:
			return "failed";
	}
	return "unknown";
}

static Size
slots_end(int n_slots)
{
	return MAXALIGN(add_size(offsetof(PtuneShared, slots), mul_size(n_slots, sizeof(PtuneSlot))));
}

/* One waiter entry per backend that could wait: MaxBackends. */
static Size
struct_size(int n_slots, int n_waiters)
{
	return MAXALIGN(add_size(slots_end(n_slots), mul_size(n_waiters, sizeof(PtuneWaiter))));
}

Size
ptune_shmem_size(void)
{
	return add_size(struct_size(ptune_request_slots, MaxBackends), PTUNE_DSA_INITIAL_SIZE);
}

PtuneWaiter *
ptune_waiters(void)
{
	return (PtuneWaiter *) ((char *) ptune_shared + slots_end(ptune_shared->n_slots));
}

static void *
dsa_place(PtuneShared *shared)
{
	return (char *) shared + struct_size(shared->n_slots, shared->n_waiters);
}

/* ptune.max_shared_memory in bytes; never below the area's first segment. */
static size_t
limit_bytes(void)
{
	const char *setting = GetConfigOption("ptune.max_shared_memory", true, false);
	size_t		kb = setting ? (size_t) strtoull(setting, NULL, 10) : (size_t) ptune_max_shared_memory;

	return Max(kb * 1024, (size_t) 2 * PTUNE_DSA_INITIAL_SIZE);
}

void
ptune_shmem_init(void)
{
	bool		found,
				header_found;
	PtuneShmemHeader *header;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	header = ShmemInitStruct("ptune layout", sizeof(PtuneShmemHeader), &header_found);
	ptune_shared = ShmemInitStruct("ptune", ptune_shmem_size(), &found);
	if (!found)
	{
		dsa_area   *area;

		header->magic = PTUNE_SHMEM_MAGIC;
		header->layout = PTUNE_SHMEM_LAYOUT;
		header->size = ptune_shmem_size();
		memset(ptune_shared, 0, struct_size(ptune_request_slots, MaxBackends));
		ptune_shared->layout = PTUNE_SHMEM_LAYOUT;
		ptune_shared->n_slots = ptune_request_slots;
		ptune_shared->n_waiters = MaxBackends;
		ptune_shared->lwlock_tranche = LWLockNewTrancheId();
		ptune_shared->dsa_tranche = LWLockNewTrancheId();
		LWLockInitialize(&ptune_shared->lock, ptune_shared->lwlock_tranche);
		ConditionVariableInit(&ptune_shared->slot_freed);
		pg_atomic_init_u64(&ptune_shared->payload_bytes, 0);
		ptune_shared->next_request_id = 1;
		ptune_shared->next_ticket = 1;
		for (int i = 0; i < ptune_shared->n_slots; i++)
		{
			ptune_shared->slots[i].request = InvalidDsaPointer;
			ptune_shared->slots[i].response = InvalidDsaPointer;
		}

		/*
		 * The payload area starts inside this block and grows with DSM
		 * segments up to ptune.max_shared_memory.  Pinned, it outlives every
		 * process that detaches; a crash restart re-creates the whole block.
		 */
		area = dsa_create_in_place(dsa_place(ptune_shared), PTUNE_DSA_INITIAL_SIZE,
								   ptune_shared->dsa_tranche, NULL);
		dsa_set_size_limit(area, limit_bytes());
		dsa_pin(area);
		dsa_detach(area);
	}
	LWLockRelease(AddinShmemInitLock);
}

static void
layout_mismatch(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("ptune's shared memory was created by another build of ptune"),
			 errdetail("%s", what),
			 errhint("The ptune libraries were replaced while the server ran: restart the server.")));
}

bool
ptune_shmem_attach(void)
{
	if (ptune_shared == NULL)
	{
		const char *slots = GetConfigOption("ptune.request_slots", true, false);
		bool		found;
		PtuneShmemHeader *header;
		PtuneShared *shared;

		/* the GUC exists, and the struct too, only if ptune.so was preloaded */
		if (slots == NULL)
			return false;
		ptune_request_slots = atoi(slots);

		/*
		 * Read the header first: it has the same size in every build, so
		 * looking it up cannot fail, and it says whether the big struct has
		 * our layout before we look that up with our idea of its size.
		 */
		LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
		header = ShmemInitStruct("ptune layout", sizeof(PtuneShmemHeader), &found);
		if (!found)
			header->magic = 0;	/* just allocated: the server runs an older build */
		LWLockRelease(AddinShmemInitLock);
		if (header->magic != PTUNE_SHMEM_MAGIC)
			layout_mismatch("The server was started with a build that has no layout header.");
		if (header->layout != PTUNE_SHMEM_LAYOUT || header->size != ptune_shmem_size())
			layout_mismatch(psprintf("The server's layout is %u (%zu bytes); this library's is %d (%zu bytes).",
									 header->layout, (size_t) header->size, PTUNE_SHMEM_LAYOUT,
									 (size_t) ptune_shmem_size()));

		LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
		shared = ShmemInitStruct("ptune", ptune_shmem_size(), &found);
		LWLockRelease(AddinShmemInitLock);
		if (!found)
			elog(ERROR, "ptune shared memory is missing although ptune.request_slots is set");
		ptune_shared = shared;
	}
	LWLockRegisterTranche(ptune_shared->lwlock_tranche, "ptune");
	LWLockRegisterTranche(ptune_shared->dsa_tranche, "ptune_dsa");
	return true;
}

size_t
ptune_dsa_limit(void)
{
	return limit_bytes();
}

void
ptune_dsa_apply_limit(void)
{
	size_t		limit = limit_bytes();

	if (limit != applied_limit)
	{
		dsa_set_size_limit(ptune_dsa(), limit);
		applied_limit = limit;
	}
}

dsa_area *
ptune_dsa(void)
{
	if (payload_area == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		payload_area = dsa_attach_in_place(dsa_place(ptune_shared), NULL);
		dsa_pin_mapping(payload_area);
		MemoryContextSwitchTo(old);
		ptune_dsa_apply_limit();
	}
	return payload_area;
}
