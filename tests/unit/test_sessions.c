/* SPDX-License-Identifier: MIT */
/*
 * This suite tests the sessions of include/tokend/store.h on a temporary
 * SQLite file, and what ends them. Properties proven:
 * - a login starts exactly one session, and none for a user disabled or
 *   deleted after the lookup (the hash ran in between);
 * - store_session_state tells live, ended, inactive and unknown users apart,
 *   and a session is live only for its own user;
 * - a rotation stays in the session; a reuse ends it (the session, not only
 *   the refresh rows); other sessions are untouched;
 * - store_user_sessions_end, store_user_change_password and
 *   store_user_disable end every session of the user and revoke its refresh
 *   rows; an enable brings none back; a login's rehash
 *   (store_user_set_password) ends nothing;
 * - store_session_end ends one session, and nothing for another user's sid;
 * - store_refresh_logout ends the token's session (ENDED), for a used token
 *   inside the grace window too; outside it a used token is a reuse (the
 *   session ends all the same); an ended session, another user's token, a
 *   disabled user and an unknown jti are refused and change nothing;
 * - disable keeps API tokens (refused until enabled) unless asked to delete
 *   them; remove-member deletes the user's tokens in that team only;
 * - store_refresh_live requires the row's own user, a live session and an
 *   active user;
 * - a session row goes with its last refresh row (purge), not before;
 * - a rotation cuts the new row to the session's absolute end, and past it
 *   ends the session instead.
 */
#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokend/err.h"
#include "tokend/store.h"
#include "tokend/util.h"
#include "unit.h"
#include "unit_sqlite.h"

#define HASH \
	"pbkdf2_sha256$1000$saltsaltsaltsaltsaltsa$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y="
#define HASH2 \
	"pbkdf2_sha256$1000$othersaltothersaltoth$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y="
#define NOBODY "00000000-0000-4000-8000-000000000000"

static char base[64];
static char tmpdir[128];
static char dbpath[192];
static struct store *st;
static char alice[UUID_STR_LEN], bob[UUID_STR_LEN];
static char red[UUID_STR_LEN], blue[UUID_STR_LEN];

static void setup(void)
{
	char err[256] = "";

	snprintf(tmpdir, sizeof tmpdir, "%s/XXXXXX", base);
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(dbpath, sizeof dbpath, "%s/t.db", tmpdir);
	st = NULL;
	ck_assert_msg(store_open(dbpath, 5000, &st, err, sizeof err) == 0, "open: %s", err);
	ck_assert_msg(store_migrate(st, NULL, NULL, err, sizeof err) == 0, "migrate: %s", err);
	ck_assert_int_eq(store_user_add(st, "alice", HASH, alice), 0);
	ck_assert_int_eq(store_user_add(st, "bob", HASH, bob), 0);
	ck_assert_int_eq(store_team_add(st, "Red", red), 0);
	ck_assert_int_eq(store_team_add(st, "Blue", blue), 0);
	ck_assert_int_eq(store_team_add_member(st, "Red", "alice", "member"), 0);
	ck_assert_int_eq(store_team_add_member(st, "Blue", "alice", "member"), 0);
}

static void teardown(void)
{
	store_close(&st);
	rm_rf(tmpdir);
}

static long count(const char *sql)
{
	return unit_sql_count(dbpath, sql);
}

/* A login of user at t: its first refresh row names the session. */
static int login_at(struct store_refresh *r, const char *user, int64_t t, int64_t life)
{
	memset(r, 0, sizeof *r);
	ck_assert_int_eq(util_uuid_new(r->jti), 0);
	ck_assert_int_eq(util_uuid_new(r->access_jti), 0);
	memcpy(r->family, r->jti, UUID_STR_LEN);
	snprintf(r->user_uuid, sizeof r->user_uuid, "%s", user);
	snprintf(r->kid, sizeof r->kid, "k1");
	r->issued_at = t;
	r->expires_at = t + life;
	return store_login_record(st, r);
}

