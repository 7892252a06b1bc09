/* SPDX-License-Identifier: MIT */
/*
 * This suite tests the refresh-token part of include/tokend/store.h against
 * a temporary SQLite file: rotation with reuse detection, the grace window,
 * liveness, purge, and whether a signing key is still in use.
 */
#include <check.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tokend/err.h"
#include "tokend/store.h"
#include "tokend/util.h"
#include "unit.h"

#define HASH \
	"pbkdf2_sha256$1000$saltsaltsaltsaltsaltsa$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y="

static char base[64];
static char tmpdir[128];
static char dbpath[192];

static void mk_tmpdir(void)
{
	snprintf(tmpdir, sizeof tmpdir, "%s/XXXXXX", base);
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(dbpath, sizeof dbpath, "%s/t.db", tmpdir);
}

static struct store *st;
static char alice[UUID_STR_LEN];
static char bob[UUID_STR_LEN];

static void store_setup(void)
{
	char err[256] = "";

	mk_tmpdir();
	st = NULL;
	ck_assert_msg(store_open(dbpath, 5000, &st, err, sizeof err) == 0, "open: %s", err);
	ck_assert_msg(store_migrate(st, NULL, NULL, err, sizeof err) == 0, "migrate: %s", err);
	ck_assert_int_eq(store_user_add(st, "alice", HASH, alice), 0);
	ck_assert_int_eq(store_user_add(st, "bob", HASH, bob), 0);
}

static void store_teardown(void)
{
	store_close(&st);
	rm_rf(tmpdir);
}

/* A new row for user, signed by kid, issued at t, living life seconds. */
static void row_of(struct store_refresh *r, const char *user, const char *kid, int64_t t,
		   int64_t life)
{
	memset(r, 0, sizeof *r);
	ck_assert_int_eq(util_uuid_new(r->jti), 0);
	ck_assert_int_eq(util_uuid_new(r->access_jti), 0);
	snprintf(r->user_uuid, sizeof r->user_uuid, "%s", user);
	snprintf(r->kid, sizeof r->kid, "%s", kid);
	r->issued_at = t;
	r->expires_at = t + life;
}

/* A login: a row that starts its own family. */
static void login(struct store_refresh *r, const char *user, const char *kid, int64_t t,
		  int64_t life)
{
	row_of(r, user, kid, t, life);
	memcpy(r->family, r->jti, sizeof r->family);
	ck_assert_int_eq(store_login_record(st, r), 0);
}

/* Live for its owner, whichever of the two users that is. */
static bool live(const char *jti)
{
	bool a = true, b = true;

	ck_assert_int_eq(store_refresh_live(st, jti, alice, &a), 0);
	ck_assert_int_eq(store_refresh_live(st, jti, bob, &b), 0);
	return a || b;
}

static enum store_rotation rotate(const char *old, const char *user, int64_t now, long grace,
				  struct store_refresh *next, struct store_refresh *replay)
{
	enum store_rotation o = (enum store_rotation) - 1;
	struct store_refresh dummy;

	ck_assert_int_eq(store_refresh_rotate(st, old, user, now, grace, 0, next,
					      replay ? replay : &dummy, &o),
			 0);
	return o;
}

static long count_rows(const char *where)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	char sql[256];
	long n = -1;

	snprintf(sql, sizeof sql, "SELECT count(*) FROM refresh_tokens WHERE %s", where);
	ck_assert_int_eq(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	if (sqlite3_step(s) == SQLITE_ROW)
		n = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	return n;
}

START_TEST(rotate_basic)
{
	struct store_refresh r0, r1;
	int64_t now = util_now();

	login(&r0, alice, "k1", now, 3600);
	ck_assert(live(r0.jti));
	row_of(&r1, alice, "k1", now, 3600);
	r1.family[0] = '\0';
	ck_assert_int_eq(rotate(r0.jti, alice, now, 0, &r1, NULL), STORE_ROTATED);
	ck_assert_str_eq(r1.family, r0.jti); /* filled from the old row */
	ck_assert(!live(r0.jti));
	ck_assert(live(r1.jti));
	ck_assert_int_eq(count_rows("family = (SELECT family FROM refresh_tokens LIMIT 1)"), 2);
}
END_TEST

START_TEST(rotate_chain)
{
	struct store_refresh r[6];
	int64_t now = util_now();

	login(&r[0], alice, "k1", now, 3600);
	for (int i = 1; i < 6; i++) {
		row_of(&r[i], alice, "k1", now, 3600);
		ck_assert_int_eq(rotate(r[i - 1].jti, alice, now, 0, &r[i], NULL), STORE_ROTATED);
		ck_assert_str_eq(r[i].family, r[0].jti);
		ck_assert(!live(r[i - 1].jti));
		ck_assert(live(r[i].jti));
	}
}
END_TEST

