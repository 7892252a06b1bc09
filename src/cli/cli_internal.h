/* SPDX-License-Identifier: MIT */
/*
 * This header is private to src/cli/: the state the global options build
 * and the helpers the command files share.
 */
#ifndef TOKEND_CLI_INTERNAL_H
#define TOKEND_CLI_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "tokend/config.h"

#define EXIT_USAGE 2

struct cli {
	struct config cfg;
	const char *prog;
};

struct store;

/*
 * Matches argv[*i] against an option "--name" taking a value, given as
 * "--name VALUE" or "--name=VALUE". Returns 1 and sets *value (advancing *i
 * past a separate value), 0 when argv[*i] is another word, -1 when the value
 * is missing (after printing a usage error).
 */
int cli_opt_value(int argc, char **argv, int *i, const char *name, const char **value);

/* True when argv[i] is "-h" or "--help". */
bool cli_is_help(const char *arg);

/* Prints "tokend: msg" to stderr. */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Opens and migrates the configured database; prints errors. fresh and
 * version (either may be NULL) are those of store_migrate().
 */
int cli_store_open(struct cli *cli, struct store **st, bool *fresh, int *version);

/*
 * Reads a new password: one line from stdin with from_stdin, else prompts
 * twice without echo on the terminal. buf is wiped by the caller.
 * Returns the length, or -1 after printing why.
 */
long cli_read_password(bool from_stdin, char *buf, size_t buflen);

int cli_serve(struct cli *cli, int argc, char **argv);
int cli_migrate(struct cli *cli, int argc, char **argv);
int cli_user(struct cli *cli, int argc, char **argv);
int cli_team(struct cli *cli, int argc, char **argv);
int cli_key(struct cli *cli, int argc, char **argv);
int cli_purge(struct cli *cli, int argc, char **argv);

/* Creates the demo user and team on a fresh database (tokend serve --demo). */
int cli_demo_create(struct cli *cli, struct store *st, char *password, size_t pwlen,
		    char *team_uuid);

#endif
