/* SPDX-License-Identifier: MIT */
/*
 * This suite tests the API-token part of include/tokend/store.h against a
 * temporary SQLite file (the cap, listing, lookup by token string, deletion and
 * liveness), the store calls bearer authentication relies on
 * (store_team_is_member, store_user_get_by_uuid) and the listing version.
 * util_time_parse_rfc3339, which reads the expires_at of an issue request,
 * is tested by the util suite (test_util.c).
 */
#include <check.h>
#include <dirent.h>
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
#define NO_SUCH_UUID "00000000-0000-4000-8000-000000000000"
#define KID "0123456789abcdef"

static char base[64];
static char tmpdir[128];
static char dbpath[192];
static struct store *st;

/* Removes dir and everything under it. */

static void rm_db(void)
{
	char p[256];
	static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};

	for (size_t i = 0; i < 4; i++) {
		snprintf(p, sizeof p, "%s%s", dbpath, sfx[i]);
		unlink(p);
	}
}

static void setup(void)
{
	char err[256] = "";

	snprintf(tmpdir, sizeof tmpdir, "%s/XXXXXX", base);
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(dbpath, sizeof dbpath, "%s/a.db", tmpdir);
	st = NULL;
	ck_assert_msg(store_open(dbpath, 5000, &st, err, sizeof err) == 0, "open: %s", err);
	ck_assert_msg(store_migrate(st, NULL, NULL, err, sizeof err) == 0, "migrate: %s", err);
}

static void teardown(void)
{
	store_close(&st);
	rm_db();
	rmdir(tmpdir);
}

/* ---- helpers ------------------------------------------------------------ */

/* Users alice and bob, teams Red and Blue; alice in both, bob in Red. */
struct world {
	char alice[UUID_STR_LEN];
	char bob[UUID_STR_LEN];
	char red[UUID_STR_LEN];
	char blue[UUID_STR_LEN];
};

static void make_world(struct world *w)
{
	ck_assert_int_eq(store_user_add(st, "alice", HASH, w->alice), 0);
	ck_assert_int_eq(store_user_add(st, "bob", HASH, w->bob), 0);
	ck_assert_int_eq(store_team_add(st, "Red", w->red), 0);
	ck_assert_int_eq(store_team_add(st, "Blue", w->blue), 0);
	ck_assert_int_eq(store_team_add_member(st, "Red", "alice", "member"), 0);
	ck_assert_int_eq(store_team_add_member(st, "Blue", "alice", "member"), 0);
	ck_assert_int_eq(store_team_add_member(st, "Red", "bob", "member"), 0);
}

/* A token row of user in team: fresh jti, a digest derived from the jti. */
static void token_of(struct store_api_token *t, const char *user, const char *team,
		     int64_t issued_at, int64_t expires_at, const char *name)
{
	memset(t, 0, sizeof(*t));
	ck_assert_int_eq(util_uuid_new(t->jti), 0);
	for (size_t i = 0; i < sizeof t->digest; i++)
		t->digest[i] = (unsigned char)(t->jti[i] ^ (unsigned char)(i * 7 + 1));
	snprintf(t->user_uuid, sizeof t->user_uuid, "%s", user);
	snprintf(t->team_uuid, sizeof t->team_uuid, "%s", team);
	snprintf(t->kid, sizeof t->kid, "%s", KID);
	snprintf(t->name, sizeof t->name, "%s", name ? name : "");
	t->issued_at = issued_at;
	t->updated_at = issued_at;
	t->expires_at = expires_at;
}

static bool live_of(const struct store_api_token *t)
{
	bool live = true;

	ck_assert_int_eq(store_api_token_live(st, t->jti, t->user_uuid, t->team_uuid, &live), 0);
	return live;
}

#define MAX_SEEN 16

struct seen {
	int n;
	struct store_api_token t[MAX_SEEN];
};

static int collect(const struct store_api_token *t, void *arg)
{
	struct seen *s = arg;

	if (s->n < MAX_SEEN)
		s->t[s->n] = *t;
	s->n++;
	return 0;
}

static int list_of(const char *user, const char *team, int64_t now, struct seen *s)
{
	memset(s, 0, sizeof(*s));
	ck_assert_int_eq(store_api_token_list(st, user, team, now, collect, s), 0);
	return s->n;
}