START_TEST(reuse_revokes_family)
{
	struct store_refresh r0, r1, r2, r3, other;
	int64_t now = util_now();

	login(&r0, alice, "k1", now, 3600);
	login(&other, alice, "k1", now, 3600);
	row_of(&r1, alice, "k1", now, 3600);
	ck_assert_int_eq(rotate(r0.jti, alice, now, 0, &r1, NULL), STORE_ROTATED);
	row_of(&r2, alice, "k1", now, 3600);
	ck_assert_int_eq(rotate(r1.jti, alice, now, 0, &r2, NULL), STORE_ROTATED);
	ck_assert(live(r2.jti));

	/* r0 presented again: theft */
	row_of(&r3, alice, "k1", now, 3600);
	ck_assert_int_eq(rotate(r0.jti, alice, now + 1, 0, &r3, NULL), STORE_REUSED);
	ck_assert(!live(r0.jti));
	ck_assert(!live(r1.jti));
	ck_assert(!live(r2.jti));
	ck_assert(!live(r3.jti)); /* nothing recorded for the thief */
	ck_assert_int_eq(count_rows("revoked = 0 AND family = family"), 1);

	/* the live token of the revoked family can not rotate either: its
	 * session has ended (not a second theft) */
	row_of(&r3, alice, "k1", now, 3600);
	ck_assert_int_eq(rotate(r2.jti, alice, now + 2, 0, &r3, NULL), STORE_ENDED);
	ck_assert(!live(r3.jti));
	/* another login's family is untouched */
	ck_assert(live(other.jti));
	row_of(&r3, alice, "k1", now, 3600);
	ck_assert_int_eq(rotate(other.jti, alice, now + 2, 0, &r3, NULL), STORE_ROTATED);
}
END_TEST

START_TEST(reuse_with_grace_replays)
{
	struct store_refresh r0, r1, again, replay;
	int64_t now = util_now();

	login(&r0, alice, "k1", now, 3600);
	row_of(&r1, alice, "k2", now, 3600);
	ck_assert_int_eq(rotate(r0.jti, alice, now, 30, &r1, NULL), STORE_ROTATED);

	for (int i = 0; i < 2; i++) {
		memset(&replay, 0, sizeof replay);
		row_of(&again, alice, "k1", now, 3600);
		ck_assert_int_eq(rotate(r0.jti, alice, now + 5 + i, 30, &again, &replay),
				 STORE_REPLAYED);
		ck_assert_str_eq(replay.jti, r1.jti);
		ck_assert_str_eq(replay.family, r0.jti);
		ck_assert_str_eq(replay.user_uuid, alice);
		ck_assert_str_eq(replay.kid, "k2");
		ck_assert_str_eq(replay.access_jti, r1.access_jti);
		ck_assert_int_eq(replay.issued_at, r1.issued_at);
		ck_assert_int_eq(replay.expires_at, r1.expires_at);
		ck_assert(!live(again.jti));
		ck_assert(live(r1.jti)); /* the family is not revoked */
	}

	/* beyond the grace window: theft */
	row_of(&again, alice, "k1", now, 3600);
	ck_assert_int_eq(rotate(r0.jti, alice, now + 31, 30, &again, &replay), STORE_REUSED);
	ck_assert(!live(r1.jti));
}
END_TEST

START_TEST(grace_after_successor_used_is_reuse)
{
	struct store_refresh r0, r1, r2, again, replay;
	int64_t now = util_now();

	login(&r0, alice, "k1", now, 3600);
	row_of(&r1, alice, "k1", now, 3600);
	ck_assert_int_eq(rotate(r0.jti, alice, now, 30, &r1, NULL), STORE_ROTATED);
	row_of(&r2, alice, "k1", now, 3600);
	ck_assert_int_eq(rotate(r1.jti, alice, now + 1, 30, &r2, NULL), STORE_ROTATED);
	row_of(&again, alice, "k1", now, 3600);
	ck_assert_int_eq(rotate(r0.jti, alice, now + 2, 30, &again, &replay), STORE_REUSED);
	ck_assert(!live(r2.jti));
}
END_TEST

