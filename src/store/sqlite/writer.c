/* SPDX-License-Identifier: MIT */
/*
 * This module implements the transactions of the SQLite backend: the one
 * writer connection of the process under write_lock (BEGIN IMMEDIATE, so
 * read-then-write work serialises: ../shared/PITFALLS.md, a deferred BEGIN
 * fails at once with SQLITE_BUSY_SNAPSHOT), the checkpointer thread beside
 * it, the threads' read snapshots, and the readiness probe.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <sys/stat.h>

#include "store/sqlite/sqlite.h"
#include "tokend/err.h"
#include "tokend/log.h"
#include "tokend/metrics.h"

static const char *const stmt_sql[S_COUNT] = {
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_READ_BEGIN] = "BEGIN",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
};

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
 *   them, and the WAL would grow without bound.) That pass syncs both
 *   files: 18-28 ms under a refresh load (a 5 s run at 16,000 frames held
 *   the lock 430 ms for it, and the next commits waited for the pages it
 *   had sent to the disk), so it is kept rare: at 48,000 frames refresh did
 *   12 % more than at 16,000 (docs/performance.md). Readers do not look up
 *   frames already copied, so a longer WAL does not slow them down.
 */
#define CKPT_FRAMES 1000          /* SQLite's own autocheckpoint size */
#define CKPT_RESTART_FRAMES 48000 /* 188 MiB of 4 KiB pages */

