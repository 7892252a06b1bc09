/* SPDX-License-Identifier: MIT */
/*
 * This suite tests src/store/session_cache.c and the session-end check of
 * include/tokend/store.h built on it (store_session_ended,
 * store_sessions_watch, sql/sqlite/005_session_ends.sql). Properties proven:
 * - session_id_parse takes the canonical lower-case uuid only;
 * - the set finds every id added (across growth) and no other, keeps the
 *   later end of an id, and a prune drops exactly the ends before its bound;
 * - two opens of one database path share the counter (file mode 0600), and
 *   so does a path through a symbolic link;
 *   ":memory:" and an unusable counter path (a directory) get a private one;
 * - without the cache an unknown, ended or non-uuid sid is ended and a live
 *   one is not;
 * - with the cache, an end committed through another store on the same file
 *   (logout, user delete, disable, passwd) is seen at once, with no reload
 *   window; an end written by another tool (no bump) within the 1 s reload;
 * - SQLite fires the sessions delete trigger on ON DELETE CASCADE (a user
 *   delete leaves one session_ends row per live session), and an external
 *   `UPDATE users SET is_active = 0` ends the user's sessions;
 * - tokend's own disable keeps its revoked_at (the trigger finds none live);
 * - store_purge drops session ends a day older than its bound, not newer.
 */
#include <check.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "store/session_cache.h"
#include "tokend/err.h"
#include "tokend/store.h"
#include "tokend/util.h"
#include "unit.h"
#include "unit_sqlite.h"

#define HASH \
	"pbkdf2_sha256$1000$saltsaltsaltsaltsaltsa$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y="
#define HASH2 \
	"pbkdf2_sha256$1000$othersaltothersaltoth$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y="

static char base[64];
static char tmpdir[128];
static char dbpath[192];
static struct store *st;  /* the server's: watches */
static struct store *cli; /* another process's view: writes */
static char alice[UUID_STR_LEN], bob[UUID_STR_LEN];

static void setup(void)
{
	char err[256] = "";

	snprintf(tmpdir, sizeof tmpdir, "%s/XXXXXX", base);
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(dbpath, sizeof dbpath, "%s/t.db", tmpdir);
	st = cli = NULL;
	ck_assert_msg(store_open(dbpath, 5000, &cli, err, sizeof err) == 0, "open: %s", err);
	ck_assert_msg(store_migrate(cli, NULL, NULL, err, sizeof err) == 0, "migrate: %s", err);
	ck_assert_msg(store_open(dbpath, 5000, &st, err, sizeof err) == 0, "open: %s", err);
	ck_assert_int_eq(store_user_add(cli, "alice", HASH, alice), 0);
	ck_assert_int_eq(store_user_add(cli, "bob", HASH, bob), 0);
}

static void teardown(void)
{
	store_close(&st);
	store_close(&cli);
	rm_rf(tmpdir);
}

static void id_of(const char *sid, unsigned char id[SESSION_ID_LEN])
{
	ck_assert_msg(session_id_parse(sid, id), "parse %s", sid);
}

static void random_id(unsigned char id[SESSION_ID_LEN], char sid[UUID_STR_LEN])
{
	ck_assert_int_eq(util_uuid_new(sid), 0);
	id_of(sid, id);
}

START_TEST(id_parse_takes_canonical_uuids_only)
{
	unsigned char id[SESSION_ID_LEN];
	static const unsigned char want[SESSION_ID_LEN] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
							   0xcd, 0xef, 0x01, 0x23, 0x45, 0x67,
							   0x89, 0xab, 0xcd, 0xef};

	ck_assert(session_id_parse("01234567-89ab-cdef-0123-456789abcdef", id));
	ck_assert_mem_eq(id, want, SESSION_ID_LEN);
	ck_assert(!session_id_parse("01234567-89AB-cdef-0123-456789abcdef", id));
	ck_assert(!session_id_parse("01234567-89ab-cdef-0123-456789abcde", id));
	ck_assert(!session_id_parse("01234567-89ab-cdef-0123-456789abcdef0", id));
	ck_assert(!session_id_parse("0123456789ab-cdef-0123-456789abcdef-", id));
	ck_assert(!session_id_parse("01234567-89ab-cdef-0123-456789abcdeg", id));
	ck_assert(!session_id_parse("", id));
	ck_assert(!session_id_parse("fam1", id));
}
END_TEST