/* ---- store_api_token_add ------------------------------------------------ */

START_TEST(add_cap)
{
	struct world w;
	struct store_api_token t;
	int64_t now = util_now();

	make_world(&w);
	/* two tokens that expired before now do not count against the cap */
	token_of(&t, w.alice, w.red, now - 1000, now - 500, NULL);
	ck_assert_int_eq(store_api_token_add(st, &t, t.jti, 3), 0);
	token_of(&t, w.alice, w.red, now - 900, now - 1, NULL);
	ck_assert_int_eq(store_api_token_add(st, &t, t.jti, 3), 0);
	/* a token expiring exactly now is expired at now */
	token_of(&t, w.alice, w.red, now - 800, now, NULL);
	ck_assert_int_eq(store_api_token_add(st, &t, t.jti, 3), 0);

	for (int i = 0; i < 3; i++) {
		token_of(&t, w.alice, w.red, now, now + 3600, "ci");
		ck_assert_int_eq(store_api_token_add(st, &t, t.jti, 3), 0);
	}
	token_of(&t, w.alice, w.red, now, now + 3600, NULL);
	ck_assert_int_eq(store_api_token_add(st, &t, t.jti, 3), TOKEND_ECONFLICT);
	ck_assert(!live_of(&t));
	/* still refused with a later issue time at which nothing has expired */
	token_of(&t, w.alice, w.red, now + 10, now + 3600, NULL);
	ck_assert_int_eq(store_api_token_add(st, &t, t.jti, 3), TOKEND_ECONFLICT);
	/* but once the live ones expired (issued after their exp) there is room */
	token_of(&t, w.alice, w.red, now + 3600, now + 7200, NULL);
	ck_assert_int_eq(store_api_token_add(st, &t, t.jti, 3), 0);

	/* the cap is per user and per team */
	token_of(&t, w.bob, w.red, now, now + 3600, NULL);
	ck_assert_int_eq(store_api_token_add(st, &t, t.jti, 3), 0);
	token_of(&t, w.alice, w.blue, now, now + 3600, NULL);
	ck_assert_int_eq(store_api_token_add(st, &t, t.jti, 3), 0);
	/* four live at now (three and the one issued at now + 3600): a cap of 5 admits one more */
	token_of(&t, w.alice, w.red, now, now + 3600, NULL);
	ck_assert_int_eq(store_api_token_add(st, &t, t.jti, 4), TOKEND_ECONFLICT);
	ck_assert_int_eq(store_api_token_add(st, &t, t.jti, 5), 0);
	token_of(&t, w.alice, w.red, now, now + 3600, NULL);
	ck_assert_int_eq(store_api_token_add(st, &t, t.jti, 5), TOKEND_ECONFLICT);
}
END_TEST

START_TEST(add_cap_one)
{
	struct world w;
	struct store_api_token a, b;
	const char *jtis[1];
	long deleted = -1;
	int64_t now = util_now();

	make_world(&w);
	token_of(&a, w.alice, w.red, now, now + 60, NULL);
	ck_assert_int_eq(store_api_token_add(st, &a, a.jti, 1), 0);
	token_of(&b, w.alice, w.red, now, now + 60, NULL);
	ck_assert_int_eq(store_api_token_add(st, &b, b.jti, 1), TOKEND_ECONFLICT);
	/* deleting one makes room for another */
	jtis[0] = a.jti;
	ck_assert_int_eq(store_api_token_delete(st, w.alice, w.red, util_now(), jtis, 1, &deleted),
			 0);
	ck_assert_int_eq(deleted, 1);
	ck_assert_int_eq(store_api_token_add(st, &b, b.jti, 1), 0);
	ck_assert(live_of(&b));
}
END_TEST

/* ---- store_api_token_list ----------------------------------------------- */