static void login(struct store_refresh *r, const char *user)
{
	ck_assert_int_eq(login_at(r, user, util_now(), 3600), 0);
}

static enum store_session state(const char *sid, const char *user)
{
	enum store_session s;

	ck_assert_int_eq(store_session_state(st, sid, user, &s), 0);
	return s;
}

static bool rlive(const struct store_refresh *r)
{
	bool l = true;

	ck_assert_int_eq(store_refresh_live(st, r->jti, r->user_uuid, &l), 0);
	return l;
}

static enum store_rotation rotate(const struct store_refresh *old, struct store_refresh *next,
				  long grace)
{
	struct store_refresh replay;
	enum store_rotation out;

	memset(next, 0, sizeof *next);
	ck_assert_int_eq(util_uuid_new(next->jti), 0);
	ck_assert_int_eq(util_uuid_new(next->access_jti), 0);
	memcpy(next->user_uuid, old->user_uuid, UUID_STR_LEN);
	snprintf(next->kid, sizeof next->kid, "k1");
	next->issued_at = util_now();
	next->expires_at = next->issued_at + 3600;
	ck_assert_int_eq(store_refresh_rotate(st, old->jti, old->user_uuid, util_now(), grace, 0,
					      next, &replay, &out),
			 0);
	return out;
}

static void api_token(struct store_api_token *t, const char *user, const char *team)
{
	memset(t, 0, sizeof(*t));
	ck_assert_int_eq(util_uuid_new(t->jti), 0);
	for (size_t i = 0; i < sizeof t->digest; i++)
		t->digest[i] = (unsigned char)(t->jti[i] ^ (unsigned char)(i * 7 + 1));
	snprintf(t->user_uuid, sizeof t->user_uuid, "%s", user);
	snprintf(t->team_uuid, sizeof t->team_uuid, "%s", team);
	snprintf(t->kid, sizeof t->kid, "k1");
	t->issued_at = t->updated_at = util_now();
	t->expires_at = t->issued_at + 86400;
	ck_assert_int_eq(store_api_token_add(st, t, t->jti, 100), 0);
}

static bool alive(const struct store_api_token *t)
{
	bool l = true;

	ck_assert_int_eq(store_api_token_live(st, t->jti, t->user_uuid, t->team_uuid, &l), 0);
	return l;
}

START_TEST(login_starts_one_session)
{
	struct store_refresh r;
	bool live = false;

	login(&r, alice);
	ck_assert_int_eq(count("SELECT count(*) FROM sessions"), 1);
	ck_assert_int_eq(state(r.family, alice), STORE_SESSION_LIVE);
	live = state(r.family, alice) == STORE_SESSION_LIVE;
	ck_assert(live);
	/* only for its own user */
	ck_assert_int_eq(state(r.family, bob), STORE_SESSION_ENDED);
	live = state(r.family, bob) == STORE_SESSION_LIVE;
	ck_assert(!live);
	ck_assert_int_eq(state(NOBODY, alice), STORE_SESSION_ENDED);
	ck_assert_int_eq(state("' OR 1=1 --", alice), STORE_SESSION_ENDED);
	ck_assert_int_eq(state(r.family, NOBODY), STORE_SESSION_NO_USER);
	ck_assert(rlive(&r));
	ck_assert_int_eq(count("SELECT count(*) FROM sessions WHERE revoked_at IS NULL AND "
			       "created_at = (SELECT issued_at FROM refresh_tokens)"),
			 1);
}
END_TEST

START_TEST(login_refused_once_disabled_or_deleted)
{
	struct store_refresh r;

	ck_assert_int_eq(store_user_disable(st, "alice", util_now(), false), 0);
	ck_assert_int_eq(login_at(&r, alice, util_now(), 3600), TOKEND_ENOTFOUND);
	ck_assert_int_eq(count("SELECT count(*) FROM sessions"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM refresh_tokens"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM users WHERE last_login IS NOT NULL"), 0);
	ck_assert_int_eq(store_user_delete(st, "bob"), 0);
	ck_assert_int_eq(login_at(&r, bob, util_now(), 3600), TOKEND_ENOTFOUND);
	ck_assert_int_eq(count("SELECT count(*) FROM sessions"), 0);
}
END_TEST

