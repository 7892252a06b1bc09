/* SPDX-License-Identifier: MIT */
/*
 * This header is the seam between store.c, which holds the store's rules
 * (rotation outcomes with the grace window and the family revocation, the
 * API-token cap, purge batching, session revocation), and the backends that
 * keep the rows: src/store/sqlite/, src/store/postgres/ and, for unit tests,
 * src/store/fake/. A backend implements struct store_backend: row-level
 * calls and transaction boundaries, nothing more. It never decides an
 * outcome; store.c never writes SQL.
 *
 * Conventions for every op:
 * - Returns 0 or a negative enum tokend_err. TOKEND_EDB is a failure of the
 *   database (logged and counted by the backend: metrics_store_error());
 *   TOKEND_EBUSY a lock held longer than the configured wait.
 * - `tx` is an open write transaction (write_begin). An op documented
 *   "(tx)" must be called inside one; an op documented "(db)" reads outside
 *   any write transaction, on the calling thread's own connection (in the
 *   thread's read snapshot if read_begin opened one).
 * - Strings are NUL-terminated and outlive the call; out structs are the
 *   caller's; callbacks may stop a listing by returning non-zero.
 * - Every op may be called from any thread.
 */
#ifndef TOKEND_STORE_BACKEND_H
#define TOKEND_STORE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokend/store.h"

struct store_db; /* a backend's handle: its connections, opaque to store.c */
struct store_tx; /* an open write transaction, opaque to store.c */

/* What a rotation or a logout needs to know of one refresh row. */
struct store_refresh_state {
	bool found;
	char family[UUID_STR_LEN];
	char owner[UUID_STR_LEN];       /* user_uuid of the row */
	char replaced_by[UUID_STR_LEN]; /* "" = not rotated */
	bool used;                      /* used_at is set */
	bool revoked;                   /* the row revoked, or its session ended or gone */
	bool active;                    /* the owner is active */
	int64_t used_at;
	int64_t session_created_at; /* the login (the row's issued_at if no session) */
};

/* The tables store_purge sweeps, in this order. */
enum store_purge_table {
	STORE_PURGE_REFRESH,      /* refresh_tokens with expires_at <= before */
	STORE_PURGE_API,          /* api_tokens with expires_at <= before */
	STORE_PURGE_SESSION_ENDS, /* session_ends with ended_at <= before */
	STORE_PURGE_TABLES
};

enum store_user_key { STORE_BY_NAME, STORE_BY_UUID };

/* One row of the session_ends log (a session that ended, in commit order). */
typedef int (*store_session_end_fn)(int64_t seq, const char *sid, int64_t ended_at, void *arg);

/* backend->commit_mark()'s fingerprint; compared whole. */
struct store_commit_mark {
	uint64_t w[3];
};

struct store_backend {
	const char *name; /* "sqlite", "postgres", "fake" */
	/*
	 * Every writer of the database runs on this host (one file): a
	 * process may keep what it learnt from the database current with a
	 * counter in shared memory beside it (store.c's session cache). A
	 * server database shared by several hosts sets this false.
	 */
	bool single_host;

	/* Lifecycle. target is what store_open() got (a path, a URL). */
	int (*open)(const char *target, long busy_timeout_ms, struct store_db **out, char *errbuf,
		    size_t errlen);
	void (*close)(struct store_db *db);                /* frees db; accepts NULL */
	int (*ping)(struct store_db *db, long timeout_ms); /* as store_ping() */
	/* Applies the backend's migrations (as store_migrate()); safe when
	 * two processes start at once. */
	int (*migrate)(struct store_db *db, int *version, bool *fresh, char *errbuf, size_t errlen);
	/* A path naming the database on this host ("" when none: in memory);
	 * store.c keeps the session counter beside it. */
	const char *(*local_path)(struct store_db *db);
	/*
	 * Optional (NULL: none). A fingerprint of the last commit any process
	 * made to the database, read without a lock or a query: two equal
	 * marks mean no commit in between. false when it cannot be read now
	 * (then nothing may be concluded).
	 */
	bool (*commit_mark)(struct store_db *db, struct store_commit_mark *out);

