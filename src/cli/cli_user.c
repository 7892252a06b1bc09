/* SPDX-License-Identifier: MIT */
/*
 * This module implements `tokend user ...`: add, passwd, disable, enable,
 * logout, delete, list and import (cli_import.c). passwd, disable and logout end the user's
 * sessions (disable --revoke deletes their API tokens too); docs/tokens.md,
 * "Revocation". Passwords come from stdin (--password-stdin) or a no-echo
 * prompt and are wiped after hashing.
 */
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli_import.h"
#include "cli/cli_internal.h"
#include "tokend/err.h"
#include "tokend/password.h"
#include "tokend/store.h"
#include "tokend/util.h"

#define PASSWORD_INPUT_MAX 4096

static const char user_usage[] =
	"usage: tokend [global options] user COMMAND\n"
	"\n"
	"  add NAME [--password-stdin]     create a user (prints its uuid)\n"
	"  passwd NAME [--password-stdin]  set a new password; ends every session\n"
	"  disable NAME [--revoke]         refuse the user's logins and tokens; ends\n"
	"                                  every session; --revoke also deletes the\n"
	"                                  user's API tokens in every team\n"
	"  enable NAME                     allow logins and kept API tokens again\n"
	"                                  (ended sessions stay ended)\n"
	"  logout NAME                     end every session of the user (prints how\n"
	"                                  many ended); API tokens are kept\n"
	"  delete NAME                     delete the user and their tokens\n"
	"  list                            list users\n"
	"  import [--format csv|jsonl|django] [--update] [FILE|-]\n"
	"                                  add users with their password hashes\n"
	"                                  (tokend user import --help)\n"
	"\n"
	"Without --password-stdin the password is asked twice on the terminal.\n"
	"A session is one login: its access and refresh tokens. Ending it makes\n"
	"them fail at once; API tokens belong to no session.\n";

/* Usernames: 1-150 bytes of UTF-8 without spaces or control characters. */
static bool username_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > STORE_NAME_MAX || !util_utf8_valid(s, n))
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

static int print_user(const struct store_user *u, void *arg)
{
	char created[RFC3339_LEN];
	char last[RFC3339_LEN] = "never";

	(void)arg;
	util_time_rfc3339(u->created_at, created);
	if (u->last_login != 0)
		util_time_rfc3339(u->last_login, last);
	printf("%s\t%s\t%s\tcreated=%s\tlast_login=%s\n", u->uuid, u->username,
	       u->is_active ? "active" : "disabled", created, last);
	return 0;
}

static int set_password(struct cli *cli, struct store *st, const char *name, bool from_stdin,
			bool create)
{
	char pw[PASSWORD_INPUT_MAX + 2];
	char hash[PASSWORD_HASH_MAX];
	char uuid[UUID_STR_LEN];
	struct store_user u;
	long n;
	int rc = 1;
	int err;

	if (!create) {
		err = store_user_get_by_name(st, name, &u);
		OPENSSL_cleanse(u.password, sizeof(u.password));
		if (err != 0) {
			cli_err("user \"%s\": %s", name, tokend_strerror(err));
			return 1;
		}
	}
	n = cli_read_password(from_stdin, pw, sizeof(pw));
	if (n < 0)
		goto out;
	if (password_hash(pw, (size_t)n, cli->cfg.pbkdf2_iterations, hash, sizeof(hash)) != 0) {
		cli_err("cannot hash the password");
		goto out;
	}
	err = create ? store_user_add(st, name, hash, uuid)
		     : store_user_change_password(st, u.uuid, hash, util_now());
	if (err == TOKEND_EEXISTS) {
		cli_err("user \"%s\" already exists", name);
		goto out;
	}
	if (err != 0) {
		cli_err("user \"%s\": %s", name, tokend_strerror(err));
		goto out;
	}
	if (create)
		printf("%s\n", uuid);
	rc = 0;
out:
	OPENSSL_cleanse(pw, sizeof(pw));
	OPENSSL_cleanse(hash, sizeof(hash));
	return rc;
}

