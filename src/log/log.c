/* SPDX-License-Identifier: MIT */
/*
 * This module implements the levelled logger and the access log. Each line
 * is formatted into a stack buffer and written with a single write(2) to
 * stderr, so concurrent threads never interleave within a line.
 */
#include "tokend/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
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

/* Copies s into out, escaping bytes that could forge or garble a log line. */
static void log_escape(const char *s, char *out, size_t outlen, size_t max_in)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (size_t i = 0; s[i] != '\0' && i < max_in; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c > 0x20 && c < 0x7f && c != '\\') {
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
}

void log_access(const char *remote, const char *method, const char *path,
		unsigned status, uint64_t micros, uint64_t bytes)
{
	char buf[LOG_LINE_MAX + 1];
	char m[64];
	char p[LOG_PATH_MAX * 4 + 1];
	int n;

	if (!atomic_load(&log_access_on))
		return;
	log_escape(method ? method : "-", m, sizeof(m), 32);
	log_escape(path ? path : "-", p, sizeof(p), LOG_PATH_MAX);
	n = snprintf(buf, LOG_LINE_MAX, "%s access %s %s %s %u %lluus %lluB", log_now(),
		     remote ? remote : "-", m, p, status, (unsigned long long)micros,
		     (unsigned long long)bytes);
	if (n > 0)
		log_write(buf, (size_t)n);
}
