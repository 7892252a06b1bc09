/* SPDX-License-Identifier: MIT */
/*
 * This suite runs the store rules of store_rules.c against the fake backend
 * (src/store/fake/): store.c's rules over the in-memory ops table, a new
 * database per rule. What holds here and in test_store_rules_sqlite.c holds
 * for the rules, not for one backend's SQL. Built with -DTOKEND_FAKE_SUITE=ON
 * (it needs store.c's store_open_backend).
 */
#include <check.h>
#include <stdlib.h>

#include "store/backend.h"
#include "store/fake/fake.h"
#include "store_rules.h"

static void fake_open(struct store **st)
{
	char err[256] = "";

	ck_assert_msg(store_open_backend(&store_fake_backend, "fake:", 5000, st, err, sizeof err) ==
			      0,
		      "open: %s", err);
	ck_assert_msg(store_migrate(*st, NULL, NULL, err, sizeof err) == 0, "migrate: %s", err);
}

static void fake_close(struct store **st)
{
	store_close(st);
}

static const struct store_rules_target fake_target = {
	.name = "store_rules_fake",
	.open = fake_open,
	.close = fake_close,
};

int main(void)
{
	return store_rules_run(&fake_target);
}
