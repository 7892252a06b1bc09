/* SPDX-License-Identifier: MIT */
/*
 * This header is private to src/store/sqlite/, the SQLite backend of
 * backend.h: the per-thread connection, the ids of the prepared statements
 * (each file keeps the SQL of its own statements beside its code), the
 * helpers its files share, and the ops each file implements. It is the only
 * includer of sqlite3.h besides those files.
 */
#ifndef TOKEND_STORE_SQLITE_H
#define TOKEND_STORE_SQLITE_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "store/backend.h"

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
	S_API_DELETE_USER,
	S_API_DELETE_MEMBER,
	S_SESSION_ENDED,
	S_SESSION_ENDS_SINCE,
	S_SESSION_ENDS_PURGE,
	S_COUNT
};

struct conn {
	sqlite3 *db;
	sqlite3_stmt *stmts[S_COUNT];
	struct store_db *owner;
	struct conn *next; /* in owner->conns */
	/* The writer inside a write transaction (under write_lock): when
	 * SQLite rolls it back itself (SQLITE_FULL, IOERR, NOMEM, a trigger's
	 * RAISE(ROLLBACK)), its later statements must fail, not run on their
	 * own in autocommit (store_db_stmt). */
	bool in_tx;
};

/* The one write transaction of the process: the writer under write_lock. */
struct store_tx {
	struct conn *c;
};

struct store_db {
	char *path;
	long busy_timeout_ms;
	/* The file store_open() opened (or created): later connections never
	 * create one, and store_ping() checks the path still names it. */
	bool opened;
	bool ident_known;
	dev_t dev;
	ino_t ino;
	pthread_key_t key;    /* this thread's struct conn */
	pthread_mutex_t lock; /* guards conns */
	struct conn *conns;   /* every open connection */
	/* Held from BEGIN IMMEDIATE to COMMIT/ROLLBACK: this process's writers
	 * queue here instead of in SQLite's busy handler, which sleeps in
	 * milliseconds. (One writer is all SQLite runs at a time anyway.) */
	pthread_mutex_t write_lock;
	/* The one connection write transactions use, under write_lock: with
	 * no other writer in the process its page cache stays warm (a commit
	 * by another connection would empty it). Not in conns. */
	struct conn *writer;
	/* sq_write_run's queue (writer.c): jobs waiting for the thread that
	 * holds the lead to run them; lead_taken: a thread has it. */
	pthread_mutex_t jobs_lock;
	struct store_job *jobs_head, *jobs_tail;
	bool lead_taken;
	/* Checkpoints (writer.c, checkpoint_due): copies run on the
	 * checkpointer thread outside write_lock; the rare pass that lets the
	 * WAL start over runs under it. */
	atomic_int wal_frames;     /* the WAL's size after the last commit */
	int ckpt_mark;             /* wal_frames at the last copy (write_lock) */
	atomic_bool ckpt_running;  /* a copy is under way */
	pthread_mutex_t ckpt_lock; /* guards ckpt_wanted and ckpt_stop */
	pthread_cond_t ckpt_cond;
	bool ckpt_wanted, ckpt_stop;
	bool ckpt_started; /* the thread runs (write_lock) */
	pthread_t ckpt_thread;
	struct conn *checkpointer; /* the thread's connection */
	struct store_tx tx;        /* write_begin's, under write_lock */
	/* The -shm file's first page, mapped read-only when the commit mark is
	 * first read (conn.c, sq_commit_mark); shm_failed: it cannot be. */
	_Atomic(const uint32_t *) shm;
	atomic_bool shm_failed;
};

/* Opens a connection to st's file; registered ones are closed by store_close. */
int store_db_conn_open(struct store_db *st, struct conn **out, bool registered, char *errbuf,
		       size_t errlen);

/* Closes c and finalizes its statements. */
void store_db_conn_free(struct conn *c);

/* This thread's connection, opened on first use; NULL on failure (logged). */
struct conn *store_db_conn(struct store_db *st);

/* The prepared statement id of text sql (the calling file's), ready to bind;
 * NULL on failure (logged). */
sqlite3_stmt *store_db_stmt(struct conn *c, enum stmt_id id, const char *sql);

/* store_db_stmt() with the calling file's own table of SQL, named stmt_sql. */
#define STMT(c, id) store_db_stmt((c), (id), stmt_sql[id])

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
 * Runs statement s with text parameters params[0..n) on c and sets *found
 * to whether it returned a row (an existence check).
 */
int store_db_exists(struct conn *c, sqlite3_stmt *s, const char *const *params, int n, bool *found);

/*
 * Steps bound statement s (NULL: TOKEND_EDB), which returns one row, and
 * puts its first column in *out; resets s. Errors are logged about what.
 */
