/* SPDX-License-Identifier: MIT */
/*
 * This module implements configuration: one declarative table of options
 * (name, type, bounds, default, help), read in order from the defaults, an
 * INI file (libinih), TOKEND_<SECTION>_<KEY> environment variables and
 * command-line flags. config/tokend.conf documents the same table.
 */
#include "tokend/config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "tokend/cidr.h"
#include "tokend/err.h"
#include "tokend/throttle.h"
#include "tokend/util.h"

/* OPT_CIDRS: an address list (tokend/cidr.h), kept as text and checked here,
 * so a bad entry stops start-up with file:line; users parse it once.
 * OPT_ORIGINS: a list of browser origins, parsed into struct cors_origins
 * here, once; in a file, continued lines and repeats of the key add to it.
 * OPT_ENUM: one of the option's names, exactly (case counts), kept as text:
 * the module that uses it turns it into its own type (the log its level,
 * the key loader its algorithm): config needs neither the log nor crypto. */
enum opt_type {
	OPT_STR,
	OPT_STR_OPT,
	OPT_INT,
	OPT_BOOL,
	OPT_ENUM,
	OPT_LISTEN,
	OPT_CIDRS,
	OPT_ORIGINS
};

/* The names an OPT_ENUM takes, NULL-terminated. */
static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const log_formats[] = {"text", "json", NULL};
static const char *const algorithms[] = {"HS256", "RS256", "ES256", NULL};

struct option_def {
	const char *section;
	const char *key;
	enum opt_type type;
	long min, max;
	size_t offset;
	size_t size; /* for strings */
	const char *def;
	const char *const *names; /* OPT_ENUM */
};

#define STR(sec, k, field, d)                                          \
	{                                                              \
		sec, k, OPT_STR, 0, 0, offsetof(struct config, field), \
			sizeof(((struct config *)0)->field), d, NULL   \
	}
#define INT(sec, k, field, lo, hi, d)                                               \
	{                                                                           \
		sec, k, OPT_INT, lo, hi, offsetof(struct config, field), 0, d, NULL \
	}
#define ENUM(sec, k, field, list, d)                                    \
	{                                                               \
		sec, k, OPT_ENUM, 0, 0, offsetof(struct config, field), \
			sizeof(((struct config *)0)->field), d, list    \
	}
#define TYPED(sec, k, type, field, d)                                \
	{                                                            \
		sec, k, type, 0, 0, offsetof(struct config, field),  \
			sizeof(((struct config *)0)->field), d, NULL \
	}