START_TEST(grace_zero_means_reuse)
{
	struct store_refresh r0, r1, again;
	int64_t now = util_now();

	login(&r0, alice, "k1", now, 3600);
	row_of(&r1, alice, "k1", now, 3600);
	ck_assert_int_eq(rotate(r0.jti, alice, now, 0, &r1, NULL), STORE_ROTATED);
	row_of(&again, alice, "k1", now, 3600);
	ck_assert_int_eq(rotate(r0.jti, alice, now, 0, &again, NULL), STORE_REUSED);
	ck_assert(!live(r1.jti));
}
END_TEST

START_TEST(rotate_unknown)
{
	struct store_refresh r0, next;
	char never[UUID_STR_LEN];
	int64_t now = util_now();

	login(&r0, alice, "k1", now, 3600);
	ck_assert_int_eq(util_uuid_new(never), 0);
	row_of(&next, alice, "k1", now, 3600);
	ck_assert_int_eq(rotate(never, alice, now, 0, &next, NULL), STORE_UNKNOWN);
	ck_assert(!live(next.jti));

	/* another user's row: unknown, and nothing changes */
	row_of(&next, bob, "k1", now, 3600);
	ck_assert_int_eq(rotate(r0.jti, bob, now, 0, &next, NULL), STORE_UNKNOWN);
	ck_assert(live(r0.jti));
	ck_assert(!live(next.jti));
	/* not even a second time (no reuse detection against the owner) */
	ck_assert_int_eq(rotate(r0.jti, bob, now, 0, &next, NULL), STORE_UNKNOWN);
	ck_assert(live(r0.jti));

	/* deleted user: the rows go with it */
	ck_assert_int_eq(store_user_delete(st, "alice"), 0);
	ck_assert(!live(r0.jti));
	row_of(&next, alice, "k1", now, 3600);
	ck_assert_int_eq(rotate(r0.jti, alice, now, 0, &next, NULL), STORE_UNKNOWN);
}
END_TEST

START_TEST(rotate_inactive)
{
	struct store_refresh r0, next;
	int64_t now = util_now();

	login(&r0, alice, "k1", now, 3600);
	ck_assert_int_eq(store_user_set_active(st, "alice", false), 0);
	row_of(&next, alice, "k1", now, 3600);
	ck_assert_int_eq(rotate(r0.jti, alice, now, 0, &next, NULL), STORE_INACTIVE);
	ck_assert(!live(r0.jti)); /* the session ended with the disable */
	ck_assert(!live(next.jti));
	ck_assert_int_eq(rotate(r0.jti, alice, now, 0, &next, NULL), STORE_INACTIVE);
	/* an enable does not bring the session back */
	ck_assert_int_eq(store_user_set_active(st, "alice", true), 0);
	ck_assert_int_eq(rotate(r0.jti, alice, now, 0, &next, NULL), STORE_ENDED);
	ck_assert(!live(next.jti));
	ck_assert(!live(r0.jti));
}
END_TEST

START_TEST(live_unknown_and_odd_jtis)
{
	ck_assert(!live("00000000-0000-4000-8000-000000000000"));
	ck_assert(!live(""));
	ck_assert(!live("' OR 1=1 --"));
}
END_TEST

#define RACERS 8

struct racer {
	pthread_barrier_t *bar;
	const char *old;
	struct store_refresh next;
	enum store_rotation outcome;
	int rc;
	int64_t now;
};

static void *race(void *arg)
{
	struct racer *r = arg;
	struct store_refresh replay;

	pthread_barrier_wait(r->bar);
	r->rc = store_refresh_rotate(st, r->old, alice, r->now, 0, 0, &r->next, &replay,
				     &r->outcome);
	return NULL;
}

START_TEST(concurrent_rotation_one_wins)
{
	for (int round = 0; round < 3; round++) {
		pthread_t t[RACERS];
		struct racer rs[RACERS];
		pthread_barrier_t bar;
		struct store_refresh r0;
		int64_t now = util_now();
		int won = 0, winner = -1, reused = 0;

		login(&r0, alice, "k1", now, 3600);
		ck_assert_int_eq(pthread_barrier_init(&bar, NULL, RACERS), 0);
		for (int i = 0; i < RACERS; i++) {
			rs[i].bar = &bar;
			rs[i].old = r0.jti;
			rs[i].now = now;
			rs[i].rc = -99;
			rs[i].outcome = (enum store_rotation) - 1;
			row_of(&rs[i].next, alice, "k1", now, 3600);
			ck_assert_int_eq(pthread_create(&t[i], NULL, race, &rs[i]), 0);
		}
		for (int i = 0; i < RACERS; i++)
			pthread_join(t[i], NULL);
		pthread_barrier_destroy(&bar);
		for (int i = 0; i < RACERS; i++) {
			ck_assert_msg(rs[i].rc == 0, "racer %d: rc %d", i, rs[i].rc);
			if (rs[i].outcome == STORE_ROTATED) {
				won++;
				winner = i;
			} else if (rs[i].outcome == STORE_REUSED) {
				reused++;
			} else {
				ck_assert_int_eq(rs[i].outcome, STORE_ENDED);
			}
		}
		ck_assert_int_eq(won, 1);
		/* one theft ends the session; the later losers find it ended */
		ck_assert_int_eq(reused, 1);
		/* the losers were reuse: the winner's token is revoked too */
		ck_assert(!live(rs[winner].next.jti));
		for (int i = 0; i < RACERS; i++)
			ck_assert(!live(rs[i].next.jti));
	}
}
END_TEST

