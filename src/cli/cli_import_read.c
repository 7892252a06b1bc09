/* SPDX-License-Identifier: MIT */
/*
 * This module implements the reader of `tokend user import` (cli_import.h):
 * CSV (RFC 4180, a header row), JSONL and Django's `manage.py dumpdata
 * auth.user` array, read a record at a time from a FILE. Every field is
 * checked where it is read and every record is bounded (IMPORT_RECORD_MAX),
 * so hostile input ends in one message naming its line, before anything
 * reaches the store. Pure: tests/unit/test_import.c drives it through
 * fmemopen().
 */
#include "cli/cli_import.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <openssl/crypto.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokend/err.h"
#include "tokend/util.h"

enum import_field { F_USERNAME, F_PASSWORD, F_IS_ACTIVE, F_TEAMS, F_COUNT };

static const char *const field_names[F_COUNT] = {"username", "password", "is_active", "teams"};

#define CSV_FIELDS_MAX 16

struct import_reader {
	FILE *fp;
	enum import_format fmt;
	long line;    /* line of the next byte */
	bool started; /* format settled, header / '[' read */
	bool done;
	bool first;               /* django: no element read yet */
	int cols[CSV_FIELDS_MAX]; /* csv: field of each column, -1 none */
	size_t ncols;
	char *buf; /* one record, IMPORT_RECORD_MAX + 1 */
	size_t len;
	size_t off[CSV_FIELDS_MAX + 1]; /* csv: field starts in buf */
	size_t flen[CSV_FIELDS_MAX];
	size_t nfields;
	long rec_line; /* csv: where the record being read starts */
};

struct import_reader *import_reader_new(FILE *fp, enum import_format fmt)
{
	struct import_reader *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->buf = malloc(IMPORT_RECORD_MAX + 1);
	if (r->buf == NULL) {
		free(r);
		return NULL;
	}
	r->fp = fp;
	r->fmt = fmt;
	r->line = 1;
	r->first = true;
	return r;
}

void import_reader_free(struct import_reader **rp)
{
	struct import_reader *r = rp ? *rp : NULL;

	if (r == NULL)
		return;
	OPENSSL_cleanse(r->buf, IMPORT_RECORD_MAX + 1);
	free(r->buf);
	free(r);
	*rp = NULL;
}

enum import_format import_reader_format(const struct import_reader *r)
{
	return r->fmt;
}

static int rd_getc(struct import_reader *r)
{
	int c = getc_unlocked(r->fp);

	if (c == '\n')
		r->line++;
	return c;
}

static void rd_ungetc(struct import_reader *r, int c)
{
	if (c == EOF)
		return;
	if (c == '\n')
		r->line--;
	ungetc(c, r->fp);
}

