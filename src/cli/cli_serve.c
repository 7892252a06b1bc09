/* SPDX-License-Identifier: MIT */
/*
 * This module implements `tokend serve`: start-up in order (store,
 * migrations, keys, server, sweeper of sweeper.c), the demo account of a
 * fresh database, the key watcher (a periodic check of the key directory),
 * and the signal loop: SIGINT/SIGTERM stop cleanly, SIGHUP reloads the
 * signing keys. Under a service manager (notify.h) it serves the socket
 * handed over, says READY=1 once it serves and STOPPING=1 when it stops,
 * and pings the watchdog from the signal loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli_internal.h"
#include "cli/sweeper.h"
#include "tokend/app.h"
#include "tokend/err.h"
#include "tokend/keys.h"
#include "tokend/log.h"
#include "tokend/metrics.h"
#include "tokend/notify.h"
#include "tokend/password.h"
#include "tokend/router.h"
#include "tokend/server.h"
#include "tokend/store.h"
#include "tokend/throttle.h"
#include "tokend/util.h"

#define SHUTDOWN_GRACE_MS 10000

static const char serve_usage[] =
	"usage: tokend [global options] serve [--listen ADDR:PORT] [--threads N] [--demo]\n"
	"                                     [--check-config]\n"
	"\n"
	"  --listen ADDR:PORT  address to serve (server.listen, default 127.0.0.1:8000;\n"
	"                      port 0 picks a free one, printed at start)\n"
	"  --threads N         HTTP threads (server.threads; 0 = two per CPU)\n"
	"  --demo              on a brand-new database, create a demo user and team\n"
	"                      and print their credentials once\n"
	"  --check-config      validate the configuration, print every key's effective\n"
	"                      value and exit\n";

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

/*
 * Writes the demo account to DIR/demo-credentials (mode 0600), DIR being
 * the SQLite database's directory (var/ for `make run`) or, for a
 * PostgreSQL target, the key directory's parent: README's walkthrough
 * reads the password there instead of from a terminal. key=value lines,
 * read with sed, never sourced. Returns 0 and the path, or -1 (logged).
 */
static int demo_file_write(const struct config *cfg, const char *password, const char *team,
			   char *path, size_t pathlen)
{
	const char *base = cfg->database;
	const char *slash;
	char text[256];
	int fd, n;
	ssize_t w;

	if (strstr(base, "://") != NULL || strchr(base, '=') != NULL)
		base = cfg->key_dir;
	slash = strrchr(base, '/');
	if (slash == NULL)
		n = snprintf(path, pathlen, "demo-credentials");
	else
		n = snprintf(path, pathlen, "%.*s/demo-credentials", (int)(slash - base), base);
	if (n < 0 || (size_t)n >= pathlen)
		return -1;
	n = snprintf(text, sizeof(text),
		     "# tokend serve --demo: the demo account of a new database (mode 0600)\n"
		     "username=demo\npassword=%s\nteam=%s\n",
		     password, team);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 || fchmod(fd, 0600) != 0) {
		log_warn("demo: cannot write %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		OPENSSL_cleanse(text, sizeof(text));
		return -1;
	}
	w = write(fd, text, (size_t)n);
	OPENSSL_cleanse(text, sizeof(text));
	if (close(fd) != 0 || w != n) {
		log_warn("demo: cannot write %s", path);
		unlink(path);
		return -1;
	}
	return 0;
}

static void print_demo(const struct config *cfg, const char *host, unsigned port,
		       const char *password, const char *team)
{
	char h[80];
	char path[4200];

	snprintf(h, sizeof(h), "%s%s%s", strchr(host, ':') ? "[" : "", host,
		 strchr(host, ':') ? "]" : "");
	printf("tokend: a demo account was created on this new database (shown once):\n"
	       "  username: demo\n"
	       "  password: %s\n"
	       "  team:     demo (%s)\n"
	       "Log in with:\n"
	       "  curl -X POST http://%s:%u/api/auth/jwt/ -d username=demo -d 'password=%s'\n",
	       password, team, h, port, password);
	if (demo_file_write(cfg, password, team, path, sizeof(path)) == 0)
		printf("(also in %s, mode 0600)\n", path);
	fflush(stdout);
}

