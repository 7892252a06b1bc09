/* SPDX-License-Identifier: MIT */
/*
 * This suite is tokend's torture test: each operation below runs once
 * without failures (counting its allocations), then again with the 1st,
 * 2nd, 3rd, ... allocation failing (faultinject.h), until a run completes
 * without reaching the injected failure. Every run must end in a clean
 * error return (or a correct success: some failures are absorbed), never
 * a crash, and must leave no block allocated once its objects are freed
 * (the allocator counts outstanding blocks). After a failed store write
 * the database is unchanged (a dump of every table compared with one taken
 * before); after a failed migration or key creation, what is left on disk
 * still opens and completes.
 *
 * Operations: config load; key load, key creation, mint/check/JWKS; body
 * decode; store open + migrate on a fresh file; user add, login, refresh
 * rotation, API token add and delete, team membership, a new password on
 * a seeded database; the router; the logger with its access-log buffer;
 * three operator commands through cli_main() (config file, store open and
 * migrate, password hashing, the write); the refresh and the API-token
 * issue, list and delete handlers, called as the HTTP layer calls them.
 *
 * Cost: every N up to TORTURE_FULL (1000) for each operation, then evenly
 * spaced N up to the operation's count (about TORTURE_RUNS in all, 1500);
 * TORTURE_ALL=1 in the environment tries every N.
 */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "faultinject.h"
#include "handlers/fields.h"
#include "tokend/app.h"
#include "tokend/body.h"
#include "tokend/cli.h"
#include "tokend/config.h"
#include "tokend/err.h"
#include "tokend/handlers.h"
#include "tokend/jwtsign.h"
#include "tokend/log.h"
#include "tokend/router.h"
#include "tokend/store.h"
#include "tokend/util.h"
#include "torture.h"
#include "unit.h"

#define HASH2 \
	"pbkdf2_sha256$2000$saltsaltsaltsaltsaltsb$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y="
#define HASH \
	"pbkdf2_sha256$1000$saltsaltsaltsaltsaltsa$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y="

/* ---- config -------------------------------------------------------------- */

static char conf_path[128];
static struct config conf;

static void conf_setup(void)
{
	config_defaults(&conf);
}

static int conf_run(void)
{
	char err[256];

	return config_load_file(&conf, conf_path, err, sizeof err);
}

static void conf_check(int rc, bool hit)
{
	struct config def;

	(void)hit;
	config_defaults(&def);
	if (rc == 0) {
		ck_assert_int_eq(conf.threads, 3);
		ck_assert_str_eq(conf.issuer, "https://auth.example");
	} else {
		ck_assert(rc == TOKEND_EIO || rc == TOKEND_ENOMEM);
		ck_assert(memcmp(&def, &conf, sizeof def) == 0); /* unchanged */
	}
}

START_TEST(t_config)
{
	static const struct torture t = {"config load", false,      false,  conf_setup,
					 conf_run,      conf_check, nothing};
	FILE *fp;

	snprintf(conf_path, sizeof conf_path, "%s/tokend.conf", base);
	fp = fopen(conf_path, "w");
	ck_assert_ptr_nonnull(fp);
	fputs("[server]\nthreads = 3\nlisten = [::1]:0\n[tokens]\nissuer = https://auth.example\n"
	      "[log]\naccess_log = off\n",
	      fp);
	fclose(fp);
	torture(&t);
}
END_TEST

/* ---- keys ---------------------------------------------------------------- */

static char key_dir[128];
static char new_dir[160];
static struct jwtsign_keys *keys;

static void keys_teardown(void)
{
	jwtsign_keys_free(&keys);
}

static int keys_load_run(void)
{
	char err[256];

	return jwtsign_keys_load(key_dir, "HS256", 0, &keys, err, sizeof err);
}

static void keys_load_check(int rc, bool hit)
{
	struct jwtsign_key_info info[8];

	(void)hit;
	if (rc == 0)
		ck_assert_uint_eq(jwtsign_keys_list(keys, info, 8), 3);
	else
		ck_assert_ptr_null(keys);
}

