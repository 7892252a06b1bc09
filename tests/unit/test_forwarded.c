/* SPDX-License-Identifier: MIT */
/*
 * This suite tests src/http/forwarded.h, the client address behind trusted
 * proxies. Properties proven: an untrusted peer's headers never count; the
 * client is the right-most X-Forwarded-For element that is not trusted;
 * several fields are one list in order; a malformed first untrusted element
 * (unknown, _hidden, zone id, garbage) leaves the last trusted hop as the
 * client, as does a chain of trusted hops longer than FORWARDED_MAX_HOPS;
 * ports and brackets are stripped; X-Forwarded-For wins over Forwarded;
 * Forwarded's for= is read with quotes, case-insensitive names, several
 * pairs per element, and refused when unterminated, repeated or missing;
 * output is canonical.
 */
#include <arpa/inet.h>
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/forwarded.h"

#define TRUSTED "127.0.0.1 10.0.0.0/8 ::1"

/* Resolves with up to 3 XFF fields and 3 Forwarded fields (NULL ends). */
static const char *resolve(const char *peer, const char *x1, const char *x2, const char *f1,
			   const char *f2)
{
	static char out[64];
	struct cidr_list l;
	char why[128];
	struct forwarded_field xff[2], fwd[2];
	size_t nx = 0, nf = 0;

	ck_assert(cidr_list_parse(TRUSTED, &l, why, sizeof why) == 0);
	if (x1)
		xff[nx++] = (struct forwarded_field){x1, strlen(x1)};
	if (x2)
		xff[nx++] = (struct forwarded_field){x2, strlen(x2)};
	if (f1)
		fwd[nf++] = (struct forwarded_field){f1, strlen(f1)};
	if (f2)
		fwd[nf++] = (struct forwarded_field){f2, strlen(f2)};
	forwarded_client(&l, peer, xff, nx, fwd, nf, out, sizeof out);
	return out;
}

#define XFF(peer, v, want) ck_assert_str_eq(resolve(peer, v, NULL, NULL, NULL), want)
#define FWD(peer, v, want) ck_assert_str_eq(resolve(peer, NULL, NULL, v, NULL), want)

START_TEST(untrusted_peer_is_the_client)
{
	XFF("192.0.2.9", "1.1.1.1", "192.0.2.9");
	FWD("192.0.2.9", "for=1.1.1.1", "192.0.2.9");
	XFF("127.0.0.2", "1.1.1.1", "127.0.0.2");
	ck_assert_str_eq(resolve("127.0.0.1", NULL, NULL, NULL, NULL), "127.0.0.1");
}
END_TEST

START_TEST(right_most_untrusted)
{
	XFF("127.0.0.1", "1.1.1.1", "1.1.1.1");
	XFF("127.0.0.1", "9.9.9.9, 1.1.1.1", "1.1.1.1");
	XFF("127.0.0.1", "9.9.9.9,1.1.1.1,10.0.0.5", "1.1.1.1");
	XFF("127.0.0.1", "1.1.1.1, 10.0.0.5 ,\t::1", "1.1.1.1");
	XFF("::1", "2001:db8::7", "2001:db8::7");
	XFF("::ffff:127.0.0.1", "1.1.1.1", "1.1.1.1"); /* dual-stack peer */
	/* all trusted: the left-most */
	XFF("127.0.0.1", "10.0.0.7, 10.0.0.5", "10.0.0.7");
	/* several fields are one list, in order */
	ck_assert_str_eq(resolve("127.0.0.1", "9.9.9.9", "1.1.1.1, 10.0.0.5", NULL, NULL),
			 "1.1.1.1");
	ck_assert_str_eq(resolve("127.0.0.1", "1.1.1.1", "9.9.9.9", NULL, NULL), "9.9.9.9");
	ck_assert_str_eq(resolve("127.0.0.1", "1.1.1.1", "10.0.0.3", NULL, NULL), "1.1.1.1");
	/* empty elements are ignored */
	XFF("127.0.0.1", "1.1.1.1, , 10.0.0.5,", "1.1.1.1");
	XFF("127.0.0.1", "", "127.0.0.1");
	XFF("127.0.0.1", " , ", "127.0.0.1");
}
END_TEST

