/* SPDX-License-Identifier: MIT */
/*
 * This suite tests migration 006 on a temporary SQLite file: the count of
 * API-token rows each (user, team) keeps in api_token_versions.tokens,
 * which the cap check reads instead of walking the live rows. Properties
 * proven, each by comparing every pair's count with a count(*) of its rows
 * behind the store's back:
 * - issue, delete, purge, leaving a team, a disable that deletes tokens,
 *   a user's deletion and a team's (ON DELETE CASCADE, which fires the
 *   DELETE trigger in SQLite), and hand-written UPDATEs that move a row to
 *   another pair or leave it, keep every count exact;
 * - a database at version 5 with tokens migrates to 6 with the counts of
 *   the rows it holds, also for a pair that has no version row (tokens from
 *   before 003), and issues under the cap afterwards.
 */
#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "store/migrations.h"
#include "tokend/err.h"
#include "tokend/store.h"
#include "tokend/util.h"
#include "unit.h"
#include "unit_sqlite.h"

#define HASH \
	"pbkdf2_sha256$1000$saltsaltsaltsaltsaltsa$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y="
#define NOW 1700000000
#define LIFE 3600

static char base[64];
static char tmpdir[128];
static char dbpath[192];
static struct store *st;

/* Pairs whose count differs from their rows, and rows without a count. */
#define WRONG_COUNTS                                                            \
	"SELECT (SELECT count(*) FROM api_token_versions v WHERE tokens <> "    \
	"(SELECT count(*) FROM api_tokens a WHERE a.user_uuid = v.user_uuid "   \
	"AND a.team_uuid = v.team_uuid)) + (SELECT count(*) FROM api_tokens a " \
	"WHERE NOT EXISTS (SELECT 1 FROM api_token_versions v "                 \
	"WHERE v.user_uuid = a.user_uuid AND v.team_uuid = a.team_uuid))"

static void exact(void)
{
	ck_assert_int_eq(unit_sql_count(dbpath, WRONG_COUNTS), 0);
}

static long rows_counted(const char *user, const char *team)
{
	char sql[256];

	snprintf(sql, sizeof sql,
		 "SELECT tokens FROM api_token_versions WHERE user_uuid = '%s' "
		 "AND team_uuid = '%s'",
		 user, team);
	return unit_sql_count(dbpath, sql);
}

static void sql_run(const char *sql)
{
	sqlite3 *db = NULL;
	char *err = NULL;

	ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	ck_assert_int_eq(sqlite3_exec(db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL), SQLITE_OK);
	ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, &err) == SQLITE_OK, "%s: %s", sql,
		      err ? err : "");
	sqlite3_close(db);
}

static void open_store(void)
{
	char err[256] = "";

	st = NULL;
	ck_assert_msg(store_open(dbpath, 5000, &st, err, sizeof err) == 0, "open: %s", err);
	ck_assert_msg(store_migrate(st, NULL, NULL, err, sizeof err) == 0, "migrate: %s", err);
}

static void setup(void)
{
	snprintf(tmpdir, sizeof tmpdir, "%s/XXXXXX", base);
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(dbpath, sizeof dbpath, "%s/c.db", tmpdir);
}

static void teardown(void)
{
	static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
	char p[256];

	store_close(&st);
	for (size_t i = 0; i < 4; i++) {
		snprintf(p, sizeof p, "%s%s", dbpath, sfx[i]);
		unlink(p);
	}
	rmdir(tmpdir);
}

/* Issues a token of user in team at now, expiring at exp, under cap. */
static int issue(const char *user, const char *team, int64_t now, int64_t exp, long cap,
		 struct store_api_token *t)
{
	char token[64];

	memset(t, 0, sizeof(*t));
	ck_assert_int_eq(util_uuid_new(t->jti), 0);
	snprintf(t->user_uuid, sizeof t->user_uuid, "%s", user);
	snprintf(t->team_uuid, sizeof t->team_uuid, "%s", team);
	snprintf(t->kid, sizeof t->kid, "0123456789abcdef");
	t->issued_at = t->updated_at = now;
	t->expires_at = exp;
	snprintf(token, sizeof token, "tok-%s", t->jti);
	return store_api_token_add(st, t, token, cap);
}

