/* SPDX-License-Identifier: MIT */
/*
 * This module implements the users, teams and memberships of the
 * PostgreSQL backend, with their SQL: the statements of the SQLite backend
 * (src/store/sqlite/users.c's stmt_sql) with $n parameters. Flags are INTEGER 0/1 as
 * in SQLite (sql/postgres/001_init.sql), so they are bound as "0"/"1" and
 * read back the same way. Deleting a user removes its memberships,
 * sessions and tokens by the schema's ON DELETE CASCADE.
 */
#include <string.h>

#include "store/postgres/pg.h"
#include "tokend/err.h"

static const struct store_pg_stmt user_add = {
	PG_USER_ADD, "user add",
	"INSERT INTO users (uuid, username, password, is_active, created_at, last_login) "
	"VALUES ($1, $2, $3, $4, $5, nullif($6::bigint, 0))",
	6, 0};
static const struct store_pg_stmt user_by_name = {
	PG_USER_BY_NAME, "user get",
	"SELECT uuid, username, password, is_active, created_at, coalesce(last_login, 0) "
	"FROM users WHERE username = $1",
	1, 0};
/* The hash is for a login only: by uuid it is left empty. */
static const struct store_pg_stmt user_by_uuid = {
	PG_USER_BY_UUID, "user get",
	"SELECT uuid, username, '', is_active, created_at, coalesce(last_login, 0) "
	"FROM users WHERE uuid = $1",
	1, 0};
static const struct store_pg_stmt user_uuid_of = {PG_USER_UUID, "user uuid",
						  "SELECT uuid FROM users WHERE username = $1", 1,
						  0};
static const struct store_pg_stmt user_set_pw = {PG_USER_SET_PW, "user passwd",
						 "UPDATE users SET password = $2 WHERE uuid = $1",
						 2, 0};
static const struct store_pg_stmt user_set_active = {
	PG_USER_SET_ACTIVE, "user set active", "UPDATE users SET is_active = $2 WHERE uuid = $1", 2,
	0};
/* 0 rows: the user was disabled or deleted while the login hashed. */
static const struct store_pg_stmt user_touch = {
	PG_USER_TOUCH, "login touch",
	"UPDATE users SET last_login = $2 WHERE uuid = $1 AND is_active = 1", 2, 0};
/*
 * Before a user is deleted, its sessions and then its memberships are
 * locked, the order everyone else takes them in (a disable, which ends the
 * sessions, locks them first too). The cascade would take
 * refresh rows, then their sessions (the schema's delete trigger), the
 * reverse of a rotation; and memberships after the user's row, which an
 * API-token issue (membership locked, then the insert's foreign key on the
 * user) takes the other way round: both deadlocked.
 */
static const struct store_pg_stmt user_lock_sessions = {
	PG_USER_LOCK_SESSIONS, "user delete",
	"SELECT 1 FROM sessions WHERE user_uuid = $1 ORDER BY id FOR UPDATE", 1, 0};
static const struct store_pg_stmt user_lock_members = {
	PG_USER_LOCK_MEMBERS, "user delete",
	"SELECT 1 FROM team_members WHERE user_uuid = $1 ORDER BY team_uuid FOR UPDATE", 1, 0};
static const struct store_pg_stmt user_delete = {PG_USER_DELETE, "user delete",
						 "DELETE FROM users WHERE uuid = $1", 1, 0};
static const struct store_pg_stmt user_count = {PG_USER_COUNT, "user count",
						"SELECT count(*) FROM users", 0, 0};
static const struct store_pg_stmt user_list = {
	PG_USER_LIST, "user list",
	"SELECT uuid, username, '', is_active, created_at, coalesce(last_login, 0) "
	"FROM users ORDER BY username",
	0, 0};
static const struct store_pg_stmt team_add = {
	PG_TEAM_ADD, "team add", "INSERT INTO teams (uuid, name, created_at) VALUES ($1, $2, $3)",
	3, 0};
/* By uuid first, else by name. */
static const struct store_pg_stmt team_get = {
	PG_TEAM_GET, "team get",
	"SELECT t.uuid, t.name, t.created_at, "
	"(SELECT count(*) FROM team_members m WHERE m.team_uuid = t.uuid) "
	"FROM teams t WHERE t.uuid = $1 OR t.name = $1 "
	"ORDER BY t.uuid = $1 DESC LIMIT 1",
	1, 0};
static const struct store_pg_stmt team_list = {
	PG_TEAM_LIST, "team list",
	"SELECT t.uuid, t.name, t.created_at, "
	"(SELECT count(*) FROM team_members m WHERE m.team_uuid = t.uuid) "
	"FROM teams t ORDER BY t.name",
	0, 0};