	/* Transactions. */
	int (*read_begin)(struct store_db *db); /* as store_read_begin() */
	void (*read_end)(struct store_db *db);
	/*
	 * Begins a write transaction. Of two transactions that read a row and
	 * then change it, the second must see the first's change: SQLite
	 * serialises writers (BEGIN IMMEDIATE); PostgreSQL takes row locks in
	 * the ops marked "locks". Ends any read snapshot of the thread.
	 */
	int (*write_begin)(struct store_db *db, struct store_tx **tx);
	/* COMMIT when rc is 0 (ROLLBACK if that fails), else ROLLBACK;
	 * returns rc or the COMMIT's error. tx is gone after it. */
	int (*write_end)(struct store_tx *tx, int rc);
	/*
	 * Optional (NULL: store.c runs write_begin, body, write_end): runs
	 * body(tx, arg) in a write transaction, committed when body returns 0
	 * and rolled back otherwise, and returns body's error or the COMMIT's
	 * once its write is committed or gone. SQLite may run it on another
	 * thread, in one transaction with other writes queued beside it
	 * (sqlite/writer.c), and run it again alone when that transaction is
	 * rolled back: body must not depend on the calling thread and must
	 * set every output afresh each time. The caller blocks until it has
	 * run. Ends any read snapshot of the thread.
	 */
	int (*write_run)(struct store_db *db, int (*body)(struct store_tx *tx, void *arg),
			 void *arg);

	/* Users. */
	int (*user_add)(struct store_tx *tx, const struct store_user *u); /* EEXISTS */
	/* (db) out->password is filled only by STORE_BY_NAME. ENOTFOUND. */
	int (*user_get)(struct store_db *db, enum store_user_key by, const char *key,
			struct store_user *out);
	/* (tx) the uuid of username. ENOTFOUND. */
	int (*user_uuid)(struct store_tx *tx, const char *username, char out[UUID_STR_LEN]);
	int (*user_set_password)(struct store_tx *tx, const char *uuid,
				 const char *hash);                                 /* ENOTFOUND */
	int (*user_set_active)(struct store_tx *tx, const char *uuid, bool active); /* ENOTFOUND */
	/* (tx) last_login = now if the user exists and is active, else ENOTFOUND. */
	int (*user_touch_login)(struct store_tx *tx, const char *uuid, int64_t now);
	/* (tx) deletes the user with its memberships, sessions and tokens. ENOTFOUND. */
	int (*user_delete)(struct store_tx *tx, const char *uuid);
	int (*user_count)(struct store_db *db, long *count);
	int (*user_list)(struct store_db *db, int (*fn)(const struct store_user *u, void *arg),
			 void *arg); /* ordered by username */

	/* Teams. */
	int (*team_add)(struct store_tx *tx, const struct store_team *t); /* EEXISTS */
	/* (db, or tx when not NULL) by uuid first, else by name. ENOTFOUND. */
	int (*team_get)(struct store_db *db, struct store_tx *tx, const char *ref,
			struct store_team *out);
	int (*team_list)(struct store_db *db, int (*fn)(const struct store_team *t, void *arg),
			 void *arg); /* ordered by name */
	/* (tx) adds the membership or updates its role. */
	int (*member_set)(struct store_tx *tx, const char *team_uuid, const char *user_uuid,
			  const char *role);
	int (*member_remove)(struct store_tx *tx, const char *team_uuid,
			     const char *user_uuid); /* ENOTFOUND */
	int (*member_is)(struct store_db *db, const char *team_uuid, const char *user_uuid,
			 bool *member);

