/* SPDX-License-Identifier: MIT */
/*
 * This module implements `tokend purge`: the sweeper's work done once from
 * the command line, deleting expired token rows purge_batch per
 * transaction until none is left.
 */
#include <stdio.h>

#include "cli/cli_internal.h"
#include "tokend/store.h"
#include "tokend/util.h"

int cli_purge(struct cli *cli, int argc, char **argv)
{
	struct store *st = NULL;
	long total = 0, n;
	int rc = 0;

	if (argc > 1) {
		if (cli_is_help(argv[1])) {
			puts("usage: tokend [global options] purge\n\n"
			     "Deletes the rows of expired refresh tokens (outstanding and blacklisted)\nand of expired API tokens.");
			return 0;
		}
		cli_err("purge: unexpected argument \"%s\"", argv[1]);
		return EXIT_USAGE;
	}
	if (cli_store_open(cli, &st, NULL, NULL) != 0)
		return 1;
	do {
		rc = store_purge(st, util_now(), cli->cfg.purge_batch, &n);
		total += n;
	} while (rc == 0 && n > 0);
	store_close(&st);
	if (rc != 0) {
		cli_err("purge failed after %ld rows", total);
		return 1;
	}
	printf("purged %ld expired token rows\n", total);
	return 0;
}
