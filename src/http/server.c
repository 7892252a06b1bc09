/* SPDX-License-Identifier: MIT */
/*
 * This module implements the HTTP server on libmicrohttpd's internal thread
 * pool. It enforces the limits of API.md while reading (header block; body
 * size counted as it arrives; the whole-request deadline and clients gone
 * mid-request are the watchdog's, fed from the connection life cycle here),
 * refuses connections past the limit at accept, names the client (the peer,
 * or behind trusted proxies whom they forward for: forwarded.h), answers 429
 * past server.per_client_requests in flight per client (inflight.h), gives
 * each request an id (X-Request-Id, also in its access line), rejects the
 * framing libmicrohttpd 0.9.75 mishandles (framing.h), routes the request,
 * decodes its body and runs its handler inline. Slow work left by a handler
 * (a password hash) runs on the bounded worker pool with the connection
 * suspended. Responses are queued on the second handler call or later,
 * never the first, except to answer bad framing (which closes the
 * connection).
 */
#include "tokend/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http/forwarded.h"
#include "http/framing.h"
#include "http/inflight.h"
#include "http/response.h"
#include "http/watchdog.h"
#include "tokend/app.h"
#include "tokend/body.h"
#include "tokend/cidr.h"
#include "tokend/cors.h"
#include "tokend/err.h"
#include "tokend/log.h"
#include "tokend/metrics.h"
#include "tokend/notify.h"
#include "tokend/router.h"
#include "tokend/util.h"
#include "tokend/workpool.h"

/* Discarding a refused chunked body stops (connection closed) past this many
 * times its limit, so a client cannot keep a thread busy forever. */
#define DISCARD_FACTOR 16

/* At shutdown, how long requests that are not suspended may take to finish. */
#define SETTLE_MS 2000

/* How often the watchdog looks at unfinished requests: a client gone
 * mid-request frees its slot within two ticks. */
#define WATCHDOG_TICK_MS 100

/* server.per_ip_connections = -1 without trusted proxies. */
#define PER_IP_DIRECT 128

/* Bytes of the method and of the path kept for the access log. */
#define LOG_METHOD_MAX 15
#define LOG_PATH_MAX 256

/* At most one "connection limit reached" line this often. */
#define LIMIT_LOG_US (10u * 1000000u)

struct server {
	const struct app *app;
	struct MHD_Daemon *daemon;
	struct workpool *pool;
	atomic_long inflight;  /* requests between first call and completion */
	atomic_long suspended; /* of those, handed to the worker pool */
	atomic_bool stopping;  /* queued slow work answers 503 */
	struct watchdog *wd;   /* every connection's socket, see watchdog.h */
	long max_connections;  /* refused at accept past this many */
	atomic_long refused;
	_Atomic uint64_t refused_logged_us;
	struct cidr_list trusted;    /* server.trusted_proxies, parsed once */
	struct inflight *per_client; /* requests in flight per client address */
};

enum req_state { REQ_READING, REQ_SUSPENDED, REQ_DONE };

/*
 * One request, from the first access-handler call to the completion
 * callback, which frees it (hung off MHD's req_cls).
 */
struct request {
	struct server *srv;
	struct MHD_Connection *conn;
	uint64_t start_us;
	enum req_state state;
	char method[LOG_METHOD_MAX + 1];
	char path[LOG_PATH_MAX + 1];             /* cut for the log; routing uses MHD's url */
	char remote[INET6_ADDRSTRLEN];           /* the client: the peer, or whom it forwards for */
	char request_id[LOG_REQUEST_ID_MAX + 1]; /* X-Request-Id of the answer and the log */
	struct inflight_ticket counted;          /* in srv->per_client until completion */
	int watch_id;                            /* the connection's in srv->wd (conn_watch_id) */
	const struct route *route;
	int err;            /* an error found before the handler */
	bool was_suspended; /* counted in srv->suspended */
	bool close;         /* bad framing: answer, then close */
	const char *why;    /* its reason (constant), for the 400 body */
	char allow[64];
	const char *cors_origin; /* the allowed entry Origin equals (config-owned) */
	bool preflight;          /* a CORS preflight to grant: 204 */
	enum body_type btype;
	long limit; /* body bytes allowed */
	char *body; /* received body, owned */
	size_t len, cap;
	size_t discarded;
	struct handler_ctx ctx;
	struct handler_result res; /* filled by the handler */
	int rc;                    /* the handler's return */
	unsigned status;           /* sent, for the log; 0 = none */
	size_t bytes;
};

