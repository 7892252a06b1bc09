/* SPDX-License-Identifier: MIT */
/*
 * This suite tests the fake backend (src/store/fake/) op by op through
 * src/store/backend.h's table, where its rows must mean what the SQLite
 * statements and triggers mean. (The rules above it run in
 * test_store_rules_fake.c.) Properties proven:
 * - write_end with rc != 0 leaves nothing of the transaction behind and
 *   returns rc; lookups outside a transaction read the last commit only;
 *   concurrent writers serialise;
 * - refresh_state: revoked when the row, or its session, is revoked or the
 *   session is gone; session_created_at falls back to the row's issued_at;
 *   refresh_use spends a row once; refresh_row and refresh_live refuse used
 *   and revoked rows;
 * - sessions_end(sid) revokes the family's rows and ends the session of
 *   that user only; sessions_end(NULL) ends every live one of the user;
 * - a session goes with its family's last refresh row (sql/004);
 * - session_ends (as wip-cache's sql/005): a row for each live session
 *   ended or deleted, in seq order; a user's disable ends its live
 *   sessions; session_ends_since and its purge;
 * - the version of (user, team) goes up with each API token added or
 *   deleted (sql/003), survives the membership, and is reported only to a
 *   member;
 * - a user's delete cascades to memberships, sessions, refresh rows and API
 *   tokens; unique and foreign keys answer EEXISTS and ENOTFOUND;
 * - purge deletes at most limit due rows per table (limit < 0: all);
 *   api_list is newest first; team_get prefers a uuid to a name.
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/backend.h"
#include "store/fake/fake.h"
#include "store/fake/fake_internal.h"
#include "tokend/err.h"

static const struct store_backend *be = &store_fake_backend;
static struct store_db *db;

#define U1 "11111111-1111-4111-8111-111111111111"
#define U2 "22222222-2222-4222-8222-222222222222"
#define T1 "33333333-3333-4333-8333-333333333333"
#define T2 "44444444-4444-4444-8444-444444444444"

static void setup(void)
{
	char err[128] = "";
	bool fresh = false;
	int v = 0;

	db = NULL;
	ck_assert_int_eq(be->open("fake:", 5000, &db, err, sizeof err), 0);
	ck_assert_int_eq(be->migrate(db, &v, &fresh, err, sizeof err), 0);
	ck_assert(fresh);
	ck_assert_int_gt(v, 0);
	ck_assert_int_eq(be->migrate(db, &v, &fresh, err, sizeof err), 0);
	ck_assert(!fresh);
}

static void teardown(void)
{
	be->close(db);
	db = NULL;
}

static struct store_tx *begin(void)
{
	struct store_tx *tx = NULL;

	ck_assert_int_eq(be->write_begin(db, &tx), 0);
	return tx;
}

static void user(struct store_tx *tx, const char *uuid, const char *name)
{
	struct store_user u = {.created_at = 1};

	snprintf(u.uuid, sizeof u.uuid, "%s", uuid);
	snprintf(u.username, sizeof u.username, "%s", name);
	snprintf(u.password, sizeof u.password, "hash");
	ck_assert_int_eq(be->user_add(tx, &u), 0);
}

static void team(struct store_tx *tx, const char *uuid, const char *name)
{
	struct store_team t = {.created_at = 1};

	snprintf(t.uuid, sizeof t.uuid, "%s", uuid);
	snprintf(t.name, sizeof t.name, "%s", name);
	ck_assert_int_eq(be->team_add(tx, &t), 0);
}

/* Two users, two teams, U1 in both, U2 in T1; committed. */
static void base(void)
{
	struct store_tx *tx = begin();

	user(tx, U1, "alice");
	user(tx, U2, "bob");
	team(tx, T1, "Red");
	team(tx, T2, "Blue");
	ck_assert_int_eq(be->member_set(tx, T1, U1, "member"), 0);
	ck_assert_int_eq(be->member_set(tx, T2, U1, "admin"), 0);
	ck_assert_int_eq(be->member_set(tx, T1, U2, "member"), 0);
	ck_assert_int_eq(be->write_end(tx, 0), 0);
}

