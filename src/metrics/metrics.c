/* SPDX-License-Identifier: MIT */
/*
 * This module implements the metrics of include/tokend/metrics.h. Each
 * thread that counts gets its own block of counters (util_tls), linked
 * into a list under a lock at its first count; after that a count is a
 * relaxed load and store of the thread's own word: no lock, no shared
 * cache line, no read-modify-write (one writer per block). A scrape takes
 * the lock and sums the blocks. A thread that ends adds its block into
 * the retired totals first, so a counter never goes down.
 *
 * Status labels are kept to the statuses tokend sends (anything else is
 * "other") and route labels to the route table's patterns, so the number
 * of series is bounded whatever the requests.
 */
#include "tokend/metrics.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokend/util.h"

#ifndef TOKEND_VERSION
#define TOKEND_VERSION "unknown"
#endif

static const unsigned statuses[] = {200, 201, 204, 400, 401, 403, 404, 405, 408,
				    409, 413, 415, 429, 431, 500, 501, 503};
#define N_STATUS (sizeof(statuses) / sizeof(statuses[0]) + 1) /* + "other" */
#define N_ROUTES (METRICS_ROUTES_MAX + 1)                     /* + "unmatched" */

/* From 50 µs (a verify served from memory) to 5 s (a login that waited in
 * the hash queue); each bound in µs and as the le label prints it. */
static const uint64_t bucket_us[] = {50,     100,     250,     500,    1000,   2500,
				     5000,   10000,   25000,   50000,  100000, 250000,
				     500000, 1000000, 2500000, 5000000};
static const char *const bucket_le[] = {"5e-05", "0.0001", "0.00025", "0.0005", "0.001", "0.0025",
					"0.005", "0.01",   "0.025",   "0.05",   "0.1",   "0.25",
					"0.5",   "1",      "2.5",     "5"};
#define N_BUCKETS (sizeof(bucket_us) / sizeof(bucket_us[0]))

static const char *const login_names[METRICS_LOGIN_N] = {"success", "failure", "throttled",
							 "queue_full"};
static const char *const key_check_names[METRICS_KEY_CHECK_N] = {"signal", "poll", "unknown_kid"};
static const char *const refresh_names[METRICS_REFRESH_N] = {"rotated", "grace_replay",
							     "reuse_revoked", "session_ended"};

typedef _Atomic uint64_t mcount;

/* One thread's counters (or the retired totals). */
struct block {
	mcount requests[N_ROUTES][N_STATUS];
	mcount buckets[N_ROUTES][N_BUCKETS + 1]; /* per bucket, not cumulative; last: > 5 s */
	mcount sum_us[N_ROUTES];
	mcount logins[METRICS_LOGIN_N];
	mcount refresh[METRICS_REFRESH_N];
	mcount issued, deleted, store_errors, store_commits;
	mcount key_checks[METRICS_KEY_CHECK_N];
	mcount key_reads[2]; /* failed, loaded */
	struct block *next;  /* in blocks (lock) */
};

static void block_release(void *p);

static bool enabled;
/* Distinct patterns (a pattern served for GET and POST is one route), and
 * the slot of each route index given to metrics_setup(). */
static const char *route_names[METRICS_ROUTES_MAX];
static size_t n_route_names;
static size_t route_slot[METRICS_ROUTES_MAX];
static size_t n_route_slots;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER; /* guards what follows */
static struct block *blocks;                             /* every live thread's */
static struct block retired;                             /* of threads that ended */
static metrics_gauge_fn gauge_fn;
static void *gauge_arg;

static struct util_tls tls = UTIL_TLS_INIT(sizeof(struct block), block_release);

