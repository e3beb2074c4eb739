/*
 * table_scan.c - the (text, label) rows of a table through an SPI cursor
 * (see table_scan.h).
 */
#include "postgres.h"

#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "table_scan.h"

void
ptune_scan_open(PtuneRowScan *s, Oid relation, const char *text_column, const char *label_column,
				int fetch_rows)
{
	char	   *relname = get_rel_name(relation);
	char	   *query;

	if (relname == NULL)
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE), errmsg("relation %u does not exist", relation)));
	query = psprintf("SELECT (%s)::text, (%s)::text FROM %s",
					 quote_identifier(text_column), quote_identifier(label_column),
					 quote_qualified_identifier(get_namespace_name(get_rel_namespace(relation)), relname));
	s->fetch_rows = fetch_rows;
	s->skipped = 0;
	SPI_connect();
	s->portal = SPI_cursor_open_with_args(NULL, query, 0, NULL, NULL, NULL, true, 0);
	SPI_tuptable = NULL;
}

int
ptune_scan_fetch(PtuneRowScan *s)
{
	if (SPI_tuptable)
		SPI_freetuptable(SPI_tuptable);
	SPI_cursor_fetch(s->portal, true, s->fetch_rows);
	return (int) SPI_processed;
}

bool
ptune_scan_row(PtuneRowScan *s, int i, Datum *text, Datum *label)
{
	HeapTuple	tup = SPI_tuptable->vals[i];
	bool		text_null,
				label_null;

	*text = SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &text_null);
	*label = SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &label_null);
	if (text_null || label_null)
	{
		s->skipped++;
		return false;
	}
	return true;
}

void
ptune_scan_close(PtuneRowScan *s)
{
	SPI_cursor_close(s->portal);
	SPI_finish();
}