/*
 * The key watcher (issue 13): every keys.reload_interval seconds looks at
 * the key directory and reloads it when it changed, so that a key copied
 * into it (or retired from it) reaches this instance without a signal.
 * Logging and the keep-the-old-keys rule are jwtsign_keys_refresh()'s.
 */
struct keywatch {
	struct jwtsign_keys *keys;
	long interval;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stop;
};

static void *keywatch_main(void *p)
{
	struct keywatch *kw = p;

	pthread_mutex_lock(&kw->lock);
	while (!kw->stop) {
		struct timespec until;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += kw->interval;
		while (!kw->stop && pthread_cond_timedwait(&kw->wake, &kw->lock, &until) == 0)
			;
		if (kw->stop)
			break;
		pthread_mutex_unlock(&kw->lock);
		jwtsign_keys_refresh(kw->keys, JWTSIGN_RELOAD_POLL);
		pthread_mutex_lock(&kw->lock);
	}
	pthread_mutex_unlock(&kw->lock);
	return NULL;
}

/* Starts the watcher unless interval is 0 (then kw->interval stays 0). */
static int keywatch_start(struct keywatch *kw, struct jwtsign_keys *keys, long interval)
{
	memset(kw, 0, sizeof(*kw));
	if (interval <= 0)
		return 0;
	kw->keys = keys;
	pthread_mutex_init(&kw->lock, NULL);
	pthread_cond_init(&kw->wake, NULL);
	if (pthread_create(&kw->thread, NULL, keywatch_main, kw) != 0) {
		pthread_mutex_destroy(&kw->lock);
		pthread_cond_destroy(&kw->wake);
		return TOKEND_ENOMEM;
	}
	kw->interval = interval;
	return 0;
}

static void keywatch_stop(struct keywatch *kw)
{
	if (kw->interval <= 0)
		return;
	pthread_mutex_lock(&kw->lock);
	kw->stop = true;
	pthread_cond_signal(&kw->wake);
	pthread_mutex_unlock(&kw->lock);
	pthread_join(kw->thread, NULL);
	pthread_mutex_destroy(&kw->lock);
	pthread_cond_destroy(&kw->wake);
	kw->interval = 0;
}

/*
 * Allocates the login throttle tables of app->cfg (a limit of 0 leaves its
 * table NULL: off). Each is resident whole from here on.
 */
static int throttle_start(struct app *app)
{
	const struct config *c = &app->cfg;
	size_t n = (size_t)c->throttle_entries;
	char per_client[64] = "off", per_user[64] = "off";

	if (c->login_client_failures > 0) {
		app->login_client =
			throttle_new(n, c->login_client_failures, c->login_client_window);
		if (app->login_client == NULL)
			return TOKEND_ENOMEM;
	}
	if (c->login_user_failures > 0) {
		app->login_user = throttle_new(n, c->login_user_failures, c->login_user_window);
		if (app->login_user == NULL)
			return TOKEND_ENOMEM;
	}
	if (c->login_client_failures > 0)
		snprintf(per_client, sizeof(per_client), "%ld failures in %ld s",
			 c->login_client_failures, c->login_client_window);
	if (c->login_user_failures > 0)
		snprintf(per_user, sizeof(per_user), "%ld failures in %ld s",
			 c->login_user_failures, c->login_user_window);
	log_info("throttle: login limits %s per (username, client), %s per username; "
		 "%zu KiB of tables",
		 per_client, per_user,
		 (throttle_bytes(app->login_client) + throttle_bytes(app->login_user)) / 1024);
	return 0;
}

/*
 * Waits for SIGINT/SIGTERM; SIGHUP reloads the signing keys. With a
 * watchdog asked for (WATCHDOG_USEC), sends WATCHDOG=1 at once and then
 * every half interval, as sd_watchdog_enabled(3) advises, waking from
 * sigtimedwait() for it: the ping comes from the thread that would also
 * stop the server, so a main thread stuck (in a reload, say) goes unpinged.
 */