static const struct option_def options[] = {
	TYPED("server", "listen", OPT_LISTEN, listen, "127.0.0.1:8000"),
	INT("server", "threads", threads, 0, 1024, "0"),
	INT("server", "max_connections", max_connections, 1, 1000000, "1024"),
	/* -1 follows trusted_proxies: 128 for a tokend exposed directly (one
	 * address cannot take every slot), off behind proxies, where every
	 * connection comes from one of them (server.c: per_ip_limit). */
	INT("server", "per_ip_connections", per_ip_connections, -1, 1000000, "-1"),
	INT("server", "per_client_requests", per_client_requests, 0, 1000000, "32"),
	TYPED("server", "trusted_proxies", OPT_CIDRS, trusted_proxies, ""),
	INT("server", "idle_timeout", idle_timeout, 1, 86400, "30"),
	INT("server", "request_timeout", request_timeout, 1, 86400, "30"),
	INT("server", "max_body", max_body, 1, 64L << 20, "65536"),
	INT("server", "max_header", max_header, 1024, 1L << 20, "16384"),
	INT("server", "max_json_depth", max_json_depth, 1, 1000, "32"),
	INT("server", "max_string", max_string, 1, 1L << 20, "4096"),
	ENUM("log", "level", log_level, log_levels, "info"),
	ENUM("log", "format", log_format, log_formats, "text"),
	{"log", "access_log", OPT_BOOL, 0, 1, offsetof(struct config, access_log), 0, "true", NULL},
	INT("log", "access_log_flush_ms", access_log_flush_ms, 0, 60000, "100"),
	/* A SQLite file, or a PostgreSQL URL or conninfo (store.c picks). */
	STR("database", "url", database, "var/tokend.db"),
	INT("database", "busy_timeout_ms", busy_timeout_ms, 0, 600000, "5000"),
	STR("keys", "dir", key_dir, "var/keys"),
	ENUM("keys", "algorithm", algorithm, algorithms, "HS256"),
	INT("keys", "reload_interval", key_reload_interval, 0, 86400, "5"),
	INT("tokens", "access_lifetime", access_lifetime, 1, 366L * 86400, "300"),
	INT("tokens", "refresh_lifetime", refresh_lifetime, 1, 3660L * 86400, "86400"),
	INT("tokens", "leeway", leeway, 0, 3600, "0"),
	TYPED("tokens", "issuer", OPT_STR_OPT, issuer, ""),
	TYPED("tokens", "audience", OPT_STR_OPT, audience, ""),
	INT("tokens", "refresh_grace", refresh_grace, 0, 3600, "10"),
	INT("tokens", "session_lifetime", session_lifetime, 1, 3660L * 86400, "2592000"),
	INT("tokens", "purge_interval", purge_interval, 1, 86400, "300"),
	INT("tokens", "purge_batch", purge_batch, 1, 1000000, "1000"),
	INT("tokens", "api_lifetime", api_lifetime, 60, 3660L * 86400, "7776000"),
	INT("tokens", "api_max_lifetime", api_max_lifetime, 60, 3660L * 86400, "31536000"),
	INT("tokens", "api_max_tokens", api_max_tokens, 1, 1000000, "100"),
	INT("password", "pbkdf2_iterations", pbkdf2_iterations, 1, 100000000, "600000"),
	INT("password", "hash_workers", hash_workers, 0, 1024, "0"),
	INT("password", "hash_queue", hash_queue, 1, 1000000, "64"),
	INT("password", "hash_deadline_ms", hash_deadline_ms, 1, 3600000, "10000"),
	/* Issue 12: tight per (username, client), the ASVS 2.2.1 bound per
	 * username from all clients; 0 failures = that limit off. */
	INT("throttle", "login_client_failures", login_client_failures, 0, THROTTLE_LIMIT_MAX,
	    "10"),
	INT("throttle", "login_client_window", login_client_window, 1, THROTTLE_WINDOW_MAX, "900"),
	INT("throttle", "login_user_failures", login_user_failures, 0, THROTTLE_LIMIT_MAX, "100"),
	INT("throttle", "login_user_window", login_user_window, 1, THROTTLE_WINDOW_MAX, "3600"),
	INT("throttle", "entries", throttle_entries, 1024, 100000000, "100000"),
	TYPED("cors", "allowed_origins", OPT_ORIGINS, cors_origins, ""),
	INT("cors", "max_age", cors_max_age, 0, 86400, "600"),
	{"metrics", "enabled", OPT_BOOL, 0, 1, offsetof(struct config, metrics_enabled), 0, "true",
	 NULL},
	TYPED("metrics", "allowed", OPT_CIDRS, metrics_allowed, "127.0.0.0/8 ::1"),
};

#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

/*
 * Old names still read from a file or as TOKEND_<SECTION>_<KEY>, and never
 * printed: [database] path named the SQLite file before url took a
 * PostgreSQL URL as well.
 */
static const struct {
	const char *section, *key, *to;
} aliases[] = {
	{"database", "path", "url"},
};

#define N_ALIASES (sizeof(aliases) / sizeof(aliases[0]))

static const struct option_def *option_find(const char *section, const char *key)
{
	for (size_t i = 0; i < N_ALIASES; i++)
		if (strcmp(aliases[i].section, section) == 0 && strcmp(aliases[i].key, key) == 0)
			key = aliases[i].to;
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (strcmp(options[i].section, section) == 0 && strcmp(options[i].key, key) == 0)
			return &options[i];
	return NULL;
}

/* The option named by TOKEND_<SECTION>_<KEY> (name, as given), or NULL. */
static const struct option_def *option_find_env(const char *name)
{
	char want[128];

	for (size_t i = 0; i < N_OPTIONS + N_ALIASES; i++) {
		const char *sec = i < N_OPTIONS ? options[i].section
						: aliases[i - N_OPTIONS].section;
		const char *key = i < N_OPTIONS ? options[i].key : aliases[i - N_OPTIONS].key;

		snprintf(want, sizeof(want), "TOKEND_%s_%s", sec, key);
		for (size_t k = 0; want[k] != '\0'; k++)
			want[k] = (char)toupper((unsigned char)want[k]);
		if (strcmp(want, name) == 0)
			return option_find(sec, key);
	}
	return NULL;
}