/* Three keys, one of each algorithm; the ES256 one current. */
static void make_key_dir(void)
{
	char err[256], kid[JWTSIGN_KID_LEN + 1];

	snprintf(key_dir, sizeof key_dir, "%s/keys", base);
	rm_rf(key_dir);
	ck_assert_msg(jwtsign_keys_load(key_dir, "RS256", 1, &keys, err, sizeof err) == 0, "%s",
		      err);
	jwtsign_keys_free(&keys);
	ck_assert_int_eq(jwtsign_key_rotate(key_dir, "HS256", kid, err, sizeof err), 0);
	ck_assert_int_eq(jwtsign_key_rotate(key_dir, "ES256", kid, err, sizeof err), 0);
}

START_TEST(t_keys_load)
{
	static const struct torture t = {"key load",    false,           false,        nothing,
					 keys_load_run, keys_load_check, keys_teardown};
	make_key_dir();
	torture(&t);
}
END_TEST

static void create_setup(void)
{
	snprintf(new_dir, sizeof new_dir, "%s/newkeys", base);
	rm_rf(new_dir);
}

static int create_run(void)
{
	char err[256];

	return jwtsign_keys_load(new_dir, "ES256", 1, &keys, err, sizeof err);
}

/* What a failed creation leaves is no key, or a key set that loads. */
static void create_check(int rc, bool hit)
{
	DIR *d;
	struct dirent *de;
	int files = 0;
	char err[256];

	(void)hit;
	if (rc == 0) {
		ck_assert_ptr_nonnull(keys);
		return;
	}
	ck_assert_ptr_null(keys);
	d = opendir(new_dir);
	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		if (de->d_name[0] == '.')
			continue;
		ck_assert_msg(strcmp(de->d_name, "current") == 0 ||
				      (len > 4 && strcmp(de->d_name + len - 4, ".key") == 0),
			      "left behind: %s", de->d_name);
		files++;
	}
	closedir(d);
	if (files > 0) {
		ck_assert_msg(jwtsign_keys_load(new_dir, "ES256", 0, &keys, err, sizeof err) == 0,
			      "what a failed creation left does not load: %s", err);
		jwtsign_keys_free(&keys);
	}
}

START_TEST(t_keys_create)
{
	static const struct torture t = {"key creation", false,        false,        create_setup,
					 create_run,     create_check, keys_teardown};
	torture(&t);
}
END_TEST

static int mint_run(void)
{
	struct jwtsign_key_info info[8];
	size_t n = jwtsign_keys_list(keys, info, 8);
	struct jwtsign_policy pol = {.now = util_now()};
	char *tok = NULL, *jwks;
	const char *why = NULL;
	int rc = 0;

	/* In a fixed order (RS256, HS256, ES256), so that a failing N repeats. */
	for (size_t i = 0; i + 1 < n; i++)
		for (size_t j = i + 1; j < n; j++)
			if (strcmp(info[j].alg, info[i].alg) > 0) {
				struct jwtsign_key_info tmp = info[i];
				info[i] = info[j];
				info[j] = tmp;
			}
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct jwtsign_claims c = {.token_type = "api",
					   .jti = "6f1c2a4e-8b3d-4c5e-9f7a-0b1c2d3e4f50",
					   .user_id = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
					   .team_uuid = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee",
					   .iat = pol.now,
					   .exp = pol.now + 60,
					   .kid = info[i].kid};
		struct jwtsign_token t;
		rc = jwtsign_mint(keys, &c, &tok);
		if (rc == 0)
			rc = jwtsign_check(keys, tok, strlen(tok), &pol, &t, &why);
		if (rc == 0) {
			pol.full_json = true;
			rc = jwtsign_check(keys, tok, strlen(tok), &pol, &t, &why);
			pol.full_json = false;
		}
		if (rc != 0 && getenv("TORTURE_DEBUG"))
			fprintf(stderr, "n=%ld %s (%s): %d %s\n", cur_n, info[i].kid, info[i].alg,
				rc, rc == TOKEND_EAUTH ? why : "");
		free(tok);
		tok = NULL;
	}
	if (rc != 0)
		return rc;
	jwks = jwtsign_jwks(keys);
	if (jwks == NULL)
		return TOKEND_ENOMEM;
	free(jwks);
	return 0;
}