static void refresh(struct store_tx *tx, const char *jti, const char *family, const char *u,
		    int64_t at, int64_t exp)
{
	struct store_refresh r = {.issued_at = at, .expires_at = exp};

	snprintf(r.jti, sizeof r.jti, "%s", jti);
	snprintf(r.family, sizeof r.family, "%s", family);
	snprintf(r.user_uuid, sizeof r.user_uuid, "%s", u);
	snprintf(r.kid, sizeof r.kid, "k1");
	snprintf(r.access_jti, sizeof r.access_jti, "a-%s", jti);
	ck_assert_int_eq(be->refresh_add(tx, &r), 0);
}

static void api(struct store_tx *tx, const char *jti, const char *u, const char *t, int64_t at,
		int64_t exp)
{
	struct store_api_token a = {.issued_at = at, .updated_at = at, .expires_at = exp};

	snprintf(a.jti, sizeof a.jti, "%s", jti);
	snprintf((char *)a.digest, sizeof a.digest, "d-%s", jti);
	snprintf(a.user_uuid, sizeof a.user_uuid, "%s", u);
	snprintf(a.team_uuid, sizeof a.team_uuid, "%s", t);
	snprintf(a.kid, sizeof a.kid, "k1");
	ck_assert_int_eq(be->api_add(tx, &a), 0);
}

static int64_t version(const char *t, const char *u)
{
	bool member = false;
	int64_t v = -1;

	ck_assert_int_eq(be->api_version(db, t, u, &member, &v), 0);
	ck_assert(member);
	return v;
}

static enum store_session state(const char *sid, const char *u)
{
	enum store_session s;

	ck_assert_int_eq(be->session_state(db, sid, u, &s), 0);
	return s;
}

struct ends {
	int n;
	int64_t seq[16];
	char sid[16][UUID_STR_LEN];
};

static int ends_fn(int64_t seq, const char *sid, int64_t at, void *arg)
{
	struct ends *e = arg;

	(void)at;
	if (e->n < 16) {
		e->seq[e->n] = seq;
		snprintf(e->sid[e->n], UUID_STR_LEN, "%s", sid);
	}
	e->n++;
	return 0;
}

static struct ends ends_since(int64_t after)
{
	struct ends e = {0};

	ck_assert_int_eq(be->session_ends_since(db, after, ends_fn, &e), 0);
	return e;
}

START_TEST(rollback_and_isolation)
{
	struct store_tx *tx = begin();
	struct store_user u;
	long n = -1;

	user(tx, U1, "alice");
	/* Outside the transaction: the last commit, without alice. */
	ck_assert_int_eq(be->user_get(db, STORE_BY_UUID, U1, &u), TOKEND_ENOTFOUND);
	ck_assert_int_eq(be->write_end(tx, TOKEND_EIO), TOKEND_EIO);
	ck_assert_int_eq(be->user_count(db, &n), 0);
	ck_assert_int_eq(n, 0);
	base();
	tx = begin();
	ck_assert_int_eq(be->user_delete(tx, U1), 0);
	ck_assert_int_eq(be->write_end(tx, TOKEND_EDB), TOKEND_EDB);
	ck_assert_int_eq(be->user_get(db, STORE_BY_NAME, "alice", &u), 0);
	ck_assert_str_eq(u.password, "hash");
	ck_assert(u.is_active);
	ck_assert_int_eq(be->user_get(db, STORE_BY_UUID, U1, &u), 0);
	ck_assert_str_eq(u.password, "");
	ck_assert_str_eq(be->local_path(db), "");
	ck_assert(be->single_host);
	ck_assert_int_eq(be->ping(db, 10), 0);
}
END_TEST

