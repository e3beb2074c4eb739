/*
 * test_csv.c - the CSV reader follows RFC 4180 (quotes, embedded newlines,
 * CRLF, BOM, no final newline), reads the shared spam data set, and reports
 * every kind of malformed input as a format error naming the line.
 */
#include <stdio.h>
#include <string.h>

#include "csv.h"
#include "error.h"
#include "helpers.h"
#include "unit.h"

static PtCsv *
parse(const char *text)
{
	return pt_csv_parse(text, strlen(text), "t.csv");
}

/* Checks one data field, printing both values when they differ. */
static void
check_field(const char *file, int line, const PtCsv *csv, int row, int col, const char *want)
{
	const char *got = pt_csv_field(csv, row, col);

	if (got == NULL || strcmp(got, want) != 0)
		unit_fail(file, line, "field (%d, %d) is \"%s\", expected \"%s\"",
				  row, col, got ? got : "(null)", want);
}

#define CHECK_FIELD(csv, row, col, want) check_field(__FILE__, __LINE__, csv, row, col, want)

/* Parses data[0..len) and checks that it fails with kind, on "line N", saying fragment. */
static void
expect_error(const char *what, const char *data, size_t len, PtErrorKind kind,
			 int line, const char *fragment)
{
	PtCsv	   *csv;
	char		where[32];

	pt_clear_error();
	csv = pt_csv_parse(data, len, "bad.csv");
	if (csv != NULL)
	{
		unit_fail(__FILE__, __LINE__, "%s: parsed, expected an error", what);
		pt_csv_free(csv);
		return;
	}
	snprintf(where, sizeof(where), "bad.csv, line %d:", line);
	CHECKF(pt_error_kind() == kind, "%s: error kind %d, expected %d (%s)",
		   what, pt_error_kind(), kind, pt_error_message());
	CHECKF(strstr(pt_error_message(), where) != NULL, "%s: \"%s\" lacks \"%s\"",
		   what, pt_error_message(), where);
	CHECKF(strstr(pt_error_message(), fragment) != NULL, "%s: \"%s\" lacks \"%s\"",
		   what, pt_error_message(), fragment);
}

#define EXPECT_ERROR(what, text, line, fragment) \
	expect_error(what, text, strlen(text), PT_ERR_FORMAT, line, fragment)

/* The shared spam data set: 3528 rows of id,text,label,group. */
static void
check_spam_file(void)
{
	const char *path = unit_shared_path("data/spam/train.csv");
	PtCsv	   *csv;
	int			label,
				text;
	int			bad = 0;

	REQUIREF(path != NULL, "PTUNE_SHARED must point to the shared folder");
	csv = pt_csv_read(path);
	REQUIREF(csv != NULL, "%s", pt_error_message());
	CHECK(pt_csv_rows(csv) == 3528);
	CHECK(pt_csv_columns(csv) == 4);
	CHECK(pt_csv_column(csv, "id") == 0);
	label = pt_csv_column(csv, "label");
	text = pt_csv_column(csv, "text");
	CHECK(label == 2 && text == 1);
	if (label == 2 && text == 1)
	{
		for (int r = 0; r < pt_csv_rows(csv); r++)
		{
			const char *v = pt_csv_field(csv, r, label);

			if (v == NULL || (strcmp(v, "spam") != 0 && strcmp(v, "ham") != 0))
				bad++;
		}
		CHECKF(bad == 0, "%d rows have a label other than spam or ham", bad);
		CHECK(strncmp(pt_csv_field(csv, 0, text), "Blatantly stolen from a friend's LJ", 35) == 0);
		CHECK_FIELD(csv, 0, 0, "easy_ham_00881");
	}
	pt_csv_free(csv);
}

