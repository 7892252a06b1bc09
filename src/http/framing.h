/* SPDX-License-Identifier: MIT */
/*
 * This header is the contract of the framing module, private to src/http/:
 * the checks of a request line and header block that libmicrohttpd 0.9.75
 * does not make (RFC 9112 sections 3, 5 and 6, RFC 9110 5.5), made once
 * per request before routing, and the grammar tests the access log uses to
 * decide what of a request line it may write.
 */
#ifndef TOKEND_HTTP_FRAMING_H
#define TOKEND_HTTP_FRAMING_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>

/* The longest method we take (and log): the registered ones have at most 15. */
#define FRAMING_METHOD_MAX 15

/* True when s[0..len) is a non-empty RFC 9110 token (tchar only). */
bool framing_is_token(const char *s, size_t len);

/* True when method is a token of 1..FRAMING_METHOD_MAX bytes. */
bool framing_method_ok(const char *method);

/*
 * Finds the path to route in a request target: origin-form ("/a/b") is its
 * own path; absolute-form ("http://host:port/a/b", scheme http or https,
 * RFC 9112 3.2.2) gives "/a/b" ("/" when it has none); "*" gives "*".
 * Returns 0 and sets *path (pointing into target, or to a constant), or
 * TOKEND_EBADREQ for any other form, a byte outside 0x21..0x7e, userinfo or
 * an empty or invalid authority. The path lives as long as target.
 */
int framing_target_path(const char *target, const char **path);

/* True when value[0..len) is a valid Host field value (RFC 9110 7.2:
 * uri-host [":" port]; empty is allowed). */
bool framing_host_ok(const char *value, size_t len);

/*
 * The state of one header-block check, fed field by field in wire order.
 * `block` is the request's header block as libmicrohttpd 0.9.75 leaves it
 * in its read buffer (docs/architecture.md, "Known limits"): the request
 * line and each field line in order, the colon and each line end replaced
 * by NUL bytes. Checking that every field lies where the previous one ended
 * proves that no byte of the block is hidden from us: the part of a value
 * after a NUL, an obs-fold (0.9.75 glues it onto the field name, in memory
 * of its own), a line it dropped (an empty name).
 */
struct framing {
	const char *block; /* first byte of the request line */
	size_t len;        /* of the whole block, blank line included */
	size_t next;       /* offset where the next field line must start */
	unsigned n_cl, n_te, n_host, n_auth;
	const char *cl;  /* the Content-Length value */
	bool te_chunked; /* the codings are exactly "chunked" */
	bool te_unknown; /* a coding other than chunked precedes it */
	int err;         /* the first refusal, 0 while none */
	const char *why; /* its reason: constant English, no request bytes */
};

/*
 * Starts a check of a block of len bytes from block, whose request line ends
 * (its last byte, the version's, is followed by the line end) at line_end.
 */
void framing_begin(struct framing *f, const char *block, size_t len, const char *line_end);

/* Checks one field (name and value as libmicrohttpd parsed them, with their
 * lengths) and its place in the block. */
void framing_field(struct framing *f, const char *name, size_t nlen, const char *value,
		   size_t vlen);

/*
 * Ends the check of a request of HTTP/1.1 (http11) or 1.0. Returns 0, or
 * TOKEND_EBADREQ (400, close) or TOKEND_ENOTIMPL (a transfer coding we do
 * not know: 501, close) with f->why set.
 */
int framing_end(struct framing *f, bool http11);

/* What first_checks() needs from a request that passed. */
struct framing_result {
	const char *path;           /* to route (see framing_target_path) */
	const char *content_length; /* its one value (MHD-owned), or NULL */
	bool chunked;               /* Transfer-Encoding: chunked */
	size_t header_bytes;        /* request line and header block, as sent */
	const char *why;            /* reason of a refusal, constant */
};

/*
 * Checks the request line and header block of conn in one pass over
 * MHD_get_connection_values_n. Returns 0 with *out filled, or
 * TOKEND_EHEADER (block over max_header bytes), TOKEND_EBADREQ or
 * TOKEND_ENOTIMPL with out->why set.
 */
int framing_check(struct MHD_Connection *conn, const char *method, const char *url,
		  const char *version, size_t max_header, struct framing_result *out);

#endif
