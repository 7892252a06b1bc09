/* SPDX-License-Identifier: MIT */
/*
 * This module implements the levelled logger and the access log, as text or
 * as one JSON object per line (log.format), and the request ids the access
 * log names. Each line
 * is formatted into a stack buffer and written with a single write(2) to
 * stderr, so concurrent threads never interleave within a line. While the
 * server runs, access lines gather in a buffer per thread instead (at most
 * PIPE_BUF bytes of whole lines, still one write each) that is written when
 * full, by a flusher thread every few milliseconds, and at shutdown.
 */
#include "tokend/log.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "tokend/util.h"

/* Room for the longest JSON access line (a 256-byte path of escapes is
 * 1,536 bytes): a JSON line is never cut, which would break it. */
#define LOG_LINE_MAX 3072
#define LOG_PATH_MAX 256
#define LOG_METHOD_MAX 32

static atomic_int log_level = LOG_INFO;
static atomic_int log_access_on = 1;
static atomic_int log_format = LOG_TEXT;

static const char *const level_names[] = {"debug", "info", "warn", "error"};
static const char *const format_names[] = {"text", "json"};

int log_format_parse(const char *name)
{
	for (int i = 0; i < 2; i++)
		if (strcmp(name, format_names[i]) == 0)
			return i;
	return -1;
}

void log_set_format(enum log_format format)
{
	atomic_store(&log_format, (int)format);
}

int log_level_parse(const char *name)
{
	for (int i = 0; i < 4; i++)
		if (strcmp(name, level_names[i]) == 0)
			return i;
	return -1;
}

void log_set_level(enum log_level level)
{
	atomic_store(&log_level, (int)level);
}

void log_set_access(int enabled)
{
	atomic_store(&log_access_on, enabled ? 1 : 0);
}

/* The current time as RFC 3339, formatted once per second per thread. */
static const char *log_now(void)
{
	static _Thread_local int64_t formatted = -1;
	static _Thread_local char ts[RFC3339_LEN];
	int64_t now = util_now();

	if (now != formatted) {
		util_time_rfc3339(now, ts);
		formatted = now;
	}
	return ts;
}

static void log_write(char *buf, size_t len)
{
	if (len >= LOG_LINE_MAX)
		len = LOG_LINE_MAX - 1;
	buf[len] = '\n';
	/* Best effort: a full or closed stderr must not stop the service. */
	ssize_t r = write(STDERR_FILENO, buf, len + 1);
	(void)r;
}

/* A line under construction: appended to, cut at LOG_LINE_MAX. */
struct line {
	char buf[LOG_LINE_MAX + 1];
	size_t n;
};

static void line_put(struct line *l, const char *s)
{
	size_t len = strlen(s);

	if (len > LOG_LINE_MAX - l->n)
		len = LOG_LINE_MAX - l->n;
	memcpy(l->buf + l->n, s, len);
	l->n += len;
}

/* s as a JSON string's inside, cut (between escapes) so that reserve bytes
 * stay free for the rest of the line. */
static void line_put_json(struct line *l, const char *s, size_t len, size_t max_in, size_t reserve)
{
	size_t room = LOG_LINE_MAX - l->n;

	if (room <= reserve)
		return;
	l->n += log_json_escape(s, len, l->buf + l->n, room - reserve + 1, max_in, NULL);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	struct line l = {.n = 0};
	char msg[LOG_LINE_MAX];
	va_list ap;
	int n;

	if ((int)level < atomic_load(&log_level))
		return;
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		msg[0] = '\0';
	if (atomic_load(&log_format) == LOG_JSON) {
		line_put(&l, "{\"time\":\"");
		line_put(&l, log_now());
		line_put(&l, "\",\"level\":\"");
		line_put(&l, level_names[level]);
		line_put(&l, "\",\"message\":\"");
		line_put_json(&l, msg, strlen(msg), sizeof(msg), 3); /* '"}', and log_write's cut */
		line_put(&l, "\"}");
	} else {
		line_put(&l, log_now());
		line_put(&l, " ");
		line_put(&l, level_names[level]);
		line_put(&l, " ");
		line_put(&l, msg);
	}
	log_write(l.buf, l.n);
}