/*
 * Out of memory while checking reads as a refused token (401). A clean run
 * never refuses a token it minted: an allocation failure inside OpenSSL's
 * RSA blinding refresh leaves the key's next 31 signatures invalid, and
 * jwtsign_mint() then refuses to hand them out (TOKEND_ECRYPTO).
 */
static void mint_check(int rc, bool hit)
{
	if (hit)
		ck_assert(rc == 0 || rc == TOKEND_ENOMEM || rc == TOKEND_ECRYPTO ||
			  rc == TOKEND_EAUTH);
	else
		ck_assert_msg(rc == 0 || rc == TOKEND_ECRYPTO,
			      "after allocation %ld failed, "
			      "a clean run fails: %d",
			      cur_n, rc);
}

static void mint_setup(void)
{
	char err[256];

	ck_assert_int_eq(jwtsign_keys_load(key_dir, "HS256", 0, &keys, err, sizeof err), 0);
}

START_TEST(t_mint_check)
{
	static const struct torture t = {"mint/check/jwks", true,       true,         mint_setup,
					 mint_run,          mint_check, keys_teardown};

	make_key_dir();
	torture(&t);
}
END_TEST

/* ---- body, router, log --------------------------------------------------- */

static int body_run(void)
{
	static const char json[] = "{\"username\": \"alice\", \"password\": \"p\\u00e9\","
				   " \"list\": [1, 2.5, null, {\"a\": [true]}]}";
	static const char form[] = "username=alice&password=p%C3%A9+x&a=1&a=2";
	json_t *out = NULL, *err = NULL, *errors = NULL;
	size_t len;
	int rc;

	rc = body_decode(BODY_JSON, json, sizeof json - 1, 32, &out, &err);
	if (rc == 0)
		rc = field_require_object(out, &err);
	errors = json_object();
	if (rc == 0 && errors == NULL)
		rc = TOKEND_ENOMEM;
	if (rc == 0 && field_string(out, "username", true, 150, errors, &len) == NULL)
		rc = TOKEND_ENOMEM;
	(void)field_string(out, "missing", true, 150, errors, &len);
	json_decref(out);
	json_decref(err);
	out = err = NULL;
	if (rc == 0)
		rc = body_decode(BODY_FORM, form, sizeof form - 1, 32, &out, &err);
	/* a repeated key is one list of its values (body.h) */
	if (rc == 0 && (!json_is_string(field_get(out, "username")) ||
			json_array_size(json_object_get(out, "a")) != 2))
		rc = TOKEND_EINVAL;
	json_decref(out);
	json_decref(err);
	json_decref(errors);
	return rc;
}

static void body_check(int rc, bool hit)
{
	(void)hit;
	/* jansson reports its own allocation failures as parse errors. */
	ck_assert(rc == 0 || rc == TOKEND_ENOMEM || rc == TOKEND_EINVAL);
}

START_TEST(t_body)
{
	static const struct torture t = {"body decode", false,      false,  nothing,
					 body_run,      body_check, nothing};
	torture(&t);
}
END_TEST

static int router_run(void)
{
	char params[HANDLER_MAX_PARAMS][HANDLER_PARAM_MAX], allow[64];
	int err = 0;

	if (router_match("POST", "/api/openapi/token/t/delete/", params, allow, sizeof allow,
			 &err) == NULL ||
	    router_match("PUT", "/api/auth/jwt/", params, allow, sizeof allow, &err) != NULL ||
	    err != TOKEND_EMETHOD)
		return TOKEND_EINVAL;
	return 0;
}

static void router_check(int rc, bool hit)
{
	(void)hit;
	ck_assert_int_eq(rc, 0); /* the router never allocates */
}