/*
 * A body may hold a password (login) and a no_store text bearer tokens (the
 * token list): both are wiped before they are freed, only their length.
 */
/* Wipes and frees the received body. */
static void body_drop(struct request *req)
{
	if (req->body != NULL)
		OPENSSL_cleanse(req->body, req->len);
	free(req->body);
	req->body = NULL;
	req->len = 0;
	req->cap = 0;
}

static void request_free(struct request *req)
{
	body_drop(req);
	json_decref((json_t *)req->ctx.body);
	json_decref(req->res.body);
	if (req->res.text != NULL && req->res.no_store)
		OPENSSL_cleanse(req->res.text, strlen(req->res.text));
	free(req->res.text);
	free(req);
}

static void remote_of(struct MHD_Connection *conn, char *out, size_t outlen)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci ? ci->client_addr : NULL;

	snprintf(out, outlen, "-");
	if (sa == NULL)
		return;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
			  (socklen_t)outlen);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
			  out, (socklen_t)outlen);
}

static enum MHD_Result queue(struct request *req, int rc, unsigned ok_status)
{
	const struct config *cfg = &req->srv->app->cfg;
	struct response_meta meta = {
		.method = req->method,
		.allow = req->allow,
		.limit = req->limit,
		.close = req->close,
		.detail = req->why,
		.cors = cfg->cors_origins.n > 0,
		.cors_origin = req->cors_origin,
		.preflight = req->preflight && rc == 0,
		.max_age = cfg->cors_max_age,
	};
	struct MHD_Response *r;
	enum MHD_Result ret;

	req->state = REQ_DONE;
	r = response_build(rc, ok_status, &req->res, &meta, &req->status, &req->bytes);
	if (r == NULL) {
		req->status = 500;
		return MHD_NO;
	}
	/* Every answer names its request, errors included: the one the log shows. */
	(void)MHD_add_response_header(r, "X-Request-Id", req->request_id);
	if (strcmp(req->method, "HEAD") == 0)
		req->bytes = 0; /* MHD sends the headers of the GET answer only */
	ret = MHD_queue_response(req->conn, req->status, r);
	MHD_destroy_response(r);
	return ret;
}

/*
 * The request's id: a trusted proxy's X-Request-Id (nginx $request_id, an
 * edge's trace id) when it is a sane token, so one id follows the request
 * through every hop's log; otherwise, and from any other peer, a fresh one.
 * peer_trusted is decided on the TCP peer, as for X-Forwarded-For.
 */
static void request_id_of(struct request *req, bool peer_trusted)
{
	const char *v;
	size_t len;

	if (peer_trusted &&
	    MHD_lookup_connection_value_n(req->conn, MHD_HEADER_KIND, "X-Request-Id",
					  sizeof("X-Request-Id") - 1, &v, &len) == MHD_YES &&
	    log_request_id_ok(v, len)) {
		memcpy(req->request_id, v, len);
		req->request_id[len] = '\0';
		return;
	}
	log_request_id_new(req->request_id);
}

/* The configured origin that the request's Origin header equals, or NULL:
 * one lookup, run only when the allow-list is not empty. */
static const char *cors_origin_of(struct MHD_Connection *conn, const struct cors_origins *list)
{
	const char *v;
	size_t len;

	if (MHD_lookup_connection_value_n(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ORIGIN,
					  sizeof(MHD_HTTP_HEADER_ORIGIN) - 1, &v, &len) != MHD_YES)
		return NULL;
	return cors_origin_match(list, v, len);
}

/*
 * A CORS preflight (Fetch: OPTIONS with Origin and
 * Access-Control-Request-Method) from an allowed origin is granted when the
 * path is a route's and the method one of its methods, which router_match
 * has just listed in allow for OPTIONS (no route has that method): so every
 * route of the table, whenever added, has its preflight. Not granted: the
 * request is answered as usual (404, or 405 with Allow) and without CORS
 * headers, since the browser will not send the request anyway. OPTIONS
 * without the header is no preflight, and gets the usual answer with them.
 */
