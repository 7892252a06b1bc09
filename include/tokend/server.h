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

/*
 * Starts serving app->cfg.listen. On success *out owns the server and
 * *port holds the bound port. Errors: TOKEND_EINVAL (bad address),
 * TOKEND_EIO (cannot listen), TOKEND_ENOMEM; errbuf gets a message.
 */
int server_start(const struct app *app, struct server **out, unsigned *port, char *errbuf,
		 size_t errlen);

/*
 * Stops accepting, lets in-flight requests (suspended ones included) finish
 * for up to grace_ms, then stops the daemon and frees; clears *srv.
 */
void server_stop(struct server **srv, long grace_ms);

#endif
