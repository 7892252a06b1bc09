/* SPDX-License-Identifier: MIT */
/*
 * This module implements the migrations of the PostgreSQL backend: the
 * files of sql/postgres/, compiled in (store_pg_migrations), applied in
 * order, one transaction each. The version in force is kept in a table,
 * schema_version (one row per migration applied; created here, as SQLite
 * keeps its user_version in the file header).
 *
 * Two instances starting at once must not both apply a migration: each
 * transaction first takes a transaction-scoped advisory lock, then reads
 * the version, so the second waits for the first to commit and then finds
 * nothing left to do. A database newer than this binary is refused.
 */
#include <stdio.h>
#include <string.h>

#include "store/postgres/pg.h"
#include "tokend/err.h"
#include "tokend/log.h"
#include "tokend/util.h"

/* The advisory lock key of the migrations: "tokend" in ASCII. */
#define PG_MIGRATE_LOCK "128021892001380"

/*
 * Inside a migration: a rewrite of a large table may take long, and the
 * lock may be held by another instance's migration meanwhile; a bounded
 * wait all the same, so a stuck session fails the start-up instead of
 * hanging it.
 */
static const char *const migrate_setup[] = {
	"SELECT set_config('statement_timeout', '0', true), "
	"set_config('lock_timeout', '120s', true)",
	"SELECT pg_advisory_xact_lock(" PG_MIGRATE_LOCK ")",
	"CREATE TABLE IF NOT EXISTS schema_version ("
	"version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
};

/* Runs sql (no parameters) on c; on failure writes why to errbuf. */
static int exec(struct store_pg_conn *c, const char *sql, const char *what, char *errbuf,
		size_t errlen, PGresult **res)
{
	PGresult *r = PQexec(c->pg, sql);
	const char *msg;
	char where[160];
	int rc;

	if (res != NULL)
		*res = NULL;
	if (r != NULL &&
	    (PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK)) {
		if (res != NULL)
			*res = r;
		else
			PQclear(r);
		return 0;
	}
	store_pg_where(c->pg, where, sizeof(where));
	msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	snprintf(errbuf, errlen, "%s: %s: %s", where, what, msg ? msg : PQerrorMessage(c->pg));
	rc = store_pg_error(c, r, what);
	PQclear(r);
	return rc == TOKEND_EBUSY ? rc : TOKEND_EDB;
}

/* Begins a migration transaction, locked; *v = the version in force. */
static int begin_locked(struct store_pg_conn *c, int *v, char *errbuf, size_t errlen)
{
	PGresult *r;
	int rc;

	rc = exec(c, "BEGIN", "begin", errbuf, errlen, NULL);
	if (rc != 0)
		return rc;
	c->in_tx = true;
	c->failed = false;
	for (size_t i = 0; rc == 0 && i < sizeof(migrate_setup) / sizeof(migrate_setup[0]); i++)
		rc = exec(c, migrate_setup[i], "migration lock", errbuf, errlen, NULL);
	if (rc == 0)
		rc = exec(c, "SELECT coalesce(max(version), 0) FROM schema_version",
			  "schema version", errbuf, errlen, &r);
	if (rc != 0)
		return rc;
	*v = (int)store_pg_get_i64(r, 0, 0);
	PQclear(r);
	return 0;
}

/* Ends the migration transaction: COMMIT when rc is 0, else ROLLBACK. */
static int end(struct store_pg_conn *c, int rc, char *errbuf, size_t errlen)
{
	PGresult *r;

	if (rc == 0) {
		rc = exec(c, "COMMIT", "commit", errbuf, errlen, &r);
		if (rc == 0 && strcmp(PQcmdStatus(r), "COMMIT") != 0) {
			snprintf(errbuf, errlen, "migration: commit rolled back");
			rc = TOKEND_EDB;
		}
		PQclear(r);
	}
	if (rc != 0 && PQstatus(c->pg) == CONNECTION_OK &&
	    PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
		r = PQexec(c->pg, "ROLLBACK");
		PQclear(r);
	}
	c->in_tx = false;
	c->failed = false;
	return rc;
}

/* Applies m in the open transaction and records it. */
static int apply(struct store_pg_conn *c, const struct store_migration *m, char *errbuf,
		 size_t errlen)
{
	char ver[PG_I64_LEN], at[PG_I64_LEN];
	const char *params[] = {store_pg_i64(ver, m->version), m->name,
				store_pg_i64(at, util_now())};
	char what[160];
	PGresult *r;
	int rc;

	snprintf(what, sizeof(what), "migration %s", m->name);
	rc = exec(c, m->sql, what, errbuf, errlen, NULL);
	if (rc != 0)
		return rc;
	r = PQexecParams(c->pg,
			 "INSERT INTO schema_version (version, name, applied_at) "
			 "VALUES ($1, $2, $3)",
			 3, NULL, params, NULL, NULL, 0);
	if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK) {
		const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;

		snprintf(errbuf, errlen, "migration %s: cannot record the version: %s", m->name,
			 msg ? msg : "no result");
		(void)store_pg_error(c, r, what); /* logs, counts */
		rc = TOKEND_EDB;
	}
	PQclear(r);
	return rc;
}

int store_pg_migrate(struct store_db *db, int *version, bool *fresh, char *errbuf, size_t errlen)
{
	struct store_pg_conn *c = store_pg_conn(db);
	int latest = store_pg_migration_count
			     ? store_pg_migrations[store_pg_migration_count - 1].version
			     : 0;
	bool first = true;
	int v = 0;
	int rc;

	if (c == NULL) {
		snprintf(errbuf, errlen, "cannot connect to the database");
		return TOKEND_EDB;
	}
	if (c->in_tx) {
		snprintf(errbuf, errlen, "migrate: inside a transaction");
		return TOKEND_EDB;
	}
	for (;;) {
		const struct store_migration *next = NULL;

		rc = begin_locked(c, &v, errbuf, errlen);
		if (rc != 0)
			return end(c, rc, errbuf, errlen);
		if (first && fresh != NULL)
			*fresh = v == 0;
		first = false;
		if (v > latest) {
			char where[160];

			store_pg_where(c->pg, where, sizeof(where));
			snprintf(errbuf, errlen,
				 "%s: schema version %d is newer than this tokend knows (%d)",
				 where, v, latest);
			return end(c, TOKEND_EDB, errbuf, errlen);
		}
		/* Re-read under the lock: another instance may have applied some. */
		for (unsigned i = 0; i < store_pg_migration_count && next == NULL; i++)
			if (store_pg_migrations[i].version > v)
				next = &store_pg_migrations[i];
		if (next == NULL)
			break;
		rc = apply(c, next, errbuf, errlen);
		rc = end(c, rc, errbuf, errlen);
		if (rc != 0)
			return rc;
		log_info("store: applied migration postgres/%s", next->name);
	}
	rc = end(c, 0, errbuf, errlen);
	if (rc == 0 && version != NULL)
		*version = v;
	return rc;
}