START_TEST(list_newest_first)
{
	struct world w;
	struct store_api_token mid, old, new, expired, bobs, blue;
	struct seen s;
	int64_t now = util_now();

	make_world(&w);
	ck_assert_int_eq(list_of(w.alice, w.red, now, &s), 0);

	/* inserted out of order */
	token_of(&mid, w.alice, w.red, now - 20, now + 1000, "mid");
	token_of(&old, w.alice, w.red, now - 30, now + 2000, NULL);
	token_of(&new, w.alice, w.red, now - 10, now + 500, "newest");
	token_of(&expired, w.alice, w.red, now - 5, now - 1, "expired");
	token_of(&bobs, w.bob, w.red, now - 1, now + 1000, "bob");
	token_of(&blue, w.alice, w.blue, now - 1, now + 1000, "blue");
	ck_assert_int_eq(store_api_token_add(st, &mid, mid.jti, 100), 0);
	ck_assert_int_eq(store_api_token_add(st, &old, old.jti, 100), 0);
	ck_assert_int_eq(store_api_token_add(st, &expired, expired.jti, 100), 0);
	ck_assert_int_eq(store_api_token_add(st, &new, new.jti, 100), 0);
	ck_assert_int_eq(store_api_token_add(st, &bobs, bobs.jti, 100), 0);
	ck_assert_int_eq(store_api_token_add(st, &blue, blue.jti, 100), 0);

	ck_assert_int_eq(list_of(w.alice, w.red, now, &s), 3);
	ck_assert_str_eq(s.t[0].jti, new.jti);
	ck_assert_str_eq(s.t[1].jti, mid.jti);
	ck_assert_str_eq(s.t[2].jti, old.jti);
	/* the claims come back as stored */
	ck_assert_str_eq(s.t[0].name, "newest");
	ck_assert_str_eq(s.t[2].name, "");
	for (int i = 0; i < 3; i++) {
		ck_assert_str_eq(s.t[i].kid, KID);
		if (s.t[i].user_uuid[0] != '\0')
			ck_assert_str_eq(s.t[i].user_uuid, w.alice);
		if (s.t[i].team_uuid[0] != '\0')
			ck_assert_str_eq(s.t[i].team_uuid, w.red);
	}
	ck_assert_int_eq(s.t[1].issued_at, now - 20);
	ck_assert_int_eq(s.t[1].updated_at, now - 20);
	ck_assert_int_eq(s.t[1].expires_at, now + 1000);
	ck_assert_int_eq(s.t[2].expires_at, now + 2000);

	/* only what is unexpired at `now` */
	ck_assert_int_eq(list_of(w.alice, w.red, now + 500, &s), 2);
	ck_assert_str_eq(s.t[0].jti, mid.jti);
	ck_assert_int_eq(list_of(w.alice, w.red, now + 1999, &s), 1);
	ck_assert_str_eq(s.t[0].jti, old.jti);
	ck_assert_int_eq(list_of(w.alice, w.red, now + 2000, &s), 0);
	/* and only that user and team */
	ck_assert_int_eq(list_of(w.bob, w.red, now, &s), 1);
	ck_assert_str_eq(s.t[0].jti, bobs.jti);
	ck_assert_int_eq(list_of(w.alice, w.blue, now, &s), 1);
	ck_assert_str_eq(s.t[0].jti, blue.jti);
	ck_assert_int_eq(list_of(w.bob, w.blue, now, &s), 0);
	ck_assert_int_eq(list_of(NO_SUCH_UUID, w.red, now, &s), 0);
}
END_TEST

START_TEST(list_same_second)
{
	struct world w;
	struct store_api_token t[5];
	struct seen s;
	int64_t now = util_now();

	make_world(&w);
	for (int i = 0; i < 5; i++) {
		token_of(&t[i], w.alice, w.red, now, now + 100, NULL);
		ck_assert_int_eq(store_api_token_add(st, &t[i], t[i].jti, 100), 0);
	}
	/* issued within one second: the later insert is the newer */
	ck_assert_int_eq(list_of(w.alice, w.red, now, &s), 5);
	for (int i = 0; i < 5; i++)
		ck_assert_str_eq(s.t[i].jti, t[4 - i].jti);
}
END_TEST

/* ---- store_api_token_find ------------------------------------------------ */