START_TEST(set_add_has_prune)
{
	struct session_set *set = session_set_new();
	static struct session_end ends[3000];
	unsigned char other[SESSION_ID_LEN];
	char sid[UUID_STR_LEN];

	ck_assert_ptr_nonnull(set);
	for (int i = 0; i < 3000; i++) {
		random_id(ends[i].id, sid);
		ends[i].ended_at = 1000 + i;
	}
	ck_assert_int_eq(session_set_add(set, ends, 1000), 0);
	ck_assert_int_eq(session_set_add(set, ends + 1000, 2000), 0); /* grows */
	ck_assert_uint_eq(session_set_count(set), 3000);
	for (int i = 0; i < 3000; i++)
		ck_assert(session_set_has(set, ends[i].id));
	for (int i = 0; i < 100; i++) {
		random_id(other, sid);
		ck_assert(!session_set_has(set, other));
	}
	/* An id added again keeps the later end, and counts once. */
	ends[0].ended_at = 5000;
	ck_assert_int_eq(session_set_add(set, ends, 1), 0);
	ck_assert_uint_eq(session_set_count(set), 3000);
	/* Before 3000: ends[0] (5000) and ends[2000..2999] (3000..3999) stay. */
	ck_assert_uint_eq(session_set_prune(set, 3000), 1001);
	ck_assert(session_set_has(set, ends[0].id));
	for (int i = 1; i < 2000; i++)
		ck_assert(!session_set_has(set, ends[i].id));
	for (int i = 2000; i < 3000; i++)
		ck_assert(session_set_has(set, ends[i].id));
	ck_assert_uint_eq(session_set_prune(set, 1 << 30), 0);
	ck_assert(!session_set_has(set, ends[0].id));
	session_set_free(&set);
	ck_assert_ptr_null(set);
	session_set_free(&set);
}
END_TEST

START_TEST(counter_shared_by_path)
{
	char p[256], dir[256];
	struct session_counter *a, *b, *m;
	struct stat sb;

	snprintf(p, sizeof p, "%s/c.db", tmpdir);
	a = session_counter_open(p);
	b = session_counter_open(p);
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert(session_counter_shared(a) && session_counter_shared(b));
	snprintf(p, sizeof p, "%s/c.db-ends", tmpdir);
	ck_assert_int_eq(stat(p, &sb), 0);
	ck_assert_int_eq(sb.st_mode & 0777, 0600);
	uint64_t v = session_counter_get(b);
	session_counter_bump(a);
	ck_assert_uint_eq(session_counter_get(b), v + 1);
	session_counter_bump(b);
	ck_assert_uint_eq(session_counter_get(a), v + 2);
	session_counter_close(&b);
	/* Reopened: the count lives in the file. */
	snprintf(p, sizeof p, "%s/c.db", tmpdir);
	b = session_counter_open(p);
	ck_assert_uint_eq(session_counter_get(b), v + 2);
	session_counter_close(&a);
	session_counter_close(&b);
	ck_assert_ptr_null(a);

	/* Through a symbolic link to the database: the same counter. */
	snprintf(p, sizeof p, "%s/c.db", tmpdir);
	ck_assert_int_eq(close(open(p, O_CREAT | O_WRONLY, 0600)), 0);
	snprintf(dir, sizeof dir, "%s/link.db", tmpdir);
	ck_assert_int_eq(symlink(p, dir), 0);
	a = session_counter_open(p);
	b = session_counter_open(dir);
	session_counter_bump(b);
	ck_assert_uint_eq(session_counter_get(a), v + 3);
	session_counter_close(&a);
	session_counter_close(&b);

	m = session_counter_open(":memory:");
	ck_assert_ptr_nonnull(m);
	ck_assert(!session_counter_shared(m));
	session_counter_bump(m);
	ck_assert_uint_eq(session_counter_get(m), 1);
	session_counter_close(&m);

	/* A directory where the file would be: private, and still counts. */
	snprintf(dir, sizeof dir, "%s/d.db-ends", tmpdir);
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	snprintf(p, sizeof p, "%s/d.db", tmpdir);
	m = session_counter_open(p);
	ck_assert_ptr_nonnull(m);
	ck_assert(!session_counter_shared(m));
	session_counter_bump(m);
	ck_assert_uint_eq(session_counter_get(m), 1);
	session_counter_close(&m);
}
END_TEST

