/* SPDX-License-Identifier: MIT */
/*
 * This header is the one list of store rule tests (tests/unit/store_rules.c)
 * and the Check suite that runs it against a backend. The rules are written
 * against include/tokend/store.h only, so that the rotation outcomes, the
 * grace window, the family revocation, the API-token cap and the purge
 * batches are proven once on the fake backend (the ops table under store.c)
 * and then, with the same list, on every real backend:
 * test_store_rules_sqlite.c, test_store_rules_fake.c, test_store_rules_pg.c.
 */
#ifndef TOKEND_TESTS_STORE_RULES_H
#define TOKEND_TESTS_STORE_RULES_H

#include <check.h>

#include "tokend/store.h"

/*
 * How a suite gets a fresh store for each rule. open gives an opened,
 * migrated store (it fails the test with ck_assert when it cannot); close
 * closes it and frees what open made. The rules make their own users and
 * teams under names unique to the test, and purge what is due before they
 * count rows, so a database shared by the tests of one run (PostgreSQL)
 * serves as well as a fresh one per test.
 */
struct store_rules_target {
	const char *name; /* the suite's name: "store_rules_sqlite", ... */
	void (*open)(struct store **st);
	void (*close)(struct store **st);
};

/* A Check suite with one test case per rule; target must outlive it. */
Suite *store_rules_suite(const struct store_rules_target *target);

/* Runs the suite (CK_NORMAL); EXIT_SUCCESS when every rule held. */
int store_rules_run(const struct store_rules_target *target);

#endif