/*
 * Splits a listen address "host:port" or "[v6]:port" (numeric host) into
 * host (without brackets) and port. Returns 0 or TOKEND_EINVAL.
 */
static int listen_split(const char *listen, char *host, size_t hostlen, unsigned *port)
{
	const char *colon;
	const char *h = listen;
	size_t hlen;
	unsigned char addr[16];
	char *end;
	long p;

	if (listen[0] == '[') {
		const char *close = strchr(listen, ']');
		if (close == NULL || close[1] != ':')
			return TOKEND_EINVAL;
		h = listen + 1;
		hlen = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(listen, ':');
		if (colon == NULL)
			return TOKEND_EINVAL;
		hlen = (size_t)(colon - listen);
	}
	if (hlen == 0 || hlen >= hostlen)
		return TOKEND_EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	if (inet_pton(AF_INET, host, addr) != 1 && inet_pton(AF_INET6, host, addr) != 1)
		return TOKEND_EINVAL;
	if (!isdigit((unsigned char)colon[1]))
		return TOKEND_EINVAL;
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	if (errno != 0 || *end != '\0' || p < 0 || p > 65535)
		return TOKEND_EINVAL;
	*port = (unsigned)p;
	return 0;
}

static int parse_bool(const char *v, long *out)
{
	static const char *const yes[] = {"1", "true", "yes", "on"};
	static const char *const no[] = {"0", "false", "no", "off"};

	for (int i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return TOKEND_EINVAL;
}

static bool enum_valid(const char *const *names, const char *value)
{
	for (size_t i = 0; names[i] != NULL; i++)
		if (strcmp(value, names[i]) == 0)
			return true;
	return false;
}

/* "must be debug, info, warn or error: \"trace\"" */
static void enum_reason(const char *const *names, const char *value, char *reason, size_t rlen)
{
	int n = snprintf(reason, rlen, "must be");
	size_t used = n > 0 ? (size_t)n : rlen;

	for (size_t i = 0; names[i] != NULL && used < rlen; i++) {
		const char *sep = i == 0 ? " " : names[i + 1] == NULL ? " or " : ", ";
		n = snprintf(reason + used, rlen - used, "%s%s", sep, names[i]);
		used = n > 0 ? used + (size_t)n : rlen;
	}
	if (used < rlen)
		snprintf(reason + used, rlen - used, ": \"%.32s\"", value);
}

/* Stores value into the field of opt; reason gets why it was refused. */
static int option_apply(struct config *cfg, const struct option_def *opt, const char *value,
			char *reason, size_t rlen)
{
	char *field = (char *)cfg + opt->offset;
	long n;
	char *end;
	char host[CONFIG_LISTEN_HOST_MAX];
	unsigned port;

	switch (opt->type) {
	case OPT_ORIGINS: {
		struct cors_origins list = {0};
		if (cors_origins_add(&list, value, reason, rlen) != 0)
			return TOKEND_EINVAL;
		memcpy(field, &list, sizeof(list));
		return 0;
	}
	case OPT_INT:
		errno = 0;
		n = strtol(value, &end, 10);
		if (errno != 0 || end == value || *end != '\0') {
			snprintf(reason, rlen, "not an integer: \"%.64s\"", value);
			return TOKEND_EINVAL;
		}
		if (n < opt->min || n > opt->max) {
			snprintf(reason, rlen, "%ld is out of range [%ld, %ld]", n, opt->min,
				 opt->max);
			return TOKEND_EINVAL;
		}
		memcpy(field, &n, sizeof(n));
		return 0;
	case OPT_BOOL:
		if (parse_bool(value, &n) != 0) {
			snprintf(reason, rlen, "not a boolean (true/false): \"%.64s\"", value);
			return TOKEND_EINVAL;
		}
		memcpy(field, &n, sizeof(n));
		return 0;
	case OPT_ENUM:
		if (!enum_valid(opt->names, value)) {
			enum_reason(opt->names, value, reason, rlen);
			return TOKEND_EINVAL;
		}
		break;
	case OPT_LISTEN:
		if (listen_split(value, host, sizeof(host), &port) != 0) {
			snprintf(reason, rlen,
				 "not a numeric ADDRESS:PORT (e.g. 127.0.0.1:8000, [::1]:8000): "
				 "\"%.64s\"",
				 value);
			return TOKEND_EINVAL;
		}
		if (strlen(value) >= opt->size)
			break; /* refused below, with listen_host/port unchanged */
		snprintf(cfg->listen_host, sizeof(cfg->listen_host), "%s", host);
		cfg->listen_port = port;
		break;
	case OPT_CIDRS: {
		struct cidr_list l;
		if (cidr_list_parse(value, &l, reason, rlen) != 0)
			return TOKEND_EINVAL;
		break;
	}
	case OPT_STR_OPT: break;
	case OPT_STR:
		if (value[0] == '\0') {
			snprintf(reason, rlen, "must not be empty");
			return TOKEND_EINVAL;
		}
		break;
	}
	if (strlen(value) >= opt->size) {
		snprintf(reason, rlen, "longer than %zu bytes", opt->size - 1);
		return TOKEND_EINVAL;
	}
	memcpy(field, value, strlen(value) + 1);
	return 0;
}

void config_defaults(struct config *cfg)
{
	char reason[256];

	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < N_OPTIONS; i++) {
		int rc = option_apply(cfg, &options[i], options[i].def, reason, sizeof(reason));
		assert(rc == 0); /* a bad default in the table is our bug */
		(void)rc;
	}
}

