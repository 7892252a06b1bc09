/* SPDX-License-Identifier: MIT */
/*
 * Helpers the Check suites share: removing a temporary directory tree, and
 * the main() of a suite whose tests make their files under one directory.
 * Header-only, as each suite is its own executable.
 */
#ifndef TOKEND_TESTS_UNIT_H
#define TOKEND_TESTS_UNIT_H

#include <check.h>
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Removes dir and everything below it (best effort). */
static inline void rm_rf(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char p[PATH_MAX];

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		int n;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		/* A name too long for p cannot be ours: skip it, never cut it. */
		n = snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
		if (n < 0 || (size_t)n >= sizeof p)
			continue;
		if (de->d_type == DT_DIR)
			rm_rf(p);
		else
			unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

/*
 * The main() of a suite whose tests make their directories under dir (the
 * suite's static base[] of cap bytes): creates dir as
 * /tmp/tokend-unit-NAME-XXXXXX (mkdtemp), calls prepare (may be NULL;
 * nonzero fails the run) and runs suite, which it frees. A
 * failed check ends the forked test at once (no teardown), so dir is
 * removed here at the end. Returns EXIT_SUCCESS when every test passed.
 */
static inline int unit_main(Suite *suite, const char *name, char *dir, size_t cap,
			    int (*prepare)(void))
{
	SRunner *sr = srunner_create(suite);
	int n, failed = 1;

	n = snprintf(dir, cap, "/tmp/tokend-unit-%s-XXXXXX", name);
	if (n < 0 || (size_t)n >= cap) {
		fprintf(stderr, "unit_main: name too long: %s\n", name);
		goto out;
	}
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		goto out;
	}
	if (prepare == NULL || prepare() == 0) {
		srunner_run_all(sr, CK_NORMAL);
		failed = srunner_ntests_failed(sr);
	}
	rm_rf(dir);
out:
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* unit_main() for a static char base[] array of the suite. */
#define UNIT_MAIN(suite, name, base, prepare) \
	unit_main((suite), (name), (base), sizeof(base), (prepare))

#endif
