/* SPDX-License-Identifier: MIT */
/*
 * This module implements the framing checks libmicrohttpd 0.9.75 does not
 * make: where a request ends must be decided the same way by every hop, or
 * the bytes after it become a smuggled request (RFC 9112 6.3, 11.2). It
 * refuses, with 400 and a closed connection, a request line whose method is
 * not a token or whose target is neither origin- nor absolute-form; a
 * header block with a field name that is not a token (whitespace before the
 * colon), an obs-fold, a control character in a value (a NUL, a bare CR),
 * or any byte MHD did not hand over as a field; a repeated Content-Length,
 * Host or Authorization; Transfer-Encoding with Content-Length, repeated,
 * or not ending in a single chunked; an HTTP/1.1 request without Host.
 * Everything is decided from one pass over MHD_get_connection_values_n,
 * which gives each field in wire order with the lengths MHD parsed; what
 * 0.9.75 hands over in each case is proven in tests/unit/test_framing.c.
 */
#include "http/framing.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "tokend/err.h"

/* Reasons, sent as {"detail": ...}: constant, never request bytes. */
#define WHY_METHOD "Bad request: the method is not a valid token."
#define WHY_TARGET "Bad request: the request target is not origin-form or absolute-form."
#define WHY_NAME "Bad request: invalid header field name (whitespace before the colon?)."
#define WHY_LAYOUT \
	"Bad request: malformed header block (obs-fold, a NUL byte or a line without a field)."
#define WHY_CTL "Bad request: control character in a header field value."
#define WHY_HOST "Bad request: invalid Host header."
#define WHY_TWO_CL "Bad request: more than one Content-Length header."
#define WHY_CL_TE "Bad request: Content-Length together with Transfer-Encoding."
#define WHY_TWO_TE "Bad request: more than one Transfer-Encoding header."
#define WHY_TE "Bad request: Transfer-Encoding does not end in a single chunked."
#define WHY_TE_UNKNOWN "Unsupported Transfer-Encoding."
#define WHY_NO_HOST "Bad request: HTTP/1.1 request without Host."
#define WHY_TWO_HOST "Bad request: more than one Host header."
#define WHY_TWO_AUTH "Bad request: more than one Authorization header."
#define WHY_NO_SIZE "Bad request: the header block could not be measured."

bool framing_is_token(const char *s, size_t len)
{
	/* RFC 9110 5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" /
	 * "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA */
	static const char extra[] = "!#$%&'*+-.^_`|~";

	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
			     (c >= 'A' && c <= 'Z');
		if (!alnum && (c == '\0' || strchr(extra, c) == NULL))
			return false;
	}
	return true;
}

bool framing_method_ok(const char *method)
{
	size_t n = strnlen(method, FRAMING_METHOD_MAX + 1);

	return n <= FRAMING_METHOD_MAX && framing_is_token(method, n);
}

bool framing_host_ok(const char *value, size_t len)
{
	/* uri-host [":" port] of RFC 3986 by its characters: reg-name
	 * (unreserved, pct-encoded, sub-delims), IP-literal brackets, ':'.
	 * Not a parser: enough that nothing else (no '/', '@', space, CTL)
	 * passes for the host a proxy may have routed by. */
	static const char extra[] = "-._~!$&'()*+,;=%:[]";

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)value[i];
		bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
			     (c >= 'A' && c <= 'Z');
		if (!alnum && (c == '\0' || strchr(extra, c) == NULL))
			return false;
	}
	return true;
}

