/* SPDX-License-Identifier: MIT */
/*
 * This suite tests include/tokend/config.h: the built-in defaults, INI files
 * (with "file:line:" errors), TOKEND_<SECTION>_<KEY> variables, config_set()
 * and config_dump().
 */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tokend/config.h"
#include "tokend/err.h"
#include "unit.h"

extern char **environ;

static char base[64];
static char tmpdir[128];
static char path[192];

/* Removes dir and everything under it. */

static void setup(void)
{
	snprintf(tmpdir, sizeof tmpdir, "%s/XXXXXX", base);
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(path, sizeof path, "%s/tokend.conf", tmpdir);
	/* a stray TOKEND_ variable of the caller's environment must not interfere */
	for (;;) {
		char name[256] = "";
		for (char **e = environ; *e; e++) {
			if (strncmp(*e, "TOKEND_", 7) == 0) {
				size_t n = strcspn(*e, "=");
				if (n < sizeof name) {
					memcpy(name, *e, n);
					name[n] = '\0';
				}
				break;
			}
		}
		if (name[0] == '\0')
			break;
		unsetenv(name);
	}
}

static void teardown(void)
{
	unlink(path);
	rmdir(tmpdir);
}

static void write_file(const char *text)
{
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

/* Loads text into a default config; returns the result, errbuf filled. */
static int load(const char *text, struct config *cfg, char *errbuf, size_t errlen)
{
	config_defaults(cfg);
	write_file(text);
	errbuf[0] = '\0';
	return config_load_file(cfg, path, errbuf, errlen);
}

static void assert_err_at(const char *errbuf, int line)
{
	char want[256];

	snprintf(want, sizeof want, "%s:%d:", path, line);
	ck_assert_msg(strstr(errbuf, want) != NULL, "errbuf \"%s\" lacks \"%s\"", errbuf, want);
}

START_TEST(defaults)
{
	struct config cfg;

	memset(&cfg, 0xa5, sizeof cfg);
	config_defaults(&cfg);
	ck_assert_str_eq(cfg.listen, "127.0.0.1:8000");
	ck_assert_int_eq(cfg.max_body, 65536);
	ck_assert_int_eq(cfg.max_header, 16384);
	ck_assert_int_eq(cfg.max_json_depth, 32);
	ck_assert_int_eq(cfg.max_string, 4096);
	ck_assert_int_eq(cfg.idle_timeout, 30);
	ck_assert_int_eq(cfg.pbkdf2_iterations, 600000);
	ck_assert_int_eq(cfg.access_lifetime, 300);
	ck_assert_int_eq(cfg.refresh_lifetime, 86400);
	ck_assert_str_eq(cfg.algorithm, "HS256");
	ck_assert_str_eq(cfg.database, "var/tokend.db");
	ck_assert_str_eq(cfg.key_dir, "var/keys");
	ck_assert_str_eq(cfg.log_level, "info");
	ck_assert_int_ge(cfg.threads, 0);
	ck_assert_int_gt(cfg.hash_queue, 0);
	ck_assert_int_gt(cfg.hash_deadline_ms, 0);
	ck_assert(cfg.access_log == 0 || cfg.access_log == 1);
}
END_TEST

START_TEST(load_file)
{
	struct config cfg;
	char err[512];

	ck_assert_int_eq(load("; a comment\n"
			      "# another\n"
			      "[server]\n"
			      "threads = 4\n"
			      "listen = 0.0.0.0:8080\n"
			      "max_body = 1024\n"
			      "\n"
			      "[tokens]\n"
			      "access_lifetime = 60\n"
			      "[password]\n"
			      "pbkdf2_iterations = 1000\n"
			      "[log]\n"
			      "access_log = false\n",
			      &cfg, err, sizeof err),
			 0);
	ck_assert_int_eq(cfg.threads, 4);
	ck_assert_str_eq(cfg.listen, "0.0.0.0:8080");
	ck_assert_int_eq(cfg.max_body, 1024);
	ck_assert_int_eq(cfg.access_lifetime, 60);
	ck_assert_int_eq(cfg.pbkdf2_iterations, 1000);
	ck_assert_int_eq(cfg.access_log, 0);
	/* untouched options keep their defaults */
	ck_assert_int_eq(cfg.max_header, 16384);
	ck_assert_int_eq(cfg.refresh_lifetime, 86400);
	ck_assert_str_eq(cfg.algorithm, "HS256");
}
END_TEST

START_TEST(load_empty_file)
{
	struct config cfg;
	char err[512];

	ck_assert_int_eq(load("", &cfg, err, sizeof err), 0);
	ck_assert_str_eq(cfg.listen, "127.0.0.1:8000");
}
END_TEST

START_TEST(unknown_key)
{
	struct config cfg;
	char err[512];

	ck_assert_int_eq(load("[server]\n"
			      "threads = 4\n"
			      "\n"
			      "nope = 1\n",
			      &cfg, err, sizeof err),
			 TOKEND_EINVAL);
	assert_err_at(err, 4);
	ck_assert_msg(strstr(err, "server.nope") != NULL, "errbuf: %s", err);
}
END_TEST

START_TEST(unknown_section)
{
	struct config cfg;
	char err[512], at5[256], at6[256];

	ck_assert_int_eq(load("[server]\n"
			      "threads = 4\n"
			      "\n"
			      "# x\n"
			      "[nope]\n"
			      "x = 1\n",
			      &cfg, err, sizeof err),
			 TOKEND_EINVAL);
	/* the section header or its first key: both are the right place */
	snprintf(at5, sizeof at5, "%s:5:", path);
	snprintf(at6, sizeof at6, "%s:6:", path);
	ck_assert_msg(strstr(err, at5) != NULL || strstr(err, at6) != NULL, "errbuf: %s", err);
	ck_assert_msg(strstr(err, "nope") != NULL, "errbuf: %s", err);
}
END_TEST

START_TEST(key_outside_section)
{
	struct config cfg;
	char err[512];

	ck_assert_int_eq(load("threads = 4\n", &cfg, err, sizeof err), TOKEND_EINVAL);
	assert_err_at(err, 1);
}
END_TEST

START_TEST(syntax_error)
{
	struct config cfg;
	char err[512];

	ck_assert_int_eq(load("[server]\nthreads = 4\nthis is not ini\n", &cfg, err, sizeof err),
			 TOKEND_EINVAL);
	assert_err_at(err, 3);
}
END_TEST

static void bad_value(const char *text, int line)
{
	struct config cfg;
	char err[512];

	ck_assert_msg(load(text, &cfg, err, sizeof err) == TOKEND_EINVAL, "accepted %s", text);
	assert_err_at(err, line);
}

START_TEST(bad_values)
{
	bad_value("[server]\nthreads = -1\n", 2);
	bad_value("[server]\nthreads = 4x\n", 2);
	bad_value("[server]\nthreads = \n", 2);
	bad_value("[server]\nthreads = 0x10\n", 2);
	bad_value("[server]\nthreads = 99999999999999999999999\n", 2);
	bad_value("[server]\n\nmax_body = 0\n", 3);
	bad_value("[server]\nmax_body = -65536\n", 2);
	bad_value("[server]\nmax_body = 1.5\n", 2);
	bad_value("[server]\nidle_timeout = 0\n", 2);
	bad_value("[server]\nmax_json_depth = 0\n", 2);
	bad_value("[server]\nlisten = nonsense\n", 2);
	bad_value("[server]\nlisten = 127.0.0.1:99999\n", 2);
	bad_value("[keys]\nalgorithm = none\n", 2);
	bad_value("[keys]\nalgorithm = HS999\n", 2);
	bad_value("[log]\nlevel = loud\n", 2);
	bad_value("[log]\naccess_log = maybe\n", 2);
	bad_value("[password]\npbkdf2_iterations = 0\n", 2);
	bad_value("[tokens]\naccess_lifetime = -5\n", 2);
}
END_TEST

START_TEST(missing_file)
{
	struct config cfg;
	char err[512] = "";

	config_defaults(&cfg);
	ck_assert_int_eq(config_load_file(&cfg, "/tmp/tokend-no-such-dir/x.conf", err, sizeof err),
			 TOKEND_EIO);
	ck_assert_msg(strstr(err, "/tmp/tokend-no-such-dir/x.conf") != NULL, "errbuf: %s", err);
}
END_TEST

START_TEST(directory_is_not_a_file)
{
	/* fopen() of a directory succeeds on Linux; reading it fails (EISDIR) */
	struct config cfg;
	char err[512] = "";

	config_defaults(&cfg);
	ck_assert_int_eq(config_load_file(&cfg, tmpdir, err, sizeof err), TOKEND_EIO);
	ck_assert_msg(strstr(err, tmpdir) != NULL, "errbuf: %s", err);
}
END_TEST

START_TEST(booleans)
{
	static const struct {
		const char *text;
		long want;
	} cases[] = {
		{"true", 1}, {"false", 0}, {"yes", 1}, {"no", 0},
		{"on", 1},   {"off", 0},   {"1", 1},   {"0", 0},
	};
	struct config cfg;
	char err[512], text[128];

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(text, sizeof text, "[log]\naccess_log = %s\n", cases[i].text);
		ck_assert_msg(load(text, &cfg, err, sizeof err) == 0, "%s: %s", cases[i].text, err);
		ck_assert_msg(cfg.access_log == cases[i].want, "%s gave %ld", cases[i].text,
			      cfg.access_log);
		/* the opposite first, so that a no-op would show */
		cfg.access_log = !cases[i].want;
		ck_assert_int_eq(config_set(&cfg, "log", "access_log", cases[i].text, "--x", err,
					    sizeof err),
				 0);
		ck_assert_int_eq(cfg.access_log, cases[i].want);
	}
}
END_TEST

