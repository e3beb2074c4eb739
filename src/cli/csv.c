/*
 * csv.c - parse RFC 4180 CSV into one buffer of NUL-terminated fields (see csv.h).
 *
 * The parser walks the input once, record by record and field by field.  The
 * text of each field, without its quotes, is copied into csv->text followed by
 * a NUL, and csv->offsets[i] says where field i starts.  Fields are numbered
 * in file order, header first, so data field (row, col) is field number
 * (row + 1) * columns + col.
 *
 * Why csv->text needs only len + 1 bytes: every byte written to it uses up at
 * least one input byte (a character is copied, a comma or newline becomes the
 * NUL ending a field, "" becomes one quote, an opening or closing quote writes
 * nothing), except the NUL after a field that stops at the end of the input,
 * and that happens once.  Since len is at most PT_CSV_MAX_BYTES (2^31), every
 * offset fits in 32 bits, which halves the size of the offsets array.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "csv.h"
#include "error.h"

struct PtCsv
{
	char	   *name;			/* file name, for error messages */
	char	   *text;			/* every field, unquoted and NUL-terminated */
	uint32_t   *offsets;		/* where each field starts in text */
	int			n_fields;		/* header included */
	int			columns;
	int			rows;
};

/* One parse in progress: the input, where we are in it, and the output. */
typedef struct Parser
{
	const char *data;
	size_t		len;
	size_t		end;			/* len without the blank lines at the end */
	size_t		pos;			/* next input byte */
	long long	line;			/* 1-based line of data[pos] (may pass INT_MAX) */
	PtCsv	   *csv;
	size_t		text_len;		/* bytes written to csv->text */
	int			capacity;		/* entries allocated in csv->offsets */
} Parser;

/*
 * Where the input ends once blank lines at its end are dropped: editors often
 * leave one, and treating it as a record with one empty field would make
 * every multi-column file that has one fail.
 */
static size_t
content_end(const char *data, size_t len)
{
	while (len > 0 && data[len - 1] == '\n')
	{
		len--;
		if (len > 0 && data[len - 1] == '\r')
			len--;
	}
	return len;
}

/* True if data[pos] ends a field: a comma, LF, CRLF or the end of the input. */
static bool
at_field_end(const Parser *p)
{
	char		c;

	if (p->pos == p->len)
		return true;
	c = p->data[p->pos];
	return c == ',' || c == '\n' ||
		(c == '\r' && p->pos + 1 < p->len && p->data[p->pos + 1] == '\n');
}

static int
nul_error(const Parser *p)
{
	return pt_fail(PT_ERR_FORMAT, "%s, line %lld: NUL byte at offset %zu "
				   "(is this a UTF-16 or binary file?)", p->csv->name, p->line, p->pos);
}

/* Appends an entry for a new field, which starts at the current end of text. */
static int
start_field(Parser *p)
{
	PtCsv	   *csv = p->csv;

	if (csv->n_fields == PT_CSV_MAX_FIELDS)
		return pt_fail(PT_ERR_FORMAT, "%s, line %lld: more than %d fields in the file; split it",
					   csv->name, p->line, PT_CSV_MAX_FIELDS);
	if (csv->n_fields == p->capacity)
	{
		/* capacity <= PT_CSV_MAX_FIELDS, so doubling cannot overflow an int */
		int			capacity = p->capacity ? 2 * p->capacity : 256;
		uint32_t   *grown;

		if (capacity > PT_CSV_MAX_FIELDS)
			capacity = PT_CSV_MAX_FIELDS;
		grown = realloc(csv->offsets, (size_t) capacity * sizeof(uint32_t));
		if (grown == NULL)
			return pt_fail(PT_ERR_NOMEM, "%s: out of memory for %d fields", csv->name, capacity);
		csv->offsets = grown;
		p->capacity = capacity;
	}
	csv->offsets[csv->n_fields++] = (uint32_t) p->text_len;
	return 0;
}

static inline void
emit(Parser *p, char c)
{
	p->csv->text[p->text_len++] = c;
}

