/* SPDX-License-Identifier: MIT */
/*
 * This module implements the sweeper thread of `tokend serve`: every
 * purge_interval seconds it deletes expired refresh-token and API-token
 * rows (store_purge), purge_batch of each per transaction, so the tables
 * never grow without bound and no sweep holds the write lock for long.
 * sweeper_stop() wakes it at once.
 */
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "cli/sweeper.h"
#include "tokend/app.h"
#include "tokend/err.h"
#include "tokend/log.h"
#include "tokend/store.h"
#include "tokend/util.h"

static void *sweeper_main(void *p)
{
	struct sweeper *sw = p;
	const struct config *cfg = &sw->app->cfg;

	pthread_mutex_lock(&sw->lock);
	while (!sw->stop) {
		struct timespec until;
		long n = 0, total = 0;
		int rc;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += cfg->purge_interval;
		while (!sw->stop && pthread_cond_timedwait(&sw->wake, &sw->lock, &until) == 0)
			;
		if (sw->stop)
			break;
		pthread_mutex_unlock(&sw->lock);
		do {
			rc = store_purge(sw->app->store, util_now(), cfg->purge_batch, &n);
			total += n;
		} while (rc == 0 && n > 0 && !sw->stop);
		if (total > 0)
			log_info("sweeper: purged %ld expired token rows", total);
		pthread_mutex_lock(&sw->lock);
	}
	pthread_mutex_unlock(&sw->lock);
	return NULL;
}

int sweeper_start(struct sweeper *sw, const struct app *app)
{
	memset(sw, 0, sizeof(*sw));
	sw->app = app;
	pthread_mutex_init(&sw->lock, NULL);
	pthread_cond_init(&sw->wake, NULL);
	return pthread_create(&sw->thread, NULL, sweeper_main, sw) == 0 ? 0 : TOKEND_ENOMEM;
}

void sweeper_stop(struct sweeper *sw)
{
	pthread_mutex_lock(&sw->lock);
	sw->stop = true;
	pthread_cond_signal(&sw->wake);
	pthread_mutex_unlock(&sw->lock);
	pthread_join(sw->thread, NULL);
	pthread_mutex_destroy(&sw->lock);
	pthread_cond_destroy(&sw->wake);
}
