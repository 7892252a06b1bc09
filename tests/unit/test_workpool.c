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

/*
 * Waits until *v reaches want. The deadline only bounds a hang: the workers
 * run at nice 10 on a machine that may be loaded, so how soon they get there
 * is not what these tests are about; that they get there is.
 */
#define HANG_DEADLINE_MS 60000L

static void wait_for(atomic_int *v, int want, const char *what)
{
	for (long waited = 0; atomic_load(v) < want; waited += 10) {
		ck_assert_msg(waited < HANG_DEADLINE_MS, "%s: still %d of %d after %ld s", what,
			      atomic_load(v), want, HANG_DEADLINE_MS / 1000);
		sleep_ms(10);
	}
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
	wait_for(&c.runs, 100, "100 jobs on 3 workers");
	ck_assert_int_eq(atomic_load(&c.runs), 100);
	ck_assert_int_eq(atomic_load(&c.expired), 0);
	/* a job counts as pending until its function returns */
	for (long waited = 0; pending(wp) != 0; waited += 10) {
		ck_assert_msg(waited < HANG_DEADLINE_MS,
			      "workpool_pending() still %zu after every job ran",
			      (size_t)pending(wp));
		sleep_ms(10);
	}
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
	gate_wait_started(&g);                                   /* the only worker is now busy */
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
	wait_for(&c.runs, 1, "the queued job after the gate opened");
	/* room again */
	ck_assert_int_eq(workpool_submit(wp, count_job, &c), 0);
	workpool_free(&wp);
	ck_assert_int_eq(atomic_load(&c.runs), 2);
	gate_destroy(&g);
}
END_TEST

START_TEST(deadline_expired)
{
	/* A pool whose deadline (60 s) no scheduling delay reaches: a job that
	 * an idle worker takes is run with expired = 0. */
	struct workpool *idle = workpool_new(1, 4, HANG_DEADLINE_MS);
	/* A pool with a 50 ms deadline whose only worker is held at a gate
	 * while two jobs queue behind it; they are let through only after
	 * more than the deadline has passed (sleep_ms is a lower bound,
	 * however loaded the machine), so both must run with expired = 1. */
	struct workpool *wp = workpool_new(1, 4, 50);
	struct counter late = {0}, fresh = {0};
	struct gate g;

	ck_assert_ptr_nonnull(idle);
	ck_assert_ptr_nonnull(wp);
	ck_assert_int_eq(workpool_submit(idle, count_job, &fresh), 0);
	wait_for(&fresh.runs, 1, "a job on an idle pool");
	ck_assert_int_eq(atomic_load(&fresh.expired), 0);
	workpool_free(&idle);

	gate_init(&g);
	ck_assert_int_eq(workpool_submit(wp, gate_job, &g), 0);
	gate_wait_started(&g); /* the only worker is now held */
	ck_assert_int_eq(workpool_submit(wp, count_job, &late), 0);
	ck_assert_int_eq(workpool_submit(wp, count_job, &late), 0);
	sleep_ms(200); /* at least 4 deadlines in the queue */
	ck_assert_int_eq(atomic_load(&late.runs), 0);
	gate_open(&g);
	workpool_free(&wp);
	ck_assert_int_eq(atomic_load(&g.runs), 1);
	ck_assert_int_eq(atomic_load(&late.runs), 2);
	ck_assert_int_eq(atomic_load(&late.expired), 2);
	gate_destroy(&g);
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
