/*
 * worker_explain.c - nearest vocabulary pieces of a prompt's positions.
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "explain.h"
#include "protocol.h"
#include "worker.h"

static void
explain_one(int slot)
{
	StringInfoData msg,
				out;
	int			k,
				len;
	PtPrompt   *p;
	int32_t    *ids;
	float	   *sims;

	ptune_slot_read(slot, &msg);
	k = pq_getmsgint(&msg, 4);
	len = pq_getmsgint(&msg, 4);
	if (len <= 0 || len > PT_MAX_FIELD_BYTES || k < 1 || k > 100)
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("invalid explain request")));
	p = pt_prompt_decode((const uint8_t *) pq_getmsgbytes(&msg, len), (size_t) len, NULL);
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
	pq_sendint32(&out, p->length);
	pq_sendint32(&out, k);
	for (int i = 0; i < p->length * k; i++)
	{
		const char *piece = ids[i] >= 0 ? pt_tokenizer_piece(worker_model->tokenizer, ids[i]) : "";

		pq_sendstring_len(&out, piece, strlen(piece));
		pq_sendfloat8(&out, sims[i]);
	}
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
