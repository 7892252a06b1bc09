/* SPDX-License-Identifier: MIT */
/*
 * This file is the one list of rule tests of include/tokend/store.h that
 * every backend runs (store_rules.h). Each rule takes an opened, migrated
 * store, makes its own users and teams, and passes explicit times: no rule
 * sleeps. Properties proven:
 * - a rotation of an unused token is ROTATED, stays in the session and
 *   spends the old token; the same token again inside the grace window is
 *   REPLAYED with the same successor (nothing new recorded), unless the
 *   successor was used already; after the window (or with no window) it is
 *   REUSED and the session ends: its successor stops being live, and a
 *   rotation of it is ENDED; a rotation from the successor inside the
 *   window proceeds;
 * - a session past its absolute lifetime is EXPIRED (and ended); before
 *   that a rotation cuts next->expires_at to the session's end;
 * - another user's token is UNKNOWN and changes nothing; a disabled user's
 *   token is INACTIVE;
 * - a commit hook that fails rolls the rotation back: the token is unused
 *   afterwards and rotates again;
 * - of 50 concurrent rotations of one token exactly one is ROTATED; the
 *   others are REPLAYED with its successor (grace > 0), or one REUSED and
 *   the rest ENDED (grace 0);
 * - logout: ENDED for an unused token or a stand-in inside the window,
 *   REUSED outside it (the session ends all the same), REFUSED for an
 *   ended session, another's or an unknown token, a disabled user, and a
 *   session past its lifetime (which it ends);
 * - a login is refused for a disabled or deleted user and records nothing;
 * - store_session_end ends one session of its own user only;
 *   store_user_sessions_end, store_user_change_password and
 *   store_user_disable end them all and an enable brings none back;
 *   the rehash (store_user_set_password) ends none;
 * - deleting a user takes its sessions, tokens and memberships with it;
 * - the API-token cap: exactly cap live tokens, then ECONFLICT (expired
 *   tokens and other teams do not count); 50 concurrent issues never
 *   exceed it; a delete, a purge, leaving the team and a disable that
 *   deletes tokens each give back exactly the places they free, and
 *   expired rows not yet purged take none;
 * - the list shows a user's unexpired tokens in a team, newest first; the
 *   delete removes only those; the version goes up on every add and delete
 *   (and with a member's removal), and is 0 with member = false for a
 *   non-member;
 * - a disable keeps API tokens (not live until an enable) unless asked to
 *   delete them; leaving a team deletes the tokens in that team only;
 * - a purge deletes at most limit rows of each table per call, expired
 *   rows only, and a session goes with its last refresh row;
 * - a key is in use while an unused refresh token, a recent access token
 *   or an unexpired API token it signed may be valid;
 * - an import batch is all or nothing: an existing username (without
 *   update) or a missing team names the user at fault and writes nothing of
 *   the batch; with update a new hash or a disable ends the user's sessions,
 *   a user already as given is skipped (its sessions live), and an existing
 *   membership keeps its role.
 */
#include "store_rules.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokend/err.h"
#include "tokend/util.h"

#define HASH \
	"pbkdf2_sha256$1000$saltsaltsaltsaltsaltsa$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y="
#define HASH2 \
	"pbkdf2_sha256$1000$othersaltothersaltoth$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y="
#define NOBODY "00000000-0000-4000-8000-000000000000"
#define LIFE 3600 /* a refresh token's lifetime */
#define GRACE 30  /* the grace window of most rules */
#define THREADS 50

/* Two users and two teams of one rule: alice in Red and Blue, bob in Red. */
struct fx {
	struct store *st;
	char alice[UUID_STR_LEN], bob[UUID_STR_LEN];
	char alice_name[64], bob_name[64];
	char red[UUID_STR_LEN], blue[UUID_STR_LEN];
	char red_name[64], blue_name[64];
	char kid[STORE_KID_MAX + 1]; /* unique to the rule: store_key_in_use asks by kid */
	int64_t t0;
};

static void unique(char *out, size_t len, const char *prefix)
{
	char u[UUID_STR_LEN];

	ck_assert_int_eq(util_uuid_new(u), 0);
	snprintf(out, len, "%s-%.8s", prefix, u);
}

static void fx_init(struct fx *f, struct store *st)
{
	memset(f, 0, sizeof(*f));
	f->st = st;
	f->t0 = util_now();
	unique(f->alice_name, sizeof f->alice_name, "alice");
	unique(f->bob_name, sizeof f->bob_name, "bob");
	unique(f->red_name, sizeof f->red_name, "Red");
	unique(f->blue_name, sizeof f->blue_name, "Blue");
	unique(f->kid, sizeof f->kid, "k");
	ck_assert_int_eq(store_user_add(st, f->alice_name, HASH, f->alice), 0);
	ck_assert_int_eq(store_user_add(st, f->bob_name, HASH, f->bob), 0);
	ck_assert_int_eq(store_team_add(st, f->red_name, f->red), 0);
	ck_assert_int_eq(store_team_add(st, f->blue_name, f->blue), 0);
	ck_assert_int_eq(store_team_add_member(st, f->red_name, f->alice_name, "member"), 0);
	ck_assert_int_eq(store_team_add_member(st, f->blue_name, f->alice_name, "admin"), 0);
	ck_assert_int_eq(store_team_add_member(st, f->red_name, f->bob_name, "member"), 0);
}

/* A refresh token of user issued at t, not yet recorded (family = its jti). */
static void token_new(const struct fx *f, struct store_refresh *r, const char *user, int64_t t)
{
	memset(r, 0, sizeof(*r));
	ck_assert_int_eq(util_uuid_new(r->jti), 0);
	ck_assert_int_eq(util_uuid_new(r->access_jti), 0);
	memcpy(r->family, r->jti, UUID_STR_LEN);
	snprintf(r->user_uuid, sizeof r->user_uuid, "%s", user);
	snprintf(r->kid, sizeof r->kid, "%s", f->kid);
	r->issued_at = t;
	r->expires_at = t + LIFE;
}

static void login_at(const struct fx *f, struct store_refresh *r, const char *user, int64_t t)
{
	token_new(f, r, user, t);
	ck_assert_int_eq(store_login_record(f->st, r), 0);
}

/* Rotates old of user at now into a fresh *next; returns the outcome. */
static enum store_rotation rotate(const struct fx *f, const char *old, const char *user,
				  int64_t now, long grace, long lifetime,
				  struct store_refresh *next, struct store_refresh *replay)
{
	struct store_refresh tmp;
	enum store_rotation o;

	token_new(f, next, user, now);
	memset(next->family, 0, sizeof next->family);
	ck_assert_int_eq(store_refresh_rotate(f->st, old, user, now, grace, lifetime, next,
					      replay ? replay : &tmp, &o),
			 0);
	return o;
}

static enum store_logout logout(const struct fx *f, const char *jti, const char *user, int64_t now,
				long grace, long lifetime)
{
	enum store_logout o;

	ck_assert_int_eq(store_refresh_logout(f->st, jti, user, now, grace, lifetime, &o), 0);
	return o;
}

