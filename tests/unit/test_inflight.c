/* SPDX-License-Identifier: MIT */
/*
 * This suite tests src/http/inflight.h: a client is refused exactly past
 * its limit and let in again as its requests leave; other clients are not
 * counted with it; a limit of 0 counts nothing; eight threads entering and
 * leaving at once leave every counter at zero.
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "http/inflight.h"

START_TEST(limit_and_release)
{
	struct inflight *in = inflight_new(3);
	struct inflight_ticket t[5], o;

	ck_assert_ptr_nonnull(in);
	for (int i = 0; i < 3; i++)
		ck_assert(inflight_enter(in, "192.0.2.1", &t[i]));
	ck_assert(!inflight_enter(in, "192.0.2.1", &t[3])); /* the fourth */
	ck_assert(!inflight_enter(in, "192.0.2.1", &t[4]));
	ck_assert_uint_eq(inflight_count(in, "192.0.2.1"), 5);
	ck_assert(inflight_enter(in, "192.0.2.2", &o)); /* someone else */
	inflight_leave(in, &o);
	inflight_leave(in, &o); /* twice: nothing more */
	inflight_leave(in, &t[4]);
	inflight_leave(in, &t[3]);
	ck_assert(!inflight_enter(in, "192.0.2.1", &t[3]));
	inflight_leave(in, &t[3]);
	inflight_leave(in, &t[0]);
	ck_assert(inflight_enter(in, "192.0.2.1", &t[0]));
	for (int i = 0; i < 3; i++)
		inflight_leave(in, &t[i]);
	ck_assert_uint_eq(inflight_count(in, "192.0.2.1"), 0);
	inflight_free(&in);
	ck_assert_ptr_null(in);
	inflight_free(&in);
}
END_TEST

START_TEST(zero_is_off)
{
	struct inflight *in = inflight_new(0);
	struct inflight_ticket t;

	for (int i = 0; i < 1000; i++)
		ck_assert(inflight_enter(in, "192.0.2.1", &t));
	ck_assert(!t.held);
	ck_assert_uint_eq(inflight_count(in, "192.0.2.1"), 0);
	inflight_free(&in);
}
END_TEST

START_TEST(many_clients_under_the_limit)
{
	/* 4,000 clients with 8 requests each against the default limit of 32:
	 * others' requests never fill both of a client's counters. */
	struct inflight *in = inflight_new(32);
	static struct inflight_ticket t[4000][8];
	char a[32];
	int refused = 0;

	for (int i = 0; i < 4000; i++) {
		snprintf(a, sizeof a, "10.%d.%d.1", i / 250, i % 250);
		for (int k = 0; k < 8; k++)
			refused += !inflight_enter(in, a, &t[i][k]);
	}
	ck_assert_int_eq(refused, 0);
	for (int i = 0; i < 4000; i++)
		for (int k = 0; k < 8; k++)
			inflight_leave(in, &t[i][k]);
	snprintf(a, sizeof a, "10.0.0.1");
	ck_assert_uint_eq(inflight_count(in, a), 0);
	inflight_free(&in);
}
END_TEST

static struct inflight *shared;

static void *churn(void *arg)
{
	char a[32];
	struct inflight_ticket t;

	snprintf(a, sizeof a, "203.0.113.%d", (int)(intptr_t)arg % 3);
	for (int i = 0; i < 100000; i++) {
		inflight_enter(shared, a, &t);
		inflight_leave(shared, &t);
	}
	return NULL;
}

START_TEST(threads_balance)
{
	pthread_t th[8];

	shared = inflight_new(2);
	for (intptr_t i = 0; i < 8; i++)
		pthread_create(&th[i], NULL, churn, (void *)i);
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 3; i++) {
		char a[32];
		snprintf(a, sizeof a, "203.0.113.%d", i);
		ck_assert_uint_eq(inflight_count(shared, a), 0);
	}
	inflight_free(&shared);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("inflight");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, limit_and_release);
	tcase_add_test(tc, zero_is_off);
	tcase_add_test(tc, many_clients_under_the_limit);
	tcase_add_test(tc, threads_balance);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
