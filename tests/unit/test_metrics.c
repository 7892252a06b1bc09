/* SPDX-License-Identifier: MIT */
/*
 * This suite tests include/tokend/metrics.h: counts from many threads add
 * up exactly (no lock on the hot path, yet nothing lost), a thread that
 * ends keeps its counts, disabled metrics count nothing, a pattern named
 * twice is one route, unknown indexes are "unmatched", statuses outside
 * the known set are "other", and histogram buckets are cumulative with
 * their bounds inclusive (a 50 µs request is in le="5e-05").
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokend/metrics.h"

static const char *const routes[] = {"/a/", "/b/{x}/", "/b/{x}/", "/metrics"};

static bool has(const char *text, const char *line)
{
	return strstr(text, line) != NULL;
}

#define THREADS 4
#define PER_THREAD 100000

static void *hammer(void *arg)
{
	(void)arg;
	for (int i = 0; i < PER_THREAD; i++) {
		metrics_request(1, 201, 40);
		metrics_login(METRICS_LOGIN_FAILURE);
	}
	return NULL;
}

START_TEST(threads_add_up)
{
	pthread_t t[THREADS];
	char *text;
	char want[128];

	metrics_setup(true, routes, 4);
	for (int i = 0; i < THREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, hammer, NULL), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL); /* their blocks retire: the counts stay */
	text = metrics_render();
	ck_assert_ptr_nonnull(text);
	snprintf(want, sizeof want,
		 "tokend_http_requests_total{route=\"/b/{x}/\",status=\"201\"} %d\n",
		 THREADS * PER_THREAD);
	ck_assert_msg(has(text, want), "%s", text);
	snprintf(want, sizeof want, "tokend_logins_total{outcome=\"failure\"} %d\n",
		 THREADS * PER_THREAD);
	ck_assert(has(text, want));
	snprintf(want, sizeof want,
		 "tokend_http_request_duration_seconds_bucket{route=\"/b/{x}/\",le=\"5e-05\"} %d\n",
		 THREADS * PER_THREAD);
	ck_assert(has(text, want));
	free(text);
}
END_TEST

START_TEST(same_pattern_is_one_route)
{
	char *text;

	metrics_setup(true, routes, 4);
	metrics_request(1, 200, 10);
	metrics_request(2, 200, 10); /* the same pattern, another method */
	metrics_request(99, 404, 10);
	metrics_request(0, 299, 10);
	text = metrics_render();
	ck_assert(has(text, "tokend_http_requests_total{route=\"/b/{x}/\",status=\"200\"} 2\n"));
	ck_assert(has(text, "tokend_http_requests_total{route=\"unmatched\",status=\"404\"} 1\n"));
	ck_assert(has(text, "tokend_http_requests_total{route=\"/a/\",status=\"other\"} 1\n"));
	ck_assert(!has(text, "route=\"/metrics\"")); /* never requested: no series */
	free(text);
}
END_TEST

START_TEST(buckets_cumulative_bounds_inclusive)
{
	char *text;

	metrics_setup(true, routes, 4);
	metrics_request(0, 200, 50);      /* le 5e-05 */
	metrics_request(0, 200, 51);      /* le 0.0001 */
	metrics_request(0, 200, 5000000); /* le 5 */
	metrics_request(0, 200, 9000000); /* +Inf only */
	text = metrics_render();
	ck_assert_msg(has(text, "_bucket{route=\"/a/\",le=\"5e-05\"} 1\n"), "%s", text);
	ck_assert(has(text, "_bucket{route=\"/a/\",le=\"0.0001\"} 2\n"));
	ck_assert(has(text, "_bucket{route=\"/a/\",le=\"2.5\"} 2\n"));
	ck_assert(has(text, "_bucket{route=\"/a/\",le=\"5\"} 3\n"));
	ck_assert(has(text, "_bucket{route=\"/a/\",le=\"+Inf\"} 4\n"));
	ck_assert(has(text, "_sum{route=\"/a/\"} 14.000101\n"));
	ck_assert(has(text, "_count{route=\"/a/\"} 4\n"));
	free(text);
}
END_TEST

START_TEST(disabled_counts_nothing)
{
	char *text;

	metrics_setup(false, routes, 4);
	ck_assert(!metrics_enabled());
	metrics_request(0, 200, 10);
	metrics_login(METRICS_LOGIN_SUCCESS);
	metrics_store_error();
	metrics_store_commit();
	text = metrics_render();
	ck_assert(!has(text, "tokend_http_requests_total{"));
	ck_assert(has(text, "tokend_logins_total{outcome=\"success\"} 0\n"));
	ck_assert(has(text, "tokend_store_errors_total 0\n"));
	ck_assert(has(text, "tokend_store_commits_total 0\n"));
	free(text);
}
END_TEST

static void gauges(void *arg, struct metrics_gauges *g)
{
	(void)arg;
	g->hash_queue = 3;
	g->hash_busy = 2;
	g->open_connections = 7;
}

START_TEST(gauges_and_fixed_series)
{
	char *text;

	metrics_setup(true, routes, 4);
	metrics_gauges_source(gauges, NULL);
	metrics_refresh(METRICS_REFRESH_REUSED);
	metrics_api_tokens_issued(2);
	metrics_api_tokens_deleted(5);
	text = metrics_render();
	ck_assert(has(text, "tokend_build_info{version=\""));
	ck_assert(has(text, "tokend_hash_queue_depth 3\n"));
	ck_assert(has(text, "tokend_hash_workers_busy 2\n"));
	ck_assert(has(text, "tokend_open_connections 7\n"));
	ck_assert(has(text, "tokend_logins_total{outcome=\"throttled\"} 0\n"));
	ck_assert(has(text, "tokend_refresh_total{outcome=\"reuse_revoked\"} 1\n"));
	ck_assert(has(text, "tokend_api_tokens_issued_total 2\n"));
	ck_assert(has(text, "tokend_api_tokens_deleted_total 5\n"));
	free(text);
	metrics_gauges_source(NULL, NULL);
	text = metrics_render();
	ck_assert(has(text, "tokend_open_connections 0\n"));
	free(text);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, threads_add_up);
	tcase_add_test(tc, same_pattern_is_one_route);
	tcase_add_test(tc, buckets_cumulative_bounds_inclusive);
	tcase_add_test(tc, disabled_counts_nothing);
	tcase_add_test(tc, gauges_and_fixed_series);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