static bool live(const struct fx *f, const struct store_refresh *r)
{
	bool l = true;

	ck_assert_int_eq(store_refresh_live(f->st, r->jti, r->user_uuid, &l), 0);
	return l;
}

static enum store_session state(const struct fx *f, const char *sid, const char *user)
{
	enum store_session s;

	ck_assert_int_eq(store_session_state(f->st, sid, user, &s), 0);
	return s;
}

/* An API token of user in team issued at t, expiring at exp. */
static void api_new(const struct fx *f, struct store_api_token *t, const char *user,
		    const char *team, int64_t at, int64_t exp)
{
	memset(t, 0, sizeof(*t));
	ck_assert_int_eq(util_uuid_new(t->jti), 0);
	snprintf(t->user_uuid, sizeof t->user_uuid, "%s", user);
	snprintf(t->team_uuid, sizeof t->team_uuid, "%s", team);
	snprintf(t->kid, sizeof t->kid, "%s", f->kid);
	t->issued_at = t->updated_at = at;
	t->expires_at = exp;
}

/*
 * The two calls that know how store.h takes an API token: the token string
 * of t is "tok-<jti>", and these are the only places that turn it into what
 * store_api_token_add and the lookup by token want.
 */
static void api_token_string(const struct store_api_token *t, char *out, size_t len)
{
	snprintf(out, len, "tok-%s", t->jti);
}

static int api_add(struct store *st, struct store_api_token *t, long cap)
{
	char token[64];

	api_token_string(t, token, sizeof token);
	return store_api_token_add(st, t, token, cap);
}

static int api_find(struct store *st, const struct store_api_token *t, char jti[UUID_STR_LEN])
{
	char token[64];

	api_token_string(t, token, sizeof token);
	return store_api_token_find(st, token, jti);
}

static int64_t version(const struct fx *f, const char *team, const char *user)
{
	bool member = false;
	int64_t v = -1;

	ck_assert_int_eq(store_api_token_version(f->st, team, user, &member, &v), 0);
	ck_assert(member);
	return v;
}

static int count_fn(const struct store_api_token *t, void *arg)
{
	(void)t;
	++*(long *)arg;
	return 0;
}

static long api_count(const struct fx *f, const char *user, const char *team, int64_t now)
{
	long n = 0;

	ck_assert_int_eq(store_api_token_list(f->st, user, team, now, count_fn, &n), 0);
	return n;
}

/* Rotation. */

static void rule_rotate_once(struct fx *f)
{
	struct store_refresh r0, n1;

	login_at(f, &r0, f->alice, f->t0);
	ck_assert(live(f, &r0));
	ck_assert_int_eq(rotate(f, r0.jti, f->alice, f->t0 + 10, GRACE, 0, &n1, NULL),
			 STORE_ROTATED);
	ck_assert_str_eq(n1.family, r0.jti);
	ck_assert_int_eq(n1.session_created_at, f->t0);
	ck_assert(!live(f, &r0));
	ck_assert(live(f, &n1));
	ck_assert_int_eq(state(f, r0.jti, f->alice), STORE_SESSION_LIVE);
}

static void rule_replay_in_grace(struct fx *f)
{
	struct store_refresh r0, n1, n2, replay;

	login_at(f, &r0, f->alice, f->t0);
	ck_assert_int_eq(rotate(f, r0.jti, f->alice, f->t0 + 10, GRACE, 0, &n1, NULL),
			 STORE_ROTATED);
	memset(&replay, 0, sizeof replay);
	ck_assert_int_eq(rotate(f, r0.jti, f->alice, f->t0 + 10 + GRACE, GRACE, 0, &n2, &replay),
			 STORE_REPLAYED);
	ck_assert_str_eq(replay.jti, n1.jti);
	ck_assert_str_eq(replay.access_jti, n1.access_jti);
	ck_assert_str_eq(replay.family, r0.jti);
	ck_assert_str_eq(replay.kid, n1.kid);
	ck_assert_int_eq(replay.issued_at, n1.issued_at);
	ck_assert_int_eq(replay.expires_at, n1.expires_at);
	ck_assert_int_eq(replay.session_created_at, f->t0);
	ck_assert(live(f, &n1));
	ck_assert(!live(f, &n2)); /* nothing new was recorded */
	ck_assert_int_eq(state(f, r0.jti, f->alice), STORE_SESSION_LIVE);
}

static void rule_reuse_after_grace(struct fx *f)
{
	struct store_refresh r0, n1, n2, n3;

	login_at(f, &r0, f->alice, f->t0);
	ck_assert_int_eq(rotate(f, r0.jti, f->alice, f->t0 + 10, GRACE, 0, &n1, NULL),
			 STORE_ROTATED);
	ck_assert_int_eq(rotate(f, r0.jti, f->alice, f->t0 + 11 + GRACE, GRACE, 0, &n2, NULL),
			 STORE_REUSED);
	ck_assert(!live(f, &n1));
	ck_assert(!live(f, &n2));
	ck_assert_int_eq(state(f, r0.jti, f->alice), STORE_SESSION_ENDED);
	/* The thief's successor, or the victim's: the session has ended. */
	ck_assert_int_eq(rotate(f, n1.jti, f->alice, f->t0 + 12 + GRACE, GRACE, 0, &n3, NULL),
			 STORE_ENDED);
	ck_assert(!live(f, &n3));
}

static void rule_reuse_without_grace(struct fx *f)
{
	struct store_refresh r0, n1, n2;

	login_at(f, &r0, f->alice, f->t0);
	ck_assert_int_eq(rotate(f, r0.jti, f->alice, f->t0 + 10, 0, 0, &n1, NULL), STORE_ROTATED);
	ck_assert_int_eq(rotate(f, r0.jti, f->alice, f->t0 + 10, 0, 0, &n2, NULL), STORE_REUSED);
	ck_assert(!live(f, &n1));
	ck_assert_int_eq(state(f, r0.jti, f->alice), STORE_SESSION_ENDED);
}

/* The window stands for a successor still unused: once it was used, it is theft. */
static void rule_replay_needs_unused_successor(struct fx *f)
{
	struct store_refresh r0, n1, n2, n3;

	login_at(f, &r0, f->alice, f->t0);
	ck_assert_int_eq(rotate(f, r0.jti, f->alice, f->t0 + 10, GRACE, 0, &n1, NULL),
			 STORE_ROTATED);
	ck_assert_int_eq(rotate(f, n1.jti, f->alice, f->t0 + 12, GRACE, 0, &n2, NULL),
			 STORE_ROTATED);
	ck_assert(live(f, &n2));
	ck_assert_int_eq(rotate(f, r0.jti, f->alice, f->t0 + 14, GRACE, 0, &n3, NULL),
			 STORE_REUSED);
	ck_assert(!live(f, &n2));
	ck_assert_int_eq(state(f, r0.jti, f->alice), STORE_SESSION_ENDED);
}

