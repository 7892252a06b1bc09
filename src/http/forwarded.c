/* SPDX-License-Identifier: MIT */
/*
 * This module implements the client address behind trusted proxies
 * (contract and the rule in forwarded.h): the chosen header's fields are
 * split into list elements in one forward pass (quote-aware for
 * Forwarded), keeping only the right-most FORWARDED_MAX_HOPS, which are
 * then walked from the right. Every step is bounded by the header block
 * (16 KiB by default); nothing is allocated.
 */
#include "http/forwarded.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

struct span {
	const char *p;
	size_t n;
};

/* The right-most FORWARDED_MAX_HOPS elements, in a ring. */
struct hops {
	struct span e[FORWARDED_MAX_HOPS];
	size_t total; /* elements seen */
};

static bool ows(char c)
{
	return c == ' ' || c == '\t';
}

static struct span trim(const char *p, size_t n)
{
	while (n > 0 && ows(p[0])) {
		p++;
		n--;
	}
	while (n > 0 && ows(p[n - 1]))
		n--;
	return (struct span){p, n};
}

/* Splits one field value at commas (outside quotes when quoted) into h. */
static void split(struct hops *h, const char *v, size_t len, bool quoted)
{
	size_t start = 0;
	bool inq = false;

	for (size_t i = 0; i <= len; i++) {
		struct span s;

		if (i < len && quoted && v[i] == '"')
			inq = !inq;
		if (i < len && (v[i] != ',' || inq))
			continue;
		s = trim(v + start, i - start);
		start = i + 1;
		if (s.n == 0)
			continue; /* RFC 9110 5.6.1: empty elements are ignored */
		h->e[h->total % FORWARDED_MAX_HOPS] = s;
		h->total++;
	}
}

static bool all_digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return n > 0;
}

/* RFC 7239 6: port = 1*5DIGIT; obfport = "_" 1*(ALPHA / DIGIT / "." / "_" / "-") */
static bool port_ok(const char *s, size_t n)
{
	if (n > 1 && s[0] == '_') {
		for (size_t i = 1; i < n; i++) {
			char c = s[i];
			bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
				  (c >= 'A' && c <= 'Z') || c == '.' || c == '_' || c == '-';
			if (!ok)
				return false;
		}
		return true;
	}
	if (n > 5 || !all_digits(s, n))
		return false;
	unsigned long v = 0;
	for (size_t i = 0; i < n; i++)
		v = v * 10 + (unsigned long)(s[i] - '0');
	return v <= 65535;
}

bool forwarded_node_parse(const char *s, size_t len, unsigned char addr[16], unsigned char *family)
{
	const char *colon;

	if (len == 0 || memchr(s, '\0', len) != NULL)
		return false;
	if (s[0] == '[') {
		const char *close = memchr(s, ']', len);
		size_t alen, rest;

		if (close == NULL)
			return false;
		alen = (size_t)(close - s) - 1;
		rest = len - alen - 2;
		/* brackets hold IPv6 only (RFC 3986 IP-literal) */
		if (memchr(s + 1, ':', alen) == NULL || !cidr_addr_parse(s + 1, alen, addr, family))
			return false;
		return rest == 0 || (close[1] == ':' && port_ok(close + 2, rest - 1));
	}
	if (cidr_addr_parse(s, len, addr, family))
		return true;
	/* IPv4:port: one colon, an IPv4 address before it */
	colon = memchr(s, ':', len);
	if (colon == NULL || memchr(colon + 1, ':', len - (size_t)(colon - s) - 1) != NULL)
		return false;
	if (!port_ok(colon + 1, len - (size_t)(colon - s) - 1))
		return false;
	return cidr_addr_parse(s, (size_t)(colon - s), addr, family) && *family == 4;
}

/*
 * The node of one Forwarded element: the value of its one for= pair,
 * unquoted. False when it has none, two, or a malformed pair (a quoted
 * string left open, a quoted-pair: nothing a proxy writes for an address).
 */
