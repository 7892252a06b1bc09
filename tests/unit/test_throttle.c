/* SPDX-License-Identifier: MIT */
/*
 * This suite tests include/tokend/throttle.h with an injected clock:
 * - counting: limit failures, then refusals that count nothing, the first
 *   refusal of a window reported once, Retry-After = the rest of the window;
 * - pending: admitted attempts not yet settled fill the limit too (so a
 *   burst cannot overshoot it), with Retry-After 1;
 * - windows: a refusal does not extend the window; at its end the key is
 *   admitted again with a fresh count;
 * - forgive settles an attempt as no failure, clear forgets the key;
 * - keys: the parts are encoded unambiguously, tables have their own hash
 *   keys, a 1 MiB part is fine;
 * - eviction: after 100,000 distinct one-failure keys through a table of
 *   100,000 entries, a key with 9 recent failures is still counted, and the
 *   newest keys are counted too (cold entries made room);
 * - memory: the table's resident size does not grow with that flood;
 * - concurrency: 8 threads counting the same keys lose no count.
 * It also prints the table's bytes per entry and the cost of one admit.
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tokend/throttle.h"

#define T0 1000000

static uint64_t key_n(struct throttle *t, unsigned long n)
{
	char name[32];
	int len = snprintf(name, sizeof(name), "user-%lu", n);

	return throttle_key(t, name, (size_t)len, "127.0.0.1", 9);
}

/* One failed attempt: admitted, then settled as a failure. */
static enum throttle_outcome fail_once(struct throttle *t, uint64_t k, int64_t now)
{
	long ra = 0;
	enum throttle_outcome o = throttle_admit(t, k, now, &ra);

	if (o == THROTTLE_ADMITTED)
		throttle_fail(t, k, now);
	return o;
}

/* Anonymous resident bytes of this process (RssAnon: code pages paged in
 * meanwhile do not count). */
static long rss_bytes(void)
{
	char line[128];
	long kb = -1;
	FILE *fp = fopen("/proc/self/status", "r");

	if (fp == NULL)
		return -1;
	while (fgets(line, sizeof(line), fp) != NULL)
		if (sscanf(line, "RssAnon: %ld kB", &kb) == 1)
			break;
	fclose(fp);
	return kb < 0 ? -1 : kb * 1024;
}

START_TEST(bad_arguments)
{
	ck_assert_ptr_null(throttle_new(THROTTLE_WAYS - 1, 10, 900));
	ck_assert_ptr_null(throttle_new(1000, 0, 900));
	ck_assert_ptr_null(throttle_new(1000, THROTTLE_LIMIT_MAX + 1, 900));
	ck_assert_ptr_null(throttle_new(1000, 10, 0));
	ck_assert_ptr_null(throttle_new(1000, 10, THROTTLE_WINDOW_MAX + 1));
}
END_TEST

START_TEST(counts_to_the_limit)
{
	struct throttle *t = throttle_new(1000, 10, 900);
	uint64_t k;
	long ra = 0;

	ck_assert_ptr_nonnull(t);
	k = key_n(t, 1);
	for (int i = 0; i < 10; i++) {
		ck_assert_int_eq(fail_once(t, k, T0 + i), THROTTLE_ADMITTED);
		ck_assert_int_eq(throttle_count(t, k, T0 + i), i + 1);
	}
	ck_assert_int_eq(throttle_admit(t, k, T0 + 10, &ra), THROTTLE_REFUSED_FIRST);
	ck_assert_int_eq(ra, 890);
	ck_assert_int_eq(throttle_admit(t, k, T0 + 11, &ra), THROTTLE_REFUSED);
	ck_assert_int_eq(ra, 889);
	ck_assert_int_eq(throttle_count(t, k, T0 + 11), 10); /* refusals count nothing */
	/* another key is not affected */
	ck_assert_int_eq(fail_once(t, key_n(t, 2), T0 + 11), THROTTLE_ADMITTED);
	throttle_free(&t);
	ck_assert_ptr_null(t);
	throttle_free(&t);
	throttle_free(NULL);
}
END_TEST

