/*
 * worker_explain.c - nearest vocabulary pieces of a prompt's positions.
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "explain.h"
#include "wire.h"
#include "worker.h"

static void
explain_one(int slot)
{
	StringInfoData msg,
				out;
	int			k,
				len;
	const char *blob;
	PtPrompt   *p;
	int32_t    *ids;
	float	   *sims;

	ptune_slot_read(slot, &msg);
	blob = ptune_wire_get_explain(&msg, &k, &len);
	p = pt_prompt_decode((const uint8_t *) blob, (size_t) len, NULL);
	if (p == NULL)
	{
		worker_fail_engine(slot, "invalid prompt");
		return;
	}
	ids = palloc(sizeof(int32_t) * p->length * k);
	sims = palloc(sizeof(float) * p->length * k);
	if (pt_explain(worker_model, p, k, ids, sims) != 0)
	{
		pt_prompt_free(p);
		worker_fail_engine(slot, "cannot explain the prompt");
		return;
	}
	initStringInfo(&out);
	ptune_wire_put_explain_answer_head(&out, p->length, k);
	for (int i = 0; i < p->length * k; i++)
		ptune_wire_put_explain_piece(&out, ids[i] >= 0 ? pt_tokenizer_piece(worker_model->tokenizer, ids[i]) : "",
									 sims[i]);
	pt_prompt_free(p);
	ptune_slot_answer(slot, &out);
}

bool
worker_serve_explain(void)
{
	int			slots[16];
	int			n = ptune_slot_take_pending(PTUNE_REQ_EXPLAIN, slots, 16);

	for (int i = 0; i < n; i++)
	{
		MemoryContext ctx = AllocSetContextCreate(TopMemoryContext, "ptune explain", ALLOCSET_DEFAULT_SIZES);
		MemoryContext old = MemoryContextSwitchTo(ctx);

		if (worker_model == NULL)
			ptune_slot_fail(slots[i], ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, "the ptune model is not loaded",
						ptune_shared->model_error, NULL);
		else
		{
			PG_TRY();
			{
				explain_one(slots[i]);
			}
			PG_CATCH();
			{
				ptune_slot_fail_caught(slots[i]);
			}
			PG_END_TRY();
		}
		MemoryContextSwitchTo(old);
		MemoryContextDelete(ctx);
	}
	return n > 0;
}