static const struct store_pg_stmt member_set = {
	PG_MEMBER_SET, "member set",
	"INSERT INTO team_members (team_uuid, user_uuid, role) VALUES ($1, $2, $3) "
	"ON CONFLICT (team_uuid, user_uuid) DO UPDATE SET role = excluded.role",
	3, 0};
static const struct store_pg_stmt member_remove = {
	PG_MEMBER_REMOVE, "member remove",
	"DELETE FROM team_members WHERE team_uuid = $1 AND user_uuid = $2", 2, 0};
static const struct store_pg_stmt member_is = {
	PG_MEMBER_IS, "member is",
	"SELECT 1 FROM team_members WHERE team_uuid = $1 AND user_uuid = $2", 2, 0};

int store_pg_user_add(struct store_tx *tx, const struct store_user *u)
{
	struct store_pg_conn *c = store_pg_tx_conn(tx);
	char created[PG_I64_LEN], last[PG_I64_LEN];
	const char *params[] = {u->uuid,
				u->username,
				u->password,
				u->is_active ? "1" : "0",
				store_pg_i64(created, u->created_at),
				store_pg_i64(last, u->last_login)};

	if (c == NULL)
		return TOKEND_EDB;
	return store_pg_run(c, &user_add, params, NULL, NULL);
}

static void user_from_row(const PGresult *r, int row, struct store_user *u)
{
	store_pg_copy(r, row, 0, u->uuid, sizeof(u->uuid));
	store_pg_copy(r, row, 1, u->username, sizeof(u->username));
	store_pg_copy(r, row, 2, u->password, sizeof(u->password));
	u->is_active = store_pg_get_i64(r, row, 3) != 0;
	u->created_at = store_pg_get_i64(r, row, 4);
	u->last_login = store_pg_get_i64(r, row, 5);
}

int store_pg_user_get(struct store_db *db, enum store_user_key by, const char *key,
		      struct store_user *out)
{
	struct store_pg_conn *c = store_pg_conn(db);
	const char *params[] = {key};
	PGresult *r;
	int rc;

	if (c == NULL)
		return TOKEND_EDB;
	rc = store_pg_run(c, by == STORE_BY_NAME ? &user_by_name : &user_by_uuid, params, NULL, &r);
	if (rc != 0)
		return rc;
	if (PQntuples(r) == 0) {
		rc = TOKEND_ENOTFOUND;
	} else {
		memset(out, 0, sizeof(*out));
		user_from_row(r, 0, out);
	}
	/* The result held the hash: libpq frees it without wiping. */
	if (by == STORE_BY_NAME && PQntuples(r) > 0)
		memset(PQgetvalue(r, 0, 2), 0, (size_t)PQgetlength(r, 0, 2));
	PQclear(r);
	return rc;
}

int store_pg_user_uuid(struct store_tx *tx, const char *username, char out[UUID_STR_LEN])
{
	struct store_pg_conn *c = store_pg_tx_conn(tx);
	const char *params[] = {username};
	PGresult *r;
	int rc;

	if (c == NULL)
		return TOKEND_EDB;
	rc = store_pg_run(c, &user_uuid_of, params, NULL, &r);
	if (rc != 0)
		return rc;
	if (PQntuples(r) == 0)
		rc = TOKEND_ENOTFOUND;
	else
		store_pg_copy(r, 0, 0, out, UUID_STR_LEN);
	PQclear(r);
	return rc;
}

int store_pg_user_set_password(struct store_tx *tx, const char *uuid, const char *hash)
{
	struct store_pg_conn *c = store_pg_tx_conn(tx);
	const char *params[] = {uuid, hash};

	return c ? store_pg_change1(c, &user_set_pw, params) : TOKEND_EDB;
}

int store_pg_user_set_active(struct store_tx *tx, const char *uuid, bool active)
{
	struct store_pg_conn *c = store_pg_tx_conn(tx);
	const char *params[] = {uuid, active ? "1" : "0"};
	int rc = 0;

	if (c == NULL)
		return TOKEND_EDB;
	/* A disable ends the sessions (sql/postgres/005's trigger): sessions first. */
	if (!active)
		rc = store_pg_run(c, &user_lock_sessions, params, NULL, NULL);
	return rc == 0 ? store_pg_change1(c, &user_set_active, params) : rc;
}

int store_pg_user_touch_login(struct store_tx *tx, const char *uuid, int64_t now)
{
	struct store_pg_conn *c = store_pg_tx_conn(tx);
	char n[PG_I64_LEN];
	const char *params[] = {uuid, store_pg_i64(n, now)};

	return c ? store_pg_change1(c, &user_touch, params) : TOKEND_EDB;
}