START_TEST(env)
{
	struct config cfg;
	char err[512] = "";

	config_defaults(&cfg);
	ck_assert_int_eq(setenv("TOKEND_SERVER_THREADS", "3", 1), 0);
	ck_assert_int_eq(setenv("TOKEND_SERVER_LISTEN", "127.0.0.1:0", 1), 0);
	ck_assert_int_eq(setenv("TOKEND_CONFIG", "/nonexistent.conf", 1), 0);
	ck_assert_int_eq(config_load_env(&cfg, err, sizeof err), 0);
	ck_assert_int_eq(cfg.threads, 3);
	ck_assert_str_eq(cfg.listen, "127.0.0.1:0");
	unsetenv("TOKEND_SERVER_LISTEN");
	unsetenv("TOKEND_CONFIG");

	ck_assert_int_eq(setenv("TOKEND_SERVER_THREADS", "3x", 1), 0);
	ck_assert_int_eq(config_load_env(&cfg, err, sizeof err), TOKEND_EINVAL);
	ck_assert_msg(strstr(err, "env TOKEND_SERVER_THREADS") != NULL, "errbuf: %s", err);
	unsetenv("TOKEND_SERVER_THREADS");

	/* an unknown key of a known section is a typo: refused */
	ck_assert_int_eq(setenv("TOKEND_SERVER_NOPE", "1", 1), 0);
	ck_assert_int_eq(config_load_env(&cfg, err, sizeof err), TOKEND_EINVAL);
	ck_assert_msg(strstr(err, "env TOKEND_SERVER_NOPE") != NULL, "errbuf: %s", err);
	unsetenv("TOKEND_SERVER_NOPE");
	ck_assert_int_eq(setenv("TOKEND_SERVER", "1", 1), 0);
	ck_assert_int_eq(config_load_env(&cfg, err, sizeof err), TOKEND_EINVAL);
	unsetenv("TOKEND_SERVER");
	ck_assert_int_eq(setenv("TOKEND_LOG_LEVELS", "debug", 1), 0);
	ck_assert_int_eq(config_load_env(&cfg, err, sizeof err), TOKEND_EINVAL);
	unsetenv("TOKEND_LOG_LEVELS");
}
END_TEST

