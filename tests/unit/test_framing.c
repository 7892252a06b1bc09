/* SPDX-License-Identifier: MIT */
/*
 * This suite tests src/http/framing.h, and proves on the real
 * libmicrohttpd 0.9.75 what the module relies on. It shows that:
 * - the grammar tests take exactly RFC 9110 tokens as methods (at most 15
 *   bytes), origin-, absolute- (http/https, no userinfo) and asterisk-form
 *   targets, and Host values without '/', '@', blanks or CTLs;
 * - fed a block laid out as 0.9.75 leaves it, the checks refuse repeated
 *   Content-Length / Host / Authorization, CL with TE, repeated TE, codings
 *   not ending in one chunked (501 for gzip, chunked), HTTP/1.1 without
 *   Host, names that are not tokens, CTLs in values, and pass the rest;
 * - 0.9.75 itself, on a socket: hands "Content-Length : 13" over with the
 *   name "Content-Length " (the space kept); cuts a value at a NUL (the
 *   reported length stops there, the rest is invisible); does not drop an
 *   obs-folded line but glues it onto the field name ("X-Atwo" = "one"), in
 *   memory apart from its read buffer; drops a line with an empty name;
 *   keeps a bare CR inside a value; reports both of two Content-Length
 *   headers; counts the header block exactly (REQUEST_HEADER_SIZE) — and
 *   framing_check() refuses each of those cases and passes normal requests.
 * If an upgrade of libmicrohttpd changes its layout, the last test fails
 * here before any request is refused in production.
 */
#include <arpa/inet.h>
#include <check.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/framing.h"
#include "tokend/err.h"

/* ------------------------------------------------------------ grammar */

START_TEST(tokens)
{
	ck_assert(framing_is_token("GET", 3));
	ck_assert(framing_is_token("!#$%&'*+-.^_`|~09azAZ", 21));
	ck_assert(!framing_is_token("", 0));
	ck_assert(!framing_is_token("a b", 3));
	ck_assert(!framing_is_token("password=x", 10));
	ck_assert(!framing_is_token("a\0b", 3));
	ck_assert(!framing_is_token("a\"b", 3));
	ck_assert(!framing_is_token("a(b", 3));
	ck_assert(!framing_is_token("{\"a\"", 4));
	ck_assert(!framing_is_token("a\xff", 2));
	ck_assert(!framing_is_token("Content-Length ", 15));
	ck_assert(!framing_is_token("X-A\t", 4));
}
END_TEST

START_TEST(methods)
{
	ck_assert(framing_method_ok("GET"));
	ck_assert(framing_method_ok("M-SEARCH"));
	ck_assert(framing_method_ok("get"));
	ck_assert(framing_method_ok("ABCDEFGHIJKLMNO"));   /* 15 */
	ck_assert(!framing_method_ok("ABCDEFGHIJKLMNOP")); /* 16 */
	ck_assert(!framing_method_ok(""));
	ck_assert(!framing_method_ok("password=S3cr3t"));
	ck_assert(!framing_method_ok("{\"token\":\"a\"}GET"));
}
END_TEST

static void target_is(const char *target, const char *want)
{
	const char *path = NULL;

	ck_assert_msg(framing_target_path(target, &path) == 0, "%s refused", target);
	ck_assert_str_eq(path, want);
}

static void target_bad(const char *target)
{
	const char *path = NULL;

	ck_assert_msg(framing_target_path(target, &path) == TOKEND_EBADREQ, "%s taken", target);
}

START_TEST(targets)
{
	target_is("/a/b", "/a/b");
	target_is("/", "/");
	target_is("*", "*");
	target_is("http://127.0.0.1:8080/api/auth/jwt/verify/", "/api/auth/jwt/verify/");
	target_is("HTTPS://h.example/x", "/x");
	target_is("http://h.example", "/");
	target_is("http://[::1]:80/x", "/x");
	target_bad("ftp://h/x");
	target_bad("http://u@h/x");
	target_bad("http:///x");
	target_bad("http:/x");
	target_bad("jwks.json");
	target_bad("h.example:443");
	target_bad("");
	target_bad("/a\x01");
	target_bad("/a\x7f");
	target_bad("/\xff");
	target_bad("/a b");
}
END_TEST

