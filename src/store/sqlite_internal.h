/* SPDX-License-Identifier: MIT */
/*
 * This header is private to src/store/: the per-thread SQLite connection,
 * the table of prepared statements (their SQL lives in store_sqlite.c) and
 * the helpers store_sqlite.c and store_tokens.c share.
 */
#ifndef TOKEND_STORE_SQLITE_INTERNAL_H
#define TOKEND_STORE_SQLITE_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "tokend/store.h"

enum stmt_id {
	S_BEGIN,
	S_READ_BEGIN,
	S_COMMIT,
	S_ROLLBACK,
	S_USER_ADD,
	S_USER_BY_NAME,
	S_USER_SET_PW,
	S_USER_SET_ACTIVE,
	S_USER_DELETE,
	S_USER_COUNT,
	S_USER_LIST,
	S_TEAM_ADD,
	S_TEAM_GET,
	S_TEAM_LIST,
	S_MEMBER_ADD,
	S_MEMBER_REMOVE,
	S_USER_UUID_BY_NAME,
	S_REFRESH_ADD,
	S_LOGIN_TOUCH,
	S_REFRESH_GET,
	S_REFRESH_ROW,
	S_REFRESH_USE,
	S_REFRESH_REVOKE,
	S_REFRESH_LIVE,
	S_REFRESH_PURGE,
	S_KEY_IN_USE,
	S_USER_BY_UUID,
	S_MEMBER_IS,
	S_API_COUNT,
	S_API_ADD,
	S_API_LIST,
	S_API_BY_DIGEST,
	S_API_DELETE,
	S_API_LIVE,
	S_API_PURGE,
	S_API_VERSION,
	S_SESSION_ADD,
	S_SESSION_STATE,
	S_SESSION_END,
	S_USER_SESSIONS_END,
	S_USER_REFRESH_REVOKE,
	S_USER_DISABLE,
	S_API_DELETE_USER,
	S_API_DELETE_MEMBER,
	S_SESSION_ENDED,
	S_ENDS_MAX,
	S_ENDS_SINCE,
	S_ENDS_PURGE,
	S_COUNT
};

struct conn {
	sqlite3 *db;
	sqlite3_stmt *stmts[S_COUNT];
	struct store *owner;
	struct conn *next; /* in owner->conns */
	/* Set by a statement that may end a session, inside a write
	 * transaction; store_db_end bumps the session counter after the
	 * COMMIT and clears it (on a ROLLBACK too). */
	bool ends_session;
};

struct store {
	char *path;
	long busy_timeout_ms;
	/* The file store_open() opened (or created): later connections never
	 * create one, and store_ping() checks the path still names it. */
	bool opened;
	bool ident_known;
	dev_t dev;
	ino_t ino;
	pthread_key_t key;        /* this thread's struct conn */
	pthread_mutex_t lock;     /* guards conns */
	struct conn *conns;       /* every open connection */
	/* Held from BEGIN IMMEDIATE to COMMIT/ROLLBACK: this process's writers
	 * queue here instead of in SQLite's busy handler, which sleeps in
	 * milliseconds. (One writer is all SQLite runs at a time anyway.) */
	pthread_mutex_t write_lock;
	/* The one connection write transactions use, under write_lock: with
	 * no other writer in the process its page cache stays warm (a commit
	 * by another connection would empty it). Not in conns. */
	struct conn *writer;
	/* Checkpoints (store_sqlite.c, checkpoint_due): copies run on the
	 * checkpointer thread outside write_lock; the rare pass that lets the
	 * WAL start over runs under it. */
	atomic_int wal_frames;      /* the WAL's size after the last commit */
	int ckpt_mark;              /* wal_frames at the last copy (write_lock) */
	atomic_bool ckpt_running;   /* a copy is under way */
	pthread_mutex_t ckpt_lock;  /* guards ckpt_wanted and ckpt_stop */
	pthread_cond_t ckpt_cond;
	bool ckpt_wanted, ckpt_stop;
	bool ckpt_started;          /* the thread runs (write_lock) */
	pthread_t ckpt_thread;
	struct conn *checkpointer;  /* the thread's connection */
	/* Session ends (store_sessions.c, store_session_ended). The counter
	 * is bumped after every commit that may end a session, by every
	 * process; the set is there only once store_sessions_watch ran. */
	struct session_counter *ends_counter;
	struct session_set *ends;     /* NULL: look sessions up */
	long ends_horizon;
	pthread_mutex_t ends_lock;    /* one reload at a time; guards below */
	struct conn *ends_conn;       /* the reloads' connection */
	int64_t ends_seq;             /* the last session_ends.seq loaded */
	int64_t ends_pruned_at;       /* wall clock, seconds */
	_Atomic uint64_t ends_seen;   /* the counter before the last load */
	_Atomic int64_t ends_loaded_ms; /* CLOCK_MONOTONIC_COARSE of that load */
};

/* This thread's connection, opened on first use; NULL on failure (logged). */
struct conn *store_db_conn(struct store *st);

/*
 * A connection of the caller's own (not this thread's, not in conns);
 * store_close frees it once the caller hangs it off the store. NULL on
 * failure (logged).
 */
struct conn *store_db_conn_own(struct store *st);

/* The prepared statement id, ready to bind; NULL on failure (logged). */
sqlite3_stmt *store_db_stmt(struct conn *c, enum stmt_id id);

/* Resets a statement after use and clears its bindings. */
void store_db_done(sqlite3_stmt *s);

/* Logs the connection's error about what; returns TOKEND_EDB. */
int store_db_error(struct conn *c, const char *what);

/* Runs a statement that returns no rows: 0, TOKEND_EEXISTS (unique),
 * TOKEND_ENOTFOUND (foreign key) or TOKEND_EDB. */
int store_db_exec(struct conn *c, sqlite3_stmt *s, const char *what);

/* As store_db_exec; no row changed is TOKEND_ENOTFOUND. */
int store_db_exec_changes(struct conn *c, sqlite3_stmt *s, const char *what);

/*
 * Takes the store's write lock and begins an IMMEDIATE transaction on the
 * writer connection, returned in *c; on error the lock is released.
 */
int store_db_begin(struct store *st, struct conn **c);

/*
 * COMMIT when rc is 0 (ROLLBACK if that fails), else ROLLBACK; releases the
 * write lock; returns rc, or the COMMIT's error.
 */
int store_db_end(struct conn *c, int rc);

/*
 * Runs statement id with text parameters params[0..n) and sets *found to
 * whether it returned a row (an existence check).
 */
int store_db_exists(struct store *st, enum stmt_id id, const char *const *params, int n,
		    bool *found);

/* The uuid of user username, on connection c; TOKEND_ENOTFOUND. */
int store_db_user_uuid(struct conn *c, const char *username, char out[UUID_STR_LEN]);

/*
 * Ends session sid (all of them of user_uuid when sid is NULL) on c, inside
 * the caller's write transaction: revoked_at = now, refresh rows revoked.
 * *ended (if not NULL) counts the sessions that were live.
 */
int store_db_sessions_end(struct conn *c, const char *sid, const char *user_uuid, int64_t now,
			  long *ended);

/* Binds a NUL-terminated string that outlives the statement's step. */
void store_db_bind_text(sqlite3_stmt *s, int i, const char *v);

/* Copies text column i into out (empty for NULL). */
void store_db_copy_col(sqlite3_stmt *s, int i, char *out, size_t outlen);

#endif