START_TEST(t_router)
{
	static const struct torture t = {"router",   false,        false,  nothing,
					 router_run, router_check, nothing};
	torture(&t);
}
END_TEST

static void log_setup(void)
{
	log_set_level(LOG_DEBUG);
	log_set_access(1);
}

static int log_run(void)
{
	int rc = log_access_buffer_start(20);

	log_info("torture %s %d", "line", 1);
	for (int i = 0; i < 3; i++)
		log_access("127.0.0.1", "GET", "/api/openapi/token/\x01\xff/", 200, 123, 45,
			   "0123456789abcdef");
	log_access_buffer_stop();
	log_access("::1", "POST", "/api/auth/jwt/", 201, 1, 2, "0123456789abcdef");
	return rc == 0 ? 0 : TOKEND_ENOMEM;
}

static void log_check(int rc, bool hit)
{
	(void)hit;
	ck_assert(rc == 0 || rc == TOKEND_ENOMEM);
}

static void log_teardown(void)
{
	log_set_access(0);
	log_set_level(LOG_WARN);
}

START_TEST(t_log)
{
	static const struct torture t = {"log",   true,      false,       log_setup,
					 log_run, log_check, log_teardown};
	torture(&t);
}
END_TEST

/* ---- store --------------------------------------------------------------- */

static char db_path[160];
static char seed_path[160];
static struct store *st;
static char *dump_before;
static char schema_ref[1 << 16];

/* Every table's rows (and the schema, and user_version) as text, malloc'd. */
/* -- open + migrate on a fresh file */

static void migrate_setup(void)
{
	snprintf(db_path, sizeof db_path, "%s/m.db", base);
	rm_db(db_path);
	st = NULL;
}

static int migrate_run(void)
{
	char err[256];
	int rc = store_open(db_path, 5000, &st, err, sizeof err);

	if (rc == 0)
		rc = store_migrate(st, NULL, NULL, err, sizeof err);
	return rc;
}

/* A failed migration leaves a file that a clean one completes. */
static void migrate_check(int rc, bool hit)
{
	char err[256];
	char *schema;

	(void)hit;
	if (rc != 0) {
		ck_assert(rc == TOKEND_EDB || rc == TOKEND_ENOMEM);
		store_close(&st);
		ck_assert_int_eq(store_open(db_path, 5000, &st, err, sizeof err), 0);
		ck_assert_msg(store_migrate(st, NULL, NULL, err, sizeof err) == 0,
			      "after a failed migration: %s", err);
	}
	store_close(&st);
	schema = db_dump(db_path, true);
	if (schema_ref[0] == '\0')
		snprintf(schema_ref, sizeof schema_ref, "%s", schema);
	ck_assert_str_eq(schema, schema_ref);
	free(schema);
}

static void migrate_teardown(void)
{
	store_close(&st);
	rm_db(db_path);
}

START_TEST(t_store_migrate)
{
	static const struct torture t = {"store open+migrate", false,       false,
					 migrate_setup,        migrate_run, migrate_check,
					 migrate_teardown};
	torture(&t);
}
END_TEST

/* -- writes on a seeded database */

static char alice[UUID_STR_LEN], red[UUID_STR_LEN];
static struct store_refresh seed_refresh;
static struct store_api_token seed_token;

static void token_row(struct store_api_token *t, const char *jti)
{
	memset(t, 0, sizeof(*t));
	snprintf(t->jti, sizeof t->jti, "%s", jti);
	for (size_t i = 0; i < sizeof t->digest; i++)
		t->digest[i] = (unsigned char)(jti[i] ^ (int)i);
	snprintf(t->user_uuid, sizeof t->user_uuid, "%s", alice);
	snprintf(t->team_uuid, sizeof t->team_uuid, "%s", red);
	snprintf(t->kid, sizeof t->kid, "0123456789abcdef");
	snprintf(t->name, sizeof t->name, "ci");
	t->issued_at = t->updated_at = 1800000000;
	t->expires_at = 1900000000;
}