/* A login of user now through store s: r->family names the session. */
static void login(struct store *s, struct store_refresh *r, const char *user)
{
	memset(r, 0, sizeof *r);
	ck_assert_int_eq(util_uuid_new(r->jti), 0);
	ck_assert_int_eq(util_uuid_new(r->access_jti), 0);
	memcpy(r->family, r->jti, UUID_STR_LEN);
	snprintf(r->user_uuid, sizeof r->user_uuid, "%s", user);
	snprintf(r->kid, sizeof r->kid, "k1");
	r->issued_at = util_now();
	r->expires_at = r->issued_at + 3600;
	ck_assert_int_eq(store_login_record(s, r), 0);
}

static bool ended(struct store *s, const char *sid)
{
	bool e = false;

	ck_assert_int_eq(store_session_ended(s, sid, &e), 0);
	return e;
}

/* Runs sql on the file as another tool would (no counter bump). */
static void external(const char *sql)
{
	sqlite3 *db = NULL;
	char *msg = NULL;

	ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	ck_assert_msg(sqlite3_exec(db, "PRAGMA foreign_keys = ON;", NULL, NULL, &msg) == SQLITE_OK,
		      "%s", msg ? msg : "");
	ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK, "%s: %s", sql,
		      msg ? msg : "");
	sqlite3_close(db);
}

static long count(const char *sql)
{
	return unit_sql_count(dbpath, sql);
}

static long ends_of(const char *sid)
{
	char sql[160];

	snprintf(sql, sizeof sql, "SELECT count(*) FROM session_ends WHERE sid = '%s'", sid);
	return count(sql);
}

/* Polls store_session_ended (the reload is every second) for at most 60 s,
 * which only bounds a hang: a loaded machine under ASan may take its time. */
static bool ended_soon(struct store *s, const char *sid)
{
	struct timespec pause = {0, 20 * 1000 * 1000};

	for (int i = 0; i < 3000; i++) {
		if (ended(s, sid))
			return true;
		nanosleep(&pause, NULL);
	}
	return false;
}

START_TEST(uncached_lookup_fails_closed)
{
	struct store_refresh r;
	bool e = false;

	login(cli, &r, alice);
	ck_assert(!ended(cli, r.family));
	ck_assert(ended(cli, "00000000-0000-4000-8000-000000000000")); /* no row */
	ck_assert(ended(cli, "not-a-uuid"));
	ck_assert_int_eq(store_session_end(cli, r.family, alice, util_now(), &e), 0);
	ck_assert(e);
	ck_assert(ended(cli, r.family));
	ck_assert_int_eq(ends_of(r.family), 1);
}
END_TEST

START_TEST(cached_sees_other_stores_ends_at_once)
{
	struct store_refresh a1, a2, b1, b2, b3;
	bool e = false;
	long n = 0;

	login(cli, &a1, alice);
	login(cli, &a2, alice);
	login(cli, &b1, bob);
	ck_assert_int_eq(store_sessions_watch(st, 600), 0);
	ck_assert(!ended(st, a1.family) && !ended(st, a2.family) && !ended(st, b1.family));
	/* Each end below is checked at once: the counter, not the 1 s reload. */
	ck_assert_int_eq(store_session_end(cli, a1.family, alice, util_now(), &e), 0);
	ck_assert(ended(st, a1.family));
	ck_assert(!ended(st, a2.family));
	ck_assert_int_eq(store_user_change_password(cli, alice, HASH2, util_now()), 0);
	ck_assert(ended(st, a2.family));
	ck_assert(!ended(st, b1.family));
	ck_assert_int_eq(store_user_disable(cli, "bob", util_now(), false), 0);
	ck_assert(ended(st, b1.family));
	ck_assert_int_eq(store_user_set_active(cli, "bob", true), 0);
	login(cli, &b2, bob);
	login(cli, &b3, bob);
	ck_assert_int_eq(store_user_sessions_end(cli, bob, util_now(), &n), 0);
	ck_assert_int_eq(n, 2);
	ck_assert(ended(st, b2.family) && ended(st, b3.family));
	/* A session logged in after the watch began, then the user deleted. */
	login(cli, &a1, alice);
	ck_assert(!ended(st, a1.family));
	ck_assert_int_eq(store_user_delete(cli, "alice"), 0);
	ck_assert(ended(st, a1.family));
	/* Its own writes too. */
	ck_assert_int_eq(store_user_add(cli, "carol", HASH, alice), 0);
	login(st, &a2, alice);
	ck_assert(!ended(st, a2.family));
	ck_assert_int_eq(store_user_delete(st, "carol"), 0);
	ck_assert(ended(st, a2.family));
	/* Not a uuid: looked up (no such session: ended). */
	ck_assert(ended(st, "fam1"));
}
END_TEST

