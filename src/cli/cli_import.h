/* SPDX-License-Identifier: MIT */
/*
 * This header is the contract of `tokend user import`'s reader: it turns a
 * CSV, JSONL or Django dumpdata stream into checked users, one at a time,
 * with the line each came from. It is pure (a FILE in, records out: no
 * store), so tests/unit/test_import.c drives it through fmemopen().
 */
#ifndef TOKEND_CLI_IMPORT_H
#define TOKEND_CLI_IMPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "tokend/password.h"
#include "tokend/store.h"

#define IMPORT_RECORD_MAX 65536 /* bytes of one CSV record, JSONL line or dumpdata object */
#define IMPORT_BATCH 1000       /* users per transaction */

enum import_format { IMPORT_AUTO, IMPORT_CSV, IMPORT_JSONL, IMPORT_DJANGO };

/* One user as read and checked. Owned by the caller; import_rec_clear wipes it. */
struct import_rec {
	long line; /* where the record starts, 1-based */
	char username[STORE_NAME_MAX + 1];
	char hash[PASSWORD_HASH_MAX + 1];
	bool is_active; /* default true */
	size_t n_teams;
	char teams[STORE_IMPORT_TEAMS_MAX][STORE_NAME_MAX + 1];
};

struct import_reader; /* opaque */

/*
 * A reader of fp (not closed by it) in format fmt; IMPORT_AUTO looks at the
 * first byte that is not white space: '[' is Django's dumpdata, '{' JSONL,
 * anything else CSV. NULL when out of memory.
 */
struct import_reader *import_reader_new(FILE *fp, enum import_format fmt);
/* Frees r (wiping its buffer); clears *r; accepts NULL. */
void import_reader_free(struct import_reader **r);

/*
 * Reads the next user into *rec. Returns 1 with a user, 0 at the end of the
 * input, or -1 with *line the input line at fault and why (NUL-terminated,
 * quoting the username when one was read, escaped for a terminal) saying
 * what is wrong: malformed CSV or JSON, a missing or unknown field, a
 * username that is empty, longer than STORE_NAME_MAX bytes, not UTF-8 or
 * holding a NUL, a space or a control character, a password that is not a
 * hash tokend verifies (plain text, another hasher, an iteration count
 * outside 1 to PASSWORD_MAX_ITERATIONS), an empty input, a record longer
 * than IMPORT_RECORD_MAX. After -1 the reader is done.
 */
int import_next(struct import_reader *r, struct import_rec *rec, long *line, char *why,
		size_t whylen);

/* The format the reader settled on (after the first import_next). */
enum import_format import_reader_format(const struct import_reader *r);

/*
 * Checks an encoded password hash as tokend will verify it. Returns true, or
 * false with why saying what it is instead (plain text, another hasher,
 * Django's unusable "!", a bad iteration count, malformed).
 */
bool import_hash_check(const char *s, size_t len, char *why, size_t whylen);

/*
 * s (len bytes) quoted for a message into out: control bytes, quotes and
 * backslashes, and bytes >= 0x80 unless s is UTF-8, as \xHH; at most 64
 * bytes of s, then "...".
 */
void import_show(const char *s, size_t len, char *out, size_t outlen);

/* `tokend user import ...` (argv[0] is "import"). */
struct cli;
int cli_user_import(struct cli *cli, int argc, char **argv);

#endif