START_TEST(keys)
{
	struct store_tx *tx;
	struct store_user u = {.created_at = 1};
	struct store_team t = {.created_at = 1};
	struct store_team got;

	base();
	tx = begin();
	snprintf(u.uuid, sizeof u.uuid, "%s", U1);
	snprintf(u.username, sizeof u.username, "carol");
	ck_assert_int_eq(be->user_add(tx, &u), TOKEND_EEXISTS);
	snprintf(u.uuid, sizeof u.uuid, "%s", "55555555-5555-4555-8555-555555555555");
	snprintf(u.username, sizeof u.username, "alice");
	ck_assert_int_eq(be->user_add(tx, &u), TOKEND_EEXISTS);
	snprintf(t.uuid, sizeof t.uuid, "%s", "66666666-6666-4666-8666-666666666666");
	snprintf(t.name, sizeof t.name, "%s", T2); /* a name that is another's uuid */
	ck_assert_int_eq(be->team_add(tx, &t), 0);
	ck_assert_int_eq(be->team_get(db, tx, T2, &got), 0);
	ck_assert_str_eq(got.name, "Blue"); /* by uuid first */
	ck_assert_int_eq(be->member_set(tx, T1, "nobody", "member"), TOKEND_ENOTFOUND);
	ck_assert_int_eq(be->session_add(tx, "s1", "nobody", 1), TOKEND_ENOTFOUND);
	ck_assert_int_eq(be->session_add(tx, "s1", U1, 1), 0);
	ck_assert_int_eq(be->session_add(tx, "s1", U1, 1), TOKEND_EEXISTS);
	refresh(tx, "r1", "s1", U1, 1, 100);
	{
		struct store_refresh r = {0};
		snprintf(r.jti, sizeof r.jti, "r1");
		snprintf(r.user_uuid, sizeof r.user_uuid, "%s", U1);
		ck_assert_int_eq(be->refresh_add(tx, &r), TOKEND_EEXISTS);
	}
	api(tx, "a1", U1, T1, 1, 100);
	{
		struct store_api_token a = {0};
		snprintf(a.jti, sizeof a.jti, "a2");
		snprintf((char *)a.digest, sizeof a.digest, "d-a1");
		ck_assert_int_eq(be->api_add(tx, &a), TOKEND_EEXISTS);
	}
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	ck_assert_int_eq(be->team_get(db, NULL, "Red", &got), 0);
	ck_assert_int_eq(got.members, 2);
}
END_TEST