START_TEST(window_ends)
{
	struct throttle *t = throttle_new(1000, 3, 10);
	uint64_t k = key_n(t, 7);
	long ra = 0;

	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(fail_once(t, k, T0), THROTTLE_ADMITTED);
	ck_assert_int_eq(throttle_admit(t, k, T0 + 9, &ra), THROTTLE_REFUSED_FIRST);
	ck_assert_int_eq(ra, 1);
	/* the refusal at T0 + 9 did not extend the window */
	ck_assert_int_eq(throttle_count(t, k, T0 + 10), 0);
	ck_assert_int_eq(fail_once(t, k, T0 + 10), THROTTLE_ADMITTED);
	ck_assert_int_eq(throttle_count(t, k, T0 + 10), 1);
	/* the new window opened at T0 + 10 */
	ck_assert_int_eq(fail_once(t, k, T0 + 11), THROTTLE_ADMITTED);
	ck_assert_int_eq(fail_once(t, k, T0 + 12), THROTTLE_ADMITTED);
	ck_assert_int_eq(throttle_admit(t, k, T0 + 12, &ra), THROTTLE_REFUSED_FIRST);
	ck_assert_int_eq(ra, 8);
	throttle_free(&t);
	/* a clock value that wraps 32 bits changes nothing */
	t = throttle_new(1000, 1, 10);
	k = key_n(t, 8);
	ck_assert_int_eq(fail_once(t, k, 0xfffffffeLL), THROTTLE_ADMITTED);
	ck_assert_int_eq(throttle_admit(t, k, 0x100000002LL, &ra), THROTTLE_REFUSED_FIRST);
	ck_assert_int_eq(ra, 6);
	ck_assert_int_eq(fail_once(t, k, 0x100000008LL), THROTTLE_ADMITTED);
	throttle_free(&t);
}
END_TEST

START_TEST(window_opens_at_the_first_failure)
{
	struct throttle *t = throttle_new(1000, 1, 10);
	uint64_t k = key_n(t, 9);
	long ra = 0;

	/* admitted at T0, failed (hashed) at T0 + 3: the window runs to T0 + 13 */
	ck_assert_int_eq(throttle_admit(t, k, T0, &ra), THROTTLE_ADMITTED);
	throttle_fail(t, k, T0 + 3);
	ck_assert_int_eq(throttle_admit(t, k, T0 + 12, &ra), THROTTLE_REFUSED_FIRST);
	ck_assert_int_eq(ra, 1);
	ck_assert_int_eq(throttle_admit(t, k, T0 + 13, &ra), THROTTLE_ADMITTED);
	throttle_free(&t);
}
END_TEST

START_TEST(pending_attempts_fill_the_limit)
{
	struct throttle *t = throttle_new(1000, 3, 900);
	uint64_t k = key_n(t, 5);
	long ra = 0;

	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(throttle_admit(t, k, T0, &ra), THROTTLE_ADMITTED);
	/* three in flight: a fourth must wait for them, a moment only */
	ck_assert_int_eq(throttle_admit(t, k, T0, &ra), THROTTLE_REFUSED);
	ck_assert_int_eq(ra, 1);
	ck_assert_int_eq(throttle_count(t, k, T0), 0);
	throttle_forgive(t, k, T0); /* one succeeded */
	ck_assert_int_eq(throttle_admit(t, k, T0, &ra), THROTTLE_ADMITTED);
	for (int i = 0; i < 3; i++)
		throttle_fail(t, k, T0 + 1);
	ck_assert_int_eq(throttle_count(t, k, T0 + 1), 3);
	ck_assert_int_eq(throttle_admit(t, k, T0 + 1, &ra), THROTTLE_REFUSED_FIRST);
	ck_assert_int_eq(ra, 900); /* the window opened at the first failure, T0 + 1 */
	/* a failure settled after the key was forgotten opens a new window */
	throttle_clear(t, k);
	throttle_fail(t, k, T0 + 2);
	ck_assert_int_eq(throttle_count(t, k, T0 + 2), 1);
	throttle_free(&t);
}
END_TEST