START_TEST(hosts)
{
	ck_assert(framing_host_ok("", 0));
	ck_assert(framing_host_ok("a.example:80", 12));
	ck_assert(framing_host_ok("[::1]:8080", 10));
	ck_assert(!framing_host_ok("a b", 3));
	ck_assert(!framing_host_ok("a/b", 3));
	ck_assert(!framing_host_ok("u@h", 3));
	ck_assert(!framing_host_ok("a\\b", 3));
	ck_assert(!framing_host_ok("a\0b", 3));
}
END_TEST

/* ------------------------------------------------ blocks laid out as MHD does */

/*
 * Lays raw (a request line and header lines, each ending in CRLF or LF, and
 * the blank line) out as libmicrohttpd 0.9.75 leaves it: colons and line
 * ends become NULs, each value starts after the blanks that follow its
 * colon. Only for well-formed lines: the socket tests below cover the rest.
 */
struct laid {
	char buf[2048];
	size_t len;
	const char *line_end;
	const char *name[32], *value[32];
	size_t nlen[32], vlen[32];
	size_t n;
};

static void lay_out(struct laid *l, const char *raw)
{
	size_t i = 0, line = 0;

	memset(l, 0, sizeof(*l));
	l->len = strlen(raw);
	ck_assert_uint_lt(l->len, sizeof(l->buf));
	memcpy(l->buf, raw, l->len);
	while (i < l->len) {
		size_t s = i, e;
		char *colon;
		while (l->buf[i] != '\n')
			i++;
		e = (i > s && l->buf[i - 1] == '\r') ? i - 1 : i;
		for (size_t k = e; k <= i; k++)
			l->buf[k] = '\0';
		i++;
		if (line++ == 0) {
			l->line_end = l->buf + e;
			continue;
		}
		if (e == s)
			break; /* the blank line */
		colon = memchr(l->buf + s, ':', e - s);
		ck_assert_ptr_nonnull(colon);
		*colon = '\0';
		l->name[l->n] = l->buf + s;
		l->nlen[l->n] = (size_t)(colon - (l->buf + s));
		colon++;
		while (*colon == ' ' || *colon == '\t')
			colon++;
		l->value[l->n] = colon;
		l->vlen[l->n] = (size_t)((l->buf + e) - colon);
		l->n++;
	}
}

static int check_raw(const char *raw, bool http11, const char **why)
{
	struct laid l;
	struct framing f;
	int rc;

	lay_out(&l, raw);
	framing_begin(&f, l.buf, l.len, l.line_end);
	for (size_t i = 0; i < l.n; i++)
		framing_field(&f, l.name[i], l.nlen[i], l.value[i], l.vlen[i]);
	rc = framing_end(&f, http11);
	if (why != NULL)
		*why = f.why;
	return rc;
}

#define LINE "POST /x HTTP/1.1\r\nHost: a\r\n"