/* alice (in team Red, one refresh token, one API token) and bob. */
static void make_seed(void)
{
	char err[256], bob[UUID_STR_LEN];
	struct store *s = NULL;

	snprintf(seed_path, sizeof seed_path, "%s/seed.db", base);
	rm_db(seed_path);
	ck_assert_int_eq(store_open(seed_path, 5000, &s, err, sizeof err), 0);
	ck_assert_int_eq(store_migrate(s, NULL, NULL, err, sizeof err), 0);
	ck_assert_int_eq(store_user_add(s, "alice", HASH, alice), 0);
	ck_assert_int_eq(store_user_add(s, "bob", HASH, bob), 0);
	ck_assert_int_eq(store_team_add(s, "Red", red), 0);
	ck_assert_int_eq(store_team_add_member(s, "Red", "alice", "member"), 0);
	memset(&seed_refresh, 0, sizeof seed_refresh);
	snprintf(seed_refresh.jti, UUID_STR_LEN, "11111111-1111-4111-8111-111111111111");
	snprintf(seed_refresh.family, UUID_STR_LEN, "%s", seed_refresh.jti);
	snprintf(seed_refresh.user_uuid, UUID_STR_LEN, "%s", alice);
	snprintf(seed_refresh.kid, sizeof seed_refresh.kid, "0123456789abcdef");
	snprintf(seed_refresh.access_jti, UUID_STR_LEN, "22222222-2222-4222-8222-222222222222");
	seed_refresh.issued_at = 1800000000;
	seed_refresh.expires_at = 1900000000;
	ck_assert_int_eq(store_login_record(s, &seed_refresh), 0);
	token_row(&seed_token, "33333333-3333-4333-8333-333333333333");
	ck_assert_int_eq(store_api_token_add(s, &seed_token, seed_token.jti, 10), 0);
	store_close(&s);
}

static void write_setup(void)
{
	char err[256];

	snprintf(db_path, sizeof db_path, "%s/w.db", base);
	rm_db(db_path);
	copy_file(seed_path, db_path);
	snprintf(err, sizeof err, "%s-wal", seed_path);
	if (access(err, F_OK) == 0) {
		char to[200];
		snprintf(to, sizeof to, "%s-wal", db_path);
		copy_file(err, to);
	}
	ck_assert_int_eq(store_open(db_path, 5000, &st, err, sizeof err), 0);
	dump_before = db_dump(db_path, false);
}

/* The database after rc: unchanged after a failure, changed after a success. */
static void db_check(int rc)
{
	char *now;

	store_close(&st);
	now = db_dump(db_path, false);
	if (rc != 0) {
		ck_assert_msg(strcmp(now, dump_before) == 0,
			      "allocation %ld failed: rc %d, but the database changed", cur_n, rc);
	} else {
		ck_assert_msg(strcmp(now, dump_before) != 0, "a successful write changed nothing");
	}
	free(now);
}

/* A failed write changed nothing; a successful one changed something. */
static void write_check(int rc, bool hit)
{
	(void)hit;
	ck_assert_msg(rc == 0 || rc == TOKEND_EDB || rc == TOKEND_ENOMEM || rc == TOKEND_ECRYPTO,
		      "a failed write returned %d", rc);
	db_check(rc);
}

static void write_teardown(void)
{
	store_close(&st);
	free(dump_before);
	dump_before = NULL;
	rm_db(db_path);
}

static int user_add_run(void)
{
	char uuid[UUID_STR_LEN];

	return store_user_add(st, "carol", HASH, uuid);
}

static int login_run(void)
{
	struct store_refresh r = seed_refresh;

	snprintf(r.jti, UUID_STR_LEN, "44444444-4444-4444-8444-444444444444");
	snprintf(r.family, UUID_STR_LEN, "%s", r.jti);
	r.issued_at += 10;
	return store_login_record(st, &r);
}