START_TEST(rotation_stays_reuse_ends)
{
	struct store_refresh r0, r1, r2, other;

	login(&r0, alice);
	login(&other, alice);
	ck_assert_int_eq(rotate(&r0, &r1, 0), STORE_ROTATED);
	ck_assert_str_eq(r1.family, r0.family);
	ck_assert_int_eq(count("SELECT count(*) FROM sessions"), 2);
	ck_assert_int_eq(state(r0.family, alice), STORE_SESSION_LIVE);
	ck_assert_int_eq(rotate(&r0, &r2, 0), STORE_REUSED);
	ck_assert_int_eq(state(r0.family, alice), STORE_SESSION_ENDED);
	ck_assert(!rlive(&r1));
	ck_assert_int_eq(state(other.family, alice), STORE_SESSION_LIVE);
	ck_assert(rlive(&other));
}
END_TEST

static enum store_logout logout(const struct store_refresh *r, const char *user, long grace)
{
	enum store_logout out;

	ck_assert_int_eq(store_refresh_logout(st, r->jti, user, util_now(), grace, 0, &out), 0);
	return out;
}

START_TEST(refresh_logout)
{
	struct store_refresh a, b, c, d, next, other;
	long revoked;

	login(&a, alice);
	login(&other, alice);
	/* an unused token: its session ends, with every refresh row */
	ck_assert_int_eq(rotate(&a, &next, 0), STORE_ROTATED);
	ck_assert_int_eq(logout(&next, alice, 0), STORE_LOGOUT_ENDED);
	ck_assert_int_eq(state(a.family, alice), STORE_SESSION_ENDED);
	ck_assert(!rlive(&next));
	ck_assert_int_eq(state(other.family, alice), STORE_SESSION_LIVE);
	/* again, or with the used token: refused, nothing changes */
	revoked = count("SELECT count(*) FROM refresh_tokens WHERE revoked = 1");
	ck_assert_int_eq(logout(&next, alice, 30), STORE_LOGOUT_REFUSED);
	ck_assert_int_eq(logout(&a, alice, 30), STORE_LOGOUT_REFUSED);
	ck_assert_int_eq(count("SELECT count(*) FROM refresh_tokens WHERE revoked = 1"), revoked);
	/* a grace replay after the logout gets nothing */
	ck_assert_int_eq(rotate(&a, &next, 30), STORE_ENDED);
	/* a used token inside the window stands for its successor */
	login(&b, alice);
	ck_assert_int_eq(rotate(&b, &next, 30), STORE_ROTATED);
	ck_assert_int_eq(logout(&b, alice, 30), STORE_LOGOUT_ENDED);
	ck_assert_int_eq(state(b.family, alice), STORE_SESSION_ENDED);
	ck_assert(!rlive(&next));
	/* outside it (grace 0) a used token is reuse: the session ends too */
	login(&c, alice);
	ck_assert_int_eq(rotate(&c, &next, 0), STORE_ROTATED);
	ck_assert_int_eq(logout(&c, alice, 0), STORE_LOGOUT_REUSED);
	ck_assert_int_eq(state(c.family, alice), STORE_SESSION_ENDED);
	ck_assert(!rlive(&next));
	/* another user's name, an unknown jti, a disabled user: refused */
	login(&d, bob);
	ck_assert_int_eq(logout(&d, alice, 0), STORE_LOGOUT_REFUSED);
	ck_assert_int_eq(state(d.family, bob), STORE_SESSION_LIVE);
	memcpy(next.jti, NOBODY, UUID_STR_LEN);
	ck_assert_int_eq(logout(&next, bob, 0), STORE_LOGOUT_REFUSED);
	ck_assert_int_eq(store_user_disable(st, "bob", util_now(), false), 0);
	ck_assert_int_eq(logout(&d, bob, 0), STORE_LOGOUT_REFUSED);
	ck_assert_int_eq(state(other.family, alice), STORE_SESSION_LIVE);
}
END_TEST

