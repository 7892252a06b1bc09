/* SPDX-License-Identifier: MIT */
/*
 * This module implements the entry of the `tokend` command: global options
 * (--config, --database, --key-dir), configuration loading in order
 * (defaults, file, environment, flags), and dispatch to the git-style
 * commands. Exit codes: 0 success, 1 failure, 2 usage error.
 */
#include "tokend/cli.h"

#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli/cli_internal.h"
#include "tokend/err.h"
#include "tokend/log.h"
#include "tokend/router.h"
#include "tokend/store.h"

#ifndef TOKEND_VERSION
#define TOKEND_VERSION "dev"
#endif

static const char usage[] =
	"usage: tokend [--config FILE] [--database PATH|URL] [--key-dir DIR] COMMAND [ARGS]\n"
	"\n"
	"Commands:\n"
	"  serve     run the HTTP server (tokend serve --help)\n"
	"  migrate   apply database migrations\n"
	"  user      add, passwd, disable, enable, logout, delete, list, import users\n"
	"  team      add, list teams; add-member, remove-member\n"
	"  key       list, rotate, retire signing keys\n"
	"  purge     delete the rows of expired tokens\n"
	"  routes    print the HTTP route table: METHOD<TAB>PATH, one route a line\n"
	"            (a GET route answers HEAD too; docs/openapi.yaml describes them)\n"
	"\n"
	"Global options:\n"
	"  --config FILE         INI configuration (default: built-in defaults)\n"
	"  --database PATH|URL   SQLite file, or PostgreSQL URL or conninfo (database.url)\n"
	"  --key-dir DIR         signing key directory (keys.dir)\n"
	"  --version             print the version\n"
	"  -h, --help            this help\n"
	"\n"
	"Every configuration key can also be set as TOKEND_<SECTION>_<KEY>.\n";

/* `tokend routes`: the router's table as built in, for scripts and
 * tests/api/test_openapi.py (which checks docs/openapi.yaml against it). */
static int cli_routes(int argc, char **argv)
{
	const struct route *r;
	size_t n;

	if (argc > 1) {
		if (cli_is_help(argv[1])) {
			puts("usage: tokend routes\n\n"
			     "Prints the HTTP route table, one route a line: METHOD<TAB>PATH, with\n"
			     "{name} for a path segment captured. A GET route answers HEAD too;\n"
			     "every route works with and without its trailing slash.");
			return 0;
		}
		cli_err("routes: unexpected argument \"%s\"", argv[1]);
		return EXIT_USAGE;
	}
	r = router_routes(&n);
	for (size_t i = 0; i < n; i++)
		printf("%s\t%s\n", r[i].method, r[i].pattern);
	return 0;
}