	/* Sessions. */
	int (*session_add)(struct store_tx *tx, const char *sid, const char *user_uuid,
			   int64_t created_at);
	int (*session_state)(struct store_db *db, const char *sid, const char *user_uuid,
			     enum store_session *state);
	/* (db) *ended = no session sid is recorded, or it has ended. */
	int (*session_ended)(struct store_db *db, const char *sid, bool *ended);
	/*
	 * (tx) Ends session sid of user_uuid (every live session of user_uuid
	 * when sid is NULL): revoked_at = now, and every refresh row of it
	 * revoked. *ended (if not NULL) counts the sessions that were live.
	 */
	int (*sessions_end)(struct store_tx *tx, const char *sid, const char *user_uuid,
			    int64_t now, long *ended);
	/* (db, outside any read snapshot) Calls fn for each session_ends row
	 * with seq > after, in seq order. */
	int (*session_ends_since)(struct store_db *db, int64_t after, store_session_end_fn fn,
				  void *arg);

	/* Refresh tokens. */
	int (*refresh_add)(struct store_tx *tx, const struct store_refresh *r);
	/* (tx, locks) Reads row jti's state; a concurrent writer of the same
	 * session waits until this transaction ends. Not found: out->found. */
	int (*refresh_state)(struct store_tx *tx, const char *jti, struct store_refresh_state *out);
	/* (tx) The row jti if unused and unrevoked (with session_created_at). ENOTFOUND. */
	int (*refresh_row)(struct store_tx *tx, const char *jti, struct store_refresh *out);
	/* (tx) Marks jti used by next_jti at now, only if unused: else ENOTFOUND. */
	int (*refresh_use)(struct store_tx *tx, const char *jti, int64_t now, const char *next_jti);
	/* (db) as store_refresh_live(). */
	int (*refresh_live)(struct store_db *db, const char *jti, const char *user_uuid,
			    bool *live);

	/* API tokens. */
	/* (tx, locks) live tokens (expires_at > now) of user in team; until the
	 * transaction ends no other transaction adds one for them. */
	int (*api_count)(struct store_tx *tx, const char *user_uuid, const char *team_uuid,
			 int64_t now, long *count);
	int (*api_add)(struct store_tx *tx, const struct store_api_token *t);
	int (*api_version)(struct store_db *db, const char *team_uuid, const char *user_uuid,
			   bool *member, int64_t *version); /* as store_api_token_version() */
	int (*api_list)(struct store_db *db, const char *user_uuid, const char *team_uuid,
			int64_t now, int (*fn)(const struct store_api_token *t, void *arg),
			void *arg); /* newest first */
	int (*api_by_digest)(struct store_db *db, const unsigned char digest[32],
			     char jti[UUID_STR_LEN]); /* ENOTFOUND */
	/* (tx) Deletes token jti if it is user's in team and unexpired at now;
	 * *deleted += 1 when it did. */
	int (*api_delete)(struct store_tx *tx, const char *jti, const char *user_uuid,
			  const char *team_uuid, int64_t now, long *deleted);
	/* (tx) Deletes every token of user in team_uuid (in every team if NULL). */
	int (*api_delete_all)(struct store_tx *tx, const char *user_uuid, const char *team_uuid);
	int (*api_live)(struct store_db *db, const char *jti, const char *user_uuid,
			const char *team_uuid, bool *live); /* as store_api_token_live() */

	/* Housekeeping. */
	/* (tx) Deletes at most limit rows of table t due at or before `before`. */
	int (*purge)(struct store_tx *tx, enum store_purge_table t, int64_t before, long limit,
		     long *deleted);
	int (*key_in_use)(struct store_db *db, const char *kid, int64_t now, long access_lifetime,
			  bool *in_use); /* as store_key_in_use() */
};

extern const struct store_backend store_sqlite_backend;
extern const struct store_backend store_postgres_backend;

/*
 * store_open() with the backend chosen by the caller (the unit tests open
 * the fake backend this way). Same contract as store_open().
 */
int store_open_backend(const struct store_backend *be, const char *target, long busy_timeout_ms,
		       struct store **out, char *errbuf, size_t errlen);

#endif
