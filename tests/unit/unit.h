/* SPDX-License-Identifier: MIT */
/*
 * Helpers the Check suites share: removing a temporary directory tree.
 * Header-only, as each suite is its own executable.
 */
#ifndef TOKEND_TESTS_UNIT_H
#define TOKEND_TESTS_UNIT_H

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Removes dir and everything below it (best effort). */
static inline void rm_rf(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char p[512];

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
		if (de->d_type == DT_DIR)
			rm_rf(p);
		else
			unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

#endif