static bool forwarded_for(struct span el, struct span *node)
{
	size_t i = 0;
	bool found = false;

	while (i < el.n) {
		size_t start = i, eq;
		bool inq = false;
		struct span pair, name, val;

		for (; i < el.n && (el.p[i] != ';' || inq); i++)
			if (el.p[i] == '"')
				inq = !inq;
		if (inq)
			return false;
		pair = trim(el.p + start, i - start);
		i++; /* past ';' */
		if (pair.n == 0)
			continue;
		for (eq = 0; eq < pair.n && pair.p[eq] != '='; eq++)
			;
		if (eq == pair.n)
			return false;
		name = trim(pair.p, eq);
		val = trim(pair.p + eq + 1, pair.n - eq - 1);
		if (name.n == 0)
			return false;
		if (name.n != 3 || strncasecmp(name.p, "for", 3) != 0)
			continue;
		if (found)
			return false;
		found = true;
		if (val.n >= 2 && val.p[0] == '"') {
			if (val.p[val.n - 1] != '"')
				return false;
			val.p++;
			val.n -= 2;
			if (memchr(val.p, '"', val.n) != NULL || memchr(val.p, '\\', val.n) != NULL)
				return false;
		} else if (memchr(val.p, '"', val.n) != NULL) {
			return false;
		}
		*node = val;
	}
	return found;
}

static void put(const unsigned char addr[16], unsigned char family, char *out, size_t outlen)
{
	char buf[INET6_ADDRSTRLEN];

	if (inet_ntop(family == 4 ? AF_INET : AF_INET6, addr, buf, sizeof buf) != NULL)
		snprintf(out, outlen, "%s", buf);
}

void forwarded_client(const struct cidr_list *trusted, const char *peer,
		      const struct forwarded_field *xff, size_t n_xff,
		      const struct forwarded_field *fwd, size_t n_fwd, char *out, size_t outlen)
{
	const struct forwarded_field *f = n_xff > 0 ? xff : fwd;
	size_t nf = n_xff > 0 ? n_xff : n_fwd;
	bool quoted = n_xff == 0;
	struct hops h;
	unsigned char addr[16], family;
	size_t walked;

	if (out != peer)
		snprintf(out, outlen, "%s", peer);
	if (nf == 0 || nf > FORWARDED_MAX_FIELDS || trusted->n == 0 ||
	    !cidr_list_match_text(trusted, peer, strlen(peer)))
		return;
	h.total = 0;
	for (size_t i = 0; i < nf; i++)
		split(&h, f[i].v, f[i].len, quoted);
	/* From the right: out holds the last trusted hop walked. */
	for (walked = 0; walked < h.total && walked < FORWARDED_MAX_HOPS; walked++) {
		struct span el = h.e[(h.total - 1 - walked) % FORWARDED_MAX_HOPS];
		struct span node = el;

		if (quoted && !forwarded_for(el, &node))
			return;
		if (!forwarded_node_parse(node.p, node.n, addr, &family))
			return;
		put(addr, family, out, outlen);
		if (!cidr_list_match(trusted, addr, family))
			return;
	}
}

struct collect {
	struct forwarded_field xff[FORWARDED_MAX_FIELDS + 1];
	struct forwarded_field fwd[FORWARDED_MAX_FIELDS + 1];
	size_t n_xff, n_fwd;
};

static enum MHD_Result collect_field(void *cls, enum MHD_ValueKind kind, const char *key,
				     size_t key_size, const char *value, size_t value_size)
{
	struct collect *c = cls;

	(void)kind;
	if (key_size == 15 && strncasecmp(key, "X-Forwarded-For", 15) == 0) {
		if (c->n_xff <= FORWARDED_MAX_FIELDS)
			c->xff[c->n_xff++] =
				(struct forwarded_field){value ? value : "", value_size};
	} else if (key_size == 9 && strncasecmp(key, "Forwarded", 9) == 0) {
		if (c->n_fwd <= FORWARDED_MAX_FIELDS)
			c->fwd[c->n_fwd++] =
				(struct forwarded_field){value ? value : "", value_size};
	}
	return MHD_YES;
}

void forwarded_resolve(struct MHD_Connection *conn, const struct cidr_list *trusted,
		       const char *peer, char *out, size_t outlen)
{
	struct collect c;

	if (out != peer)
		snprintf(out, outlen, "%s", peer);
	if (trusted->n == 0 || !cidr_list_match_text(trusted, peer, strlen(peer)))
		return; /* the common case: no pass over the headers */
	c.n_xff = c.n_fwd = 0;
	MHD_get_connection_values_n(conn, MHD_HEADER_KIND, collect_field, &c);
	/* FORWARDED_MAX_FIELDS + 1 collected means "too many": the peer stays. */
	forwarded_client(trusted, peer, c.xff, c.n_xff, c.fwd, c.n_fwd, out, outlen);
}