/*
 * API.md "Deployment shapes": a variable of a section that is not ours, such
 * as those Kubernetes sets for a Service named tokend, is not configuration:
 * ignored, and the real options beside them still apply.
 */
START_TEST(env_foreign_sections)
{
	static const char *const foreign[][2] = {
		{"TOKEND_PORT", "tcp://10.0.0.1:80"},
		{"TOKEND_SERVICE_HOST", "10.0.0.1"},
		{"TOKEND_SERVICE_PORT", "80"},
		{"TOKEND_SERVICE_PORT_HTTP", "80"},
		{"TOKEND_PORT_8000_TCP", "tcp://10.0.0.1:8000"},
		{"TOKEND_PORT_8000_TCP_PROTO", "tcp"},
		{"TOKEND_PORT_8000_TCP_PORT", "8000"},
		{"TOKEND_PORT_8000_TCP_ADDR", "10.0.0.1"},
		{"TOKEND_NOPE_X", "1"},
		{"TOKEND_", "x"},
	};
	struct config cfg;
	char err[512] = "";

	config_defaults(&cfg);
	for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++)
		ck_assert_int_eq(setenv(foreign[i][0], foreign[i][1], 1), 0);
	ck_assert_int_eq(setenv("TOKEND_SERVER_THREADS", "5", 1), 0);
	ck_assert_msg(config_load_env(&cfg, err, sizeof err) == 0, "errbuf: %s", err);
	ck_assert_int_eq(cfg.threads, 5);
	ck_assert_str_eq(cfg.listen, "127.0.0.1:8000");
	/* beside them, a typo in a known section still stops start-up */
	ck_assert_int_eq(setenv("TOKEND_SERVER_THREAD", "5", 1), 0);
	ck_assert_int_eq(config_load_env(&cfg, err, sizeof err), TOKEND_EINVAL);
	ck_assert_msg(strstr(err, "env TOKEND_SERVER_THREAD:") != NULL, "errbuf: %s", err);
	unsetenv("TOKEND_SERVER_THREAD");
	unsetenv("TOKEND_SERVER_THREADS");
	for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++)
		unsetenv(foreign[i][0]);

	/* no TOKEND_ variables at all: nothing changes */
	ck_assert_int_eq(config_load_env(&cfg, err, sizeof err), 0);
	ck_assert_int_eq(cfg.threads, 5);
}
END_TEST