START_TEST(find_by_string)
{
	struct world w;
	struct store_api_token a, b;
	char other[UUID_STR_LEN + 1];
	char jti[UUID_STR_LEN];
	int64_t now = util_now();

	make_world(&w);
	token_of(&a, w.alice, w.red, now, now + 100, NULL);
	token_of(&b, w.bob, w.red, now, now + 100, NULL);
	ck_assert_int_eq(store_api_token_add(st, &a, a.jti, 100), 0);
	ck_assert_int_eq(store_api_token_add(st, &b, b.jti, 100), 0);

	memset(jti, 0, sizeof jti);
	ck_assert_int_eq(store_api_token_find(st, a.jti, jti), 0);
	ck_assert_str_eq(jti, a.jti);
	ck_assert_int_eq(store_api_token_find(st, b.jti, jti), 0);
	ck_assert_str_eq(jti, b.jti);

	/* a string one byte off, and an empty one, are no token */
	memcpy(other, a.jti, UUID_STR_LEN);
	other[0] ^= 1;
	ck_assert_int_eq(store_api_token_find(st, other, jti), TOKEND_ENOTFOUND);
	ck_assert_int_eq(store_api_token_find(st, "", jti), TOKEND_ENOTFOUND);

	/* a deleted token is not found any more */
	{
		const char *jtis[] = {a.jti};
		long deleted = 0;

		ck_assert_int_eq(store_api_token_delete(st, w.alice, w.red, util_now(), jtis, 1,
							&deleted),
				 0);
		ck_assert_int_eq(deleted, 1);
	}
	ck_assert_int_eq(store_api_token_find(st, a.jti, jti), TOKEND_ENOTFOUND);
	ck_assert_int_eq(store_api_token_find(st, b.jti, jti), 0);
}
END_TEST

/* ---- store_api_token_delete --------------------------------------------- */

START_TEST(delete_own_only)
{
	struct world w;
	struct store_api_token mine1, mine2, mine_blue, bobs, keep;
	struct seen s;
	long deleted = -1;
	int64_t now = util_now();

	make_world(&w);
	token_of(&mine1, w.alice, w.red, now, now + 100, NULL);
	token_of(&mine2, w.alice, w.red, now, now + 100, NULL);
	token_of(&keep, w.alice, w.red, now, now + 100, NULL);
	token_of(&mine_blue, w.alice, w.blue, now, now + 100, NULL);
	token_of(&bobs, w.bob, w.red, now, now + 100, NULL);
	ck_assert_int_eq(store_api_token_add(st, &mine1, mine1.jti, 100), 0);
	ck_assert_int_eq(store_api_token_add(st, &mine2, mine2.jti, 100), 0);
	ck_assert_int_eq(store_api_token_add(st, &keep, keep.jti, 100), 0);
	ck_assert_int_eq(store_api_token_add(st, &mine_blue, mine_blue.jti, 100), 0);
	ck_assert_int_eq(store_api_token_add(st, &bobs, bobs.jti, 100), 0);

	{
		const char *jtis[] = {mine1.jti, bobs.jti,  mine_blue.jti, NO_SUCH_UUID,
				      mine2.jti, mine1.jti, "not-a-uuid"};

		ck_assert_int_eq(store_api_token_delete(st, w.alice, w.red, util_now(), jtis, 7,
							&deleted),
				 0);
	}
	ck_assert_int_eq(deleted, 2);
	ck_assert(!live_of(&mine1));
	ck_assert(!live_of(&mine2));
	/* others' tokens and other teams' tokens are untouched */
	ck_assert(live_of(&keep));
	ck_assert(live_of(&bobs));
	ck_assert(live_of(&mine_blue));
	ck_assert_int_eq(list_of(w.alice, w.red, now, &s), 1);
	ck_assert_str_eq(s.t[0].jti, keep.jti);
	ck_assert_int_eq(list_of(w.bob, w.red, now, &s), 1);
	ck_assert_int_eq(list_of(w.alice, w.blue, now, &s), 1);

	/* deleting again counts nothing */
	{
		const char *jtis[] = {mine1.jti, mine2.jti};

		deleted = -1;
		ck_assert_int_eq(store_api_token_delete(st, w.alice, w.red, util_now(), jtis, 2,
							&deleted),
				 0);
		ck_assert_int_eq(deleted, 0);
	}
	/* bob deleting alice's token in a team bob belongs to: nothing */
	{
		const char *jtis[] = {keep.jti};

		deleted = -1;
		ck_assert_int_eq(store_api_token_delete(st, w.bob, w.red, util_now(), jtis, 1,
							&deleted),
				 0);
		ck_assert_int_eq(deleted, 0);
		ck_assert(live_of(&keep));
	}
	/* alice naming her Blue token through Red: nothing */
	{
		const char *jtis[] = {mine_blue.jti};

		deleted = -1;
		ck_assert_int_eq(store_api_token_delete(st, w.alice, w.red, util_now(), jtis, 1,
							&deleted),
				 0);
		ck_assert_int_eq(deleted, 0);
		ck_assert(live_of(&mine_blue));
		ck_assert_int_eq(store_api_token_delete(st, w.alice, w.blue, util_now(), jtis, 1,
							&deleted),
				 0);
		ck_assert_int_eq(deleted, 1);
		ck_assert(!live_of(&mine_blue));
	}
}
END_TEST

