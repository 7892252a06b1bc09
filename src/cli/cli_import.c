/* SPDX-License-Identifier: MIT */
/*
 * This module implements `tokend user import`: users with their encoded
 * password hashes (Django's pbkdf2_sha256, as tokend stores them) read by
 * cli_import_read.c, refused when a username comes twice, and written
 * IMPORT_BATCH at a time, one transaction each (store_user_import). A
 * failure names the input line and the username; nothing of its batch is
 * written, the batches before it stay, and the counts printed say so.
 */
#include "cli/cli_import.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_internal.h"
#include "tokend/err.h"
#include "tokend/util.h"

static const char import_usage[] =
	"usage: tokend [global options] user import [--format csv|jsonl|django] [--update]\n"
	"                                           [FILE|-]\n"
	"\n"
	"Imports users with their password hashes from FILE (default: stdin).\n"
	"  --format csv     a header row naming the columns username, password and\n"
	"                   optionally is_active, teams (team names or uuids\n"
	"                   separated by \";\"); RFC 4180 quoting\n"
	"  --format jsonl   one object per line: {\"username\", \"password\",\n"
	"                   \"is_active\" (optional), \"teams\" (optional, a list)}\n"
	"  --format django  the JSON array of `manage.py dumpdata auth.user`\n"
	"                   (username, password, is_active of each \"fields\")\n"
	"  (no --format: '[' first is django, '{' jsonl, anything else csv)\n"
	"  --update         update existing users (hash, is_active, teams) instead of\n"
	"                   refusing them; a new hash or a disable ends the user's\n"
	"                   sessions\n"
	"\n"
	"password is an encoded hash, pbkdf2_sha256$<iterations>$<salt>$<hash> (as\n"
	"Django makes); plain passwords and other hashers are refused. Teams must\n"
	"exist; users join them as members. Users are written 1000 per transaction:\n"
	"on an error (reported with its input line) the failing batch is not\n"
	"written, the batches before it stay, and the counts printed (added,\n"
	"updated, skipped) are theirs. Exit 0 when every user was imported.\n";

/* Usernames seen so far, to refuse one that comes twice (open addressing). */
struct seen {
	struct seen_slot {
		char *name;
		long line;
	} * slots;
	size_t cap, n;
};

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

/* 0 when added, the line of the first one when name was seen, -1 out of memory. */
static long seen_add(struct seen *t, const char *name, long line)
{
	size_t i;

	if (2 * (t->n + 1) > t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 4096;
		struct seen_slot *slots = calloc(cap, sizeof(*slots));

		if (slots == NULL)
			return -1;
		for (size_t k = 0; k < t->cap; k++) {
			if (t->slots[k].name == NULL)
				continue;
			for (i = fnv1a(t->slots[k].name) & (cap - 1); slots[i].name;
			     i = (i + 1) & (cap - 1))
				;
			slots[i] = t->slots[k];
		}
		free(t->slots);
		t->slots = slots;
		t->cap = cap;
	}
	for (i = fnv1a(name) & (t->cap - 1); t->slots[i].name; i = (i + 1) & (t->cap - 1))
		if (strcmp(t->slots[i].name, name) == 0)
			return t->slots[i].line;
	t->slots[i].name = strdup(name);
	if (t->slots[i].name == NULL)
		return -1;
	t->slots[i].line = line;
	t->n++;
	return 0;
}

static void seen_free(struct seen *t)
{
	for (size_t k = 0; k < t->cap; k++)
		free(t->slots[k].name);
	free(t->slots);
}

struct import_run {
	struct store *st;
	const char *src; /* the input's name for messages */
	bool update;
	struct import_rec *recs;
	struct store_import *users;
	const char *teamv[IMPORT_BATCH][STORE_IMPORT_TEAMS_MAX];
	struct store_import_counts counts;
};

/* Writes recs[0..n); prints why it failed. */
static int flush_batch(struct import_run *run, size_t n)
{
	size_t failed = 0;
	char who[300];
	int err;

	for (size_t i = 0; i < n; i++) {
		run->users[i].username = run->recs[i].username;
		run->users[i].hash = run->recs[i].hash;
		run->users[i].is_active = run->recs[i].is_active;
		run->users[i].n_teams = run->recs[i].n_teams;
		for (size_t j = 0; j < run->recs[i].n_teams; j++)
			run->teamv[i][j] = run->recs[i].teams[j];
		run->users[i].teams = run->teamv[i];
	}
	err = store_user_import(run->st, run->users, n, run->update, util_now(), &run->counts,
				&failed);
	if (err == 0)
		return 0;
	if (failed >= n) {
		cli_err("%s: lines %ld-%ld: %s", run->src, run->recs[0].line, run->recs[n - 1].line,
			tokend_strerror(err));
		return -1;
	}
	import_show(run->recs[failed].username, strlen(run->recs[failed].username), who,
		    sizeof(who));
	if (err == TOKEND_EEXISTS) {
		cli_err("%s:%ld: user \"%s\" already exists (--update updates it)", run->src,
			run->recs[failed].line, who);
	} else if (err == TOKEND_ENOTFOUND) {
		struct store_team t;
		const char *missing = "?";
		char shown[300];

		for (size_t j = 0; j < run->recs[failed].n_teams; j++)
			if (store_team_get(run->st, run->recs[failed].teams[j], &t) ==
			    TOKEND_ENOTFOUND) {
				missing = run->recs[failed].teams[j];
				break;
			}
		import_show(missing, strlen(missing), shown, sizeof(shown));
		cli_err("%s:%ld: user \"%s\": team \"%s\" does not exist", run->src,
			run->recs[failed].line, who, shown);
	} else {
		cli_err("%s:%ld: user \"%s\": %s", run->src, run->recs[failed].line, who,
			tokend_strerror(err));
	}
	return -1;
}

