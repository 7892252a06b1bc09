/* SPDX-License-Identifier: MIT */
/*
 * This header is the contract of the configuration module: one declarative
 * table of options (src/config/config.c) read from built-in defaults, then an
 * INI file, then TOKEND_<SECTION>_<KEY> environment variables, then command
 * line flags, each later source overriding the earlier.
 */
#ifndef TOKEND_CONFIG_H
#define TOKEND_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "tokend/cors.h"

#define CONFIG_STR_MAX 512
#define CONFIG_LISTEN_HOST_MAX 64 /* an IPv6 address in text, and more */
#define CONFIG_CIDRS_MAX 4096     /* CIDR_LIST_MAX entries of CIDR_ADDR_MAX bytes */

struct config {
	/* [server] */
	char listen[CONFIG_STR_MAX]; /* host:port; port 0 picks a free one */
	/* listen split once, when it is set: its numeric host (no brackets), port */
	char listen_host[CONFIG_LISTEN_HOST_MAX];
	unsigned listen_port;
	long threads;                           /* MHD thread pool size; 0 = CPUs */
	long max_connections;                   /* total open connections */
	long per_ip_connections;                /* per peer address at accept; 0 = unlimited,
					* -1 = 128, or 0 with trusted_proxies */
	long per_client_requests;               /* in flight per client address; 0 = unlimited */
	char trusted_proxies[CONFIG_CIDRS_MAX]; /* address list (tokend/cidr.h) */
	long idle_timeout;                      /* seconds a connection may idle */
	long request_timeout;                   /* seconds for a request to arrive whole */
	long max_body;                          /* request body bytes (413 beyond) */
	long max_header;                        /* request line + header bytes (431) */
	long max_json_depth;                    /* nesting of arrays/objects */
	long max_string;                        /* bytes in one string field */
	/* [log] */
	char log_level[16];       /* debug | info | warn | error */
	char log_format[8];       /* text | json */
	long access_log;          /* 1 = one line per request */
	long access_log_flush_ms; /* buffered lines wait at most this; 0 = unbuffered */
	/* [database] */
	char database[CONFIG_STR_MAX]; /* database.url: SQLite path, or PostgreSQL URL/conninfo */
	long busy_timeout_ms;          /* SQLite busy_timeout */
	/* [keys] */
	char key_dir[CONFIG_STR_MAX]; /* signing keys, never in the DB */
	char algorithm[16];           /* of keys created: HS256 | RS256 | ES256 */
	long key_reload_interval;     /* seconds between checks of key_dir; 0 = off */
	/* [tokens] */
	long access_lifetime;  /* seconds */
	long refresh_lifetime; /* seconds */
	long leeway;           /* seconds of clock skew forgiven */
	char issuer[256];      /* "iss" minted and required; "" = none */
	char audience[256];    /* "aud" minted and required; "" = none */
	long refresh_grace;    /* seconds a rotated token may be replayed */
	long session_lifetime; /* seconds from a login to its session's end */
	long purge_interval;   /* seconds between sweeps of expired rows */
	long purge_batch;      /* rows deleted per sweep transaction */
	long api_lifetime;     /* seconds an API token lives by default */
	long api_max_lifetime; /* longest expires_at allowed, from now */
	long api_max_tokens;   /* live tokens per user and team (409 beyond) */
	/* [password] */
	long pbkdf2_iterations; /* for new hashes and re-hashing */
	long hash_workers;      /* hashing threads; 0 = CPUs */
	long hash_queue;        /* waiting logins before 503 */
	long hash_deadline_ms;  /* a queued login older than this: 503 */
	/* [throttle] */
	long login_client_failures; /* per (username, client) per window; 0 = off */
	long login_client_window;   /* seconds */
	long login_user_failures;   /* per username from all clients; 0 = off */
	long login_user_window;     /* seconds */
	long throttle_entries;      /* entries in each of the two tables */
	/* [cors] */
	struct cors_origins cors_origins; /* browser origins allowed; none = CORS off */
	long cors_max_age;                /* seconds a browser may cache a preflight */
	/* [metrics] */
	long metrics_enabled;                 /* 1 = count, and serve GET /metrics */
	char metrics_allowed[CONFIG_STR_MAX]; /* client addresses served /metrics */
};

/* Fills cfg with the built-in defaults. */
void config_defaults(struct config *cfg);

/*
 * Reads the INI file at path into cfg (over what cfg holds). On failure
 * writes "file:line: section.key: reason" (or "file: reason") to errbuf and
 * returns TOKEND_EINVAL (bad key or value) or TOKEND_EIO (unreadable file).
 */
int config_load_file(struct config *cfg, const char *path, char *errbuf, size_t errlen);

/*
 * Applies every TOKEND_<SECTION>_<KEY> variable of the environment; an
 * unknown TOKEND_ variable or bad value gives TOKEND_EINVAL with
 * "env TOKEND_X: reason" in errbuf. TOKEND_CONFIG and TOKEND_BIN (the test
 * suites' pointer to the binary) are not options and are ignored here.
 */
int config_load_env(struct config *cfg, char *errbuf, size_t errlen);

/*
 * Sets one option by "section.key" as if read from a file; origin names the
 * source in error messages (e.g. "--listen"). Returns 0 or TOKEND_EINVAL.
 */
int config_set(struct config *cfg, const char *section, const char *key, const char *value,
	       const char *origin, char *errbuf, size_t errlen);

/* Writes every option as "section.key = value" lines to fp. */
void config_dump(const struct config *cfg, FILE *fp);

#endif