static uint64_t get(const mcount *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/* Only the block's own thread writes it (or, for retired, under lock). */
static void add(mcount *c, uint64_t n)
{
	atomic_store_explicit(c, get(c) + n, memory_order_relaxed);
}

/* Adds every counter of from into to. */
static void block_add(struct block *to, const struct block *from)
{
	const mcount *f = (const mcount *)from;
	mcount *t = (mcount *)to;

	for (size_t i = 0; i < offsetof(struct block, next) / sizeof(mcount); i++)
		add(&t[i], get(&f[i]));
}

static void block_release(void *p)
{
	struct block *b = p;
	struct block **pp;

	pthread_mutex_lock(&lock);
	for (pp = &blocks; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == b) {
			*pp = b->next;
			break;
		}
	}
	block_add(&retired, b);
	pthread_mutex_unlock(&lock);
	free(b);
}

/* This thread's block, made and registered at its first count; NULL if none can be. */
static struct block *mine(void)
{
	struct block *b = util_tls_get(&tls);

	if (b != NULL)
		return b;
	b = util_tls_make(&tls);
	if (b == NULL)
		return NULL;
	pthread_mutex_lock(&lock);
	b->next = blocks;
	blocks = b;
	pthread_mutex_unlock(&lock);
	return b;
}

void metrics_setup(bool on, const char *const *routes, size_t n)
{
	enabled = on;
	n_route_names = 0;
	n_route_slots = n < METRICS_ROUTES_MAX ? n : METRICS_ROUTES_MAX;
	for (size_t i = 0; i < n_route_slots; i++) {
		size_t j = 0;
		while (j < n_route_names && strcmp(route_names[j], routes[i]) != 0)
			j++;
		if (j == n_route_names)
			route_names[n_route_names++] = routes[i];
		route_slot[i] = j;
	}
}

bool metrics_enabled(void)
{
	return enabled;
}

static size_t status_slot(unsigned status)
{
	for (size_t i = 0; i < N_STATUS - 1; i++)
		if (statuses[i] == status)
			return i;
	return N_STATUS - 1;
}

void metrics_request(size_t route, unsigned status, uint64_t duration_us)
{
	struct block *b;
	size_t k = 0;

	if (!enabled || (b = mine()) == NULL)
		return;
	route = route < n_route_slots ? route_slot[route] : N_ROUTES - 1;
	while (k < N_BUCKETS && duration_us > bucket_us[k])
		k++;
	add(&b->requests[route][status_slot(status)], 1);
	add(&b->buckets[route][k], 1);
	add(&b->sum_us[route], duration_us);
}

void metrics_login(enum metrics_login outcome)
{
	struct block *b;

	if (enabled && (unsigned)outcome < METRICS_LOGIN_N && (b = mine()) != NULL)
		add(&b->logins[outcome], 1);
}

void metrics_refresh(enum metrics_refresh outcome)
{
	struct block *b;

	if (enabled && (unsigned)outcome < METRICS_REFRESH_N && (b = mine()) != NULL)
		add(&b->refresh[outcome], 1);
}

void metrics_api_tokens_issued(long n)
{
	struct block *b;

	if (enabled && n > 0 && (b = mine()) != NULL)
		add(&b->issued, (uint64_t)n);
}

void metrics_api_tokens_deleted(long n)
{
	struct block *b;

	if (enabled && n > 0 && (b = mine()) != NULL)
		add(&b->deleted, (uint64_t)n);
}

void metrics_store_error(void)
{
	struct block *b;

	if (enabled && (b = mine()) != NULL)
		add(&b->store_errors, 1);
}

void metrics_store_commit(void)
{
	struct block *b;

	if (enabled && (b = mine()) != NULL)
		add(&b->store_commits, 1);
}

void metrics_key_check(enum metrics_key_check why, bool read, bool loaded)
{
	struct block *b;

	if (!enabled || (unsigned)why >= METRICS_KEY_CHECK_N || (b = mine()) == NULL)
		return;
	add(&b->key_checks[why], 1);
	if (read)
		add(&b->key_reads[loaded ? 1 : 0], 1);
}

void metrics_gauges_source(metrics_gauge_fn fn, void *arg)
{
	pthread_mutex_lock(&lock);
	gauge_fn = fn;
	gauge_arg = arg;
	pthread_mutex_unlock(&lock);
}