/* A field enclosed in quotes; data[pos] is the opening quote. */
static int
parse_quoted(Parser *p)
{
	long long	first_line = p->line;

	p->pos++;
	for (;;)
	{
		char		c;

		if (p->pos == p->len)
			return pt_fail(PT_ERR_FORMAT, "%s, line %lld: the quoted field that starts on "
						   "this line is never closed", p->csv->name, first_line);
		c = p->data[p->pos];
		if (c == '"')
		{
			if (p->pos + 1 < p->len && p->data[p->pos + 1] == '"')
			{
				emit(p, '"');	/* "" stands for one quote */
				p->pos += 2;
				continue;
			}
			p->pos++;			/* the closing quote */
			break;
		}
		if (c == '\0')
			return nul_error(p);
		if (c == '\n')
			p->line++;
		emit(p, c);
		p->pos++;
	}
	if (!at_field_end(p))
		return pt_fail(PT_ERR_FORMAT, "%s, line %lld: text after the closing quote of a field "
					   "(a quote inside a quoted field must be doubled: \"\")",
					   p->csv->name, p->line);
	return 0;
}

/* A field not enclosed in quotes: everything up to the next comma or newline. */
static int
parse_unquoted(Parser *p)
{
	while (!at_field_end(p))
	{
		char		c = p->data[p->pos];

		if (c == '"')
			return pt_fail(PT_ERR_FORMAT, "%s, line %lld: quote inside a field that is not "
						   "quoted (quote the whole field and double the quote: \"a\"\"b\")",
						   p->csv->name, p->line);
		if (c == '\r')
			return pt_fail(PT_ERR_FORMAT, "%s, line %lld: carriage return not followed by "
						   "a line feed (old Mac line endings?)", p->csv->name, p->line);
		if (c == '\0')
			return nul_error(p);
		emit(p, c);
		p->pos++;
	}
	return 0;
}

/* One record, with its line ending; the first record sets the column count. */
static int
parse_record(Parser *p)
{
	PtCsv	   *csv = p->csv;
	long long	first_line = p->line;
	int			first_field = csv->n_fields;
	int			count;

	for (;;)
	{
		int			rc;

		if (start_field(p) != 0)
			return -1;
		if (p->pos < p->len && p->data[p->pos] == '"')
			rc = parse_quoted(p);
		else
			rc = parse_unquoted(p);
		if (rc != 0)
			return -1;
		emit(p, '\0');
		if (p->pos < p->len && p->data[p->pos] == ',')
			p->pos++;
		else
			break;
	}

	/* The last field stopped at LF, CRLF or the end of the input. */
	if (p->pos < p->len)
	{
		if (p->data[p->pos] == '\r')
			p->pos++;
		p->pos++;
		p->line++;
	}

	count = csv->n_fields - first_field;
	if (first_field == 0)
		csv->columns = count;
	else if (count != csv->columns)
		return pt_fail(PT_ERR_FORMAT, "%s, line %lld: record has %d field%s, but the header has %d",
					   csv->name, first_line, count, count == 1 ? "" : "s", csv->columns);
	return 0;
}

PtCsv *
pt_csv_parse(const char *data, size_t len, const char *name)
{
	Parser		p;
	PtCsv	   *csv;

	if (name == NULL)
		name = "CSV data";
	if (data == NULL && len > 0)
	{
		pt_fail(PT_ERR_ARGUMENT, "%s: no data", name);
		return NULL;
	}
	if (len > PT_CSV_MAX_BYTES)
	{
		pt_fail(PT_ERR_FORMAT, "%s is %zu bytes; CSV files over 2 GiB are not supported "
				"(split it)", name, len);
		return NULL;
	}

	csv = pt_calloc(1, sizeof(*csv));
	if (csv == NULL)
		return NULL;
	csv->name = pt_strdup(name);
	csv->text = pt_malloc(len + 1);
	if (csv->name == NULL || csv->text == NULL)
	{
		pt_csv_free(csv);
		return NULL;
	}

	memset(&p, 0, sizeof(p));
	p.data = data;
	p.len = len;
	p.end = content_end(data, len);
	p.line = 1;
	p.csv = csv;
	if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0)
		p.pos = 3;				/* UTF-8 byte order mark */

	while (p.pos < p.end)
	{
		if (parse_record(&p) != 0)
		{
			pt_csv_free(csv);
			return NULL;
		}
	}
	/* every record has `columns` fields, so this divides exactly */
	csv->rows = csv->columns > 0 ? csv->n_fields / csv->columns - 1 : 0;
	return csv;
}

