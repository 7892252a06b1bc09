/* SPDX-License-Identifier: MIT */
/*
 * This suite tests the PostgreSQL backend (src/store/postgres/) through its
 * ops table, against the empty database named by TOKEND_TEST_PG_URL (each
 * test drops and recreates the schema public); without it the suite passes
 * with a message. It proves:
 * - migrate applies every sql/postgres file on a fresh database, a second
 *   migrate is a no-op, two migrating at once apply each version once, and
 *   a database newer than the binary is refused;
 * - users, teams and memberships: add, duplicates (EEXISTS), lookups,
 *   changes (ENOTFOUND when nothing matched), ordering, foreign keys;
 * - sessions: states, ending one (not another user's) or all with their
 *   refresh rows, the session_ends log; deleting a user while another
 *   transaction holds its session waits for it (no deadlock);
 * - refresh rows: state, row, use once, liveness; refresh_state of a second
 *   transaction waits for the first and sees its use; a rotation's use and
 *   new row, sent with the COMMIT (conn.c's pipeline), commit both or, when
 *   a writer that ignores the session's lock used the row meanwhile,
 *   neither (TOKEND_EBUSY), and the connection serves the next transaction;
 * - API tokens: count, add, versions bumped by the schema's triggers, list
 *   newest first, digest lookup, deletes, liveness; four threads issuing at
 *   once under a cap of 3 (api_count, then api_add) add exactly 3;
 * - purge by table and limit, skipping (not waiting for) a session another
 *   transaction holds; key_in_use;
 * - a lock held past busy_timeout_ms is TOKEND_EBUSY;
 * - a connection the server terminated: the next op is TOKEND_EDB (inside
 *   a transaction too), the one after it succeeds; ping;
 * - an open that fails names host and database but never the password.
 * For a throw-away server: `/usr/bin/python3 tests/pgtmp.py start DIR`
 * prints a URL (`createdb DIR NAME` one of an empty database; `stop DIR`).
 */
#include <check.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/backend.h"
#include "store/postgres/pg.h"
#include "tokend/err.h"
#include "tokend/util.h"

#define NOW 1700000000
#define HASH "pbkdf2_sha256$1000$salt$hash"

/*
 * Runs call (which names the transaction in_tx, a name no test uses for its
 * own, so that none is shadowed) in a transaction of its own: rc expected.
 */
#define IN_TX(call, rc)                                               \
	do {                                                          \
		struct store_tx *in_tx;                               \
		ck_assert_int_eq(be->write_begin(db, &in_tx), 0);     \
		ck_assert_int_eq(be->write_end(in_tx, (call)), (rc)); \
	} while (0)

static const struct store_backend *be = &store_postgres_backend;
static const char *url;
static struct store_db *db;

/* A libpq connection of the test's own (not the backend's). */
static PGconn *admin(void)
{
	const char *const keys[] = {"dbname", "application_name", NULL};
	const char *const vals[] = {url, "tokend-test", NULL};
	PGconn *pg = PQconnectdbParams(keys, vals, 1);

	ck_assert_msg(PQstatus(pg) == CONNECTION_OK, "admin: %s", PQerrorMessage(pg));
	return pg;
}

/* Runs sql on pg; returns the first column of its first row as a number (or 0). */
static long admin_exec(PGconn *pg, const char *sql)
{
	PGresult *r = PQexec(pg, sql);
	long n = 0;

	ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
		      "%s: %s", sql, PQresultErrorMessage(r));
	if (PQntuples(r) > 0)
		n = strtol(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return n;
}

static void reset_schema(void)
{
	PGconn *pg = admin();

	admin_exec(pg, "SET client_min_messages = warning");
	admin_exec(pg, "DROP SCHEMA IF EXISTS public CASCADE");
	admin_exec(pg, "CREATE SCHEMA public");
	PQfinish(pg);
}

static void setup(void)
{
	char err[256] = "";
	bool fresh = false;
	int v = -1;

	reset_schema();
	ck_assert_msg(be->open(url, 500, &db, err, sizeof err) == 0, "open: %s", err);
	ck_assert_msg(be->migrate(db, &v, &fresh, err, sizeof err) == 0, "migrate: %s", err);
	ck_assert(fresh);
}

static void teardown(void)
{
	be->close(db);
	db = NULL;
}

static void user_make(const char *name, char uuid[UUID_STR_LEN])
{
	struct store_user u = {.is_active = true, .created_at = NOW};

	ck_assert_int_eq(util_uuid_new(u.uuid), 0);
	snprintf(u.username, sizeof u.username, "%s", name);
	snprintf(u.password, sizeof u.password, "%s", HASH);
	IN_TX(be->user_add(in_tx, &u), 0);
	memcpy(uuid, u.uuid, UUID_STR_LEN);
}

static void team_make(const char *name, char uuid[UUID_STR_LEN])
{
	struct store_team t = {.created_at = NOW};

	ck_assert_int_eq(util_uuid_new(t.uuid), 0);
	snprintf(t.name, sizeof t.name, "%s", name);
	IN_TX(be->team_add(in_tx, &t), 0);
	memcpy(uuid, t.uuid, UUID_STR_LEN);
}

