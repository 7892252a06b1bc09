/* SPDX-License-Identifier: MIT */
/*
 * The torture harness of test_torture.c (header-only, as each suite is its
 * own executable): an operation is a setup, a run made with the N-th
 * allocation failing (faultinject.h), a check of its outcome and a
 * teardown; torture() runs it for N = 1, 2, ... until a run completes
 * without reaching the failure, and checks that no block was leaked. Also
 * the helpers the store operations share: a dump of every table of a
 * database, removing and copying database files.
 */
#ifndef TOKEND_TESTS_TORTURE_H
#define TOKEND_TESTS_TORTURE_H

#include <check.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "faultinject.h"
#include "tokend/util.h"

#define TORTURE_FULL 1000
#define TORTURE_RUNS 1500

struct torture {
	const char *name;
	bool own_thread;                 /* run each time on a new thread (per-thread state) */
	bool recheck;                    /* after each failed run, a clean one on the same
					* objects passes check(rc, false): not poisoned */
	void (*setup)(void);             /* not armed: the state one run starts from */
	int (*run)(void);                /* armed */
	void (*check)(int rc, bool hit); /* not armed: the outcome is clean */
	void (*teardown)(void);          /* not armed: frees what setup and run made */
};

static char base[64];                            /* the suite's scratch directory */
static volatile const char *cur_name = "";       /* the operation running */
static volatile long cur_n;                      /* the allocation that fails in this run */
static int saved_stderr = -1, saved_stdout = -1; /* while quiet() */