/* Appends a label value, escaped as the text format wants. */
static void put_label(struct util_buf *out, const char *v)
{
	for (; *v != '\0'; v++) {
		if (*v == '\\' || *v == '"')
			util_buf_add(out, "\\", 1);
		if (*v == '\n')
			util_buf_puts(out, "\\n");
		else
			util_buf_add(out, v, 1);
	}
}

static void put_head(struct util_buf *out, const char *name, const char *type, const char *help)
{
	util_buf_puts(out, "# HELP ");
	util_buf_puts(out, name);
	util_buf_puts(out, " ");
	util_buf_puts(out, help);
	util_buf_puts(out, "\n# TYPE ");
	util_buf_puts(out, name);
	util_buf_puts(out, " ");
	util_buf_puts(out, type);
	util_buf_puts(out, "\n");
}

static void put_u64(struct util_buf *out, uint64_t v)
{
	char num[32];

	snprintf(num, sizeof(num), " %" PRIu64 "\n", v);
	util_buf_puts(out, num);
}

/* name{key="value"} v */
static void put_one(struct util_buf *out, const char *name, const char *key, const char *value,
		    uint64_t v)
{
	util_buf_puts(out, name);
	if (key != NULL) {
		util_buf_puts(out, "{");
		util_buf_puts(out, key);
		util_buf_puts(out, "=\"");
		put_label(out, value);
		util_buf_puts(out, "\"}");
	}
	put_u64(out, v);
}

static const char *route_label(size_t r)
{
	return r < n_route_names ? route_names[r] : "unmatched";
}

static void put_requests(struct util_buf *out, const struct block *t)
{
	char st[16];

	put_head(out, "tokend_http_requests_total", "counter",
		 "Requests answered, by route pattern and status.");
	for (size_t r = 0; r < N_ROUTES; r++) {
		for (size_t s = 0; s < N_STATUS; s++) {
			uint64_t v = get(&t->requests[r][s]);
			if (v == 0)
				continue;
			if (s < N_STATUS - 1)
				snprintf(st, sizeof(st), "%u", statuses[s]);
			else
				snprintf(st, sizeof(st), "other");
			util_buf_puts(out, "tokend_http_requests_total{route=\"");
			put_label(out, route_label(r));
			util_buf_puts(out, "\",status=\"");
			util_buf_puts(out, st);
			util_buf_puts(out, "\"}");
			put_u64(out, v);
		}
	}
}

static void put_histogram(struct util_buf *out, const struct block *t)
{
	static const char name[] = "tokend_http_request_duration_seconds";
	char num[64];

	put_head(out, name, "histogram",
		 "Time from a request's first byte to its answer, by route pattern.");
	for (size_t r = 0; r < N_ROUTES; r++) {
		uint64_t cum = 0, sum = get(&t->sum_us[r]);

		for (size_t k = 0; k <= N_BUCKETS; k++)
			cum += get(&t->buckets[r][k]);
		if (cum == 0)
			continue;
		cum = 0;
		for (size_t k = 0; k <= N_BUCKETS; k++) {
			cum += get(&t->buckets[r][k]);
			util_buf_puts(out, name);
			util_buf_puts(out, "_bucket{route=\"");
			put_label(out, route_label(r));
			util_buf_puts(out, "\",le=\"");
			util_buf_puts(out, k < N_BUCKETS ? bucket_le[k] : "+Inf");
			util_buf_puts(out, "\"}");
			put_u64(out, cum);
		}
		util_buf_puts(out, name);
		util_buf_puts(out, "_sum{route=\"");
		put_label(out, route_label(r));
		snprintf(num, sizeof(num), "\"} %" PRIu64 ".%06" PRIu64 "\n", sum / 1000000u,
			 sum % 1000000u);
		util_buf_puts(out, num);
		put_one(out, "tokend_http_request_duration_seconds_count", "route", route_label(r),
			cum);
	}
}