/* Ends every session of user name and prints how many ended. */
static int logout(struct store *st, const char *name)
{
	struct store_user u;
	long ended = 0;
	int err;

	err = store_user_get_by_name(st, name, &u);
	OPENSSL_cleanse(u.password, sizeof(u.password));
	if (err == 0)
		err = store_user_sessions_end(st, u.uuid, util_now(), &ended);
	if (err != 0) {
		cli_err("user \"%s\": %s", name,
			err == TOKEND_ENOTFOUND ? "no such user" : tokend_strerror(err));
		return 1;
	}
	printf("%ld\n", ended);
	return 0;
}

int cli_user(struct cli *cli, int argc, char **argv)
{
	struct store *st = NULL;
	const char *cmd = argc > 1 ? argv[1] : NULL;
	const char *name = NULL;
	bool from_stdin = false;
	bool revoke = false;
	bool needs_name;
	int rc = 1;
	int err;

	if (cmd == NULL) {
		fputs(user_usage, stderr);
		return EXIT_USAGE;
	}
	if (cli_is_help(cmd)) {
		fputs(user_usage, stdout);
		return 0;
	}
	if (strcmp(cmd, "import") == 0)
		return cli_user_import(cli, argc - 1, argv + 1);
	needs_name = strcmp(cmd, "list") != 0;
	if (!needs_name && strcmp(cmd, "list") != 0) {
		cli_err("user: unknown command \"%s\"", cmd);
		return EXIT_USAGE;
	}
	if (strcmp(cmd, "add") != 0 && strcmp(cmd, "passwd") != 0 && strcmp(cmd, "disable") != 0 &&
	    strcmp(cmd, "enable") != 0 && strcmp(cmd, "delete") != 0 &&
	    strcmp(cmd, "logout") != 0 && strcmp(cmd, "list") != 0) {
		cli_err("user: unknown command \"%s\" (see tokend user --help)", cmd);
		return EXIT_USAGE;
	}
	for (int i = 2; i < argc; i++) {
		if (cli_is_help(argv[i])) {
			fputs(user_usage, stdout);
			return 0;
		} else if (strcmp(argv[i], "--password-stdin") == 0 &&
			   (strcmp(cmd, "add") == 0 || strcmp(cmd, "passwd") == 0)) {
			from_stdin = true;
		} else if (strcmp(argv[i], "--revoke") == 0 && strcmp(cmd, "disable") == 0) {
			revoke = true;
		} else if (argv[i][0] != '-' && name == NULL && needs_name) {
			name = argv[i];
		} else {
			cli_err("user %s: unexpected argument \"%s\"", cmd, argv[i]);
			return EXIT_USAGE;
		}
	}
	if (needs_name && name == NULL) {
		cli_err("user %s: missing NAME", cmd);
		return EXIT_USAGE;
	}
	if (strcmp(cmd, "add") == 0 && !username_valid(name)) {
		cli_err("invalid username \"%s\": 1-150 bytes, no spaces or control characters",
			name);
		return 1;
	}
	if (cli_store_open(cli, &st, NULL, NULL) != 0)
		return 1;
	if (strcmp(cmd, "list") == 0) {
		rc = store_user_list(st, print_user, NULL) == 0 ? 0 : 1;
		goto out;
	}
	if (strcmp(cmd, "add") == 0 || strcmp(cmd, "passwd") == 0) {
		rc = set_password(cli, st, name, from_stdin, strcmp(cmd, "add") == 0);
		goto out;
	}
	if (strcmp(cmd, "logout") == 0) {
		rc = logout(st, name);
		goto out;
	}
	if (strcmp(cmd, "delete") == 0)
		err = store_user_delete(st, name);
	else if (strcmp(cmd, "disable") == 0)
		err = store_user_disable(st, name, util_now(), revoke);
	else
		err = store_user_set_active(st, name, true);
	if (err != 0)
		cli_err("user \"%s\": %s", name,
			err == TOKEND_ENOTFOUND ? "no such user" : tokend_strerror(err));
	rc = err == 0 ? 0 : 1;
out:
	store_close(&st);
	return rc;
}