START_TEST(user_sessions_end_all_of_them)
{
	struct store_refresh a1, a2, b1, next;
	long n = -1;

	login(&a1, alice);
	login(&a2, alice);
	login(&b1, bob);
	ck_assert_int_eq(store_user_sessions_end(st, alice, util_now(), &n), 0);
	ck_assert_int_eq(n, 2);
	ck_assert_int_eq(state(a1.family, alice), STORE_SESSION_ENDED);
	ck_assert_int_eq(state(a2.family, alice), STORE_SESSION_ENDED);
	ck_assert(!rlive(&a1) && !rlive(&a2));
	ck_assert_int_eq(rotate(&a1, &next, 30), STORE_ENDED); /* not a theft */
	ck_assert_int_eq(state(b1.family, bob), STORE_SESSION_LIVE);
	ck_assert(rlive(&b1));
	ck_assert_int_eq(store_user_sessions_end(st, alice, util_now(), &n), 0);
	ck_assert_int_eq(n, 0);
	ck_assert_int_eq(store_user_sessions_end(st, alice, util_now(), NULL), 0);
	login(&a1, alice); /* a new login is a new, live session */
	ck_assert_int_eq(state(a1.family, alice), STORE_SESSION_LIVE);
}
END_TEST

START_TEST(session_end_is_one_and_own)
{
	struct store_refresh a1, a2;
	bool ended = true;

	login(&a1, alice);
	login(&a2, alice);
	ck_assert_int_eq(store_session_end(st, a1.family, bob, util_now(), &ended), 0);
	ck_assert(!ended);
	ck_assert(rlive(&a1)); /* another user's sid revokes nothing */
	ck_assert_int_eq(store_session_end(st, a1.family, alice, util_now(), &ended), 0);
	ck_assert(ended);
	ck_assert(!rlive(&a1));
	ck_assert_int_eq(state(a1.family, alice), STORE_SESSION_ENDED);
	ck_assert_int_eq(state(a2.family, alice), STORE_SESSION_LIVE);
	ck_assert_int_eq(store_session_end(st, a1.family, alice, util_now(), &ended), 0);
	ck_assert(!ended);
	ck_assert_int_eq(store_session_end(st, NOBODY, alice, util_now(), &ended), 0);
	ck_assert(!ended);
}
END_TEST

START_TEST(disable_ends_sessions_keeps_api_tokens)
{
	struct store_refresh a1, b1;
	struct store_api_token t;

	login(&a1, alice);
	login(&b1, bob);
	api_token(&t, alice, red);
	ck_assert_int_eq(store_user_disable(st, "alice", util_now(), false), 0);
	ck_assert_int_eq(state(a1.family, alice), STORE_SESSION_INACTIVE);
	ck_assert(!rlive(&a1));
	ck_assert(!alive(&t));
	ck_assert_int_eq(state(b1.family, bob), STORE_SESSION_LIVE);
	ck_assert_int_eq(store_user_set_active(st, "alice", true), 0);
	ck_assert_int_eq(state(a1.family, alice), STORE_SESSION_ENDED);
	ck_assert(!rlive(&a1));
	ck_assert(alive(&t));
	ck_assert_int_eq(store_user_disable(st, "nobody", util_now(), false), TOKEND_ENOTFOUND);
}
END_TEST

START_TEST(set_active_false_is_a_disable)
{
	struct store_refresh a1;

	login(&a1, alice);
	ck_assert_int_eq(store_user_set_active(st, "alice", false), 0);
	ck_assert_int_eq(store_user_set_active(st, "alice", true), 0);
	ck_assert_int_eq(state(a1.family, alice), STORE_SESSION_ENDED);
}
END_TEST