char *metrics_render(void)
{
	struct block *total = calloc(1, sizeof(*total));
	struct metrics_gauges g = {0, 0, 0};
	struct util_buf out = {0};

	if (total == NULL)
		return NULL;
	pthread_mutex_lock(&lock);
	block_add(total, &retired);
	for (const struct block *b = blocks; b != NULL; b = b->next)
		block_add(total, b);
	if (gauge_fn != NULL)
		gauge_fn(gauge_arg, &g);
	pthread_mutex_unlock(&lock);

	put_head(&out, "tokend_build_info", "gauge", "The running tokend's version (always 1).");
	put_one(&out, "tokend_build_info", "version", TOKEND_VERSION, 1);
	put_requests(&out, total);
	put_histogram(&out, total);
	put_head(&out, "tokend_logins_total", "counter",
		 "Logins (POST /api/auth/jwt/ with valid fields), by outcome.");
	for (size_t i = 0; i < METRICS_LOGIN_N; i++)
		put_one(&out, "tokend_logins_total", "outcome", login_names[i],
			get(&total->logins[i]));
	put_head(&out, "tokend_refresh_total", "counter",
		 "Refreshes of a valid refresh token, by outcome.");
	for (size_t i = 0; i < METRICS_REFRESH_N; i++)
		put_one(&out, "tokend_refresh_total", "outcome", refresh_names[i],
			get(&total->refresh[i]));
	put_head(&out, "tokend_api_tokens_issued_total", "counter", "API tokens issued.");
	put_one(&out, "tokend_api_tokens_issued_total", NULL, NULL, get(&total->issued));
	put_head(&out, "tokend_api_tokens_deleted_total", "counter", "API tokens deleted.");
	put_one(&out, "tokend_api_tokens_deleted_total", NULL, NULL, get(&total->deleted));
	put_head(&out, "tokend_store_errors_total", "counter",
		 "Store operations that failed (database errors, busy, unavailable).");
	put_one(&out, "tokend_store_errors_total", NULL, NULL, get(&total->store_errors));
	put_head(&out, "tokend_store_commits_total", "counter",
		 "COMMITs of write transactions that succeeded (one per write request).");
	put_one(&out, "tokend_store_commits_total", NULL, NULL, get(&total->store_commits));
	put_head(&out, "tokend_key_dir_checks_total", "counter",
		 "Looks at the key directory (SIGHUP, the periodic check, a token of an "
		 "unknown kid), by trigger.");
	for (size_t i = 0; i < METRICS_KEY_CHECK_N; i++)
		put_one(&out, "tokend_key_dir_checks_total", "trigger", key_check_names[i],
			get(&total->key_checks[i]));
	put_head(&out, "tokend_key_reloads_total", "counter",
		 "Full re-reads of the key directory, by outcome (failed: the old keys stay).");
	put_one(&out, "tokend_key_reloads_total", "outcome", "loaded", get(&total->key_reads[1]));
	put_one(&out, "tokend_key_reloads_total", "outcome", "failed", get(&total->key_reads[0]));
	put_head(&out, "tokend_hash_queue_depth", "gauge", "Logins waiting for a hashing thread.");
	put_one(&out, "tokend_hash_queue_depth", NULL, NULL,
		(uint64_t)(g.hash_queue > 0 ? g.hash_queue : 0));
	put_head(&out, "tokend_hash_workers_busy", "gauge", "Hashing threads at work.");
	put_one(&out, "tokend_hash_workers_busy", NULL, NULL,
		(uint64_t)(g.hash_busy > 0 ? g.hash_busy : 0));
	put_head(&out, "tokend_open_connections", "gauge", "Client connections open.");
	put_one(&out, "tokend_open_connections", NULL, NULL,
		(uint64_t)(g.open_connections > 0 ? g.open_connections : 0));
	free(total);
	if (out.failed) {
		free(out.p);
		return NULL;
	}
	return out.p;
}
