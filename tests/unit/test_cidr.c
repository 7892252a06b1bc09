/* SPDX-License-Identifier: MIT */
/*
 * This suite tests include/tokend/cidr.h: address lists parse IPv4 and IPv6
 * entries with and without a prefix, refuse what is not a numeric address
 * or a sane prefix, and match addresses (IPv4-mapped IPv6 as IPv4).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokend/cidr.h"
#include "tokend/err.h"

static bool in(const char *list, const char *addr)
{
	struct cidr_list l;
	char why[128];

	ck_assert_msg(cidr_list_parse(list, &l, why, sizeof why) == 0, "%s: %s", list, why);
	return cidr_list_match_text(&l, addr, strlen(addr));
}

START_TEST(parse_good)
{
	static const char *const good[] = {
		"",
		"  ,, ",
		"127.0.0.1",
		"10.0.0.0/8",
		"::1",
		"fd00::/8",
		"0.0.0.0/0",
		"::/0",
		"127.0.0.0/8 ::1",
		"10.0.0.0/8,192.168.0.0/16",
		"::ffff:10.0.0.0/104",
		"192.0.2.1/32",
		"2001:db8::/32",
	};
	struct cidr_list l;
	char why[128];

	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		ck_assert_msg(cidr_list_parse(good[i], &l, why, sizeof why) == 0, "%s: %s", good[i],
			      why);
	ck_assert(cidr_list_parse("127.0.0.0/8 ::1, 10.0.0.1", &l, why, sizeof why) == 0);
	ck_assert_uint_eq(l.n, 3);
}
END_TEST

START_TEST(parse_bad)
{
	static const char *const bad[] = {
		"localhost",    "10.0.0.0/33", "::/129",       "10.0.0.1/8", "10.0.0.0/",
		"10.0.0.0/x",   "10.0.0.0/-1", "10.0.0.0/08x", "1.2.3",      "1.2.3.4.5",
		"fe80::1%eth0", "[::1]",       "127.0.0.1:80", "*",          "::ffff:10.0.0.0/8",
		"10.0.0.0/8/8",
	};
	struct cidr_list l;
	char why[128];

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		why[0] = '\0';
		ck_assert_msg(cidr_list_parse(bad[i], &l, why, sizeof why) == TOKEND_EINVAL,
			      "accepted %s", bad[i]);
		ck_assert_msg(why[0] != '\0', "%s: no reason", bad[i]);
		ck_assert_uint_eq(l.n, 0);
	}
}
END_TEST

START_TEST(too_many)
{
	char text[CIDR_LIST_MAX * 16 + 32] = "";
	struct cidr_list l;
	char why[128];

	for (int i = 0; i <= CIDR_LIST_MAX; i++) {
		char one[16];
		snprintf(one, sizeof one, "10.0.%d.1 ", i);
		strcat(text, one);
	}
	ck_assert(cidr_list_parse(text, &l, why, sizeof why) == TOKEND_EINVAL);
	ck_assert_ptr_nonnull(strstr(why, "more than"));
}
END_TEST

START_TEST(matching)
{
	ck_assert(in("127.0.0.0/8", "127.0.0.1"));
	ck_assert(in("127.0.0.0/8", "127.255.255.255"));
	ck_assert(!in("127.0.0.0/8", "128.0.0.1"));
	ck_assert(in("10.1.2.3", "10.1.2.3"));
	ck_assert(!in("10.1.2.3", "10.1.2.4"));
	ck_assert(in("192.168.0.0/23", "192.168.1.200"));
	ck_assert(!in("192.168.0.0/23", "192.168.2.1"));
	ck_assert(in("::1", "::1"));
	ck_assert(!in("::1", "::2"));
	ck_assert(in("fd00::/8", "fdab:1::1"));
	ck_assert(!in("fd00::/8", "fe80::1"));
	ck_assert(in("0.0.0.0/0", "8.8.8.8"));
	ck_assert(!in("0.0.0.0/0", "::1")); /* families never mix */
	ck_assert(!in("::/0", "8.8.8.8"));
	ck_assert(in("10.0.0.0/8", "::ffff:10.9.8.7")); /* mapped is IPv4 */
	ck_assert(in("::ffff:10.0.0.0/104", "10.200.0.1"));
	ck_assert(!in("", "127.0.0.1"));
	ck_assert(!in("127.0.0.1", "garbage"));
	ck_assert(!in("127.0.0.1", "127.0.0.1:80"));
	ck_assert(!in("127.0.0.1", ""));
}
END_TEST

START_TEST(addr_parse_bounds)
{
	unsigned char a[16];
	unsigned char fam;
	char huge[200];

	memset(huge, '1', sizeof huge);
	ck_assert(!cidr_addr_parse(huge, sizeof huge, a, &fam));
	ck_assert(!cidr_addr_parse("1.2.3.4\0x", 9, a, &fam)); /* an embedded NUL */
	ck_assert(cidr_addr_parse("1.2.3.4xyz", 7, a, &fam));  /* only len bytes count */
	ck_assert_uint_eq(fam, 4);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cidr");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, parse_good);
	tcase_add_test(tc, parse_bad);
	tcase_add_test(tc, too_many);
	tcase_add_test(tc, matching);
	tcase_add_test(tc, addr_parse_bounds);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
