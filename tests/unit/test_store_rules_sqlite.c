/* SPDX-License-Identifier: MIT */
/*
 * This suite runs the store rules of store_rules.c (the list every backend
 * runs) against SQLite: each rule on a fresh temporary file, opened with
 * store_open and migrated. It is the oracle the fake backend's suite
 * (test_store_rules_fake.c) is held to.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "store_rules.h"
#include "unit.h"

static char base[64];
static char tmpdir[128];

static void sqlite_open(struct store **st)
{
	char path[192];
	char err[256] = "";

	snprintf(tmpdir, sizeof tmpdir, "%s/XXXXXX", base);
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(path, sizeof path, "%s/t.db", tmpdir);
	ck_assert_msg(store_open(path, 5000, st, err, sizeof err) == 0, "open: %s", err);
	ck_assert_msg(store_migrate(*st, NULL, NULL, err, sizeof err) == 0, "migrate: %s", err);
}

static void sqlite_close(struct store **st)
{
	store_close(st);
	rm_rf(tmpdir);
}

static const struct store_rules_target sqlite_target = {
	.name = "store_rules_sqlite",
	.open = sqlite_open,
	.close = sqlite_close,
};

int main(void)
{
	int rc;

	snprintf(base, sizeof base, "/tmp/tokend-unit-rules-XXXXXX");
	if (mkdtemp(base) == NULL) {
		perror("mkdtemp");
		return EXIT_FAILURE;
	}
	rc = store_rules_run(&sqlite_target);
	rm_rf(base);
	return rc;
}