/* The writer's wal hook: remembers the WAL's size after each commit. */
static int wal_committed(void *arg, sqlite3 *db, const char *name, int frames)
{
	struct store_db *st = arg;

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
	struct store_db *st = arg;

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
static bool checkpointer_start(struct store_db *st)
{
	char err[256];

	if (st->ckpt_started)
		return true;
	if (st->checkpointer == NULL &&
	    store_db_conn_open(st, &st->checkpointer, false, err, sizeof(err)) != 0) {
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
static void checkpoint_due(struct store_db *st)
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
static int writer_open(struct store_db *st)
{
	char err[256];

	if (st->writer != NULL)
		return 0;
	if (store_db_conn_open(st, &st->writer, false, err, sizeof(err)) != 0) {
		log_error("store: %s", err);
		metrics_store_error();
		return TOKEND_EDB;
	}
	sqlite3_wal_hook(st->writer->db, wal_committed, st);
	return 0;
}

/* Takes write_lock and begins the writer's transaction (write_begin without
 * the caller's snapshot). */
static int begin_locked(struct store_db *st, struct store_tx **out)
{
	sqlite3_stmt *s;
	int rc;

	pthread_mutex_lock(&st->write_lock);
	if (writer_open(st) != 0) {
		pthread_mutex_unlock(&st->write_lock);
		return TOKEND_EDB;
	}
	s = STMT(st->writer, S_BEGIN);
	rc = s ? store_db_exec(st->writer, s, "begin") : TOKEND_EDB;
	if (rc != 0) {
		pthread_mutex_unlock(&st->write_lock);
		return rc;
	}
	st->tx.c = st->writer;
	st->writer->in_tx = true;
	*out = &st->tx;
	return 0;
}

int sq_write_begin(struct store_db *st, struct store_tx **out)
{
	/*
	 * A read snapshot this thread holds ends here: held while the thread
	 * waits for the lock and writes, it would keep the WAL from starting
	 * over (every writer would hold one), and the thread's lookups after
	 * its own write see that write.
	 */
	sq_read_end(st);
	return begin_locked(st, out);
}

int sq_write_end(struct store_tx *tx, int rc)
{
	struct conn *c = tx->c;
	sqlite3_stmt *s;

	if (rc == 0) {
		/* NULL too when SQLite rolled the transaction back itself (store_db_stmt) */
		s = STMT(c, S_COMMIT);
		rc = s ? store_db_exec(c, s, "commit") : TOKEND_EDB;
		if (rc == 0)
			metrics_store_commit();
	}
	if (rc != 0 && !sqlite3_get_autocommit(c->db)) {
		s = STMT(c, S_ROLLBACK);
		if (s != NULL)
			(void)store_db_exec(c, s, "rollback");
	}
	c->in_tx = false;
	tx->c = NULL;
	checkpoint_due(c->owner);
	pthread_mutex_unlock(&c->owner->write_lock);
	return rc;
}

/*
 * Writers that queue (sq_write_run). The first writer to find no leader
 * takes the lead and runs the queued writes, up to BATCH_MAX in one
 * transaction, so that they share its BEGIN, its COMMIT and the WAL frames
 * of the pages they both touch; each waiting thread is woken after the
 * COMMIT that holds its write. When a write of a batch fails (or the
 * COMMIT does), the batch is rolled back and each of its writes runs
 * again in a transaction of its own, for its own answer: a body may run
 * twice. A leader runs LEAD_MAX writes at most, then hands the lead to the
 * next queued thread, so that its own caller does not wait behind an
 * unbounded queue. Under a refresh load the machine's CPU, not the lock,
 * is the limit (docs/performance.md): batches of 1.1 writes at four HTTP
 * threads bought refresh 10 %, of 2.8 at sixteen 20 %; running the queue
 * without sharing transactions bought nothing.
 */
#define LEAD_MAX 16 /* jobs a leader runs before it hands the lead on */
#define BATCH_MAX 8 /* jobs in one transaction */

struct store_job {
	int (*body)(struct store_tx *tx, void *arg);
	void *arg;
	int rc;
	bool done;
	bool lead; /* handed the lead */
	pthread_cond_t cond;
	struct store_job *next;
};

/* body in a transaction of its own. */
static int run_alone(struct store_db *st, int (*body)(struct store_tx *tx, void *arg), void *arg)
{
	struct store_tx *tx;
	int rc = begin_locked(st, &tx);

	return rc != 0 ? rc : sq_write_end(tx, body(tx, arg));
}

/*
 * Runs b[0..k) in one transaction, in order: each body sees the writes of
 * those before it, as it would have in transactions of their own. When
 * one fails, or the COMMIT does, nothing of them is written, and each runs
 * again alone for its own answer.
 */
static void run_batch(struct store_db *st, struct store_job **b, int k)
{
	struct store_tx *tx;
	int rc;

	if (k == 1) {
		b[0]->rc = run_alone(st, b[0]->body, b[0]->arg);
		return;
	}
	rc = begin_locked(st, &tx);
	if (rc == 0) {
		for (int i = 0; i < k && rc == 0; i++)
			rc = b[i]->body(tx, b[i]->arg);
		rc = sq_write_end(tx, rc);
	}
	for (int i = 0; i < k; i++)
		b[i]->rc = rc == 0 ? 0 : run_alone(st, b[i]->body, b[i]->arg);
}

/* The lead (jobs_lock held, released while jobs run): runs the queue. */
static void lead(struct store_db *st)
{
	for (int n = 0; st->jobs_head != NULL;) {
		struct store_job *b[BATCH_MAX];
		int k = 0;

		if (n >= LEAD_MAX) {
			st->jobs_head->lead = true; /* lead_taken stays: it passes on */
			pthread_cond_signal(&st->jobs_head->cond);
			return;
		}
		for (; k < BATCH_MAX && st->jobs_head != NULL; k++) {
			b[k] = st->jobs_head;
			st->jobs_head = b[k]->next;
		}
		if (st->jobs_head == NULL)
			st->jobs_tail = NULL;
		n += k;
		pthread_mutex_unlock(&st->jobs_lock);
		run_batch(st, b, k);
		pthread_mutex_lock(&st->jobs_lock);
		for (int i = 0; i < k; i++) {
			b[i]->done = true;
			pthread_cond_signal(&b[i]->cond);
		}
	}
	st->lead_taken = false;
}

int sq_write_run(struct store_db *st, int (*body)(struct store_tx *tx, void *arg), void *arg)
{
	struct store_job job = {.body = body, .arg = arg};

	sq_read_end(st); /* as write_begin */
	if (pthread_cond_init(&job.cond, NULL) != 0)
		return run_alone(st, body, arg);
	pthread_mutex_lock(&st->jobs_lock);
	if (st->jobs_tail != NULL)
		st->jobs_tail->next = &job;
	else
		st->jobs_head = &job;
	st->jobs_tail = &job;
	if (!st->lead_taken)
		st->lead_taken = job.lead = true;
	while (!job.done && !job.lead)
		pthread_cond_wait(&job.cond, &st->jobs_lock);
	if (!job.done)
		lead(st); /* runs this job first: with no leader, it heads the queue */
	pthread_mutex_unlock(&st->jobs_lock);
	pthread_cond_destroy(&job.cond);
	return job.rc;
}

int sq_read_begin(struct store_db *st)
{
	struct conn *c = store_db_conn(st);
	sqlite3_stmt *s = c ? STMT(c, S_READ_BEGIN) : NULL;

	return s ? store_db_exec(c, s, "read begin") : TOKEND_EDB;
}

void sq_read_end(struct store_db *st)
{
	/* Not store_db_conn(): a thread without a connection has no snapshot. */
	struct conn *c = pthread_getspecific(st->key);
	sqlite3_stmt *s;

	if (c == NULL || sqlite3_get_autocommit(c->db))
		return;
	s = STMT(c, S_COMMIT);
	if (s == NULL || store_db_exec(c, s, "read end") != 0) {
		s = STMT(c, S_ROLLBACK);
		if (s != NULL)
			(void)store_db_exec(c, s, "read rollback");
	}
}

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

int sq_ping(struct store_db *st, long timeout_ms)
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