static int rotate_run(void)
{
	struct store_refresh next = seed_refresh, replay;
	enum store_rotation outcome;
	int rc;

	snprintf(next.jti, UUID_STR_LEN, "55555555-5555-4555-8555-555555555555");
	next.issued_at += 10;
	rc = store_refresh_rotate(st, seed_refresh.jti, alice, 1800000010, 0, 0, &next, &replay,
				  &outcome);
	return rc == 0 && outcome != STORE_ROTATED ? TOKEND_EINVAL : rc;
}

static int api_add_run(void)
{
	struct store_api_token t;

	token_row(&t, "66666666-6666-4666-8666-666666666666");
	return store_api_token_add(st, &t, t.jti, 10);
}

static int api_delete_run(void)
{
	const char *jtis[] = {seed_token.jti};
	long deleted = 0;
	int rc = store_api_token_delete(st, alice, red, 1800000000, jtis, 1, &deleted);

	return rc == 0 && deleted != 1 ? TOKEND_EINVAL : rc;
}

static int member_run(void)
{
	return store_team_add_member(st, "Red", "bob", "admin");
}

static int set_password_run(void)
{
	return store_user_set_password(st, alice, HASH2);
}

#define WRITE_TEST(fn, label, runner)                                                             \
	START_TEST(fn)                                                                            \
	{                                                                                         \
		static const struct torture t = {label,  false,       false,         write_setup, \
						 runner, write_check, write_teardown};            \
		make_seed();                                                                      \
		torture(&t);                                                                      \
	}                                                                                         \
	END_TEST

WRITE_TEST(t_user_add, "store user add", user_add_run)
WRITE_TEST(t_login, "store login record", login_run)
WRITE_TEST(t_rotate, "store refresh rotate", rotate_run)
WRITE_TEST(t_api_add, "store api token add", api_add_run)
WRITE_TEST(t_api_delete, "store api token delete", api_delete_run)
WRITE_TEST(t_member, "store team add member", member_run)
WRITE_TEST(t_set_password, "store set password", set_password_run)

/* -- the operator commands, in-process through cli_main() on a seeded database */

static char cli_conf[160], cli_stdin[160];

static void cli_setup(void)
{
	FILE *fp;

	write_setup();
	store_close(&st); /* the command opens its own */
	snprintf(cli_conf, sizeof cli_conf, "%s/cli.conf", base);
	snprintf(cli_stdin, sizeof cli_stdin, "%s/password", base);
	fp = fopen(cli_conf, "w");
	ck_assert_ptr_nonnull(fp);
	fprintf(fp,
		"[database]\nurl = %s\n[keys]\ndir = %s\n[password]\n"
		"pbkdf2_iterations = 1\n[log]\nlevel = error\n",
		db_path, key_dir);
	fclose(fp);
	fp = fopen(cli_stdin, "w");
	ck_assert_ptr_nonnull(fp);
	fputs("correct horse battery\n", fp);
	fclose(fp);
	ck_assert_ptr_nonnull(freopen(cli_stdin, "r", stdin));
}

static int cli_run_argv(int argc, const char **argv)
{
	return cli_main(argc, (char **)argv);
}

static int cli_user_add_run(void)
{
	const char *argv[] = {"tokend", "--config", cli_conf,          "user",
			      "add",    "carol",    "--password-stdin"};
	return cli_run_argv(7, argv);
}

static int cli_member_run(void)
{
	const char *argv[] = {"tokend", "--config", cli_conf, "team", "add-member",
			      "Red",    "bob",      "--role", "admin"};
	return cli_run_argv(9, argv);
}

static int cli_purge_run(void)
{
	const char *argv[] = {"tokend", "--config", cli_conf, "user", "disable", "alice"};
	return cli_run_argv(6, argv);
}

/* A failed command exits non-zero and changed nothing. */
static void cli_check(int rc, bool hit)
{
	char *now;

	(void)hit;
	now = db_dump(db_path, false);
	if (rc != 0)
		ck_assert_msg(strcmp(now, dump_before) == 0,
			      "allocation %ld failed: exit %d, but the database changed", cur_n,
			      rc);
	else
		ck_assert_msg(strcmp(now, dump_before) != 0, "the command changed nothing");
	free(now);
}

