/* SPDX-License-Identifier: MIT */
/*
 * This module implements address lists (include/tokend/cidr.h): parsing
 * "addr[/prefix]" entries with inet_pton and matching an address against
 * them bit by bit. Lists are small (trusted proxies, the metrics
 * allow-list), so matching is a linear scan.
 */
#include "tokend/cidr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokend/err.h"

static const unsigned char v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool cidr_addr_parse(const char *s, size_t len, unsigned char addr[16], unsigned char *family)
{
	char buf[CIDR_ADDR_MAX];

	if (len == 0 || len >= sizeof(buf) || memchr(s, '\0', len) != NULL)
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	memset(addr, 0, 16);
	if (inet_pton(AF_INET, buf, addr) == 1) {
		*family = 4;
		return true;
	}
	if (inet_pton(AF_INET6, buf, addr) != 1)
		return false;
	if (memcmp(addr, v4_mapped, sizeof(v4_mapped)) == 0) {
		memmove(addr, addr + 12, 4);
		memset(addr + 4, 0, 12);
		*family = 4;
		return true;
	}
	*family = 6;
	return true;
}

/* True when the first bits of a and b agree. */
static bool prefix_equal(const unsigned char *a, const unsigned char *b, unsigned bits)
{
	unsigned whole = bits / 8, rest = bits % 8;

	if (memcmp(a, b, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((a[whole] ^ b[whole]) & (unsigned char)(0xff << (8 - rest))) == 0;
}

static int parse_entry(const char *s, size_t len, struct cidr *out, char *why, size_t whylen)
{
	const char *slash = memchr(s, '/', len);
	size_t alen = slash ? (size_t)(slash - s) : len;
	unsigned max;

	if (!cidr_addr_parse(s, alen, out->addr, &out->family)) {
		snprintf(why, whylen, "not a numeric address: \"%.*s\"",
			 (int)(alen > 64 ? 64 : alen), s);
		return TOKEND_EINVAL;
	}
	/* An IPv4-mapped entry is an IPv4 entry: its prefix counts from bit 96. */
	max = out->family == 4 ? 32 : 128;
	out->prefix = (unsigned char)max;
	if (slash != NULL) {
		char num[8];
		size_t nlen = len - alen - 1;
		char *end;
		long p;
		bool mapped = out->family == 4 && memchr(s, ':', alen) != NULL;

		if (nlen == 0 || nlen >= sizeof(num) || slash[1] < '0' || slash[1] > '9') {
			snprintf(why, whylen, "bad prefix length in \"%.*s\"",
				 (int)(len > 64 ? 64 : len), s);
			return TOKEND_EINVAL;
		}
		memcpy(num, slash + 1, nlen);
		num[nlen] = '\0';
		errno = 0;
		p = strtol(num, &end, 10);
		if (mapped)
			p -= 96;
		if (errno != 0 || *end != '\0' || p < 0 || p > (long)max) {
			snprintf(why, whylen, "bad prefix length in \"%.*s\"",
				 (int)(len > 64 ? 64 : len), s);
			return TOKEND_EINVAL;
		}
		out->prefix = (unsigned char)p;
	}
	/* 10.0.0.1/8 is a typo for 10.0.0.0/8 or for 10.0.0.1: say so. */
	for (unsigned bit = out->prefix; bit < max; bit++) {
		if (out->addr[bit / 8] & (0x80 >> (bit % 8))) {
			snprintf(why, whylen, "host bits set in \"%.*s\"",
				 (int)(len > 64 ? 64 : len), s);
			return TOKEND_EINVAL;
		}
	}
	return 0;
}

int cidr_list_parse(const char *text, struct cidr_list *out, char *why, size_t whylen)
{
	const char *p = text;

	out->n = 0;
	while (*p != '\0') {
		size_t len;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (*p == '\0')
			break;
		len = strcspn(p, " \t,");
		if (out->n == CIDR_LIST_MAX) {
			snprintf(why, whylen, "more than %d entries", CIDR_LIST_MAX);
			out->n = 0;
			return TOKEND_EINVAL;
		}
		if (parse_entry(p, len, &out->e[out->n], why, whylen) != 0) {
			out->n = 0;
			return TOKEND_EINVAL;
		}
		out->n++;
		p += len;
	}
	return 0;
}

bool cidr_list_match(const struct cidr_list *l, const unsigned char addr[16], unsigned char family)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->e[i].family == family && prefix_equal(l->e[i].addr, addr, l->e[i].prefix))
			return true;
	return false;
}

bool cidr_list_match_text(const struct cidr_list *l, const char *s, size_t len)
{
	unsigned char addr[16];
	unsigned char family;

	return cidr_addr_parse(s, len, addr, &family) && cidr_list_match(l, addr, family);
}