/* Starts session sid of user with its first refresh row jti = sid. */
static void login(const char *user, char sid[UUID_STR_LEN], int64_t expires_at)
{
	struct store_refresh r = {.issued_at = NOW, .expires_at = expires_at};
	struct store_tx *tx;
	int rc;

	ck_assert_int_eq(util_uuid_new(r.jti), 0);
	memcpy(r.family, r.jti, UUID_STR_LEN);
	memcpy(r.user_uuid, user, UUID_STR_LEN);
	snprintf(r.kid, sizeof r.kid, "k1");
	ck_assert_int_eq(util_uuid_new(r.access_jti), 0);
	ck_assert_int_eq(be->write_begin(db, &tx), 0);
	rc = be->user_touch_login(tx, user, NOW);
	if (rc == 0)
		rc = be->session_add(tx, r.family, user, NOW);
	if (rc == 0)
		rc = be->refresh_add(tx, &r);
	ck_assert_int_eq(be->write_end(tx, rc), 0);
	memcpy(sid, r.jti, UUID_STR_LEN);
}

/* What session_state and refresh_live answer (each asserted to succeed). */
static enum store_session state_of(const char *sid, const char *user)
{
	enum store_session st;

	ck_assert_int_eq(be->session_state(db, sid, user, &st), 0);
	return st;
}

static bool live_of(const char *jti, const char *user)
{
	bool live;

	ck_assert_int_eq(be->refresh_live(db, jti, user, &live), 0);
	return live;
}

static void *migrate_thread(void *arg)
{
	struct store_db *d = NULL;
	char err[256] = "";
	int *rc = arg;

	if (be->open(url, 500, &d, err, sizeof err) != 0)
		return NULL;
	*rc = be->migrate(d, NULL, NULL, err, sizeof err);
	be->close(d);
	return NULL;
}