static void cors_preflight(struct request *req, int route_err)
{
	const char *m;
	size_t mlen;

	if (MHD_lookup_connection_value_n(req->conn, MHD_HEADER_KIND,
					  "Access-Control-Request-Method",
					  sizeof("Access-Control-Request-Method") - 1, &m,
					  &mlen) != MHD_YES)
		return;
	if (req->route == NULL && route_err == TOKEND_EMETHOD &&
	    cors_method_listed(req->allow, m, mlen))
		req->preflight = true;
	else
		req->cors_origin = NULL;
}

static bool get_route(const struct request *req)
{
	return req->route != NULL && strcmp(req->route->method, "GET") == 0;
}

/*
 * Checks what can be checked from the request line and headers alone. The
 * framing module refuses what would let two hops disagree on where the
 * request ends (400 or 501, and the connection closed). An allowed Origin
 * is found first, so that those refusals name it too.
 */
static void first_checks(struct request *req, const char *method, const char *url,
			 const char *version)
{
	const struct app *app = req->srv->app;
	const char *ct = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND,
						     MHD_HTTP_HEADER_CONTENT_TYPE);
	struct framing_result fr;
	const char *routed;
	bool loggable, has_body;
	int err;

	/* Logged only when they parse as a method and a target: after a body
	 * sent without Content-Length, the "request line" is body bytes. */
	loggable = framing_method_ok(method);
	snprintf(req->method, sizeof(req->method), "%s", loggable ? method : "-");
	loggable = loggable && framing_target_path(url, &routed) == 0;
	snprintf(req->path, sizeof(req->path), "%s", loggable ? url : "-");
	if (app->cfg.cors_origins.n > 0)
		req->cors_origin = cors_origin_of(req->conn, &app->cfg.cors_origins);
	err = framing_check(req->conn, method, url, version, (size_t)app->cfg.max_header, &fr);
	if (err != 0) {
		req->err = err;
		req->why = fr.why;
		req->close = true;
		return;
	}
	req->route = router_match(req->method, fr.path, req->ctx.params, req->allow,
				  sizeof(req->allow), &err);
	req->limit = app->cfg.max_body;
	if (fr.content_length != NULL) {
		char *end;
		errno = 0;
		unsigned long long n = strtoull(fr.content_length, &end, 10);
		if (errno == 0 && *end == '\0' && n > (unsigned long long)req->limit) {
			req->err = TOKEND_ETOOBIG; /* answered before reading the body */
			req->close = true;
			return;
		}
	}
	if (req->cors_origin != NULL && strcmp(method, "OPTIONS") == 0) {
		cors_preflight(req, err);
		if (req->preflight)
			return;
	}
	if (req->route == NULL) {
		req->err = err;
		return;
	}
	has_body = fr.chunked || (fr.content_length != NULL && strcmp(fr.content_length, "0") != 0);
	req->btype = body_type_of(ct);
	if (has_body && req->btype == BODY_UNSUPPORTED && !get_route(req))
		req->err = TOKEND_EMEDIA;
}

/* The slow part will never run (queue full, deadline passed, stopping):
 * 503, and the handler releases what its fast part reserved. */
static void slow_refused(struct request *req)
{
	if (req->res.cancel != NULL)
		req->res.cancel(&req->ctx);
	req->rc = TOKEND_EBUSY;
	req->res.retry_after = 1;
}

/* Worker-pool job for a handler's slow part; resumes the connection. */
static void slow_job(void *arg, int expired)
{
	struct request *req = arg;
	handler_fn slow = req->res.slow;

	req->res.slow = NULL;
	if (expired || atomic_load(&req->srv->stopping))
		slow_refused(req);
	else
		req->rc = slow(&req->ctx, &req->res);
	/* The last touch of req here: after resume the completion may free it. */
	MHD_resume_connection(req->conn);
}

static enum MHD_Result dispatch(struct request *req)
{
	json_t *err_body = NULL;
	json_t *body = NULL;
	int rc;

