/* SPDX-License-Identifier: MIT */
/*
 * This header is the one narrow interface between tokend and its database.
 * The handlers and the CLI reach persistent state only through it, so that a
 * PostgreSQL implementation can be added beside store_sqlite.c. The store
 * never sees HTTP. Every function may be called from any thread: the SQLite
 * implementation keeps one connection per calling thread.
 */
#ifndef TOKEND_STORE_H
#define TOKEND_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "tokend/util.h"

#define STORE_NAME_MAX 150 /* usernames and team names, bytes */

struct store; /* opaque */

struct store_user {
	char uuid[UUID_STR_LEN];
	char username[STORE_NAME_MAX + 1];
	char password[257]; /* the encoded hash (PASSWORD_HASH_MAX); wiped after use */
	bool is_active;
	int64_t created_at;
	int64_t last_login; /* 0 = never */
};

struct store_team {
	char uuid[UUID_STR_LEN];
	char name[STORE_NAME_MAX + 1];
	int64_t created_at;
	long members;
};

/*
 * Opens (creating if needed) the database at path. Does not migrate. On
 * success *out owns the store (store_close). Errors: TOKEND_EDB with a
 * message in errbuf.
 */
int store_open(const char *path, long busy_timeout_ms, struct store **out, char *errbuf,
	       size_t errlen);

/* Closes every connection and frees the store; clears *st; accepts NULL. */
void store_close(struct store **st);

/*
 * Applies the migrations of sql/ newer than the database's user_version, in
 * order, each in its own transaction. *version (if not NULL) gets the
 * version now in force and *fresh whether the database had no schema before.
 * Errors: TOKEND_EDB (also when the database is newer than this binary).
 */
int store_migrate(struct store *st, int *version, bool *fresh, char *errbuf, size_t errlen);

/* Users. Names are compared exactly (case-sensitive, like Django). */
int store_user_add(struct store *st, const char *username, const char *hash,
		   char uuid_out[UUID_STR_LEN]); /* TOKEND_EEXISTS */
int store_user_get_by_name(struct store *st, const char *username, struct store_user *out);
int store_user_set_password(struct store *st, const char *uuid, const char *hash);
int store_user_set_active(struct store *st, const char *username, bool active);
int store_user_delete(struct store *st, const char *username);
int store_user_count(struct store *st, long *count);
/* Calls fn for each user ordered by username; stops early if fn returns non-zero. */
int store_user_list(struct store *st, int (*fn)(const struct store_user *u, void *arg),
		    void *arg);

/* Teams; team_ref is a name or a uuid. */
int store_team_add(struct store *st, const char *name, char uuid_out[UUID_STR_LEN]);
int store_team_get(struct store *st, const char *team_ref, struct store_team *out);
int store_team_list(struct store *st, int (*fn)(const struct store_team *t, void *arg),
		    void *arg);
/* role is "member" or "admin"; re-adding updates the role. */
int store_team_add_member(struct store *st, const char *team_ref, const char *username,
			  const char *role);
int store_team_remove_member(struct store *st, const char *team_ref, const char *username);

/*
 * A successful login, in one transaction: records the new refresh token
 * (jti, family = its login, expiry) as outstanding and sets last_login.
 * Errors: TOKEND_ENOTFOUND when the user vanished meanwhile, TOKEND_EDB.
 */
int store_login_record(struct store *st, const char *user_uuid, const char *refresh_jti,
		       const char *family, int64_t issued_at, int64_t expires_at);

#endif
