/* SPDX-License-Identifier: MIT */
/*
 * This module implements store.h on SQLite. It is the only includer of
 * sqlite3.h. Each calling thread gets its own connection (a shared one would
 * share one transaction, ../shared/PITFALLS.md), opened on first use with
 * WAL, synchronous=NORMAL, foreign keys and a busy timeout; its prepared
 * statements are kept for the connection's life. Read-then-write work runs
 * in BEGIN IMMEDIATE transactions.
 */
#include "tokend/store.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/migrations.h"
#include "store/session_cache.h"
#include "store/sqlite_internal.h"
#include "tokend/err.h"
#include "tokend/log.h"
#include "tokend/metrics.h"

static const char *const stmt_sql[S_COUNT] = {
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_READ_BEGIN] = "BEGIN",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
	[S_USER_ADD] = "INSERT INTO users (uuid, username, password, is_active, created_at) "
		       "VALUES (?1, ?2, ?3, 1, ?4)",
	[S_USER_BY_NAME] = "SELECT uuid, username, password, is_active, created_at, "
			   "coalesce(last_login, 0) FROM users WHERE username = ?1",
	[S_USER_SET_PW] = "UPDATE users SET password = ?2 WHERE uuid = ?1",
	[S_USER_SET_ACTIVE] = "UPDATE users SET is_active = ?2 WHERE username = ?1",
	[S_USER_DELETE] = "DELETE FROM users WHERE username = ?1",
	[S_USER_COUNT] = "SELECT count(*) FROM users",
	[S_USER_LIST] = "SELECT uuid, username, '', is_active, created_at, "
			"coalesce(last_login, 0) FROM users ORDER BY username",
	[S_TEAM_ADD] = "INSERT INTO teams (uuid, name, created_at) VALUES (?1, ?2, ?3)",
	[S_TEAM_GET] = "SELECT t.uuid, t.name, t.created_at, "
		       "(SELECT count(*) FROM team_members m WHERE m.team_uuid = t.uuid) "
		       "FROM teams t WHERE t.uuid = ?1 OR t.name = ?1 "
		       "ORDER BY t.uuid = ?1 DESC LIMIT 1",
	[S_TEAM_LIST] = "SELECT t.uuid, t.name, t.created_at, "
			"(SELECT count(*) FROM team_members m WHERE m.team_uuid = t.uuid) "
			"FROM teams t ORDER BY t.name",
	[S_MEMBER_ADD] = "INSERT INTO team_members (team_uuid, user_uuid, role) "
			 "VALUES (?1, ?2, ?3) "
			 "ON CONFLICT (team_uuid, user_uuid) DO UPDATE SET role = excluded.role",
	[S_MEMBER_REMOVE] = "DELETE FROM team_members WHERE team_uuid = ?1 AND user_uuid = ?2",
	[S_USER_UUID_BY_NAME] = "SELECT uuid FROM users WHERE username = ?1",
	[S_REFRESH_ADD] = "INSERT INTO refresh_tokens (jti, family, user_uuid, kid, access_jti, "
			  "issued_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	/* A family without a live session row counts as revoked. */
	[S_REFRESH_GET] = "SELECT r.family, r.user_uuid, r.used_at, "
			  "r.revoked OR s.id IS NULL OR s.revoked_at IS NOT NULL, "
			  "coalesce(r.replaced_by, ''), u.is_active, "
			  "coalesce(s.created_at, r.issued_at) "
			  "FROM refresh_tokens r JOIN users u ON u.uuid = r.user_uuid "
			  "LEFT JOIN sessions s ON s.id = r.family "
			  "WHERE r.jti = ?1",
	[S_REFRESH_ROW] = "SELECT r.jti, r.family, r.user_uuid, r.kid, r.access_jti, r.issued_at, "
			  "r.expires_at, coalesce(s.created_at, r.issued_at) "
			  "FROM refresh_tokens r LEFT JOIN sessions s ON s.id = r.family "
			  "WHERE r.jti = ?1 AND r.used_at IS NULL AND r.revoked = 0",
	[S_REFRESH_USE] = "UPDATE refresh_tokens SET used_at = ?2, replaced_by = ?3 "
			  "WHERE jti = ?1 AND used_at IS NULL",
	[S_REFRESH_REVOKE] = "UPDATE refresh_tokens SET revoked = 1, "
			     "used_at = coalesce(used_at, ?2) WHERE family = ?1",
	[S_REFRESH_LIVE] = "SELECT 1 FROM refresh_tokens r "
			   "JOIN sessions s ON s.id = r.family AND s.revoked_at IS NULL "
			   "JOIN users u ON u.uuid = r.user_uuid AND u.is_active = 1 "
			   "WHERE r.jti = ?1 AND r.user_uuid = ?2 "
			   "AND r.used_at IS NULL AND r.revoked = 0",
	[S_REFRESH_PURGE] = "DELETE FROM refresh_tokens WHERE rowid IN (SELECT rowid FROM "
			    "refresh_tokens WHERE expires_at <= ?1 LIMIT ?2)",
	[S_KEY_IN_USE] = "SELECT EXISTS (SELECT 1 FROM refresh_tokens WHERE kid = ?1 AND "
			 "((used_at IS NULL AND revoked = 0 AND expires_at > ?2) "
			 "OR issued_at + ?3 > ?2)) "
			 "OR EXISTS (SELECT 1 FROM api_tokens WHERE kid = ?1 AND expires_at > ?2)",
	[S_USER_BY_UUID] = "SELECT uuid, username, '', is_active, created_at, "
			   "coalesce(last_login, 0) FROM users WHERE uuid = ?1",
	[S_MEMBER_IS] = "SELECT 1 FROM team_members WHERE team_uuid = ?1 AND user_uuid = ?2",
	[S_API_VERSION] = "SELECT coalesce((SELECT version FROM api_token_versions "
			  "WHERE user_uuid = ?2 AND team_uuid = ?1), 0) "
			  "FROM team_members WHERE team_uuid = ?1 AND user_uuid = ?2",
	[S_API_COUNT] = "SELECT count(*) FROM api_tokens "
			"WHERE user_uuid = ?1 AND team_uuid = ?2 AND expires_at > ?3",
	[S_API_ADD] = "INSERT INTO api_tokens (jti, digest, user_uuid, team_uuid, kid, name, "
		      "issued_at, updated_at, expires_at) "
		      "VALUES (?1, ?2, ?3, ?4, ?5, nullif(?6, ''), ?7, ?8, ?9)",
	[S_API_LIST] = "SELECT jti, kid, coalesce(name, ''), issued_at, updated_at, expires_at "
		       "FROM api_tokens WHERE user_uuid = ?1 AND team_uuid = ?2 "
		       "AND expires_at > ?3 ORDER BY issued_at DESC, rowid DESC",
	[S_API_BY_DIGEST] = "SELECT jti FROM api_tokens WHERE digest = ?1",
	[S_API_DELETE] = "DELETE FROM api_tokens "
			 "WHERE jti = ?1 AND user_uuid = ?2 AND team_uuid = ?3 AND expires_at > ?4",
	[S_API_PURGE] = "DELETE FROM api_tokens WHERE rowid IN (SELECT rowid FROM "
			"api_tokens WHERE expires_at <= ?1 LIMIT ?2)",
	[S_API_LIVE] = "SELECT 1 FROM api_tokens a "
		       "JOIN users u ON u.uuid = a.user_uuid AND u.is_active = 1 "
		       "JOIN team_members m ON m.team_uuid = a.team_uuid "
		       "AND m.user_uuid = a.user_uuid "
		       "WHERE a.jti = ?1 AND a.user_uuid = ?2 AND a.team_uuid = ?3",
	/* 0 rows: the user was disabled or deleted while the login hashed. */
	[S_LOGIN_TOUCH] = "UPDATE users SET last_login = ?2 WHERE uuid = ?1 AND is_active = 1",
	[S_SESSION_ADD] = "INSERT INTO sessions (id, user_uuid, created_at) VALUES (?1, ?2, ?3)",
	/* No row: no such user. Else is_active, and whether the session is live. */
	[S_SESSION_STATE] = "SELECT u.is_active, EXISTS (SELECT 1 FROM sessions s "
			    "WHERE s.id = ?1 AND s.user_uuid = u.uuid AND s.revoked_at IS NULL) "
			    "FROM users u WHERE u.uuid = ?2",
	[S_SESSION_END] = "UPDATE sessions SET revoked_at = ?3 "
			  "WHERE id = ?1 AND user_uuid = ?2 AND revoked_at IS NULL",
	[S_USER_SESSIONS_END] = "UPDATE sessions SET revoked_at = ?2 "
				"WHERE user_uuid = ?1 AND revoked_at IS NULL",
	/* By the user's sessions: refresh_tokens has no index on user_uuid. */
	[S_USER_REFRESH_REVOKE] = "UPDATE refresh_tokens SET revoked = 1, "
				  "used_at = coalesce(used_at, ?2) WHERE revoked = 0 AND family IN "
				  "(SELECT id FROM sessions WHERE user_uuid = ?1)",
	[S_USER_DISABLE] = "UPDATE users SET is_active = 0 WHERE uuid = ?1",
	[S_API_DELETE_USER] = "DELETE FROM api_tokens WHERE user_uuid = ?1",
	[S_API_DELETE_MEMBER] = "DELETE FROM api_tokens WHERE user_uuid = ?2 AND team_uuid = ?1",
	/* No row: ended long ago (purged) or never recorded; both are ended. */
	[S_SESSION_ENDED] = "SELECT revoked_at IS NULL FROM sessions WHERE id = ?1",
	[S_ENDS_MAX] = "SELECT coalesce(max(seq), 0) FROM session_ends",
	[S_ENDS_SINCE] = "SELECT seq, sid, ended_at FROM session_ends "
			 "WHERE seq > ?1 AND seq <= ?2 AND ended_at >= ?3",
	[S_ENDS_PURGE] = "DELETE FROM session_ends WHERE rowid IN (SELECT rowid FROM "
			 "session_ends WHERE ended_at < ?1 LIMIT ?2)",
};

