/* SPDX-License-Identifier: MIT */
/*
 * This suite tests src/handlers/list_cache.h, the per-thread cache of
 * API-token listings: a miss on an empty cache; a hit hands out a fresh,
 * identical, NUL-terminated copy; a miss as soon as the version, the keys
 * generation, the user or the team differ or now reaches valid_until; a put
 * replaces the body of its key (and of a key sharing its slot); bodies up to
 * LIST_CACHE_MAX_BODY bytes are kept, a larger one is not and leaves the
 * slot as it was; one thread never sees another's entries; and among many
 * keys a hit is always the body put for that exact key.
 */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers/list_cache.h"
#include "tokend/util.h"

#define NOW 1700000000 /* any time; the cache takes now from its caller */

/* A user and a team of fresh uuids, so that tests never share entries. */
struct pair {
	char user[UUID_STR_LEN];
	char team[UUID_STR_LEN];
};

static void pair_new(struct pair *p)
{
	ck_assert_int_eq(util_uuid_new(p->user), 0);
	ck_assert_int_eq(util_uuid_new(p->team), 0);
}

static struct list_cache_key key_of(const struct pair *p, int64_t version, unsigned gen)
{
	struct list_cache_key k = {.user_uuid = p->user,
				   .team_uuid = p->team,
				   .version = version,
				   .keys_gen = gen};
	return k;
}

static void put_str(const struct list_cache_key *k, int64_t valid_until, const char *body)
{
	list_cache_put(k, valid_until, body, strlen(body));
}

/* Asserts a hit at now with exactly body (and frees the copy). */
static void expect_hit(const struct list_cache_key *k, int64_t now, const char *body)
{
	char *got = list_cache_get(k, now);

	ck_assert_msg(got != NULL, "expected a hit for %s/%s v%lld g%u at %lld", k->user_uuid,
		      k->team_uuid, (long long)k->version, k->keys_gen, (long long)now);
	ck_assert_str_eq(got, body);
	free(got);
}

static void expect_miss(const struct list_cache_key *k, int64_t now)
{
	char *got = list_cache_get(k, now);

	ck_assert_msg(got == NULL, "expected a miss for %s/%s v%lld g%u at %lld, got \"%.60s\"",
		      k->user_uuid, k->team_uuid, (long long)k->version, k->keys_gen,
		      (long long)now, got ? got : "");
	free(got);
}

/* Is k's entry still there (any body)? */
static int present(const struct list_cache_key *k, int64_t now)
{
	char *got = list_cache_get(k, now);

	free(got);
	return got != NULL;
}

enum vary { VARY_BOTH, VARY_USER, VARY_TEAM };

/*
 * Finds a pair whose slot is k's: the first of fresh pairs whose put evicts
 * k's entry (then re-puts k's body). VARY_USER keeps k's team (a fresh user
 * only), VARY_TEAM keeps k's user. Black-box, so it does not depend on the
 * hash; about LIST_CACHE_SLOTS tries.
 */
static void colliding_pair(const struct list_cache_key *k, const char *body, enum vary what,
			   struct pair *out)
{
	for (int i = 0; i < 100000; i++) {
		struct list_cache_key o;
		char *got;

		pair_new(out);
		if (what == VARY_USER)
			memcpy(out->team, k->team_uuid, UUID_STR_LEN);
		else if (what == VARY_TEAM)
			memcpy(out->user, k->user_uuid, UUID_STR_LEN);
		o = key_of(out, k->version, k->keys_gen);
		put_str(&o, NOW + 100, "probe");
		got = list_cache_get(k, NOW);
		if (got == NULL) {
			put_str(k, NOW + 100, body);
			expect_hit(k, NOW, body);
			return;
		}
		ck_assert_msg(strcmp(got, body) == 0, "%s/%s got %s/%s's body \"%s\"", k->user_uuid,
			      k->team_uuid, out->user, out->team, got);
		free(got);
	}
	ck_abort_msg("no pair shares a slot with %s/%s", k->user_uuid, k->team_uuid);
}