bool log_escape(const char *s, size_t len, char *out, size_t outlen, size_t max_in)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, i;

	for (i = 0; i < len && i < max_in; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c > 0x20 && c < 0x7f && c != '\\' && c != '"') {
			if (o + 1 >= outlen)
				break;
			out[o++] = (char)c;
		} else {
			if (o + 4 >= outlen)
				break;
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return i < len;
}

/* Bytes of the valid UTF-8 sequence at s (at most len bytes), 0 if none. */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t n;

	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0; /* overlong */
	else if (c == 0xed)
		hi = 0x9f; /* surrogates */
	else if (c == 0xf0)
		lo = 0x90; /* overlong */
	else if (c == 0xf4)
		hi = 0x8f; /* past U+10FFFF */
	if (len < n || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

size_t log_json_escape(const char *s, size_t len, char *out, size_t outlen, size_t max_in,
		       bool *cut)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	size_t o = 0, i = 0;

	size_t whole = len;

	if (outlen == 0)
		return 0;
	if (len > max_in)
		len = max_in;
	while (i < len) {
		unsigned char c = u[i];
		char esc[7];
		const char *put = esc;
		size_t n, adv = 1;

		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
			if (o + 1 >= outlen)
				break;
			out[o++] = (char)c;
			i++;
			continue;
		}
		if (c == '"' || c == '\\') {
			esc[0] = '\\', esc[1] = (char)c, n = 2;
		} else if (c == '\n') {
			put = "\\n", n = 2;
		} else if (c == '\t') {
			put = "\\t", n = 2;
		} else if (c == '\r') {
			put = "\\r", n = 2;
		} else if (c < 0x80) { /* other controls and DEL */
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[c >> 4], esc[5] = hex[c & 15], n = 6;
		} else if ((adv = utf8_seq(u + i, len - i)) > 0) {
			put = s + i, n = adv;
		} else {
			put = "\\ufffd", n = 6, adv = 1;
		}
		if (o + n >= outlen)
			break;
		memcpy(out + o, put, n);
		o += n;
		i += adv;
	}
	out[o] = '\0';
	if (cut != NULL)
		*cut = i < whole;
	return o;
}

/*
 * Request ids: splitmix64 (Steele, Lea, Flood 2014) per thread, seeded once
 * from getrandom(2); a thread that cannot seed uses its address and the
 * clock, which still tells requests apart.
 */
void log_request_id_new(char out[LOG_REQUEST_ID_MAX + 1])
{
	static const char hex[] = "0123456789abcdef";
	static _Thread_local uint64_t state;
	static _Thread_local bool seeded;
	uint64_t z;

	if (!seeded) {
		if (getrandom(&state, sizeof(state), GRND_NONBLOCK) != (ssize_t)sizeof(state))
			state = (uint64_t)(uintptr_t)&state ^ (util_mono_us() << 20);
		seeded = true;
	}
	z = (state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	for (int i = LOG_REQUEST_ID_LEN - 1; i >= 0; i--, z >>= 4)
		out[i] = hex[z & 15];
	out[LOG_REQUEST_ID_LEN] = '\0';
}

bool log_request_id_ok(const char *v, size_t len)
{
	if (len == 0 || len > LOG_REQUEST_ID_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)v[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL)))
			return false;
	}
	return true;
}