	if (req->preflight) /* granted: nothing decoded, no handler, no authentication */
		return queue(req, 0, MHD_HTTP_NO_CONTENT);
	/* A GET route never reads a body (RFC 9110 9.3.1 gives it no meaning;
	 * DRF's GET views ignore it): it is counted against the limit only. */
	if (get_route(req))
		rc = body_decode(BODY_JSON, "", 0, 1, &body, &err_body);
	else
		rc = body_decode(req->btype, req->body ? req->body : "", req->len,
				 req->srv->app->cfg.max_json_depth, &body, &err_body);
	if (rc != 0) {
		req->res.body = err_body;
		return queue(req, rc, 0);
	}
	req->ctx.body = body;
	req->ctx.authorization = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND,
							     MHD_HTTP_HEADER_AUTHORIZATION);
	if (req->route->auth != NULL)
		req->rc = req->route->auth(&req->ctx, &req->res, req->route->fn);
	else
		req->rc = req->route->fn(&req->ctx, &req->res);
	if (req->rc != 0 || req->res.slow == NULL)
		return queue(req, req->rc, req->route->ok_status);
	req->state = REQ_SUSPENDED;
	req->was_suspended = true;
	atomic_fetch_add(&req->srv->suspended, 1);
	MHD_suspend_connection(req->conn);
	if (workpool_submit(req->srv->pool, slow_job, req) != 0) {
		req->res.slow = NULL;
		slow_refused(req);
		MHD_resume_connection(req->conn);
	}
	return MHD_YES;
}

/* The watchdog's id of conn (stored as id + 1; 0 = not watched). */
static int conn_watch_id(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return ci && ci->socket_context ? (int)((intptr_t)ci->socket_context - 1) : -1;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **req_cls)
{
	struct server *srv = cls;
	struct request *req = *req_cls;
	const struct app *app = srv->app;
	bool trusted;

	(void)version;
	if (req == NULL) {
		req = calloc(1, sizeof(*req));
		if (req == NULL)
			return MHD_NO;
		*req_cls = req;
		atomic_fetch_add(&srv->inflight, 1);
		req->srv = srv;
		req->conn = conn;
		req->start_us = util_mono_us();
		remote_of(conn, req->remote, sizeof(req->remote));
		trusted = srv->trusted.n > 0 &&
			  cidr_list_match_text(&srv->trusted, req->remote, strlen(req->remote));
		request_id_of(req, trusted);
		if (trusted)
			forwarded_resolve(conn, &srv->trusted, req->remote, req->remote,
					  sizeof(req->remote));
		req->ctx.app = app;
		req->ctx.remote = req->remote;
		req->watch_id = conn_watch_id(conn);
		watchdog_begin(srv->wd, req->watch_id);
		first_checks(req, method, url, version);
		if (req->close)
			return queue(req, req->err, 0);
		/* Counted whatever it is: it holds a connection until answered. */
		if (!inflight_enter(srv->per_client, req->remote, &req->counted)) {
			req->err = TOKEND_ETHROTTLED;
			req->res.retry_after = 1;
		}
		return MHD_YES;
	}
	if (req->state == REQ_SUSPENDED) /* resumed by the worker */
		return queue(req, req->rc, req->route->ok_status);
	if (req->state == REQ_DONE)
		return MHD_YES;
	if (*upload_data_size > 0) {
		size_t n = *upload_data_size;

		*upload_data_size = 0;
		if (util_mono_us() - req->start_us >
		    (uint64_t)app->cfg.request_timeout * 1000000u) {
			/* Too slow: closed without an answer; the status is for the log. */
			req->status = response_status_for(TOKEND_ETIMEOUT, 0);
			return MHD_NO;
		}
		if (req->err != 0) {
			req->discarded += n;
			return req->discarded > (size_t)req->limit * DISCARD_FACTOR ? MHD_NO
										    : MHD_YES;
		}
		if (req->len + n > (size_t)req->limit) {
			req->err = TOKEND_ETOOBIG;
			body_drop(req);
			req->discarded = n;
			return MHD_YES;
		}
		if (req->len + n > req->cap) {
			size_t cap = req->cap ? req->cap : 1024, keep = req->len;
			char *p;
			while (cap < req->len + n)
				cap *= 2;
			if (cap > (size_t)req->limit)
				cap = (size_t)req->limit;
			/* Not realloc: it would leave the old copy unwiped. */
			p = malloc(cap);
			if (p == NULL)
				return MHD_NO;
			if (keep > 0)
				memcpy(p, req->body, keep);
			body_drop(req);
			req->body = p;
			req->len = keep;
			req->cap = cap;
		}
		memcpy(req->body + req->len, upload_data, n);
		req->len += n;
		return MHD_YES;
	}
	/* The request has arrived whole: the watchdog leaves it alone now. */
	watchdog_arrived(srv->wd, req->watch_id);
	if (req->err != 0)
		return queue(req, req->err, 0);
	return dispatch(req);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct server *srv = cls;
	struct request *req = *req_cls;
	uint64_t us;

	(void)toe;
	watchdog_done(srv->wd, req != NULL ? req->watch_id : conn_watch_id(conn));
	if (req == NULL)
		return;
	us = util_mono_us() - req->start_us;
	log_access(req->remote, req->method, req->path, req->status, us, req->bytes,
		   req->request_id);
	metrics_request(router_index(req->route), req->status, us);
	if (req->was_suspended)
		atomic_fetch_sub(&srv->suspended, 1);
	inflight_leave(srv->per_client, &req->counted);
	request_free(req);
	*req_cls = NULL;
	atomic_fetch_sub(&srv->inflight, 1);
}