START_TEST(malformed_stops_at_the_last_trusted_hop)
{
	XFF("127.0.0.1", "unknown", "127.0.0.1");
	XFF("127.0.0.1", "1.1.1.1, unknown", "127.0.0.1");
	XFF("127.0.0.1", "1.1.1.1, garbage, 10.0.0.5", "10.0.0.5");
	XFF("127.0.0.1", "_hidden", "127.0.0.1");
	XFF("127.0.0.1", "fe80::1%eth0", "127.0.0.1");
	XFF("127.0.0.1", "fe80::1%25eth0", "127.0.0.1");
	XFF("127.0.0.1", "[1.2.3.4]", "127.0.0.1");
	XFF("127.0.0.1", "1.1.1.1:99999", "127.0.0.1");
	XFF("127.0.0.1", "1.1.1.1:", "127.0.0.1");
	XFF("127.0.0.1", "[::1", "127.0.0.1");
	XFF("127.0.0.1", "[2001:db8::1]x", "127.0.0.1");
	XFF("127.0.0.1", "1.1.1.1 2.2.2.2", "127.0.0.1");
	XFF("127.0.0.1", "\"1.1.1.1\"", "127.0.0.1");
	XFF("127.0.0.1", "1.1.1.1;2.2.2.2", "127.0.0.1");
	XFF("127.0.0.1", "\xff\xfe", "127.0.0.1");
	XFF("127.0.0.1", "1.1.1.1/8", "127.0.0.1");
	XFF("127.0.0.1", "999.1.1.1", "127.0.0.1");
}
END_TEST

START_TEST(ports_and_brackets)
{
	XFF("127.0.0.1", "1.1.1.1:80", "1.1.1.1");
	XFF("127.0.0.1", "[2001:db8::1]:4711", "2001:db8::1");
	XFF("127.0.0.1", "[2001:db8::1]", "2001:db8::1");
	XFF("127.0.0.1", "2001:DB8:0::1", "2001:db8::1");
	XFF("127.0.0.1", "::ffff:1.2.3.4", "1.2.3.4");
	XFF("127.0.0.1", "1.1.1.1, [::1]:80", "1.1.1.1"); /* a trusted hop with a port */
	FWD("127.0.0.1", "for=192.0.2.1:80", "192.0.2.1");
	FWD("127.0.0.1", "for=\"192.0.2.1:_p1\"", "192.0.2.1");
	FWD("127.0.0.1", "for=\"[2001:db8:cafe::17]:4711\"", "2001:db8:cafe::17");
}
END_TEST

START_TEST(forwarded_header)
{
	FWD("127.0.0.1", "for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60");
	FWD("127.0.0.1", "proto=http; For=192.0.2.60", "192.0.2.60");
	FWD("127.0.0.1", "FOR=192.0.2.60", "192.0.2.60");
	FWD("127.0.0.1", "for=9.9.9.9, for=1.1.1.1", "1.1.1.1");
	FWD("127.0.0.1", "for=1.1.1.1, for=10.0.0.5;by=10.0.0.1", "1.1.1.1");
	FWD("127.0.0.1", "for=\"a,b;c\", for=1.1.1.1", "1.1.1.1");
	FWD("127.0.0.1", "for=1.1.1.1, for=\"a,b;c\"", "127.0.0.1");
	FWD("127.0.0.1", "for=unknown", "127.0.0.1");
	FWD("127.0.0.1", "for=\"_hidden\"", "127.0.0.1");
	FWD("127.0.0.1", "for=_hidden, for=10.0.0.5", "10.0.0.5");
	FWD("127.0.0.1", "proto=http", "127.0.0.1");
	FWD("127.0.0.1", "for=\"1.1.1.1", "127.0.0.1");
	FWD("127.0.0.1", "for=\"\\1.1.1.1\"", "127.0.0.1");
	FWD("127.0.0.1", "for=1.1.1.1;for=2.2.2.2", "127.0.0.1");
	FWD("127.0.0.1", "for=", "127.0.0.1");
	FWD("127.0.0.1", "for", "127.0.0.1");
	FWD("127.0.0.1", "=1.1.1.1", "127.0.0.1");
	FWD("127.0.0.1", "for=\"1.1.1.1\"x", "127.0.0.1");
	FWD("127.0.0.1", "for=[2001:db8::1]", "2001:db8::1"); /* unquoted: lenient */
	/* X-Forwarded-For wins when both are present */
	ck_assert_str_eq(resolve("127.0.0.1", "1.1.1.1", NULL, "for=2.2.2.2", NULL), "1.1.1.1");
	ck_assert_str_eq(resolve("127.0.0.1", "unknown", NULL, "for=2.2.2.2", NULL), "127.0.0.1");
	ck_assert_str_eq(resolve("127.0.0.1", NULL, NULL, "for=9.9.9.9", "for=1.1.1.1"), "1.1.1.1");
}
END_TEST

