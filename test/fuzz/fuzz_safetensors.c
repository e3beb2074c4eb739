/*
 * fuzz_safetensors.c - the safetensors header parser and offset validation.
 * Every accepted file's tensors must lie inside the buffer.
 */
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "safetensors.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	StFile		f;

	memset(&f, 0, sizeof(f));
	pt_clear_error();
	if (st_parse(data, size, "fuzz.safetensors", &f) != 0)
		expect_error_reported("st_parse");
	else
		for (int i = 0; i < f.n_tensors; i++)
		{
			const uint8_t *p = f.tensors[i].data;

			if (p < data || p + f.tensors[i].nbytes > data + size)
				abort();
			/* touch the first and last byte: ASan catches a wrong extent */
			if (f.tensors[i].nbytes > 0)
				(void) *(volatile const uint8_t *) (p + f.tensors[i].nbytes - 1);
		}
	st_close(&f);
	return 0;
}