int config_set(struct config *cfg, const char *section, const char *key, const char *value,
	       const char *origin, char *errbuf, size_t errlen)
{
	const struct option_def *opt = option_find(section, key);
	char reason[256];

	if (opt == NULL) {
		snprintf(errbuf, errlen, "%s: %s.%s: unknown key", origin, section, key);
		return TOKEND_EINVAL;
	}
	if (option_apply(cfg, opt, value, reason, sizeof(reason)) != 0) {
		snprintf(errbuf, errlen, "%s: %s.%s: %s", origin, section, key, reason);
		return TOKEND_EINVAL;
	}
	return 0;
}

struct ini_ctx {
	struct config *cfg;
	char err[512];
	int failed;
	bool origins_seen; /* later allowed_origins lines of this file add */
};

static int ini_on_line(void *user, const char *section, const char *name, const char *value)
{
	struct ini_ctx *ctx = user;
	const struct option_def *opt;
	char reason[256];

	if (ctx->failed)
		return 1;
	opt = option_find(section, name);
	if (opt == NULL) {
		snprintf(ctx->err, sizeof(ctx->err), "%s.%s: unknown key", section, name);
		ctx->failed = 1;
		return 0;
	}
	/* inih calls us for each continued line of a value (and for a key
	 * repeated); for the origin list both add to what the file set. */
	if (opt->type == OPT_ORIGINS && ctx->origins_seen) {
		if (cors_origins_add(&ctx->cfg->cors_origins, value, reason, sizeof(reason)) != 0) {
			snprintf(ctx->err, sizeof(ctx->err), "%s.%s: %s", section, name, reason);
			ctx->failed = 1;
			return 0;
		}
		return 1;
	}
	if (opt->type == OPT_ORIGINS)
		ctx->origins_seen = true;
	if (option_apply(ctx->cfg, opt, value, reason, sizeof(reason)) != 0) {
		snprintf(ctx->err, sizeof(ctx->err), "%s.%s: %s", section, name, reason);
		ctx->failed = 1;
		return 0;
	}
	return 1;
}

int config_load_file(struct config *cfg, const char *path, char *errbuf, size_t errlen)
{
	struct ini_ctx ctx = {.cfg = cfg};
	struct config tmp = *cfg;
	struct stat st;
	int rc;

	ctx.cfg = &tmp;
	/* fopen() opens a directory, and inih then reads it as empty. */
	if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
		snprintf(errbuf, errlen, "%s: not a regular file", path);
		return TOKEND_EIO;
	}
	rc = ini_parse(path, ini_on_line, &ctx);
	if (rc == -1) {
		snprintf(errbuf, errlen, "%s: cannot open: %s", path, strerror(errno));
		return TOKEND_EIO;
	}
	if (rc == -2) {
		snprintf(errbuf, errlen, "%s: out of memory", path);
		return TOKEND_ENOMEM;
	}
	if (rc > 0) {
		if (ctx.failed)
			snprintf(errbuf, errlen, "%s:%d: %s", path, rc, ctx.err);
		else
			snprintf(errbuf, errlen, "%s:%d: syntax error", path, rc);
		return TOKEND_EINVAL;
	}
	*cfg = tmp;
	return 0;
}

