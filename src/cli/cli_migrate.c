/* SPDX-License-Identifier: MIT */
/*
 * This module implements `tokend migrate`: opening the configured database
 * applies the migrations it lacks (cli_store_open), and the schema version
 * it is at is printed, the database named with its password redacted.
 */
#include <stdio.h>

#include "cli/cli_internal.h"
#include "tokend/config.h"
#include "tokend/store.h"
#include "tokend/util.h"

int cli_migrate(struct cli *cli, int argc, char **argv)
{
	struct store *st = NULL;
	int version = 0;
	char shown[CONFIG_STR_MAX];

	if (argc > 1) {
		if (cli_is_help(argv[1])) {
			puts("usage: tokend [global options] migrate\n\n"
			     "Applies the migrations of sql/ the database lacks, each in one "
			     "transaction.");
			return 0;
		}
		cli_err("migrate: unexpected argument \"%s\"", argv[1]);
		return EXIT_USAGE;
	}
	if (cli_store_open(cli, &st, NULL, &version) != 0)
		return 1;
	util_dsn_redact(cli->cfg.database, shown, sizeof(shown));
	printf("database %s at schema version %d\n", shown, version);
	store_close(&st);
	return 0;
}
