/* SPDX-License-Identifier: MIT */
/*
 * This module implements the CORS origin allow-list: the parser of
 * [cors] allowed_origins, run once at start-up, and the exact match of a
 * request's Origin header, run once per request when the list is not
 * empty. An entry is refused unless it is exactly what a browser could send
 * as an Origin once normalised (lowercase scheme and host, no default port,
 * IPv6 compressed as WHATWG's URL serialiser does): a path, "*", userinfo
 * or another scheme in the configuration is a mistake worth stopping for,
 * since it could never match and CORS would fail silently in the browser.
 */
#include "tokend/cors.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "tokend/err.h"

#define SEPARATORS " \t,"

static bool is_alnum(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static char lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* Why an entry is refused; names the entry, cut to 64 bytes. */
static int refuse(char *reason, size_t rlen, const char *e, size_t elen, const char *why)
{
	snprintf(reason, rlen, "\"%.*s\"%s: %s", (int)(elen > 64 ? 64 : elen), e,
		 elen > 64 ? "..." : "", why);
	return TOKEND_EINVAL;
}

/* Appends s[0..n) to out at *used; false when it would not fit. */
static bool put(char *out, size_t *used, const char *s, size_t n)
{
	if (*used + n > CORS_ORIGIN_MAX)
		return false;
	memcpy(out + *used, s, n);
	*used += n;
	return true;
}

/*
 * The IPv6 address in h[0..n) (without brackets), serialised as WHATWG's URL
 * standard does (lowercase hex pieces, the first longest run of two or more
 * zero pieces compressed, no embedded IPv4): what a browser's Origin
 * carries. Returns the length written to out (>= 40 bytes), 0 when invalid.
 */
static size_t ipv6_serialise(const char *h, size_t n, char *out)
{
	char tmp[64];
	unsigned char a[16];
	unsigned pieces[8];
	int best = -1, best_len = 0;
	size_t used = 0;

	if (n == 0 || n >= sizeof(tmp))
		return 0;
	memcpy(tmp, h, n);
	tmp[n] = '\0';
	if (inet_pton(AF_INET6, tmp, a) != 1)
		return 0;
	for (int i = 0; i < 8; i++)
		pieces[i] = (unsigned)a[2 * i] << 8 | a[2 * i + 1];
	for (int i = 0; i < 8;) {
		int j = i;
		while (j < 8 && pieces[j] == 0)
			j++;
		if (j - i > best_len && j - i >= 2) {
			best = i;
			best_len = j - i;
		}
		i = j > i ? j : i + 1;
	}
	for (int i = 0; i < 8; i++) {
		if (i == best) {
			used += (size_t)snprintf(out + used, 40 - used, "::");
			i += best_len - 1;
			continue;
		}
		used += (size_t)snprintf(out + used, 40 - used, "%s%x",
					 (used > 0 && out[used - 1] != ':') ? ":" : "", pieces[i]);
	}
	return used;
}

/* True when the last label of a DNS-looking host is all digits: WHATWG then
 * parses the host as IPv4 ("example.123" is invalid, "127.1" is 127.0.0.1). */
static bool ends_in_number(const char *h, size_t n)
{
	size_t s = n;

	while (s > 0 && h[s - 1] != '.')
		s--;
	if (s == n)
		return false;
	for (size_t i = s; i < n; i++)
		if (h[i] < '0' || h[i] > '9')
			return false;
	return true;
}

/* True when e[0..elen) starts with some "scheme://". */
static bool has_scheme(const char *e, size_t elen)
{
	size_t i = 0;

	while (i < elen &&
	       (is_alnum((unsigned char)e[i]) || e[i] == '+' || e[i] == '-' || e[i] == '.'))
		i++;
	return i > 0 && i + 3 <= elen && memcmp(e + i, "://", 3) == 0;
}

/* Normalises one entry e[0..elen) into out; 0 or TOKEND_EINVAL. */
static int parse_one(const char *e, size_t elen, struct cors_origin *out, char *reason, size_t rlen)
{
	const char *p, *end = e + elen, *host, *host_end, *port = NULL;
	bool https;
	size_t used = 0;
	char buf[64];
	unsigned long pn = 0;

	for (size_t i = 0; i < elen; i++)
		if ((unsigned char)e[i] <= 0x20 || (unsigned char)e[i] >= 0x7f)
			return refuse(reason, rlen, e, elen,
				      "a control, space or non-ASCII byte (write an IDN as xn--)");
	if (elen >= 7 && strncasecmp(e, "http://", 7) == 0) {
		https = false;
		host = e + 7;
	} else if (elen >= 8 && strncasecmp(e, "https://", 8) == 0) {
		https = true;
		host = e + 8;
	} else if (elen == 1 && e[0] == '*') {
		return refuse(reason, rlen, e, elen, "\"*\" is never allowed: list each origin");
	} else if (has_scheme(e, elen)) {
		return refuse(reason, rlen, e, elen, "the scheme must be http or https");
	} else {
		return refuse(reason, rlen, e, elen,
			      "not scheme://host[:port] (e.g. https://app.example)");
	}
	for (p = host; p < end; p++) {
		if (*p == '/')
			return refuse(reason, rlen, e, elen,
				      "an origin has no path, not even a trailing slash");
		if (*p == '@')
			return refuse(reason, rlen, e, elen, "an origin has no userinfo");
		if (*p == '?' || *p == '#')
			return refuse(reason, rlen, e, elen, "an origin has no query or fragment");
		if (*p == '*')
			return refuse(reason, rlen, e, elen,
				      "wildcards are never allowed: list each origin");
	}
	/* https:// is 8 bytes, http:// 7: write the scheme in lowercase. */
	put(out->text, &used, https ? "https://" : "http://", https ? 8 : 7);
	if (host < end && *host == '[') {
		const char *close = memchr(host, ']', (size_t)(end - host));
		size_t n;
		if (close == NULL)
			return refuse(reason, rlen, e, elen,
				      "an IPv6 host needs its closing \"]\"");
		n = ipv6_serialise(host + 1, (size_t)(close - host - 1), buf);
		if (n == 0)
			return refuse(reason, rlen, e, elen, "not a valid IPv6 address");
		host_end = close + 1;
		if (host_end < end && *host_end != ':')
			return refuse(reason, rlen, e, elen, "bytes after the IPv6 host");
		put(out->text, &used, "[", 1);
		put(out->text, &used, buf, n);
		put(out->text, &used, "]", 1);
	} else {
		size_t n;
		host_end = memchr(host, ':', (size_t)(end - host));
		if (host_end == NULL)
			host_end = end;
		n = (size_t)(host_end - host);
		if (n == 0)
			return refuse(reason, rlen, e, elen, "no host");
		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)host[i];
			if (!is_alnum(c) && c != '-' && c != '_' && c != '.')
				return refuse(reason, rlen, e, elen,
					      "a host is letters, digits, '-', '_' and '.'");
			if (c == '.' && (i == 0 || i == n - 1 || host[i - 1] == '.'))
				return refuse(reason, rlen, e, elen, "an empty label in the host");
		}
		if (ends_in_number(host, n) ||
		    (memchr(host, '.', n) == NULL && strspn(host, "0123456789") == n)) {
			unsigned char a[4];
			if (n >= sizeof(buf))
				return refuse(reason, rlen, e, elen,
					      "not a dotted-quad IPv4 address");
			memcpy(buf, host, n);
			buf[n] = '\0';
			if (inet_pton(AF_INET, buf, a) != 1)
				return refuse(
					reason, rlen, e, elen,
					"not a dotted-quad IPv4 address (as a browser writes it)");
		}
		for (size_t i = 0; i < n; i++) {
			char c = lower(host[i]);
			if (!put(out->text, &used, &c, 1))
				return refuse(reason, rlen, e, elen, "longer than 255 bytes");
		}
	}
	if (host_end < end) {
		size_t n;
		port = host_end + 1; /* *host_end == ':' */
		n = (size_t)(end - port);
		if (n == 0 || n > 5 || strspn(port, "0123456789") < n)
			return refuse(reason, rlen, e, elen, "the port must be 1..65535");
		for (size_t i = 0; i < n; i++)
			pn = pn * 10 + (unsigned long)(port[i] - '0');
		if (pn == 0 || pn > 65535)
			return refuse(reason, rlen, e, elen, "the port must be 1..65535");
	}
	if (pn != 0 && pn != (https ? 443u : 80u)) {
		int n = snprintf(buf, sizeof(buf), ":%lu", pn);
		if (!put(out->text, &used, buf, (size_t)n))
			return refuse(reason, rlen, e, elen, "longer than 255 bytes");
	}
	out->text[used] = '\0';
	out->len = used;
	return 0;
}