START_TEST(delete_many)
{
	enum { N = 40 };
	struct world w;
	struct store_api_token t[N];
	const char *jtis[N];
	struct seen s;
	long deleted = -1;
	int64_t now = util_now();

	make_world(&w);
	for (int i = 0; i < N; i++) {
		token_of(&t[i], w.alice, w.red, now, now + 100, NULL);
		ck_assert_int_eq(store_api_token_add(st, &t[i], t[i].jti, N), 0);
		jtis[i] = t[i].jti;
	}
	ck_assert_int_eq(store_api_token_delete(st, w.alice, w.red, util_now(), jtis, N - 1,
						&deleted),
			 0);
	ck_assert_int_eq(deleted, N - 1);
	ck_assert_int_eq(list_of(w.alice, w.red, now, &s), 1);
	ck_assert_str_eq(s.t[0].jti, t[N - 1].jti);
}
END_TEST

/* ---- store_api_token_live ----------------------------------------------- */

START_TEST(live)
{
	struct world w;
	struct store_api_token red, blue, bobs;
	bool is_live = true;
	int64_t now = util_now();

	make_world(&w);
	token_of(&red, w.alice, w.red, now, now + 100, NULL);
	token_of(&blue, w.alice, w.blue, now, now + 100, NULL);
	token_of(&bobs, w.bob, w.red, now, now + 100, NULL);
	ck_assert_int_eq(store_api_token_add(st, &red, red.jti, 100), 0);
	ck_assert_int_eq(store_api_token_add(st, &blue, blue.jti, 100), 0);
	ck_assert_int_eq(store_api_token_add(st, &bobs, bobs.jti, 100), 0);
	ck_assert(live_of(&red));
	ck_assert(live_of(&blue));
	ck_assert(live_of(&bobs));

	/* the claims must match the row */
	ck_assert_int_eq(store_api_token_live(st, red.jti, w.bob, w.red, &is_live), 0);
	ck_assert(!is_live);
	is_live = true;
	ck_assert_int_eq(store_api_token_live(st, red.jti, w.alice, w.blue, &is_live), 0);
	ck_assert(!is_live);
	is_live = true;
	ck_assert_int_eq(store_api_token_live(st, NO_SUCH_UUID, w.alice, w.red, &is_live), 0);
	ck_assert(!is_live);

	/* removed from Red: the Red token dies, the Blue one lives */
	ck_assert_int_eq(store_team_remove_member(st, "Red", "alice"), 0);
	ck_assert(!live_of(&red));
	ck_assert(live_of(&blue));
	ck_assert(live_of(&bobs));

	/* disabled: every token of the user dies; enabled again: back */
	ck_assert_int_eq(store_user_set_active(st, "alice", false), 0);
	ck_assert(!live_of(&blue));
	ck_assert(live_of(&bobs));
	ck_assert_int_eq(store_user_set_active(st, "alice", true), 0);
	ck_assert(live_of(&blue));

	/* deleted */
	{
		const char *jtis[] = {bobs.jti};
		long deleted = 0;

		ck_assert_int_eq(store_api_token_delete(st, w.bob, w.red, util_now(), jtis, 1,
							&deleted),
				 0);
		ck_assert_int_eq(deleted, 1);
	}
	ck_assert(!live_of(&bobs));

	/* the user deleted */
	ck_assert_int_eq(store_user_delete(st, "alice"), 0);
	ck_assert(!live_of(&blue));
}
END_TEST

