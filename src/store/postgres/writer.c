/* SPDX-License-Identifier: MIT */
/*
 * This module implements the transactions of the PostgreSQL backend. A
 * write transaction is BEGIN ... COMMIT on the calling thread's own
 * connection, at the server's READ COMMITTED: the ops that read a row and
 * then change it take the row's lock first (tokens.c: refresh_state,
 * api_count), which is what makes several instances on one database safe;
 * no process-wide write lock is needed, unlike SQLite's single writer.
 *
 * Lock order, kept by every op so that transactions wait for one another
 * instead of deadlocking: a user's sessions (refresh_state, ending
 * sessions, user_delete), then memberships (api_count, user_delete), then
 * the rows under them (refresh rows, API tokens, their versions) and the
 * user's row (an insert's foreign key, a disable, the delete). The purge
 * waits for no one: it skips rows (and sessions) others hold.
 *
 * Round trips: BEGIN is not sent by write_begin but with the transaction's
 * first statement, and the COMMIT carries whatever the ops deferred (an
 * insert nobody reads the answer of): conn.c's pipeline. A rotation is two
 * round trips, not six (tokens.c).
 *
 * Read snapshots are no-ops, by choice and unmeasured: every (db) lookup is
 * one statement, consistent in itself at READ COMMITTED, and a REPEATABLE
 * READ READ ONLY transaction around a request's lookups would cost two more
 * round trips per request for a consistency no caller relies on (SQLite
 * takes its snapshot to save a lock per lookup, which PostgreSQL does not
 * need).
 */
#include <string.h>

#include "store/postgres/pg.h"
#include "tokend/err.h"
#include "tokend/log.h"
#include "tokend/metrics.h"

int store_pg_read_begin(struct store_db *db)
{
	(void)db;
	return 0;
}

void store_pg_read_end(struct store_db *db)
{
	(void)db;
}

int store_pg_write_begin(struct store_db *db, struct store_tx **tx)
{
	struct store_pg_conn *c = store_pg_conn(db);

	*tx = NULL;
	if (c == NULL)
		return TOKEND_EDB; /* logged, counted */
	if (c->in_tx) {
		/* our bug: one thread, one transaction at a time */
		log_error("store: begin: this thread is in a transaction already");
		metrics_store_error();
		return TOKEND_EDB;
	}
	/* BEGIN goes with the transaction's first statement (conn.c's pipeline). */
	c->in_tx = true;
	c->piped = true;
	c->failed = false;
	c->unused_jti[0] = '\0';
	*tx = &c->tx;
	return 0;
}

int store_pg_write_end(struct store_tx *tx, int rc)
{
	struct store_pg_conn *c = tx->conn;

	if (rc == 0 && c->broken) {
		rc = TOKEND_EDB; /* the connection broke: logged then */
	} else if (rc == 0 && c->failed) {
		/* our bug: an op failed and the caller went on to commit */
		log_error("store: commit: a statement of the transaction failed");
		metrics_store_error();
		rc = TOKEND_EDB;
	}
	if (rc == 0) {
		rc = store_pg_tx_end(c, true);
	} else {
		/* what is still in flight is read, and the ROLLBACK after it */
		(void)store_pg_tx_end(c, false);
	}
	c->in_tx = false;
	c->piped = false;
	c->failed = false;
	c->unused_jti[0] = '\0';
	return rc;
}
