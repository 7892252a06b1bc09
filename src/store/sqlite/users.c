/* SPDX-License-Identifier: MIT */
/*
 * This module implements the users, teams and memberships of the SQLite
 * backend: their rows, with the SQL beside the code. Names compare exactly
 * (case-sensitive, like Django).
 */
#include <sqlite3.h>
#include <string.h>

#include "store/sqlite/sqlite.h"
#include "tokend/err.h"

static const char *const stmt_sql[S_COUNT] = {
	[S_USER_ADD] = "INSERT INTO users (uuid, username, password, is_active, created_at) "
		       "VALUES (?1, ?2, ?3, ?4, ?5)",
	[S_USER_BY_NAME] = "SELECT uuid, username, password, is_active, created_at, "
			   "coalesce(last_login, 0) FROM users WHERE username = ?1",
	[S_USER_BY_UUID] = "SELECT uuid, username, '', is_active, created_at, "
			   "coalesce(last_login, 0) FROM users WHERE uuid = ?1",
	[S_USER_UUID_BY_NAME] = "SELECT uuid FROM users WHERE username = ?1",
	[S_USER_SET_PW] = "UPDATE users SET password = ?2 WHERE uuid = ?1",
	[S_USER_SET_ACTIVE] = "UPDATE users SET is_active = ?2 WHERE uuid = ?1",
	/* 0 rows: the user was disabled or deleted while the login hashed. */
	[S_LOGIN_TOUCH] = "UPDATE users SET last_login = ?2 WHERE uuid = ?1 AND is_active = 1",
	[S_USER_DELETE] = "DELETE FROM users WHERE uuid = ?1",
	[S_USER_COUNT] = "SELECT count(*) FROM users",
	[S_USER_LIST] = "SELECT uuid, username, '', is_active, created_at, "
			"coalesce(last_login, 0) FROM users ORDER BY username",
	[S_TEAM_ADD] = "INSERT INTO teams (uuid, name, created_at) VALUES (?1, ?2, ?3)",
	[S_TEAM_GET] = "SELECT t.uuid, t.name, t.created_at, "
		       "(SELECT count(*) FROM team_members m WHERE m.team_uuid = t.uuid) "
		       "FROM teams t WHERE t.uuid = ?1 OR t.name = ?1 "
		       "ORDER BY t.uuid = ?1 DESC LIMIT 1",
	[S_TEAM_LIST] = "SELECT t.uuid, t.name, t.created_at, "
			"(SELECT count(*) FROM team_members m WHERE m.team_uuid = t.uuid) "
			"FROM teams t ORDER BY t.name",
	[S_MEMBER_ADD] = "INSERT INTO team_members (team_uuid, user_uuid, role) "
			 "VALUES (?1, ?2, ?3) "
			 "ON CONFLICT (team_uuid, user_uuid) DO UPDATE SET role = excluded.role",
	[S_MEMBER_REMOVE] = "DELETE FROM team_members WHERE team_uuid = ?1 AND user_uuid = ?2",
	[S_MEMBER_IS] = "SELECT 1 FROM team_members WHERE team_uuid = ?1 AND user_uuid = ?2",
};

int sq_user_add(struct store_tx *tx, const struct store_user *u)
{
	sqlite3_stmt *s = STMT(tx->c, S_USER_ADD);

	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, u->uuid);
	store_db_bind_text(s, 2, u->username);
	store_db_bind_text(s, 3, u->password);
	sqlite3_bind_int(s, 4, u->is_active ? 1 : 0);
	sqlite3_bind_int64(s, 5, u->created_at);
	return store_db_exec(tx->c, s, "user add");
}

static void user_from_row(sqlite3_stmt *s, struct store_user *u)
{
	store_db_copy_col(s, 0, u->uuid, sizeof(u->uuid));
	store_db_copy_col(s, 1, u->username, sizeof(u->username));
	store_db_copy_col(s, 2, u->password, sizeof(u->password));
	u->is_active = sqlite3_column_int(s, 3) != 0;
	u->created_at = sqlite3_column_int64(s, 4);
	u->last_login = sqlite3_column_int64(s, 5);
}

int sq_user_get(struct store_db *db, enum store_user_key by, const char *key,
		struct store_user *out)
{
	struct conn *c = store_db_conn(db);
	sqlite3_stmt *s = c ? STMT(c, by == STORE_BY_NAME ? S_USER_BY_NAME : S_USER_BY_UUID) : NULL;
	int rc;

	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, key);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		user_from_row(s, out);
	store_db_done(s);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? TOKEND_ENOTFOUND : store_db_error(c, "user get");
}

int sq_user_uuid(struct store_tx *tx, const char *username, char out[UUID_STR_LEN])
{
	sqlite3_stmt *s = STMT(tx->c, S_USER_UUID_BY_NAME);
	int rc;

	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, username);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		store_db_copy_col(s, 0, out, UUID_STR_LEN);
	store_db_done(s);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? TOKEND_ENOTFOUND : store_db_error(tx->c, "user uuid");
}