START_TEST(live_after_delete_only_that_one)
{
	struct world w;
	struct store_api_token a, b;
	const char *jtis[1];
	long deleted = 0;
	int64_t now = util_now();

	make_world(&w);
	token_of(&a, w.alice, w.red, now, now + 100, NULL);
	token_of(&b, w.alice, w.red, now, now + 100, NULL);
	ck_assert_int_eq(store_api_token_add(st, &a, a.jti, 100), 0);
	ck_assert_int_eq(store_api_token_add(st, &b, b.jti, 100), 0);
	jtis[0] = a.jti;
	ck_assert_int_eq(store_api_token_delete(st, w.alice, w.red, util_now(), jtis, 1, &deleted),
			 0);
	ck_assert_int_eq(deleted, 1);
	ck_assert(!live_of(&a));
	ck_assert(live_of(&b));
}
END_TEST

/* ---- store_team_is_member, store_user_get_by_uuid ----------------------- */

START_TEST(team_is_member)
{
	struct world w;
	bool member;

	make_world(&w);
	member = false;
	ck_assert_int_eq(store_team_is_member(st, w.red, w.alice, &member), 0);
	ck_assert(member);
	member = false;
	ck_assert_int_eq(store_team_is_member(st, w.red, w.bob, &member), 0);
	ck_assert(member);
	member = true;
	ck_assert_int_eq(store_team_is_member(st, w.blue, w.bob, &member), 0);
	ck_assert(!member);
	member = true;
	ck_assert_int_eq(store_team_is_member(st, NO_SUCH_UUID, w.alice, &member), 0);
	ck_assert(!member);
	member = true;
	ck_assert_int_eq(store_team_is_member(st, w.red, NO_SUCH_UUID, &member), 0);
	ck_assert(!member);
	/* arguments are uuids, not names */
	member = true;
	ck_assert_int_eq(store_team_is_member(st, "Red", w.alice, &member), 0);
	ck_assert(!member);

	ck_assert_int_eq(store_team_remove_member(st, w.red, "bob"), 0);
	member = true;
	ck_assert_int_eq(store_team_is_member(st, w.red, w.bob, &member), 0);
	ck_assert(!member);
	ck_assert_int_eq(store_team_add_member(st, "Blue", "bob", "admin"), 0);
	member = false;
	ck_assert_int_eq(store_team_is_member(st, w.blue, w.bob, &member), 0);
	ck_assert(member);
}
END_TEST

/* The listing version: membership, and a bump on every change of that pair only. */
START_TEST(token_version)
{
	struct world w;
	struct store_api_token t, other;
	int64_t now = util_now(), v0, v1, v2, vb;
	bool member = true;
	long deleted = 0;
	const char *jti;

	make_world(&w);
	ck_assert_int_eq(store_api_token_version(st, w.blue, w.bob, &member, &vb), 0);
	ck_assert(!member); /* bob is not in Blue */
	ck_assert_int_eq(store_api_token_version(st, w.red, w.alice, &member, &v0), 0);
	ck_assert(member);
	ck_assert_int_eq(v0, 0); /* never had a token */

	token_of(&t, w.alice, w.red, now, now + 3600, "a");
	ck_assert_int_eq(store_api_token_add(st, &t, t.jti, 10), 0);
	ck_assert_int_eq(store_api_token_version(st, w.red, w.alice, &member, &v1), 0);
	ck_assert_int_gt(v1, v0);

	/* another pair's change leaves this one alone */
	ck_assert_int_eq(store_api_token_version(st, w.red, w.bob, &member, &vb), 0);
	token_of(&other, w.bob, w.red, now, now + 3600, "b");
	ck_assert_int_eq(store_api_token_add(st, &other, other.jti, 10), 0);
	ck_assert_int_eq(store_api_token_version(st, w.red, w.alice, &member, &v2), 0);
	ck_assert_int_eq(v2, v1);

	jti = t.jti;
	ck_assert_int_eq(store_api_token_delete(st, w.alice, w.red, now, &jti, 1, &deleted), 0);
	ck_assert_int_eq(deleted, 1);
	ck_assert_int_eq(store_api_token_version(st, w.red, w.alice, &member, &v2), 0);
	ck_assert_int_gt(v2, v1);
}
END_TEST

