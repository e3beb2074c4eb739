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

#include "ipc.h"

PtuneShared *ptune_shared = NULL;
int			ptune_request_slots = 64;	/* GUC ptune.request_slots (see guc.c) */
static dsa_area *payload_area = NULL;

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
struct_size(int n_slots)
{
	return MAXALIGN(add_size(offsetof(PtuneShared, slots), mul_size(n_slots, sizeof(PtuneSlot))));
}

Size
ptune_shmem_size(void)
{
	return add_size(struct_size(ptune_request_slots), PTUNE_DSA_INITIAL_SIZE);
}

static void *
dsa_place(PtuneShared *shared)
{
	return (char *) shared + struct_size(shared->n_slots);
}

void
ptune_shmem_init(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	ptune_shared = ShmemInitStruct("ptune", ptune_shmem_size(), &found);
	if (!found)
	{
		dsa_area   *area;

		memset(ptune_shared, 0, struct_size(ptune_request_slots));
		ptune_shared->n_slots = ptune_request_slots;
		ptune_shared->lwlock_tranche = LWLockNewTrancheId();
		ptune_shared->dsa_tranche = LWLockNewTrancheId();
		LWLockInitialize(&ptune_shared->lock, ptune_shared->lwlock_tranche);
		ptune_shared->next_request_id = 1;
		for (int i = 0; i < ptune_shared->n_slots; i++)
		{
			ptune_shared->slots[i].request = InvalidDsaPointer;
			ptune_shared->slots[i].response = InvalidDsaPointer;
		}

		/*
		 * The payload area starts inside this block and grows with DSM
		 * segments.  Pinned, it outlives every process that detaches; a
		 * crash restart re-creates the whole block.
		 */
		area = dsa_create_in_place(dsa_place(ptune_shared), PTUNE_DSA_INITIAL_SIZE,
								   ptune_shared->dsa_tranche, NULL);
		dsa_pin(area);
		dsa_detach(area);
	}
	LWLockRelease(AddinShmemInitLock);
}

bool
ptune_shmem_attach(void)
{
	if (ptune_shared == NULL)
	{
		const char *slots = GetConfigOption("ptune.request_slots", true, false);
		bool		found;
		PtuneShared *shared;

		/* the GUC exists, and the struct too, only if ptune.so was preloaded */
		if (slots == NULL)
			return false;
		ptune_request_slots = atoi(slots);
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

dsa_area *
ptune_dsa(void)
{
	if (payload_area == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		payload_area = dsa_attach_in_place(dsa_place(ptune_shared), NULL);
		dsa_pin_mapping(payload_area);
		MemoryContextSwitchTo(old);
	}
	return payload_area;
}