/* On a crash, says which operation and which failed allocation. */
static void on_crash(int sig)
{
	char msg[160];
	int len = snprintf(msg, sizeof msg, "torture: %s: signal %d with allocation %ld failed\n",
			   cur_name, sig, cur_n);
	if (len > 0)
		(void)!write(saved_stderr >= 0 ? saved_stderr : 2, msg, (size_t)len);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void nothing(void)
{
}

/* Sends stderr (the log's error lines, one per failed run) and stdout to /dev/null. */
static void quiet(bool on)
{
	if (getenv("FI_TRACE") != NULL)
		return;
	if (on) {
		int devnull = open("/dev/null", O_WRONLY);
		if (devnull < 0)
			abort();
		fflush(stdout);
		saved_stderr = dup(2);
		saved_stdout = dup(1);
		dup2(devnull, 2);
		dup2(devnull, 1);
		close(devnull);
	} else {
		fflush(stdout);
		dup2(saved_stderr, 2);
		dup2(saved_stdout, 1);
		close(saved_stderr);
		close(saved_stdout);
		saved_stderr = saved_stdout = -1;
	}
}

struct armed_run {
	const struct torture *t;
	long n, count;
	bool hit;
	int rc;
};

static void *armed_main(void *arg)
{
	struct armed_run *r = arg;

	fi_arm(r->n);
	r->rc = r->t->run();
	r->count = fi_disarm();
	r->hit = fi_hit();
	return NULL;
}

/* Runs t with the n-th allocation failing; *count gets how many were made. */
static int armed(const struct torture *t, long n, long *count, bool *hit)
{
	struct armed_run r = {t, n, 0, false, 0};
	pthread_t th;

	quiet(true);
	if (t->own_thread) {
		ck_assert_int_eq(pthread_create(&th, NULL, armed_main, &r), 0);
		ck_assert_int_eq(pthread_join(th, NULL), 0);
	} else {
		armed_main(&r);
	}
	quiet(false);
	*count = r.count;
	*hit = r.hit;
	return r.rc;
}

static void torture(const struct torture *t)
{
	bool all = getenv("TORTURE_ALL") != NULL;
	const char *only = getenv("TORTURE_ONLY");
	long total, base_blocks, runs = 0, step, n, count, cached = 0, first_cached = 0;
	bool hit;
	int rc;

	if (only != NULL && strstr(t->name, only) == NULL)
		return;
	cur_name = t->name;
	signal(SIGSEGV, on_crash);
	signal(SIGBUS, on_crash);
	signal(SIGABRT, on_crash);
	/* Once clean: one-time initialisation (OpenSSL, SQLite, tz) happens here. */
	t->setup();
	rc = armed(t, 0, &total, &hit);
	ck_assert_msg(rc == 0, "%s: fails without injection: %d", t->name, rc);
	t->check(rc, false);
	t->teardown();
	ERR_clear_error();
	base_blocks = fi_outstanding();
	step = total <= TORTURE_FULL || all
		       ? 1
		       : (total - TORTURE_FULL) / (TORTURE_RUNS - TORTURE_FULL) + 1;
	for (n = 1;; n += n < TORTURE_FULL ? 1 : step) {
		long left;
		cur_n = n;
		t->setup();
		rc = armed(t, n, &count, &hit);
		if (getenv("TORTURE_DEBUG"))
			fprintf(stderr, "%s: n=%ld: %ld allocations, rc %d\n", t->name, n, count,
				rc);
		ck_assert_msg(hit || rc == 0, "%s: allocation %ld: fails without injection: %d",
			      t->name, n, rc);
		t->check(rc, hit);
		if (t->recheck && hit) {
			long clean_count;
			bool clean_hit;
			int clean_rc = armed(t, 0, &clean_count, &clean_hit);
			t->check(clean_rc, false);
		}
		t->teardown();
		ERR_clear_error();
		left = fi_outstanding() - base_blocks;
		if (left > 0) {
			fi_live_report();
			/*
			 * A library may fill a cache once instead of at the clean
			 * run (OpenSSL's decoder and method stores do): a leak is
			 * what grows again when the same failure is repeated.
			 */
			long again = fi_outstanding();
			t->setup();
			rc = armed(t, n, &count, &hit);
			t->check(rc, hit);
			t->teardown();
			ERR_clear_error();
			again = fi_outstanding() - again;
			ck_assert_msg(again <= 0,
				      "%s: allocation %ld failed: %ld blocks leaked (rc %d), "
				      "%ld again when repeated",
				      t->name, n, left, rc, again);
			if (cached == 0)
				first_cached = n;
			cached += left;
			base_blocks = fi_outstanding();
		}
		runs++;
		if (!hit)
			break;
	}
	fprintf(stderr, "torture: %s: %ld allocations in the first run, %ld runs", t->name, total,
		runs);
	if (cached > 0)
		fprintf(stderr, " (%ld blocks kept once by a library, first at %ld)", cached,
			first_cached);
	fprintf(stderr, "\n");
	cur_name = "";
}

static char *db_dump(const char *path, bool schema_only)
{
	struct util_buf b = {0};
	sqlite3 *db = NULL;
	sqlite3_stmt *tables = NULL;

	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db,
					    "SELECT name, coalesce(sql, '') FROM sqlite_master "
					    "UNION ALL SELECT 'user_version', user_version FROM "
					    "pragma_user_version ORDER BY 1",
					    -1, &tables, NULL),
			 SQLITE_OK);
	while (sqlite3_step(tables) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(tables, 0);
		const char *sql = (const char *)sqlite3_column_text(tables, 1);
		char q[256];
		sqlite3_stmt *rows = NULL;
		util_buf_puts(&b, name);
		util_buf_puts(&b, ": ");
		util_buf_puts(&b, sql);
		util_buf_puts(&b, "\n");
		if (schema_only || strncmp(sql, "CREATE TABLE", 12) != 0)
			continue;
		snprintf(q, sizeof q, "SELECT * FROM \"%s\"", name);
		ck_assert_int_eq(sqlite3_prepare_v2(db, q, -1, &rows, NULL), SQLITE_OK);
		while (sqlite3_step(rows) == SQLITE_ROW) {
			for (int i = 0; i < sqlite3_column_count(rows); i++) {
				const unsigned char *v = sqlite3_column_text(rows, i);
				util_buf_puts(&b, v ? (const char *)v : "NULL");
				util_buf_puts(&b, "|");
			}
			util_buf_puts(&b, "\n");
		}
		sqlite3_finalize(rows);
	}
	sqlite3_finalize(tables);
	sqlite3_close(db);
	ck_assert(!b.failed);
	return b.p;
}

static void rm_db(const char *path)
{
	static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
	char p[200];

	for (size_t i = 0; i < 4; i++) {
		snprintf(p, sizeof p, "%s%s", path, sfx[i]);
		unlink(p);
	}
}

static void copy_file(const char *from, const char *to)
{
	char buf[8192];
	int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ssize_t n;

	ck_assert(in >= 0 && out >= 0);
	while ((n = read(in, buf, sizeof buf)) > 0)
		ck_assert(write(out, buf, (size_t)n) == n);
	close(in);
	close(out);
}

#endif
