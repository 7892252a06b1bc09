/* SPDX-License-Identifier: MIT */
/*
 * This module implements `tokend serve` and `tokend migrate`: start-up in
 * order (store, migrations, keys, server), the demo account of a fresh
 * database, and the signal loop: SIGINT/SIGTERM stop cleanly, SIGHUP is
 * reserved for key reload.
 */
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli_internal.h"
#include "tokend/app.h"
#include "tokend/err.h"
#include "tokend/jwtsign.h"
#include "tokend/log.h"
#include "tokend/password.h"
#include "tokend/server.h"
#include "tokend/store.h"
#include "tokend/util.h"

#define SHUTDOWN_GRACE_MS 10000

static const char serve_usage[] =
	"usage: tokend [global options] serve [--listen ADDR:PORT] [--threads N] [--demo]\n"
	"                                     [--check-config]\n"
	"\n"
	"  --listen ADDR:PORT  address to serve (server.listen, default 127.0.0.1:8000;\n"
	"                      port 0 picks a free one, printed at start)\n"
	"  --threads N         HTTP threads (server.threads; 0 = one per CPU)\n"
	"  --demo              on a brand-new database, create a demo user and team\n"
	"                      and print their credentials once\n"
	"  --check-config      validate the configuration and exit\n";

int cli_demo_create(struct cli *cli, struct store *st, char *password, size_t pwlen,
		    char *team_uuid)
{
	unsigned char rnd[12];
	char hash[PASSWORD_HASH_MAX];
	int rc;

	if (pwlen < 17 || util_random(rnd, sizeof(rnd)) != 0)
		return TOKEND_ECRYPTO;
	util_b64url_encode(rnd, sizeof(rnd), password, pwlen);
	rc = password_hash(password, strlen(password), cli->cfg.pbkdf2_iterations, hash,
			   sizeof(hash));
	if (rc == 0)
		rc = store_user_add(st, "demo", hash, NULL);
	if (rc == 0)
		rc = store_team_add(st, "demo", team_uuid);
	if (rc == 0)
		rc = store_team_add_member(st, "demo", "demo", "admin");
	OPENSSL_cleanse(hash, sizeof(hash));
	OPENSSL_cleanse(rnd, sizeof(rnd));
	return rc;
}

static void print_demo(const char *host, unsigned port, const char *password,
		       const char *team)
{
	char h[80];

	snprintf(h, sizeof(h), "%s%s%s", strchr(host, ':') ? "[" : "", host,
		 strchr(host, ':') ? "]" : "");
	printf("tokend: a demo account was created on this new database (shown once):\n"
	       "  username: demo\n"
	       "  password: %s\n"
	       "  team:     demo (%s)\n"
	       "Log in with:\n"
	       "  curl -X POST http://%s:%u/api/auth/jwt/ -d username=demo -d 'password=%s'\n",
	       password, team, h, port, password);
	fflush(stdout);
}

/* Waits for SIGINT/SIGTERM; SIGHUP is acknowledged and ignored for now. */
static void wait_for_stop(const sigset_t *set)
{
	for (;;) {
		int sig = 0;

		if (sigwait(set, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			log_info("SIGHUP received: reserved for key reload; nothing to do");
			continue;
		}
		log_info("%s received: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
		return;
	}
}

int cli_serve(struct cli *cli, int argc, char **argv)
{
	struct app app;
	struct store *st = NULL;
	struct jwtsign_keys *keys = NULL;
	struct server *srv = NULL;
	bool demo = false, check = false, fresh = false;
	char err[512];
	char password[32] = "";
	char team[UUID_STR_LEN] = "";
	char host[64];
	unsigned port = 0, unused;
	sigset_t set;
	int rc = 1;

	for (int i = 1; i < argc; i++) {
		const char *v;
		int r;

		if (cli_is_help(argv[i])) {
			fputs(serve_usage, stdout);
			return 0;
		} else if (strcmp(argv[i], "--demo") == 0) {
			demo = true;
		} else if (strcmp(argv[i], "--check-config") == 0) {
			check = true;
		} else if ((r = cli_opt_value(argc, argv, &i, "--listen", &v)) != 0) {
			if (r < 0 || config_set(&cli->cfg, "server", "listen", v, "--listen", err,
						sizeof(err)) != 0) {
				if (r > 0)
					fprintf(stderr, "%s\n", err);
				return EXIT_USAGE;
			}
		} else if ((r = cli_opt_value(argc, argv, &i, "--threads", &v)) != 0) {
			if (r < 0 || config_set(&cli->cfg, "server", "threads", v, "--threads", err,
						sizeof(err)) != 0) {
				if (r > 0)
					fprintf(stderr, "%s\n", err);
				return EXIT_USAGE;
			}
		} else {
			cli_err("serve: unknown argument \"%s\" (see tokend serve --help)", argv[i]);
			return EXIT_USAGE;
		}
	}
	if (check) {
		printf("configuration ok\n");
		return 0;
	}
	/* Signals are taken by sigwait() here; every thread started later
	 * inherits this mask. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	memset(&app, 0, sizeof(app));
	app.cfg = cli->cfg;
	if (cli_store_open(cli, &st, &fresh) != 0)
		goto out;
	if (jwtsign_keys_load(app.cfg.key_dir, app.cfg.algorithm, 1, &keys, err, sizeof(err)) !=
	    0) {
		cli_err("%s", err);
		goto out;
	}
	if (demo && fresh &&
	    cli_demo_create(cli, st, password, sizeof(password), team) != 0) {
		cli_err("cannot create the demo account");
		goto out;
	}
	app.store = st;
	app.keys = keys;
	if (server_start(&app, &srv, &port, err, sizeof(err)) != 0) {
		cli_err("%s", err);
		goto out;
	}
	config_listen_split(app.cfg.listen, host, sizeof(host), &unused);
	log_info("signing with key %s (%s); database %s", jwtsign_current_kid(keys),
		 app.cfg.algorithm, app.cfg.database);
	log_info("listening on http://%s%s%s:%u", strchr(host, ':') ? "[" : "", host,
		 strchr(host, ':') ? "]" : "", port);
	if (password[0] != '\0')
		print_demo(host, port, password, team);
	wait_for_stop(&set);
	server_stop(&srv, SHUTDOWN_GRACE_MS);
	log_info("stopped");
	rc = 0;
out:
	OPENSSL_cleanse(password, sizeof(password));
	jwtsign_keys_free(&keys);
	store_close(&st);
	return rc;
}

int cli_migrate(struct cli *cli, int argc, char **argv)
{
	struct store *st = NULL;
	bool fresh;
	char err[512];
	int version;

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
	if (store_open(cli->cfg.database, cli->cfg.busy_timeout_ms, &st, err, sizeof(err)) != 0 ||
	    store_migrate(st, &version, &fresh, err, sizeof(err)) != 0) {
		cli_err("%s", err);
		store_close(&st);
		return 1;
	}
	printf("database %s at schema version %d\n", cli->cfg.database, version);
	store_close(&st);
	return 0;
}
