/* SPDX-License-Identifier: MIT */
/*
 * This suite runs the store rules of store_rules.c against PostgreSQL: the
 * database named by the URL in TOKEND_TEST_PG_URL, opened with store_open
 * and migrated for each rule. The rules make their own users and teams and
 * count only their own rows, so the database is shared by the run (use a
 * scratch database: the rules leave their rows behind). Without the
 * variable the suite is skipped (exit 77, ctest's SKIP_RETURN_CODE).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "store_rules.h"

#define SKIPPED 77

static const char *url;

static void pg_open(struct store **st)
{
	char err[256] = "";

	ck_assert_msg(store_open(url, 5000, st, err, sizeof err) == 0, "open: %s", err);
	ck_assert_msg(store_migrate(*st, NULL, NULL, err, sizeof err) == 0, "migrate: %s", err);
}

static void pg_close(struct store **st)
{
	store_close(st);
}

static const struct store_rules_target pg_target = {
	.name = "store_rules_pg",
	.open = pg_open,
	.close = pg_close,
};

int main(void)
{
	url = getenv("TOKEND_TEST_PG_URL");
	if (url == NULL || url[0] == '\0') {
		printf("test_store_rules_pg: skipped: TOKEND_TEST_PG_URL is not set "
		       "(e.g. postgresql://tokend@localhost/tokend_test)\n");
		return SKIPPED;
	}
	return store_rules_run(&pg_target);
}