static void rule_rotate_successor_in_window(struct fx *f)
{
	struct store_refresh r0, n1, n2;

	login_at(f, &r0, f->alice, f->t0);
	ck_assert_int_eq(rotate(f, r0.jti, f->alice, f->t0 + 10, GRACE, 0, &n1, NULL),
			 STORE_ROTATED);
	ck_assert_int_eq(rotate(f, n1.jti, f->alice, f->t0 + 11, GRACE, 0, &n2, NULL),
			 STORE_ROTATED);
	ck_assert_str_eq(n2.family, r0.jti);
	ck_assert(live(f, &n2));
	ck_assert(!live(f, &n1));
	ck_assert_int_eq(state(f, r0.jti, f->alice), STORE_SESSION_LIVE);
}

static void rule_session_lifetime(struct fx *f)
{
	struct store_refresh r0, n1, n2;
	const long lifetime = 100;

	login_at(f, &r0, f->alice, f->t0);
	ck_assert_int_eq(rotate(f, r0.jti, f->alice, f->t0 + 50, GRACE, lifetime, &n1, NULL),
			 STORE_ROTATED);
	ck_assert_int_eq(n1.expires_at, f->t0 + lifetime); /* cut to the session's end */
	ck_assert_int_eq(n1.session_created_at, f->t0);
	ck_assert(live(f, &n1));
	ck_assert_int_eq(rotate(f, n1.jti, f->alice, f->t0 + lifetime, GRACE, lifetime, &n2, NULL),
			 STORE_EXPIRED);
	ck_assert(!live(f, &n1));
	ck_assert(!live(f, &n2));
	ck_assert_int_eq(state(f, r0.jti, f->alice), STORE_SESSION_ENDED);
	/* A token that ends before the session keeps its own end. */
	login_at(f, &r0, f->alice, f->t0);
	ck_assert_int_eq(rotate(f, r0.jti, f->alice, f->t0 + 1, GRACE, 10 * LIFE, &n1, NULL),
			 STORE_ROTATED);
	ck_assert_int_eq(n1.expires_at, f->t0 + 1 + LIFE);
}

static void rule_others_token_unknown(struct fx *f)
{
	struct store_refresh r0, n1, n2;

	login_at(f, &r0, f->alice, f->t0);
	ck_assert_int_eq(rotate(f, r0.jti, f->bob, f->t0 + 10, GRACE, 0, &n1, NULL), STORE_UNKNOWN);
	ck_assert(live(f, &r0));
	ck_assert(!live(f, &n1));
	ck_assert_int_eq(state(f, r0.jti, f->alice), STORE_SESSION_LIVE);
	ck_assert_int_eq(state(f, r0.jti, f->bob), STORE_SESSION_ENDED);
	ck_assert_int_eq(rotate(f, NOBODY, f->alice, f->t0 + 10, GRACE, 0, &n1, NULL),
			 STORE_UNKNOWN);
	ck_assert_int_eq(rotate(f, r0.jti, f->alice, f->t0 + 10, GRACE, 0, &n2, NULL),
			 STORE_ROTATED);
}

struct hook {
	int rc;
	int calls;
	struct store_refresh seen;
};

static int hook_fn(const struct store_refresh *next, void *arg)
{
	struct hook *h = arg;

	h->calls++;
	h->seen = *next;
	return h->rc;
}

static void rule_commit_hook_rolls_back(struct fx *f)
{
	struct store_refresh r0, n1, n2, replay;
	struct hook h = {.rc = TOKEND_EIO};
	enum store_rotation o;

	login_at(f, &r0, f->alice, f->t0);
	token_new(f, &n1, f->alice, f->t0 + 10);
	ck_assert_int_eq(store_refresh_rotate_then(f->st, r0.jti, f->alice, f->t0 + 10, GRACE, 100,
						   &n1, &replay, &o, hook_fn, &h),
			 TOKEND_EIO);
	ck_assert_int_eq(h.calls, 1);
	ck_assert_str_eq(h.seen.family, r0.jti);          /* next in its final form */
	ck_assert_int_eq(h.seen.expires_at, f->t0 + 100); /* cut to the session */
	ck_assert(live(f, &r0));
	ck_assert(!live(f, &n1));
	h.rc = 0;
	token_new(f, &n2, f->alice, f->t0 + 11);
	ck_assert_int_eq(store_refresh_rotate_then(f->st, r0.jti, f->alice, f->t0 + 11, GRACE, 0,
						   &n2, &replay, &o, hook_fn, &h),
			 0);
	ck_assert_int_eq(o, STORE_ROTATED);
	ck_assert_int_eq(h.calls, 2);
	ck_assert(live(f, &n2));
}

/* Concurrent rotations of one token. */

struct race {
	const struct fx *f;
	const char *jti;
	long grace;
	pthread_barrier_t *go;
	struct store_refresh next, replay;
	enum store_rotation outcome;
	int rc;
};

static void *race_main(void *arg)
{
	struct race *r = arg;

	token_new(r->f, &r->next, r->f->alice, r->f->t0 + 10);
	pthread_barrier_wait(r->go);
	r->rc = store_refresh_rotate(r->f->st, r->jti, r->f->alice, r->f->t0 + 10, r->grace, 0,
				     &r->next, &r->replay, &r->outcome);
	return NULL;
}

static void race(struct fx *f, long grace, long counts[STORE_EXPIRED + 1],
		 struct store_refresh *winner, struct race *rs)
{
	struct store_refresh r0;
	pthread_barrier_t go;
	pthread_t th[THREADS];