/*
 * Connection life cycle. libmicrohttpd 0.9.75 calls NOTIFY_CLOSED before it
 * closes the socket, on both of its paths (MHD_cleanup_connections() and
 * the failure path of new_connection_process_(), daemon.c), and the
 * watchdog's shutdown takes the lock that watchdog_close() takes: a shutdown
 * cannot reach a descriptor number reused by a newer connection.
 * tests/unit/test_watchdog.c checks that order on a running daemon.
 */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			  enum MHD_ConnectionNotificationCode code)
{
	struct server *srv = cls;

	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
		int id = ci ? watchdog_open(srv->wd, ci->connect_fd) : TOKEND_ENOMEM;

		*socket_context = id >= 0 ? (void *)(intptr_t)(id + 1) : NULL;
	} else if (code == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context != NULL) {
		watchdog_close(srv->wd, (int)((intptr_t)*socket_context - 1));
		*socket_context = NULL;
	}
}

/*
 * Refuses a connection over the limit at accept: closed at once, instead
 * of libmicrohttpd's way at its own limit, which stops accepting and leaves
 * the clients in the listen backlog, to be accepted (and hold a slot again)
 * after many of them have gone. libmicrohttpd's own per-address limit has
 * refused already when it applies.
 */
static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr, socklen_t len)
{
	struct server *srv = cls;
	uint64_t now, last;

	(void)addr;
	(void)len;
	if (watchdog_open_count(srv->wd) < srv->max_connections)
		return MHD_YES;
	atomic_fetch_add(&srv->refused, 1);
	now = util_mono_us();
	last = atomic_load(&srv->refused_logged_us);
	if (now - last > LIMIT_LOG_US &&
	    atomic_compare_exchange_strong(&srv->refused_logged_us, &last, now))
		log_warn("http: %ld connections open: refusing new ones (server.max_connections); "
			 "%ld refused so far",
			 srv->max_connections, (long)atomic_load(&srv->refused));
	return MHD_NO;
}

/* The gauges a scrape reads: connections (the watchdog counts them) and the hash pool. */
static void gauges(void *arg, struct metrics_gauges *g)
{
	struct server *srv = arg;
	size_t queued = 0, running = 0;

	if (srv->pool != NULL)
		workpool_stats(srv->pool, &queued, &running);
	g->hash_queue = (long)queued;
	g->hash_busy = (long)running;
	g->open_connections = watchdog_open_count(srv->wd);
}

/* Paths are matched as received: "%2F" or "%00" never become "/" or NUL. */
static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
	(void)cls;
	(void)c;
	return strlen(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];
	size_t n;

	(void)cls;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	log_debug("http: %s", buf);
}

/* Closes an inherited fd that libmicrohttpd has not closed already on its
 * failure path (only the main thread runs here: the number is not reused). */
static void listen_fd_drop(int fd)
{
	if (fd >= 0 && fcntl(fd, F_GETFD) != -1)
		close(fd);
}