/*
 * Batched writers (the SQLite backend runs the writers queued behind its
 * write lock in one transaction): a rotation that fails inside a batch
 * (here a trigger's RAISE(ROLLBACK) on its new row, as SQLITE_FULL would)
 * fails alone. Every other rotation of the batch is written once, and the
 * failed one leaves its old token unused. In each round another connection
 * holds SQLite's write lock while the rotations start, so that they queue
 * (the first waits in SQLite's busy handler, the others behind it).
 */
#define CHAINS 8
#define CHAIN_ROUNDS 12

struct chain {
	struct store_refresh head; /* the chain's newest row */
	bool poison;               /* this round's new row names the poison kid */
	int rotated, failed, other;
};

static void *rotate_once(void *arg)
{
	struct chain *c = arg;
	struct store_refresh next, replay;
	enum store_rotation o = (enum store_rotation) - 1;
	int rc;

	row_of(&next, alice, c->poison ? "poison" : "k1", c->head.issued_at, 3600);
	rc = store_refresh_rotate(st, c->head.jti, alice, c->head.issued_at, 0, 0, &next, &replay,
				  &o);
	if (rc != 0 && c->poison) {
		c->failed++;
	} else if (rc == 0 && o == STORE_ROTATED && !c->poison) {
		c->rotated++;
		c->head = next;
	} else {
		c->other++;
	}
	return NULL;
}

