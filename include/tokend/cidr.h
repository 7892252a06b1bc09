/* SPDX-License-Identifier: MIT */
/*
 * This header is the contract of address lists: "10.0.0.0/8 ::1, fd00::/8"
 * (space- or comma-separated numeric addresses, each with an optional
 * /prefix) parsed once, then matched against client addresses. An IPv4
 * address written as IPv4-mapped IPv6 (::ffff:1.2.3.4) matches the IPv4
 * entries, as a dual-stack socket reports IPv4 peers that way.
 */
#ifndef TOKEND_CIDR_H
#define TOKEND_CIDR_H

#include <stdbool.h>
#include <stddef.h>

#define CIDR_LIST_MAX 64 /* entries in one list */
#define CIDR_ADDR_MAX 64 /* longest address text accepted (with /prefix) */

struct cidr {
	unsigned char addr[16]; /* network order; IPv4 in the first 4 bytes */
	unsigned char family;   /* 4 or 6 */
	unsigned char prefix;   /* bits: 0..32 or 0..128 */
};

struct cidr_list {
	size_t n;
	struct cidr e[CIDR_LIST_MAX];
};

/*
 * Parses text (may be empty: an empty list) into out. On a bad entry
 * returns TOKEND_EINVAL with a reason in why ("not an address: ...", "host
 * bits set ...", "more than 64 entries"); out is then empty.
 */
int cidr_list_parse(const char *text, struct cidr_list *out, char *why, size_t whylen);

/*
 * Parses one numeric address of len bytes (no prefix, no brackets, no
 * zone, no port) into addr/family, an IPv4-mapped IPv6 address as IPv4.
 * Returns true on success.
 */
bool cidr_addr_parse(const char *s, size_t len, unsigned char addr[16], unsigned char *family);

/* True when the address addr/family lies inside an entry of l. */
bool cidr_list_match(const struct cidr_list *l, const unsigned char addr[16], unsigned char family);

/* As cidr_list_match for a numeric address text; false when it does not parse. */
bool cidr_list_match_text(const struct cidr_list *l, const char *s, size_t len);

#endif