extern char **environ;

/* True when some option lives in the section of len bytes at name
 * (upper case, as in a variable's name). */
static bool section_known(const char *name, size_t len)
{
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (strlen(options[i].section) == len &&
		    strncasecmp(options[i].section, name, len) == 0)
			return true;
	return false;
}

/*
 * TOKEND_<SECTION>_<KEY> (API.md, "Deployment shapes"). A variable whose
 * SECTION is none of ours is not configuration: Kubernetes sets
 * TOKEND_PORT=tcp://10.0.0.1:80, TOKEND_SERVICE_HOST, TOKEND_PORT_8000_TCP_ADDR
 * ... for a Service named tokend, in every pod of the namespace, and those
 * must never stop start-up (a debug line at most). A KEY of a known section
 * that the table lacks is a typo, and an error as in the file. Section names
 * hold no '_', so the first '_' after the prefix ends SECTION.
 */
int config_load_env(struct config *cfg, char *errbuf, size_t errlen)
{
	static const char prefix[] = "TOKEND_";

	for (char **e = environ; *e != NULL; e++) {
		const char *eq = strchr(*e, '=');
		char name[128];
		char section[64];
		size_t nlen;
		const struct option_def *opt = NULL;
		char origin[160];

		if (strncmp(*e, prefix, sizeof(prefix) - 1) != 0 || eq == NULL)
			continue;
		nlen = (size_t)(eq - *e);
		if (nlen >= sizeof(name))
			nlen = sizeof(name) - 1;
		memcpy(name, *e, nlen);
		name[nlen] = '\0';
		/* Not options: where to find the config, and test hooks. */
		if (strcmp(name, "TOKEND_CONFIG") == 0 || strcmp(name, "TOKEND_BIN") == 0)
			continue;
		opt = option_find_env(name);
		snprintf(origin, sizeof(origin), "env %s", name);
		if (opt == NULL) {
			const char *sec = name + sizeof(prefix) - 1;
			const char *us = strchr(sec, '_');

			/* No section of ours: not configuration (Kubernetes' service
			 * variables), ignored. Not logged: the log is set up from
			 * this very configuration, after it is read. */
			if (!section_known(sec, us != NULL ? (size_t)(us - sec) : strlen(sec)))
				continue;
			snprintf(errbuf, errlen, "%s: unknown configuration variable", origin);
			return TOKEND_EINVAL;
		}
		snprintf(section, sizeof(section), "%s", opt->section);
		if (config_set(cfg, section, opt->key, eq + 1, origin, errbuf, errlen) != 0)
			return TOKEND_EINVAL;
	}
	return 0;
}

void config_dump(const struct config *cfg, FILE *fp)
{
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const char *field = (const char *)cfg + options[i].offset;
		long n;

		fprintf(fp, "%s.%s = ", options[i].section, options[i].key);
		switch (options[i].type) {
		case OPT_INT:
			memcpy(&n, field, sizeof(n));
			fprintf(fp, "%ld\n", n);
			break;
		case OPT_BOOL:
			memcpy(&n, field, sizeof(n));
			fprintf(fp, "%s\n", n ? "true" : "false");
			break;
		case OPT_ORIGINS: {
			char text[CORS_MAX_ORIGINS * (CORS_ORIGIN_MAX + 1)];
			cors_origins_format((const struct cors_origins *)(const void *)field, text,
					    sizeof(text));
			fprintf(fp, "%s\n", text);
			break;
		}
		default:
			if (options[i].offset == offsetof(struct config, database)) {
				char shown[CONFIG_STR_MAX];

				util_dsn_redact(field, shown, sizeof(shown));
				fprintf(fp, "%s\n", shown);
			} else {
				fprintf(fp, "%s\n", field);
			}
			break;
		}
	}
}
