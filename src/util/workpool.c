/* SPDX-License-Identifier: MIT */
/*
 * This module implements a bounded worker pool: a fixed ring of queued jobs
 * served by a fixed set of threads. A full ring refuses new jobs at once
 * (the caller answers 503), and a job that waited past the deadline runs
 * with expired = 1 so that it can skip its slow work.
 */
#include "tokend/workpool.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "tokend/err.h"
#include "tokend/util.h"

/* The nice value of worker threads (CFS weight 15 against 1024 at nice 0). */
#define WORKER_NICE 19

struct job {
	workpool_fn fn;
	void *arg;
	uint64_t queued_us;
};

struct workpool {
	pthread_mutex_t lock;
	pthread_cond_t ready;
	struct job *ring; /* capacity jobs */
	size_t capacity;
	size_t head;  /* next to run */
	size_t count; /* queued */
	size_t running;
	bool closing;
	uint64_t deadline_us;
	size_t nthreads;
	pthread_t *threads;
};

static void *worker_main(void *p)
{
	struct workpool *wp = p;

	/* Slow work yields to the threads that answer cheap requests: with as
	 * many hashing threads as cores, a login flood would otherwise take the
	 * CPU from them. Linux applies nice per thread; failure is harmless. */
	(void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), WORKER_NICE);

	pthread_mutex_lock(&wp->lock);
	for (;;) {
		struct job job;
		int expired;

		while (wp->count == 0 && !wp->closing)
			pthread_cond_wait(&wp->ready, &wp->lock);
		if (wp->count == 0 && wp->closing)
			break;
		job = wp->ring[wp->head];
		wp->head = (wp->head + 1) % wp->capacity;
		wp->count--;
		wp->running++;
		pthread_mutex_unlock(&wp->lock);

		expired = util_mono_us() - job.queued_us > wp->deadline_us;
		job.fn(job.arg, expired);

		pthread_mutex_lock(&wp->lock);
		wp->running--;
	}
	pthread_mutex_unlock(&wp->lock);
	return NULL;
}

struct workpool *workpool_new(long threads, long queue, long deadline_ms)
{
	struct workpool *wp;
	sigset_t all, old;

	if (threads < 1 || queue < 1 || deadline_ms < 0)
		return NULL;
	wp = calloc(1, sizeof(*wp));
	if (wp == NULL)
		return NULL;
	wp->capacity = (size_t)queue;
	wp->deadline_us = (uint64_t)deadline_ms * 1000u;
	wp->ring = calloc(wp->capacity, sizeof(*wp->ring));
	wp->threads = calloc((size_t)threads, sizeof(*wp->threads));
	if (wp->ring == NULL || wp->threads == NULL) {
		free(wp->ring);
		free(wp->threads);
		free(wp);
		return NULL;
	}
	pthread_mutex_init(&wp->lock, NULL);
	pthread_cond_init(&wp->ready, NULL);
	/* Workers never take signals: main waits for them with sigwait(). */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (long i = 0; i < threads; i++) {
		if (pthread_create(&wp->threads[i], NULL, worker_main, wp) != 0)
			break;
		wp->nthreads++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (wp->nthreads == 0) {
		workpool_free(&wp);
		return NULL;
	}
	return wp;
}

int workpool_submit(struct workpool *wp, workpool_fn fn, void *arg)
{
	int rc = TOKEND_EBUSY;

	pthread_mutex_lock(&wp->lock);
	if (!wp->closing && wp->count < wp->capacity) {
		size_t tail = (wp->head + wp->count) % wp->capacity;
		wp->ring[tail] = (struct job){fn, arg, util_mono_us()};
		wp->count++;
		pthread_cond_signal(&wp->ready);
		rc = 0;
	}
	pthread_mutex_unlock(&wp->lock);
	return rc;
}

void workpool_stats(struct workpool *wp, size_t *queued, size_t *running)
{
	pthread_mutex_lock(&wp->lock);
	*queued = wp->count;
	*running = wp->running;
	pthread_mutex_unlock(&wp->lock);
}

void workpool_free(struct workpool **wpp)
{
	struct workpool *wp = wpp ? *wpp : NULL;

	if (wp == NULL)
		return;
	pthread_mutex_lock(&wp->lock);
	wp->closing = true;
	pthread_cond_broadcast(&wp->ready);
	pthread_mutex_unlock(&wp->lock);
	for (size_t i = 0; i < wp->nthreads; i++)
		pthread_join(wp->threads[i], NULL);
	pthread_mutex_destroy(&wp->lock);
	pthread_cond_destroy(&wp->ready);
	free(wp->ring);
	free(wp->threads);
	free(wp);
	*wpp = NULL;
}
