/* SPDX-License-Identifier: MIT */
/*
 * This header is the contract of the logger: levelled lines on stderr, each
 * written with one write(2) so that lines from different threads never mix,
 * as text ("TIME LEVEL MESSAGE") or as one JSON object per line (log.format).
 * Callers must never pass a password, a token or an Authorization header.
 */
#ifndef TOKEND_LOG_H
#define TOKEND_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_TEXT, LOG_JSON };

/* Parses "debug|info|warn|error"; returns -1 for anything else. */
int log_level_parse(const char *name);
void log_set_level(enum log_level level);
void log_set_access(int enabled);
/* Parses "text|json"; returns -1 for anything else. */
int log_format_parse(const char *name);
/*
 * LOG_JSON: every line is {"time", "level", "message"} (access lines add
 * client, method, path, status, us, bytes, request_id), each string
 * escaped as JSON (log_json_escape). Set before the server starts.
 */
void log_set_format(enum log_format format);

/* printf-style; appends the newline. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

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
 * Copies s (len bytes, any bytes) into out (outlen bytes, always
 * terminated) as the inside of a JSON string: '"', '\\' and control bytes
 * escaped (\n, \u0001 ...), valid UTF-8 as is, each byte of an invalid
 * sequence as \ufffd. An escape is never cut in half. Reads at most max_in
 * bytes; returns the bytes written, *cut (may be NULL) true when s was cut.
 */
size_t log_json_escape(const char *s, size_t len, char *out, size_t outlen, size_t max_in,
		       bool *cut);

/* Longest incoming X-Request-Id accepted (bytes), and a generated one's length. */
#define LOG_REQUEST_ID_MAX 64
#define LOG_REQUEST_ID_LEN 16

/*
 * Writes a fresh request id (LOG_REQUEST_ID_LEN lowercase hex digits and a
 * NUL) to out: 64 bits from a per-thread generator seeded once from
 * getrandom(2), so no system call per request. Unique in practice, not
 * secret and not unpredictable: never use it as a credential.
 */
void log_request_id_new(char out[LOG_REQUEST_ID_MAX + 1]);

/* True when v (len bytes) may be taken as a request id: 1 to
 * LOG_REQUEST_ID_MAX bytes, each an RFC 9110 token character. */
bool log_request_id_ok(const char *v, size_t len);

/*
 * One access-log line: time, client address, method, path, status,
 * microseconds, response bytes and request id (NULL: "-"). In text, control
 * and non-ASCII bytes of method, path and id are escaped as \xHH; in JSON
 * as JSON escapes. The path is cut at 256 bytes, the method at 32.
 */
void log_access(const char *remote, const char *method, const char *path, unsigned status,
		uint64_t micros, uint64_t bytes, const char *request_id);

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
