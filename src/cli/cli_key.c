/* SPDX-License-Identifier: MIT */
/*
 * This module implements `tokend key ...` (list, rotate, add, use, retire).
 * Keys are files of the key directory; a running server
 * picks up a change by its periodic check (keys.reload_interval), on a
 * token of a kid it does not know, or on SIGHUP.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli_internal.h"
#include "tokend/err.h"
#include "tokend/keys.h"
#include "tokend/store.h"
#include "tokend/util.h"

static const char key_usage[] =
	"usage: tokend [global options] key COMMAND\n"
	"\n"
	"  list                            list signing keys (kid, alg, created, current)\n"
	"  rotate [--alg HS256|RS256|ES256]  make a new current signing key\n"
	"  add [--alg HS256|RS256|ES256]   make a new key that is published and\n"
	"                                  accepted, but does not sign yet\n"
	"  use KID                         make KID the signing key\n"
	"  retire KID [--force]            delete a key; refused while tokens it\n"
	"                                  signed may still be valid, unless --force\n"
	"\n"
	"Across machines: `add` on every machine's key directory (or copy the key\n"
	"file), wait keys.reload_interval, then `use` it everywhere.\n"
	"A running server loads a change within keys.reload_interval seconds, at\n"
	"once on a token of a kid it does not know, or on SIGHUP.\n";

static int key_list(struct cli *cli)
{
	struct jwtsign_keys *keys = NULL;
	struct jwtsign_key_info info[JWTSIGN_MAX_KEYS];
	char err[512];
	size_t n;

	if (jwtsign_keys_load(cli->cfg.key_dir, cli->cfg.algorithm, 0, &keys, err, sizeof(err)) !=
	    0) {
		cli_err("%s", err);
		return 1;
	}
	n = jwtsign_keys_list(keys, info, JWTSIGN_MAX_KEYS);
	for (size_t i = 0; i < n; i++) {
		char created[RFC3339_LEN];
		util_time_rfc3339(info[i].created, created);
		printf("%s\t%s\t%s%s\n", info[i].kid, info[i].alg, created,
		       info[i].current ? "\tcurrent" : "");
	}
	jwtsign_keys_free(&keys);
	return 0;
}

static int key_retire(struct cli *cli, const char *kid, bool force)
{
	struct store *st = NULL;
	bool in_use = false;
	char err[512];
	int rc;

	if (!force) {
		if (cli_store_open(cli, &st, NULL, NULL) != 0)
			return 1;
		rc = store_key_in_use(st, kid, util_now(), cli->cfg.access_lifetime, &in_use);
		store_close(&st);
		if (rc != 0) {
			cli_err("cannot tell whether key %s is in use", kid);
			return 1;
		}
		if (in_use) {
			cli_err("key %s signed tokens that may still be valid; retire it once they "
				"expire, or use --force",
				kid);
			return 1;
		}
	}
	if (jwtsign_key_retire(cli->cfg.key_dir, kid, err, sizeof(err)) != 0) {
		cli_err("%s", err);
		return 1;
	}
	printf("retired %s\n", kid);
	return 0;
}

int cli_key(struct cli *cli, int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : NULL;
	const char *alg = cli->cfg.algorithm;
	const char *kid = NULL;
	bool force = false;
	char newkid[JWTSIGN_KID_LEN + 1];
	char err[512];

	if (cmd == NULL) {
		fputs(key_usage, stderr);
		return EXIT_USAGE;
	}
	if (cli_is_help(cmd)) {
		fputs(key_usage, stdout);
		return 0;
	}
	bool add = strcmp(cmd, "add") == 0;
	bool takes_kid = strcmp(cmd, "retire") == 0 || strcmp(cmd, "use") == 0;

	if (strcmp(cmd, "list") != 0 && strcmp(cmd, "rotate") != 0 && !add && !takes_kid) {
		cli_err("key: unknown command \"%s\" (see tokend key --help)", cmd);
		return EXIT_USAGE;
	}
	for (int i = 2; i < argc; i++) {
		const char *v;
		int r;

		if (cli_is_help(argv[i])) {
			fputs(key_usage, stdout);
			return 0;
		}
		if ((strcmp(cmd, "rotate") == 0 || add) &&
		    (r = cli_opt_value(argc, argv, &i, "--alg", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			if (!jwtsign_alg_supported(v)) {
				cli_err("key %s: --alg must be HS256, RS256 or ES256", cmd);
				return EXIT_USAGE;
			}
			alg = v;
		} else if (strcmp(cmd, "retire") == 0 && strcmp(argv[i], "--force") == 0) {
			force = true;
		} else if (takes_kid && argv[i][0] != '-' && kid == NULL) {
			kid = argv[i];
		} else {
			cli_err("key %s: unexpected argument \"%s\"", cmd, argv[i]);
			return EXIT_USAGE;
		}
	}
	if (strcmp(cmd, "list") == 0)
		return key_list(cli);
	if (strcmp(cmd, "retire") == 0) {
		if (kid == NULL) {
			cli_err("key retire: missing KID");
			return EXIT_USAGE;
		}
		return key_retire(cli, kid, force);
	}
	if (strcmp(cmd, "use") == 0) {
		if (kid == NULL) {
			cli_err("key use: missing KID");
			return EXIT_USAGE;
		}
		if (jwtsign_key_use(cli->cfg.key_dir, kid, err, sizeof(err)) != 0) {
			cli_err("%s", err);
			return 1;
		}
		printf("signing with %s\n", kid);
		return 0;
	}
	if ((add ? jwtsign_key_add : jwtsign_key_rotate)(cli->cfg.key_dir, alg, newkid, err,
							 sizeof(err)) != 0) {
		cli_err("%s", err);
		return 1;
	}
	printf("%s\n", newkid);
	return 0;
}