START_TEST(blocks_that_pass)
{
	struct laid l;
	struct framing f;

	ck_assert_int_eq(check_raw(LINE "\r\n", true, NULL), 0);
	ck_assert_int_eq(check_raw("GET /x HTTP/1.0\r\n\r\n", false, NULL), 0);
	ck_assert_int_eq(check_raw("GET /x HTTP/1.1\nHost: a\nX-A: v\n\n", true, NULL), 0);
	ck_assert_int_eq(check_raw(LINE "X-A:\t \tv \t\r\nX-Empty:\r\n\r\n", true, NULL), 0);
	ck_assert_int_eq(check_raw(LINE "X-Tab: a\tb\r\nX-Obs: caf\xc3\xa9\r\n\r\n", true, NULL),
			 0);
	lay_out(&l, LINE "Content-Length: 13\r\n\r\n");
	framing_begin(&f, l.buf, l.len, l.line_end);
	for (size_t i = 0; i < l.n; i++)
		framing_field(&f, l.name[i], l.nlen[i], l.value[i], l.vlen[i]);
	ck_assert_int_eq(framing_end(&f, true), 0);
	ck_assert_str_eq(f.cl, "13");
	lay_out(&l, LINE "Transfer-Encoding: Chunked\r\n\r\n");
	framing_begin(&f, l.buf, l.len, l.line_end);
	for (size_t i = 0; i < l.n; i++)
		framing_field(&f, l.name[i], l.nlen[i], l.value[i], l.vlen[i]);
	ck_assert_int_eq(framing_end(&f, true), 0);
	ck_assert(f.te_chunked);
}
END_TEST

START_TEST(blocks_refused)
{
	static const char *const bad[] = {
		LINE "Content-Length: 13\r\nContent-Length: 56\r\n\r\n",
		LINE "Content-Length: 13\r\ncontent-length: 13\r\n\r\n",
		LINE "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
		LINE "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
		LINE "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
		LINE "Transfer-Encoding: chunked, gzip\r\n\r\n",
		LINE "Transfer-Encoding: gzip\r\n\r\n",
		LINE "Transfer-Encoding: chunked, chunked\r\n\r\n",
		LINE "Transfer-Encoding: \r\n\r\n",
		LINE "Transfer-Encoding: ,\r\n\r\n",
		LINE "Host: b\r\n\r\n",
		"GET /x HTTP/1.1\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: a/b\r\n\r\n",
		LINE "Authorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n",
		LINE "Content-Length : 13\r\n\r\n",
		LINE "X A: v\r\n\r\n",
		LINE "X-A: a\x01"
		     "b\r\n\r\n",
		LINE "X-A: a\x7f\r\n\r\n",
		LINE "X-A: a\rb\r\n\r\n",
	};
	const char *why;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		ck_assert_msg(check_raw(bad[i], true, &why) == TOKEND_EBADREQ, "passed: %s",
			      bad[i]);
		ck_assert_ptr_nonnull(why);
		ck_assert(strncmp(why, "Bad request: ", 13) == 0);
	}
	ck_assert_int_eq(check_raw(LINE "Transfer-Encoding: gzip, chunked\r\n\r\n", true, &why),
			 TOKEND_ENOTIMPL);
}
END_TEST

START_TEST(hidden_bytes_refused)
{
	struct laid l;
	struct framing f;

	/* A value cut at a NUL, as 0.9.75 reports it: the rest lies between
	 * its end and the next line. */
	lay_out(&l, LINE "X-A: abc junk\r\nX-B: v\r\n\r\n");
	l.buf[(size_t)(l.value[1] - l.buf) + 3] = '\0';
	l.vlen[1] = 3;
	framing_begin(&f, l.buf, l.len, l.line_end);
	for (size_t i = 0; i < l.n; i++)
		framing_field(&f, l.name[i], l.nlen[i], l.value[i], l.vlen[i]);
	ck_assert_int_eq(framing_end(&f, true), TOKEND_EBADREQ);

	/* The same in the last field: the block is longer than its fields. */
	lay_out(&l, LINE "X-A: abc junk\r\n\r\n");
	l.buf[(size_t)(l.value[1] - l.buf) + 3] = '\0';
	l.vlen[1] = 3;
	framing_begin(&f, l.buf, l.len, l.line_end);
	for (size_t i = 0; i < l.n; i++)
		framing_field(&f, l.name[i], l.nlen[i], l.value[i], l.vlen[i]);
	ck_assert_int_eq(framing_end(&f, true), TOKEND_EBADREQ);

	/* A name in memory of its own (an obs-fold glued onto it). */
	lay_out(&l, LINE "X-A: one\r\n\r\n");
	{
		static const char moved[] = "X-Atwo";
		framing_begin(&f, l.buf, l.len, l.line_end);
		framing_field(&f, l.name[0], l.nlen[0], l.value[0], l.vlen[0]);
		framing_field(&f, moved, 6, l.value[1], l.vlen[1]);
		ck_assert_int_eq(framing_end(&f, true), TOKEND_EBADREQ);
	}

	/* A line that was never handed over. */
	lay_out(&l, LINE "X-A: one\r\n\r\n");
	framing_begin(&f, l.buf, l.len, l.line_end);
	framing_field(&f, l.name[0], l.nlen[0], l.value[0], l.vlen[0]);
	ck_assert_int_eq(framing_end(&f, true), TOKEND_EBADREQ);
}
END_TEST

