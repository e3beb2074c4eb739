/*
 * table_scan.h - the (text, label) rows of a table, read with the caller's
 * privileges: what ptune.train_prompt() trains on and ptune.evaluate()
 * measures.
 *
 *   PtuneRowScan s;
 *   ptune_scan_open(&s, relation, text_column, label_column, 512);
 *   while ((n = ptune_scan_fetch(&s)) > 0)
 *       for (i = 0; i < n; i++)
 *           if (ptune_scan_row(&s, i, &text, &label))
 *               ... text and label are text Datums, valid until the next fetch ...
 *   ptune_scan_close(&s);            s.skipped: rows with a NULL text or label
 */
#ifndef PTUNE_TABLE_SCAN_H
#define PTUNE_TABLE_SCAN_H

#include "postgres.h"

#include "utils/portal.h"

typedef struct PtuneRowScan
{
	Portal		portal;
	int			fetch_rows;
	long		skipped;		/* rows with a NULL text or label */
} PtuneRowScan;

/*
 * Connects to SPI and opens a read-only cursor over
 * SELECT text_column::text, label_column::text FROM relation.  The names
 * come from the catalog and are quoted: no SQL is built from raw input.
 */
void		ptune_scan_open(PtuneRowScan *s, Oid relation, const char *text_column,
							const char *label_column, int fetch_rows);
/* The next batch of at most fetch_rows rows (the previous one is freed); 0 at the end. */
int			ptune_scan_fetch(PtuneRowScan *s);
/* Row i of the batch; false (and counted in skipped) where the text or the label is NULL. */
bool		ptune_scan_row(PtuneRowScan *s, int i, Datum *text, Datum *label);
/* Closes the cursor and SPI (memory allocated in SPI's context goes with it). */
void		ptune_scan_close(PtuneRowScan *s);

#endif
