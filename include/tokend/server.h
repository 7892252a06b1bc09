/* SPDX-License-Identifier: MIT */
/*
 * This header is the contract of the HTTP server: libmicrohttpd with its
 * internal thread pool, the limits of the configuration, the route table,
 * and the worker pool for slow routes. src/http/ is the only includer of
 * microhttpd.h.
 */
#ifndef TOKEND_SERVER_H
#define TOKEND_SERVER_H

#include <stddef.h>

struct app;
struct server; /* opaque */

/* Where a server listens: what server_start() is given and what it found. */
struct server_listen {
	int fd;        /* in: a listening TCP socket handed over by the service
			 * manager (socket activation), or -1: bind app->cfg.listen */
	char host[64]; /* out: the numeric address listened on, without brackets */
	unsigned port; /* out: the port (the bound one when listen asks for 0) */
};

/*
 * Starts serving app->cfg.listen, or the socket where->fd when it is not
 * -1 (then app->cfg.listen is not used, and the server owns the fd from
 * here on, on every path: it is closed at server_stop() or on failure).
 * On success *out owns the server and where->host, where->port say where
 * it listens. Errors: TOKEND_EINVAL (bad address; an fd that is not a
 * listening TCP socket), TOKEND_EIO (cannot listen), TOKEND_ENOMEM;
 * errbuf gets a message.
 */
int server_start(const struct app *app, struct server_listen *where, struct server **out,
		 char *errbuf, size_t errlen);

/*
 * Stops accepting, lets in-flight requests (suspended ones included) finish
 * for up to grace_ms, then stops the daemon and frees; clears *srv.
 */
void server_stop(struct server **srv, long grace_ms);

#endif