START_TEST(set)
{
	struct config cfg;
	char err[512] = "";

	config_defaults(&cfg);
	ck_assert_int_eq(config_set(&cfg, "server", "listen", "[::1]:9000", "--listen", err,
				    sizeof err),
			 0);
	ck_assert_str_eq(cfg.listen, "[::1]:9000");
	ck_assert_int_eq(config_set(&cfg, "server", "threads", "8", "--threads", err, sizeof err),
			 0);
	ck_assert_int_eq(cfg.threads, 8);

	ck_assert_int_eq(config_set(&cfg, "server", "threads", "-1", "--threads", err, sizeof err),
			 TOKEND_EINVAL);
	ck_assert_msg(strstr(err, "--threads") != NULL, "errbuf: %s", err);
	ck_assert_int_eq(cfg.threads, 8);
	ck_assert_int_eq(config_set(&cfg, "server", "nope", "1", "--nope", err, sizeof err),
			 TOKEND_EINVAL);
	ck_assert_msg(strstr(err, "--nope") != NULL, "errbuf: %s", err);
	ck_assert_int_eq(config_set(&cfg, "nope", "listen", "1", "--nope", err, sizeof err),
			 TOKEND_EINVAL);
}
END_TEST

START_TEST(set_long_string)
{
	struct config cfg;
	char err[512] = "";
	char *v = malloc(CONFIG_STR_MAX + 10);

	ck_assert_ptr_nonnull(v);
	memset(v, 'a', CONFIG_STR_MAX + 9);
	v[CONFIG_STR_MAX + 9] = '\0';
	config_defaults(&cfg);
	ck_assert_int_eq(config_set(&cfg, "database", "url", v, "--database", err, sizeof err),
			 TOKEND_EINVAL);
	ck_assert_str_eq(cfg.database, "var/tokend.db");
	free(v);
}
END_TEST

