/* SPDX-License-Identifier: MIT */
/*
 * This header is private to src/store/postgres/, the PostgreSQL backend of
 * backend.h. It declares the handle (one libpq connection per calling
 * thread, kept under a pthread key), the statement table every file of the
 * backend adds its prepared statements to (each file keeps its SQL beside
 * its code; the ids are listed here so that a connection can remember which
 * it has prepared), the helpers that run them and map errors, and each
 * file's ops for the table in backend.c. Only these files include libpq.
 */
#ifndef TOKEND_STORE_PG_H
#define TOKEND_STORE_PG_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/backend.h"
#include "store/migrations.h"

/* Generated from sql/postgres/ by cmake/embed_sql.cmake. */
extern const struct store_migration store_pg_migrations[];
extern const unsigned store_pg_migration_count;

/* Every prepared statement of the backend; the name sent to PQprepare is "t<id>". */
enum store_pg_stmt_id {
	/* conn.c: a write transaction's ends */
	PG_TX_BEGIN,
	PG_TX_COMMIT,
	PG_TX_ROLLBACK,
	/* users.c */
	PG_USER_ADD,
	PG_USER_BY_NAME,
	PG_USER_BY_UUID,
	PG_USER_UUID,
	PG_USER_SET_PW,
	PG_USER_SET_ACTIVE,
	PG_USER_TOUCH,
	PG_USER_LOCK_SESSIONS,
	PG_USER_LOCK_MEMBERS,
	PG_USER_DELETE,
	PG_USER_COUNT,
	PG_USER_LIST,
	PG_TEAM_ADD,
	PG_TEAM_GET,
	PG_TEAM_LIST,
	PG_MEMBER_SET,
	PG_MEMBER_REMOVE,
	PG_MEMBER_IS,
	/* sessions.c */
	PG_SESSION_ADD,
	PG_SESSION_STATE,
	PG_SESSION_ENDED,
	PG_SESSION_END,
	PG_USER_SESSIONS_END,
	PG_SESSION_REFRESH_REVOKE,
	PG_USER_REFRESH_REVOKE,
	PG_SESSION_ENDS_SINCE,
	/* tokens.c */
	PG_REFRESH_ADD,
	PG_REFRESH_LOCK,
	PG_REFRESH_GET,
	PG_REFRESH_ROW,
	PG_REFRESH_USE,
	PG_REFRESH_USE_LOCKED,
	PG_REFRESH_LIVE,
	PG_API_LOCK,
	PG_API_COUNT,
	PG_API_ADD,
	PG_API_VERSION,
	PG_API_LIST,
	PG_API_BY_DIGEST,
	PG_API_DELETE,
	PG_API_DELETE_MEMBER,
	PG_API_DELETE_USER,
	PG_API_LIVE,
	PG_PURGE_REFRESH,
	PG_PURGE_REFRESH_ORPHANS,
	PG_PURGE_API,
	PG_PURGE_SESSION_ENDS,
	PG_KEY_IN_USE,
	PG_STMT_COUNT
};

/* One prepared statement: its id, its SQL ($1..$n, all text but those in binary). */
struct store_pg_stmt {
	enum store_pg_stmt_id id;
	const char *what; /* the op's name, for the log */
	const char *sql;
	int nparams;
	unsigned binary; /* bit i set: parameter i+1 is bytes (BYTEA), sent in binary */
};

struct store_pg_conn;

/* An open write transaction: the thread's connection inside BEGIN. */
struct store_tx {
	struct store_pg_conn *conn;
};

/* The most commands one pipeline holds before it is synced (conn.c). */
#define PG_PIPELINE_MAX 16

/* A command sent down the pipeline whose result has not been read yet. */
struct store_pg_sent {
	const struct store_pg_stmt *s;
	bool prepare; /* its Parse, else its execution */
};

/* One libpq connection, used by one thread at a time (its owner's). */
struct store_pg_conn {
	PGconn *pg;
	struct store_db *db;
	struct store_pg_conn *next; /* db->conns */
	struct store_tx tx;
	bool broken; /* a connection error was seen: the next store_pg_conn() reconnects */
	bool in_tx;  /* between write_begin and write_end (or a migration's BEGIN and end) */
	bool failed; /* a statement of the open transaction failed: it cannot commit */
	/*
	 * A write transaction (write_begin): its statements go down one
	 * libpq pipeline, BEGIN with the first of them (begun), deferred ones
	 * (store_pg_defer) with the next that needs an answer or with the
	 * COMMIT. sent[] are the commands in flight, in order.
	 */
	bool piped;
	bool begun;
	int nsent;
	struct store_pg_sent sent[PG_PIPELINE_MAX];
	/* The refresh row this transaction found unused under its session's
	 * lock (tokens.c: refresh_state), "" when none. */
	char unused_jti[UUID_STR_LEN];
	bool prepared[PG_STMT_COUNT];
};