int store_pg_user_delete(struct store_tx *tx, const char *uuid)
{
	struct store_pg_conn *c = store_pg_tx_conn(tx);
	const char *params[] = {uuid};
	int rc;

	if (c == NULL)
		return TOKEND_EDB;
	c->unused_jti[0] = '\0'; /* refresh rows change: refresh_use asks the database */
	rc = store_pg_run(c, &user_lock_sessions, params, NULL, NULL);
	if (rc == 0)
		rc = store_pg_run(c, &user_lock_members, params, NULL, NULL);
	return rc == 0 ? store_pg_change1(c, &user_delete, params) : rc;
}

int store_pg_user_count(struct store_db *db, long *count)
{
	struct store_pg_conn *c = store_pg_conn(db);
	bool found;
	int64_t v;
	int rc;

	if (c == NULL)
		return TOKEND_EDB;
	rc = store_pg_int(c, &user_count, NULL, &found, &v);
	if (rc == 0)
		*count = (long)v;
	return rc;
}

int store_pg_user_list(struct store_db *db, int (*fn)(const struct store_user *u, void *arg),
		       void *arg)
{
	struct store_pg_conn *c = store_pg_conn(db);
	struct store_user u;
	PGresult *r;
	int rc;

	if (c == NULL)
		return TOKEND_EDB;
	rc = store_pg_run(c, &user_list, NULL, NULL, &r);
	if (rc != 0)
		return rc;
	for (int i = 0; i < PQntuples(r); i++) {
		memset(&u, 0, sizeof(u));
		user_from_row(r, i, &u);
		if (fn(&u, arg) != 0)
			break;
	}
	PQclear(r);
	return 0;
}

int store_pg_team_add(struct store_tx *tx, const struct store_team *t)
{
	struct store_pg_conn *c = store_pg_tx_conn(tx);
	char created[PG_I64_LEN];
	const char *params[] = {t->uuid, t->name, store_pg_i64(created, t->created_at)};

	return c ? store_pg_run(c, &team_add, params, NULL, NULL) : TOKEND_EDB;
}

static void team_from_row(const PGresult *r, int row, struct store_team *t)
{
	store_pg_copy(r, row, 0, t->uuid, sizeof(t->uuid));
	store_pg_copy(r, row, 1, t->name, sizeof(t->name));
	t->created_at = store_pg_get_i64(r, row, 2);
	t->members = (long)store_pg_get_i64(r, row, 3);
}

int store_pg_team_get(struct store_db *db, struct store_tx *tx, const char *ref,
		      struct store_team *out)
{
	struct store_pg_conn *c = tx ? store_pg_tx_conn(tx) : store_pg_conn(db);
	const char *params[] = {ref};
	PGresult *r;
	int rc;

	if (c == NULL)
		return TOKEND_EDB;
	rc = store_pg_run(c, &team_get, params, NULL, &r);
	if (rc != 0)
		return rc;
	if (PQntuples(r) == 0)
		rc = TOKEND_ENOTFOUND;
	else
		team_from_row(r, 0, out);
	PQclear(r);
	return rc;
}

int store_pg_team_list(struct store_db *db, int (*fn)(const struct store_team *t, void *arg),
		       void *arg)
{
	struct store_pg_conn *c = store_pg_conn(db);
	struct store_team t;
	PGresult *r;
	int rc;

	if (c == NULL)
		return TOKEND_EDB;
	rc = store_pg_run(c, &team_list, NULL, NULL, &r);
	if (rc != 0)
		return rc;
	for (int i = 0; i < PQntuples(r); i++) {
		team_from_row(r, i, &t);
		if (fn(&t, arg) != 0)
			break;
	}
	PQclear(r);
	return 0;
}

int store_pg_member_set(struct store_tx *tx, const char *team_uuid, const char *user_uuid,
			const char *role)
{
	struct store_pg_conn *c = store_pg_tx_conn(tx);
	const char *params[] = {team_uuid, user_uuid, role};

	/* a missing team or user: the foreign key, TOKEND_ENOTFOUND */
	return c ? store_pg_run(c, &member_set, params, NULL, NULL) : TOKEND_EDB;
}

int store_pg_member_remove(struct store_tx *tx, const char *team_uuid, const char *user_uuid)
{
	struct store_pg_conn *c = store_pg_tx_conn(tx);
	const char *params[] = {team_uuid, user_uuid};

	return c ? store_pg_change1(c, &member_remove, params) : TOKEND_EDB;
}

int store_pg_member_is(struct store_db *db, const char *team_uuid, const char *user_uuid,
		       bool *member)
{
	struct store_pg_conn *c = store_pg_conn(db);
	const char *params[] = {team_uuid, user_uuid};
	int64_t v;

	*member = false;
	if (c == NULL)
		return TOKEND_EDB;
	return store_pg_int(c, &member_is, params, member, &v);
}