int framing_target_path(const char *target, const char **path)
{
	const char *auth;
	size_t alen;

	for (const char *p = target; *p != '\0'; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			return TOKEND_EBADREQ;
	if (target[0] == '/' || strcmp(target, "*") == 0) {
		*path = target;
		return 0;
	}
	/* RFC 9112 3.2.2: a server MUST accept the absolute-form; the Host
	 * header is then ignored for the target's authority (we route by path
	 * only, so neither decides anything here). */
	if (strncasecmp(target, "http://", 7) == 0)
		auth = target + 7;
	else if (strncasecmp(target, "https://", 8) == 0)
		auth = target + 8;
	else
		return TOKEND_EBADREQ;
	alen = strcspn(auth, "/");
	if (alen == 0 || !framing_host_ok(auth, alen))
		return TOKEND_EBADREQ;
	*path = auth[alen] != '\0' ? auth + alen : "/";
	return 0;
}

static void refuse(struct framing *f, int err, const char *why)
{
	if (f->err == 0) {
		f->err = err;
		f->why = why;
	}
}

/*
 * Offset of p in the block, or f->len when p is outside it. The pointers
 * compared are MHD's, into one read buffer or not; comparing them as
 * integers is what a flat address space gives, and nothing outside the
 * block is ever read.
 */
static size_t offset_of(const struct framing *f, const char *p)
{
	uintptr_t o = (uintptr_t)p - (uintptr_t)f->block;

	return (p != NULL && o < f->len) ? (size_t)o : f->len;
}

/*
 * True when bytes [from, to) of the block are between min and max NULs: the
 * line ends MHD replaced (CRLF is two, a bare LF one). One more is a NUL
 * the client sent right before a line end; it hides nothing, and cannot be
 * told from a CR when it comes before an LF alone.
 */
static bool nul_run(const struct framing *f, size_t from, size_t to, size_t min, size_t max)
{
	if (to < from || to > f->len || to - from < min || to - from > max)
		return false;
	for (size_t i = from; i < to; i++)
		if (f->block[i] != '\0')
			return false;
	return true;
}

void framing_begin(struct framing *f, const char *block, size_t len, const char *line_end)
{
	memset(f, 0, sizeof(*f));
	f->block = block;
	f->len = len;
	f->next = offset_of(f, line_end);
	if (f->next >= len)
		refuse(f, TOKEND_EBADREQ, WHY_LAYOUT);
}

static bool name_is(const char *name, size_t nlen, const char *want)
{
	return nlen == strlen(want) && strncasecmp(name, want, nlen) == 0;
}

/* RFC 9112 6.1 / 6.3: the codings must end in chunked, applied once; one
 * before it that we do not implement (gzip, chunked) is a 501. */
static void te_parse(struct framing *f, const char *v, size_t vlen)
{
	size_t i = 0, n = 0, chunked = 0;
	bool last_chunked = false;

	while (i < vlen) {
		size_t s, e;
		while (i < vlen && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		s = i;
		while (i < vlen && v[i] != ',')
			i++;
		e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (e == s)
			continue;
		n++;
		last_chunked = name_is(v + s, e - s, "chunked");
		if (last_chunked)
			chunked++;
	}
	if (n == 0 || !last_chunked || chunked > 1)
		refuse(f, TOKEND_EBADREQ, WHY_TE);
	else if (n > 1)
		f->te_unknown = true;
	else
		f->te_chunked = true;
}

void framing_field(struct framing *f, const char *name, size_t nlen, const char *value, size_t vlen)
{
	size_t ko, vo;

	if (f->err != 0)
		return;
	if (!framing_is_token(name, nlen)) {
		refuse(f, TOKEND_EBADREQ, WHY_NAME);
		return;
	}
	/* The field must start one line end (one or two NULs) after the last
	 * line's text, its name end at the colon's NUL and its value follow
	 * after blanks only: else bytes lie between that MHD did not hand over
	 * (a value cut at a NUL, a folded line, a dropped line). */
	ko = offset_of(f, name);
	vo = offset_of(f, value);
	if (!nul_run(f, f->next, ko, 1, 2) || ko + nlen >= f->len || name[nlen] != '\0' ||
	    vo >= f->len || vo < ko + nlen + 1 || vlen >= f->len - vo) {
		refuse(f, TOKEND_EBADREQ, WHY_LAYOUT);
		return;
	}
	for (size_t i = ko + nlen + 1; i < vo; i++) {
		if (f->block[i] != ' ' && f->block[i] != '\t') {
			refuse(f, TOKEND_EBADREQ, WHY_LAYOUT);
			return;
		}
	}
	f->next = vo + vlen;
	/* RFC 9110 5.5: field-vchar, SP and HTAB only; a CR or NUL that one hop
	 * strips and another keeps is a different request to each. */
	for (size_t i = 0; i < vlen; i++) {
		unsigned char c = (unsigned char)value[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			refuse(f, TOKEND_EBADREQ, WHY_CTL);
			return;
		}
	}
	if (name_is(name, nlen, "content-length")) {
		f->n_cl++;
		f->cl = value;
	} else if (name_is(name, nlen, "transfer-encoding")) {
		if (++f->n_te == 1)
			te_parse(f, value, vlen);
	} else if (name_is(name, nlen, "host")) {
		f->n_host++;
		if (!framing_host_ok(value, vlen))
			refuse(f, TOKEND_EBADREQ, WHY_HOST);
	} else if (name_is(name, nlen, "authorization")) {
		f->n_auth++;
	}
}

int framing_end(struct framing *f, bool http11)
{
	/* After the last line: its line end and the blank line's, nothing else. */
	if (f->err == 0 && !nul_run(f, f->next, f->len, 2, 4))
		refuse(f, TOKEND_EBADREQ, WHY_LAYOUT);
	/* MHD reads the first of two Content-Length or Transfer-Encoding
	 * headers; a proxy may read the last. */
	if (f->n_cl > 1)
		refuse(f, TOKEND_EBADREQ, WHY_TWO_CL);
	if (f->n_te > 0 && f->n_cl > 0)
		refuse(f, TOKEND_EBADREQ, WHY_CL_TE);
	if (f->n_te > 1)
		refuse(f, TOKEND_EBADREQ, WHY_TWO_TE);
	if (f->n_te == 1 && f->te_unknown)
		refuse(f, TOKEND_ENOTIMPL, WHY_TE_UNKNOWN);
	if (http11 && f->n_host == 0)
		refuse(f, TOKEND_EBADREQ, WHY_NO_HOST);
	if (f->n_host > 1)
		refuse(f, TOKEND_EBADREQ, WHY_TWO_HOST);
	/* The first is the one we check; a proxy or log may show the other. */
	if (f->n_auth > 1)
		refuse(f, TOKEND_EBADREQ, WHY_TWO_AUTH);
	return f->err;
}

static enum MHD_Result visit(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
			     const char *value, size_t value_size)
{
	struct framing *f = cls;

	(void)kind;
	framing_field(f, key, key_size, value, value ? value_size : 0);
	return f->err != 0 ? MHD_NO : MHD_YES;
}

int framing_check(struct MHD_Connection *conn, const char *method, const char *url,
		  const char *version, size_t max_header, struct framing_result *out)
{
	const union MHD_ConnectionInfo *ci;
	struct framing f;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!framing_method_ok(method)) {
		out->why = WHY_METHOD;
		return TOKEND_EBADREQ;
	}
	if (framing_target_path(url, &out->path) != 0) {
		out->why = WHY_TARGET;
		return TOKEND_EBADREQ;
	}
	/* 0.9.75 counts the block as it reads it: request line to blank line. */
	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
	if (ci == NULL) {
		out->why = WHY_NO_SIZE;
		return TOKEND_EBADREQ;
	}
	out->header_bytes = ci->header_size;
	if (out->header_bytes > max_header)
		return TOKEND_EHEADER;
	/* The method is the first byte of MHD's read buffer, the version the
	 * last of the request line. */
	framing_begin(&f, method, out->header_bytes, version + strlen(version));
	MHD_get_connection_values_n(conn, MHD_HEADER_KIND, visit, &f);
	rc = framing_end(&f, strcmp(version, MHD_HTTP_VERSION_1_1) == 0);
	out->why = f.why;
	out->content_length = f.cl;
	out->chunked = f.te_chunked;
	return rc;
}