START_TEST(migrate)
{
	char err[256] = "";
	bool fresh = true;
	int v = -1, rc[2] = {-1, -1};
	PGconn *pg = admin();
	pthread_t t[2];

	ck_assert_msg(be->migrate(db, &v, &fresh, err, sizeof err) == 0 && !fresh, "%s", err);
	ck_assert_int_eq(v, store_pg_migrations[store_pg_migration_count - 1].version);
	ck_assert_int_eq(admin_exec(pg, "SELECT count(*) FROM schema_version"),
			 (long)store_pg_migration_count);
	admin_exec(pg, "INSERT INTO schema_version VALUES (999, '999_future.sql', 0)");
	ck_assert_int_eq(be->migrate(db, &v, &fresh, err, sizeof err), TOKEND_EDB);
	ck_assert_msg(strstr(err, "newer") != NULL, "%s", err);
	/* two at once on an empty database */
	reset_schema();
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, migrate_thread, &rc[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	ck_assert(rc[0] == 0 && rc[1] == 0);
	ck_assert_int_eq(admin_exec(pg, "SELECT count(DISTINCT version) FROM schema_version"),
			 (long)store_pg_migration_count);
	PQfinish(pg);
}
END_TEST

static int count_user(const struct store_user *u, void *arg)
{
	char *names = arg;

	strcat(names, u->username);
	strcat(names, ",");
	return 0;
}

START_TEST(users)
{
	struct store_user u = {.is_active = true, .created_at = NOW}, got;
	struct store_tx *tx;
	char bob[UUID_STR_LEN], id[UUID_STR_LEN], names[64] = "";
	long n = -1;

	user_make("bob", bob);
	user_make("alice", id);
	/* a duplicate name */
	ck_assert_int_eq(util_uuid_new(u.uuid), 0);
	snprintf(u.username, sizeof u.username, "bob");
	snprintf(u.password, sizeof u.password, HASH);
	ck_assert_int_eq(be->write_begin(db, &tx), 0);
	ck_assert_int_eq(be->user_add(tx, &u), TOKEND_EEXISTS);
	/* a caller that commits anyway gets an error, not PostgreSQL's silent ROLLBACK */
	ck_assert_int_eq(be->write_end(tx, 0), TOKEND_EDB);

	ck_assert_int_eq(be->user_get(db, STORE_BY_NAME, "bob", &got), 0);
	ck_assert_str_eq(got.uuid, bob);
	ck_assert_str_eq(got.password, HASH);
	ck_assert(got.is_active);
	ck_assert_int_eq(got.created_at, NOW);
	ck_assert_int_eq(got.last_login, 0);
	ck_assert_int_eq(be->user_get(db, STORE_BY_UUID, bob, &got), 0);
	ck_assert_str_eq(got.username, "bob");
	ck_assert_str_eq(got.password, "");
	ck_assert_int_eq(be->user_get(db, STORE_BY_NAME, "carol", &got), TOKEND_ENOTFOUND);
	/* not UTF-8: no such user, not a database error */
	ck_assert_int_eq(be->user_get(db, STORE_BY_NAME, "b\xffob", &got), TOKEND_ENOTFOUND);
	snprintf(u.username, sizeof u.username, "\xc3\x28");
	IN_TX(be->user_add(in_tx, &u), TOKEND_EINVAL);

	ck_assert_int_eq(be->write_begin(db, &tx), 0);
	ck_assert_int_eq(be->user_uuid(tx, "bob", id), 0);
	ck_assert_str_eq(id, bob);
	ck_assert_int_eq(be->user_uuid(tx, "carol", id), TOKEND_ENOTFOUND);
	ck_assert_int_eq(be->user_set_password(tx, bob, "x$new"), 0);
	ck_assert_int_eq(be->user_set_password(tx, "nobody", "x"), TOKEND_ENOTFOUND);
	ck_assert_int_eq(be->user_touch_login(tx, bob, NOW + 5), 0);
	ck_assert_int_eq(be->user_set_active(tx, bob, false), 0);
	ck_assert_int_eq(be->user_touch_login(tx, bob, NOW + 6), TOKEND_ENOTFOUND);
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	ck_assert_int_eq(be->user_get(db, STORE_BY_NAME, "bob", &got), 0);
	ck_assert_str_eq(got.password, "x$new");
	ck_assert(!got.is_active);
	ck_assert_int_eq(got.last_login, NOW + 5);

	ck_assert(be->user_count(db, &n) == 0 && n == 2);
	ck_assert_int_eq(be->user_list(db, count_user, names), 0);
	ck_assert_str_eq(names, "alice,bob,");
	IN_TX(be->user_delete(in_tx, bob), 0);
	IN_TX(be->user_delete(in_tx, bob), TOKEND_ENOTFOUND);
	ck_assert(be->user_count(db, &n) == 0 && n == 1);
}
END_TEST

static int count_team(const struct store_team *t, void *arg)
{
	(void)t;
	++*(long *)arg;
	return 0;
}

START_TEST(teams_members)
{
	char user[UUID_STR_LEN], team[UUID_STR_LEN], other[UUID_STR_LEN];
	struct store_team t = {.created_at = NOW}, got;
	struct store_tx *tx;
	bool member = true;
	long n = 0;

	user_make("bob", user);
	team_make("ops", team);
	team_make("dev", other);
	memcpy(t.uuid, other, UUID_STR_LEN); /* the uuid taken */
	snprintf(t.name, sizeof t.name, "new");
	IN_TX(be->team_add(in_tx, &t), TOKEND_EEXISTS);
	ck_assert_int_eq(be->team_get(db, NULL, "ops", &got), 0);
	ck_assert_str_eq(got.uuid, team);
	ck_assert_int_eq(got.members, 0);
	ck_assert_int_eq(be->team_get(db, NULL, other, &got), 0);
	ck_assert_str_eq(got.name, "dev");
	ck_assert_int_eq(be->team_get(db, NULL, "qa", &got), TOKEND_ENOTFOUND);
	ck_assert(be->team_list(db, count_team, &n) == 0 && n == 2);

	ck_assert_int_eq(be->write_begin(db, &tx), 0);
	ck_assert_int_eq(be->member_set(tx, team, user, "member"), 0);
	ck_assert_int_eq(be->member_set(tx, team, user, "admin"), 0); /* an update */
	ck_assert_int_eq(be->team_get(db, tx, team, &got), 0);
	ck_assert_int_eq(got.members, 1);
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	ck_assert(be->member_is(db, team, user, &member) == 0 && member);
	ck_assert(be->member_is(db, other, user, &member) == 0 && !member);
	/* a missing user: the foreign key */
	IN_TX(be->member_set(in_tx, team, "nobody", "member"), TOKEND_ENOTFOUND);
	ck_assert_int_eq(be->write_begin(db, &tx), 0);
	ck_assert_int_eq(be->member_remove(tx, team, user), 0);
	ck_assert_int_eq(be->member_remove(tx, team, user), TOKEND_ENOTFOUND);
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	ck_assert(be->member_is(db, team, user, &member) == 0 && !member);
}
END_TEST

static int collect_end(int64_t seq, const char *sid, int64_t ended_at, void *arg)
{
	long *n = arg;

	(void)sid;
	ck_assert_int_gt(seq, 0);
	ck_assert_int_eq(ended_at, NOW + 10);
	++*n;
	return 0;
}

START_TEST(sessions)
{
	char bob[UUID_STR_LEN], eve[UUID_STR_LEN], s1[UUID_STR_LEN], s2[UUID_STR_LEN],
		s3[UUID_STR_LEN];
	struct store_refresh_state rs;
	long ended = -1, ends = 0;

	user_make("bob", bob);
	user_make("eve", eve);
	login(bob, s1, NOW + 100);
	login(bob, s2, NOW + 100);
	login(eve, s3, NOW + 100);
	ck_assert_int_eq(state_of(s1, bob), STORE_SESSION_LIVE);
	ck_assert_int_eq(state_of(s1, eve), STORE_SESSION_ENDED);
	ck_assert_int_eq(state_of(s1, "nobody"), STORE_SESSION_NO_USER);

	/* another user's sid ends and revokes nothing */
	IN_TX(be->sessions_end(in_tx, s1, eve, NOW + 10, &ended), 0);
	ck_assert_int_eq(ended, 0);
	ck_assert(live_of(s1, bob));

	IN_TX(be->sessions_end(in_tx, s1, bob, NOW + 10, &ended), 0);
	ck_assert_int_eq(ended, 1);
	ck_assert_int_eq(state_of(s1, bob), STORE_SESSION_ENDED);
	ck_assert(!live_of(s1, bob));
	ck_assert_int_eq(state_of(s2, bob), STORE_SESSION_LIVE);

	/* every live session of bob: s2 only */
	IN_TX(be->sessions_end(in_tx, NULL, bob, NOW + 10, &ended), 0);
	ck_assert_int_eq(ended, 1);
	ck_assert(!live_of(s2, bob));
	ck_assert(live_of(s3, eve));
	ck_assert(be->session_ends_since(db, 0, collect_end, &ends) == 0 && ends == 2);

	IN_TX(be->user_set_active(in_tx, eve, false), 0);
	ck_assert_int_eq(state_of(s3, eve), STORE_SESSION_INACTIVE);
	/* a user goes with its sessions and rows */
	IN_TX(be->user_delete(in_tx, eve), 0);
	ck_assert_int_eq(state_of(s3, eve), STORE_SESSION_NO_USER);
	IN_TX(be->refresh_state(in_tx, s3, &rs), 0);
	ck_assert(!rs.found);
}
END_TEST

START_TEST(refresh)
{
	char bob[UUID_STR_LEN], sid[UUID_STR_LEN], next[UUID_STR_LEN];
	struct store_refresh_state rs;
	struct store_refresh row;
	struct store_tx *tx;

	user_make("bob", bob);
	login(bob, sid, NOW + 100);
	ck_assert_int_eq(util_uuid_new(next), 0);
	ck_assert_int_eq(be->write_begin(db, &tx), 0);
	ck_assert(be->refresh_state(tx, "nope", &rs) == 0 && !rs.found);
	ck_assert_int_eq(be->refresh_state(tx, sid, &rs), 0);
	ck_assert(rs.found && !rs.used && !rs.revoked && rs.active);
	ck_assert_str_eq(rs.family, sid);
	ck_assert_str_eq(rs.owner, bob);
	ck_assert_str_eq(rs.replaced_by, "");
	ck_assert_int_eq(rs.session_created_at, NOW);
	ck_assert_int_eq(be->refresh_row(tx, sid, &row), 0);
	ck_assert_str_eq(row.kid, "k1");
	ck_assert_int_eq(row.expires_at, NOW + 100);
	ck_assert_int_eq(row.session_created_at, NOW);
	ck_assert_int_eq(be->refresh_use(tx, sid, NOW + 1, next), 0);
	ck_assert_int_eq(be->refresh_use(tx, sid, NOW + 2, next), TOKEND_ENOTFOUND);
	ck_assert_int_eq(be->refresh_row(tx, sid, &row), TOKEND_ENOTFOUND);
	ck_assert_int_eq(be->write_end(tx, 0), 0);

	ck_assert_int_eq(be->write_begin(db, &tx), 0);
	ck_assert(be->refresh_state(tx, sid, &rs) == 0 && rs.used);
	ck_assert_int_eq(rs.used_at, NOW + 1);
	ck_assert_str_eq(rs.replaced_by, next);
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	ck_assert(!live_of(sid, bob));
}
END_TEST

/* The use and the new row travel with the COMMIT: both or neither. */
START_TEST(rotation_pipelined)
{
	char bob[UUID_STR_LEN], sid[UUID_STR_LEN], sql[160];
	struct store_refresh_state rs;
	struct store_refresh next = {.issued_at = NOW + 1, .expires_at = NOW + 100};
	struct store_tx *tx;
	PGconn *pg = admin();

	user_make("bob", bob);
	login(bob, sid, NOW + 100);
	memcpy(next.family, sid, UUID_STR_LEN);
	memcpy(next.user_uuid, bob, UUID_STR_LEN);
	snprintf(next.kid, sizeof next.kid, "k1");
	ck_assert_int_eq(util_uuid_new(next.access_jti), 0);

	/* used behind the lock's back (a hand-written UPDATE): nothing commits */
	ck_assert_int_eq(util_uuid_new(next.jti), 0);
	ck_assert_int_eq(be->write_begin(db, &tx), 0);
	ck_assert(be->refresh_state(tx, sid, &rs) == 0 && rs.found && !rs.used);
	snprintf(sql, sizeof sql, "UPDATE refresh_tokens SET used_at = 7 WHERE jti = '%s'", sid);
	admin_exec(pg, sql);
	ck_assert_int_eq(be->refresh_use(tx, sid, NOW + 1, next.jti), 0);
	ck_assert_int_eq(be->refresh_add(tx, &next), 0);
	ck_assert_int_eq(be->write_end(tx, 0), TOKEND_EBUSY);
	snprintf(sql, sizeof sql, "SELECT count(*) FROM refresh_tokens WHERE jti = '%s'", next.jti);
	ck_assert_int_eq(admin_exec(pg, sql), 0);
	snprintf(sql, sizeof sql, "SELECT used_at FROM refresh_tokens WHERE jti = '%s'", sid);
	ck_assert_int_eq(admin_exec(pg, sql), 7);

	/* the same connection, the next transaction: a rotation that commits */
	snprintf(sql, sizeof sql, "UPDATE refresh_tokens SET used_at = NULL WHERE jti = '%s'", sid);
	admin_exec(pg, sql);
	ck_assert_int_eq(be->write_begin(db, &tx), 0);
	ck_assert(be->refresh_state(tx, sid, &rs) == 0 && rs.found && !rs.used);
	ck_assert_int_eq(be->refresh_use(tx, sid, NOW + 1, next.jti), 0);
	/* a second use in the same transaction asks the database: already used */
	ck_assert_int_eq(be->refresh_use(tx, sid, NOW + 2, next.jti), TOKEND_ENOTFOUND);
	ck_assert_int_eq(be->write_end(tx, TOKEND_ENOTFOUND), TOKEND_ENOTFOUND);
	ck_assert_int_eq(be->write_begin(db, &tx), 0);
	ck_assert(be->refresh_state(tx, sid, &rs) == 0 && rs.found && !rs.used);
	ck_assert_int_eq(be->refresh_use(tx, sid, NOW + 1, next.jti), 0);
	ck_assert_int_eq(be->refresh_add(tx, &next), 0);
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	ck_assert_int_eq(be->write_begin(db, &tx), 0);
	ck_assert(be->refresh_state(tx, sid, &rs) == 0 && rs.used);
	ck_assert_str_eq(rs.replaced_by, next.jti);
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	ck_assert(live_of(next.jti, bob));
	PQfinish(pg);
}
END_TEST

/* A transaction on a thread of its own: refresh_state of jti, else deleting user, else a purge. */
struct racer {
	const char *jti, *user;
	struct store_refresh_state rs;
	long n;
	int rc;
};

static void *racer(void *arg)
{
	struct racer *r = arg;
	struct store_tx *tx;
	int rc;

	r->rc = be->write_begin(db, &tx);
	if (r->rc != 0)
		return NULL;
	if (r->jti != NULL)
		rc = be->refresh_state(tx, r->jti, &r->rs);
	else if (r->user != NULL)
		rc = be->user_delete(tx, r->user);
	else
		rc = be->purge(tx, STORE_PURGE_REFRESH, NOW + 50, 10, &r->n);
	r->rc = be->write_end(tx, rc);
	return NULL;
}

/*
 * Runs r's transaction on a thread: to its end (wait), or until the server
 * shows one of the backend's connections waiting for a lock -- ours, the
 * only one held -- so that what follows runs while it waits, however slow
 * the machine (not 200 ms and hope). 60 s only bounds a hang.
 */
static void race(struct racer *r, pthread_t *t, bool wait)
{
	static const char waiting[] = "SELECT count(*) FROM pg_stat_activity WHERE "
				      "application_name = 'tokend' AND wait_event_type = 'Lock' "
				      "AND datname = current_database()";
	PGconn *pg;

	r->rc = -1;
	ck_assert_int_eq(pthread_create(t, NULL, racer, r), 0);
	if (wait) {
		pthread_join(*t, NULL);
		return;
	}
	pg = admin();
	for (long waited = 0; admin_exec(pg, waiting) < 1; waited += 10) {
		ck_assert_msg(waited < 60000,
			      "the racing transaction never waited for our lock in 60 s");
		usleep(10 * 1000);
	}
	PQfinish(pg);
}

/*
 * A transaction holding a session (refresh_state): another's refresh_state
 * waits for it and then sees its changes; a purge skips the session's rows
 * instead of waiting (and deadlocking when the holder revokes them); a
 * user's deletion waits, and does not deadlock with the holder's insert.
 */
START_TEST(locked_session)
{
	char bob[UUID_STR_LEN], sid[UUID_STR_LEN];
	struct store_refresh next = {.issued_at = NOW, .expires_at = NOW + 100, .kid = "k1"};
	struct store_refresh_state rs;
	struct racer r = {0}, p = {0}, d = {0};
	struct store_tx *tx;
	pthread_t t;

	user_make("bob", bob);
	login(bob, sid, NOW + 10); /* the login's row is due at NOW + 50, next is not */
	memcpy(next.family, sid, UUID_STR_LEN);
	memcpy(next.user_uuid, bob, UUID_STR_LEN);
	ck_assert_int_eq(util_uuid_new(next.jti), 0);
	memcpy(next.access_jti, next.jti, UUID_STR_LEN);
	IN_TX(be->refresh_add(in_tx, &next), 0);
	r.jti = next.jti;
	ck_assert_int_eq(be->write_begin(db, &tx), 0);
	ck_assert(be->refresh_state(tx, next.jti, &rs) == 0 && !rs.used);
	race(&p, &t, true);
	ck_assert(p.rc == 0 && p.n == 0); /* skipped the login's row, without waiting */
	race(&r, &t, false);
	ck_assert_int_eq(be->refresh_use(tx, next.jti, NOW + 1, "successor"), 0);
	ck_assert_int_eq(be->sessions_end(tx, sid, bob, NOW + 1, NULL), 0);
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	pthread_join(t, NULL);
	ck_assert(r.rc == 0 && r.rs.found && r.rs.used && r.rs.revoked);
	ck_assert_str_eq(r.rs.replaced_by, "successor");
	race(&p, &t, true);
	ck_assert(p.rc == 0 && p.n == 1); /* taken at the next pass */

	d.user = bob;
	ck_assert_int_eq(be->write_begin(db, &tx), 0);
	ck_assert_int_eq(be->refresh_state(tx, next.jti, &rs), 0);
	ck_assert_int_eq(be->sessions_end(tx, sid, bob, NOW + 2, NULL), 0); /* the rows locked */
	race(&d, &t, false);
	ck_assert_int_eq(util_uuid_new(next.jti), 0);
	ck_assert_int_eq(be->refresh_add(tx, &next), 0); /* waits for no one */
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	pthread_join(t, NULL);
	ck_assert_int_eq(d.rc, 0);
}
END_TEST

static void api_make(struct store_api_token *t, const char *user, const char *team, int64_t iat,
		     int64_t exp, unsigned char tag)
{
	memset(t, 0, sizeof(*t));
	ck_assert_int_eq(util_uuid_new(t->jti), 0);
	memset(t->digest, tag, sizeof t->digest);
	t->digest[0] = 0; /* a NUL inside: the digest goes in binary */
	memcpy(t->user_uuid, user, UUID_STR_LEN);
	memcpy(t->team_uuid, team, UUID_STR_LEN);
	snprintf(t->kid, sizeof t->kid, "k2");
	t->issued_at = t->updated_at = iat;
	t->expires_at = exp;
}

static int list_jtis(const struct store_api_token *t, void *arg)
{
	char *out = arg;

	snprintf(out + strlen(out), UUID_STR_LEN, "%s", t->jti);
	return 0;
}

START_TEST(api_tokens)
{
	char bob[UUID_STR_LEN], team[UUID_STR_LEN], jti[UUID_STR_LEN], list[200] = "";
	struct store_api_token a, b;
	struct store_tx *tx;
	bool member = false, live = false;
	int64_t v0 = -1, v1 = -1;
	long n = -1, deleted = 0;

	user_make("bob", bob);
	team_make("ops", team);
	ck_assert(be->api_version(db, team, bob, &member, &v0) == 0 && !member);
	IN_TX(be->member_set(in_tx, team, bob, "member"), 0);
	ck_assert(be->api_version(db, team, bob, &member, &v0) == 0 && member);
	ck_assert_int_eq(v0, 0);

	api_make(&a, bob, team, NOW, NOW + 100, 0xaa);
	api_make(&b, bob, team, NOW, NOW + 100, 0xbb); /* same second: insertion order */
	ck_assert_int_eq(be->write_begin(db, &tx), 0);
	ck_assert(be->api_count(tx, bob, team, NOW, &n) == 0 && n == 0);
	ck_assert_int_eq(be->api_add(tx, &a), 0);
	ck_assert_int_eq(be->api_add(tx, &b), 0);
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	ck_assert(be->api_version(db, team, bob, &member, &v1) == 0 && v1 == 2);
	ck_assert_int_eq(be->api_list(db, bob, team, NOW, list_jtis, list), 0);
	ck_assert_str_eq(list + 36, a.jti);
	ck_assert_int_eq(strncmp(list, b.jti, 36), 0);
	ck_assert_int_eq(be->api_by_digest(db, b.digest, jti), 0);
	ck_assert_str_eq(jti, b.jti);
	b.digest[31] = 0x01;
	ck_assert_int_eq(be->api_by_digest(db, b.digest, jti), TOKEND_ENOTFOUND);
	ck_assert(be->api_live(db, a.jti, bob, team, &live) == 0 && live);

	/* a duplicate digest */
	api_make(&b, bob, team, NOW, NOW + 100, 0xaa);
	IN_TX(be->api_add(in_tx, &b), TOKEND_EEXISTS);

	ck_assert_int_eq(be->write_begin(db, &tx), 0);
	ck_assert(be->api_delete(tx, a.jti, bob, "other-team", NOW, &deleted) == 0 && !deleted);
	ck_assert(be->api_delete(tx, a.jti, bob, team, NOW, &deleted) == 0 && deleted == 1);
	ck_assert_int_eq(be->api_delete_all(tx, bob, NULL), 0);
	ck_assert(be->api_count(tx, bob, team, NOW, &n) == 0 && n == 0);
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	ck_assert(be->api_version(db, team, bob, &member, &v1) == 0 && v1 == 4);
	ck_assert(be->api_live(db, a.jti, bob, team, &live) == 0 && !live);
}
END_TEST

/* Issues under a cap of 3 from several threads at once: never more than 3 live. */
struct issuer {
	const char *user, *team;
	unsigned char tag;
	int added;
};

static void *issue_thread(void *arg)
{
	struct issuer *is = arg;
	struct store_api_token t;
	struct store_tx *tx;
	long n;

	for (int i = 0; i < 5; i++) {
		api_make(&t, is->user, is->team, NOW, NOW + 100, (unsigned char)(is->tag + i));
		if (be->write_begin(db, &tx) != 0)
			continue;
		int rc = be->api_count(tx, is->user, is->team, NOW, &n);
		if (rc == 0 && n < 3 && (rc = be->api_add(tx, &t)) == 0)
			is->added++;
		(void)be->write_end(tx, rc);
	}
	return NULL;
}

START_TEST(api_cap_threads)
{
	char bob[UUID_STR_LEN], team[UUID_STR_LEN];
	struct issuer is[4];
	struct racer d = {.user = bob};
	struct store_api_token a;
	struct store_tx *tx;
	pthread_t t[4];
	long n = -1;

	user_make("bob", bob);
	team_make("ops", team);
	IN_TX(be->member_set(in_tx, team, bob, "member"), 0);
	for (int i = 0; i < 4; i++) {
		is[i] = (struct issuer){.user = bob, .team = team, .tag = (unsigned char)(16 * i)};
		ck_assert_int_eq(pthread_create(&t[i], NULL, issue_thread, &is[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	ck_assert_int_eq(is[0].added + is[1].added + is[2].added + is[3].added, 3);
	/* the user deleted meanwhile: waits for the membership's lock (no deadlock) */
	ck_assert_int_eq(be->write_begin(db, &tx), 0);
	ck_assert(be->api_count(tx, bob, team, NOW, &n) == 0 && n == 3);
	race(&d, &t[0], false);
	api_make(&a, bob, team, NOW, NOW + 100, 0xee);
	ck_assert_int_eq(be->write_end(tx, be->api_add(tx, &a)), 0);
	pthread_join(t[0], NULL);
	ck_assert_int_eq(d.rc, 0);
}
END_TEST

START_TEST(purge_and_keys)
{
	char bob[UUID_STR_LEN], team[UUID_STR_LEN], sid[UUID_STR_LEN];
	struct store_api_token a;
	struct store_tx *tx;
	bool in_use = false;
	long n = -1;

	user_make("bob", bob);
	team_make("ops", team);
	for (int i = 0; i < 3; i++)
		login(bob, sid, NOW + 10); /* expire at NOW + 10 */
	api_make(&a, bob, team, NOW, NOW + 10, 0xcc);
	IN_TX(be->api_add(in_tx, &a), 0);

	ck_assert(be->key_in_use(db, "k1", NOW + 5, 60, &in_use) == 0 && in_use);
	ck_assert(be->key_in_use(db, "k1", NOW + 100, 60, &in_use) == 0 && !in_use);
	ck_assert(be->key_in_use(db, "k2", NOW + 5, 0, &in_use) == 0 && in_use);
	ck_assert(be->key_in_use(db, "k3", NOW, 60, &in_use) == 0 && !in_use);

	ck_assert_int_eq(be->write_begin(db, &tx), 0);
	ck_assert(be->purge(tx, STORE_PURGE_REFRESH, NOW + 9, 10, &n) == 0 && n == 0);
	ck_assert(be->purge(tx, STORE_PURGE_REFRESH, NOW + 10, 2, &n) == 0 && n == 2);
	ck_assert(be->purge(tx, STORE_PURGE_REFRESH, NOW + 10, 2, &n) == 0 && n == 1);
	ck_assert(be->purge(tx, STORE_PURGE_API, NOW + 10, 2, &n) == 0 && n == 1);
	/* the sessions went with their rows, live: ended now */
	ck_assert(be->purge(tx, STORE_PURGE_SESSION_ENDS, INT64_MAX, 100, &n) == 0 && n == 3);
	ck_assert_int_eq(be->write_end(tx, 0), 0);
	ck_assert_int_eq(state_of(sid, bob), STORE_SESSION_ENDED);
}
END_TEST

/* Terminates every connection of the backend (application_name tokend), and waits till gone. */
static void kill_backend(void)
{
	static const char sql[] =
		"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
		"WHERE application_name = 'tokend' AND datname = current_database()";
	PGconn *pg = admin();

	ck_assert_int_gt(admin_exec(pg, sql), 0);
	for (long waited = 0; admin_exec(pg, "SELECT count(*) FROM pg_stat_activity WHERE "
					     "application_name = 'tokend'") > 0;
	     waited += 10) {
		ck_assert_msg(waited < 60000,
			      "the backend's connections still there 60 s after termination");
		usleep(10 * 1000);
	}
	PQfinish(pg);
}

START_TEST(failures)
{
	char bob[UUID_STR_LEN], sql[128];
	struct store_user u;
	struct store_tx *tx;
	PGconn *pg = admin();
	long n = -1;

	user_make("bob", bob);
	/* a lock held past busy_timeout_ms */
	admin_exec(pg, "BEGIN");
	snprintf(sql, sizeof sql, "SELECT 1 FROM users WHERE uuid = '%s' FOR UPDATE", bob);
	admin_exec(pg, sql);
	IN_TX(be->user_set_password(in_tx, bob, "x"), TOKEND_EBUSY);
	admin_exec(pg, "ROLLBACK");
	PQfinish(pg);
	ck_assert_int_eq(be->ping(db, 1000), 0);
	kill_backend();
	ck_assert_int_eq(be->user_get(db, STORE_BY_UUID, bob, &u), TOKEND_EDB); /* not ENOTFOUND */
	ck_assert(be->user_count(db, &n) == 0 && n == 1);

	/* inside a transaction: the transaction is lost, the next one works */
	ck_assert_int_eq(be->write_begin(db, &tx), 0);
	kill_backend();
	ck_assert_int_eq(be->user_set_password(tx, bob, "x"), TOKEND_EDB);
	ck_assert_int_eq(be->write_end(tx, 0), TOKEND_EDB);
	IN_TX(be->user_set_password(in_tx, bob, "y"), 0);

	/* the ping meets it, and the one after reconnects */
	kill_backend();
	ck_assert_int_eq(be->ping(db, 1000), TOKEND_EDB);
	ck_assert_int_eq(be->ping(db, 1000), 0);
	ck_assert_int_eq(be->user_get(db, STORE_BY_NAME, "bob", &u), 0);
	ck_assert_str_eq(u.password, "y");
}
END_TEST

START_TEST(open_hides_password)
{
	struct store_db *d = NULL;
	char err[512] = "";

	ck_assert_int_eq(be->open("postgresql://tokend:s3cret@/no_such_db_here?host=/nonexistent",
				  500, &d, err, sizeof err),
			 TOKEND_EDB);
	ck_assert_ptr_null(d);
	ck_assert_msg(strstr(err, "s3cret") == NULL, "%s", err);
	ck_assert_msg(strstr(err, "no_such_db_here") != NULL, "%s", err);
	ck_assert_str_eq(be->local_path(db), "");
	ck_assert(!be->single_host);
	ck_assert_int_eq(be->read_begin(db), 0);
	be->read_end(db);
}
END_TEST

static Suite *store_pg_suite(void)
{
	Suite *s = suite_create("store_pg");
	TCase *tc = tcase_create("pg");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, migrate);
	tcase_add_test(tc, users);
	tcase_add_test(tc, teams_members);
	tcase_add_test(tc, sessions);
	tcase_add_test(tc, refresh);
	tcase_add_test(tc, rotation_pipelined);
	tcase_add_test(tc, api_tokens);
	tcase_add_test(tc, locked_session);
	tcase_add_test(tc, api_cap_threads);
	tcase_add_test(tc, purge_and_keys);
	tcase_add_test(tc, failures);
	tcase_add_test(tc, open_hides_password);
	suite_add_tcase(s, tc);
	return s;
}

/*
 * Each test drops the schema public: refuse a database that holds any
 * table but ours (a URL pasted by mistake must not cost anyone their data).
 */
static bool database_is_ours(void)
{
	const char *const keys[] = {"dbname", NULL};
	const char *const vals[] = {url, NULL};
	PGconn *pg = PQconnectdbParams(keys, vals, 1);
	PGresult *r =
		PQexec(pg, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND "
			   "tablename NOT IN ('users', 'teams', 'team_members', 'refresh_tokens', "
			   "'api_tokens', 'api_token_versions', 'sessions', 'session_ends', "
			   "'schema_version')");
	bool ours = PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "0") == 0;

	if (!ours)
		fprintf(stderr, "test_store_pg: %s: not an empty database, or ours: %s\n", url,
			PQerrorMessage(pg));
	PQclear(r);
	PQfinish(pg);
	return ours;
}

int main(void)
{
	SRunner *sr;
	int failed;

	url = getenv("TOKEND_TEST_PG_URL");
	if (url == NULL || *url == '\0') {
		printf("test_store_pg: TOKEND_TEST_PG_URL is not set: skipped\n");
		return EXIT_SUCCESS;
	}
	if (store_pg_migration_count == 0) {
		printf("test_store_pg: no sql/postgres migrations compiled in: skipped\n");
		return EXIT_SUCCESS;
	}
	if (!database_is_ours())
		return EXIT_FAILURE;
	sr = srunner_create(store_pg_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
