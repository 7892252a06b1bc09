/* SPDX-License-Identifier: MIT */
/*
 * This module implements the SQLite backend's migrations: the files of
 * sql/sqlite/, compiled in (store/migrations.h), newer than the database's
 * user_version, applied in order, each with its version in one IMMEDIATE
 * transaction, so that of two processes starting at once the second waits
 * and then finds the work done.
 */
#include <sqlite3.h>
#include <stdio.h>

#include "store/migrations.h"
#include "store/sqlite/sqlite.h"
#include "tokend/err.h"
#include "tokend/log.h"

static int user_version(struct conn *c, int *v)
{
	sqlite3_stmt *s;
	int rc = TOKEND_EDB;

	if (sqlite3_prepare_v2(c->db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK)
		return store_db_error(c, "user_version");
	if (sqlite3_step(s) == SQLITE_ROW) {
		*v = sqlite3_column_int(s, 0);
		rc = 0;
	}
	sqlite3_finalize(s);
	return rc;
}

int sq_migrate(struct store_db *st, int *version, bool *fresh, char *errbuf, size_t errlen)
{
	struct conn *c = store_db_conn(st);
	int v = 0;
	int latest = store_migration_count ? store_migrations[store_migration_count - 1].version
					   : 0;

	if (c == NULL || user_version(c, &v) != 0) {
		snprintf(errbuf, errlen, "%s: cannot read schema version", st->path);
		return TOKEND_EDB;
	}
	if (fresh != NULL)
		*fresh = v == 0;
	if (v > latest) {
		snprintf(errbuf, errlen,
			 "%s: schema version %d is newer than this tokend knows (%d)", st->path, v,
			 latest);
		return TOKEND_EDB;
	}
	for (unsigned i = 0; i < store_migration_count; i++) {
		const struct store_migration *m = &store_migrations[i];
		struct store_tx *tx = NULL;
		struct conn *w;
		char pragma[64];
		char *msg = NULL;

		if (m->version <= v)
			continue;
		snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", m->version);
		if (sq_write_begin(st, &tx) != 0) {
			snprintf(errbuf, errlen, "%s: migration %s: cannot begin", st->path,
				 m->name);
			return TOKEND_EDB;
		}
		w = tx->c;
		/* Read again under the lock: another process may have just applied it. */
		if (user_version(w, &v) != 0) {
			sq_write_end(tx, TOKEND_EDB);
			snprintf(errbuf, errlen, "%s: cannot read schema version", st->path);
			return TOKEND_EDB;
		}
		if (m->version <= v) {
			sq_write_end(tx, 0);
			continue;
		}
		if (sqlite3_exec(w->db, m->sql, NULL, NULL, &msg) != SQLITE_OK ||
		    sqlite3_exec(w->db, pragma, NULL, NULL, &msg) != SQLITE_OK) {
			snprintf(errbuf, errlen, "%s: migration %s failed: %s", st->path, m->name,
				 msg ? msg : sqlite3_errmsg(w->db));
			sqlite3_free(msg);
			sq_write_end(tx, TOKEND_EDB);
			return TOKEND_EDB;
		}
		if (sq_write_end(tx, 0) != 0) {
			snprintf(errbuf, errlen, "%s: migration %s: commit failed", st->path,
				 m->name);
			return TOKEND_EDB;
		}
		log_info("store: applied migration %s", m->name);
		v = m->version;
	}
	if (version != NULL)
		*version = v;
	return 0;
}