struct store_db {
	char *target;         /* as given to open: may hold a password, never logged */
	long busy_timeout_ms; /* lock_timeout of every connection */
	pthread_key_t key;    /* the calling thread's struct store_pg_conn */
	pthread_mutex_t lock; /* guards conns */
	struct store_pg_conn *conns;
	/* After a failed connection: no thread tries again before this (monotonic ms). */
	_Atomic int64_t down_until_ms;
};

/* Decimal text of an int64 parameter. */
#define PG_I64_LEN 24
const char *store_pg_i64(char buf[PG_I64_LEN], int64_t v);

/*
 * The calling thread's connection, opened on first use, reconnected first
 * when the last call found it broken. NULL when it cannot connect (logged,
 * counted): the op returns TOKEND_EDB.
 */
struct store_pg_conn *store_pg_conn(struct store_db *db);

/* The connection of tx, or NULL (EDB) when a connection error broke it. */
struct store_pg_conn *store_pg_tx_conn(struct store_tx *tx);

/*
 * Runs statement s with params (NUL-terminated text; lens[i] bytes for the
 * binary ones, lens may be NULL without them), preparing it on this
 * connection the first time. On success returns 0 and *res (if res is not
 * NULL; the caller PQclear()s it). A text parameter that is not UTF-8
 * (which PostgreSQL refuses, and no row can hold) matches nothing: an
 * empty result without a round trip, or TOKEND_EINVAL for an insert. Errors: TOKEND_EEXISTS (unique
 * violation), TOKEND_ENOTFOUND (foreign key), TOKEND_EBUSY (lock or
 * statement timeout), else TOKEND_EDB, logged with s->what and counted; a
 * connection error marks c broken. Any error fails an open transaction.
 */
int store_pg_run(struct store_pg_conn *c, const struct store_pg_stmt *s, const char *const *params,
		 const int *lens, PGresult **res);

/*
 * Sends statement s down the open write transaction's pipeline without
 * waiting for its answer: the answer is read with the next statement that
 * needs one, or with the COMMIT, and an error in it fails the transaction
 * there (that statement's, or write_end's, return value). For statements
 * whose result nobody reads. Outside a write transaction: store_pg_run.
 */
int store_pg_defer(struct store_pg_conn *c, const struct store_pg_stmt *s,
		   const char *const *params, const int *lens);

/*
 * Ends the write transaction of c: COMMIT (commit true) or ROLLBACK, with
 * whatever is still in flight, and leaves pipeline mode. 0 or the first
 * error of the transaction's remaining answers or of the COMMIT.
 */
int store_pg_tx_end(struct store_pg_conn *c, bool commit);

/* As store_pg_run; *changed = the rows the command touched. */
int store_pg_change(struct store_pg_conn *c, const struct store_pg_stmt *s,
		    const char *const *params, const int *lens, long *changed);

/* As store_pg_change, but no row touched is TOKEND_ENOTFOUND. */
int store_pg_change1(struct store_pg_conn *c, const struct store_pg_stmt *s,
		     const char *const *params);

/* Runs a statement of one row and one column read as an integer; *found = a row came. */
int store_pg_int(struct store_pg_conn *c, const struct store_pg_stmt *s, const char *const *params,
		 bool *found, int64_t *v);

/* Maps a failed result (or NULL) on c to an error code; logs, counts, marks broken. */
int store_pg_error(struct store_pg_conn *c, const PGresult *r, const char *what);

/* Column readers of a text-format result. */
void store_pg_copy(const PGresult *r, int row, int col, char *out, size_t outlen);
int64_t store_pg_get_i64(const PGresult *r, int row, int col);
static inline bool store_pg_null(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) != 0;
}

/* "host/dbname" of c for messages: never the password. */
void store_pg_where(PGconn *pg, char *out, size_t outlen);

/* conn.c */
int store_pg_open(const char *target, long busy_timeout_ms, struct store_db **out, char *errbuf,
		  size_t errlen);