START_TEST(watch_loads_earlier_ends)
{
	struct store_refresh r;
	bool e = false;

	login(cli, &r, alice);
	ck_assert_int_eq(store_session_end(cli, r.family, alice, util_now(), &e), 0);
	ck_assert_int_eq(store_sessions_watch(st, 600), 0);
	ck_assert(ended(st, r.family));
}
END_TEST

START_TEST(cascade_and_external_writers_are_recorded)
{
	struct store_refresh a1, a2, b1;
	char sql[200];
	int64_t now = util_now() - 7;

	login(cli, &a1, alice);
	login(cli, &a2, alice);
	login(cli, &b1, bob);
	ck_assert_int_eq(store_sessions_watch(st, 600), 0);
	/* An external disable: the trigger ends the sessions; seen by the reload. */
	snprintf(sql, sizeof sql, "UPDATE users SET is_active = 0 WHERE uuid = '%s'", alice);
	external(sql);
	ck_assert_int_eq(ends_of(a1.family), 1);
	ck_assert_int_eq(ends_of(a2.family), 1);
	ck_assert(ended_soon(st, a1.family) && ended_soon(st, a2.family));
	ck_assert(!ended(st, b1.family));
	/* An external delete: ON DELETE CASCADE fires the sessions trigger. */
	snprintf(sql, sizeof sql, "DELETE FROM users WHERE uuid = '%s'", bob);
	external(sql);
	ck_assert_int_eq(count("SELECT count(*) FROM sessions"), 2);
	ck_assert_int_eq(ends_of(b1.family), 1);
	ck_assert(ended_soon(st, b1.family));
	/* An ended session deleted later is not recorded twice. */
	snprintf(sql, sizeof sql, "DELETE FROM users WHERE uuid = '%s'", alice);
	external(sql);
	ck_assert_int_eq(ends_of(a1.family), 1);

	/* tokend's disable keeps its own revoked_at: the trigger finds none live. */
	ck_assert_int_eq(store_user_add(cli, "dave", HASH, alice), 0);
	login(cli, &a1, alice);
	ck_assert_int_eq(store_user_disable(cli, "dave", now, false), 0);
	snprintf(sql, sizeof sql, "SELECT revoked_at FROM sessions WHERE id = '%s'", a1.family);
	ck_assert_int_eq(count(sql), now);
	snprintf(sql, sizeof sql, "SELECT ended_at FROM session_ends WHERE sid = '%s'", a1.family);
	ck_assert_int_eq(count(sql), now);
	ck_assert(ended(st, a1.family));
}
END_TEST

START_TEST(purge_drops_old_ends)
{
	int64_t now = util_now();
	char sql[300];
	long n = -1;

	snprintf(sql, sizeof sql,
		 "INSERT INTO session_ends (sid, ended_at) VALUES ('old', %lld), ('kept', %lld)",
		 (long long)(now - STORE_SESSION_ENDS_KEEP - 10),
		 (long long)(now - STORE_SESSION_ENDS_KEEP + 10));
	external(sql);
	ck_assert_int_eq(store_purge(cli, now, 1000, &n), 0);
	ck_assert_int_eq(n, 0); /* not counted */
	ck_assert_int_eq(ends_of("old"), 0);
	ck_assert_int_eq(ends_of("kept"), 1);
	/* seq is never handed out again (AUTOINCREMENT). */
	ck_assert_int_eq(count("SELECT seq FROM sqlite_sequence WHERE name = 'session_ends'"), 2);
}
END_TEST

static Suite *session_cache_suite(void)
{
	Suite *s = suite_create("session_cache");
	TCase *tc = tcase_create("session_cache");

	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, id_parse_takes_canonical_uuids_only);
	tcase_add_test(tc, set_add_has_prune);
	tcase_add_test(tc, counter_shared_by_path);
	tcase_add_test(tc, uncached_lookup_fails_closed);
	tcase_add_test(tc, cached_sees_other_stores_ends_at_once);
	tcase_add_test(tc, watch_loads_earlier_ends);
	tcase_add_test(tc, cascade_and_external_writers_are_recorded);
	tcase_add_test(tc, purge_drops_old_ends);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return UNIT_MAIN(session_cache_suite(), "session-cache", base, NULL);
}