static void cli_teardown(void)
{
	write_teardown();
	log_set_level(LOG_WARN);
	log_set_access(0);
}

#define CLI_TEST(fn, label, runner)                                                         \
	START_TEST(fn)                                                                      \
	{                                                                                   \
		static const struct torture t = {label,  false,     false,       cli_setup, \
						 runner, cli_check, cli_teardown};          \
		make_seed();                                                                \
		make_key_dir();                                                             \
		torture(&t);                                                                \
	}                                                                                   \
	END_TEST

CLI_TEST(t_cli_user_add, "cli user add", cli_user_add_run)
CLI_TEST(t_cli_member, "cli team add-member", cli_member_run)
CLI_TEST(t_cli_disable, "cli user disable", cli_purge_run)

/* -- handlers, called as the HTTP layer calls them, on a seeded database */

static struct app app;
static struct handler_ctx hctx;
static struct handler_result hres;
static json_t *hbody;
static char bearer[2100], refresh_tok[2048];

static void mint_for_alice(const char *type, const char *jti, char *out, size_t cap)
{
	int64_t now = util_now();
	struct jwtsign_claims c = {
		.token_type = type, .jti = jti, .user_id = alice, .iat = now, .exp = now + 3600};
	char *tok = NULL;

	ck_assert_int_eq(jwtsign_mint(app.keys, &c, &tok), 0);
	snprintf(out, cap, "%s", tok);
	free(tok);
}

static void handler_setup(void)
{
	char err[256];
	char access[2048];

	write_setup(); /* st: the store on a copy of the seed */
	config_defaults(&app.cfg);
	app.store = st;
	if (app.keys == NULL) /* loaded once per test: only the ES256 key signs */
		ck_assert_int_eq(jwtsign_keys_load(key_dir, "HS256", 0, &app.keys, err, sizeof err),
				 0);
	mint_for_alice("access", "77777777-7777-4777-8777-777777777777", access, sizeof access);
	snprintf(bearer, sizeof bearer, "Bearer %s", access);
	mint_for_alice("refresh", seed_refresh.jti, refresh_tok, sizeof refresh_tok);
	memset(&hctx, 0, sizeof hctx);
	memset(&hres, 0, sizeof hres);
	hctx.app = &app;
	hctx.remote = "127.0.0.1";
	hctx.authorization = bearer;
	snprintf(hctx.params[0], sizeof hctx.params[0], "%s", red);
}

static void handler_teardown(void)
{
	json_decref(hres.body);
	free(hres.text);
	memset(&hres, 0, sizeof hres);
	json_decref(hbody);
	hbody = NULL;
	write_teardown();
}

/* A failed request changed nothing; a successful write changed something. */
static void handler_write_check(int rc, bool hit)
{
	(void)hit;
	ck_assert_msg(rc == 0 || rc == TOKEND_ENOMEM || rc == TOKEND_EDB || rc == TOKEND_ECRYPTO ||
			      rc == TOKEND_EAUTH || rc == TOKEND_EINVAL,
		      "allocation %ld failed: rc %d", cur_n, rc);
	if (rc == 0)
		ck_assert(hres.body != NULL || hres.text != NULL);
	db_check(rc);
}

static void handler_read_check(int rc, bool hit)
{
	(void)hit;
	ck_assert_msg(rc == 0 || rc == TOKEND_ENOMEM || rc == TOKEND_EDB || rc == TOKEND_ECRYPTO ||
			      rc == TOKEND_EAUTH,
		      "allocation %ld failed: rc %d", cur_n, rc);
	if (rc == 0)
		ck_assert(hres.body != NULL || hres.text != NULL);
	store_close(&st);
}

static int issue_run(void)
{
	hbody = json_pack("{s:s}", "name", "ci");
	if (hbody == NULL)
		return TOKEND_ENOMEM;
	hctx.body = hbody;
	return handler_authenticated(&hctx, &hres, handler_api_tokens_issue);
}