START_TEST(long_chains)
{
	static char buf[70000];
	size_t n = 0;

	/* 1,000 forged entries, then the real client: the real client */
	for (int i = 0; i < 1000; i++)
		n += (size_t)snprintf(buf + n, sizeof buf - n, "%d.%d.%d.%d, ", i % 250 + 1, 2, 3,
				      4);
	snprintf(buf + n, sizeof buf - n, "1.1.1.1");
	XFF("127.0.0.1", buf, "1.1.1.1");
	/* a client behind more than FORWARDED_MAX_HOPS trusted hops is not
	 * looked for: the hop where the walk stopped */
	n = (size_t)snprintf(buf, sizeof buf, "1.1.1.1");
	for (int i = 0; i < 100; i++)
		n += (size_t)snprintf(buf + n, sizeof buf - n, ", 10.0.%d.1", i);
	ck_assert_str_eq(resolve("127.0.0.1", buf, NULL, NULL, NULL), "10.0.36.1");
	/* exactly FORWARDED_MAX_HOPS elements: found */
	n = (size_t)snprintf(buf, sizeof buf, "1.1.1.1");
	for (int i = 0; i < FORWARDED_MAX_HOPS - 1; i++)
		n += (size_t)snprintf(buf + n, sizeof buf - n, ", 10.0.%d.1", i);
	XFF("127.0.0.1", buf, "1.1.1.1");
	/* 64 KiB of one element */
	memset(buf, '1', 65536);
	buf[65536] = '\0';
	XFF("127.0.0.1", buf, "127.0.0.1");
	/* 64 KiB of commas */
	memset(buf, ',', 65536);
	XFF("127.0.0.1", buf, "127.0.0.1");
	memset(buf, '"', 65536);
	FWD("127.0.0.1", buf, "127.0.0.1");
}
END_TEST

START_TEST(too_many_fields)
{
	struct cidr_list l;
	char why[128], out[64];
	struct forwarded_field xff[FORWARDED_MAX_FIELDS + 1];

	ck_assert(cidr_list_parse(TRUSTED, &l, why, sizeof why) == 0);
	for (size_t i = 0; i <= FORWARDED_MAX_FIELDS; i++)
		xff[i] = (struct forwarded_field){"1.1.1.1", 7};
	forwarded_client(&l, "127.0.0.1", xff, FORWARDED_MAX_FIELDS, NULL, 0, out, sizeof out);
	ck_assert_str_eq(out, "1.1.1.1");
	forwarded_client(&l, "127.0.0.1", xff, FORWARDED_MAX_FIELDS + 1, NULL, 0, out, sizeof out);
	ck_assert_str_eq(out, "127.0.0.1");
	/* out may be the peer's own buffer */
	snprintf(out, sizeof out, "127.0.0.1");
	forwarded_client(&l, out, xff, 1, NULL, 0, out, sizeof out);
	ck_assert_str_eq(out, "1.1.1.1");
}
END_TEST

START_TEST(node_parse)
{
	unsigned char a[16], fam;

	ck_assert(forwarded_node_parse("1.2.3.4", 7, a, &fam) && fam == 4);
	ck_assert(forwarded_node_parse("[::1]:65535", 11, a, &fam) && fam == 6);
	ck_assert(!forwarded_node_parse("[::1]:65536", 11, a, &fam));
	ck_assert(!forwarded_node_parse("[::1]:", 6, a, &fam));
	ck_assert(!forwarded_node_parse("[]", 2, a, &fam));
	ck_assert(!forwarded_node_parse("", 0, a, &fam));
	ck_assert(!forwarded_node_parse("1.2.3.4:_", 9, a, &fam));
	ck_assert(!forwarded_node_parse("1.2.3.4:_a b", 12, a, &fam));
	ck_assert(forwarded_node_parse("1.2.3.4:_a.b-c_d", 16, a, &fam));
	ck_assert(!forwarded_node_parse("1.2.3.4\0", 8, a, &fam));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("forwarded");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, untrusted_peer_is_the_client);
	tcase_add_test(tc, right_most_untrusted);
	tcase_add_test(tc, malformed_stops_at_the_last_trusted_hop);
	tcase_add_test(tc, ports_and_brackets);
	tcase_add_test(tc, forwarded_header);
	tcase_add_test(tc, long_chains);
	tcase_add_test(tc, too_many_fields);
	tcase_add_test(tc, node_parse);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