/* ------------------------------------------------ the real libmicrohttpd */

#define MAX_SEEN 16

/* What the access handler saw of the last request (guarded by seen_lock). */
struct seen {
	int calls;
	char name[MAX_SEEN][64];
	size_t nlen[MAX_SEEN];
	char value[MAX_SEEN][64];
	size_t vlen[MAX_SEEN];
	bool name_in_block[MAX_SEEN];
	size_t n;
	size_t header_size;
	int rc;
	struct framing_result fr; /* its pointers are MHD's: compare in the handler */
	char cl[16];              /* a copy of fr.content_length */
};

static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static struct seen seen;
static const char *seen_block;

static enum MHD_Result record(void *cls, enum MHD_ValueKind kind, const char *key, size_t klen,
			      const char *value, size_t vlen)
{
	struct seen *s = cls;
	uintptr_t o = (uintptr_t)key - (uintptr_t)seen_block;

	(void)kind;
	if (s->n < MAX_SEEN && klen < 64 && vlen < 64) {
		memcpy(s->name[s->n], key, klen);
		s->nlen[s->n] = klen;
		memcpy(s->value[s->n], value, vlen);
		s->vlen[s->n] = vlen;
		s->name_in_block[s->n] = o < s->header_size;
		s->n++;
	}
	return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **req_cls)
{
	static char ok[] = "ok";
	struct MHD_Response *r;
	enum MHD_Result ret;

	(void)cls;
	(void)upload_data;
	if (*req_cls == NULL) {
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
		*req_cls = conn;
		pthread_mutex_lock(&seen_lock);
		memset(&seen, 0, sizeof(seen));
		seen.calls = 1;
		seen.header_size = ci ? ci->header_size : 0;
		seen_block = method;
		MHD_get_connection_values_n(conn, MHD_HEADER_KIND, record, &seen);
		seen.rc = framing_check(conn, method, url, version, 16384, &seen.fr);
		snprintf(seen.cl, sizeof(seen.cl), "%s",
			 seen.fr.content_length ? seen.fr.content_length : "");
		if (seen.fr.path != NULL && strcmp(seen.fr.path, "/x") != 0)
			seen.fr.path = "(other)";
		else if (seen.fr.path != NULL)
			seen.fr.path = "/x";
		pthread_mutex_unlock(&seen_lock);
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		*upload_data_size = 0;
		return MHD_YES;
	}
	r = MHD_create_response_from_buffer(2, ok, MHD_RESPMEM_PERSISTENT);
	ret = MHD_queue_response(conn, 200, r);
	MHD_destroy_response(r);
	return ret;
}

static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
	(void)cls;
	(void)c;
	return strlen(s);
}

static struct MHD_Daemon *daemon_;
static uint16_t port_;

static void start_mhd(void)
{
	const union MHD_DaemonInfo *di;

	/* As server.c runs it: internal thread, epoll, no unescaping. */
	daemon_ = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, NULL, NULL,
				   on_request, NULL, MHD_OPTION_UNESCAPE_CALLBACK, no_unescape,
				   NULL, MHD_OPTION_CONNECTION_TIMEOUT, 5u, MHD_OPTION_END);
	ck_assert_ptr_nonnull(daemon_);
	di = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_BIND_PORT);
	ck_assert_ptr_nonnull(di);
	port_ = di->port;
}