int server_start(const struct app *app, struct server_listen *where, struct server **out,
		 char *errbuf, size_t errlen)
{
	const struct config *cfg = &app->cfg;
	struct server *srv;
	struct sockaddr_storage ss;
	char host[64];
	unsigned p;
	/* epoll: with 10,000 kept-alive connections poll() scanned 5,000 fds
	 * per wake-up (verify p99 14 ms). libmicrohttpd 0.9.75's edge-triggered
	 * loop misses a FIN that arrives with the last bytes of a partial
	 * request; the watchdog notices such a connection and shuts it down. */
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
			 MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	/* Two HTTP threads per CPU by default: while one waits a moment
	 * (SQLite's locks, the write lock, a futex hand-off) the other uses the
	 * core; docs/performance.md has the figures. */
	long threads = cfg->threads > 0 ? cfg->threads : 2 * util_ncpus();
	long workers = cfg->hash_workers > 0 ? cfg->hash_workers : util_ncpus();
	const union MHD_DaemonInfo *di;
	sigset_t all, old;
	/* MHD keeps the header block, a node (~56 bytes) per header and the
	 * response headers in one pool per connection, and answers 431 itself
	 * (HTML) when it runs out. It also zeroes the whole pool after every
	 * request, so its size is paid on each request and stays resident for
	 * every kept-alive connection (10,000 of them must fit in 256 MiB):
	 * max_header + 4 KiB lets our JSON 431 speak for a block of normal
	 * headers, while a block of hundreds of tiny headers meets MHD's. */
	size_t pool_bytes = (size_t)cfg->max_header + 4 * 1024;
	char why[160];
	char fd_name[32];
	const char *listen_name = cfg->listen; /* for the error message */
	long per_ip;

	*out = NULL;
	memset(&ss, 0, sizeof(ss));
	if (where->fd >= 0) {
		if (notify_listen_fd_check(where->fd, where->host, sizeof(where->host),
					   &where->port, errbuf, errlen) != 0) {
			listen_fd_drop(where->fd);
			return TOKEND_EINVAL;
		}
		/* The socket's own address: MHD takes it as it is. */
		snprintf(host, sizeof(host), "%s", where->host);
		p = where->port;
		snprintf(fd_name, sizeof(fd_name), "inherited fd %d", where->fd);
		listen_name = fd_name;
	} else {
		/* Split and checked by the config module when listen was set. */
		snprintf(host, sizeof(host), "%s", cfg->listen_host);
		p = cfg->listen_port;
	}
	if (strchr(host, ':') != NULL) {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)p);
		inet_pton(AF_INET6, host, &a6->sin6_addr);
		flags |= MHD_USE_IPv6;
	} else {
		struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)p);
		inet_pton(AF_INET, host, &a4->sin_addr);
	}
	srv = calloc(1, sizeof(*srv));
	if (srv == NULL) {
		listen_fd_drop(where->fd);
		return TOKEND_ENOMEM;
	}
	srv->app = app;
	srv->max_connections = cfg->max_connections;
	if (cidr_list_parse(cfg->trusted_proxies, &srv->trusted, why, sizeof(why)) != 0) {
		snprintf(errbuf, errlen, "server.trusted_proxies: %s", why);
		free(srv);
		listen_fd_drop(where->fd);
		return TOKEND_EINVAL;
	}
	/* Behind proxies every connection comes from one of them: a limit
	 * per peer address would cap the whole service. */
	per_ip = cfg->per_ip_connections >= 0 ? cfg->per_ip_connections
		 : srv->trusted.n > 0         ? 0
					      : PER_IP_DIRECT;
	if (srv->trusted.n > 0)
		log_info("http: %zu trusted prox%s: the client is whom X-Forwarded-For names "
			 "(Forwarded without it); connections per address: %s",
			 srv->trusted.n, srv->trusted.n == 1 ? "y" : "ies",
			 per_ip > 0 ? "limited" : "unlimited");
	srv->per_client = inflight_new(cfg->per_client_requests);
	srv->wd = srv->per_client ? watchdog_new(cfg->request_timeout * 1000, WATCHDOG_TICK_MS)
				  : NULL;
	if (srv->wd == NULL) {
		inflight_free(&srv->per_client);
		free(srv);
		listen_fd_drop(where->fd);
		return TOKEND_ENOMEM;
	}
	srv->pool = workpool_new(workers, cfg->hash_queue, cfg->hash_deadline_ms);
	if (srv->pool == NULL) {
		watchdog_free(&srv->wd);
		inflight_free(&srv->per_client);
		free(srv);
		listen_fd_drop(where->fd);
		snprintf(errbuf, errlen, "cannot start %ld hashing workers", workers);
		return TOKEND_ENOMEM;
	}
	/* MHD's threads inherit a mask with every signal blocked: main sigwaits. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	/* libmicrohttpd's own limit sits above ours by one accept per thread
	 * (each thread may accept once between our count and its
	 * NOTIFY_STARTED), so accept_policy() is what refuses. */
	srv->daemon = MHD_start_daemon(
		flags, (uint16_t)p, accept_policy, srv, on_request, srv, MHD_OPTION_SOCK_ADDR,
		(struct sockaddr *)&ss,
		/* -1 (MHD_INVALID_SOCKET, MHD's default): bind SOCK_ADDR. Else
		 * MHD serves the inherited socket and ignores SOCK_ADDR. */
		MHD_OPTION_LISTEN_SOCKET, (MHD_socket)where->fd, MHD_OPTION_THREAD_POOL_SIZE,
		(unsigned)threads, MHD_OPTION_CONNECTION_LIMIT,
		(unsigned)(cfg->max_connections + threads), MHD_OPTION_PER_IP_CONNECTION_LIMIT,
		(unsigned)per_ip, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->idle_timeout,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, pool_bytes, MHD_OPTION_LISTEN_BACKLOG_SIZE,
		1024u, MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_NOTIFY_CONNECTION,
		on_connection, srv, MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, NULL,
		MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
	if (srv->daemon != NULL && watchdog_start(srv->wd) != 0) {
		MHD_stop_daemon(srv->daemon);
		srv->daemon = NULL;
		errno = ENOMEM;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (srv->daemon == NULL) {
		snprintf(errbuf, errlen, "cannot listen on %s: %s", listen_name, strerror(errno));
		listen_fd_drop(where->fd);
		workpool_free(&srv->pool);
		watchdog_free(&srv->wd);
		inflight_free(&srv->per_client);
		free(srv);
		return TOKEND_EIO;
	}
	metrics_gauges_source(gauges, srv);
	di = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
	snprintf(where->host, sizeof(where->host), "%s", host);
	where->port = di && di->port ? di->port : p;
	*out = srv;
	return 0;
}

static void nap_ms(long ms)
{
	struct timespec ts = {0, ms * 1000 * 1000};

	nanosleep(&ts, NULL);
}

void server_stop(struct server **srvp, long grace_ms)
{
	struct server *srv = srvp ? *srvp : NULL;
	uint64_t deadline;
	MHD_socket lsock;

	if (srv == NULL)
		return;
	/* 1. Stop accepting. 2. Slow work still queued answers 503 and every
	 * suspended connection is resumed. 3. Those answers go out: MHD aborts
	 * if a connection is still suspended when it stops. 4. Other requests
	 * get a moment to finish; one whose client vanished mid-body (which
	 * MHD's epoll loop may not notice) is not waited for. */
	metrics_gauges_source(NULL, NULL); /* waits for a scrape reading srv */
	lsock = MHD_quiesce_daemon(srv->daemon);
	atomic_store(&srv->stopping, true);
	workpool_free(&srv->pool);
	deadline = util_mono_us() + (uint64_t)grace_ms * 1000u;
	while (atomic_load(&srv->suspended) > 0 && util_mono_us() < deadline)
		nap_ms(10);
	if (util_mono_us() + SETTLE_MS * 1000u < deadline)
		deadline = util_mono_us() + SETTLE_MS * 1000u;
	while (atomic_load(&srv->inflight) > 0 && util_mono_us() < deadline)
		nap_ms(10);
	if (atomic_load(&srv->inflight) > 0)
		log_warn("http: stopping with %ld requests unfinished",
			 (long)atomic_load(&srv->inflight));
	MHD_stop_daemon(srv->daemon);
	/* After the daemon: it sends NOTIFY_CLOSED for every connection. */
	watchdog_free(&srv->wd);
	inflight_free(&srv->per_client);
	if (lsock != MHD_INVALID_SOCKET)
		close(lsock);
	free(srv);
	*srvp = NULL;
}