PtCsv *
pt_csv_read(const char *path)
{
	int			fd;
	struct stat st;
	char	   *buf = NULL;
	size_t		size = 0,
				capacity;
	PtCsv	   *csv;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
	{
		pt_fail(PT_ERR_IO, "could not open \"%s\": %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) != 0)
	{
		pt_fail(PT_ERR_IO, "could not stat \"%s\": %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	if (S_ISDIR(st.st_mode))
	{
		close(fd);
		pt_fail(PT_ERR_IO, "\"%s\" is a directory, not a CSV file", path);
		return NULL;
	}
	if (S_ISREG(st.st_mode) && (uint64_t) st.st_size > PT_CSV_MAX_BYTES)
	{
		close(fd);
		pt_fail(PT_ERR_FORMAT, "%s is %lld bytes; CSV files over 2 GiB are not supported "
				"(split it)", path, (long long) st.st_size);
		return NULL;
	}

	/*
	 * Read to the end rather than trusting st_size, so pipes (zcat x.csv.gz |
	 * ...) work too.  One spare byte lets a regular file reach EOF without
	 * growing the buffer; capacity never exceeds PT_CSV_MAX_BYTES + 1.
	 */
	capacity = S_ISREG(st.st_mode) ? (size_t) st.st_size + 1 : 65536;
	buf = pt_malloc(capacity);
	if (buf == NULL)
		goto fail;
	for (;;)
	{
		ssize_t		n;

		if (size == capacity)
		{
			size_t		grown_capacity = 2 * capacity;
			char	   *grown;

			if (size > PT_CSV_MAX_BYTES)
			{
				pt_fail(PT_ERR_FORMAT, "%s is over 2 GiB; CSV files that large are not "
						"supported (split it)", path);
				goto fail;
			}
			if (grown_capacity > PT_CSV_MAX_BYTES + 1)
				grown_capacity = PT_CSV_MAX_BYTES + 1;
			grown = realloc(buf, grown_capacity);
			if (grown == NULL)
			{
				pt_fail(PT_ERR_NOMEM, "out of memory reading %s (%zu bytes)", path, grown_capacity);
				goto fail;
			}
			buf = grown;
			capacity = grown_capacity;
		}
		n = read(fd, buf + size, capacity - size);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
		{
			pt_fail(PT_ERR_IO, "could not read \"%s\": %s", path, strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		size += (size_t) n;
	}
	close(fd);
	csv = pt_csv_parse(buf, size, path);
	free(buf);
	return csv;

fail:
	close(fd);
	free(buf);
	return NULL;
}

void
pt_csv_free(PtCsv *csv)
{
	if (csv == NULL)
		return;
	free(csv->name);
	free(csv->text);
	free(csv->offsets);
	free(csv);
}

int
pt_csv_rows(const PtCsv *csv)
{
	return csv->rows;
}

int
pt_csv_columns(const PtCsv *csv)
{
	return csv->columns;
}

int
pt_csv_column(const PtCsv *csv, const char *name)
{
	char		list[600];
	size_t		used = 0;

	for (int c = 0; c < csv->columns; c++)
		if (strcmp(csv->text + csv->offsets[c], name) == 0)
			return c;

	/* List the columns there are, since the usual cause is a typo. */
	list[0] = '\0';
	for (int c = 0; c < csv->columns && used < sizeof(list); c++)
	{
		int			n = snprintf(list + used, sizeof(list) - used, "%s%s",
								 c > 0 ? ", " : "", csv->text + csv->offsets[c]);

		if (n < 0)
			break;
		used += (size_t) n;
	}
	if (used >= sizeof(list))
		strcpy(list + sizeof(list) - 4, "...");
	if (csv->columns == 0)
		return pt_fail(PT_ERR_ARGUMENT, "%s has no column \"%s\" (the file is empty)",
					   csv->name, name);
	return pt_fail(PT_ERR_ARGUMENT, "%s has no column \"%s\" (columns: %s)",
				   csv->name, name, list);
}

const char *
pt_csv_field(const PtCsv *csv, int row, int col)
{
	if (row < 0 || row >= csv->rows || col < 0 || col >= csv->columns)
	{
		pt_fail(PT_ERR_ARGUMENT, "%s: no field at row %d, column %d (the file has %d rows "
				"and %d columns)", csv->name, row, col, csv->rows, csv->columns);
		return NULL;
	}
	return csv->text + csv->offsets[(size_t) (row + 1) * (size_t) csv->columns + (size_t) col];
}