static void conn_free(struct conn *c)
{
	for (int i = 0; i < S_COUNT; i++)
		sqlite3_finalize(c->stmts[i]);
	sqlite3_close_v2(c->db);
	free(c);
}

/* pthread key destructor: a thread that ends closes its connection. */
static void conn_release(void *p)
{
	struct conn *c = p;
	struct store *st = c->owner;
	struct conn **pp;

	pthread_mutex_lock(&st->lock);
	for (pp = &st->conns; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	pthread_mutex_unlock(&st->lock);
	conn_free(c);
}

static int conn_open(struct store *st, struct conn **out, bool registered, char *errbuf,
		     size_t errlen)
{
	struct conn *c = calloc(1, sizeof(*c));
	char *msg = NULL;
	int rc;

	if (c == NULL)
		return TOKEND_ENOMEM;
	c->owner = st;
	/* Only the first connection creates the file: a later one finding it
	 * gone must fail, not serve a new empty database beside the others. */
	rc = sqlite3_open_v2(st->path, &c->db,
			     SQLITE_OPEN_READWRITE | (st->opened ? 0 : SQLITE_OPEN_CREATE) |
				     SQLITE_OPEN_NOMUTEX,
			     NULL);
	if (rc != SQLITE_OK) {
		snprintf(errbuf, errlen, "%s: %s", st->path,
			 c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
		conn_free(c);
		return TOKEND_EDB;
	}
	sqlite3_busy_timeout(c->db, (int)st->busy_timeout_ms);
	rc = sqlite3_exec(c->db,
			  "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
			  "PRAGMA foreign_keys = ON;",
			  NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		snprintf(errbuf, errlen, "%s: %s", st->path, msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		conn_free(c);
		return TOKEND_EDB;
	}
	if (registered) {
		pthread_mutex_lock(&st->lock);
		c->next = st->conns;
		st->conns = c;
		pthread_mutex_unlock(&st->lock);
	}
	*out = c;
	return 0;
}

struct conn *store_db_conn_own(struct store *st)
{
	struct conn *c = NULL;
	char err[256];

	if (conn_open(st, &c, false, err, sizeof(err)) != 0) {
		log_error("store: %s", err);
		metrics_store_error();
		return NULL;
	}
	return c;
}

/* This thread's connection, opened on first use; NULL on failure (logged). */
struct conn *store_db_conn(struct store *st)
{
	struct conn *c = pthread_getspecific(st->key);
	char err[256];

	if (c != NULL)
		return c;
	if (conn_open(st, &c, true, err, sizeof(err)) != 0) {
		log_error("store: %s", err);
		metrics_store_error();
		return NULL;
	}
	pthread_setspecific(st->key, c);
	return c;
}

/* The prepared statement id, reset and unbound; NULL on failure (logged). */
sqlite3_stmt *store_db_stmt(struct conn *c, enum stmt_id id)
{
	sqlite3_stmt *s = c->stmts[id];

	if (s == NULL) {
		if (sqlite3_prepare_v3(c->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &s,
				       NULL) != SQLITE_OK) {
			log_error("store: prepare: %s", sqlite3_errmsg(c->db));
			metrics_store_error();
			return NULL;
		}
		c->stmts[id] = s;
	}
	return s;
}

void store_db_done(sqlite3_stmt *s)
{
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
}

int store_db_error(struct conn *c, const char *what)
{
	log_error("store: %s: %s", what, sqlite3_errmsg(c->db));
	metrics_store_error();
	return TOKEND_EDB;
}

/* Runs a statement that returns no rows. */
int store_db_exec(struct conn *c, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s);
	int ext = sqlite3_extended_errcode(c->db);

	store_db_done(s);
	if (rc == SQLITE_DONE)
		return 0;
	if (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY)
		return TOKEND_EEXISTS;
	if (ext == SQLITE_CONSTRAINT_FOREIGNKEY)
		return TOKEND_ENOTFOUND;
	return store_db_error(c, what);
}

/*
 * Checkpoints. SQLite's automatic checkpoint runs inside the commit that
 * takes the WAL past 1,000 frames: it reads every frame back, writes it to
 * the database and syncs both files, and under write_lock every other
 * writer waited for it (43 % of the time the lock was held under a refresh
 * load). Here the writer's wal hook replaces it:
 * - every CKPT_FRAMES new frames, the checkpointer thread copies them to
 *   the database outside the lock (PASSIVE: it waits for no one);
 * - past CKPT_RESTART_FRAMES, a commit copies what is left under the lock,
 *   so that the next write finds the WAL fully copied and starts it over
 *   from the beginning. (Copies beside the writers never catch up with
 *   them, and the WAL would grow without bound.) That pass costs two
 *   fsyncs, about 5 ms, so it is kept rare; readers do not look up frames
 *   already copied, so a longer WAL does not slow them down.
 */
#define CKPT_FRAMES 1000          /* SQLite's own autocheckpoint size */
#define CKPT_RESTART_FRAMES 16000 /* 64 MiB of 4 KiB pages */

/* The writer's wal hook: remembers the WAL's size after each commit. */
static int wal_committed(void *arg, sqlite3 *db, const char *name, int frames)
{
	struct store *st = arg;

	(void)db;
	(void)name;
	atomic_store(&st->wal_frames, frames);
	return SQLITE_OK;
}

static void checkpoint(struct conn *c)
{
	int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);

	if (rc != SQLITE_OK && rc != SQLITE_BUSY)
		(void)store_db_error(c, "checkpoint");
}

static void *checkpointer_main(void *arg)
{
	struct store *st = arg;

	pthread_mutex_lock(&st->ckpt_lock);
	for (;;) {
		while (!st->ckpt_wanted && !st->ckpt_stop)
			pthread_cond_wait(&st->ckpt_cond, &st->ckpt_lock);
		if (st->ckpt_stop)
			break;
		st->ckpt_wanted = false;
		pthread_mutex_unlock(&st->ckpt_lock);
		checkpoint(st->checkpointer);
		atomic_store(&st->ckpt_running, false);
		pthread_mutex_lock(&st->ckpt_lock);
	}
	pthread_mutex_unlock(&st->ckpt_lock);
	return NULL;
}

/* Starts the checkpointer thread; false if it cannot run (logged). */
static bool checkpointer_start(struct store *st)
{
	char err[256];

	if (st->ckpt_started)
		return true;
	if (st->checkpointer == NULL &&
	    conn_open(st, &st->checkpointer, false, err, sizeof(err)) != 0) {
		log_error("store: checkpointer: %s", err);
		return false;
	}
	if (pthread_create(&st->ckpt_thread, NULL, checkpointer_main, st) != 0) {
		log_error("store: checkpointer: cannot start a thread");
		return false;
	}
	st->ckpt_started = true;
	return true;
}

/* After a commit, under write_lock: hands out or finishes a checkpoint. */
static void checkpoint_due(struct store *st)
{
	int frames = atomic_load(&st->wal_frames);

	if (frames < st->ckpt_mark)
		st->ckpt_mark = 0; /* the WAL started over */
	if (frames < st->ckpt_mark + CKPT_FRAMES || atomic_load(&st->ckpt_running))
		return;
	/*
	 * The next pass is CKPT_FRAMES later, also after a pass under the lock
	 * that could not let the WAL start over (a reader still held an old
	 * snapshot): each such pass costs the writers ~5 ms.
	 */
	st->ckpt_mark = frames;
	if (frames >= CKPT_RESTART_FRAMES || !checkpointer_start(st)) {
		checkpoint(st->writer);
		return;
	}
	atomic_store(&st->ckpt_running, true);
	pthread_mutex_lock(&st->ckpt_lock);
	st->ckpt_wanted = true;
	pthread_cond_signal(&st->ckpt_cond);
	pthread_mutex_unlock(&st->ckpt_lock);
}

/* Opens the writer connection if it is not yet (under write_lock). */
static int writer_open(struct store *st)
{
	char err[256];

	if (st->writer != NULL)
		return 0;
	if (conn_open(st, &st->writer, false, err, sizeof(err)) != 0) {
		log_error("store: %s", err);
		metrics_store_error();
		return TOKEND_EDB;
	}
	sqlite3_wal_hook(st->writer->db, wal_committed, st);
	return 0;
}

int store_db_begin(struct store *st, struct conn **out)
{
	sqlite3_stmt *s;
	int rc;

	/*
	 * A read snapshot this thread holds ends here: held while the thread
	 * waits for the lock and writes, it would keep the WAL from starting
	 * over (every writer would hold one), and the thread's lookups after
	 * its own write see that write.
	 */
	store_read_end(st);
	pthread_mutex_lock(&st->write_lock);
	if (writer_open(st) != 0) {
		pthread_mutex_unlock(&st->write_lock);
		return TOKEND_EDB;
	}
	s = store_db_stmt(st->writer, S_BEGIN);
	rc = s ? store_db_exec(st->writer, s, "begin") : TOKEND_EDB;
	if (rc != 0) {
		pthread_mutex_unlock(&st->write_lock);
		return rc;
	}
	*out = st->writer;
	return 0;
}

int store_db_end(struct conn *c, int rc)
{
	sqlite3_stmt *s = store_db_stmt(c, rc == 0 ? S_COMMIT : S_ROLLBACK);

	if (s != NULL && rc == 0)
		rc = store_db_exec(c, s, "commit");
	else if (rc == 0)
		rc = TOKEND_EDB;
	if (rc != 0 && !sqlite3_get_autocommit(c->db)) {
		s = store_db_stmt(c, S_ROLLBACK);
		if (s != NULL)
			(void)store_db_exec(c, s, "rollback");
	}
	/* After the COMMIT: a reader that sees the count move finds the rows. */
	if (rc == 0 && c->ends_session)
		session_counter_bump(c->owner->ends_counter);
	c->ends_session = false;
	checkpoint_due(c->owner);
	pthread_mutex_unlock(&c->owner->write_lock);
	return rc;
}

int store_read_begin(struct store *st)
{
	struct conn *c = store_db_conn(st);
	sqlite3_stmt *s = c ? store_db_stmt(c, S_READ_BEGIN) : NULL;

	return s ? store_db_exec(c, s, "read begin") : TOKEND_EDB;
}

void store_read_end(struct store *st)
{
	/* Not store_db_conn(): a thread without a connection has no snapshot. */
	struct conn *c = pthread_getspecific(st->key);
	sqlite3_stmt *s;

	if (c == NULL || sqlite3_get_autocommit(c->db))
		return;
	s = store_db_stmt(c, S_COMMIT);
	if (s == NULL || store_db_exec(c, s, "read end") != 0) {
		s = store_db_stmt(c, S_ROLLBACK);
		if (s != NULL)
			(void)store_db_exec(c, s, "read rollback");
	}
}

void store_db_bind_text(sqlite3_stmt *s, int i, const char *v)
{
	sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
}

void store_db_copy_col(sqlite3_stmt *s, int i, char *out, size_t outlen)
{
	const unsigned char *t = sqlite3_column_text(s, i);
	size_t n = t ? (size_t)sqlite3_column_bytes(s, i) : 0;

	if (n >= outlen)
		n = outlen - 1; /* cut, as snprintf would */
	if (n > 0)
		memcpy(out, t, n);
	out[n] = '\0';
}

/*
 * Before SQLite's first use: no allocation statistics. With them on (the
 * Debian build's default) every allocation SQLite makes takes one global
 * mutex, which the HTTP threads' lookups then queue on. And SQLite's own
 * mutexes spin a little before sleeping: the one every read transaction
 * takes (the WAL index's) is held for a few hundred nanoseconds, far less
 * than the futex sleep and wake-up that waiting on it cost.
 */
#define MUTEX_SPINS 200
static sqlite3_mutex_methods sqlite_mutex;

/* Spins briefly before sleeping on one of SQLite's mutexes (see sqlite_setup). */
static void mutex_enter_spinning(sqlite3_mutex *m)
{
	for (int i = 0; i < MUTEX_SPINS; i++) {
		if (sqlite_mutex.xMutexTry(m) == SQLITE_OK)
			return;
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#endif
	}
	sqlite_mutex.xMutexEnter(m);
}

static void sqlite_setup(void)
{
	sqlite3_mutex_methods spinning;

	(void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
	if (sqlite3_config(SQLITE_CONFIG_GETMUTEX, &sqlite_mutex) == SQLITE_OK &&
	    sqlite_mutex.xMutexTry != NULL) {
		spinning = sqlite_mutex;
		spinning.xMutexEnter = mutex_enter_spinning;
		(void)sqlite3_config(SQLITE_CONFIG_MUTEX, &spinning);
	}
}

int store_open(const char *path, long busy_timeout_ms, struct store **out, char *errbuf,
	       size_t errlen)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct store *st;
	struct conn *c;
	int rc;

	pthread_once(&once, sqlite_setup);
	st = calloc(1, sizeof(*st));
	*out = NULL;
	if (st == NULL)
		return TOKEND_ENOMEM;
	st->path = strdup(path);
	st->busy_timeout_ms = busy_timeout_ms;
	if (st->path == NULL || pthread_key_create(&st->key, conn_release) != 0) {
		free(st->path);
		free(st);
		return TOKEND_ENOMEM;
	}
	pthread_mutex_init(&st->lock, NULL);
	pthread_mutex_init(&st->write_lock, NULL);
	pthread_mutex_init(&st->ckpt_lock, NULL);
	pthread_cond_init(&st->ckpt_cond, NULL);
	pthread_mutex_init(&st->ends_lock, NULL);
	st->ends_counter = session_counter_open(path);
	if (st->ends_counter == NULL) {
		store_close(&st);
		return TOKEND_ENOMEM;
	}
	rc = conn_open(st, &c, true, errbuf, errlen);
	if (rc != 0) {
		store_close(&st);
		return rc;
	}
	st->opened = true;
	{
		struct stat sb;
		if (stat(st->path, &sb) == 0) {
			st->ident_known = true;
			st->dev = sb.st_dev;
			st->ino = sb.st_ino;
		}
	}
	pthread_setspecific(st->key, c);
	*out = st;
	return 0;
}

void store_close(struct store **stp)
{
	struct store *st = stp ? *stp : NULL;

	if (st == NULL)
		return;
	if (st->ckpt_started) {
		pthread_mutex_lock(&st->ckpt_lock);
		st->ckpt_stop = true;
		pthread_cond_signal(&st->ckpt_cond);
		pthread_mutex_unlock(&st->ckpt_lock);
		pthread_join(st->ckpt_thread, NULL);
	}
	if (st->checkpointer != NULL)
		conn_free(st->checkpointer);
	/* Other threads have ended by now; close what they and we left. */
	pthread_setspecific(st->key, NULL);
	while (st->conns != NULL) {
		struct conn *c = st->conns;
		st->conns = c->next;
		conn_free(c);
	}
	if (st->writer != NULL)
		conn_free(st->writer);
	if (st->ends_conn != NULL)
		conn_free(st->ends_conn); /* store_sessions.c's reloads */
	session_set_free(&st->ends);
	session_counter_close(&st->ends_counter);
	pthread_mutex_destroy(&st->ends_lock);
	pthread_key_delete(st->key);
	pthread_mutex_destroy(&st->lock);
	pthread_mutex_destroy(&st->write_lock);
	pthread_mutex_destroy(&st->ckpt_lock);
	pthread_cond_destroy(&st->ckpt_cond);
	free(st->path);
	free(st);
	*stp = NULL;
}

/* Runs sql on c waiting at most timeout_ms for a lock: 0, TOKEND_EBUSY, TOKEND_EDB. */
static int ping_exec(struct conn *c, const char *sql, long timeout_ms, long restore_ms)
{
	int rc;

	sqlite3_busy_timeout(c->db, (int)timeout_ms);
	rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
	sqlite3_busy_timeout(c->db, (int)restore_ms);
	if (rc == SQLITE_OK)
		return 0;
	return (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED ? TOKEND_EBUSY
									 : TOKEND_EDB;
}

int store_ping(struct store *st, long timeout_ms)
{
	struct stat sb;
	struct conn *c;
	int rc;

	/* Before any connection: a thread's first one must not find the file gone. */
	if (st->ident_known &&
	    (stat(st->path, &sb) != 0 || sb.st_dev != st->dev || sb.st_ino != st->ino)) {
		rc = TOKEND_EDB;
		goto out;
	}
	c = store_db_conn(st);
	if (c == NULL)
		return TOKEND_EDB; /* counted */
	rc = ping_exec(c, "SELECT count(*) FROM sqlite_master", timeout_ms, st->busy_timeout_ms);
	if (rc != 0 || pthread_mutex_trylock(&st->write_lock) != 0)
		goto out; /* a writer of ours holds the lock: the store answers it */
	if (writer_open(st) != 0) {
		pthread_mutex_unlock(&st->write_lock);
		return TOKEND_EDB; /* counted */
	}
	rc = ping_exec(st->writer, "BEGIN IMMEDIATE", timeout_ms, st->busy_timeout_ms);
	if (rc == 0 && ping_exec(st->writer, "ROLLBACK", timeout_ms, st->busy_timeout_ms) != 0)
		rc = TOKEND_EDB;
	pthread_mutex_unlock(&st->write_lock);
out:
	if (rc != 0)
		metrics_store_error();
	return rc;
}

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

int store_migrate(struct store *st, int *version, bool *fresh, char *errbuf, size_t errlen)
{
	struct conn *c = store_db_conn(st);
	int v = 0;
	int latest = store_migration_count
			     ? store_migrations[store_migration_count - 1].version
			     : 0;

	if (c == NULL || user_version(c, &v) != 0) {
		snprintf(errbuf, errlen, "%s: cannot read schema version", st->path);
		return TOKEND_EDB;
	}
	if (fresh != NULL)
		*fresh = v == 0;
	if (v > latest) {
		snprintf(errbuf, errlen,
			 "%s: schema version %d is newer than this tokend knows (%d)", st->path,
			 v, latest);
		return TOKEND_EDB;
	}
	for (unsigned i = 0; i < store_migration_count; i++) {
		const struct store_migration *m = &store_migrations[i];
		struct conn *w = NULL;
		char pragma[64];
		char *msg = NULL;

		if (m->version <= v)
			continue;
		snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", m->version);
		if (store_db_begin(st, &w) != 0) {
			snprintf(errbuf, errlen, "%s: migration %s: cannot begin", st->path, m->name);
			return TOKEND_EDB;
		}
		if (sqlite3_exec(w->db, m->sql, NULL, NULL, &msg) != SQLITE_OK ||
		    sqlite3_exec(w->db, pragma, NULL, NULL, &msg) != SQLITE_OK) {
			snprintf(errbuf, errlen, "%s: migration %s failed: %s", st->path, m->name,
				 msg ? msg : sqlite3_errmsg(w->db));
			sqlite3_free(msg);
			store_db_end(w, TOKEND_EDB);
			return TOKEND_EDB;
		}
		if (store_db_end(w, 0) != 0) {
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

int store_user_add(struct store *st, const char *username, const char *hash,
		   char uuid_out[UUID_STR_LEN])
{
	struct conn *c = store_db_conn(st);
	sqlite3_stmt *s = c ? store_db_stmt(c, S_USER_ADD) : NULL;
	char uuid[UUID_STR_LEN];
	int rc;

	if (s == NULL)
		return TOKEND_EDB;
	if (util_uuid_new(uuid) != 0)
		return TOKEND_ECRYPTO;
	store_db_bind_text(s, 1, uuid);
	store_db_bind_text(s, 2, username);
	store_db_bind_text(s, 3, hash);
	sqlite3_bind_int64(s, 4, util_now());
	rc = store_db_exec(c, s, "user add");
	if (rc == 0 && uuid_out != NULL)
		memcpy(uuid_out, uuid, UUID_STR_LEN);
	return rc;
}

static void user_from_row(sqlite3_stmt *s, struct store_user *u)
{
	store_db_copy_col(s, 0, u->uuid, sizeof(u->uuid));
	store_db_copy_col(s, 1, u->username, sizeof(u->username));
	store_db_copy_col(s, 2, u->password, sizeof(u->password));
	u->is_active = sqlite3_column_int(s, 3) != 0;
	u->created_at = sqlite3_column_int64(s, 4);
	u->last_login = sqlite3_column_int64(s, 5);
}

/* Reads the one user statement id finds for key. */
static int user_get(struct store *st, enum stmt_id id, const char *key, struct store_user *out)
{
	struct conn *c = store_db_conn(st);
	sqlite3_stmt *s = c ? store_db_stmt(c, id) : NULL;
	int rc;

	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, key);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		user_from_row(s, out);
	store_db_done(s);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? TOKEND_ENOTFOUND : store_db_error(c, "user get");
}

int store_user_get_by_name(struct store *st, const char *username, struct store_user *out)
{
	return user_get(st, S_USER_BY_NAME, username, out);
}

/* Runs an UPDATE/DELETE; no row changed is TOKEND_ENOTFOUND. */
int store_db_exec_changes(struct conn *c, sqlite3_stmt *s, const char *what)
{
	int rc = store_db_exec(c, s, what);

	if (rc == 0 && sqlite3_changes(c->db) == 0)
		return TOKEND_ENOTFOUND;
	return rc;
}

int store_user_set_password(struct store *st, const char *uuid, const char *hash)
{
	struct conn *c = store_db_conn(st);
	sqlite3_stmt *s = c ? store_db_stmt(c, S_USER_SET_PW) : NULL;

	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, uuid);
	store_db_bind_text(s, 2, hash);
	return store_db_exec_changes(c, s, "user passwd");
}

int store_user_delete(struct store *st, const char *username)
{
	struct conn *c = store_db_conn(st);
	sqlite3_stmt *s = c ? store_db_stmt(c, S_USER_DELETE) : NULL;
	int rc;

	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, username);
	/* Autocommit: the sessions went with the user (ON DELETE CASCADE). */
	rc = store_db_exec_changes(c, s, "user delete");
	if (rc == 0)
		session_counter_bump(st->ends_counter);
	return rc;
}

int store_user_count(struct store *st, long *count)
{
	struct conn *c = store_db_conn(st);
	sqlite3_stmt *s = c ? store_db_stmt(c, S_USER_COUNT) : NULL;
	int rc;

	if (s == NULL)
		return TOKEND_EDB;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*count = (long)sqlite3_column_int64(s, 0);
	store_db_done(s);
	return rc == SQLITE_ROW ? 0 : store_db_error(c, "user count");
}

int store_user_list(struct store *st, int (*fn)(const struct store_user *u, void *arg),
		    void *arg)
{
	struct conn *c = store_db_conn(st);
	sqlite3_stmt *s = c ? store_db_stmt(c, S_USER_LIST) : NULL;
	struct store_user u;
	int rc;

	if (s == NULL)
		return TOKEND_EDB;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		memset(&u, 0, sizeof(u));
		user_from_row(s, &u);
		if (fn(&u, arg) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	store_db_done(s);
	return rc == SQLITE_DONE ? 0 : store_db_error(c, "user list");
}

int store_team_add(struct store *st, const char *name, char uuid_out[UUID_STR_LEN])
{
	struct conn *c = store_db_conn(st);
	sqlite3_stmt *s = c ? store_db_stmt(c, S_TEAM_ADD) : NULL;
	char uuid[UUID_STR_LEN];
	int rc;

	if (s == NULL)
		return TOKEND_EDB;
	if (util_uuid_new(uuid) != 0)
		return TOKEND_ECRYPTO;
	store_db_bind_text(s, 1, uuid);
	store_db_bind_text(s, 2, name);
	sqlite3_bind_int64(s, 3, util_now());
	rc = store_db_exec(c, s, "team add");
	if (rc == 0 && uuid_out != NULL)
		memcpy(uuid_out, uuid, UUID_STR_LEN);
	return rc;
}

static void team_from_row(sqlite3_stmt *s, struct store_team *t)
{
	store_db_copy_col(s, 0, t->uuid, sizeof(t->uuid));
	store_db_copy_col(s, 1, t->name, sizeof(t->name));
	t->created_at = sqlite3_column_int64(s, 2);
	t->members = (long)sqlite3_column_int64(s, 3);
}

int store_team_get(struct store *st, const char *team_ref, struct store_team *out)
{
	struct conn *c = store_db_conn(st);
	sqlite3_stmt *s = c ? store_db_stmt(c, S_TEAM_GET) : NULL;
	int rc;

	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, team_ref);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		team_from_row(s, out);
	store_db_done(s);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? TOKEND_ENOTFOUND : store_db_error(c, "team get");
}

int store_team_list(struct store *st, int (*fn)(const struct store_team *t, void *arg),
		    void *arg)
{
	struct conn *c = store_db_conn(st);
	sqlite3_stmt *s = c ? store_db_stmt(c, S_TEAM_LIST) : NULL;
	struct store_team t;
	int rc;

	if (s == NULL)
		return TOKEND_EDB;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		team_from_row(s, &t);
		if (fn(&t, arg) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	store_db_done(s);
	return rc == SQLITE_DONE ? 0 : store_db_error(c, "team list");
}

int store_db_user_uuid(struct conn *c, const char *username, char out[UUID_STR_LEN])
{
	sqlite3_stmt *s = store_db_stmt(c, S_USER_UUID_BY_NAME);
	int rc;

	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, username);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		store_db_copy_col(s, 0, out, UUID_STR_LEN);
	store_db_done(s);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? TOKEND_ENOTFOUND : store_db_error(c, "user uuid");
}

/* Resolves team and user, then runs member statement id on them. */
static int member_change(struct store *st, const char *team_ref, const char *username,
			 const char *role, enum stmt_id id)
{
	struct conn *c = NULL;
	struct store_team team;
	char user[UUID_STR_LEN];
	sqlite3_stmt *s;
	int rc;

	rc = store_db_begin(st, &c);
	if (rc != 0)
		return rc;
	rc = store_team_get(st, team_ref, &team);
	if (rc == 0)
		rc = store_db_user_uuid(c, username, user);
	if (rc == 0) {
		s = store_db_stmt(c, id);
		if (s == NULL) {
			rc = TOKEND_EDB;
		} else {
			store_db_bind_text(s, 1, team.uuid);
			store_db_bind_text(s, 2, user);
			if (role != NULL)
				store_db_bind_text(s, 3, role);
			rc = role ? store_db_exec(c, s, "member add")
				  : store_db_exec_changes(c, s, "member remove");
		}
	}
	/* Leaving a team deletes the tokens for it, as leaving a GitHub organisation. */
	if (rc == 0 && role == NULL) {
		s = store_db_stmt(c, S_API_DELETE_MEMBER);
		if (s == NULL) {
			rc = TOKEND_EDB;
		} else {
			store_db_bind_text(s, 1, team.uuid);
			store_db_bind_text(s, 2, user);
			rc = store_db_exec(c, s, "member tokens delete");
		}
	}
	return store_db_end(c, rc);
}

int store_team_add_member(struct store *st, const char *team_ref, const char *username,
			  const char *role)
{
	if (strcmp(role, "member") != 0 && strcmp(role, "admin") != 0)
		return TOKEND_EINVAL;
	return member_change(st, team_ref, username, role, S_MEMBER_ADD);
}

int store_team_remove_member(struct store *st, const char *team_ref, const char *username)
{
	return member_change(st, team_ref, username, NULL, S_MEMBER_REMOVE);
}

int store_user_get_by_uuid(struct store *st, const char *uuid, struct store_user *out)
{
	return user_get(st, S_USER_BY_UUID, uuid, out);
}

int store_db_exists(struct store *st, enum stmt_id id, const char *const *params, int n,
		    bool *found)
{
	struct conn *c = store_db_conn(st);
	sqlite3_stmt *s = c ? store_db_stmt(c, id) : NULL;
	int rc;

	*found = false;
	if (s == NULL)
		return TOKEND_EDB;
	for (int i = 0; i < n; i++)
		store_db_bind_text(s, i + 1, params[i]);
	rc = sqlite3_step(s);
	store_db_done(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return store_db_error(c, "exists");
	*found = rc == SQLITE_ROW;
	return 0;
}

int store_team_is_member(struct store *st, const char *team_uuid, const char *user_uuid,
			 bool *member)
{
	const char *params[] = {team_uuid, user_uuid};

	return store_db_exists(st, S_MEMBER_IS, params, 2, member);
}