static void line_put_u(struct line *l, unsigned long long v)
{
	char d[24];
	size_t i = sizeof(d) - 1;

	d[i] = '\0';
	do {
		d[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0);
	line_put(l, d + i);
}

/*
 * The access buffers. A write(2) per line was 8 % of a cheap request with
 * stderr on a file (the filesystem's write path), so while the server runs
 * lines gather per thread. PIPE_BUF bytes: a write of whole lines that
 * size reaches a pipe (journald, a log collector) in one piece.
 */
struct abuf {
	pthread_mutex_t lock; /* the owner appends, the flusher writes */
	size_t len;
	struct abuf *next; /* in abufs */
	char data[PIPE_BUF];
};

static atomic_int buffering;
static pthread_mutex_t abufs_lock = PTHREAD_MUTEX_INITIALIZER; /* guards abufs */
static struct abuf *abufs;
static pthread_mutex_t flusher_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t flusher_cond = PTHREAD_COND_INITIALIZER;
static bool flusher_stop;
static bool flusher_running;
static pthread_t flusher;
static long flush_ms;

/* Writes b's lines; b->lock held. Best effort, as log_write. */
static void abuf_flush(struct abuf *b)
{
	size_t off = 0;

	while (off < b->len) {
		ssize_t w = write(STDERR_FILENO, b->data + off, b->len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	b->len = 0;
}

/* pthread key destructor: a thread that ends writes and drops its buffer. */
static void abuf_release(void *p)
{
	struct abuf *b = p;
	struct abuf **pp;

	pthread_mutex_lock(&abufs_lock);
	for (pp = &abufs; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == b) {
			*pp = b->next;
			break;
		}
	}
	pthread_mutex_unlock(&abufs_lock);
	pthread_mutex_lock(&b->lock);
	abuf_flush(b);
	pthread_mutex_unlock(&b->lock);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

static struct util_tls abuf_tls = UTIL_TLS_INIT(sizeof(struct abuf), abuf_release);

/* This thread's buffer, made on first use; NULL if none can be. */
static struct abuf *abuf_mine(void)
{
	struct abuf *b = util_tls_get(&abuf_tls);

	if (b != NULL)
		return b;
	b = util_tls_make(&abuf_tls);
	if (b == NULL)
		return NULL;
	/* New and zeroed: not yet in abufs, so no other thread sees it. */
	pthread_mutex_init(&b->lock, NULL);
	pthread_mutex_lock(&abufs_lock);
	b->next = abufs;
	abufs = b;
	pthread_mutex_unlock(&abufs_lock);
	return b;
}

/* Writes every thread's buffered lines. */
static void abuf_flush_all(void)
{
	pthread_mutex_lock(&abufs_lock);
	for (struct abuf *b = abufs; b != NULL; b = b->next) {
		pthread_mutex_lock(&b->lock);
		abuf_flush(b);
		pthread_mutex_unlock(&b->lock);
	}
	pthread_mutex_unlock(&abufs_lock);
}

static void *flusher_main(void *arg)
{
	struct timespec at;

	(void)arg;
	pthread_mutex_lock(&flusher_lock);
	while (!flusher_stop) {
		clock_gettime(CLOCK_REALTIME, &at);
		at.tv_sec += flush_ms / 1000;
		at.tv_nsec += (flush_ms % 1000) * 1000000L;
		if (at.tv_nsec >= 1000000000L) {
			at.tv_sec++;
			at.tv_nsec -= 1000000000L;
		}
		(void)pthread_cond_timedwait(&flusher_cond, &flusher_lock, &at);
		pthread_mutex_unlock(&flusher_lock);
		abuf_flush_all();
		pthread_mutex_lock(&flusher_lock);
	}
	pthread_mutex_unlock(&flusher_lock);
	return NULL;
}

int log_access_buffer_start(long ms)
{
	if (ms <= 0 || flusher_running)
		return 0;
	flush_ms = ms;
	flusher_stop = false;
	if (pthread_create(&flusher, NULL, flusher_main, NULL) != 0)
		return -1;
	flusher_running = true;
	atomic_store(&buffering, 1);
	return 0;
}

void log_access_buffer_stop(void)
{
	if (!flusher_running)
		return;
	atomic_store(&buffering, 0);
	pthread_mutex_lock(&flusher_lock);
	flusher_stop = true;
	pthread_cond_signal(&flusher_cond);
	pthread_mutex_unlock(&flusher_lock);
	pthread_join(flusher, NULL);
	flusher_running = false;
	abuf_flush_all();
}

/* The text line: TIME access CLIENT METHOD PATH STATUS USus BYTESB ID. */
static void access_text(struct line *l, const char *remote, const char *method, const char *path,
			unsigned status, uint64_t micros, uint64_t bytes, const char *id)
{
	char m[LOG_METHOD_MAX * 4 + 1];
	char p[LOG_PATH_MAX * 4 + 1];
	char r[LOG_REQUEST_ID_MAX * 4 + 1];

	(void)log_escape(method, strlen(method), m, sizeof(m), LOG_METHOD_MAX);
	(void)log_escape(path, strlen(path), p, sizeof(p), LOG_PATH_MAX);
	(void)log_escape(id, strlen(id), r, sizeof(r), LOG_REQUEST_ID_MAX);
	line_put(l, log_now());
	line_put(l, " access ");
	line_put(l, remote);
	line_put(l, " ");
	line_put(l, m);
	line_put(l, " ");
	line_put(l, p);
	line_put(l, " ");
	line_put_u(l, status);
	line_put(l, " ");
	line_put_u(l, micros);
	line_put(l, "us ");
	line_put_u(l, bytes);
	line_put(l, "B ");
	line_put(l, r);
}

/* The JSON line; every field fits in LOG_LINE_MAX, escaped at its worst. */
static void access_json(struct line *l, const char *remote, const char *method, const char *path,
			unsigned status, uint64_t micros, uint64_t bytes, const char *id)
{
	line_put(l, "{\"time\":\"");
	line_put(l, log_now());
	line_put(l, "\",\"level\":\"info\",\"message\":\"access\",\"client\":\"");
	line_put_json(l, remote, strlen(remote), 64, 0);
	line_put(l, "\",\"method\":\"");
	line_put_json(l, method, strlen(method), LOG_METHOD_MAX, 0);
	line_put(l, "\",\"path\":\"");
	line_put_json(l, path, strlen(path), LOG_PATH_MAX, 0);
	line_put(l, "\",\"status\":");
	line_put_u(l, status);
	line_put(l, ",\"us\":");
	line_put_u(l, micros);
	line_put(l, ",\"bytes\":");
	line_put_u(l, bytes);
	line_put(l, ",\"request_id\":\"");
	line_put_json(l, id, strlen(id), LOG_REQUEST_ID_MAX, 0);
	line_put(l, "\"}");
}

/* Formatted by hand: one line per request, and snprintf was 3 % of a request. */
void log_access(const char *remote, const char *method, const char *path, unsigned status,
		uint64_t micros, uint64_t bytes, const char *request_id)
{
	struct line l = {.n = 0};
	struct abuf *b;

	if (!atomic_load(&log_access_on))
		return;
	remote = remote ? remote : "-";
	method = method ? method : "-";
	path = path ? path : "-";
	request_id = request_id && request_id[0] ? request_id : "-";
	if (atomic_load(&log_format) == LOG_JSON)
		access_json(&l, remote, method, path, status, micros, bytes, request_id);
	else
		access_text(&l, remote, method, path, status, micros, bytes, request_id);
	b = atomic_load(&buffering) ? abuf_mine() : NULL;
	if (b == NULL) {
		log_write(l.buf, l.n);
		return;
	}
	if (l.n >= LOG_LINE_MAX)
		l.n = LOG_LINE_MAX - 1; /* as log_write cuts */
	l.buf[l.n++] = '\n';
	pthread_mutex_lock(&b->lock);
	if (b->len + l.n > sizeof(b->data))
		abuf_flush(b);
	memcpy(b->data + b->len, l.buf, l.n);
	b->len += l.n;
	pthread_mutex_unlock(&b->lock);
}