/* ---- hits and misses ----------------------------------------------------- */

START_TEST(empty_cache_misses)
{
	struct pair p;
	struct list_cache_key k;

	pair_new(&p);
	k = key_of(&p, 0, 0);
	expect_miss(&k, NOW);
	k = key_of(&p, 7, 3);
	expect_miss(&k, NOW);
	expect_miss(&k, INT64_MIN);
}
END_TEST

START_TEST(hit_is_a_fresh_copy)
{
	static const char body[] = "{\"tokens\":[{\"name\":\"a\"}]}";
	struct pair p;
	struct list_cache_key k;
	char *a, *b;

	pair_new(&p);
	k = key_of(&p, 3, 1);
	put_str(&k, NOW + 60, body);
	a = list_cache_get(&k, NOW);
	b = list_cache_get(&k, NOW);
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_ptr_ne(a, b);
	ck_assert_ptr_ne(a, body);
	ck_assert_uint_eq(strlen(a), strlen(body)); /* NUL-terminated at len */
	ck_assert_str_eq(a, body);
	ck_assert_str_eq(b, body);
	/* the copies are the caller's: scribbling on one changes nothing kept */
	memset(a, 'x', strlen(a));
	free(a);
	expect_hit(&k, NOW, body);
	free(b);
}
END_TEST

START_TEST(put_copies_the_body)
{
	char body[] = "{\"tokens\":[]}";
	struct pair p;
	struct list_cache_key k;

	pair_new(&p);
	k = key_of(&p, 1, 0);
	put_str(&k, NOW + 60, body);
	memset(body, '#', strlen(body));
	expect_hit(&k, NOW, "{\"tokens\":[]}");
}
END_TEST

START_TEST(body_with_len_not_strlen)
{
	/* len bytes are kept, not up to a NUL, and the copy is terminated */
	static const char text[] = "{\"tokens\":[]}TRAILING";
	struct pair p;
	struct list_cache_key k;

	pair_new(&p);
	k = key_of(&p, 1, 0);
	list_cache_put(&k, NOW + 60, text, 13);
	expect_hit(&k, NOW, "{\"tokens\":[]}");
	/* an empty body is a body */
	list_cache_put(&k, NOW + 60, "", 0);
	expect_hit(&k, NOW, "");
}
END_TEST

START_TEST(version_must_match)
{
	struct pair p;
	struct list_cache_key k, older, newer;

	pair_new(&p);
	k = key_of(&p, 5, 2);
	older = key_of(&p, 4, 2);
	newer = key_of(&p, 6, 2);
	put_str(&k, NOW + 60, "v5");
	expect_miss(&newer, NOW);
	expect_miss(&older, NOW);
	expect_hit(&k, NOW, "v5");
	/* version 0 (a pair that never had a token) is a version like any other */
	k = key_of(&p, 0, 2);
	put_str(&k, NOW + 60, "v0");
	expect_hit(&k, NOW, "v0");
	k = key_of(&p, 1, 2);
	expect_miss(&k, NOW);
}
END_TEST

START_TEST(keys_gen_must_match)
{
	struct pair p;
	struct list_cache_key k, reloaded;

	pair_new(&p);
	k = key_of(&p, 5, 2);
	reloaded = key_of(&p, 5, 3);
	put_str(&k, NOW + 60, "g2");
	expect_miss(&reloaded, NOW);
	expect_hit(&k, NOW, "g2");
	/* a generation counter that wrapped around is still a different one */
	k = key_of(&p, 5, 0xffffffffu);
	reloaded = key_of(&p, 5, 0);
	put_str(&k, NOW + 60, "gmax");
	expect_miss(&reloaded, NOW);
	expect_hit(&k, NOW, "gmax");
}
END_TEST