static void stop_mhd(void)
{
	MHD_stop_daemon(daemon_);
	daemon_ = NULL;
}

/* Sends raw, closes our side for writing, reads the answer (or EOF);
 * returns whether the handler was called, and a copy of what it saw. */
static bool send_raw(const char *raw, size_t len, struct seen *out)
{
	struct sockaddr_in sa;
	struct timeval tv = {5, 0};
	char buf[4096];
	size_t got = 0;
	ssize_t n;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_ge(fd, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(port_);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	pthread_mutex_lock(&seen_lock);
	memset(&seen, 0, sizeof(seen));
	pthread_mutex_unlock(&seen_lock);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ck_assert_int_eq(send(fd, raw, len, 0), (ssize_t)len);
	shutdown(fd, SHUT_WR);
	/* Until our "ok" (MHD keeps the connection) or its close. */
	while ((n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0)) > 0) {
		got += (size_t)n;
		buf[got] = '\0';
		if (got >= 2 && strstr(buf, "\r\n\r\n") != NULL && strcmp(buf + got - 2, "ok") == 0)
			break;
		if (got == sizeof(buf) - 1)
			break;
	}
	close(fd);
	pthread_mutex_lock(&seen_lock);
	*out = seen;
	pthread_mutex_unlock(&seen_lock);
	return out->calls > 0;
}

#define SEND(lit, s) send_raw(lit, sizeof(lit) - 1, s)

static bool seen_field(const struct seen *s, size_t i, const char *name, const char *value)
{
	return i < s->n && s->nlen[i] == strlen(name) &&
	       memcmp(s->name[i], name, s->nlen[i]) == 0 && s->vlen[i] == strlen(value) &&
	       memcmp(s->value[i], value, s->vlen[i]) == 0;
}