START_TEST(counts_follow_every_delete)
{
	char alice[UUID_STR_LEN], bob[UUID_STR_LEN], red[UUID_STR_LEN], blue[UUID_STR_LEN];
	struct store_api_token t, last;
	const char *jtis[1];
	char sql[512];
	long n = 0;

	open_store();
	ck_assert_int_eq(store_user_add(st, "alice", HASH, alice), 0);
	ck_assert_int_eq(store_user_add(st, "bob", HASH, bob), 0);
	ck_assert_int_eq(store_team_add(st, "Red", red), 0);
	ck_assert_int_eq(store_team_add(st, "Blue", blue), 0);
	ck_assert_int_eq(store_team_add_member(st, "Red", "alice", "member"), 0);
	ck_assert_int_eq(store_team_add_member(st, "Blue", "alice", "member"), 0);
	ck_assert_int_eq(store_team_add_member(st, "Red", "bob", "member"), 0);
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(issue(alice, red, NOW, i < 2 ? NOW + 10 : NOW + LIFE, 4, &last),
				 0);
		ck_assert_int_eq(issue(alice, blue, NOW, NOW + LIFE, 4, &t), 0);
		ck_assert_int_eq(issue(bob, red, NOW, NOW + LIFE, 4, &t), 0);
	}
	ck_assert_int_eq(issue(alice, red, NOW, NOW + LIFE, 4, &t), TOKEND_ECONFLICT);
	ck_assert_int_eq(rows_counted(alice, red), 4);
	exact();
	/* Two have expired: two places, though the four rows are still there. */
	ck_assert_int_eq(issue(alice, red, NOW + 10, NOW + LIFE, 4, &t), 0);
	ck_assert_int_eq(issue(alice, red, NOW + 10, NOW + LIFE, 4, &t), 0);
	ck_assert_int_eq(issue(alice, red, NOW + 10, NOW + LIFE, 4, &t), TOKEND_ECONFLICT);
	ck_assert_int_eq(rows_counted(alice, red), 6);
	exact();
	ck_assert_int_eq(store_purge(st, NOW + 10, 10000, &n), 0);
	ck_assert_int_eq(n, 2);
	ck_assert_int_eq(rows_counted(alice, red), 4);
	exact();
	jtis[0] = last.jti;
	ck_assert_int_eq(store_api_token_delete(st, alice, red, NOW + 10, jtis, 1, &n), 0);
	ck_assert_int_eq(rows_counted(alice, red), 3);
	exact();
	/* Hand-written UPDATEs: one row moves to Blue, one stays put. */
	snprintf(sql, sizeof sql,
		 "UPDATE api_tokens SET team_uuid = '%s' WHERE jti = (SELECT jti FROM "
		 "api_tokens WHERE user_uuid = '%s' AND team_uuid = '%s' LIMIT 1);"
		 "UPDATE api_tokens SET name = 'x' WHERE user_uuid = '%s'",
		 blue, alice, red, alice);
	sql_run(sql);
	ck_assert_int_eq(rows_counted(alice, red), 2);
	ck_assert_int_eq(rows_counted(alice, blue), 5);
	exact();
	ck_assert_int_eq(store_team_remove_member(st, "Red", "alice"), 0);
	ck_assert_int_eq(rows_counted(alice, red), 0);
	exact();
	ck_assert_int_eq(store_user_disable(st, "alice", NOW + 10, true), 0);
	ck_assert_int_eq(rows_counted(alice, blue), 0);
	exact();
	ck_assert_int_eq(store_user_set_active(st, "alice", true), 0);
	ck_assert_int_eq(issue(alice, blue, NOW + 10, NOW + LIFE, 4, &t), 0);
	/* Cascades: the user's deletion, and a team's (no store call: SQL). */
	ck_assert_int_eq(store_user_delete(st, "bob"), 0);
	ck_assert_int_eq(rows_counted(bob, red), 0);
	exact();
	snprintf(sql, sizeof sql, "DELETE FROM teams WHERE uuid = '%s'", blue);
	sql_run(sql);
	ck_assert_int_eq(rows_counted(alice, blue), 0);
	ck_assert_int_eq(unit_sql_count(dbpath, "SELECT count(*) FROM api_tokens"), 0);
	exact();
}
END_TEST