/* Runs statement id of tx with text parameters a and b; no row changed: ENOTFOUND. */
static int change2(struct store_tx *tx, enum stmt_id id, const char *a, const char *b,
		   const char *what)
{
	sqlite3_stmt *s = STMT(tx->c, id);

	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, a);
	if (b != NULL)
		store_db_bind_text(s, 2, b);
	return store_db_exec_changes(tx->c, s, what);
}

int sq_user_set_password(struct store_tx *tx, const char *uuid, const char *hash)
{
	return change2(tx, S_USER_SET_PW, uuid, hash, "user passwd");
}

int sq_user_set_active(struct store_tx *tx, const char *uuid, bool active)
{
	sqlite3_stmt *s = STMT(tx->c, S_USER_SET_ACTIVE);

	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, uuid);
	sqlite3_bind_int(s, 2, active ? 1 : 0);
	return store_db_exec_changes(tx->c, s, "user set active");
}

int sq_user_touch_login(struct store_tx *tx, const char *uuid, int64_t now)
{
	sqlite3_stmt *s = STMT(tx->c, S_LOGIN_TOUCH);

	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, uuid);
	sqlite3_bind_int64(s, 2, now);
	return store_db_exec_changes(tx->c, s, "login touch");
}

int sq_user_delete(struct store_tx *tx, const char *uuid)
{
	return change2(tx, S_USER_DELETE, uuid, NULL, "user delete");
}

int sq_user_count(struct store_db *db, long *count)
{
	struct conn *c = store_db_conn(db);
	int64_t n = 0;
	int rc = c ? store_db_int(c, STMT(c, S_USER_COUNT), "user count", &n) : TOKEND_EDB;

	if (rc == 0)
		*count = (long)n;
	return rc;
}

int sq_user_list(struct store_db *db, int (*fn)(const struct store_user *u, void *arg), void *arg)
{
	struct conn *c = store_db_conn(db);
	sqlite3_stmt *s = c ? STMT(c, S_USER_LIST) : NULL;
	struct store_user u;
	int rc;

	if (s == NULL)
		return TOKEND_EDB;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		memset(&u, 0, sizeof(u));
		user_from_row(s, &u);
		if (fn(&u, arg) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	store_db_done(s);
	return rc == SQLITE_DONE ? 0 : store_db_error(c, "user list");
}

int sq_team_add(struct store_tx *tx, const struct store_team *t)
{
	sqlite3_stmt *s = STMT(tx->c, S_TEAM_ADD);

	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, t->uuid);
	store_db_bind_text(s, 2, t->name);
	sqlite3_bind_int64(s, 3, t->created_at);
	return store_db_exec(tx->c, s, "team add");
}

static void team_from_row(sqlite3_stmt *s, struct store_team *t)
{
	store_db_copy_col(s, 0, t->uuid, sizeof(t->uuid));
	store_db_copy_col(s, 1, t->name, sizeof(t->name));
	t->created_at = sqlite3_column_int64(s, 2);
	t->members = (long)sqlite3_column_int64(s, 3);
}

int sq_team_get(struct store_db *db, struct store_tx *tx, const char *ref, struct store_team *out)
{
	struct conn *c = tx != NULL ? tx->c : store_db_conn(db);
	sqlite3_stmt *s = c ? STMT(c, S_TEAM_GET) : NULL;
	int rc;

	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, ref);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		team_from_row(s, out);
	store_db_done(s);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? TOKEND_ENOTFOUND : store_db_error(c, "team get");
}

int sq_team_list(struct store_db *db, int (*fn)(const struct store_team *t, void *arg), void *arg)
{
	struct conn *c = store_db_conn(db);
	sqlite3_stmt *s = c ? STMT(c, S_TEAM_LIST) : NULL;
	struct store_team t;
	int rc;

	if (s == NULL)
		return TOKEND_EDB;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		memset(&t, 0, sizeof(t));
		team_from_row(s, &t);
		if (fn(&t, arg) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	store_db_done(s);
	return rc == SQLITE_DONE ? 0 : store_db_error(c, "team list");
}

int sq_member_set(struct store_tx *tx, const char *team_uuid, const char *user_uuid,
		  const char *role)
{
	sqlite3_stmt *s = STMT(tx->c, S_MEMBER_ADD);

	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, team_uuid);
	store_db_bind_text(s, 2, user_uuid);
	store_db_bind_text(s, 3, role);
	return store_db_exec(tx->c, s, "member add");
}

int sq_member_remove(struct store_tx *tx, const char *team_uuid, const char *user_uuid)
{
	return change2(tx, S_MEMBER_REMOVE, team_uuid, user_uuid, "member remove");
}

int sq_member_is(struct store_db *db, const char *team_uuid, const char *user_uuid, bool *member)
{
	const char *params[] = {team_uuid, user_uuid};
	struct conn *c = store_db_conn(db);

	*member = false;
	if (c == NULL)
		return TOKEND_EDB;
	return store_db_exists(c, STMT(c, S_MEMBER_IS), params, 2, member);
}