START_TEST(dump)
{
	struct config cfg;
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&buf, &len);
	char err[512];

	ck_assert_ptr_nonnull(fp);
	config_defaults(&cfg);
	ck_assert_int_eq(config_set(&cfg, "server", "listen", "[::1]:9000", "--listen", err,
				    sizeof err),
			 0);
	config_dump(&cfg, fp);
	fclose(fp);
	ck_assert_ptr_nonnull(buf);
	ck_assert_msg(strstr(buf, "server.listen = [::1]:9000\n") != NULL, "dump: %s", buf);
	ck_assert_msg(strstr(buf, "server.max_body = 65536\n") != NULL, "dump: %s", buf);
	ck_assert_msg(strstr(buf, "tokens.access_lifetime = 300\n") != NULL, "dump: %s", buf);
	ck_assert_msg(strstr(buf, "keys.algorithm = HS256\n") != NULL, "dump: %s", buf);
	/* every line is "section.key = value" */
	for (char *line = buf; *line;) {
		char *nl = strchr(line, '\n');
		ck_assert_ptr_nonnull(nl);
		*nl = '\0';
		ck_assert_msg(strstr(line, " = ") != NULL &&
				      strchr(line, '.') < strstr(line, " = "),
			      "line: %s", line);
		line = nl + 1;
	}
	free(buf);
}
END_TEST

START_TEST(dump_roundtrip)
{
	/* what config_dump writes, fed back as "section.key" pairs, is accepted */
	struct config cfg, again;
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&buf, &len);
	char err[512];

	ck_assert_ptr_nonnull(fp);
	config_defaults(&cfg);
	cfg.threads = 7;
	ck_assert_int_eq(config_set(&cfg, "cors", "allowed_origins",
				    "https://a.example http://127.0.0.1:5000", "--x", err,
				    sizeof err),
			 0);
	config_dump(&cfg, fp);
	fclose(fp);
	memset(&again, 0, sizeof again);
	config_defaults(&again);
	again.threads = 1;
	for (char *line = buf; *line;) {
		char *nl = strchr(line, '\n');
		char *dot = strchr(line, '.');
		char *eq = strstr(line, " = ");
		*nl = '\0';
		*dot = '\0';
		*eq = '\0';
		ck_assert_msg(config_set(&again, line, dot + 1, eq + 3, "dump", err, sizeof err) ==
				      0,
			      "%s", err);
		line = nl + 1;
	}
	ck_assert_int_eq(again.threads, 7);
	ck_assert_int_eq(memcmp(&cfg, &again, sizeof cfg), 0);
	free(buf);
}
END_TEST

