/* SPDX-License-Identifier: MIT */
/*
 * This suite tests include/tokend/workpool.h: jobs run, a full queue fails at
 * once with TOKEND_EBUSY, a job that waited past the deadline is told so,
 * and workpool_free() drains the queue before joining.
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "tokend/err.h"
#include "tokend/workpool.h"

/* Jobs queued or running now, from workpool_stats(). */
static size_t pending(struct workpool *wp)
{
	size_t queued, running;

	workpool_stats(wp, &queued, &running);
	return queued + running;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0)
		;
}

/* A gate a job can wait at until the test opens it. */
struct gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int started;
	int open;
	atomic_int runs;
	atomic_int expired;
};

static void gate_init(struct gate *g)
{
	pthread_mutex_init(&g->mu, NULL);
	pthread_cond_init(&g->cv, NULL);
	g->started = 0;
	g->open = 0;
	atomic_init(&g->runs, 0);
	atomic_init(&g->expired, 0);
}

static void gate_destroy(struct gate *g)
{
	pthread_cond_destroy(&g->cv);
	pthread_mutex_destroy(&g->mu);
}

static void gate_job(void *arg, int expired)
{
	struct gate *g = arg;

	pthread_mutex_lock(&g->mu);
	g->started = 1;
	pthread_cond_broadcast(&g->cv);
	while (!g->open)
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
	atomic_fetch_add(&g->runs, 1);
	if (expired)
		atomic_fetch_add(&g->expired, 1);
}

static void gate_wait_started(struct gate *g)
{
	pthread_mutex_lock(&g->mu);
	while (!g->started)
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
}

static void gate_open(struct gate *g)
{
	pthread_mutex_lock(&g->mu);
	g->open = 1;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
}

/* A plain job: counts runs and expiries. */
struct counter {
	atomic_int runs;
	atomic_int expired;
	long sleep_ms;
};

static void count_job(void *arg, int expired)
{
	struct counter *c = arg;

	if (c->sleep_ms)
		sleep_ms(c->sleep_ms);
	atomic_fetch_add(&c->runs, 1);
	if (expired)
		atomic_fetch_add(&c->expired, 1);
}

START_TEST(jobs_run)
{
	struct workpool *wp = workpool_new(3, 100, 10000);
	struct counter c = {0};

	ck_assert_ptr_nonnull(wp);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(workpool_submit(wp, count_job, &c), 0);
	/* wait for all of them without relying on free */
	for (int i = 0; i < 500 && atomic_load(&c.runs) < 100; i++)
		sleep_ms(10);
	ck_assert_int_eq(atomic_load(&c.runs), 100);
	ck_assert_int_eq(atomic_load(&c.expired), 0);
	for (int i = 0; i < 100 && pending(wp) != 0; i++)
		sleep_ms(10);
	ck_assert_uint_eq(pending(wp), 0);
	workpool_free(&wp);
	ck_assert_ptr_null(wp);
}
END_TEST

START_TEST(full_queue_busy)
{
	struct workpool *wp = workpool_new(1, 1, 10000);
	struct gate g;
	struct counter c = {0};

	gate_init(&g);
	ck_assert_ptr_nonnull(wp);
	ck_assert_int_eq(workpool_submit(wp, gate_job, &g), 0);
	gate_wait_started(&g); /* the only worker is now busy */
	ck_assert_int_eq(workpool_submit(wp, count_job, &c), 0); /* fills the queue */
	ck_assert_uint_eq(pending(wp), 2);
	ck_assert_int_eq(workpool_submit(wp, count_job, &c), TOKEND_EBUSY);
	ck_assert_int_eq(workpool_submit(wp, count_job, &c), TOKEND_EBUSY);
	ck_assert_uint_eq(pending(wp), 2);
	gate_open(&g);
	workpool_free(&wp);
	ck_assert_ptr_null(wp);
	ck_assert_int_eq(atomic_load(&g.runs), 1);
	ck_assert_int_eq(atomic_load(&c.runs), 1);
	gate_destroy(&g);
}
END_TEST

START_TEST(busy_recovers)
{
	struct workpool *wp = workpool_new(1, 1, 10000);
	struct gate g;
	struct counter c = {0};

	gate_init(&g);
	ck_assert_ptr_nonnull(wp);
	ck_assert_int_eq(workpool_submit(wp, gate_job, &g), 0);
	gate_wait_started(&g);
	ck_assert_int_eq(workpool_submit(wp, count_job, &c), 0);
	ck_assert_int_eq(workpool_submit(wp, count_job, &c), TOKEND_EBUSY);
	gate_open(&g);
	for (int i = 0; i < 500 && atomic_load(&c.runs) < 1; i++)
		sleep_ms(10);
	/* room again */
	ck_assert_int_eq(workpool_submit(wp, count_job, &c), 0);
	workpool_free(&wp);
	ck_assert_int_eq(atomic_load(&c.runs), 2);
	gate_destroy(&g);
}
END_TEST

START_TEST(deadline_expired)
{
	struct workpool *wp = workpool_new(1, 4, 50);
	struct counter blocker = {0}, late = {0}, fresh = {0};

	ck_assert_ptr_nonnull(wp);
	/* an idle pool runs a job at once: not expired */
	ck_assert_int_eq(workpool_submit(wp, count_job, &fresh), 0);
	for (int i = 0; i < 500 && atomic_load(&fresh.runs) < 1; i++)
		sleep_ms(2);
	ck_assert_int_eq(atomic_load(&fresh.runs), 1);
	ck_assert_int_eq(atomic_load(&fresh.expired), 0);

	blocker.sleep_ms = 200;
	ck_assert_int_eq(workpool_submit(wp, count_job, &blocker), 0);
	ck_assert_int_eq(workpool_submit(wp, count_job, &late), 0);
	ck_assert_int_eq(workpool_submit(wp, count_job, &late), 0);
	workpool_free(&wp);
	ck_assert_int_eq(atomic_load(&blocker.runs), 1);
	ck_assert_int_eq(atomic_load(&late.runs), 2);
	ck_assert_int_eq(atomic_load(&late.expired), 2);
}
END_TEST

START_TEST(free_drains_queue)
{
	struct workpool *wp = workpool_new(1, 16, 10000);
	struct counter slow = {0}, c = {0};

	ck_assert_ptr_nonnull(wp);
	slow.sleep_ms = 100;
	ck_assert_int_eq(workpool_submit(wp, count_job, &slow), 0);
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(workpool_submit(wp, count_job, &c), 0);
	workpool_free(&wp);
	ck_assert_ptr_null(wp);
	ck_assert_int_eq(atomic_load(&slow.runs), 1);
	ck_assert_int_eq(atomic_load(&c.runs), 10);
	ck_assert_int_eq(atomic_load(&c.expired), 0);
}
END_TEST

START_TEST(free_null)
{
	struct workpool *wp = NULL;

	workpool_free(&wp);
	ck_assert_ptr_null(wp);
	/* an idle pool frees at once */
	wp = workpool_new(4, 8, 100);
	ck_assert_ptr_nonnull(wp);
	ck_assert_uint_eq(pending(wp), 0);
	workpool_free(&wp);
	ck_assert_ptr_null(wp);
}
END_TEST

static Suite *workpool_suite(void)
{
	Suite *s = suite_create("workpool");
	TCase *tc = tcase_create("pool");

	tcase_add_test(tc, jobs_run);
	tcase_add_test(tc, full_queue_busy);
	tcase_add_test(tc, busy_recovers);
	tcase_add_test(tc, deadline_expired);
	tcase_add_test(tc, free_drains_queue);
	tcase_add_test(tc, free_null);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(workpool_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
