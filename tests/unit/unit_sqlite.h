/* SPDX-License-Identifier: MIT */
/*
 * This header gives the unit suites that look at an SQLite database behind
 * the store's back one reader: unit_sql_count() opens the file read-only,
 * runs a query that returns one number, and closes it again.
 */
#ifndef TOKEND_UNIT_SQLITE_H
#define TOKEND_UNIT_SQLITE_H

#include <check.h>
#include <sqlite3.h>

/* The first column of sql's first row on database path (-1: no row). */
static inline long unit_sql_count(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	long n = -1;

	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	if (sqlite3_step(s) == SQLITE_ROW)
		n = (long)sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	return n;
}

#endif