int cors_origins_add(struct cors_origins *list, const char *text, char *reason, size_t rlen)
{
	struct cors_origins tmp = *list;
	const char *p = text;

	for (;;) {
		struct cors_origin o = {0}; /* all of it: lists are compared whole */
		size_t elen;
		bool dup = false;

		p += strspn(p, SEPARATORS);
		if (*p == '\0')
			break;
		elen = strcspn(p, SEPARATORS);
		if (elen > CORS_ORIGIN_MAX)
			return refuse(reason, rlen, p, elen, "longer than 255 bytes");
		if (parse_one(p, elen, &o, reason, rlen) != 0)
			return TOKEND_EINVAL;
		for (unsigned i = 0; i < tmp.n && !dup; i++)
			dup = tmp.o[i].len == o.len && memcmp(tmp.o[i].text, o.text, o.len) == 0;
		if (!dup) {
			if (tmp.n == CORS_MAX_ORIGINS) {
				snprintf(reason, rlen, "more than %d origins", CORS_MAX_ORIGINS);
				return TOKEND_EINVAL;
			}
			tmp.o[tmp.n++] = o;
		}
		p += elen;
	}
	*list = tmp;
	return 0;
}

const char *cors_origin_match(const struct cors_origins *list, const char *origin, size_t len)
{
	for (unsigned i = 0; i < list->n; i++)
		if (list->o[i].len == len && memcmp(list->o[i].text, origin, len) == 0)
			return list->o[i].text;
	return NULL;
}

void cors_origins_format(const struct cors_origins *list, char *out, size_t outlen)
{
	size_t used = 0;

	if (outlen == 0)
		return;
	out[0] = '\0';
	for (unsigned i = 0; i < list->n && used + 1 < outlen; i++) {
		int n = snprintf(out + used, outlen - used, "%s%s", i ? " " : "", list->o[i].text);
		if (n < 0)
			break;
		used += (size_t)n;
	}
}

bool cors_method_listed(const char *list, const char *method, size_t mlen)
{
	const char *p = list;

	if (mlen == 0)
		return false;
	while (*p != '\0') {
		size_t n;
		p += strspn(p, ", ");
		n = strcspn(p, ", ");
		if (n == mlen && memcmp(p, method, n) == 0)
			return true;
		p += n;
	}
	return false;
}
