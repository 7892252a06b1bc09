/* SPDX-License-Identifier: MIT */
/*
 * This header is private to src/cli/: the sweeper thread (sweeper.c) that
 * `tokend serve` starts after the server and stops before the store closes.
 */
#ifndef TOKEND_CLI_SWEEPER_H
#define TOKEND_CLI_SWEEPER_H

#include <pthread.h>
#include <stdbool.h>

struct app;

/*
 * The sweeper: every purge_interval seconds deletes expired refresh-token
 * rows, purge_batch per transaction, so the table never grows without
 * bound and no sweep holds the write lock for long.
 */
struct sweeper {
	const struct app *app;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stop;
};

/*
 * Starts the thread, which reads app->cfg (purge_interval, purge_batch) and
 * app->store until sweeper_stop(); app outlives it. Returns 0 or
 * TOKEND_ENOMEM (the thread could not be created; nothing to stop then).
 */
int sweeper_start(struct sweeper *sw, const struct app *app);

/* Wakes the thread, waits for the sweep under way to end and joins it. */
void sweeper_stop(struct sweeper *sw);

#endif