START_TEST(disable_revoke_deletes_api_tokens)
{
	struct store_api_token t1, t2, tb;

	ck_assert_int_eq(store_team_add_member(st, "Red", "bob", "member"), 0);
	api_token(&t1, alice, red);
	api_token(&t2, alice, blue);
	api_token(&tb, bob, red);
	ck_assert_int_eq(store_user_disable(st, "alice", util_now(), true), 0);
	ck_assert_int_eq(store_user_set_active(st, "alice", true), 0);
	ck_assert(!alive(&t1) && !alive(&t2));
	ck_assert(alive(&tb));
	ck_assert_int_eq(count("SELECT count(*) FROM api_tokens"), 1);
}
END_TEST

START_TEST(password_change_ends_sessions_rehash_does_not)
{
	struct store_refresh a1, a2;

	login(&a1, alice);
	ck_assert_int_eq(store_user_set_password(st, alice, HASH2), 0);
	ck_assert_int_eq(state(a1.family, alice), STORE_SESSION_LIVE);
	ck_assert(rlive(&a1));
	ck_assert_int_eq(store_user_change_password(st, alice, HASH, util_now()), 0);
	ck_assert_int_eq(state(a1.family, alice), STORE_SESSION_ENDED);
	ck_assert(!rlive(&a1));
	login(&a2, alice);
	ck_assert_int_eq(state(a2.family, alice), STORE_SESSION_LIVE);
	ck_assert_int_eq(store_user_change_password(st, NOBODY, HASH, util_now()),
			 TOKEND_ENOTFOUND);
	ck_assert_int_eq(state(a2.family, alice), STORE_SESSION_LIVE);
}
END_TEST

START_TEST(remove_member_deletes_that_teams_tokens)
{
	struct store_api_token r1, r2, b1;
	bool member = true;

	api_token(&r1, alice, red);
	api_token(&r2, alice, red);
	api_token(&b1, alice, blue);
	ck_assert_int_eq(store_team_remove_member(st, "Red", "alice"), 0);
	ck_assert_int_eq(store_team_is_member(st, red, alice, &member), 0);
	ck_assert(!member);
	ck_assert_int_eq(store_team_add_member(st, "Red", "alice", "member"), 0);
	ck_assert(!alive(&r1) && !alive(&r2));
	ck_assert(alive(&b1));
	ck_assert_int_eq(count("SELECT count(*) FROM api_tokens"), 1);
	/* a failed removal deletes nothing */
	ck_assert_int_eq(store_team_remove_member(st, "Red", "bob"), TOKEND_ENOTFOUND);
	ck_assert_int_eq(store_team_remove_member(st, "Blue", "nobody"), TOKEND_ENOTFOUND);
	ck_assert(alive(&b1));
}
END_TEST

START_TEST(refresh_live_needs_owner_session_and_active_user)
{
	struct store_refresh a1;
	bool live = true;

	login(&a1, alice);
	ck_assert(rlive(&a1));
	ck_assert_int_eq(store_refresh_live(st, a1.jti, bob, &live), 0);
	ck_assert(!live);
	ck_assert_int_eq(store_refresh_live(st, a1.jti, NOBODY, &live), 0);
	ck_assert(!live);
}
END_TEST