static bool is_space(int c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int skip_space(struct import_reader *r)
{
	int c;

	while ((c = rd_getc(r)) != EOF && is_space(c))
		;
	return c;
}

/* s (len bytes) quoted for a message: control bytes, quotes and, unless s is
 * UTF-8, bytes >= 0x80 as \xHH; at most 64 bytes of it. */
void import_show(const char *s, size_t len, char *out, size_t outlen)
{
	bool utf8 = util_utf8_valid(s, len);
	size_t o = 0;

	for (size_t i = 0; i < len && o + 8 < outlen; i++) {
		unsigned char c = (unsigned char)s[i];

		if (i == 64) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		if (c < 0x20 || c == 0x7f || c == '"' || c == '\\' || (c >= 0x80 && !utf8))
			o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
		else
			out[o++] = (char)c;
	}
	out[o < outlen ? o : outlen - 1] = '\0';
}

static int fail(char *why, size_t whylen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
	return -1;
}

/* import_hash_check() on s, NUL-terminated and at most PASSWORD_HASH_MAX bytes. */
static bool hash_check(const char *s, size_t len, char *why, size_t whylen);

bool import_hash_check(const char *s, size_t len, char *why, size_t whylen)
{
	char copy[PASSWORD_HASH_MAX + 1];
	bool ok;

	if (len == 0)
		return fail(why, whylen, "empty password"), false;
	if (memchr(s, '\0', len) != NULL)
		return fail(why, whylen, "password holds a NUL byte"), false;
	if (len > PASSWORD_HASH_MAX)
		return fail(why, whylen, "password longer than %d bytes", PASSWORD_HASH_MAX), false;
	memcpy(copy, s, len); /* a CSV field is not NUL-terminated */
	copy[len] = '\0';
	ok = hash_check(copy, len, why, whylen);
	OPENSSL_cleanse(copy, sizeof(copy));
	return ok;
}

static bool hash_check(const char *s, size_t len, char *why, size_t whylen)
{
	static const char algo[] = "pbkdf2_sha256$";
	long iterations;
	const char *salt;
	const char *hash;
	size_t saltlen;

	if (password_parse(s, &iterations, &salt, &saltlen, &hash))
		return true;
	if (strncmp(s, algo, sizeof(algo) - 1) == 0) {
		const char *p = s + sizeof(algo) - 1;
		char *end;
		long long n;

		errno = 0;
		n = strtoll(p, &end, 10);
		if (end == p || *end != '$')
			return fail(why, whylen, "pbkdf2_sha256 hash without an iteration count"),
			       false;
		if (errno != 0 || n < 1 || n > PASSWORD_MAX_ITERATIONS || *p < '1' || *p > '9')
			return fail(why, whylen,
				    "pbkdf2_sha256 iteration count %.*s outside 1 to %ld",
				    (int)(end - p > 24 ? 24 : end - p), p, PASSWORD_MAX_ITERATIONS),
			       false;
		return fail(why, whylen,
			    "malformed pbkdf2_sha256 hash (want "
			    "pbkdf2_sha256$<iterations>$<salt>$<44 base64 characters>)"),
		       false;
	}
	if (s[0] == '!')
		return fail(why, whylen,
			    "an unusable password (Django's \"!\"): no password verifies it"),
		       false;
	{
		size_t k = 0;

		while (k < len && k < 32 &&
		       ((s[k] >= 'a' && s[k] <= 'z') || (s[k] >= '0' && s[k] <= '9') ||
			s[k] == '_'))
			k++;
		if (k > 0 && k < len && s[k] == '$')
			return fail(why, whylen,
				    "hasher \"%.*s\" is not supported: tokend verifies "
				    "pbkdf2_sha256 only",
				    (int)k, s),
			       false;
	}
	return fail(why, whylen,
		    "not an encoded hash: plain passwords are refused (want "
		    "pbkdf2_sha256$<iterations>$<salt>$<hash>)"),
	       false;
}

/* Usernames as `tokend user add` takes them. */
static bool name_check(const char *what, const char *s, size_t len, bool spaces, char *why,
		       size_t whylen)
{
	if (len == 0)
		return fail(why, whylen, "empty %s", what), false;
	if (memchr(s, '\0', len) != NULL)
		return fail(why, whylen, "%s holds a NUL byte", what), false;
	if (len > STORE_NAME_MAX)
		return fail(why, whylen, "%s longer than %d bytes", what, STORE_NAME_MAX), false;
	if (!util_utf8_valid(s, len))
		return fail(why, whylen, "%s is not valid UTF-8", what), false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f || (c == ' ' && !spaces))
			return fail(why, whylen, "%s holds a %s", what,
				    c == ' ' ? "space" : "control character"),
			       false;
	}
	return true;
}

/* The record's fields, as read (not NUL-terminated: lengths given). */
struct raw {
	const char *v[F_COUNT];
	size_t len[F_COUNT];
	int active;    /* -1 not given, else 0 / 1 (JSON) */
	json_t *teams; /* JSON: an array, or NULL */
};

static bool add_team(struct import_rec *rec, const char *s, size_t len, char *why, size_t whylen)
{
	if (rec->n_teams == STORE_IMPORT_TEAMS_MAX)
		return fail(why, whylen, "more than %d teams", STORE_IMPORT_TEAMS_MAX), false;
	if (!name_check("team name", s, len, true, why, whylen))
		return false;
	memcpy(rec->teams[rec->n_teams], s, len);
	rec->teams[rec->n_teams][len] = '\0';
	rec->n_teams++;
	return true;
}

