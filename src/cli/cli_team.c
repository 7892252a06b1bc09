/* SPDX-License-Identifier: MIT */
/*
 * This module implements `tokend team ...`: add (prints the new uuid alone),
 * list, add-member and remove-member. TEAM is a name or a uuid.
 */
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli_internal.h"
#include "tokend/err.h"
#include "tokend/store.h"
#include "tokend/util.h"

static const char team_usage[] =
	"usage: tokend [global options] team COMMAND\n"
	"\n"
	"  add NAME                                  create a team (prints its uuid)\n"
	"  list                                      list teams: uuid, name, members\n"
	"  add-member TEAM USER [--role member|admin]  add USER to TEAM (or change role)\n"
	"  remove-member TEAM USER                   remove USER from TEAM and delete\n"
	"                                            USER's API tokens for TEAM\n"
	"\n"
	"TEAM is a team name or uuid.\n";

static bool team_name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > STORE_NAME_MAX || !util_utf8_valid(s, n))
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

static int print_team(const struct store_team *t, void *arg)
{
	(void)arg;
	printf("%s\t%s\t%ld\n", t->uuid, t->name, t->members);
	return 0;
}

int cli_team(struct cli *cli, int argc, char **argv)
{
	static const struct {
		const char *name;
		int nargs;
	} cmds[] = {{"add", 1}, {"list", 0}, {"add-member", 2}, {"remove-member", 2}};
	struct store *st = NULL;
	const char *cmd = argc > 1 ? argv[1] : NULL;
	const char *args[2] = {NULL, NULL};
	const char *role = "member";
	char uuid[UUID_STR_LEN];
	int want = -1, got = 0;
	int err = 0;

	if (cmd == NULL) {
		fputs(team_usage, stderr);
		return EXIT_USAGE;
	}
	if (cli_is_help(cmd)) {
		fputs(team_usage, stdout);
		return 0;
	}
	for (size_t k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++)
		if (strcmp(cmd, cmds[k].name) == 0)
			want = cmds[k].nargs;
	if (want < 0) {
		cli_err("team: unknown command \"%s\" (see tokend team --help)", cmd);
		return EXIT_USAGE;
	}
	for (int i = 2; i < argc; i++) {
		const char *v;
		int r;

		if (cli_is_help(argv[i])) {
			fputs(team_usage, stdout);
			return 0;
		}
		if (strcmp(cmd, "add-member") == 0 &&
		    (r = cli_opt_value(argc, argv, &i, "--role", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			if (strcmp(v, "member") != 0 && strcmp(v, "admin") != 0) {
				cli_err("team add-member: --role must be member or admin");
				return EXIT_USAGE;
			}
			role = v;
		} else if (argv[i][0] != '-' && got < want) {
			args[got++] = argv[i];
		} else {
			cli_err("team %s: unexpected argument \"%s\"", cmd, argv[i]);
			return EXIT_USAGE;
		}
	}
	if (got < want) {
		cli_err("team %s: missing argument (see tokend team --help)", cmd);
		return EXIT_USAGE;
	}
	if (strcmp(cmd, "add") == 0 && !team_name_valid(args[0])) {
		cli_err("invalid team name: 1-150 bytes of UTF-8 without control characters");
		return 1;
	}
	if (cli_store_open(cli, &st, NULL, NULL) != 0)
		return 1;
	if (strcmp(cmd, "add") == 0) {
		err = store_team_add(st, args[0], uuid);
		if (err == 0)
			printf("%s\n", uuid);
		else if (err == TOKEND_EEXISTS)
			cli_err("team \"%s\" already exists", args[0]);
	} else if (strcmp(cmd, "list") == 0) {
		err = store_team_list(st, print_team, NULL);
	} else {
		struct store_team t;
		struct store_user u;

		if (store_team_get(st, args[0], &t) != 0) {
			cli_err("no such team \"%s\"", args[0]);
			err = TOKEND_ENOTFOUND;
		} else if (store_user_get_by_name(st, args[1], &u) != 0) {
			cli_err("no such user \"%s\"", args[1]);
			err = TOKEND_ENOTFOUND;
		} else if (strcmp(cmd, "add-member") == 0) {
			err = store_team_add_member(st, t.uuid, args[1], role);
		} else {
			err = store_team_remove_member(st, t.uuid, args[1]);
			if (err == TOKEND_ENOTFOUND)
				cli_err("user \"%s\" is not a member of \"%s\"", args[1], args[0]);
		}
		OPENSSL_cleanse(u.password, sizeof(u.password));
	}
	if (err != 0 && err != TOKEND_ENOTFOUND && err != TOKEND_EEXISTS)
		cli_err("team %s: %s", cmd, tokend_strerror(err));
	store_close(&st);
	return err == 0 ? 0 : 1;
}