START_TEST(forgive_and_clear)
{
	struct throttle *t = throttle_new(1000, 2, 100);
	uint64_t k = key_n(t, 3);
	long ra = 0;

	ck_assert_int_eq(fail_once(t, k, T0), THROTTLE_ADMITTED);
	ck_assert_int_eq(throttle_admit(t, k, T0, &ra), THROTTLE_ADMITTED);
	throttle_forgive(t, k, T0 + 1); /* a success: not counted */
	ck_assert_int_eq(throttle_count(t, k, T0 + 1), 1);
	ck_assert_int_eq(fail_once(t, k, T0 + 1), THROTTLE_ADMITTED);
	ck_assert_int_eq(throttle_admit(t, k, T0 + 1, &ra), THROTTLE_REFUSED_FIRST);
	throttle_clear(t, k);
	ck_assert_int_eq(throttle_count(t, k, T0 + 1), 0);
	ck_assert_int_eq(fail_once(t, k, T0 + 1), THROTTLE_ADMITTED);
	/* a refusal after a clear is a first refusal again */
	ck_assert_int_eq(fail_once(t, k, T0 + 1), THROTTLE_ADMITTED);
	ck_assert_int_eq(throttle_admit(t, k, T0 + 1, &ra), THROTTLE_REFUSED_FIRST);
	/* forgiving an absent key or past its window does nothing */
	throttle_forgive(t, key_n(t, 4), T0);
	ck_assert_int_eq(throttle_count(t, key_n(t, 4), T0), 0);
	throttle_forgive(t, k, T0 + 200);
	ck_assert_int_eq(throttle_count(t, k, T0 + 200), 0);
	/* a NULL table is throttling off */
	ck_assert_int_eq(throttle_admit(NULL, k, T0, &ra), THROTTLE_ADMITTED);
	throttle_fail(NULL, k, T0);
	throttle_forgive(NULL, k, T0);
	throttle_clear(NULL, k);
	throttle_free(&t);
}
END_TEST

START_TEST(keys_are_unambiguous)
{
	struct throttle *a = throttle_new(1000, 10, 900);
	struct throttle *b = throttle_new(1000, 10, 900);
	static char big[1 << 20];

	ck_assert_uint_eq(throttle_key(a, "ab", 2, "c", 1), throttle_key(a, "ab", 2, "c", 1));
	ck_assert_uint_ne(throttle_key(a, "ab", 2, "c", 1), throttle_key(a, "a", 1, "bc", 2));
	ck_assert_uint_ne(throttle_key(a, "", 0, "abc", 3), throttle_key(a, "abc", 3, "", 0));
	ck_assert_uint_ne(throttle_key(a, "alice", 5, NULL, 0),
			  throttle_key(a, "alicf", 5, NULL, 0));
	/* each table draws its own hash key */
	ck_assert_uint_ne(throttle_key(a, "alice", 5, NULL, 0),
			  throttle_key(b, "alice", 5, NULL, 0));
	ck_assert_uint_ne(throttle_key(a, "", 0, NULL, 0), 0);
	/* every length up to past a block boundary differs */
	for (size_t n = 0; n < 40; n++)
		ck_assert_uint_ne(throttle_key(a, big, n, NULL, 0),
				  throttle_key(a, big, n + 1, NULL, 0));
	memset(big, 'x', sizeof(big));
	ck_assert_uint_ne(throttle_key(a, big, sizeof(big), "c", 1),
			  throttle_key(a, big, sizeof(big) - 1, "c", 1));
	throttle_free(&a);
	throttle_free(&b);
}
END_TEST

START_TEST(hot_entry_survives_a_flood)
{
	struct throttle *t = throttle_new(100000, 10, 900);
	uint64_t hot = throttle_key(t, "victim", 6, "10.0.0.1", 8);
	long ra = 0, rss_before, rss_after;
	unsigned long present = 0, refused = 0;

	ck_assert_ptr_nonnull(t);
	for (int i = 0; i < 9; i++)
		ck_assert_int_eq(fail_once(t, hot, T0), THROTTLE_ADMITTED);
	rss_before = rss_bytes();
	/* no ck_assert in the loop: Check records each passed one (and under
	 * ASan that allocates), which would blur the RSS figure */
	for (unsigned long n = 0; n < 100000; n++)
		refused += fail_once(t, key_n(t, n), T0 + 1 + (int64_t)(n / 1000)) !=
			   THROTTLE_ADMITTED;
	rss_after = rss_bytes();
	ck_assert_uint_eq(refused, 0);
	ck_assert_int_eq(throttle_count(t, hot, T0 + 101), 9);
	ck_assert_int_eq(fail_once(t, hot, T0 + 101), THROTTLE_ADMITTED);
	ck_assert_int_eq(throttle_admit(t, hot, T0 + 101, &ra), THROTTLE_REFUSED_FIRST);
	/* the newest keys of the flood are counted (older cold ones made room) */
	for (unsigned long n = 99000; n < 100000; n++)
		present += throttle_count(t, key_n(t, n), T0 + 101) == 1;
	ck_assert_uint_ge(present, 990);
	/* the table was resident from throttle_new: the flood did not grow it */
	ck_assert_int_lt(rss_after - rss_before, 64 * 1024);
	printf("throttle: %zu bytes for 100000 entries (%.1f per entry); RSS %ld -> %ld "
	       "across 100000 distinct keys\n",
	       throttle_bytes(t), (double)throttle_bytes(t) / 100000.0, rss_before, rss_after);
	throttle_free(&t);
}
END_TEST