START_TEST(valid_until_is_exclusive)
{
	struct pair p;
	struct list_cache_key k;

	pair_new(&p);
	k = key_of(&p, 1, 0);
	put_str(&k, NOW + 10, "until+10");
	expect_hit(&k, NOW, "until+10");
	expect_hit(&k, NOW + 9, "until+10");
	expect_miss(&k, NOW + 10);
	expect_miss(&k, NOW + 11);
	expect_miss(&k, INT64_MAX);
	/* still there for an earlier now (the entry is not dropped by a miss) */
	expect_hit(&k, NOW + 9, "until+10");
	/* an empty listing is good forever */
	put_str(&k, INT64_MAX, "{\"tokens\":[]}");
	expect_hit(&k, INT64_MAX - 1, "{\"tokens\":[]}");
	expect_miss(&k, INT64_MAX);
	/* valid_until in the past keeps nothing usable */
	put_str(&k, NOW - 1, "stale");
	expect_miss(&k, NOW);
}
END_TEST

START_TEST(user_and_team_must_match)
{
	struct pair p, q, ou, ot, sw;
	struct list_cache_key k, other_user, other_team, swapped;

	pair_new(&p);
	pair_new(&q);
	k = key_of(&p, 1, 0);
	put_str(&k, NOW + 60, "p");
	ou = p;
	ot = p;
	memcpy(ou.user, q.user, UUID_STR_LEN);
	memcpy(ot.team, q.team, UUID_STR_LEN);
	other_user = key_of(&ou, 1, 0);
	other_team = key_of(&ot, 1, 0);
	expect_miss(&other_user, NOW);
	expect_miss(&other_team, NOW);
	/* user and team exchanged: a different key */
	memcpy(sw.user, p.team, UUID_STR_LEN);
	memcpy(sw.team, p.user, UUID_STR_LEN);
	swapped = key_of(&sw, 1, 0);
	expect_miss(&swapped, NOW);
	/* a one-character difference in the last position */
	ou = p;
	ou.user[35] = ou.user[35] == '0' ? '1' : '0';
	other_user = key_of(&ou, 1, 0);
	expect_miss(&other_user, NOW);
	ot = p;
	ot.team[35] = ot.team[35] == '0' ? '1' : '0';
	other_team = key_of(&ot, 1, 0);
	expect_miss(&other_team, NOW);
	expect_hit(&k, NOW, "p");
}
END_TEST

START_TEST(over_long_uuids_are_not_kept)
{
	/* the slot holds UUID_STR_LEN bytes: a longer user or team keeps nothing */
	char longer[UUID_STR_LEN + 1];
	struct pair p;
	struct list_cache_key k;

	pair_new(&p);
	memcpy(longer, p.user, UUID_STR_LEN - 1);
	longer[UUID_STR_LEN - 1] = 'x';
	longer[UUID_STR_LEN] = '\0';
	k = (struct list_cache_key){.user_uuid = longer, .team_uuid = p.team, .version = 1};
	put_str(&k, NOW + 60, "long user");
	expect_miss(&k, NOW);
	k = (struct list_cache_key){.user_uuid = p.user, .team_uuid = longer, .version = 1};
	put_str(&k, NOW + 60, "long team");
	expect_miss(&k, NOW);
}
END_TEST

/* ---- replacing ----------------------------------------------------------- */

START_TEST(put_replaces_body_of_same_key)
{
	struct pair p;
	struct list_cache_key k, k2;

	pair_new(&p);
	k = key_of(&p, 1, 0);
	put_str(&k, NOW + 60, "first body, longer than the second");
	put_str(&k, NOW + 30, "second");
	expect_hit(&k, NOW, "second");
	expect_miss(&k, NOW + 30); /* and its valid_until */
	/* a newer version replaces the older one: the older misses */
	k2 = key_of(&p, 2, 0);
	put_str(&k2, NOW + 60, "v2");
	expect_hit(&k2, NOW, "v2");
	expect_miss(&k, NOW);
}
END_TEST