START_TEST(refresh_states)
{
	struct store_refresh_state rs;
	struct store_refresh row;
	struct store_tx *tx;
	bool live = true;
	long ended = -1;

	base();
	tx = begin();
	refresh(tx, "orphan", "nosession", U1, 7, 100);
	ck_assert_int_eq(be->session_add(tx, "s1", U1, 5), 0);
	refresh(tx, "r1", "s1", U1, 6, 100);
	ck_assert_int_eq(be->refresh_state(tx, "orphan", &rs), 0);
	ck_assert(rs.found);
	ck_assert(rs.revoked); /* no session row */
	ck_assert_int_eq(rs.session_created_at, 7);
	ck_assert_int_eq(be->refresh_state(tx, "r1", &rs), 0);
	ck_assert(rs.found && !rs.revoked && !rs.used && rs.active);
	ck_assert_str_eq(rs.family, "s1");
	ck_assert_str_eq(rs.owner, U1);
	ck_assert_str_eq(rs.replaced_by, "");
	ck_assert_int_eq(rs.session_created_at, 5);
	ck_assert_int_eq(be->refresh_state(tx, "none", &rs), 0);
	ck_assert(!rs.found);
	ck_assert_int_eq(be->refresh_row(tx, "r1", &row), 0);
	ck_assert_str_eq(row.access_jti, "a-r1");
	ck_assert_int_eq(row.session_created_at, 5);
	ck_assert_int_eq(be->refresh_use(tx, "r1", 9, "r2"), 0);
	ck_assert_int_eq(be->refresh_use(tx, "r1", 10, "r3"), TOKEND_ENOTFOUND);
	refresh(tx, "r2", "s1", U1, 9, 100);
	ck_assert_int_eq(be->refresh_state(tx, "r1", &rs), 0);
	ck_assert(rs.used && !rs.revoked);
	ck_assert_int_eq(rs.used_at, 9);
	ck_assert_str_eq(rs.replaced_by, "r2");
	ck_assert_int_eq(be->refresh_row(tx, "r1", &row), TOKEND_ENOTFOUND);
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	ck_assert_int_eq(be->refresh_live(db, "r2", U1, &live), 0);
	ck_assert(live);
	ck_assert_int_eq(be->refresh_live(db, "r2", U2, &live), 0);
	ck_assert(!live);
	ck_assert_int_eq(be->refresh_live(db, "r1", U1, &live), 0);
	ck_assert(!live);
	ck_assert_int_eq(be->refresh_live(db, "orphan", U1, &live), 0);
	ck_assert(!live);
	/* Another user's sid ends no session (the caller rolls the revoke back). */
	tx = begin();
	ck_assert_int_eq(be->sessions_end(tx, "s1", U2, 20, &ended), 0);
	ck_assert_int_eq(ended, 0);
	ck_assert_int_eq(be->write_end(tx, TOKEND_ENOTFOUND), TOKEND_ENOTFOUND);
	ck_assert_int_eq(state("s1", U1), STORE_SESSION_LIVE);
	tx = begin();
	ck_assert_int_eq(be->sessions_end(tx, "s1", U1, 20, &ended), 0);
	ck_assert_int_eq(ended, 1);
	ck_assert_int_eq(be->refresh_state(tx, "r2", &rs), 0);
	ck_assert(rs.revoked && rs.used);
	ck_assert_int_eq(rs.used_at, 20);
	ck_assert_int_eq(be->refresh_state(tx, "r1", &rs), 0);
	ck_assert_int_eq(rs.used_at, 9); /* kept: coalesce(used_at, now) */
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	ck_assert_int_eq(state("s1", U1), STORE_SESSION_ENDED);
	ck_assert_int_eq(state("s1", U2), STORE_SESSION_ENDED);
	ck_assert_int_eq(state("s1", "nobody"), STORE_SESSION_NO_USER);
}

/* session_ended (wip-seam's new op): unrecorded or ended; the user is not asked. */
START_TEST(session_ended)
{
	struct store_tx *tx;
	bool ended = false;

	base();
	tx = begin();
	ck_assert_int_eq(be->session_add(tx, "s1", U1, 1), 0);
	ck_assert_int_eq(be->session_add(tx, "s2", U1, 1), 0);
	ck_assert_int_eq(be->session_add(tx, "s3", U2, 1), 0);
	ck_assert_int_eq(be->sessions_end(tx, "s2", U1, 5, NULL), 0);
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	ck_assert_int_eq(store_fake_backend.session_ended(db, "s1", &ended), 0);
	ck_assert(!ended);
	ck_assert_int_eq(store_fake_backend.session_ended(db, "s2", &ended), 0);
	ck_assert(ended);
	ended = false;
	ck_assert_int_eq(store_fake_backend.session_ended(db, "never", &ended), 0);
	ck_assert(ended);
	tx = begin();
	ck_assert_int_eq(be->user_set_active(tx, U2, false), 0);
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	ck_assert_int_eq(store_fake_backend.session_ended(db, "s3", &ended), 0);
	ck_assert(ended);
}
END_TEST
END_TEST

