/* SPDX-License-Identifier: MIT */
/*
 * This module implements the levelled logger and the access log. Each line
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
#include <time.h>
#include <unistd.h>

#include "tokend/util.h"

#define LOG_LINE_MAX 1024
#define LOG_PATH_MAX 256

static atomic_int log_level = LOG_INFO;
static atomic_int log_access_on = 1;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

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

void log_msg(enum log_level level, const char *fmt, ...)
{
	char buf[LOG_LINE_MAX + 1];
	va_list ap;
	int n, m;

	if ((int)level < atomic_load(&log_level))
		return;
	n = snprintf(buf, LOG_LINE_MAX, "%s %s ", log_now(), level_names[level]);
	if (n < 0)
		return;
	va_start(ap, fmt);
	m = vsnprintf(buf + n, LOG_LINE_MAX - (size_t)n, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	log_write(buf, (size_t)n + (size_t)m);
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

/* An access line under construction: appended to, cut at LOG_LINE_MAX. */
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
	struct abuf *next;    /* in abufs */
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

/* Formatted by hand: one line per request, and snprintf was 3 % of a request. */
void log_access(const char *remote, const char *method, const char *path,
		unsigned status, uint64_t micros, uint64_t bytes)
{
	struct line l = {.n = 0};
	char m[64];
	char p[LOG_PATH_MAX * 4 + 1];
	struct abuf *b;

	if (!atomic_load(&log_access_on))
		return;
	method = method ? method : "-";
	path = path ? path : "-";
	(void)log_escape(method, strlen(method), m, sizeof(m), 32);
	(void)log_escape(path, strlen(path), p, sizeof(p), LOG_PATH_MAX);
	line_put(&l, log_now());
	line_put(&l, " access ");
	line_put(&l, remote ? remote : "-");
	line_put(&l, " ");
	line_put(&l, m);
	line_put(&l, " ");
	line_put(&l, p);
	line_put(&l, " ");
	line_put_u(&l, status);
	line_put(&l, " ");
	line_put_u(&l, micros);
	line_put(&l, "us ");
	line_put_u(&l, bytes);
	line_put(&l, "B");
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