START_TEST(cors)
{
	struct config cfg;
	char err[512] = "";

	/* off by default */
	config_defaults(&cfg);
	ck_assert_uint_eq(cfg.cors_origins.n, 0);
	ck_assert_int_eq(cfg.cors_max_age, 600);

	/* normalised once, here */
	ck_assert_int_eq(load("[cors]\n"
			      "allowed_origins = HTTPS://App.Example:443, http://127.0.0.1:5000\n"
			      "max_age = 60\n",
			      &cfg, err, sizeof err),
			 0);
	ck_assert_uint_eq(cfg.cors_origins.n, 2);
	ck_assert_str_eq(cfg.cors_origins.o[0].text, "https://app.example");
	ck_assert_str_eq(cfg.cors_origins.o[1].text, "http://127.0.0.1:5000");
	ck_assert_int_eq(cfg.cors_max_age, 60);

	/* a long list goes on continued lines, or the key repeated: both add */
	ck_assert_int_eq(load("[cors]\n"
			      "allowed_origins = https://a.example\n"
			      "    https://b.example, https://c.example\n"
			      "allowed_origins = https://d.example\n",
			      &cfg, err, sizeof err),
			 0);
	ck_assert_uint_eq(cfg.cors_origins.n, 4);
	ck_assert_str_eq(cfg.cors_origins.o[3].text, "https://d.example");

	/* the file's list replaces what came before it (the defaults) */
	config_defaults(&cfg);
	ck_assert_int_eq(config_set(&cfg, "cors", "allowed_origins", "https://x.example", "--x",
				    err, sizeof err),
			 0);
	write_file("[cors]\nallowed_origins = https://y.example\n");
	ck_assert_int_eq(config_load_file(&cfg, path, err, sizeof err), 0);
	ck_assert_uint_eq(cfg.cors_origins.n, 1);
	ck_assert_str_eq(cfg.cors_origins.o[0].text, "https://y.example");

	/* and the environment replaces the file's */
	ck_assert_int_eq(setenv("TOKEND_CORS_ALLOWED_ORIGINS", "https://z.example", 1), 0);
	ck_assert_int_eq(config_load_env(&cfg, err, sizeof err), 0);
	ck_assert_uint_eq(cfg.cors_origins.n, 1);
	ck_assert_str_eq(cfg.cors_origins.o[0].text, "https://z.example");
	ck_assert_int_eq(setenv("TOKEND_CORS_ALLOWED_ORIGINS", "https://z.example/", 1), 0);
	ck_assert_int_eq(config_load_env(&cfg, err, sizeof err), TOKEND_EINVAL);
	ck_assert_msg(strstr(err, "env TOKEND_CORS_ALLOWED_ORIGINS: cors.allowed_origins: ") !=
			      NULL,
		      "errbuf: %s", err);
	unsetenv("TOKEND_CORS_ALLOWED_ORIGINS");
	/* an empty value turns CORS off again */
	ck_assert_int_eq(config_set(&cfg, "cors", "allowed_origins", "", "--x", err, sizeof err),
			 0);
	ck_assert_uint_eq(cfg.cors_origins.n, 0);

	/* bad entries stop at their line */
	bad_value("[cors]\nallowed_origins = *\n", 2);
	bad_value("[cors]\nallowed_origins = https://a.example/\n", 2);
	bad_value("[cors]\nallowed_origins = https://a.example\n  https://b.example/x\n", 3);
	bad_value("[cors]\n\nallowed_origins = app.example\n", 3);
	bad_value("[cors]\nmax_age = -1\n", 2);
	bad_value("[cors]\nmax_age = 86401\n", 2);
	bad_value("[cors]\nallowed = https://a.example\n", 2);
}
END_TEST

START_TEST(cors_dump)
{
	struct config cfg;
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&buf, &len);
	char err[512];

	ck_assert_ptr_nonnull(fp);
	config_defaults(&cfg);
	config_dump(&cfg, fp);
	fflush(fp);
	ck_assert_msg(strstr(buf, "cors.allowed_origins = \n") != NULL, "dump: %s", buf);
	ck_assert_msg(strstr(buf, "cors.max_age = 600\n") != NULL, "dump: %s", buf);
	rewind(fp);
	ck_assert_int_eq(config_set(&cfg, "cors", "allowed_origins",
				    "https://A.example:443,http://[0::1]:8080", "--x", err,
				    sizeof err),
			 0);
	config_dump(&cfg, fp);
	fclose(fp);
	ck_assert_msg(strstr(buf, "cors.allowed_origins = https://a.example http://[::1]:8080\n") !=
			      NULL,
		      "dump: %s", buf);
	free(buf);
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, defaults);
	tcase_add_test(tc, load_file);
	tcase_add_test(tc, load_empty_file);
	tcase_add_test(tc, unknown_key);
	tcase_add_test(tc, unknown_section);
	tcase_add_test(tc, key_outside_section);
	tcase_add_test(tc, syntax_error);
	tcase_add_test(tc, bad_values);
	tcase_add_test(tc, missing_file);
	tcase_add_test(tc, directory_is_not_a_file);
	tcase_add_test(tc, booleans);
	tcase_add_test(tc, env);
	tcase_add_test(tc, env_foreign_sections);
	tcase_add_test(tc, set);
	tcase_add_test(tc, set_long_string);
	tcase_add_test(tc, dump);
	tcase_add_test(tc, dump_roundtrip);
	tcase_add_test(tc, cors);
	tcase_add_test(tc, cors_dump);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return UNIT_MAIN(config_suite(), "config", base, NULL);
}
