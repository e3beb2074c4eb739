/*
 * csv.h - an RFC 4180 CSV reader for training and evaluation data.
 *
 * The whole file is parsed up front into one buffer of NUL-terminated,
 * unquoted fields, so a bad file fails before any work starts, with an error
 * naming the file and the line.  The format is RFC 4180: comma-separated
 * fields; records end with LF or CRLF; a field may be enclosed in double
 * quotes, and then may hold commas, CR and LF, with "" standing for one quote.
 * A UTF-8 byte order mark is skipped, the last record need not end with a
 * newline, and blank lines at the very end of the file are ignored.  The first
 * record is the header, and every record must have as many fields as it.
 *
 * Rejected: a quote inside an unquoted field, text after a closing quote, a
 * quoted field left open at the end of the file, a CR outside quotes that is
 * not part of a CRLF, NUL bytes, files over PT_CSV_MAX_BYTES and files with
 * more than PT_CSV_MAX_FIELDS fields.
 */
#ifndef PT_CSV_H
#define PT_CSV_H

#include <stddef.h>

#define PT_CSV_MAX_BYTES	((size_t) 2 * 1024 * 1024 * 1024)	/* 2 GiB */
#define PT_CSV_MAX_FIELDS	100000000	/* header included */

typedef struct PtCsv PtCsv;

/*
 * Reads and parses the whole file; NULL with pt_fail(PT_ERR_IO or
 * PT_ERR_FORMAT) on error.  The first record is the header.  Errors name the
 * file and the 1-based line number.
 */
PtCsv	   *pt_csv_read(const char *path);

/* Same, from memory (used by tests and fuzzing); name is used in error messages. */
PtCsv	   *pt_csv_parse(const char *data, size_t len, const char *name);

void		pt_csv_free(PtCsv *csv);

/* Data records, header excluded. */
int			pt_csv_rows(const PtCsv *csv);

/* Fields in the header (0 for an empty file). */
int			pt_csv_columns(const PtCsv *csv);

/*
 * Index of the first header field equal to name, or -1 with
 * pt_fail(PT_ERR_ARGUMENT, "... has no column \"x\" (columns: a, b, c)").
 */
int			pt_csv_column(const PtCsv *csv, const char *name);

/*
 * Field of data record row (0-based), column col; NUL-terminated, unquoted,
 * owned by csv.  NULL with pt_fail(PT_ERR_ARGUMENT) if out of range.
 */
const char *pt_csv_field(const PtCsv *csv, int row, int col);

#endif