static void wipe_hashes(struct import_run *run, size_t n)
{
	for (size_t i = 0; i < n; i++)
		OPENSSL_cleanse(run->recs[i].hash, sizeof(run->recs[i].hash));
}

static int run_import(struct import_run *run, FILE *fp, enum import_format fmt)
{
	struct import_reader *r = import_reader_new(fp, fmt);
	struct seen seen = {0};
	char why[1024];
	bool input_error = false;
	size_t n = 0;
	long line = 0;
	int rc = -1;
	int got;

	if (r == NULL) {
		cli_err("out of memory");
		return -1;
	}
	for (;;) {
		long first;

		got = import_next(r, &run->recs[n], &line, why, sizeof(why));
		if (got < 0) {
			cli_err("%s:%ld: %s", run->src, line, why);
			input_error = true;
			break;
		}
		if (got > 0) {
			first = seen_add(&seen, run->recs[n].username, run->recs[n].line);
			if (first < 0) {
				cli_err("out of memory");
				break;
			}
			if (first > 0) {
				char who[300];

				import_show(run->recs[n].username, strlen(run->recs[n].username),
					    who, sizeof(who));
				cli_err("%s:%ld: user \"%s\" appears again (first at line %ld)",
					run->src, run->recs[n].line, who, first);
				input_error = true;
				break;
			}
			n++;
		}
		if (n == IMPORT_BATCH || (got == 0 && n > 0)) {
			int f = flush_batch(run, n);

			wipe_hashes(run, n);
			n = 0;
			if (f < 0) {
				input_error = true;
				break;
			}
		}
		if (got == 0) {
			rc = 0;
			break;
		}
	}
	if (input_error && run->counts.added + run->counts.updated + run->counts.skipped == 0)
		cli_err("%s: nothing was written", run->src);
	else if (input_error)
		cli_err("%s: nothing of the failing line's batch was written; the %ld users of "
			"the batches before it were (the counts printed)",
			run->src, run->counts.added + run->counts.updated + run->counts.skipped);
	wipe_hashes(run, n);
	seen_free(&seen);
	import_reader_free(&r);
	return rc;
}

int cli_user_import(struct cli *cli, int argc, char **argv)
{
	enum import_format fmt = IMPORT_AUTO;
	struct import_run *run = NULL;
	const char *path = NULL;
	bool update = false;
	FILE *fp = stdin;
	int rc = 1;

	for (int i = 1; i < argc; i++) {
		const char *v;
		int r;

		if (cli_is_help(argv[i])) {
			fputs(import_usage, stdout);
			return 0;
		} else if (strcmp(argv[i], "--update") == 0) {
			update = true;
		} else if ((r = cli_opt_value(argc, argv, &i, "--format", &v)) != 0) {
			if (r < 0)
				return EXIT_USAGE;
			if (strcmp(v, "csv") == 0)
				fmt = IMPORT_CSV;
			else if (strcmp(v, "jsonl") == 0)
				fmt = IMPORT_JSONL;
			else if (strcmp(v, "django") == 0)
				fmt = IMPORT_DJANGO;
			else {
				cli_err("user import: --format is csv, jsonl or django");
				return EXIT_USAGE;
			}
		} else if (path == NULL && (argv[i][0] != '-' || strcmp(argv[i], "-") == 0)) {
			path = argv[i];
		} else {
			cli_err("user import: unexpected argument \"%s\"", argv[i]);
			return EXIT_USAGE;
		}
	}
	if (path != NULL && strcmp(path, "-") != 0) {
		fp = fopen(path, "rb");
		if (fp == NULL) {
			cli_err("%s: %s", path, strerror(errno));
			return 1;
		}
	}
	run = calloc(1, sizeof(*run));
	if (run != NULL) {
		run->recs = calloc(IMPORT_BATCH, sizeof(*run->recs));
		run->users = calloc(IMPORT_BATCH, sizeof(*run->users));
	}
	if (run == NULL || run->recs == NULL || run->users == NULL) {
		cli_err("out of memory");
		goto out;
	}
	run->src = path != NULL && strcmp(path, "-") != 0 ? path : "<stdin>";
	run->update = update;
	if (cli_store_open(cli, &run->st, NULL, NULL) != 0)
		goto out;
	rc = run_import(run, fp, fmt) == 0 ? 0 : 1;
	printf("added %ld, updated %ld, skipped %ld\n", run->counts.added, run->counts.updated,
	       run->counts.skipped);
out:
	if (run != NULL) {
		store_close(&run->st);
		free(run->recs);
		free(run->users);
		free(run);
	}
	if (fp != stdin)
		fclose(fp);
	return rc;
}
