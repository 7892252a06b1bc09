/* SPDX-License-Identifier: MIT */
/*
 * This header is private to src/store/fake/: the in-memory tables the fake
 * backend keeps (one struct per row of sql/'s tables), the state a
 * transaction copies, and the row helpers that play the triggers' part
 * (fake_rows.c), shared by fake.c (lifecycle, transactions, users, teams,
 * sessions) and fake_tokens.c (refresh and API tokens, housekeeping).
 */
#ifndef TOKEND_STORE_FAKE_INTERNAL_H
#define TOKEND_STORE_FAKE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "store/backend.h"

/* A growable array of fixed-size rows, kept in insertion order. */
struct vec {
	unsigned char *v;
	size_t n, cap, size;
};

struct fuser {
	struct store_user u; /* password kept; last_login 0 = NULL */
};

struct fteam {
	char uuid[UUID_STR_LEN];
	char name[STORE_NAME_MAX + 1];
	int64_t created_at;
};

struct fmember {
	char team[UUID_STR_LEN];
	char user[UUID_STR_LEN];
	char role[8];
};

struct fsession {
	char id[UUID_STR_LEN];
	char user[UUID_STR_LEN];
	int64_t created_at;
	bool revoked; /* revoked_at IS NOT NULL */
	int64_t revoked_at;
};

struct frefresh {
	struct store_refresh r; /* session_created_at unused */
	bool used;              /* used_at IS NOT NULL */
	int64_t used_at;
	char replaced_by[UUID_STR_LEN]; /* "" = NULL */
	bool revoked;
};

struct fversion {
	char user[UUID_STR_LEN];
	char team[UUID_STR_LEN];
	int64_t version;
};

struct fend {
	int64_t seq;
	char sid[UUID_STR_LEN];
	int64_t ended_at;
};

/* The tables. struct store_api_token rows keep name "" for NULL. */
enum { T_USERS, T_TEAMS, T_MEMBERS, T_SESSIONS, T_REFRESH, T_API, T_VERSIONS, T_ENDS, T_N };

struct fstate {
	struct vec t[T_N];
	int64_t next_seq; /* of session_ends */
	int version;      /* the migration in force; 0 = never migrated */
};

struct store_db {
	pthread_mutex_t write_lock; /* held from write_begin to write_end */
	pthread_mutex_t state_lock; /* guards the pointer committed */
	struct fstate *committed;
};

struct store_tx {
	struct store_db *db;
	struct fstate *work; /* the transaction's copy */
};

#define ROW(s, tab, type, i) ((type *)(void *)((s)->t[tab].v + (i) * (s)->t[tab].size))
#define NROWS(s, tab) ((s)->t[tab].n)

static inline bool fake_eq(const char *a, const char *b)
{
	return strcmp(a, b) == 0;
}

/* Copies a NUL-terminated string into a fixed buffer, cut as snprintf would. */
static inline void fake_put(char *dst, size_t len, const char *src)
{
	size_t n = strlen(src);

	if (n >= len)
		n = len - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}
#define PUT(dst, src) fake_put((dst), sizeof(dst), (src))

/* Rows (fake_rows.c). */
/* A zeroed new row at the end of table tab, or NULL (out of memory). */
void *fake_row_push(struct fstate *s, int tab);
/* Removes row i of table tab, keeping the others in order. */
void fake_row_del(struct fstate *s, int tab, size_t i);
/* An empty state, a deep copy of one (NULL: out of memory), and its free. */
struct fstate *fake_state_new(void);
struct fstate *fake_state_copy(const struct fstate *src);
void fake_state_free(struct fstate *s); /* accepts NULL */
/* Read access to the last commit: fake_read() ... fake_unread(). */
const struct fstate *fake_read(struct store_db *db);
void fake_unread(struct store_db *db);
/*
 * A copy of table tab of the last commit (*n rows; the caller frees it),
 * sorted by cmp when not NULL, so that callbacks run unlocked. NULL: out of
 * memory.
 */
void *fake_snapshot(struct store_db *db, int tab, int (*cmp)(const void *, const void *),
		    size_t *n);
/* Lookups by key: the row or NULL. */
struct fuser *fake_user_find(const struct fstate *s, const char *uuid);
struct fuser *fake_user_by_name(const struct fstate *s, const char *name);
struct fteam *fake_team_find(const struct fstate *s, const char *uuid);
struct fmember *fake_member_find(const struct fstate *s, const char *team, const char *user);
struct fsession *fake_session_find(const struct fstate *s, const char *id);
struct frefresh *fake_refresh_find(const struct fstate *s, const char *jti);
/* Appends a session_ends row: sid ended at `at`. */
int fake_ends_log(struct fstate *s, const char *sid, int64_t at);
/* sql/003's trigger: the version of (user, team) goes to 1 or one up. */
int fake_version_bump(struct fstate *s, const char *user, const char *team);
/* Deletes API token row i, bumping its pair's version (sql/003). */
int fake_api_del_row(struct fstate *s, size_t i);
/* Deletes session row i; a live one is logged as ended at `at`. */
int fake_session_del_row(struct fstate *s, size_t i, int64_t at);
/* Deletes refresh row i; the session goes with its family's last row (sql/004). */
int fake_refresh_del_row(struct fstate *s, size_t i);

/* The op wip-seam's backend.h adds (fake.c): *ended = sid unrecorded or ended. */

/* The token ops of the table (fake_tokens.c), as backend.h documents them. */
int fake_refresh_add(struct store_tx *tx, const struct store_refresh *r);
int fake_refresh_state(struct store_tx *tx, const char *jti, struct store_refresh_state *out);
int fake_refresh_row(struct store_tx *tx, const char *jti, struct store_refresh *out);
int fake_refresh_use(struct store_tx *tx, const char *jti, int64_t now, const char *next_jti);
int fake_refresh_live(struct store_db *db, const char *jti, const char *user_uuid, bool *live);
int fake_api_count(struct store_tx *tx, const char *user_uuid, const char *team_uuid, int64_t now,
		   long *count);
int fake_api_add(struct store_tx *tx, const struct store_api_token *t);
int fake_api_version(struct store_db *db, const char *team_uuid, const char *user_uuid,
		     bool *member, int64_t *version);
int fake_api_list(struct store_db *db, const char *user_uuid, const char *team_uuid, int64_t now,
		  int (*fn)(const struct store_api_token *t, void *arg), void *arg);
int fake_api_by_digest(struct store_db *db, const unsigned char digest[32], char jti[UUID_STR_LEN]);
int fake_api_delete(struct store_tx *tx, const char *jti, const char *user_uuid,
		    const char *team_uuid, int64_t now, long *deleted);
int fake_api_delete_all(struct store_tx *tx, const char *user_uuid, const char *team_uuid);
int fake_api_live(struct store_db *db, const char *jti, const char *user_uuid,
		  const char *team_uuid, bool *live);
int fake_purge(struct store_tx *tx, enum store_purge_table table, int64_t before, long limit,
	       long *deleted);
int fake_key_in_use(struct store_db *db, const char *kid, int64_t now, long access_lifetime,
		    bool *in_use);

#endif