void		test_csv_rfc4180(void);
void
test_csv_rfc4180(void)
{
	PtCsv	   *csv;
	const char *dir = unit_temp_dir();
	const char *text;
	char		path[600];

	/* Quoted commas, doubled quotes, LF / CRLF / lone CR inside quotes, CRLF ends. */
	csv = parse("id,text,label\r\n"
				"1,\"a, b\",x\r\n"
				"2,\"say \"\"hi\"\"\",y\r\n"
				"3,\"line1\nline2\",z\r\n"
				"4,\"crlf\r\ninside\",w\r\n"
				"5,\"lone\rcr\",\"\"\"\"\r\n");
	REQUIREF(csv != NULL, "%s", pt_error_message());
	CHECK(pt_csv_rows(csv) == 5);
	CHECK(pt_csv_columns(csv) == 3);
	CHECK_FIELD(csv, 0, 1, "a, b");
	CHECK_FIELD(csv, 0, 2, "x");
	CHECK_FIELD(csv, 1, 1, "say \"hi\"");
	CHECK_FIELD(csv, 2, 1, "line1\nline2");
	CHECK_FIELD(csv, 3, 1, "crlf\r\ninside");
	CHECK_FIELD(csv, 4, 0, "5");
	CHECK_FIELD(csv, 4, 1, "lone\rcr");
	CHECK_FIELD(csv, 4, 2, "\"");
	pt_csv_free(csv);

	/* A BOM is not part of the first column's name; no final newline. */
	csv = parse("\xEF\xBB\xBF" "a,b\n1,2");
	REQUIREF(csv != NULL, "%s", pt_error_message());
	CHECK(pt_csv_rows(csv) == 1);
	CHECK(pt_csv_column(csv, "a") == 0);
	CHECK_FIELD(csv, 0, 0, "1");
	CHECK_FIELD(csv, 0, 1, "2");
	pt_csv_free(csv);

	/* Empty fields, quoted or not, including at the end of the input. */
	csv = parse("a,b,c\n,,\n\"\",x,\n,\"\",");
	REQUIREF(csv != NULL, "%s", pt_error_message());
	CHECK(pt_csv_rows(csv) == 3);
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 3; c++)
			CHECK_FIELD(csv, r, c, r == 1 && c == 1 ? "x" : "");
	pt_csv_free(csv);

	/* With one column, an empty line in the middle is a record with one empty field... */
	csv = parse("a\n1\n\n2\n");
	REQUIREF(csv != NULL, "%s", pt_error_message());
	CHECK(pt_csv_rows(csv) == 3);
	CHECK_FIELD(csv, 1, 0, "");
	CHECK_FIELD(csv, 2, 0, "2");
	pt_csv_free(csv);

	/* ...but blank lines at the end of the file are not records. */
	csv = parse("a,b\r\n1,2\r\n\n\r\n");
	REQUIREF(csv != NULL, "%s", pt_error_message());
	CHECK(pt_csv_rows(csv) == 1);
	pt_csv_free(csv);

	/* A quoted field may end in newlines without being taken for blank lines. */
	csv = parse("a\n\"x\n\n\"\n");
	REQUIREF(csv != NULL, "%s", pt_error_message());
	CHECK(pt_csv_rows(csv) == 1);
	CHECK_FIELD(csv, 0, 0, "x\n\n");
	pt_csv_free(csv);

	/* Empty file: no columns; header only: columns but no rows. */
	csv = parse("");
	REQUIREF(csv != NULL, "%s", pt_error_message());
	CHECK(pt_csv_rows(csv) == 0 && pt_csv_columns(csv) == 0);
	CHECK(pt_csv_column(csv, "a") == -1 && pt_error_kind() == PT_ERR_ARGUMENT);
	pt_csv_free(csv);
	csv = pt_csv_parse(NULL, 0, NULL);
	REQUIREF(csv != NULL, "%s", pt_error_message());
	CHECK(pt_csv_rows(csv) == 0 && pt_csv_columns(csv) == 0);
	pt_csv_free(csv);
	csv = parse("a,b\n");
	REQUIREF(csv != NULL, "%s", pt_error_message());
	CHECK(pt_csv_rows(csv) == 0 && pt_csv_columns(csv) == 2);
	pt_csv_free(csv);
	csv = parse("\"a\",b");
	REQUIREF(csv != NULL, "%s", pt_error_message());
	CHECK(pt_csv_rows(csv) == 0 && pt_csv_columns(csv) == 2);
	CHECK(pt_csv_column(csv, "a") == 0);
	pt_csv_free(csv);

	/* Header lookup; a missing column lists the ones there are. */
	csv = parse("id,text,label\n1,hello,spam\n");
	REQUIREF(csv != NULL, "%s", pt_error_message());
	CHECK(pt_csv_column(csv, "label") == 2);
	CHECK(pt_csv_column(csv, "text") == 1);
	pt_clear_error();
	CHECK(pt_csv_column(csv, "lable") == -1);
	CHECK(pt_error_kind() == PT_ERR_ARGUMENT);
	CHECKF(strstr(pt_error_message(), "t.csv has no column \"lable\" (columns: id, text, label)") != NULL,
		   "message: %s", pt_error_message());
	/* Fields outside the file are an argument error, not a crash. */
	pt_clear_error();
	CHECK(pt_csv_field(csv, 1, 0) == NULL && pt_error_kind() == PT_ERR_ARGUMENT);
	CHECK(pt_csv_field(csv, -1, 0) == NULL);
	CHECK(pt_csv_field(csv, 0, 3) == NULL);
	CHECK(pt_csv_field(csv, 0, -1) == NULL);
	pt_csv_free(csv);

	/* From a file. */
	REQUIRE(dir != NULL);
	snprintf(path, sizeof(path), "%s/crlf.csv", dir);
	text = "x,y\r\n\"1\",\"2,3\"\r\n";
	REQUIRE(write_whole_file(path, text, strlen(text)) == 0);
	csv = pt_csv_read(path);
	REQUIREF(csv != NULL, "%s", pt_error_message());
	CHECK(pt_csv_rows(csv) == 1);
	CHECK_FIELD(csv, 0, 1, "2,3");
	pt_csv_free(csv);

	check_spam_file();
}

