/*
 * test_attention.c - T5's relative position buckets.
 *
 * Expected values are worked out by hand from the bucket formula of
 * Hugging Face's T5Attention (also checked against PyTorch by the
 * cross-check test, for every position up to 600).
 */
#include <stdlib.h>

#include <jansson.h>

#include "attention.h"
#include "unit.h"

/*
 * Compares every bucket in (-max_len, max_len) with PyTorch's, from a file
 * written by ptune_py/t5_reference.py buckets (see run_unit.sh).
 */
static void
check_against_pytorch(int buckets, int max_distance)
{
	char		name[64];
	char		path[1024];
	const char *dir = getenv("PTUNE_BUCKET_TABLES");
	json_t	   *root,
			   *bi,
			   *causal;
	int			max_len,
				mismatches = 0;

	REQUIREF(dir != NULL, "PTUNE_BUCKET_TABLES is not set");
	snprintf(name, sizeof(name), "buckets-%d-%d.json", buckets, max_distance);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	root = json_load_file(path, 0, NULL);
	REQUIREF(root != NULL, "cannot read %s", path);
	bi = json_object_get(root, "bidirectional");
	causal = json_object_get(root, "causal");
	REQUIRE(json_is_array(bi) && json_is_array(causal));
	max_len = ((int) json_array_size(bi) + 1) / 2;
	CHECK(max_len >= 600);
	for (int r = -(max_len - 1); r < max_len; r++)
	{
		int			i = r + max_len - 1;

		mismatches += pt_relative_bucket(r, true, buckets, max_distance) !=
			json_integer_value(json_array_get(bi, i));
		mismatches += pt_relative_bucket(r, false, buckets, max_distance) !=
			json_integer_value(json_array_get(causal, i));
	}
	CHECKF(mismatches == 0, "%s: %d buckets differ from PyTorch's", name, mismatches);
	json_decref(root);
}

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

	check_against_pytorch(32, 128);
	check_against_pytorch(16, 20);
	check_against_pytorch(64, 256);
}