START_TEST(mhd_passes_normal_requests)
{
	struct seen s;
	static const char req[] = "POST /api/auth/jwt/?a=1&b HTTP/1.1\r\nHost: 127.0.0.1:1\r\n"
				  "Cookie: a=b; c=d\r\nX-A: \t v \t\r\nX-Empty:\r\n"
				  "Content-Length: 2\r\n\r\n{}";

	start_mhd();
	ck_assert(SEND(req, &s));
	/* the block is counted exactly: request line to the blank line */
	ck_assert_uint_eq(s.header_size, sizeof(req) - 1 - 2);
	ck_assert_uint_eq(s.fr.header_bytes, s.header_size);
	ck_assert_msg(s.rc == 0, "refused: %s", s.fr.why);
	ck_assert_str_eq(s.cl, "2");
	ck_assert(seen_field(&s, 2, "X-A", "v \t")); /* trailing blanks kept */
	ck_assert(SEND("GET /x HTTP/1.1\nHost: a\nX-A: v\n\n", &s));
	ck_assert_msg(s.rc == 0, "LF only refused: %s", s.fr.why);
	ck_assert(SEND("GET /x HTTP/1.0\r\n\r\n", &s));
	ck_assert_msg(s.rc == 0, "HTTP/1.0 refused: %s", s.fr.why);
	ck_assert(SEND("GET http://h:1/x HTTP/1.1\r\nHost: h\r\n\r\n", &s));
	ck_assert_int_eq(s.rc, 0);
	ck_assert_str_eq(s.fr.path, "/x");
	ck_assert(SEND("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		       &s));
	ck_assert_int_eq(s.rc, 0);
	ck_assert(s.fr.chunked);
	stop_mhd();
}
END_TEST

#define NUL_AUTH "GET /x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer abc\0 junk\r\n\r\n"

START_TEST(mhd_facts_and_refusals)
{
	struct seen s;

	start_mhd();
	/* Whitespace before the colon stays in the name. */
	ck_assert(SEND("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length : 2\r\n\r\n{}", &s));
	ck_assert(seen_field(&s, 1, "Content-Length ", "2"));
	ck_assert_int_eq(s.rc, TOKEND_EBADREQ);

	/* A NUL cuts the value: its reported length stops there. */
	ck_assert(SEND(NUL_AUTH, &s));
	ck_assert(seen_field(&s, 1, "Authorization", "Bearer abc"));
	ck_assert_uint_eq(s.header_size, sizeof(NUL_AUTH) - 1);
	ck_assert_int_eq(s.rc, TOKEND_EBADREQ);
	ck_assert(SEND("GET /x HTTP/1.1\r\nHost: a\r\nX-A: a\0b\r\nX-B: c\r\n\r\n", &s));
	ck_assert(seen_field(&s, 1, "X-A", "a"));
	ck_assert_int_eq(s.rc, TOKEND_EBADREQ);

	/* An obs-fold is not dropped: it is glued onto the name, which is
	 * moved out of the read buffer; the value keeps the first line. */
	ck_assert(SEND("GET /x HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n", &s));
	ck_assert(seen_field(&s, 1, "X-Atwo", "one"));
	ck_assert(!s.name_in_block[1]);
	ck_assert(s.name_in_block[0]);
	ck_assert_int_eq(s.rc, TOKEND_EBADREQ);
	ck_assert(SEND("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
		       "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
		       &s));
	ck_assert(seen_field(&s, 2, "Transfer-Encodingchunked", ""));
	ck_assert_int_eq(s.rc, TOKEND_EBADREQ);

	/* A line with an empty name is dropped without a word. */
	ck_assert(SEND("GET /x HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n", &s));
	ck_assert_uint_eq(s.n, 1);
	ck_assert_int_eq(s.rc, TOKEND_EBADREQ);

	/* A bare CR stays inside the value. */
	ck_assert(SEND("GET /x HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n", &s));
	ck_assert(seen_field(&s, 1, "X-A", "a\rb"));
	ck_assert_int_eq(s.rc, TOKEND_EBADREQ);

	/* Duplicates are all visible, in wire order. */
	ck_assert(SEND("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
		       "Content-Length: 56\r\n\r\n{}",
		       &s));
	ck_assert(seen_field(&s, 1, "Content-Length", "2"));
	ck_assert(seen_field(&s, 2, "Content-Length", "56"));
	ck_assert_int_eq(s.rc, TOKEND_EBADREQ);
	ck_assert(SEND("GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", &s));
	ck_assert_int_eq(s.rc, TOKEND_EBADREQ);
	ck_assert(SEND("GET /x HTTP/1.1\r\n\r\n", &s));
	ck_assert_int_eq(s.rc, TOKEND_EBADREQ);

	/* A NUL in a name: 0.9.75 refuses the line itself (no colon before it). */
	ck_assert(!SEND("GET /x HTTP/1.1\r\nHost: a\r\nX-\0A: v\r\n\r\n", &s));
	stop_mhd();
}
END_TEST

static Suite *framing_suite(void)
{
	Suite *s = suite_create("framing");
	TCase *tc = tcase_create("grammar");
	TCase *tb = tcase_create("blocks");
	TCase *tm = tcase_create("libmicrohttpd");

	tcase_add_test(tc, tokens);
	tcase_add_test(tc, methods);
	tcase_add_test(tc, targets);
	tcase_add_test(tc, hosts);
	suite_add_tcase(s, tc);
	tcase_add_test(tb, blocks_that_pass);
	tcase_add_test(tb, blocks_refused);
	tcase_add_test(tb, hidden_bytes_refused);
	suite_add_tcase(s, tb);
	tcase_add_test(tm, mhd_passes_normal_requests);
	tcase_add_test(tm, mhd_facts_and_refusals);
	suite_add_tcase(s, tm);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(framing_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
