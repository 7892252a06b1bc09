/* SPDX-License-Identifier: MIT */
/*
 * This header is the contract of the bounded worker pool that runs slow work
 * (password hashing) off the HTTP threads. The queue has a fixed capacity:
 * submitting to a full queue fails at once so the caller can answer 503.
 * Workers run at a lower priority (nice 19) than the threads that submit.
 */
#ifndef TOKEND_WORKPOOL_H
#define TOKEND_WORKPOOL_H

#include <stddef.h>
#include <stdint.h>

struct workpool; /* opaque */

/*
 * A job. run() is called on a worker thread with expired = 1 when the job
 * waited longer than the pool's deadline (it must then skip the slow work).
 * The pool never frees arg.
 */
typedef void (*workpool_fn)(void *arg, int expired);

/* Starts threads workers with room for queue waiting jobs. NULL on failure. */
struct workpool *workpool_new(long threads, long queue, long deadline_ms);

/* Queues a job. Returns 0, or TOKEND_EBUSY when the queue is full or closing. */
int workpool_submit(struct workpool *wp, workpool_fn fn, void *arg);

/* Jobs waiting in the queue, and jobs running, now. */
void workpool_stats(struct workpool *wp, size_t *queued, size_t *running);

/* Runs every queued job to the end, joins the workers, frees; clears *wp. */
void workpool_free(struct workpool **wp);

#endif
