/*
 * test_attention.c - T5's relative position buckets.
 *
 * Expected values are worked out by hand from the bucket formula of
 * Hugging Face's T5Attention (also checked against PyTorch by the
 * cross-check test, for every position up to 600).
 */
#include "attention.h"
#include "unit.h"

void		test_relative_buckets(void);
void
test_relative_buckets(void)
{
	/* bidirectional, 32 buckets, max distance 128: 16 per direction, 8 exact */
	CHECK(pt_relative_bucket(0, true, 32, 128) == 0);
	CHECK(pt_relative_bucket(-1, true, 32, 128) == 1);
	CHECK(pt_relative_bucket(1, true, 32, 128) == 17);
	CHECK(pt_relative_bucket(-7, true, 32, 128) == 7);
	CHECK(pt_relative_bucket(-8, true, 32, 128) == 8);
	/* log buckets: 8 + floor(log(n/8) / log(16) * 8) */
	CHECK(pt_relative_bucket(-12, true, 32, 128) == 9);
	CHECK(pt_relative_bucket(-16, true, 32, 128) == 10);
	CHECK(pt_relative_bucket(-127, true, 32, 128) == 15);
	CHECK(pt_relative_bucket(-200, true, 32, 128) == 15);
	CHECK(pt_relative_bucket(200, true, 32, 128) == 31);
	CHECK(pt_relative_bucket(16, true, 32, 128) == 26);

	/* causal (decoder): keys ahead of the query all share bucket 0 */
	CHECK(pt_relative_bucket(5, false, 32, 128) == 0);
	CHECK(pt_relative_bucket(0, false, 32, 128) == 0);
	CHECK(pt_relative_bucket(-1, false, 32, 128) == 1);
	CHECK(pt_relative_bucket(-15, false, 32, 128) == 15);
	CHECK(pt_relative_bucket(-16, false, 32, 128) == 16);
	CHECK(pt_relative_bucket(-200, false, 32, 128) == 31);

	/* every bucket stays in range for odd configurations */
	for (int r = -1000; r <= 1000; r++)
	{
		int			b1 = pt_relative_bucket(r, true, 16, 20);
		int			b2 = pt_relative_bucket(r, false, 16, 20);

		CHECKF(b1 >= 0 && b1 < 16 && b2 >= 0 && b2 < 16, "bucket out of range at %d", r);
	}
}