/* A database at version 5 (migrations 001-005 applied as the store
 * applies them) with tokens of three pairs, one without a version row. */
static void make_v5(void)
{
	sqlite3 *db = NULL;
	char *err = NULL;
	static const char *const rows =
		"INSERT INTO users (uuid, username, password, created_at) VALUES "
		"('u1', 'alice', 'x', 1), ('u2', 'bob', 'x', 1);"
		"INSERT INTO teams (uuid, name, created_at) VALUES ('t1', 'Red', 1), "
		"('t2', 'Blue', 1);"
		"INSERT INTO team_members (team_uuid, user_uuid) VALUES ('t1', 'u1'), "
		"('t2', 'u1'), ('t1', 'u2');"
		"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 7) "
		"INSERT INTO api_tokens (jti, digest, user_uuid, team_uuid, kid, issued_at, "
		"updated_at, expires_at) SELECT 'a' || i, randomblob(32), 'u1', 't1', 'k', 1, 1, "
		"CASE WHEN i <= 2 THEN 5 ELSE 1800000000 END FROM n;"
		"INSERT INTO api_tokens (jti, digest, user_uuid, team_uuid, kid, issued_at, "
		"updated_at, expires_at) VALUES ('b1', randomblob(32), 'u2', 't1', 'k', 1, 1, "
		"1800000000), ('c1', randomblob(32), 'u1', 't2', 'k', 1, 1, 1800000000), "
		"('c2', randomblob(32), 'u1', 't2', 'k', 1, 1, 1800000000);"
		"DELETE FROM api_token_versions WHERE team_uuid = 't2';"
		"PRAGMA user_version = 5;";

	ck_assert_uint_ge(store_migration_count, 6);
	ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL), SQLITE_OK);
	for (unsigned i = 0; i < store_migration_count && store_migrations[i].version <= 5; i++)
		ck_assert_msg(sqlite3_exec(db, store_migrations[i].sql, NULL, NULL, &err) ==
				      SQLITE_OK,
			      "%s: %s", store_migrations[i].name, err ? err : "");
	ck_assert_msg(sqlite3_exec(db, rows, NULL, NULL, &err) == SQLITE_OK, "%s", err ? err : "");
	sqlite3_close(db);
}

START_TEST(migration_counts_existing_rows)
{
	struct store_api_token t;
	int64_t v = -1;
	bool member = false;
	int version = -1;
	char err[256] = "";

	make_v5();
	ck_assert_int_eq(unit_sql_count(dbpath, "PRAGMA user_version"), 5);
	ck_assert_int_eq(store_open(dbpath, 5000, &st, err, sizeof err), 0);
	ck_assert_msg(store_migrate(st, &version, NULL, err, sizeof err) == 0, "%s", err);
	ck_assert_int_ge(version, 6);
	ck_assert_int_eq(rows_counted("u1", "t1"), 7);
	ck_assert_int_eq(rows_counted("u2", "t1"), 1);
	ck_assert_int_eq(rows_counted("u1", "t2"), 2);
	exact();
	/* A pair that had no version row has one now: a listing cached at 0 is stale. */
	ck_assert_int_eq(store_api_token_version(st, "t2", "u1", &member, &v), 0);
	ck_assert(member);
	ck_assert_int_gt(v, 0);
	/* 5 live of 7 rows (2 expired), under a cap of 6: one more, then no. */
	ck_assert_int_eq(issue("u1", "t1", 1700000000, 1800000000, 6, &t), 0);
	ck_assert_int_eq(issue("u1", "t1", 1700000000, 1800000000, 6, &t), TOKEND_ECONFLICT);
	ck_assert_int_eq(rows_counted("u1", "t1"), 8);
	exact();
}
END_TEST

static Suite *counts_suite(void)
{
	Suite *s = suite_create("api_counts");
	TCase *tc = tcase_create("counts");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, counts_follow_every_delete);
	tcase_add_test(tc, migration_counts_existing_rows);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return UNIT_MAIN(counts_suite(), "api_counts", base, NULL);
}