START_TEST(session_ends_log)
{
	struct store_tx *tx;
	struct ends e;
	long ended = -1, n = -1;

	base();
	tx = begin();
	ck_assert_int_eq(be->session_add(tx, "s1", U1, 1), 0);
	ck_assert_int_eq(be->session_add(tx, "s2", U1, 1), 0);
	ck_assert_int_eq(be->session_add(tx, "s3", U2, 1), 0);
	ck_assert_int_eq(be->session_add(tx, "s4", U2, 1), 0);
	refresh(tx, "r1", "s1", U1, 1, 100);
	refresh(tx, "r3", "s3", U2, 1, 100);
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	ck_assert_int_eq(ends_since(0).n, 0);
	tx = begin();
	ck_assert_int_eq(be->sessions_end(tx, "s1", U1, 10, NULL), 0);
	ck_assert_int_eq(be->sessions_end(tx, NULL, U1, 11, &ended), 0);
	ck_assert_int_eq(ended, 1); /* s2: s1 was ended already */
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	e = ends_since(0);
	ck_assert_int_eq(e.n, 2);
	ck_assert_str_eq(e.sid[0], "s1");
	ck_assert_str_eq(e.sid[1], "s2");
	ck_assert_int_lt(e.seq[0], e.seq[1]);
	ck_assert_int_eq(ends_since(e.seq[0]).n, 1);
	/* A rolled back end logs nothing. */
	tx = begin();
	ck_assert_int_eq(be->sessions_end(tx, "s3", U2, 12, NULL), 0);
	ck_assert_int_eq(be->write_end(tx, TOKEND_EIO), TOKEND_EIO);
	ck_assert_int_eq(ends_since(0).n, 2);
	/* Disabling U2 ends its live sessions (and logs them); an enable brings
	 * none back. Their refresh rows are left to the caller's sessions_end. */
	tx = begin();
	ck_assert_int_eq(be->user_set_active(tx, U2, false), 0);
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	ck_assert_int_eq(ends_since(0).n, 4);
	ck_assert_int_eq(state("s3", U2), STORE_SESSION_INACTIVE);
	tx = begin();
	ck_assert_int_eq(be->user_set_active(tx, U2, true), 0);
	ck_assert_int_eq(be->user_set_active(tx, "nobody", true), TOKEND_ENOTFOUND);
	ck_assert_int_eq(be->sessions_end(tx, NULL, U2, 12, &ended), 0);
	ck_assert_int_eq(ended, 0);
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	ck_assert_int_eq(state("s3", U2), STORE_SESSION_ENDED);
	ck_assert_int_eq(state("s4", U2), STORE_SESSION_ENDED);
	/* A live session deleted with its last refresh row is logged. */
	tx = begin();
	ck_assert_int_eq(be->session_add(tx, "s5", U2, 1), 0);
	refresh(tx, "r5", "s5", U2, 1, 100);
	ck_assert_int_eq(be->purge(tx, STORE_PURGE_REFRESH, 100, 10, &n), 0);
	ck_assert_int_eq(n, 3); /* r1, r3, r5: s1 and s3 had ended, s5 not */
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	ck_assert_int_eq(state("s5", U2), STORE_SESSION_ENDED);
	e = ends_since(0);
	ck_assert_int_eq(e.n, 5);
	ck_assert_str_eq(e.sid[4], "s5");
	/* Deleting U1 logs its live session s6 (the others had ended). */
	tx = begin();
	ck_assert_int_eq(be->session_add(tx, "s6", U1, 1), 0);
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	tx = begin();
	ck_assert_int_eq(be->user_delete(tx, U1), 0);
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	e = ends_since(0);
	ck_assert_int_eq(e.n, 6);
	ck_assert_str_eq(e.sid[5], "s6");
	/* The log's purge, by ended_at. */
	tx = begin();
	ck_assert_int_eq(be->purge(tx, STORE_PURGE_SESSION_ENDS, 10, 10, &n), 0);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(be->purge(tx, STORE_PURGE_SESSION_ENDS, 11, 10, &n), 0);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	ck_assert_int_eq(ends_since(0).n, 4);
}
END_TEST