void cli_err(const char *fmt, ...)
{
	va_list ap;

	fputs("tokend: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

bool cli_is_help(const char *arg)
{
	return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

int cli_opt_value(int argc, char **argv, int *i, const char *name, const char **value)
{
	size_t n = strlen(name);
	const char *a = argv[*i];

	if (strncmp(a, name, n) != 0)
		return 0;
	if (a[n] == '=') {
		*value = a + n + 1;
		return 1;
	}
	if (a[n] != '\0')
		return 0;
	if (*i + 1 >= argc) {
		cli_err("option %s needs a value", name);
		return -1;
	}
	*i += 1;
	*value = argv[*i];
	return 1;
}

int cli_store_open(struct cli *cli, struct store **st, bool *fresh, int *version)
{
	char err[512];

	if (store_open(cli->cfg.database, cli->cfg.busy_timeout_ms, st, err, sizeof(err)) != 0 ||
	    store_migrate(*st, version, fresh, err, sizeof(err)) != 0) {
		cli_err("%s", err);
		store_close(st);
		return 1;
	}
	return 0;
}

static long read_line(FILE *fp, char *buf, size_t buflen)
{
	size_t n;

	if (fgets(buf, (int)buflen, fp) == NULL)
		return -1;
	n = strlen(buf);
	if (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	else if (n == buflen - 1)
		return -2; /* longer than the buffer */
	if (n > 0 && buf[n - 1] == '\r')
		buf[--n] = '\0';
	return (long)n;
}

static long prompt_noecho(const char *prompt, char *buf, size_t buflen)
{
	struct termios old, quiet;
	long n;

	fputs(prompt, stderr);
	fflush(stderr);
	if (tcgetattr(STDIN_FILENO, &old) != 0)
		return -1;
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	n = read_line(stdin, buf, buflen);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	fputc('\n', stderr);
	return n;
}

long cli_read_password(bool from_stdin, char *buf, size_t buflen)
{
	char again[1024];
	long n;

	if (from_stdin) {
		n = read_line(stdin, buf, buflen);
	} else {
		if (!isatty(STDIN_FILENO)) {
			cli_err("no terminal to prompt on: use --password-stdin");
			return -1;
		}
		n = prompt_noecho("Password: ", buf, buflen);
		if (n >= 0) {
			long m = prompt_noecho("Password (again): ", again, sizeof(again));
			if (m != n || memcmp(buf, again, (size_t)n) != 0) {
				OPENSSL_cleanse(again, sizeof(again));
				cli_err("passwords do not match");
				return -1;
			}
			OPENSSL_cleanse(again, sizeof(again));
		}
	}
	if (n == -2) {
		cli_err("password longer than %zu bytes", buflen - 2);
		return -1;
	}
	if (n <= 0) {
		cli_err("empty password");
		return -1;
	}
	return n;
}

int cli_main(int argc, char **argv)
{
	struct cli cli = {.prog = argv[0]};
	const char *config_path = NULL;
	const char *database = NULL;
	const char *key_dir = NULL;
	char err[512];
	int i;

	config_defaults(&cli.cfg);
	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		const char *v;
		int r;

		if (cli_is_help(argv[i])) {
			fputs(usage, stdout);
			return 0;
		}
		if (strcmp(argv[i], "--version") == 0) {
			printf("tokend %s\n", TOKEND_VERSION);
			return 0;
		}
		if ((r = cli_opt_value(argc, argv, &i, "--config", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			config_path = v;
		} else if ((r = cli_opt_value(argc, argv, &i, "--database", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			database = v;
		} else if ((r = cli_opt_value(argc, argv, &i, "--key-dir", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			key_dir = v;
		} else {
			cli_err("unknown option %s (see tokend --help)", argv[i]);
			return EXIT_USAGE;
		}
	}
	if (i >= argc) {
		fputs(usage, stderr);
		return EXIT_USAGE;
	}
	if (config_path != NULL && config_load_file(&cli.cfg, config_path, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s\n", err);
		return EXIT_USAGE;
	}
	if (config_load_env(&cli.cfg, err, sizeof(err)) != 0 ||
	    (database && config_set(&cli.cfg, "database", "url", database, "--database", err,
				    sizeof(err)) != 0) ||
	    (key_dir &&
	     config_set(&cli.cfg, "keys", "dir", key_dir, "--key-dir", err, sizeof(err)) != 0)) {
		fprintf(stderr, "%s\n", err);
		return EXIT_USAGE;
	}
	log_set_level((enum log_level)log_level_parse(cli.cfg.log_level));
	log_set_format((enum log_format)log_format_parse(cli.cfg.log_format));
	log_set_access((int)cli.cfg.access_log);

	if (strcmp(argv[i], "serve") == 0)
		return cli_serve(&cli, argc - i, argv + i);
	if (strcmp(argv[i], "migrate") == 0)
		return cli_migrate(&cli, argc - i, argv + i);
	if (strcmp(argv[i], "user") == 0)
		return cli_user(&cli, argc - i, argv + i);
	if (strcmp(argv[i], "team") == 0)
		return cli_team(&cli, argc - i, argv + i);
	if (strcmp(argv[i], "key") == 0)
		return cli_key(&cli, argc - i, argv + i);
	if (strcmp(argv[i], "purge") == 0)
		return cli_purge(&cli, argc - i, argv + i);
	if (strcmp(argv[i], "routes") == 0)
		return cli_routes(argc - i, argv + i);
	cli_err("unknown command \"%s\" (see tokend --help)", argv[i]);
	return EXIT_USAGE;
}