START_TEST(colliding_put_replaces_slot)
{
	static const enum vary whats[] = {VARY_BOTH, VARY_USER, VARY_TEAM};

	for (size_t i = 0; i < sizeof whats / sizeof whats[0]; i++) {
		struct pair p, q;
		struct list_cache_key k, o;

		pair_new(&p);
		k = key_of(&p, 1, 0);
		put_str(&k, NOW + 60, "mine");
		/* q shares k's slot, its version and generation, and (for VARY_USER
		 * and VARY_TEAM) its team or its user: only the strings tell apart */
		colliding_pair(&k, "mine", whats[i], &q);
		o = key_of(&q, 1, 0);
		expect_miss(&o, NOW); /* its probe was evicted by re-putting k */
		put_str(&o, NOW + 60, "theirs");
		expect_hit(&o, NOW, "theirs");
		expect_miss(&k, NOW);
		put_str(&k, NOW + 60, "mine again");
		expect_miss(&o, NOW);
		expect_hit(&k, NOW, "mine again");
	}
}
END_TEST

/* ---- size bound ---------------------------------------------------------- */

START_TEST(max_body_kept_one_more_not)
{
	char *big = malloc(LIST_CACHE_MAX_BODY + 2);
	struct pair p;
	struct list_cache_key k, k2;
	char *got;

	ck_assert_ptr_nonnull(big);
	for (size_t i = 0; i < LIST_CACHE_MAX_BODY + 1; i++)
		big[i] = (char)('a' + i % 26);
	big[LIST_CACHE_MAX_BODY + 1] = '\0';
	pair_new(&p);

	/* exactly LIST_CACHE_MAX_BODY bytes: kept, byte for byte */
	k = key_of(&p, 1, 0);
	list_cache_put(&k, NOW + 60, big, LIST_CACHE_MAX_BODY);
	got = list_cache_get(&k, NOW);
	ck_assert_ptr_nonnull(got);
	ck_assert_uint_eq(strlen(got), LIST_CACHE_MAX_BODY);
	ck_assert_mem_eq(got, big, LIST_CACHE_MAX_BODY);
	free(got);

	/* one byte more, same key: not kept, and the slot is left as it was
	 * (the put returns before touching it), so the earlier body stays */
	list_cache_put(&k, NOW + 60, big, LIST_CACHE_MAX_BODY + 1);
	got = list_cache_get(&k, NOW);
	ck_assert_ptr_nonnull(got);
	ck_assert_uint_eq(strlen(got), LIST_CACHE_MAX_BODY);
	free(got);

	/* one byte more under a newer version: that version misses, and the
	 * older entry is still there */
	k2 = key_of(&p, 2, 0);
	list_cache_put(&k2, NOW + 60, big, LIST_CACHE_MAX_BODY + 1);
	expect_miss(&k2, NOW);
	ck_assert(present(&k, NOW));

	/* a small entry is not evicted by an oversize put to the same slot */
	put_str(&k, NOW + 60, "small");
	list_cache_put(&k2, NOW + 60, big, LIST_CACHE_MAX_BODY + 1);
	expect_hit(&k, NOW, "small");
	expect_miss(&k2, NOW);
	free(big);
}
END_TEST

START_TEST(oversize_put_leaves_colliding_entry)
{
	char *big = calloc(1, LIST_CACHE_MAX_BODY + 2);
	struct pair p, q;
	struct list_cache_key k, o;

	ck_assert_ptr_nonnull(big);
	memset(big, 'z', LIST_CACHE_MAX_BODY + 1);
	pair_new(&p);
	k = key_of(&p, 1, 0);
	put_str(&k, NOW + 60, "kept");
	colliding_pair(&k, "kept", VARY_BOTH, &q);
	o = key_of(&q, 1, 0);
	list_cache_put(&o, NOW + 60, big, LIST_CACHE_MAX_BODY + 1);
	expect_miss(&o, NOW);
	expect_hit(&k, NOW, "kept");
	free(big);
}
END_TEST