START_TEST(session_goes_with_its_last_refresh_row)
{
	struct store_refresh old, next, fresh;
	int64_t now = util_now();
	long n = -1;

	ck_assert_int_eq(login_at(&old, alice, now - 7200, 3600), 0); /* expired */
	login(&fresh, alice);
	ck_assert_int_eq(login_at(&next, bob, now - 7200, 3600), 0);
	/* bob's family: one expired row, one live (rotated into) */
	{
		struct store_refresh r1;
		ck_assert_int_eq(rotate(&next, &r1, 0), STORE_ROTATED);
	}
	ck_assert_int_eq(count("SELECT count(*) FROM sessions"), 3);
	ck_assert_int_eq(store_purge(st, now, 1000, &n), 0);
	ck_assert_int_eq(n, 2);
	ck_assert_int_eq(count("SELECT count(*) FROM sessions"), 2);
	ck_assert_int_eq(state(old.family, alice), STORE_SESSION_ENDED);
	ck_assert_int_eq(state(fresh.family, alice), STORE_SESSION_LIVE);
	ck_assert_int_eq(state(next.family, bob), STORE_SESSION_LIVE);
	/* a deleted user's sessions go with the user */
	ck_assert_int_eq(store_user_delete(st, "bob"), 0);
	ck_assert_int_eq(count("SELECT count(*) FROM sessions"), 1);
}
END_TEST

START_TEST(absolute_lifetime_cuts_and_ends)
{
	struct store_refresh old, cur, next, replay;
	enum store_rotation out;
	int64_t now = util_now();

	ck_assert_int_eq(login_at(&old, alice, now - 100, 3600), 0);
	ck_assert_int_eq(login_at(&cur, alice, now - 10, 3600), 0);
	/* inside the limit: rotated, the new row cut to the session's end */
	memset(&next, 0, sizeof next);
	ck_assert_int_eq(util_uuid_new(next.jti), 0);
	ck_assert_int_eq(util_uuid_new(next.access_jti), 0);
	memcpy(next.user_uuid, alice, UUID_STR_LEN);
	next.issued_at = now;
	next.expires_at = now + 3600;
	ck_assert_int_eq(store_refresh_rotate(st, cur.jti, alice, now, 0, 1000, &next, &replay,
					      &out),
			 0);
	ck_assert_int_eq(out, STORE_ROTATED);
	ck_assert_int_eq(next.session_created_at, now - 10);
	ck_assert_int_eq(next.expires_at, now - 10 + 1000);
	ck_assert_int_eq(count("SELECT count(*) FROM refresh_tokens WHERE expires_at = "
			       "(SELECT created_at + 1000 FROM sessions WHERE id = family)"),
			 1);
	/* past it: ended, nothing recorded */
	ck_assert_int_eq(util_uuid_new(next.jti), 0);
	ck_assert_int_eq(store_refresh_rotate(st, old.jti, alice, now, 0, 50, &next, &replay, &out),
			 0);
	ck_assert_int_eq(out, STORE_EXPIRED);
	ck_assert_int_eq(state(old.family, alice), STORE_SESSION_ENDED);
	ck_assert(!rlive(&old));
	ck_assert_int_eq(state(cur.family, alice), STORE_SESSION_LIVE);
}
END_TEST

static Suite *sessions_suite(void)
{
	Suite *s = suite_create("sessions");
	TCase *tc = tcase_create("sessions");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, login_starts_one_session);
	tcase_add_test(tc, login_refused_once_disabled_or_deleted);
	tcase_add_test(tc, rotation_stays_reuse_ends);
	tcase_add_test(tc, user_sessions_end_all_of_them);
	tcase_add_test(tc, refresh_logout);
	tcase_add_test(tc, session_end_is_one_and_own);
	tcase_add_test(tc, disable_ends_sessions_keeps_api_tokens);
	tcase_add_test(tc, set_active_false_is_a_disable);
	tcase_add_test(tc, disable_revoke_deletes_api_tokens);
	tcase_add_test(tc, password_change_ends_sessions_rehash_does_not);
	tcase_add_test(tc, remove_member_deletes_that_teams_tokens);
	tcase_add_test(tc, refresh_live_needs_owner_session_and_active_user);
	tcase_add_test(tc, session_goes_with_its_last_refresh_row);
	tcase_add_test(tc, absolute_lifetime_cuts_and_ends);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return UNIT_MAIN(sessions_suite(), "sessions", base, NULL);
}