/* Checks the fields and fills rec; why names the user once it is known. */
static int rec_fill(const struct raw *f, struct import_rec *rec, char *why, size_t whylen)
{
	char who[300];
	char reason[320];

	rec->n_teams = 0;
	rec->is_active = true;
	if (f->v[F_USERNAME] == NULL)
		return fail(why, whylen, "no username");
	if (!name_check("username", f->v[F_USERNAME], f->len[F_USERNAME], false, reason,
			sizeof(reason))) {
		import_show(f->v[F_USERNAME], f->len[F_USERNAME], who, sizeof(who));
		return fail(why, whylen, "user \"%s\": %s", who, reason);
	}
	memcpy(rec->username, f->v[F_USERNAME], f->len[F_USERNAME]);
	rec->username[f->len[F_USERNAME]] = '\0';
	import_show(rec->username, f->len[F_USERNAME], who, sizeof(who));
	if (f->v[F_PASSWORD] == NULL)
		return fail(why, whylen, "user \"%s\": no password", who);
	if (!import_hash_check(f->v[F_PASSWORD], f->len[F_PASSWORD], reason, sizeof(reason)))
		return fail(why, whylen, "user \"%s\": %s", who, reason);
	memcpy(rec->hash, f->v[F_PASSWORD], f->len[F_PASSWORD]);
	rec->hash[f->len[F_PASSWORD]] = '\0';
	if (f->active >= 0) {
		rec->is_active = f->active == 1;
	} else if (f->v[F_IS_ACTIVE] != NULL && f->len[F_IS_ACTIVE] > 0) {
		static const char *const yes[] = {"1", "true", "True", "TRUE", "yes", "t"};
		static const char *const no[] = {"0", "false", "False", "FALSE", "no", "f"};
		const char *v = f->v[F_IS_ACTIVE];
		size_t n = f->len[F_IS_ACTIVE];
		bool known = false;

		for (size_t i = 0; i < 6 && !known; i++) {
			if (n == strlen(yes[i]) && memcmp(v, yes[i], n) == 0)
				known = rec->is_active = true;
			else if (n == strlen(no[i]) && memcmp(v, no[i], n) == 0) {
				known = true;
				rec->is_active = false;
			}
		}
		if (!known)
			return fail(why, whylen, "user \"%s\": is_active is not true or false",
				    who);
	}
	if (f->teams != NULL) {
		size_t i;
		json_t *t;

		json_array_foreach(f->teams, i, t) {
			if (!json_is_string(t))
				return fail(why, whylen,
					    "user \"%s\": teams: not a list of strings", who);
			if (!add_team(rec, json_string_value(t), json_string_length(t), reason,
				      sizeof(reason)))
				return fail(why, whylen, "user \"%s\": teams: %s", who, reason);
		}
	} else if (f->v[F_TEAMS] != NULL && f->len[F_TEAMS] > 0) {
		const char *p = f->v[F_TEAMS];
		const char *end = p + f->len[F_TEAMS];

		while (p <= end) {
			const char *semi = memchr(p, ';', (size_t)(end - p));
			const char *stop = semi ? semi : end;

			if (!add_team(rec, p, (size_t)(stop - p), reason, sizeof(reason)))
				return fail(why, whylen, "user \"%s\": teams: %s", who, reason);
			p = stop + 1;
		}
	}
	return 0;
}

/* ---- CSV (RFC 4180) ------------------------------------------------------ */

/* Reads one record into r->buf / r->off / r->flen: 1, 0 at the end, -1. */
static int csv_record(struct import_reader *r, char *why, size_t whylen)
{
	int c = rd_getc(r);

	r->len = 0;
	r->nfields = 0;
	while (c == '\n' || c == '\r') /* blank lines */
		c = rd_getc(r);
	r->rec_line = r->line;
	if (c == EOF)
		return ferror(r->fp) ? fail(why, whylen, "read error: %s", strerror(errno)) : 0;
	for (;;) {
		bool quoted = c == '"';

		if (r->nfields == CSV_FIELDS_MAX)
			return fail(why, whylen, "more than %d fields", CSV_FIELDS_MAX);
		r->off[r->nfields] = r->len;
		if (quoted)
			c = rd_getc(r);
		for (;;) {
			if (quoted && c == '"') {
				c = rd_getc(r);
				if (c != '"') {
					quoted = false;
					if (c != ',' && c != '\n' && c != '\r' && c != EOF)
						return fail(why, whylen,
							    "a character after a closing quote");
					break;
				}
			} else if (quoted && c == EOF) {
				return fail(why, whylen, "a quoted field is not closed");
			} else if (!quoted && (c == ',' || c == '\n' || c == '\r' || c == EOF)) {
				break;
			} else if (!quoted && c == '"') {
				return fail(why, whylen, "a quote inside an unquoted field");
			}
			if (r->len == IMPORT_RECORD_MAX)
				return fail(why, whylen, "a record longer than %d bytes",
					    IMPORT_RECORD_MAX);
			r->buf[r->len++] = (char)c;
			c = rd_getc(r);
		}
		r->flen[r->nfields] = r->len - r->off[r->nfields];
		r->nfields++;
		if (c == ',') {
			c = rd_getc(r);
			continue;
		}
		if (c == '\r') {
			c = rd_getc(r);
			if (c != '\n') {
				rd_ungetc(r, c);
				return fail(why, whylen, "a carriage return not before a newline");
			}
		}
		return 1;
	}
}

