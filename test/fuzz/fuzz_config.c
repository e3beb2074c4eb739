/*
 * fuzz_config.c - config.json parsing and validation.  An accepted config
 * must have sizes in the ranges the engine's size arithmetic relies on.
 */
#include <stdint.h>

#include "config.h"
#include "fuzz.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	PtConfig	c;

	pt_clear_error();
	if (pt_config_parse((const char *) data, size, "fuzz/config.json", &c) != 0)
		expect_error_reported("pt_config_parse");
	else if (c.d_model < 1 || c.d_model > 65536 || c.num_heads < 1 || c.d_kv < 1 ||
			 (long) c.num_heads * c.d_kv > 65536 || c.vocab_size < 3 || c.num_layers < 1 ||
			 c.num_decoder_layers < 1 || c.rel_buckets < 4 || c.rel_max_distance <= c.rel_buckets / 4 ||
			 !(c.layer_norm_eps > 0))
		abort();
	return 0;
}