static void wait_for_stop(const sigset_t *set, struct jwtsign_keys *keys)
{
	uint64_t usec = notify_watchdog_usec();
	uint64_t every = usec > 1 ? usec / 2 : usec; /* WATCHDOG_USEC=1 still pings */
	uint64_t next = util_mono_us();

	for (;;) {
		int sig = 0;

		if (every > 0) {
			uint64_t now = util_mono_us(), wait;
			struct timespec ts;

			if (now >= next) {
				if (notify_send("WATCHDOG=1") != 0)
					log_debug("notify: cannot send WATCHDOG=1");
				next = now + every;
			}
			wait = next - now;
			ts.tv_sec = (time_t)(wait / 1000000u);
			ts.tv_nsec = (long)(wait % 1000000u) * 1000;
			sig = sigtimedwait(set, NULL, &ts);
			if (sig < 0) /* EAGAIN: time to ping; EINTR */
				continue;
		} else if (sigwait(set, &sig) != 0) {
			continue;
		}
		if (sig == SIGHUP) {
			jwtsign_keys_refresh(keys, JWTSIGN_RELOAD_SIGNAL); /* logs either way */
			continue;
		}
		log_info("%s received: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
		return;
	}
}

/* Counting on or off, the route table's patterns as route labels. */
static void metrics_serve_setup(bool enabled)
{
	const char *names[METRICS_ROUTES_MAX];
	size_t n;
	const struct route *routes = router_routes(&n);

	if (n > METRICS_ROUTES_MAX)
		n = METRICS_ROUTES_MAX;
	for (size_t i = 0; i < n; i++)
		names[i] = routes[i].pattern;
	metrics_setup(enabled, names, n);
}

int cli_serve(struct cli *cli, int argc, char **argv)
{
	struct app app;
	struct store *st = NULL;
	struct jwtsign_keys *keys = NULL;
	struct server *srv = NULL;
	bool demo = false, check = false, fresh = false;
	long horizon;
	char err[512];
	char password[32] = "";
	char team[UUID_STR_LEN] = "";
	struct server_listen where = {.fd = -1};
	char shown[CONFIG_STR_MAX];
	unsigned port = 0;
	char status[160];
	int inherited;
	sigset_t set;
	struct sweeper sweeper;
	struct keywatch keywatch;
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
			cli_err("serve: unknown argument \"%s\" (see tokend serve --help)",
				argv[i]);
			return EXIT_USAGE;
		}
	}
	if (check) {
		/* The effective value of every key, after file, environment and flags. */
		config_dump(&cli->cfg, stdout);
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

	/* The service manager's variables, read before any thread starts
	 * (the store may start one): LISTEN_* are removed from the environment. */
	notify_init();
	inherited = notify_listen_fds();
	if (inherited < 0) {
		cli_err("LISTEN_PID is ours but LISTEN_FDS is not a count of open descriptors");
		return 1;
	}
	if (inherited > 1) {
		/* Several ListenStream= lines: one HTTP listener is all we serve. */
		log_warn("socket activation: %d sockets handed over; serving fd %d, closing the "
			 "other %d",
			 inherited, NOTIFY_LISTEN_FDS_START, inherited - 1);
		for (int fd = NOTIFY_LISTEN_FDS_START + 1; fd < NOTIFY_LISTEN_FDS_START + inherited;
		     fd++)
			close(fd);
	}
	if (inherited > 0)
		where.fd = NOTIFY_LISTEN_FDS_START;

	memset(&app, 0, sizeof(app));
	app.cfg = cli->cfg;
	if (cli_store_open(cli, &st, &fresh, NULL) != 0)
		goto out;
	if (jwtsign_keys_load(app.cfg.key_dir, app.cfg.algorithm, 1, &keys, err, sizeof(err)) !=
	    0) {
		cli_err("%s", err);
		goto out;
	}
	/* Minted as the "iss" / "aud" claims, JSON strings: UTF-8 only. */
	if (!util_utf8_valid(app.cfg.issuer, strlen(app.cfg.issuer)) ||
	    !util_utf8_valid(app.cfg.audience, strlen(app.cfg.audience))) {
		cli_err("tokens.issuer and tokens.audience must be valid UTF-8");
		goto out;
	}
	if (demo && fresh && cli_demo_create(cli, st, password, sizeof(password), team) != 0) {
		cli_err("cannot create the demo account");
		goto out;
	}
	/*
	 * verify checks access tokens' sessions in memory (store.h,
	 * store_session_ended). A token outlives its session's end by at most
	 * its lifetime and the leeway; the 60 s cover clock steps and a reload.
	 * Past the retention of the session ends, a restart could miss old
	 * ends: then verify looks sessions up instead.
	 */
	horizon = app.cfg.access_lifetime + app.cfg.leeway + 60;
	if (horizon > STORE_SESSION_ENDS_KEEP) {
		log_info("store: access tokens outlive a day: verify looks sessions up");
	} else if (store_sessions_watch(st, horizon) != 0) {
		cli_err("cannot load the ended sessions");
		goto out;
	}
	/* Before the HTTP threads start: they read the flag unlocked. */
	jwtsign_keys_reload_on_unknown(keys, true);
	app.store = st;
	app.keys = keys;
	if (throttle_start(&app) != 0) {
		cli_err("cannot allocate the login throttle tables (throttle.entries = %ld)",
			app.cfg.throttle_entries);
		goto out;
	}
	/* Checked when the configuration was read: this parse cannot fail. */
	if (cidr_list_parse(app.cfg.metrics_allowed, &app.metrics_allowed, err, sizeof(err)) != 0) {
		cli_err("metrics.allowed: %s", err);
		goto out;
	}
	metrics_serve_setup(app.cfg.metrics_enabled != 0);
	if (app.cfg.access_log && log_access_buffer_start(app.cfg.access_log_flush_ms) != 0)
		log_warn("access log: no flusher thread; writing each line at once");
	/* The server owns where.fd from here, on every path. */
	if (server_start(&app, &where, &srv, err, sizeof(err)) != 0) {
		where.fd = -1;
		cli_err("%s", err);
		goto out;
	}
	where.fd = -1;
	port = where.port;
	if (sweeper_start(&sweeper, &app) != 0) {
		cli_err("cannot start the sweeper thread");
		server_stop(&srv, SHUTDOWN_GRACE_MS);
		goto out;
	}
	if (keywatch_start(&keywatch, keys, app.cfg.key_reload_interval) != 0) {
		cli_err("cannot start the key watcher thread");
		sweeper_stop(&sweeper);
		server_stop(&srv, SHUTDOWN_GRACE_MS);
		goto out;
	}
	util_dsn_redact(app.cfg.database, shown, sizeof(shown));
	log_info("signing with key %s (%s); database %s", jwtsign_current_kid(keys),
		 app.cfg.algorithm, shown);
	if (app.cfg.key_reload_interval > 0)
		log_info("keys: checking %s for changes every %ld s", app.cfg.key_dir,
			 app.cfg.key_reload_interval);
	snprintf(status, sizeof(status), "http://%s%s%s:%u", strchr(where.host, ':') ? "[" : "",
		 where.host, strchr(where.host, ':') ? "]" : "", port);
	if (inherited > 0)
		log_info("listening on %s (socket activation: inherited fd %d; server.listen %s "
			 "not used)",
			 status, NOTIFY_LISTEN_FDS_START, app.cfg.listen);
	else
		log_info("listening on %s", status);
	if (password[0] != '\0')
		print_demo(&app.cfg, where.host, port, password, team);
	/* The socket is up, the store open, the keys loaded: ready. */
	snprintf(status, sizeof(status), "READY=1\nSTATUS=serving on http://%s%s%s:%u",
		 strchr(where.host, ':') ? "[" : "", where.host, strchr(where.host, ':') ? "]" : "",
		 port);
	if (notify_send(status) != 0)
		log_warn("notify: cannot send READY=1 to NOTIFY_SOCKET");
	if (notify_watchdog_usec() > 0)
		log_info("notify: watchdog every %llu ms",
			 (unsigned long long)(notify_watchdog_usec() / 2000u));
	wait_for_stop(&set, keys);
	if (notify_send("STOPPING=1") != 0)
		log_debug("notify: cannot send STOPPING=1");
	keywatch_stop(&keywatch);
	sweeper_stop(&sweeper);
	server_stop(&srv, SHUTDOWN_GRACE_MS);
	log_info("stopped");
	rc = 0;
out:
	if (where.fd >= 0) /* failed before the server took it */
		close(where.fd);
	log_access_buffer_stop();
	throttle_free(&app.login_client);
	throttle_free(&app.login_user);
	OPENSSL_cleanse(password, sizeof(password));
	jwtsign_keys_free(&keys);
	store_close(&st);
	return rc;
}