static int csv_header(struct import_reader *r, char *why, size_t whylen)
{
	bool seen[F_COUNT] = {false};
	int rc = csv_record(r, why, whylen);

	if (rc <= 0)
		return rc < 0 ? rc : fail(why, whylen, "empty input: no header row");
	for (size_t i = 0; i < r->nfields; i++) {
		const char *name = r->buf + r->off[i];
		size_t n = r->flen[i];
		int f = -1;

		for (int k = 0; k < F_COUNT; k++)
			if (n == strlen(field_names[k]) && memcmp(name, field_names[k], n) == 0)
				f = k;
		if (f < 0) {
			char shown[300];

			import_show(name, n, shown, sizeof(shown));
			return fail(why, whylen,
				    "header: unknown column \"%s\" (username, password, "
				    "is_active, teams)",
				    shown);
		}
		if (seen[f])
			return fail(why, whylen, "header: column %s twice", field_names[f]);
		seen[f] = true;
		r->cols[i] = f;
	}
	r->ncols = r->nfields;
	if (!seen[F_USERNAME] || !seen[F_PASSWORD])
		return fail(why, whylen, "header: the columns username and password are required");
	return 1;
}

static int csv_next(struct import_reader *r, struct import_rec *rec, char *why, size_t whylen)
{
	struct raw f = {.active = -1};
	int rc;

	rc = csv_record(r, why, whylen);
	rec->line = r->rec_line;
	if (rc <= 0)
		return rc;
	if (r->nfields != r->ncols)
		return fail(why, whylen, "%zu fields, the header has %zu", r->nfields, r->ncols);
	for (size_t i = 0; i < r->nfields; i++) {
		f.v[r->cols[i]] = r->buf + r->off[i];
		f.len[r->cols[i]] = r->flen[i];
	}
	return rec_fill(&f, rec, why, whylen) < 0 ? -1 : 1;
}

/* ---- JSON: JSONL lines and dumpdata objects ----------------------------- */

static int json_fields(json_t *obj, bool strict, struct raw *f, char *why, size_t whylen)
{
	const char *key;
	json_t *v;

	json_object_foreach(obj, key, v) {
		int k = -1;

		for (int i = 0; i < F_COUNT; i++)
			if (strcmp(key, field_names[i]) == 0)
				k = i;
		if (!strict && k == F_TEAMS)
			k = -1; /* a dumpdata user has "groups", never "teams" */
		if (k < 0) {
			char shown[300];

			if (!strict)
				continue; /* dumpdata: first_name, groups, ... */
			import_show(key, strlen(key), shown, sizeof(shown));
			return fail(why, whylen, "unknown field \"%s\"", shown);
		}
		if (k == F_IS_ACTIVE) {
			if (!json_is_boolean(v))
				return fail(why, whylen, "is_active is not true or false");
			f->active = json_is_true(v) ? 1 : 0;
		} else if (k == F_TEAMS) {
			if (!json_is_array(v))
				return fail(why, whylen, "teams is not a list");
			f->teams = v;
		} else {
			if (!json_is_string(v))
				return fail(why, whylen, "%s is not a string", field_names[k]);
			f->v[k] = json_string_value(v);
			f->len[k] = json_string_length(v);
		}
	}
	return 0;
}