	login_at(f, &r0, f->alice, f->t0);
	ck_assert_int_eq(pthread_barrier_init(&go, NULL, THREADS), 0);
	for (int i = 0; i < THREADS; i++) {
		rs[i] = (struct race){.f = f, .jti = r0.jti, .grace = grace, .go = &go};
		ck_assert_int_eq(pthread_create(&th[i], NULL, race_main, &rs[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&go);
	for (int i = 0; i < THREADS; i++) {
		ck_assert_int_eq(rs[i].rc, 0);
		counts[rs[i].outcome]++;
		if (rs[i].outcome == STORE_ROTATED)
			*winner = rs[i].next;
	}
}

static void rule_concurrent_rotation_grace(struct fx *f)
{
	static struct race rs[THREADS];
	long counts[STORE_EXPIRED + 1] = {0};
	struct store_refresh winner;

	race(f, GRACE, counts, &winner, rs);
	ck_assert_int_eq(counts[STORE_ROTATED], 1);
	ck_assert_int_eq(counts[STORE_REPLAYED], THREADS - 1);
	for (int i = 0; i < THREADS; i++)
		if (rs[i].outcome == STORE_REPLAYED)
			ck_assert_str_eq(rs[i].replay.jti, winner.jti);
	ck_assert(live(f, &winner));
}

static void rule_concurrent_rotation_no_grace(struct fx *f)
{
	static struct race rs[THREADS];
	long counts[STORE_EXPIRED + 1] = {0};
	struct store_refresh winner;

	race(f, 0, counts, &winner, rs);
	ck_assert_int_eq(counts[STORE_ROTATED], 1);
	ck_assert_int_eq(counts[STORE_REUSED], 1); /* ends the session: the rest find it ended */
	ck_assert_int_eq(counts[STORE_ENDED], THREADS - 2);
	ck_assert(!live(f, &winner));
	ck_assert_int_eq(state(f, winner.family, f->alice), STORE_SESSION_ENDED);
}

/* Logout. */

static void rule_logout_ends(struct fx *f)
{
	struct store_refresh r0, other, n1;

	login_at(f, &r0, f->alice, f->t0);
	login_at(f, &other, f->alice, f->t0);
	ck_assert_int_eq(logout(f, r0.jti, f->alice, f->t0 + 5, GRACE, 0), STORE_LOGOUT_ENDED);
	ck_assert(!live(f, &r0));
	ck_assert_int_eq(state(f, r0.jti, f->alice), STORE_SESSION_ENDED);
	ck_assert_int_eq(logout(f, r0.jti, f->alice, f->t0 + 6, GRACE, 0), STORE_LOGOUT_REFUSED);
	ck_assert_int_eq(rotate(f, r0.jti, f->alice, f->t0 + 7, GRACE, 0, &n1, NULL), STORE_ENDED);
	ck_assert(live(f, &other)); /* another session of the same user */
}

static void rule_logout_standin_and_reuse(struct fx *f)
{
	struct store_refresh r0, n1, s0, m1;

	/* A used token inside the window stands for its successor. */
	login_at(f, &r0, f->alice, f->t0);
	ck_assert_int_eq(rotate(f, r0.jti, f->alice, f->t0 + 10, GRACE, 0, &n1, NULL),
			 STORE_ROTATED);
	ck_assert_int_eq(logout(f, r0.jti, f->alice, f->t0 + 20, GRACE, 0), STORE_LOGOUT_ENDED);
	ck_assert(!live(f, &n1));
	ck_assert_int_eq(state(f, r0.jti, f->alice), STORE_SESSION_ENDED);
	/* Outside it, a reuse: the session ends all the same. */
	login_at(f, &s0, f->alice, f->t0);
	ck_assert_int_eq(rotate(f, s0.jti, f->alice, f->t0 + 10, GRACE, 0, &m1, NULL),
			 STORE_ROTATED);
	ck_assert_int_eq(logout(f, s0.jti, f->alice, f->t0 + 11 + GRACE, GRACE, 0),
			 STORE_LOGOUT_REUSED);
	ck_assert(!live(f, &m1));
	ck_assert_int_eq(state(f, s0.jti, f->alice), STORE_SESSION_ENDED);
}

static void rule_logout_refused(struct fx *f)
{
	struct store_refresh r0, b0;

	login_at(f, &r0, f->alice, f->t0);
	login_at(f, &b0, f->bob, f->t0);
	ck_assert_int_eq(logout(f, r0.jti, f->bob, f->t0 + 1, GRACE, 0), STORE_LOGOUT_REFUSED);
	ck_assert_int_eq(logout(f, NOBODY, f->alice, f->t0 + 1, GRACE, 0), STORE_LOGOUT_REFUSED);
	ck_assert(live(f, &r0));
	ck_assert_int_eq(state(f, r0.jti, f->alice), STORE_SESSION_LIVE);
	/* Past the session's lifetime: refused, and the session ends. */
	ck_assert_int_eq(logout(f, r0.jti, f->alice, f->t0 + 100, GRACE, 100),
			 STORE_LOGOUT_REFUSED);
	ck_assert_int_eq(state(f, r0.jti, f->alice), STORE_SESSION_ENDED);
	ck_assert_int_eq(store_user_disable(f->st, f->bob_name, f->t0 + 1, false), 0);
	ck_assert_int_eq(logout(f, b0.jti, f->bob, f->t0 + 2, GRACE, 0), STORE_LOGOUT_REFUSED);
}

/* Sessions and users. */

static void rule_login_refused_inactive(struct fx *f)
{
	struct store_refresh r0;
	struct store_user u;

	ck_assert_int_eq(store_user_disable(f->st, f->alice_name, f->t0, false), 0);
	token_new(f, &r0, f->alice, f->t0);
	ck_assert_int_eq(store_login_record(f->st, &r0), TOKEND_ENOTFOUND);
	ck_assert_int_eq(store_user_set_active(f->st, f->alice_name, true), 0);
	ck_assert_int_eq(state(f, r0.jti, f->alice), STORE_SESSION_ENDED);
	ck_assert(!live(f, &r0));
	ck_assert_int_eq(store_user_get_by_uuid(f->st, f->alice, &u), 0);
	ck_assert_int_eq(u.last_login, 0);
	login_at(f, &r0, f->alice, f->t0 + 1);
	ck_assert_int_eq(store_user_get_by_uuid(f->st, f->alice, &u), 0);
	ck_assert_int_eq(u.last_login, f->t0 + 1);
	ck_assert_int_eq(store_user_delete(f->st, f->bob_name), 0);
	token_new(f, &r0, f->bob, f->t0);
	ck_assert_int_eq(store_login_record(f->st, &r0), TOKEND_ENOTFOUND);
}

static void rule_disable_ends_sessions(struct fx *f)
{
	struct store_refresh a, b, n1;
	struct store_user u;

	login_at(f, &a, f->alice, f->t0);
	login_at(f, &b, f->alice, f->t0 + 1);
	ck_assert_int_eq(store_user_disable(f->st, f->alice_name, f->t0 + 2, false), 0);
	ck_assert_int_eq(store_user_get_by_name(f->st, f->alice_name, &u), 0);
	ck_assert(!u.is_active);
	ck_assert_int_eq(state(f, a.jti, f->alice), STORE_SESSION_INACTIVE);
	ck_assert_int_eq(rotate(f, a.jti, f->alice, f->t0 + 3, GRACE, 0, &n1, NULL),
			 STORE_INACTIVE);
	ck_assert_int_eq(store_user_set_active(f->st, f->alice_name, true), 0);
	ck_assert_int_eq(state(f, a.jti, f->alice), STORE_SESSION_ENDED);
	ck_assert_int_eq(state(f, b.jti, f->alice), STORE_SESSION_ENDED);
	ck_assert(!live(f, &a));
	ck_assert(!live(f, &b));
	ck_assert_int_eq(rotate(f, b.jti, f->alice, f->t0 + 4, GRACE, 0, &n1, NULL), STORE_ENDED);
	ck_assert_int_eq(store_user_disable(f->st, NOBODY, f->t0, false), TOKEND_ENOTFOUND);
	ck_assert_int_eq(store_user_set_active(f->st, NOBODY, true), TOKEND_ENOTFOUND);
}

static void rule_session_end(struct fx *f)
{
	struct store_refresh a, b;
	bool ended = true;

	login_at(f, &a, f->alice, f->t0);
	login_at(f, &b, f->alice, f->t0);
	ck_assert_int_eq(store_session_end(f->st, a.jti, f->bob, f->t0 + 1, &ended), 0);
	ck_assert(!ended);
	ck_assert(live(f, &a));
	ck_assert_int_eq(store_session_end(f->st, a.jti, f->alice, f->t0 + 1, &ended), 0);
	ck_assert(ended);
	ck_assert(!live(f, &a));
	ck_assert_int_eq(state(f, a.jti, f->alice), STORE_SESSION_ENDED);
	ck_assert_int_eq(state(f, b.jti, f->alice), STORE_SESSION_LIVE);
	ck_assert_int_eq(store_session_end(f->st, a.jti, f->alice, f->t0 + 2, &ended), 0);
	ck_assert(!ended);
	ck_assert_int_eq(state(f, NOBODY, NOBODY), STORE_SESSION_NO_USER);
}

static void rule_user_sessions_end(struct fx *f)
{
	struct store_refresh a, b, c;
	long ended = -1;

	login_at(f, &a, f->alice, f->t0);
	login_at(f, &b, f->alice, f->t0);
	login_at(f, &c, f->bob, f->t0);
	ck_assert_int_eq(store_user_sessions_end(f->st, f->alice, f->t0 + 1, &ended), 0);
	ck_assert_int_eq(ended, 2);
	ck_assert(!live(f, &a));
	ck_assert(!live(f, &b));
	ck_assert(live(f, &c));
	ck_assert_int_eq(store_user_sessions_end(f->st, f->alice, f->t0 + 2, &ended), 0);
	ck_assert_int_eq(ended, 0);
	/* A login's rehash ends nothing; an operator's password change ends all. */
	ck_assert_int_eq(store_user_set_password(f->st, f->bob, HASH2), 0);
	ck_assert(live(f, &c));
	ck_assert_int_eq(store_user_change_password(f->st, f->bob, HASH, f->t0 + 3), 0);
	ck_assert(!live(f, &c));
	ck_assert_int_eq(state(f, c.jti, f->bob), STORE_SESSION_ENDED);
	ck_assert_int_eq(store_user_change_password(f->st, NOBODY, HASH, f->t0), TOKEND_ENOTFOUND);
}

static void rule_user_delete_cascades(struct fx *f)
{
	struct store_refresh a, n1;
	struct store_api_token t;
	struct store_team team;
	char jti[UUID_STR_LEN];
	bool member = true, in_use = true;
	int64_t v = -1;

	login_at(f, &a, f->alice, f->t0);
	api_new(f, &t, f->alice, f->red, f->t0, f->t0 + LIFE);
	ck_assert_int_eq(api_add(f->st, &t, 10), 0);
	ck_assert_int_eq(store_user_delete(f->st, f->alice_name), 0);
	ck_assert_int_eq(state(f, a.jti, f->alice), STORE_SESSION_NO_USER);
	ck_assert_int_eq(rotate(f, a.jti, f->alice, f->t0 + 1, GRACE, 0, &n1, NULL), STORE_UNKNOWN);
	ck_assert_int_eq(api_find(f->st, &t, jti), TOKEND_ENOTFOUND);
	ck_assert_int_eq(store_api_token_version(f->st, f->red, f->alice, &member, &v), 0);
	ck_assert(!member);
	ck_assert_int_eq(v, 0);
	ck_assert_int_eq(store_key_in_use(f->st, f->kid, f->t0 + 1, 0, &in_use), 0);
	ck_assert(!in_use);
	ck_assert_int_eq(store_team_get(f->st, f->blue_name, &team), 0);
	ck_assert_int_eq(team.members, 0);
	ck_assert_int_eq(store_user_delete(f->st, f->alice_name), TOKEND_ENOTFOUND);
}

/* API tokens. */

static void rule_api_cap(struct fx *f)
{
	struct store_api_token t;
	const long cap = 3;

	/* An expired token does not count, nor one in another team. */
	api_new(f, &t, f->alice, f->red, f->t0 - 10, f->t0);
	ck_assert_int_eq(api_add(f->st, &t, cap), 0);
	api_new(f, &t, f->alice, f->blue, f->t0, f->t0 + LIFE);
	ck_assert_int_eq(api_add(f->st, &t, cap), 0);
	for (long i = 0; i < cap; i++) {
		api_new(f, &t, f->alice, f->red, f->t0, f->t0 + LIFE);
		ck_assert_int_eq(api_add(f->st, &t, cap), 0);
	}
	api_new(f, &t, f->alice, f->red, f->t0, f->t0 + LIFE);
	ck_assert_int_eq(api_add(f->st, &t, cap), TOKEND_ECONFLICT);
	ck_assert_int_eq(api_count(f, f->alice, f->red, f->t0), cap);
	/* Once one expires there is room again. */
	api_new(f, &t, f->alice, f->red, f->t0 + LIFE, f->t0 + 2 * LIFE);
	ck_assert_int_eq(api_add(f->st, &t, cap), 0);
	/* bob's own cap is his own */
	api_new(f, &t, f->bob, f->red, f->t0, f->t0 + LIFE);
	ck_assert_int_eq(api_add(f->st, &t, cap), 0);
}

/* Issues tokens of alice in Red at now (expiring at exp) until one is
 * refused under cap; returns how many were issued. */
static long fill(const struct fx *f, long cap, int64_t now, int64_t exp,
		 struct store_api_token *last)
{
	struct store_api_token t;
	long n = 0;
	int rc;

	for (;;) {
		api_new(f, &t, f->alice, f->red, now, exp);
		rc = api_add(f->st, &t, cap);
		if (rc != 0)
			break;
		*last = t;
		ck_assert_int_le(++n, cap);
	}
	ck_assert_int_eq(rc, TOKEND_ECONFLICT);
	return n;
}

/*
 * The cap counts live tokens however the rows went: every path that
 * deletes a token gives its place back, and expired rows still waiting
 * for the purge (rows >= cap) take none.
 */
static void rule_api_cap_after_deletes(struct fx *f)
{
	struct store_api_token last, bobs;
	const char *jtis[1];
	const long cap = 3;
	const int64_t t1 = f->t0 + 10, t2 = f->t0 + 20;
	long deleted = 0, n = 0;

	ck_assert_int_eq(fill(f, cap, f->t0, t1, &last), cap);
	/* At t1 the three have expired but are still rows: three more. */
	ck_assert_int_eq(fill(f, cap, t1, t1 + LIFE, &last), cap);
	ck_assert_int_eq(api_count(f, f->alice, f->red, t1), cap);
	/* The purge of the expired ones frees nothing live. */
	ck_assert_int_eq(store_purge(f->st, t1, 10000, &n), 0);
	ck_assert_int_ge(n, cap);
	ck_assert_int_eq(fill(f, cap, t1, t1 + LIFE, &last), 0);
	/* A delete: one place, exactly. */
	jtis[0] = last.jti;
	ck_assert_int_eq(store_api_token_delete(f->st, f->alice, f->red, t1, jtis, 1, &deleted), 0);
	ck_assert_int_eq(deleted, 1);
	ck_assert_int_eq(fill(f, cap, t1, t1 + LIFE, &last), 1);
	/* Leaving the team and joining again: all three places. */
	ck_assert_int_eq(store_team_remove_member(f->st, f->red_name, f->alice_name), 0);
	ck_assert_int_eq(store_team_add_member(f->st, f->red_name, f->alice_name, "member"), 0);
	ck_assert_int_eq(fill(f, cap, t2, t2 + LIFE, &last), cap);
	/* A disable that deletes the tokens (every team): all three again. */
	ck_assert_int_eq(store_user_disable(f->st, f->alice_name, t2, true), 0);
	ck_assert_int_eq(store_user_set_active(f->st, f->alice_name, true), 0);
	ck_assert_int_eq(fill(f, cap, t2, t2 + LIFE, &last), cap);
	/* bob's tokens and his deletion leave alice's count alone. */
	api_new(f, &bobs, f->bob, f->red, t2, t2 + LIFE);
	ck_assert_int_eq(api_add(f->st, &bobs, cap), 0);
	ck_assert_int_eq(store_user_delete(f->st, f->bob_name), 0);
	ck_assert_int_eq(fill(f, cap, t2, t2 + LIFE, &last), 0);
	ck_assert_int_eq(api_count(f, f->alice, f->red, t2), cap);
}

struct issue {
	const struct fx *f;
	pthread_barrier_t *go;
	long cap;
	int rc;
};

static void *issue_main(void *arg)
{
	struct issue *is = arg;
	struct store_api_token t;

	api_new(is->f, &t, is->f->alice, is->f->red, is->f->t0, is->f->t0 + LIFE);
	pthread_barrier_wait(is->go);
	is->rc = api_add(is->f->st, &t, is->cap);
	return NULL;
}

static void rule_api_cap_concurrent(struct fx *f)
{
	static struct issue is[THREADS];
	pthread_barrier_t go;
	pthread_t th[THREADS];
	const long cap = 5;
	long ok = 0;

	ck_assert_int_eq(pthread_barrier_init(&go, NULL, THREADS), 0);
	for (int i = 0; i < THREADS; i++) {
		is[i] = (struct issue){.f = f, .go = &go, .cap = cap};
		ck_assert_int_eq(pthread_create(&th[i], NULL, issue_main, &is[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&go);
	for (int i = 0; i < THREADS; i++) {
		if (is[i].rc == 0)
			ok++;
		else
			ck_assert_int_eq(is[i].rc, TOKEND_ECONFLICT);
	}
	ck_assert_int_eq(ok, cap);
	ck_assert_int_eq(api_count(f, f->alice, f->red, f->t0), cap);
}

struct listing {
	int n;
	char jti[4][UUID_STR_LEN];
};

static int list_fn(const struct store_api_token *t, void *arg)
{
	struct listing *l = arg;

	if (l->n < 4)
		memcpy(l->jti[l->n], t->jti, UUID_STR_LEN);
	l->n++;
	return 0;
}

static void rule_api_list_delete_version(struct fx *f)
{
	struct store_api_token a, b, old, bobs;
	struct listing l = {0};
	const char *jtis[4];
	bool member = true;
	int64_t v0, v1, v2, v3, v = -1;
	long deleted = -1;

	v0 = version(f, f->red, f->alice);
	api_new(f, &a, f->alice, f->red, f->t0, f->t0 + LIFE);
	ck_assert_int_eq(api_add(f->st, &a, 10), 0);
	v1 = version(f, f->red, f->alice);
	ck_assert_int_gt(v1, v0);
	api_new(f, &b, f->alice, f->red, f->t0 + 5, f->t0 + LIFE);
	snprintf(b.name, sizeof b.name, "ci");
	ck_assert_int_eq(api_add(f->st, &b, 10), 0);
	v2 = version(f, f->red, f->alice);
	ck_assert_int_gt(v2, v1);
	api_new(f, &old, f->alice, f->red, f->t0 - 100, f->t0 - 1);
	ck_assert_int_eq(api_add(f->st, &old, 10), 0);
	api_new(f, &bobs, f->bob, f->red, f->t0, f->t0 + LIFE);
	ck_assert_int_eq(api_add(f->st, &bobs, 10), 0);
	v2 = version(f, f->red, f->alice);
	/* Newest first, unexpired only, the user's own in that team. */
	ck_assert_int_eq(store_api_token_list(f->st, f->alice, f->red, f->t0, list_fn, &l), 0);
	ck_assert_int_eq(l.n, 2);
	ck_assert_str_eq(l.jti[0], b.jti);
	ck_assert_str_eq(l.jti[1], a.jti);
	/* The delete skips others', expired and unknown tokens. */
	jtis[0] = bobs.jti;
	jtis[1] = old.jti;
	jtis[2] = NOBODY;
	jtis[3] = a.jti;
	ck_assert_int_eq(store_api_token_delete(f->st, f->alice, f->red, f->t0, jtis, 4, &deleted),
			 0);
	ck_assert_int_eq(deleted, 1);
	v3 = version(f, f->red, f->alice);
	ck_assert_int_gt(v3, v2);
	ck_assert_int_eq(api_count(f, f->alice, f->red, f->t0), 1);
	ck_assert_int_eq(api_count(f, f->bob, f->red, f->t0), 1);
	/* A delete that deletes nothing leaves the version alone. */
	ck_assert_int_eq(store_api_token_delete(f->st, f->alice, f->red, f->t0, jtis, 3, &deleted),
			 0);
	ck_assert_int_eq(deleted, 0);
	ck_assert_int_eq(version(f, f->red, f->alice), v3);
	/* Not a member: no version. */
	ck_assert_int_eq(store_api_token_version(f->st, f->blue, f->bob, &member, &v), 0);
	ck_assert(!member);
	ck_assert_int_eq(v, 0);
}

static void rule_api_live_membership(struct fx *f)
{
	struct store_api_token r, b;
	char jti[UUID_STR_LEN];
	bool l = false;
	int64_t v;

	api_new(f, &r, f->alice, f->red, f->t0, f->t0 + LIFE);
	ck_assert_int_eq(api_add(f->st, &r, 10), 0);
	api_new(f, &b, f->alice, f->blue, f->t0, f->t0 + LIFE);
	ck_assert_int_eq(api_add(f->st, &b, 10), 0);
	ck_assert_int_eq(api_find(f->st, &r, jti), 0);
	ck_assert_str_eq(jti, r.jti);
	ck_assert_int_eq(store_api_token_live(f->st, r.jti, f->alice, f->red, &l), 0);
	ck_assert(l);
	ck_assert_int_eq(store_api_token_live(f->st, r.jti, f->bob, f->red, &l), 0);
	ck_assert(!l);
	ck_assert_int_eq(store_api_token_live(f->st, r.jti, f->alice, f->blue, &l), 0);
	ck_assert(!l);
	/* A disable keeps the tokens, refused until an enable. */
	ck_assert_int_eq(store_user_disable(f->st, f->alice_name, f->t0, false), 0);
	ck_assert_int_eq(store_api_token_live(f->st, r.jti, f->alice, f->red, &l), 0);
	ck_assert(!l);
	ck_assert_int_eq(store_user_set_active(f->st, f->alice_name, true), 0);
	ck_assert_int_eq(store_api_token_live(f->st, r.jti, f->alice, f->red, &l), 0);
	ck_assert(l);
	/* Leaving Red deletes the Red token only; rejoining brings none back. */
	v = version(f, f->red, f->alice);
	ck_assert_int_eq(store_team_remove_member(f->st, f->red_name, f->alice_name), 0);
	ck_assert_int_eq(store_team_remove_member(f->st, f->red_name, f->alice_name),
			 TOKEND_ENOTFOUND);
	ck_assert_int_eq(store_team_add_member(f->st, f->red_name, f->alice_name, "member"), 0);
	ck_assert_int_gt(version(f, f->red, f->alice), v);
	ck_assert_int_eq(store_api_token_live(f->st, r.jti, f->alice, f->red, &l), 0);
	ck_assert(!l);
	ck_assert_int_eq(api_find(f->st, &r, jti), TOKEND_ENOTFOUND);
	ck_assert_int_eq(store_api_token_live(f->st, b.jti, f->alice, f->blue, &l), 0);
	ck_assert(l);
	/* A disable asked to delete them deletes them in every team. */
	ck_assert_int_eq(store_user_disable(f->st, f->alice_name, f->t0, true), 0);
	ck_assert_int_eq(store_user_set_active(f->st, f->alice_name, true), 0);
	ck_assert_int_eq(api_find(f->st, &b, jti), TOKEND_ENOTFOUND);
}

static void rule_teams(struct fx *f)
{
	struct store_team t;
	char uuid[UUID_STR_LEN];
	bool member = false;

	ck_assert_int_eq(store_team_add(f->st, f->red_name, uuid), TOKEND_EEXISTS);
	ck_assert_int_eq(store_user_add(f->st, f->bob_name, HASH, uuid), TOKEND_EEXISTS);
	ck_assert_int_eq(store_team_get(f->st, f->red_name, &t), 0);
	ck_assert_str_eq(t.uuid, f->red);
	ck_assert_int_eq(t.members, 2);
	ck_assert_int_eq(store_team_get(f->st, f->blue, &t), 0);
	ck_assert_str_eq(t.name, f->blue_name);
	ck_assert_int_eq(t.members, 1);
	ck_assert_int_eq(store_team_get(f->st, NOBODY, &t), TOKEND_ENOTFOUND);
	ck_assert_int_eq(store_team_add_member(f->st, f->red_name, f->bob_name, "owner"),
			 TOKEND_EINVAL);
	ck_assert_int_eq(store_team_add_member(f->st, f->red_name, "nobody-at-all", "member"),
			 TOKEND_ENOTFOUND);
	ck_assert_int_eq(store_team_add_member(f->st, "no-such-team", f->bob_name, "member"),
			 TOKEND_ENOTFOUND);
	/* Re-adding updates the role and adds no second membership. */
	ck_assert_int_eq(store_team_add_member(f->st, f->red_name, f->bob_name, "admin"), 0);
	ck_assert_int_eq(store_team_get(f->st, f->red, &t), 0);
	ck_assert_int_eq(t.members, 2);
	ck_assert_int_eq(store_team_is_member(f->st, f->red, f->bob, &member), 0);
	ck_assert(member);
	ck_assert_int_eq(store_team_is_member(f->st, f->blue, f->bob, &member), 0);
	ck_assert(!member);
	ck_assert_int_eq(store_team_remove_member(f->st, f->blue_name, f->bob_name),
			 TOKEND_ENOTFOUND);
}

/* Housekeeping. */

/* Deletes everything due at before, so that the rule counts its own rows. */
static void drain(const struct fx *f, int64_t before)
{
	long n = 1;

	for (int i = 0; n > 0 && i < 1000; i++)
		ck_assert_int_eq(store_purge(f->st, before, 10000, &n), 0);
	ck_assert_int_eq(n, 0);
}

static void rule_purge_batches(struct fx *f)
{
	struct store_refresh r[5], keep, n1;
	struct store_api_token t;
	const int64_t past = f->t0 - 10 * LIFE;
	long n = -1, total = 0;

	drain(f, past);
	for (int i = 0; i < 5; i++) {
		login_at(f, &r[i], f->alice, past - LIFE - i);
		api_new(f, &t, f->alice, f->red, past - LIFE - i, past - i);
		ck_assert_int_eq(api_add(f->st, &t, 100), 0);
	}
	/* A family with an expired row and a live one keeps its session. */
	login_at(f, &keep, f->alice, past - LIFE);
	ck_assert_int_eq(rotate(f, keep.jti, f->alice, past - 10, 0, 0, &n1, NULL), STORE_ROTATED);
	api_new(f, &t, f->alice, f->red, f->t0, f->t0 + LIFE);
	ck_assert_int_eq(api_add(f->st, &t, 100), 0);
	ck_assert_int_eq(store_purge(f->st, past, 2, &n), 0);
	ck_assert_int_eq(n, 4); /* 2 of each table */
	total += n;
	ck_assert_int_eq(store_purge(f->st, past, 2, &n), 0);
	ck_assert_int_eq(n, 4);
	total += n;
	ck_assert_int_eq(store_purge(f->st, past, 2, &n), 0);
	ck_assert_int_le(n, 4);
	total += n;
	ck_assert_int_eq(store_purge(f->st, past, 2, &n), 0);
	ck_assert_int_le(n, 4);
	total += n;
	ck_assert_int_eq(store_purge(f->st, past, 2, &n), 0);
	ck_assert_int_eq(n, 0);
	ck_assert_int_eq(total, 11); /* 6 refresh rows, 5 API tokens */
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(state(f, r[i].jti, f->alice), STORE_SESSION_ENDED);
	ck_assert_int_eq(state(f, keep.jti, f->alice), STORE_SESSION_LIVE);
	ck_assert(live(f, &n1));
	ck_assert_int_eq(api_count(f, f->alice, f->red, f->t0), 1);
}

static void rule_key_in_use(struct fx *f)
{
	struct store_refresh r0, n1;
	struct store_api_token t;
	bool in_use = false;
	const long access = 300;

	ck_assert_int_eq(store_key_in_use(f->st, f->kid, f->t0, access, &in_use), 0);
	ck_assert(!in_use);
	login_at(f, &r0, f->alice, f->t0);
	ck_assert_int_eq(store_key_in_use(f->st, f->kid, f->t0 + 1, access, &in_use), 0);
	ck_assert(in_use);
	/* Rotated to another key: the old one signed an access token still valid. */
	token_new(f, &n1, f->alice, f->t0 + 10);
	snprintf(n1.kid, sizeof n1.kid, "%.14s-b", f->kid);
	{
		struct store_refresh replay;
		enum store_rotation o;
		ck_assert_int_eq(store_refresh_rotate(f->st, r0.jti, f->alice, f->t0 + 10, 0, 0,
						      &n1, &replay, &o),
				 0);
		ck_assert_int_eq(o, STORE_ROTATED);
	}
	ck_assert_int_eq(store_key_in_use(f->st, f->kid, f->t0 + access - 1, access, &in_use), 0);
	ck_assert(in_use);
	ck_assert_int_eq(store_key_in_use(f->st, f->kid, f->t0 + access, access, &in_use), 0);
	ck_assert(!in_use);
	/* An unexpired API token keeps its key in use. */
	api_new(f, &t, f->alice, f->red, f->t0, f->t0 + LIFE);
	ck_assert_int_eq(api_add(f->st, &t, 10), 0);
	ck_assert_int_eq(store_key_in_use(f->st, f->kid, f->t0 + LIFE - 1, access, &in_use), 0);
	ck_assert(in_use);
	ck_assert_int_eq(store_key_in_use(f->st, f->kid, f->t0 + LIFE, access, &in_use), 0);
	ck_assert(!in_use);
}

static void rule_user_import(struct fx *f)
{
	char carol[64], dave[64], ghost[64];
	const char *red_blue[] = {f->red_name, f->blue};
	const char *ghost_team[] = {f->red_name, ghost};
	struct store_import_counts c = {0, 0, 0};
	struct store_refresh r0, r1;
	struct store_user u;
	struct store_team t;
	size_t failed = 99;

	unique(carol, sizeof carol, "carol");
	unique(dave, sizeof dave, "dave");
	unique(ghost, sizeof ghost, "Ghost");
	{
		struct store_import batch[] = {
			{carol, HASH, true, red_blue, 2},
			{dave, HASH, false, NULL, 0},
		};
		ck_assert_int_eq(store_user_import(f->st, batch, 2, false, f->t0, &c, &failed), 0);
		ck_assert_int_eq(c.added, 2);
	}
	ck_assert_int_eq(store_user_get_by_name(f->st, dave, &u), 0);
	ck_assert(!u.is_active);
	ck_assert_int_eq(store_team_get(f->st, f->blue, &t), 0);
	ck_assert_int_eq(t.members, 2); /* alice and carol */
	{
		/* An existing name without update: the new user before it is not kept. */
		char eve[64];
		unique(eve, sizeof eve, "eve");
		struct store_import batch[] = {{eve, HASH, true, NULL, 0},
					       {carol, HASH2, true, NULL, 0}};
		ck_assert_int_eq(store_user_import(f->st, batch, 2, false, f->t0, &c, &failed),
				 TOKEND_EEXISTS);
		ck_assert_uint_eq(failed, 1);
		ck_assert_int_eq(store_user_get_by_name(f->st, eve, &u), TOKEND_ENOTFOUND);
		/* A missing team, even with update. */
		struct store_import bad[] = {{eve, HASH, true, NULL, 0},
					     {dave, HASH, true, ghost_team, 2}};
		ck_assert_int_eq(store_user_import(f->st, bad, 2, true, f->t0, &c, &failed),
				 TOKEND_ENOTFOUND);
		ck_assert_uint_eq(failed, 1);
		ck_assert_int_eq(store_user_get_by_name(f->st, eve, &u), TOKEND_ENOTFOUND);
		ck_assert_int_eq(c.added, 2);
		ck_assert_int_eq(c.updated + c.skipped, 0);
	}
	/* Update: alice as she is is skipped and keeps her session. */
	login_at(f, &r0, f->alice, f->t0);
	login_at(f, &r1, f->bob, f->t0);
	{
		const char *blue[] = {f->blue_name};
		struct store_import same[] = {{f->alice_name, HASH, true, blue, 1}};
		ck_assert_int_eq(store_user_import(f->st, same, 1, true, f->t0 + 1, &c, &failed),
				 0);
		ck_assert_int_eq(c.skipped, 1);
		ck_assert(live(f, &r0));
		ck_assert_int_eq(state(f, r0.jti, f->alice), STORE_SESSION_LIVE);
	}
	{
		/* A new hash for alice, a disable for bob, carol joins Blue again (no change),
		 * dave is enabled: each ends what the operator commands would. */
		const char *blue[] = {f->blue_name};
		struct store_import batch[] = {
			{f->alice_name, HASH2, true, NULL, 0},
			{f->bob_name, HASH, false, blue, 1},
			{carol, HASH, true, blue, 1},
			{dave, HASH, true, NULL, 0},
		};
		ck_assert_int_eq(store_user_import(f->st, batch, 4, true, f->t0 + 2, &c, &failed),
				 0);
		ck_assert_int_eq(c.updated, 3);
		ck_assert_int_eq(c.skipped, 2);
	}
	ck_assert(!live(f, &r0));
	ck_assert_int_eq(state(f, r0.jti, f->alice), STORE_SESSION_ENDED);
	ck_assert(!live(f, &r1));
	ck_assert_int_eq(state(f, r1.jti, f->bob), STORE_SESSION_INACTIVE);
	ck_assert_int_eq(store_user_get_by_name(f->st, f->alice_name, &u), 0);
	ck_assert_str_eq(u.password, HASH2);
	ck_assert_int_eq(store_user_get_by_name(f->st, dave, &u), 0);
	ck_assert(u.is_active);
	ck_assert_int_eq(store_team_get(f->st, f->blue, &t), 0);
	ck_assert_int_eq(t.members, 3); /* alice (still admin), carol, bob */
	ck_assert_int_eq(store_user_import(f->st, NULL, 0, false, f->t0, &c, &failed), 0);
}

/* The list. */

struct rule {
	const char *name;
	void (*run)(struct fx *f);
};

#define RULE(n)              \
	{                    \
#n, rule_##n \
	}
static const struct rule rules[] = {
	RULE(rotate_once),
	RULE(replay_in_grace),
	RULE(reuse_after_grace),
	RULE(reuse_without_grace),
	RULE(replay_needs_unused_successor),
	RULE(rotate_successor_in_window),
	RULE(session_lifetime),
	RULE(others_token_unknown),
	RULE(commit_hook_rolls_back),
	RULE(concurrent_rotation_grace),
	RULE(concurrent_rotation_no_grace),
	RULE(logout_ends),
	RULE(logout_standin_and_reuse),
	RULE(logout_refused),
	RULE(login_refused_inactive),
	RULE(disable_ends_sessions),
	RULE(session_end),
	RULE(user_sessions_end),
	RULE(user_delete_cascades),
	RULE(api_cap),
	RULE(api_cap_after_deletes),
	RULE(api_cap_concurrent),
	RULE(api_list_delete_version),
	RULE(api_live_membership),
	RULE(teams),
	RULE(purge_batches),
	RULE(key_in_use),
	RULE(user_import),
};
#define NRULES ((int)(sizeof(rules) / sizeof(rules[0])))

static const struct store_rules_target *target;

START_TEST(rule)
{
	struct store *st = NULL;
	struct fx f;

	target->open(&st);
	ck_assert_ptr_nonnull(st);
	fx_init(&f, st);
	rules[_i].run(&f);
	target->close(&st);
}
END_TEST

Suite *store_rules_suite(const struct store_rules_target *t)
{
	Suite *s = suite_create(t->name);

	target = t;
	for (int i = 0; i < NRULES; i++) {
		/* One case per rule, so that Check's report names the rule. */
		TCase *tc = tcase_create(rules[i].name);
		tcase_add_loop_test(tc, rule, i, i + 1);
		suite_add_tcase(s, tc);
	}
	return s;
}

int store_rules_run(const struct store_rules_target *t)
{
	SRunner *sr = srunner_create(store_rules_suite(t));
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