START_TEST(session_goes_with_last_row)
{
	struct store_tx *tx;
	long n = -1;

	base();
	tx = begin();
	ck_assert_int_eq(be->session_add(tx, "s1", U1, 1), 0);
	refresh(tx, "r1", "s1", U1, 1, 10);
	refresh(tx, "r2", "s1", U1, 5, 20);
	ck_assert_int_eq(be->purge(tx, STORE_PURGE_REFRESH, 10, -1, &n), 0);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	ck_assert_int_eq(state("s1", U1), STORE_SESSION_LIVE);
	tx = begin();
	ck_assert_int_eq(be->purge(tx, STORE_PURGE_REFRESH, 20, -1, &n), 0);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	ck_assert_int_eq(state("s1", U1), STORE_SESSION_ENDED);
}
END_TEST

struct listing {
	int n;
	char jti[8][UUID_STR_LEN];
	bool digest_zero;
};

static int list_fn(const struct store_api_token *t, void *arg)
{
	static const unsigned char zero[32];
	struct listing *l = arg;

	if (l->n < 8)
		snprintf(l->jti[l->n], UUID_STR_LEN, "%s", t->jti);
	l->digest_zero = l->digest_zero && memcmp(t->digest, zero, 32) == 0;
	l->n++;
	return 0;
}

START_TEST(api_versions_and_list)
{
	struct listing l = {.digest_zero = true};
	struct store_tx *tx;
	unsigned char digest[32] = {0};
	char jti[UUID_STR_LEN];
	bool member = true, live = false;
	int64_t v = -1;
	long n = 0;

	base();
	ck_assert_int_eq(version(T1, U1), 0);
	tx = begin();
	api(tx, "a1", U1, T1, 10, 100);
	api(tx, "a2", U1, T1, 20, 100);
	api(tx, "a3", U1, T1, 20, 100);
	api(tx, "a4", U1, T1, 5, 8); /* expired at 10 */
	api(tx, "b1", U1, T2, 10, 100);
	ck_assert_int_eq(be->api_count(tx, U1, T1, 10, &n), 0);
	ck_assert_int_eq(n, 3);
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	ck_assert_int_eq(version(T1, U1), 4);
	ck_assert_int_eq(version(T2, U1), 1);
	ck_assert_int_eq(be->api_list(db, U1, T1, 10, list_fn, &l), 0);
	ck_assert_int_eq(l.n, 3);
	ck_assert_str_eq(l.jti[0], "a3"); /* issued_at DESC, then the later row */
	ck_assert_str_eq(l.jti[1], "a2");
	ck_assert_str_eq(l.jti[2], "a1");
	ck_assert(l.digest_zero);
	memcpy(digest, "d-a2", 4);
	ck_assert_int_eq(be->api_by_digest(db, digest, jti), 0);
	ck_assert_str_eq(jti, "a2");
	ck_assert_int_eq(be->api_live(db, "a1", U1, T1, &live), 0);
	ck_assert(live);
	n = 0;
	tx = begin();
	ck_assert_int_eq(be->api_delete(tx, "a4", U1, T1, 10, &n), 0); /* expired: left */
	ck_assert_int_eq(be->api_delete(tx, "a1", U2, T1, 10, &n), 0); /* not U2's */
	ck_assert_int_eq(be->api_delete(tx, "a1", U1, T1, 10, &n), 0);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(be->member_remove(tx, T1, U1), 0);
	ck_assert_int_eq(be->member_remove(tx, T1, U1), TOKEND_ENOTFOUND);
	ck_assert_int_eq(be->api_delete_all(tx, U1, T1), 0); /* a2, a3, a4 */
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	ck_assert_int_eq(be->api_version(db, T1, U1, &member, &v), 0);
	ck_assert(!member);
	ck_assert_int_eq(v, 0);
	tx = begin();
	ck_assert_int_eq(be->member_set(tx, T1, U1, "member"), 0);
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	ck_assert_int_eq(version(T1, U1), 8); /* never handed out twice */
	ck_assert_int_eq(version(T2, U1), 1);
	/* A user's delete bumps through the cascade too. */
	tx = begin();
	ck_assert_int_eq(be->api_delete_all(tx, U1, NULL), 0);
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	ck_assert_int_eq(version(T2, U1), 2);
}
END_TEST