/* One write by another connection, as an operator's sqlite3 shell makes it. */
static void outside_write(const char *sql)
{
	sqlite3 *db = NULL;

	ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	ck_assert_int_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

/*
 * The version is remembered per thread (src/store/listing_memo.c), yet any
 * commit by anyone, here a connection outside the store, is seen by the
 * very next call: the memo holds only while SQLite's WAL-index header is
 * the one read before its lookup.
 */
START_TEST(token_version_outside_write)
{
	struct world w;
	struct store_api_token t;
	int64_t now = util_now(), v1, v2, v3;
	bool member = false;
	char sql[256];

	make_world(&w);
	token_of(&t, w.alice, w.red, now, now + 3600, "a");
	ck_assert_int_eq(store_api_token_add(st, &t, t.jti, 10), 0);
	ck_assert_int_eq(store_api_token_version(st, w.red, w.alice, &member, &v1), 0);
	ck_assert_int_eq(store_api_token_version(st, w.red, w.alice, &member, &v2), 0);
	ck_assert_int_eq(v2, v1); /* nothing changed: the memo answers */

	snprintf(sql, sizeof sql, "DELETE FROM api_tokens WHERE jti = '%s'", t.jti);
	outside_write(sql);
	ck_assert_int_eq(store_api_token_version(st, w.red, w.alice, &member, &v3), 0);
	ck_assert_int_gt(v3, v2);
	ck_assert(member);

	snprintf(sql, sizeof sql, "DELETE FROM team_members WHERE user_uuid = '%s'", w.alice);
	outside_write(sql);
	ck_assert_int_eq(store_api_token_version(st, w.red, w.alice, &member, &v3), 0);
	ck_assert(!member); /* a membership removed behind our back is seen at once */
}
END_TEST

START_TEST(user_get_by_uuid)
{
	struct world w;
	struct store_user u;

	make_world(&w);
	memset(&u, 0x5a, sizeof u);
	ck_assert_int_eq(store_user_get_by_uuid(st, w.alice, &u), 0);
	ck_assert_str_eq(u.uuid, w.alice);
	ck_assert_str_eq(u.username, "alice");
	ck_assert_str_eq(u.password, "");
	ck_assert(u.is_active);
	ck_assert_int_gt(u.created_at, 0);
	ck_assert_int_eq(u.last_login, 0);

	ck_assert_int_eq(store_user_set_active(st, "alice", false), 0);
	ck_assert_int_eq(store_user_get_by_uuid(st, w.alice, &u), 0);
	ck_assert(!u.is_active);

	ck_assert_int_eq(store_user_get_by_uuid(st, w.bob, &u), 0);
	ck_assert_str_eq(u.username, "bob");
	ck_assert_int_eq(store_user_get_by_uuid(st, NO_SUCH_UUID, &u), TOKEND_ENOTFOUND);
	ck_assert_int_eq(store_user_get_by_uuid(st, "alice", &u), TOKEND_ENOTFOUND);
	ck_assert_int_eq(store_user_delete(st, "bob"), 0);
	ck_assert_int_eq(store_user_get_by_uuid(st, w.bob, &u), TOKEND_ENOTFOUND);
}
END_TEST

static Suite *api_store_suite(void)
{
	Suite *s = suite_create("api_store");
	TCase *tc = tcase_create("tokens");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, add_cap);
	tcase_add_test(tc, add_cap_one);
	tcase_add_test(tc, list_newest_first);
	tcase_add_test(tc, list_same_second);
	tcase_add_test(tc, find_by_string);
	tcase_add_test(tc, delete_own_only);
	tcase_add_test(tc, delete_many);
	tcase_add_test(tc, live);
	tcase_add_test(tc, live_after_delete_only_that_one);
	tcase_add_test(tc, team_is_member);
	tcase_add_test(tc, token_version);
	tcase_add_test(tc, token_version_outside_write);
	tcase_add_test(tc, user_get_by_uuid);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return UNIT_MAIN(api_store_suite(), "api-store", base, NULL);
}
