/* SPDX-License-Identifier: MIT */
/*
 * This header is the contract of the connection watchdog, private to
 * src/http/. It knows sockets, not libmicrohttpd: the server tells it when a
 * connection opens and closes and where each request stands, and one
 * watchdog thread ends, with shutdown(2), every connection whose request has
 * not arrived whole within the deadline or whose client has gone mid-request.
 * It never close(2)s a descriptor: the owner (libmicrohttpd) does, after
 * watchdog_close().
 *
 * A connection is in one of three states:
 *   reading  from watchdog_open() (or from the first byte of a next request
 *            on a kept-alive connection) until watchdog_arrived(): checked
 *            every tick (peer gone? deadline passed?);
 *   arrived  the request is whole, the answer is being made or sent: never
 *            touched;
 *   idle     after watchdog_done(), between requests: looked at once a
 *            second (one getsockopt) to see whether a next request has
 *            begun, so 10,000 idle connections cost 10,000 system calls a
 *            second, not 10,000 a tick; reading again from that look.
 * All functions are thread-safe; ids are small integers owned by the
 * watchdog, valid from watchdog_open() to watchdog_close().
 */
#ifndef TOKEND_HTTP_WATCHDOG_H
#define TOKEND_HTTP_WATCHDOG_H

#include <stdbool.h>
#include <stdint.h>

struct watchdog;

/* What the watchdog has done, for logs and tests. */
struct watchdog_stats {
	long open;        /* connections between open and close now */
	long reading;     /* of those, with a request not yet whole */
	long shut_gone;   /* shut down: the client left mid-request */
	long shut_late;   /* shut down: not whole within the deadline */
	long fd_mismatch; /* a slot's descriptor named another socket (never expected) */
};

/*
 * A watchdog with the given deadline for a request to arrive whole and a
 * tick between checks (milliseconds). No thread runs until
 * watchdog_start(). NULL when out of memory.
 */
struct watchdog *watchdog_new(long deadline_ms, long tick_ms);

/* Starts the thread (callers block signals first). 0 or TOKEND_ENOMEM. */
int watchdog_start(struct watchdog *wd);

/* Stops and joins the thread if it runs, frees wd, sets *wdp to NULL.
 * Accepts NULL. Call it only after the last watchdog_close(). */
void watchdog_free(struct watchdog **wdp);

/*
 * Registers a new connection on socket fd, reading its first request from
 * now. Returns its id (>= 0), or TOKEND_ENOMEM (the connection then simply
 * is not watched).
 */
int watchdog_open(struct watchdog *wd, int fd);

/*
 * Forgets connection id. Once it returns the watchdog never touches that
 * descriptor again, so the owner may close it (and the kernel reuse the
 * number): the shutdown and this call take the same lock.
 */
void watchdog_close(struct watchdog *wd, int id);

/* The request line and headers of a request on id have been read (the
 * first handler call): a kept-alive connection that was idle is reading. */
void watchdog_begin(struct watchdog *wd, int id);

/* The request on id has arrived whole: no deadline, no peer check now. */
void watchdog_arrived(struct watchdog *wd, int id);

/* The answer on id is done; the connection waits for a next request. */
void watchdog_done(struct watchdog *wd, int id);

/* Connections open now (cheap: one atomic load). */
long watchdog_open_count(struct watchdog *wd);

/* One pass of the checks, as the thread runs it every tick (for tests). */
void watchdog_tick(struct watchdog *wd);

/* A snapshot of the counters. */
void watchdog_stats(struct watchdog *wd, struct watchdog_stats *out);

#endif