START_TEST(user_delete_cascade_and_purge_limit)
{
	struct store_tx *tx;
	struct store_team t;
	bool in_use = true;
	long n = -1;

	base();
	tx = begin();
	ck_assert_int_eq(be->session_add(tx, "s1", U1, 1), 0);
	for (int i = 0; i < 5; i++) {
		char jti[16];
		snprintf(jti, sizeof jti, "r%d", i);
		refresh(tx, jti, "s1", U1, 1, 10 + i);
		snprintf(jti, sizeof jti, "a%d", i);
		api(tx, jti, U2, T1, 1, 10 + i);
	}
	ck_assert_int_eq(be->purge(tx, STORE_PURGE_REFRESH, 12, 2, &n), 0);
	ck_assert_int_eq(n, 2);
	ck_assert_int_eq(be->purge(tx, STORE_PURGE_REFRESH, 12, 2, &n), 0);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(be->purge(tx, STORE_PURGE_API, 100, 0, &n), 0);
	ck_assert_int_eq(n, 0);
	ck_assert_int_eq(be->purge(tx, STORE_PURGE_API, 100, 4, &n), 0);
	ck_assert_int_eq(n, 4);
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	ck_assert_int_eq(version(T1, U2), 9);
	ck_assert_int_eq(be->key_in_use(db, "k1", 5, 0, &in_use), 0);
	ck_assert(in_use);
	tx = begin();
	ck_assert_int_eq(be->user_delete(tx, U1), 0);
	ck_assert_int_eq(be->user_delete(tx, U1), TOKEND_ENOTFOUND);
	ck_assert_int_eq(be->user_delete(tx, U2), 0);
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	ck_assert_int_eq(be->key_in_use(db, "k1", 5, 0, &in_use), 0);
	ck_assert(!in_use);
	ck_assert_int_eq(state("s1", U1), STORE_SESSION_NO_USER);
	ck_assert_int_eq(be->team_get(db, NULL, T1, &t), 0);
	ck_assert_int_eq(t.members, 0);
	ck_assert_int_eq(be->user_count(db, &n), 0);
	ck_assert_int_eq(n, 0);
}
END_TEST

/* Writers serialise: a read-then-write transaction never loses an update. */
static void *adder(void *arg)
{
	(void)arg;
	for (int i = 0; i < 50; i++) {
		struct store_tx *tx = NULL;
		long n = 0;
		char jti[32];
		if (be->write_begin(db, &tx) != 0)
			return NULL;
		(void)be->api_count(tx, U1, T1, 0, &n);
		snprintf(jti, sizeof jti, "t%ld", n);
		api(tx, jti, U1, T1, 1, 100); /* a duplicate jti would fail the test */
		(void)be->write_end(tx, 0);
	}
	return NULL;
}

START_TEST(writers_serialise)
{
	pthread_t th[8];
	struct store_tx *tx;
	long n = 0;

	base();
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, adder, NULL), 0);
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	tx = begin();
	ck_assert_int_eq(be->api_count(tx, U1, T1, 0, &n), 0);
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	ck_assert_int_eq(n, 400);
}
END_TEST

static Suite *fake_suite(void)
{
	Suite *s = suite_create("store_fake");
	TCase *tc = tcase_create("ops");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, rollback_and_isolation);
	tcase_add_test(tc, keys);
	tcase_add_test(tc, refresh_states);
	tcase_add_test(tc, session_ended);
	tcase_add_test(tc, session_ends_log);
	tcase_add_test(tc, session_goes_with_last_row);
	tcase_add_test(tc, api_versions_and_list);
	tcase_add_test(tc, user_delete_cascade_and_purge_limit);
	tcase_add_test(tc, writers_serialise);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(fake_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
