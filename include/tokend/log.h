/* SPDX-License-Identifier: MIT */
/*
 * This header is the contract of the logger: levelled lines on stderr, each
 * written with one write(2) so that lines from different threads never mix.
 * Callers must never pass a password, a token or an Authorization header.
 */
#ifndef TOKEND_LOG_H
#define TOKEND_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Parses "debug|info|warn|error"; returns -1 for anything else. */
int log_level_parse(const char *name);
void log_set_level(enum log_level level);
void log_set_access(int enabled);

/* printf-style; appends the newline. */
void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/*
 * Copies s (len bytes, any bytes) into out (outlen bytes, always
 * terminated) for a log line: printable ASCII as is, but '\\', '"' and every
 * other byte as \xHH, so no text can forge or garble a line. Reads at most
 * max_in bytes; returns true when s was cut (by max_in or outlen).
 */
bool log_escape(const char *s, size_t len, char *out, size_t outlen, size_t max_in);

/*
 * One access-log line: time, remote address, method, path, status,
 * microseconds and response bytes. Control and non-ASCII bytes of method and
 * path are escaped as \xHH and the path is cut at 256 bytes.
 */
void log_access(const char *remote, const char *method, const char *path,
		unsigned status, uint64_t micros, uint64_t bytes);

/*
 * From now on access lines gather in a buffer per thread (up to PIPE_BUF
 * bytes of whole lines) written when full and every ms milliseconds by a
 * flusher thread; ms <= 0 keeps one write per line. Returns 0, or -1 when
 * the thread cannot start (lines are then written one by one).
 */
int log_access_buffer_start(long ms);

/* Stops the flusher and writes every buffered line; lines are then written one by one. */
void log_access_buffer_stop(void);

#endif
