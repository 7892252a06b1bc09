/* SPDX-License-Identifier: MIT */
/*
 * This header is the contract of the CORS origin list: the configured
 * allow-list of browser origins ([cors] allowed_origins), parsed once at
 * start-up into a small fixed struct that lives inside struct config, and
 * the exact match of a request's Origin header against it. No HTTP here:
 * src/http/server.c looks the header up and src/http/response.c writes the
 * Access-Control-* headers.
 *
 * Matching: browsers serialise an origin (RFC 6454 6.2, WHATWG URL "origin")
 * with the scheme and host in lowercase, an IPv6 host compressed in
 * brackets and the scheme's default port left out. The configured entries
 * are normalised that way once, when parsed; the Origin header is then
 * compared byte for byte, never normalised: "https://App.example",
 * "https://app.example:443" or "https://app.example/" sent by a client do
 * not match an entry "https://app.example", since no browser sends them.
 */
#ifndef TOKEND_CORS_H
#define TOKEND_CORS_H

#include <stdbool.h>
#include <stddef.h>

/* Entries in one list; a longer list is refused at start-up. */
#define CORS_MAX_ORIGINS 16
/* Bytes of one serialised origin ("https://" + host + ":65535"). */
#define CORS_ORIGIN_MAX 255

struct cors_origin {
	size_t len;
	char text[CORS_ORIGIN_MAX + 1]; /* normalised, NUL-terminated */
};

/* The allow-list; n == 0 (the default) means CORS is off. Plain data: it is
 * copied with struct config. */
struct cors_origins {
	unsigned n;
	struct cors_origin o[CORS_MAX_ORIGINS];
};

/*
 * Parses text, entries separated by spaces, tabs or commas, each
 * "scheme://host[:port]" with scheme http or https, host a DNS name (ASCII;
 * write an IDN as its xn-- form), a dotted-quad IPv4 address or a bracketed
 * IPv6 address, and port 1..65535. Appends each entry, normalised (see
 * above), to list; an entry already in it is not added again. An empty text
 * adds nothing. Returns 0, or TOKEND_EINVAL with reason set (constant
 * English naming the entry's fault, the entry quoted, cut to 64 bytes) and
 * list unchanged.
 */
int cors_origins_add(struct cors_origins *list, const char *text, char *reason, size_t rlen);

/*
 * The configured entry equal to origin[0..len) byte for byte, or NULL. The
 * returned string lives as long as list; it is what a response echoes, so
 * no request byte is ever written back.
 */
const char *cors_origin_match(const struct cors_origins *list, const char *origin, size_t len);

/* Writes the list as text cors_origins_add() reads back (entries joined by
 * a space; "" when empty), cut to outlen - 1 bytes. */
void cors_origins_format(const struct cors_origins *list, char *out, size_t outlen);

/*
 * True when method[0..mlen) is one of the comma-separated methods of list
 * ("GET, HEAD, POST", as an Allow header reads), compared exactly (methods
 * are case-sensitive, RFC 9110 9.1).
 */
bool cors_method_listed(const char *list, const char *method, size_t mlen);

#endif