void store_pg_close(struct store_db *db);
int store_pg_ping(struct store_db *db, long timeout_ms);
const char *store_pg_local_path(struct store_db *db);

/* writer.c */
int store_pg_read_begin(struct store_db *db);
void store_pg_read_end(struct store_db *db);
int store_pg_write_begin(struct store_db *db, struct store_tx **tx);
int store_pg_write_end(struct store_tx *tx, int rc);

/* migrate.c */
int store_pg_migrate(struct store_db *db, int *version, bool *fresh, char *errbuf, size_t errlen);

/* users.c */
int store_pg_user_add(struct store_tx *tx, const struct store_user *u);
int store_pg_user_get(struct store_db *db, enum store_user_key by, const char *key,
		      struct store_user *out);
int store_pg_user_uuid(struct store_tx *tx, const char *username, char out[UUID_STR_LEN]);
int store_pg_user_set_password(struct store_tx *tx, const char *uuid, const char *hash);
int store_pg_user_set_active(struct store_tx *tx, const char *uuid, bool active);
int store_pg_user_touch_login(struct store_tx *tx, const char *uuid, int64_t now);
int store_pg_user_delete(struct store_tx *tx, const char *uuid);
int store_pg_user_count(struct store_db *db, long *count);
int store_pg_user_list(struct store_db *db, int (*fn)(const struct store_user *u, void *arg),
		       void *arg);
int store_pg_team_add(struct store_tx *tx, const struct store_team *t);
int store_pg_team_get(struct store_db *db, struct store_tx *tx, const char *ref,
		      struct store_team *out);
int store_pg_team_list(struct store_db *db, int (*fn)(const struct store_team *t, void *arg),
		       void *arg);
int store_pg_member_set(struct store_tx *tx, const char *team_uuid, const char *user_uuid,
			const char *role);
int store_pg_member_remove(struct store_tx *tx, const char *team_uuid, const char *user_uuid);
int store_pg_member_is(struct store_db *db, const char *team_uuid, const char *user_uuid,
		       bool *member);

/* sessions.c */
int store_pg_session_add(struct store_tx *tx, const char *sid, const char *user_uuid,
			 int64_t created_at);
int store_pg_session_state(struct store_db *db, const char *sid, const char *user_uuid,
			   enum store_session *state);
int store_pg_session_ended(struct store_db *db, const char *sid, bool *ended);
int store_pg_sessions_end(struct store_tx *tx, const char *sid, const char *user_uuid, int64_t now,
			  long *ended);
int store_pg_session_ends_since(struct store_db *db, int64_t after, store_session_end_fn fn,
				void *arg);

/* tokens.c */
int store_pg_refresh_add(struct store_tx *tx, const struct store_refresh *r);
int store_pg_refresh_state(struct store_tx *tx, const char *jti, struct store_refresh_state *out);
int store_pg_refresh_row(struct store_tx *tx, const char *jti, struct store_refresh *out);
int store_pg_refresh_use(struct store_tx *tx, const char *jti, int64_t now, const char *next_jti);
int store_pg_refresh_live(struct store_db *db, const char *jti, const char *user_uuid, bool *live);
int store_pg_api_count(struct store_tx *tx, const char *user_uuid, const char *team_uuid,
		       int64_t now, long *count);
int store_pg_api_add(struct store_tx *tx, const struct store_api_token *t);
int store_pg_api_version(struct store_db *db, const char *team_uuid, const char *user_uuid,
			 bool *member, int64_t *version);
int store_pg_api_list(struct store_db *db, const char *user_uuid, const char *team_uuid,
		      int64_t now, int (*fn)(const struct store_api_token *t, void *arg),
		      void *arg);
int store_pg_api_by_digest(struct store_db *db, const unsigned char digest[32],
			   char jti[UUID_STR_LEN]);
int store_pg_api_delete(struct store_tx *tx, const char *jti, const char *user_uuid,
			const char *team_uuid, int64_t now, long *deleted);
int store_pg_api_delete_all(struct store_tx *tx, const char *user_uuid, const char *team_uuid);
int store_pg_api_live(struct store_db *db, const char *jti, const char *user_uuid,
		      const char *team_uuid, bool *live);
int store_pg_purge(struct store_tx *tx, enum store_purge_table t, int64_t before, long limit,
		   long *deleted);
int store_pg_key_in_use(struct store_db *db, const char *kid, int64_t now, long access_lifetime,
			bool *in_use);

#endif