/* ---- threads ------------------------------------------------------------- */

struct thread_job {
	const struct list_cache_key *k;
	const char *put;   /* put this body first, if not NULL */
	int hit_after_put; /* the thread's own get right after its put */
	int hit;           /* a get of k in the thread (before any put) */
	char seen[64];     /* what that get returned */
};

static void *thread_main(void *arg)
{
	struct thread_job *j = arg;
	char *got = list_cache_get(j->k, NOW);

	j->hit = got != NULL;
	snprintf(j->seen, sizeof j->seen, "%s", got ? got : "");
	free(got);
	if (j->put != NULL) {
		put_str(j->k, NOW + 60, j->put);
		got = list_cache_get(j->k, NOW);
		j->hit_after_put = got != NULL && strcmp(got, j->put) == 0;
		free(got);
	}
	return NULL;
}

static void run_thread(struct thread_job *j)
{
	pthread_t t;

	ck_assert_int_eq(pthread_create(&t, NULL, thread_main, j), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
}

START_TEST(threads_do_not_share)
{
	struct pair p, q;
	struct list_cache_key k, k2;
	struct thread_job j;

	pair_new(&p);
	k = key_of(&p, 1, 0);

	/* a put in a thread: that thread hits, main misses */
	memset(&j, 0, sizeof j);
	j.k = &k;
	j.put = "from the thread";
	run_thread(&j);
	ck_assert_int_eq(j.hit, 0);
	ck_assert_int_eq(j.hit_after_put, 1);
	expect_miss(&k, NOW);

	/* a put in main: another thread misses, main hits */
	put_str(&k, NOW + 60, "from main");
	memset(&j, 0, sizeof j);
	j.k = &k;
	run_thread(&j);
	ck_assert_msg(!j.hit, "a thread saw main's entry: \"%s\"", j.seen);
	expect_hit(&k, NOW, "from main");

	/* a thread's put does not replace main's body for the same key */
	memset(&j, 0, sizeof j);
	j.k = &k;
	j.put = "thread's own";
	run_thread(&j);
	ck_assert_msg(!j.hit, "a thread saw main's entry: \"%s\"", j.seen);
	ck_assert_int_eq(j.hit_after_put, 1);
	expect_hit(&k, NOW, "from main");

	/* a thread that never had a cache (first use is a get of another key) */
	pair_new(&q);
	k2 = key_of(&q, 1, 0);
	memset(&j, 0, sizeof j);
	j.k = &k2;
	run_thread(&j);
	ck_assert_int_eq(j.hit, 0);
}
END_TEST

/* Many threads at once, each with its own keys: no cross-talk, no races. */
struct many_job {
	struct pair pairs[40];
	int bad;
};

static void *many_main(void *arg)
{
	struct many_job *j = arg;
	char want[64];

	for (int round = 0; round < 50; round++) {
		for (int i = 0; i < 40; i++) {
			struct list_cache_key k = key_of(&j->pairs[i], round, 0);
			snprintf(want, sizeof want, "%s#%d", j->pairs[i].user, round);
			put_str(&k, NOW + 60, want);
		}
		for (int i = 0; i < 40; i++) {
			struct list_cache_key k = key_of(&j->pairs[i], round, 0);
			char *got = list_cache_get(&k, NOW);
			snprintf(want, sizeof want, "%s#%d", j->pairs[i].user, round);
			if (got != NULL && strcmp(got, want) != 0)
				j->bad++;
			free(got);
		}
	}
	return NULL;
}

START_TEST(concurrent_threads_stay_apart)
{
	enum { N = 4 };
	struct many_job *jobs = calloc(N, sizeof(*jobs));
	pthread_t t[N];

	ck_assert_ptr_nonnull(jobs);
	for (int n = 0; n < N; n++)
		for (int i = 0; i < 40; i++)
			pair_new(&jobs[n].pairs[i]);
	for (int n = 0; n < N; n++)
		ck_assert_int_eq(pthread_create(&t[n], NULL, many_main, &jobs[n]), 0);
	for (int n = 0; n < N; n++) {
		ck_assert_int_eq(pthread_join(t[n], NULL), 0);
		ck_assert_int_eq(jobs[n].bad, 0);
	}
	free(jobs);
}
END_TEST

/* ---- many keys ----------------------------------------------------------- */

#define MANY 1000

START_TEST(many_keys_never_a_wrong_body)
{
	struct pair *pairs = calloc(MANY, sizeof(*pairs));
	char body[128];
	int hits = 0;

	ck_assert_ptr_nonnull(pairs);
	/* pairs that share users and teams, as real ones do */
	for (int i = 0; i < MANY; i++) {
		pair_new(&pairs[i]);
		if (i % 3 == 1)
			memcpy(pairs[i].user, pairs[i - 1].user, UUID_STR_LEN);
		if (i % 5 == 2)
			memcpy(pairs[i].team, pairs[i - 2].team, UUID_STR_LEN);
	}
	for (int i = 0; i < MANY; i++) {
		struct list_cache_key k = key_of(&pairs[i], i, (unsigned)(i % 7));
		snprintf(body, sizeof body, "body %d of %s/%s", i, pairs[i].user, pairs[i].team);
		put_str(&k, NOW + 1 + i, body);
		expect_hit(&k, NOW, body); /* at once, at least */
	}
	for (int i = 0; i < MANY; i++) {
		struct list_cache_key k = key_of(&pairs[i], i, (unsigned)(i % 7));
		char *got = list_cache_get(&k, NOW);

		snprintf(body, sizeof body, "body %d of %s/%s", i, pairs[i].user, pairs[i].team);
		if (got != NULL) {
			ck_assert_msg(strcmp(got, body) == 0, "key %d: got \"%s\", want \"%s\"", i,
				      got, body);
			hits++;
		}
		free(got);
		/* another version, generation, or a later now: never a hit */
		k.version = i + 1;
		expect_miss(&k, NOW);
		k.version = i;
		k.keys_gen = (unsigned)(i % 7) + 1;
		expect_miss(&k, NOW);
		k.keys_gen = (unsigned)(i % 7);
		expect_miss(&k, NOW + 1 + i);
	}
	/* a bounded table: at most one entry per slot survives, at least one does */
	ck_assert_int_ge(hits, 1);
	ck_assert_int_le(hits, LIST_CACHE_SLOTS);
	free(pairs);
}
END_TEST

static Suite *list_cache_suite(void)
{
	Suite *s = suite_create("list_cache");
	TCase *tc = tcase_create("hits");
	TCase *tr = tcase_create("replace");
	TCase *tt = tcase_create("threads");

	tcase_add_test(tc, empty_cache_misses);
	tcase_add_test(tc, hit_is_a_fresh_copy);
	tcase_add_test(tc, put_copies_the_body);
	tcase_add_test(tc, body_with_len_not_strlen);
	tcase_add_test(tc, version_must_match);
	tcase_add_test(tc, keys_gen_must_match);
	tcase_add_test(tc, valid_until_is_exclusive);
	tcase_add_test(tc, user_and_team_must_match);
	tcase_add_test(tc, over_long_uuids_are_not_kept);
	suite_add_tcase(s, tc);
	tcase_add_test(tr, put_replaces_body_of_same_key);
	tcase_add_test(tr, colliding_put_replaces_slot);
	tcase_add_test(tr, max_body_kept_one_more_not);
	tcase_add_test(tr, oversize_put_leaves_colliding_entry);
	tcase_add_test(tr, many_keys_never_a_wrong_body);
	suite_add_tcase(s, tr);
	tcase_add_test(tt, threads_do_not_share);
	tcase_add_test(tt, concurrent_threads_stay_apart);
	suite_add_tcase(s, tt);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(list_cache_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
