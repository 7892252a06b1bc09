/* SPDX-License-Identifier: MIT */
/*
 * This header is the contract of the forwarded module, private to src/http/:
 * who the client of a request is when it came through trusted reverse
 * proxies (X-Forwarded-For, or RFC 7239 Forwarded), decided from header
 * values alone so that it can be tested without a socket.
 *
 * The rule (API.md "Conventions", docs/architecture.md "Behind a reverse
 * proxy"): the headers count only when the TCP peer is trusted. When at
 * least one X-Forwarded-For field is present it is the list (several fields
 * are one list, in order) and Forwarded is ignored; only without any
 * X-Forwarded-For is Forwarded's for= read, with the same rule. nginx,
 * HAProxy, Traefik and Caddy append to X-Forwarded-For and pass a client's
 * own Forwarded on untouched, so preferring Forwarded would let any client
 * choose its address through them. Walking the list from the right, trusted
 * addresses are skipped; the first element that is not trusted is the
 * client if it is an address. If it is not one (unknown, an obfuscated
 * _name, a zone id, garbage, a quoted-pair) the client is the last trusted
 * hop walked: the peer, or the trusted address to the element's right. The
 * same when every element is trusted (the left-most one then) or past
 * FORWARDED_MAX_HOPS elements. Empty list elements are ignored (RFC 9110
 * 5.6.1). An element may carry a port or brackets as Forwarded writes them
 * ("[2001:db8::1]:4711", "192.0.2.1:80", "[2001:db8::1]"): they are
 * stripped, in X-Forwarded-For too (Azure and IIS write ports there).
 */
#ifndef TOKEND_HTTP_FORWARDED_H
#define TOKEND_HTTP_FORWARDED_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>

#include "tokend/cidr.h"

/* Elements of the list looked at, from the right: more proxies than this
 * in a row is not a deployment, it is a forged chain. */
#define FORWARDED_MAX_HOPS 64
/* Header fields of one name taken into account; more: peer stays client. */
#define FORWARDED_MAX_FIELDS 32

/* One header field value, as received (not NUL-terminated). */
struct forwarded_field {
	const char *v;
	size_t len;
};

/*
 * Writes to out (INET6_ADDRSTRLEN bytes or more) the client address of a
 * request from peer (its text, as remote_of() wrote it) with the
 * X-Forwarded-For field values xff[0..n_xff) and the Forwarded values
 * fwd[0..n_fwd), both in wire order. An untrusted peer (or an empty list)
 * is its own client: out gets peer. An address is written canonically
 * (inet_ntop; IPv4-mapped IPv6 as IPv4). Never fails.
 */
void forwarded_client(const struct cidr_list *trusted, const char *peer,
		      const struct forwarded_field *xff, size_t n_xff,
		      const struct forwarded_field *fwd, size_t n_fwd, char *out, size_t outlen);

/*
 * forwarded_client() with the fields of conn's request (MHD-owned values,
 * read with their lengths). out may be peer itself.
 */
void forwarded_resolve(struct MHD_Connection *conn, const struct cidr_list *trusted,
		       const char *peer, char *out, size_t outlen);

/*
 * Parses one hop's node of len bytes: a numeric address, "[IPv6]" with an
 * optional ":port", or "IPv4:port" (port: digits, or RFC 7239's obfuscated
 * "_..."). True with addr/family set (as cidr_addr_parse) when it is one.
 */
bool forwarded_node_parse(const char *s, size_t len, unsigned char addr[16], unsigned char *family);

#endif
