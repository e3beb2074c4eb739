/*
 * fuzz_csv.c - the RFC 4180 reader.  Every field of an accepted file is
 * readable and no longer than the input.
 */
#include <stdint.h>
#include <string.h>

#include "csv.h"
#include "fuzz.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	PtCsv	   *csv;

	pt_clear_error();
	csv = pt_csv_parse((const char *) data, size, "fuzz.csv");
	if (csv == NULL)
	{
		expect_error_reported("pt_csv_parse");
		return 0;
	}
	for (int r = 0; r < pt_csv_rows(csv); r++)
		for (int c = 0; c < pt_csv_columns(csv); c++)
		{
			const char *f = pt_csv_field(csv, r, c);

			if (f == NULL || strlen(f) > size)
				abort();
		}
	pt_csv_free(csv);
	return 0;
}
