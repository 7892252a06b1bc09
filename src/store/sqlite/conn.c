/* SPDX-License-Identifier: MIT */
/*
 * This module implements the connections of the SQLite backend of
 * backend.h, and its ops table. Each calling thread gets its own connection
 * (a shared one would share one transaction, ../shared/PITFALLS.md), opened
 * on first use with WAL, synchronous=NORMAL, foreign keys and a busy
 * timeout; its prepared statements are kept for the connection's life.
 * writer.c runs the write transactions, the other files the rows.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/sqlite/sqlite.h"
#include "tokend/err.h"
#include "tokend/log.h"
#include "tokend/metrics.h"

/* The WAL-index header's two copies (sq_commit_mark), in bytes and words. */
#define SHM_HDR_BYTES 96
#define SHM_HDR_WORDS 12

void store_db_conn_free(struct conn *c)
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
	struct store_db *st = c->owner;
	struct conn **pp;

	pthread_mutex_lock(&st->lock);
	for (pp = &st->conns; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	pthread_mutex_unlock(&st->lock);
	store_db_conn_free(c);
}

int store_db_conn_open(struct store_db *st, struct conn **out, bool registered, char *errbuf,
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
		store_db_conn_free(c);
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
		store_db_conn_free(c);
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

/* This thread's connection, opened on first use; NULL on failure (logged). */
struct conn *store_db_conn(struct store_db *st)
{
	struct conn *c = pthread_getspecific(st->key);
	char err[256];

	if (c != NULL)
		return c;
	if (store_db_conn_open(st, &c, true, err, sizeof(err)) != 0) {
		log_error("store: %s", err);
		metrics_store_error();
		return NULL;
	}
	pthread_setspecific(st->key, c);
	return c;
}

/* The prepared statement id, reset and unbound; NULL on failure (logged). */
sqlite3_stmt *store_db_stmt(struct conn *c, enum stmt_id id, const char *sql)
{
	sqlite3_stmt *s = c->stmts[id];

	if (c->in_tx && sqlite3_get_autocommit(c->db)) {
		log_error("store: the transaction was rolled back: %s", sqlite3_errmsg(c->db));
		metrics_store_error();
		return NULL;
	}

	if (s == NULL) {
		if (sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL) !=
		    SQLITE_OK) {
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

static void sq_close(struct store_db *st);

static int sq_open(const char *path, long busy_timeout_ms, struct store_db **out, char *errbuf,
		   size_t errlen)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct store_db *st;
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
	pthread_mutex_init(&st->jobs_lock, NULL);
	pthread_mutex_init(&st->ckpt_lock, NULL);
	pthread_cond_init(&st->ckpt_cond, NULL);
	rc = store_db_conn_open(st, &c, true, errbuf, errlen);
	if (rc != 0) {
		sq_close(st);
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

static void sq_close(struct store_db *st)
{
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
		store_db_conn_free(st->checkpointer);
	/* Other threads have ended by now; close what they and we left. */
	pthread_setspecific(st->key, NULL);
	while (st->conns != NULL) {
		struct conn *c = st->conns;
		st->conns = c->next;
		store_db_conn_free(c);
	}
	if (st->writer != NULL)
		store_db_conn_free(st->writer);
	if (atomic_load(&st->shm) != NULL)
		munmap((void *)atomic_load(&st->shm), SHM_HDR_BYTES);
	pthread_key_delete(st->key);
	pthread_mutex_destroy(&st->lock);
	pthread_mutex_destroy(&st->write_lock);
	pthread_mutex_destroy(&st->jobs_lock);
	pthread_mutex_destroy(&st->ckpt_lock);
	pthread_cond_destroy(&st->ckpt_cond);
	free(st->path);
	free(st);
}

/* Runs an UPDATE/DELETE; no row changed is TOKEND_ENOTFOUND. */
int store_db_exec_changes(struct conn *c, sqlite3_stmt *s, const char *what)
{
	int rc = store_db_exec(c, s, what);

	if (rc == 0 && sqlite3_changes(c->db) == 0)
		return TOKEND_ENOTFOUND;
	return rc;
}

int store_db_exists(struct conn *c, sqlite3_stmt *s, const char *const *params, int n, bool *found)
{
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

int store_db_int(struct conn *c, sqlite3_stmt *s, const char *what, int64_t *out)
{
	int rc;

	if (s == NULL)
		return TOKEND_EDB;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(s, 0);
	store_db_done(s);
	return rc == SQLITE_ROW ? 0 : store_db_error(c, what);
}

static const char *sq_local_path(struct store_db *db)
{
	return db->path;
}

/*
 * The commit mark (backend.h) is SQLite's WAL-index header: the -shm
 * file's first 96 bytes hold two copies of a 48-byte header that every
 * commit of every process rewrites, the second copy first
 * (https://sqlite.org/walformat.html, "The WAL-Index Header"; SQLite's
 * own readers compare the two copies, as here). Its words: [2] iChange,
 * a count of commits; byte 12 isInit; [4] mxFrame, the last
 * frame; [6..7] that frame's checksum; [8..9] the WAL's salts, new each
 * time the WAL starts over. SQLite unlinks the file when the last
 * connection of every process closes; this process keeps its connections
 * while it serves, and a memo that trusts a mark lives a second at most.
 */
static const uint32_t *shm_map(struct store_db *db)
{
	const uint32_t *expected = NULL;
	size_t n = strlen(db->path);
	char *path = malloc(n + sizeof("-shm"));
	struct stat sb;
	void *p = MAP_FAILED;
	int fd = -1;

	if (path != NULL) {
		memcpy(path, db->path, n);
		memcpy(path + n, "-shm", sizeof("-shm"));
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		free(path);
	}
	if (fd >= 0 && fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size >= SHM_HDR_BYTES)
		p = mmap(NULL, SHM_HDR_BYTES, PROT_READ, MAP_SHARED, fd, 0);
	if (fd >= 0)
		close(fd);
	if (p == MAP_FAILED) {
		atomic_store(&db->shm_failed, true); /* no mark: every lookup runs */
		return NULL;
	}
	if (!atomic_compare_exchange_strong(&db->shm, &expected, p)) {
		munmap(p, SHM_HDR_BYTES); /* another thread mapped it first */
		return expected;
	}
	return p;
}

static bool sq_commit_mark(struct store_db *db, struct store_commit_mark *out)
{
	const uint32_t *h = atomic_load_explicit(&db->shm, memory_order_acquire);
	uint32_t a[SHM_HDR_WORDS], b[SHM_HDR_WORDS];

	if (h == NULL && (atomic_load(&db->shm_failed) || (h = shm_map(db)) == NULL))
		return false;
	for (int i = 0; i < SHM_HDR_WORDS; i++)
		a[i] = __atomic_load_n(&h[i], __ATOMIC_ACQUIRE);
	for (int i = 0; i < SHM_HDR_WORDS; i++)
		b[i] = __atomic_load_n(&h[SHM_HDR_WORDS + i], __ATOMIC_ACQUIRE);
	if (memcmp(a, b, sizeof(a)) != 0 || ((const unsigned char *)a)[12] == 0)
		return false; /* being rewritten, or not set up */
	out->w[0] = a[2] | (uint64_t)a[4] << 32;
	out->w[1] = a[8] | (uint64_t)a[9] << 32;
	out->w[2] = a[6] | (uint64_t)a[7] << 32;
	return true;
}

const struct store_backend store_sqlite_backend = {
	.name = "sqlite",
	.single_host = true,
	.open = sq_open,
	.close = sq_close,
	.ping = sq_ping,
	.migrate = sq_migrate,
	.local_path = sq_local_path,
	.commit_mark = sq_commit_mark,
	.read_begin = sq_read_begin,
	.read_end = sq_read_end,
	.write_begin = sq_write_begin,
	.write_end = sq_write_end,
	.write_run = sq_write_run,
	.user_add = sq_user_add,
	.user_get = sq_user_get,
	.user_uuid = sq_user_uuid,
	.user_set_password = sq_user_set_password,
	.user_set_active = sq_user_set_active,
	.user_touch_login = sq_user_touch_login,
	.user_delete = sq_user_delete,
	.user_count = sq_user_count,
	.user_list = sq_user_list,
	.team_add = sq_team_add,
	.team_get = sq_team_get,
	.team_list = sq_team_list,
	.member_set = sq_member_set,
	.member_remove = sq_member_remove,
	.member_is = sq_member_is,
	.session_add = sq_session_add,
	.session_state = sq_session_state,
	.session_ended = sq_session_ended,
	.sessions_end = sq_sessions_end,
	.session_ends_since = sq_session_ends_since,
	.refresh_add = sq_refresh_add,
	.refresh_state = sq_refresh_state,
	.refresh_row = sq_refresh_row,
	.refresh_use = sq_refresh_use,
	.refresh_live = sq_refresh_live,
	.api_count = sq_api_count,
	.api_add = sq_api_add,
	.api_version = sq_api_version,
	.api_list = sq_api_list,
	.api_by_digest = sq_api_by_digest,
	.api_delete = sq_api_delete,
	.api_delete_all = sq_api_delete_all,
	.api_live = sq_api_live,
	.purge = sq_purge,
	.key_in_use = sq_key_in_use,
};