START_TEST(flood_cannot_grow_memory)
{
	long rss0 = rss_bytes(), rss1, rss2;
	struct throttle *t = throttle_new(100000, 10, 900);

	rss1 = rss_bytes();
	for (unsigned long n = 0; n < 1000000; n++)
		(void)fail_once(t, key_n(t, n), T0);
	rss2 = rss_bytes();
	/* 16 bytes an entry plus locks; all resident at creation */
	ck_assert_uint_le(throttle_bytes(t), 100000 * 16 + 128 * 1024);
	ck_assert_int_ge(rss1 - rss0, (long)(100000 * 16 * 9 / 10));
	ck_assert_int_lt(rss2 - rss1, 64 * 1024);
	throttle_free(&t);
}
END_TEST

#define NTHREADS 8
#define PER_THREAD 20480 /* a multiple of SHARED_KEYS */
#define SHARED_KEYS 64

struct worker {
	struct throttle *t;
	uint64_t *keys;
	int id;
};

static void *hammer(void *p)
{
	struct worker *w = p;
	for (int i = 0; i < PER_THREAD; i++) {
		(void)fail_once(w->t, w->keys[i % SHARED_KEYS], T0);
		/* and private keys that churn the same sets */
		(void)fail_once(w->t, key_n(w->t, (unsigned long)(w->id * PER_THREAD + i)), T0);
	}
	return NULL;
}

START_TEST(no_lost_counts_across_threads)
{
	/* a large table: no shared key may be evicted by the churn */
	struct throttle *t = throttle_new(1 << 20, THROTTLE_LIMIT_MAX, 900);
	uint64_t keys[SHARED_KEYS];
	pthread_t th[NTHREADS];
	struct worker w[NTHREADS];

	for (int i = 0; i < SHARED_KEYS; i++)
		keys[i] = throttle_key(t, "shared", 6, &i, sizeof(i));
	for (int i = 0; i < NTHREADS; i++) {
		w[i] = (struct worker){t, keys, i};
		ck_assert_int_eq(pthread_create(&th[i], NULL, hammer, &w[i]), 0);
	}
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < SHARED_KEYS; i++)
		ck_assert_int_eq(throttle_count(t, keys[i], T0),
				 NTHREADS * PER_THREAD / SHARED_KEYS);
	throttle_free(&t);
}
END_TEST

START_TEST(cost_of_an_admit)
{
	struct throttle *t = throttle_new(100000, 10, 900);
	struct timespec a, b;
	const int n = 1000000;
	double us;

	/* what a login adds: a key and an admit in the fast part, a key and a
	 * settle in the slow part, of a new key each time (cache misses) */
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < n; i++) {
		long ra;
		uint64_t k = key_n(t, (unsigned long)i);
		if (throttle_admit(t, k, T0, &ra) == THROTTLE_ADMITTED)
			throttle_fail(t, key_n(t, (unsigned long)i), T0);
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	us = ((double)(b.tv_sec - a.tv_sec) * 1e6 + (double)(b.tv_nsec - a.tv_nsec) / 1e3) / n;
	printf("throttle: 2 keys + admit + fail of a new key: %.3f us\n", us);
	throttle_free(&t);
}
END_TEST

static Suite *throttle_suite(void)
{
	Suite *s = suite_create("throttle");
	TCase *tc = tcase_create("table");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, bad_arguments);
	tcase_add_test(tc, counts_to_the_limit);
	tcase_add_test(tc, window_ends);
	tcase_add_test(tc, window_opens_at_the_first_failure);
	tcase_add_test(tc, pending_attempts_fill_the_limit);
	tcase_add_test(tc, forgive_and_clear);
	tcase_add_test(tc, keys_are_unambiguous);
	tcase_add_test(tc, hot_entry_survives_a_flood);
	tcase_add_test(tc, flood_cannot_grow_memory);
	tcase_add_test(tc, no_lost_counts_across_threads);
	tcase_add_test(tc, cost_of_an_admit);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(throttle_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