int store_db_int(struct conn *c, sqlite3_stmt *s, const char *what, int64_t *out);

/* Binds a NUL-terminated string that outlives the statement's step. */
void store_db_bind_text(sqlite3_stmt *s, int i, const char *v);

/* Copies text column i into out (empty for NULL). */
void store_db_copy_col(sqlite3_stmt *s, int i, char *out, size_t outlen);

/* The ops of backend.h, by file. conn.c: open, close, local_path. */
/* writer.c */
int sq_ping(struct store_db *db, long timeout_ms);
int sq_read_begin(struct store_db *db);
void sq_read_end(struct store_db *db);
int sq_write_begin(struct store_db *db, struct store_tx **tx);
int sq_write_end(struct store_tx *tx, int rc);
int sq_write_run(struct store_db *db, int (*body)(struct store_tx *tx, void *arg), void *arg);
/* migrate.c */
int sq_migrate(struct store_db *db, int *version, bool *fresh, char *errbuf, size_t errlen);
/* users.c */
int sq_user_add(struct store_tx *tx, const struct store_user *u);
int sq_user_get(struct store_db *db, enum store_user_key by, const char *key,
		struct store_user *out);
int sq_user_uuid(struct store_tx *tx, const char *username, char out[UUID_STR_LEN]);
int sq_user_set_password(struct store_tx *tx, const char *uuid, const char *hash);
int sq_user_set_active(struct store_tx *tx, const char *uuid, bool active);
int sq_user_touch_login(struct store_tx *tx, const char *uuid, int64_t now);
int sq_user_delete(struct store_tx *tx, const char *uuid);
int sq_user_count(struct store_db *db, long *count);
int sq_user_list(struct store_db *db, int (*fn)(const struct store_user *u, void *arg), void *arg);
int sq_team_add(struct store_tx *tx, const struct store_team *t);
int sq_team_get(struct store_db *db, struct store_tx *tx, const char *ref, struct store_team *out);
int sq_team_list(struct store_db *db, int (*fn)(const struct store_team *t, void *arg), void *arg);
int sq_member_set(struct store_tx *tx, const char *team_uuid, const char *user_uuid,
		  const char *role);
int sq_member_remove(struct store_tx *tx, const char *team_uuid, const char *user_uuid);
int sq_member_is(struct store_db *db, const char *team_uuid, const char *user_uuid, bool *member);
/* sessions.c */
int sq_session_add(struct store_tx *tx, const char *sid, const char *user_uuid, int64_t created_at);
int sq_session_state(struct store_db *db, const char *sid, const char *user_uuid,
		     enum store_session *state);
int sq_session_ended(struct store_db *db, const char *sid, bool *ended);
int sq_sessions_end(struct store_tx *tx, const char *sid, const char *user_uuid, int64_t now,
		    long *ended);
int sq_session_ends_since(struct store_db *db, int64_t after, store_session_end_fn fn, void *arg);
/* tokens.c */
int sq_refresh_add(struct store_tx *tx, const struct store_refresh *r);
int sq_refresh_state(struct store_tx *tx, const char *jti, struct store_refresh_state *out);
int sq_refresh_row(struct store_tx *tx, const char *jti, struct store_refresh *out);
int sq_refresh_use(struct store_tx *tx, const char *jti, int64_t now, const char *next_jti);
int sq_refresh_live(struct store_db *db, const char *jti, const char *user_uuid, bool *live);
int sq_api_count(struct store_tx *tx, const char *user_uuid, const char *team_uuid, int64_t now,
		 long *count);
int sq_api_add(struct store_tx *tx, const struct store_api_token *t);
int sq_api_version(struct store_db *db, const char *team_uuid, const char *user_uuid, bool *member,
		   int64_t *version);
int sq_api_list(struct store_db *db, const char *user_uuid, const char *team_uuid, int64_t now,
		int (*fn)(const struct store_api_token *t, void *arg), void *arg);
int sq_api_by_digest(struct store_db *db, const unsigned char digest[32], char jti[UUID_STR_LEN]);
int sq_api_delete(struct store_tx *tx, const char *jti, const char *user_uuid,
		  const char *team_uuid, int64_t now, long *deleted);
int sq_api_delete_all(struct store_tx *tx, const char *user_uuid, const char *team_uuid);
int sq_api_live(struct store_db *db, const char *jti, const char *user_uuid, const char *team_uuid,
		bool *live);
int sq_purge(struct store_tx *tx, enum store_purge_table t, int64_t before, long limit,
	     long *deleted);
int sq_key_in_use(struct store_db *db, const char *kid, int64_t now, long access_lifetime,
		  bool *in_use);

#endif