void		test_csv_errors(void);
void
test_csv_errors(void)
{
	static const char nul_unquoted[] = "a,b\n1,x\0y\n";
	static const char nul_quoted[] = "a,b\n1,2\n3,\"x\0\"\n";
	const char *dir = unit_temp_dir();
	char		path[600];
	PtCsv	   *csv;

	EXPECT_ERROR("quote in unquoted field", "a,b\n1,x\"y\n", 2, "quote inside a field");
	EXPECT_ERROR("quote opening a later part", "a,b\n1,x \"y\"\n", 2, "quote inside a field");
	EXPECT_ERROR("text after closing quote", "a,b\n1,2\n\"x\"y,3\n", 3, "after the closing quote");
	EXPECT_ERROR("space after closing quote", "a,b\n\"x\" ,3\n", 2, "after the closing quote");
	EXPECT_ERROR("CR alone after closing quote", "a,b\n\"x\"\r3,4\n", 2, "after the closing quote");
	EXPECT_ERROR("unterminated quote", "a,b\n1,\"open\nmore\n", 2, "never closed");
	EXPECT_ERROR("unterminated at EOF", "a,b\n1,\"", 2, "never closed");
	EXPECT_ERROR("too few fields", "a,b\n1,2\n3\n", 3, "record has 1 field, but the header has 2");
	EXPECT_ERROR("too many fields", "a,b\n1,2,3\n", 2, "record has 3 fields, but the header has 2");
	EXPECT_ERROR("too many, no final newline", "a,b\n1,2\n3,4,", 3, "3 fields");
	EXPECT_ERROR("blank line in the middle", "a,b\n\n1,2\n", 2, "record has 1 field");
	/* A record spanning lines is reported where it starts; later lines count its newlines. */
	EXPECT_ERROR("multi-line record", "a,b\n\"x\ny\",2,3\n", 2, "3 fields");
	EXPECT_ERROR("line after multi-line field", "a\n\"x\ny\"\n\"bad\"z\n", 4, "after the closing quote");
	EXPECT_ERROR("lone CR ending records", "a,b\r1,2\r", 1, "carriage return");
	EXPECT_ERROR("lone CR at EOF", "a,b\n1,2\r", 2, "carriage return");
	expect_error("NUL unquoted", nul_unquoted, sizeof(nul_unquoted) - 1, PT_ERR_FORMAT, 2, "NUL byte");
	expect_error("NUL quoted", nul_quoted, sizeof(nul_quoted) - 1, PT_ERR_FORMAT, 3, "NUL byte");

	/* The size limit is checked before the data is touched. */
	pt_clear_error();
	CHECK(pt_csv_parse("", PT_CSV_MAX_BYTES + 1, "huge.csv") == NULL);
	CHECK(pt_error_kind() == PT_ERR_FORMAT);
	CHECKF(strstr(pt_error_message(), "2 GiB") != NULL, "message: %s", pt_error_message());

	/* Files that cannot be read are I/O errors naming the path. */
	pt_clear_error();
	CHECK(pt_csv_read("/nonexistent/ptune.csv") == NULL);
	CHECK(pt_error_kind() == PT_ERR_IO);
	CHECK(strstr(pt_error_message(), "/nonexistent/ptune.csv") != NULL);
	REQUIRE(dir != NULL);
	pt_clear_error();
	CHECK(pt_csv_read(dir) == NULL && pt_error_kind() == PT_ERR_IO);

	/* Errors from a file name the file. */
	snprintf(path, sizeof(path), "%s/bad.csv", dir);
	REQUIRE(write_whole_file(path, "a,b\n1,2\n3\n", strlen("a,b\n1,2\n3\n")) == 0);
	pt_clear_error();
	csv = pt_csv_read(path);
	CHECK(csv == NULL && pt_error_kind() == PT_ERR_FORMAT);
	CHECKF(strstr(pt_error_message(), "bad.csv, line 3:") != NULL, "message: %s", pt_error_message());
	pt_csv_free(csv);
}