/* Parses r->buf[0..len) as one JSON object; *out is the caller's. */
static int json_object_of(struct import_reader *r, json_t **out, char *why, size_t whylen)
{
	json_error_t err;

	*out = json_loadb(r->buf, r->len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
	if (*out == NULL)
		return fail(why, whylen, "not valid JSON: %s", err.text);
	if (!json_is_object(*out))
		return fail(why, whylen, "not a JSON object");
	return 0;
}

static int jsonl_next(struct import_reader *r, struct import_rec *rec, char *why, size_t whylen)
{
	struct raw f = {.active = -1};
	json_t *obj = NULL;
	bool blank = true;
	int rc = -1;
	int c;

	do {
		rec->line = r->line;
		r->len = 0;
		blank = true;
		while ((c = rd_getc(r)) != EOF && c != '\n') {
			if (r->len == IMPORT_RECORD_MAX)
				return fail(why, whylen, "a line longer than %d bytes",
					    IMPORT_RECORD_MAX);
			r->buf[r->len++] = (char)c;
			blank = blank && is_space(c);
		}
	} while (blank && c != EOF);
	if (blank)
		return 0;
	if (json_object_of(r, &obj, why, whylen) == 0 &&
	    json_fields(obj, true, &f, why, whylen) == 0)
		rc = rec_fill(&f, rec, why, whylen) < 0 ? -1 : 1;
	json_decref(obj);
	return rc;
}

/* Reads one object of the dumpdata array (its first byte '{' read) into r->buf. */
static int django_object(struct import_reader *r, char *why, size_t whylen)
{
	int depth = 0;
	bool in_string = false, escaped = false;
	int c = '{';

	r->len = 0;
	for (;;) {
		if (c == EOF)
			return fail(why, whylen, "the JSON array ends inside an object");
		if (r->len == IMPORT_RECORD_MAX)
			return fail(why, whylen, "an object longer than %d bytes",
				    IMPORT_RECORD_MAX);
		r->buf[r->len++] = (char)c;
		if (in_string) {
			if (escaped)
				escaped = false;
			else if (c == '\\')
				escaped = true;
			else if (c == '"')
				in_string = false;
		} else if (c == '"') {
			in_string = true;
		} else if (c == '{' || c == '[') {
			depth++;
		} else if ((c == '}' || c == ']') && --depth == 0) {
			return 1;
		}
		c = rd_getc(r);
	}
}

static int django_next(struct import_reader *r, struct import_rec *rec, char *why, size_t whylen)
{
	struct raw f = {.active = -1};
	json_t *obj = NULL;
	json_t *model, *fields;
	int rc = -1;
	int c = skip_space(r);

	rec->line = r->line;
	if (c == ']') {
		c = skip_space(r);
		rec->line = r->line;
		if (c != EOF)
			return fail(why, whylen, "data after the JSON array");
		return 0;
	}
	if (!r->first) {
		if (c != ',')
			return fail(why, whylen, "expected \",\" or \"]\" in the JSON array");
		c = skip_space(r);
		rec->line = r->line;
	}
	r->first = false;
	if (c != '{')
		return fail(why, whylen,
			    c == EOF ? "the JSON array is not closed"
				     : "an element of the JSON array is not an object");
	if (django_object(r, why, whylen) < 0 || json_object_of(r, &obj, why, whylen) < 0)
		goto out;
	model = json_object_get(obj, "model");
	fields = json_object_get(obj, "fields");
	if (!json_is_string(model) ||
	    (strcmp(json_string_value(model), "auth.user") != 0 &&
	     (json_string_length(model) < 5 ||
	      strcmp(json_string_value(model) + json_string_length(model) - 5, ".user") != 0))) {
		fail(why, whylen, "not a user: \"model\" is not \"auth.user\"");
		goto out;
	}
	if (!json_is_object(fields)) {
		fail(why, whylen, "no \"fields\" object");
		goto out;
	}
	if (json_fields(fields, false, &f, why, whylen) == 0)
		rc = rec_fill(&f, rec, why, whylen) < 0 ? -1 : 1;
out:
	json_decref(obj);
	return rc;
}

/* Settles the format from the first byte that is not white space. */
static int start(struct import_reader *r, char *why, size_t whylen)
{
	int c = rd_getc(r);

	if (c == 0xef) { /* a UTF-8 byte order mark, as spreadsheets write */
		if (rd_getc(r) != 0xbb || rd_getc(r) != 0xbf)
			return fail(why, whylen, "not UTF-8 text");
		c = rd_getc(r);
	}
	while (c != EOF && is_space(c))
		c = rd_getc(r);
	if (c == EOF)
		return fail(why, whylen, "empty input");
	if (r->fmt == IMPORT_AUTO)
		r->fmt = c == '[' ? IMPORT_DJANGO : c == '{' ? IMPORT_JSONL : IMPORT_CSV;
	if (r->fmt == IMPORT_DJANGO) {
		if (c != '[')
			return fail(why, whylen,
				    "not a JSON array (manage.py dumpdata auth.user writes one)");
		return 1;
	}
	rd_ungetc(r, c);
	return r->fmt == IMPORT_CSV ? csv_header(r, why, whylen) : 1;
}

int import_next(struct import_reader *r, struct import_rec *rec, long *line, char *why,
		size_t whylen)
{
	int rc = 0;

	if (r->done)
		return 0;
	*line = r->line;
	if (!r->started) {
		r->started = true;
		rc = start(r, why, whylen);
		*line = r->fmt == IMPORT_CSV && r->rec_line > 0 ? r->rec_line : r->line;
		if (rc < 0)
			goto out;
	}
	if (r->fmt == IMPORT_CSV)
		rc = csv_next(r, rec, why, whylen);
	else if (r->fmt == IMPORT_JSONL)
		rc = jsonl_next(r, rec, why, whylen);
	else
		rc = django_next(r, rec, why, whylen);
	*line = rec->line;
out:
	if (rc <= 0)
		r->done = true;
	return rc;
}