START_TEST(batched_rotation_fails_alone)
{
	struct chain c[CHAINS];
	sqlite3 *db = NULL;

	ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	ck_assert_int_eq(sqlite3_exec(db,
				      "CREATE TRIGGER poison BEFORE INSERT ON refresh_tokens "
				      "WHEN NEW.kid = 'poison' BEGIN "
				      "SELECT RAISE(ROLLBACK, 'poisoned'); END",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	for (int i = 0; i < CHAINS; i++) {
		memset(&c[i], 0, sizeof c[i]);
		login(&c[i].head, alice, "k1", util_now(), 3600);
	}
	for (int round = 0; round < CHAIN_ROUNDS; round++) {
		pthread_t t[CHAINS];

		ck_assert_int_eq(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
		for (int i = 0; i < CHAINS; i++) {
			c[i].poison = i % 3 == round % 3; /* some rounds poison none */
			ck_assert_int_eq(pthread_create(&t[i], NULL, rotate_once, &c[i]), 0);
		}
		usleep(100 * 1000); /* lets them queue: the outcome does not depend on it */
		ck_assert_int_eq(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
		for (int i = 0; i < CHAINS; i++)
			pthread_join(t[i], NULL);
	}
	sqlite3_close(db);
	for (int i = 0; i < CHAINS; i++) {
		char where[160];

		ck_assert_msg(c[i].other == 0 && c[i].rotated + c[i].failed == CHAIN_ROUNDS,
			      "chain %d: %d rotated, %d failed, %d other", i, c[i].rotated,
			      c[i].failed, c[i].other);
		ck_assert_int_gt(c[i].failed, 0);
		/* the chain's rows: its login and one per rotation; only the newest is live */
		snprintf(where, sizeof where,
			 "family = (SELECT family FROM refresh_tokens WHERE jti = '%.36s')",
			 c[i].head.jti);
		ck_assert_int_eq(count_rows(where), c[i].rotated + 1);
		ck_assert(live(c[i].head.jti));
	}
	ck_assert_int_eq(count_rows("kid = 'poison'"), 0);
	ck_assert_int_eq(count_rows("used_at IS NULL"), CHAINS);
}
END_TEST

START_TEST(purge_expired_only_and_bounded)
{
	struct store_refresh r, used_next;
	int64_t now = util_now();
	long n = -1;

	for (int i = 0; i < 5; i++)
		login(&r, alice, "k1", now - 7200, 3600 - i); /* expired */
	/* an expired used row and its expired successor */
	login(&r, alice, "k1", now - 7200, 10);
	row_of(&used_next, alice, "k1", now - 7199, 10);
	ck_assert_int_eq(rotate(r.jti, alice, now - 7195, 0, &used_next, NULL), STORE_ROTATED);
	for (int i = 0; i < 3; i++)
		login(&r, alice, "k1", now, 3600); /* live */
	login(&r, bob, "k1", now - 100, 100 + 3600);
	ck_assert_int_eq(count_rows("1"), 11);

	ck_assert_int_eq(store_purge(st, now, 3, &n), 0);
	ck_assert_int_eq(n, 3);
	ck_assert_int_eq(count_rows("1"), 8);
	ck_assert_int_eq(store_purge(st, now, 3, &n), 0);
	ck_assert_int_eq(n, 3);
	ck_assert_int_eq(store_purge(st, now, 3, &n), 0);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(store_purge(st, now, 3, &n), 0);
	ck_assert_int_eq(n, 0);
	ck_assert_int_eq(count_rows("1"), 4);
	ck_assert_int_eq(count_rows("expires_at < strftime('%s','now')"), 0);
	ck_assert(live(r.jti));

	/* "before" is honoured: nothing expires before an early cut-off */
	ck_assert_int_eq(store_purge(st, now - 100000, 1000, &n), 0);
	ck_assert_int_eq(n, 0);
	ck_assert_int_eq(count_rows("1"), 4);
	/* and everything before a late one */
	ck_assert_int_eq(store_purge(st, now + 100000, 1000, &n), 0);
	ck_assert_int_eq(n, 4);
	ck_assert_int_eq(count_rows("1"), 0);
}
END_TEST

static bool in_use(const char *kid, int64_t now)
{
	bool u = false;

	ck_assert_int_eq(store_key_in_use(st, kid, now, 300, &u), 0);
	return u;
}

START_TEST(key_in_use)
{
	struct store_refresh r, next, again;
	int64_t now = util_now();

	ck_assert(!in_use("k1", now));

	/* only expired tokens */
	login(&r, alice, "k1", now - 7200, 3600);
	ck_assert(!in_use("k1", now));

	/* used long ago (its access token expired), successor signed by k2 */
	login(&r, alice, "k1", now - 7200, 86400);
	row_of(&next, alice, "k2", now - 7000, 86400);
	ck_assert_int_eq(rotate(r.jti, alice, now - 7000, 0, &next, NULL), STORE_ROTATED);
	ck_assert(!in_use("k1", now));
	ck_assert(in_use("k2", now));

	/* a revoked family, issued long ago */
	row_of(&again, alice, "k2", now, 3600);
	ck_assert_int_eq(rotate(r.jti, alice, now - 6000, 0, &again, NULL), STORE_REUSED);
	ck_assert(!in_use("k2", now));
	ck_assert(!in_use("k1", now));

	/* an outstanding unexpired token */
	login(&r, alice, "k3", now - 7200, 86400);
	ck_assert(in_use("k3", now));
	ck_assert(!in_use("k3", now + 86400)); /* once it has expired */

	/* used just now: the access token minted with it is still valid */
	login(&r, alice, "k4", now - 10, 86400);
	row_of(&next, alice, "k5", now - 5, 86400);
	ck_assert_int_eq(rotate(r.jti, alice, now - 5, 0, &next, NULL), STORE_ROTATED);
	ck_assert(in_use("k4", now));
	ck_assert(!in_use("k4", now + 400));

	ck_assert(!in_use("nope", now));
}
END_TEST

static Suite *store_refresh_suite(void)
{
	Suite *s = suite_create("store_refresh");
	TCase *tc = tcase_create("refresh");

	tcase_add_checked_fixture(tc, store_setup, store_teardown);
	tcase_add_test(tc, rotate_basic);
	tcase_add_test(tc, rotate_chain);
	tcase_add_test(tc, reuse_revokes_family);
	tcase_add_test(tc, reuse_with_grace_replays);
	tcase_add_test(tc, grace_after_successor_used_is_reuse);
	tcase_add_test(tc, grace_zero_means_reuse);
	tcase_add_test(tc, rotate_unknown);
	tcase_add_test(tc, rotate_inactive);
	tcase_add_test(tc, live_unknown_and_odd_jtis);
	tcase_add_test(tc, concurrent_rotation_one_wins);
	tcase_add_test(tc, batched_rotation_fails_alone);
	tcase_add_test(tc, purge_expired_only_and_bounded);
	tcase_add_test(tc, key_in_use);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return UNIT_MAIN(store_refresh_suite(), "store-refresh", base, NULL);
}