static int list_run(void)
{
	hbody = json_object();
	if (hbody == NULL)
		return TOKEND_ENOMEM;
	hctx.body = hbody;
	return handler_authenticated(&hctx, &hres, handler_api_tokens_list);
}

static int refresh_run(void)
{
	hbody = json_pack("{s:s}", "refresh", refresh_tok);
	if (hbody == NULL)
		return TOKEND_ENOMEM;
	hctx.body = hbody;
	hctx.authorization = NULL;
	return handler_jwt_refresh(&hctx, &hres);
}

static int delete_run(void)
{
	hbody = json_pack("{s:[s]}", "token_issuer_uuids", seed_token.jti);
	if (hbody == NULL)
		return TOKEND_ENOMEM;
	hctx.body = hbody;
	return handler_authenticated(&hctx, &hres, handler_api_tokens_delete);
}

#define HANDLER_TEST(fn, label, runner, checker)                                                  \
	START_TEST(fn)                                                                            \
	{                                                                                         \
		static const struct torture t = {label,  true,    false,           handler_setup, \
						 runner, checker, handler_teardown};              \
		make_seed();                                                                      \
		make_key_dir();                                                                   \
		torture(&t);                                                                      \
		jwtsign_keys_free(&app.keys);                                                     \
	}                                                                                         \
	END_TEST

HANDLER_TEST(t_h_issue, "handler api token issue", issue_run, handler_write_check)
HANDLER_TEST(t_h_list, "handler api token list", list_run, handler_read_check)
HANDLER_TEST(t_h_refresh, "handler jwt refresh", refresh_run, handler_write_check)
HANDLER_TEST(t_h_delete, "handler api token delete", delete_run, handler_write_check)

static void unchecked_setup(void)
{
	/* tmpfs when there is one: key files and SQLite fsync on every run. */
	char tmpl[] = "/dev/shm/tokend-torture-XXXXXX";

	if (access("/dev/shm", W_OK) != 0)
		memcpy(tmpl, "/tmp/tokend-torture-XXXXXX", sizeof "/tmp/tokend-torture-XXXXXX");

	ck_assert_ptr_nonnull(mkdtemp(tmpl));
	snprintf(base, sizeof base, "%s", tmpl);
}

static void unchecked_teardown(void)
{
	rm_rf(base);
}

int main(void)
{
	Suite *s = suite_create("torture");
	TCase *tc = tcase_create("allocation failures");
	SRunner *sr;
	int failed;

	tcase_add_unchecked_fixture(tc, unchecked_setup, unchecked_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, t_config);
	tcase_add_test(tc, t_keys_load);
	tcase_add_test(tc, t_keys_create);
	tcase_add_test(tc, t_mint_check);
	tcase_add_test(tc, t_body);
	tcase_add_test(tc, t_router);
	tcase_add_test(tc, t_log);
	tcase_add_test(tc, t_store_migrate);
	tcase_add_test(tc, t_user_add);
	tcase_add_test(tc, t_login);
	tcase_add_test(tc, t_rotate);
	tcase_add_test(tc, t_api_add);
	tcase_add_test(tc, t_api_delete);
	tcase_add_test(tc, t_member);
	tcase_add_test(tc, t_set_password);
	tcase_add_test(tc, t_cli_user_add);
	tcase_add_test(tc, t_cli_member);
	tcase_add_test(tc, t_cli_disable);
	tcase_add_test(tc, t_h_issue);
	tcase_add_test(tc, t_h_list);
	tcase_add_test(tc, t_h_refresh);
	tcase_add_test(tc, t_h_delete);
	suite_add_tcase(s, tc);
	log_set_level(LOG_WARN);
	/*
	 * The first log line loads glibc's time zone data and the first
	 * OpenSSL error its per-thread error state, both kept for good: make
	 * them now, not in the first failed run of each test.
	 */
	quiet(true);
	log_error("torture: warming up");
	ERR_raise(ERR_LIB_SYS, 1);
	ERR_clear_error();
	quiet(false);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
