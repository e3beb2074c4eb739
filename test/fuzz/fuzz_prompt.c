/*
 * fuzz_prompt.c - the prompt bytea decoder (what the database stores).  An
 * accepted prompt re-encodes to the same bytes.
 *
 * Random bytes rarely carry a valid CRC, which would stop the fuzzer at the
 * checksum; so each input is decoded twice: as it is, and "repaired" (its
 * total-size field and CRC made consistent) to reach the field parsing.
 */
#include <stdint.h>
#include <string.h>

#include <zlib.h>

#include "fuzz.h"
#include "prompt.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void decode_one(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	decode_one(data, size);
	if (size >= 60 && size < (1u << 24))
	{
		uint8_t    *copy = malloc(size);
		uint32_t	crc;

		memcpy(copy, data, size);
		for (int i = 0; i < 4; i++)
			copy[12 + i] = (uint8_t) (size >> (8 * i));
		crc = (uint32_t) crc32(0L, copy, (uInt) (size - 4));
		for (int i = 0; i < 4; i++)
			copy[size - 4 + i] = (uint8_t) (crc >> (8 * i));
		decode_one(copy, size);
		free(copy);
	}
	return 0;
}

static void
decode_one(const uint8_t *data, size_t size)
{
	PtPrompt   *p;
	size_t		used = 0;

	pt_clear_error();
	p = pt_prompt_decode(data, size, &used);
	if (p == NULL)
	{
		expect_error_reported("pt_prompt_decode");
		return;
	}
	{
		uint8_t    *again;
		size_t		len;

		if (used > size || pt_prompt_encode(p, &again, &len) != 0 || len != used ||
			memcmp(again, data, len) != 0)
			abort();
		free(again);
	}
	pt_prompt_free(p);
}
