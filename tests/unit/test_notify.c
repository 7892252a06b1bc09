/* SPDX-License-Identifier: MIT */
/*
 * This suite tests include/tokend/notify.h, the service manager's protocols:
 * - a datagram reaches $NOTIFY_SOCKET as a path and as an "@" abstract name,
 *   byte for byte; without the variable (or with a kind we do not speak, or
 *   too long a name) sending is a quiet no-op, and a socket nobody listens
 *   on is TOKEND_EIO, never a crash or SIGPIPE;
 * - the environment is read once: a later change does not redirect sends;
 * - WATCHDOG_USEC counts only when WATCHDOG_PID is unset or ours, and only
 *   as a whole positive number;
 * - LISTEN_FDS counts only when LISTEN_PID is ours; malformed or closed
 *   descriptors are TOKEND_EINVAL; the three LISTEN_ variables are gone
 *   afterwards whichever the case; a handed-over fd becomes close-on-exec.
 * Each test runs in its own process (Check's fork mode): setenv stays there.
 */
#include <check.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tokend/err.h"
#include "tokend/notify.h"

/* A datagram socket bound to name ('@' first: abstract), 1 s receive timeout. */
static int listener(const char *name)
{
	struct sockaddr_un a;
	socklen_t len;
	struct timeval tv = {1, 0};
	int fd = socket(AF_UNIX, SOCK_DGRAM, 0);

	ck_assert_int_ge(fd, 0);
	memset(&a, 0, sizeof(a));
	a.sun_family = AF_UNIX;
	memcpy(a.sun_path, name, strlen(name));
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(name));
	if (name[0] == '@')
		a.sun_path[0] = '\0';
	else
		unlink(name);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, len), 0);
	ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	return fd;
}

static void expect_datagram(int fd, const char *want)
{
	char buf[256];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);

	ck_assert_int_eq(n, (ssize_t)strlen(want));
	buf[n] = '\0';
	ck_assert_str_eq(buf, want);
}

START_TEST(path_socket)
{
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/tmp/tokend-notify-%d.sock", (int)getpid());
	fd = listener(path);
	ck_assert_int_eq(setenv("NOTIFY_SOCKET", path, 1), 0);
	ck_assert(notify_init());
	ck_assert_int_eq(notify_send("READY=1\nSTATUS=serving"), 0);
	expect_datagram(fd, "READY=1\nSTATUS=serving");
	ck_assert_int_eq(notify_send("STOPPING=1"), 0);
	expect_datagram(fd, "STOPPING=1");
	close(fd);
	unlink(path);
	/* nobody listens any more: an error to report, not a crash */
	ck_assert_int_eq(notify_send("WATCHDOG=1"), TOKEND_EIO);
}
END_TEST

START_TEST(abstract_socket)
{
	char name[64];
	int fd;

	snprintf(name, sizeof(name), "@tokend-notify-test-%d", (int)getpid());
	fd = listener(name);
	ck_assert_int_eq(setenv("NOTIFY_SOCKET", name, 1), 0);
	ck_assert(notify_init());
	ck_assert_int_eq(notify_send("READY=1"), 0);
	expect_datagram(fd, "READY=1");
	/* read once: changing the variable later redirects nothing */
	ck_assert_int_eq(setenv("NOTIFY_SOCKET", "/nonexistent/socket", 1), 0);
	ck_assert_int_eq(notify_send("WATCHDOG=1"), 0);
	expect_datagram(fd, "WATCHDOG=1");
	close(fd);
}
END_TEST

START_TEST(no_socket)
{
	char longname[200];

	unsetenv("NOTIFY_SOCKET");
	ck_assert(!notify_init());
	ck_assert_int_eq(notify_send("READY=1"), 0);
	ck_assert_int_eq(setenv("NOTIFY_SOCKET", "vsock:2:1234", 1), 0);
	ck_assert(!notify_init());
	ck_assert_int_eq(notify_send("READY=1"), 0);
	ck_assert_int_eq(setenv("NOTIFY_SOCKET", "relative/path", 1), 0);
	ck_assert(!notify_init());
	ck_assert_int_eq(setenv("NOTIFY_SOCKET", "@", 1), 0);
	ck_assert(!notify_init());
	memset(longname, 'a', sizeof(longname) - 1);
	longname[0] = '/';
	longname[sizeof(longname) - 1] = '\0';
	ck_assert_int_eq(setenv("NOTIFY_SOCKET", longname, 1), 0);
	ck_assert(!notify_init());
	ck_assert_int_eq(notify_send("READY=1"), 0);
}
END_TEST

START_TEST(watchdog)
{
	char pid[32];

	unsetenv("WATCHDOG_PID");
	unsetenv("WATCHDOG_USEC");
	notify_init();
	ck_assert_uint_eq(notify_watchdog_usec(), 0);
	ck_assert_int_eq(setenv("WATCHDOG_USEC", "30000000", 1), 0);
	notify_init();
	ck_assert_uint_eq(notify_watchdog_usec(), 30000000u);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	ck_assert_int_eq(setenv("WATCHDOG_PID", pid, 1), 0);
	notify_init();
	ck_assert_uint_eq(notify_watchdog_usec(), 30000000u);
	/* another process's watchdog */
	ck_assert_int_eq(setenv("WATCHDOG_PID", "1", 1), 0);
	notify_init();
	ck_assert_uint_eq(notify_watchdog_usec(), 0);
	ck_assert_int_eq(setenv("WATCHDOG_PID", "12x", 1), 0);
	notify_init();
	ck_assert_uint_eq(notify_watchdog_usec(), 0);
	unsetenv("WATCHDOG_PID");
	static const char *const bad[] = {
		"", "0", "-5", "1.5", "30s", " 30", "99999999999999999999"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_int_eq(setenv("WATCHDOG_USEC", bad[i], 1), 0);
		notify_init();
		ck_assert_msg(notify_watchdog_usec() == 0, "WATCHDOG_USEC=\"%s\"", bad[i]);
	}
}
END_TEST

/*
 * The LISTEN_FDS cases run in a child of their own: they take fd 3, which in
 * Check's fork mode may be the suite's own pipe, so the child reports by its
 * exit status (the failing line) and not through ck_assert.
 */
#define CHILD_CHECK(cond)                          \
	do {                                       \
		if (!(cond))                       \
			_exit(__LINE__ % 250 + 1); \
	} while (0)

static void set_listen(const char *pid, const char *fds)
{
	char self[32];

	snprintf(self, sizeof(self), "%d", (int)getpid());
	if (pid != NULL)
		setenv("LISTEN_PID", strcmp(pid, "self") == 0 ? self : pid, 1);
	else
		unsetenv("LISTEN_PID");
	if (fds != NULL)
		setenv("LISTEN_FDS", fds, 1);
	else
		unsetenv("LISTEN_FDS");
	setenv("LISTEN_FDNAMES", "tokend.socket", 1);
}

static bool listen_unset(void)
{
	return getenv("LISTEN_PID") == NULL && getenv("LISTEN_FDS") == NULL &&
	       getenv("LISTEN_FDNAMES") == NULL;
}

static void listen_fds_child(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);

	/* our fd 3, without close-on-exec, as a manager would leave it */
	CHILD_CHECK(s >= 0);
	CHILD_CHECK(dup2(s, NOTIFY_LISTEN_FDS_START) == NOTIFY_LISTEN_FDS_START);
	if (s != NOTIFY_LISTEN_FDS_START)
		close(s);
	CHILD_CHECK((fcntl(NOTIFY_LISTEN_FDS_START, F_GETFD) & FD_CLOEXEC) == 0);

	set_listen("self", "1");
	CHILD_CHECK(notify_listen_fds() == 1);
	CHILD_CHECK(listen_unset());
	CHILD_CHECK((fcntl(NOTIFY_LISTEN_FDS_START, F_GETFD) & FD_CLOEXEC) != 0);
	/* read once: a second call finds nothing */
	CHILD_CHECK(notify_listen_fds() == 0);

	/* someone else's, or none */
	set_listen("1", "1");
	CHILD_CHECK(notify_listen_fds() == 0 && listen_unset());
	set_listen(NULL, "1");
	CHILD_CHECK(notify_listen_fds() == 0 && listen_unset());
	set_listen("self", "0");
	CHILD_CHECK(notify_listen_fds() == 0 && listen_unset());
	/* ours, malformed */
	set_listen("self", NULL);
	CHILD_CHECK(notify_listen_fds() == TOKEND_EINVAL && listen_unset());
	set_listen("self", "two");
	CHILD_CHECK(notify_listen_fds() == TOKEND_EINVAL && listen_unset());
	set_listen("self", "99999999999999999999999");
	CHILD_CHECK(notify_listen_fds() == TOKEND_EINVAL && listen_unset());
	/* announced but not open: fds 3 .. 502 cannot all be */
	set_listen("self", "500");
	CHILD_CHECK(notify_listen_fds() == TOKEND_EINVAL && listen_unset());
	close(NOTIFY_LISTEN_FDS_START);
	set_listen("self", "1");
	CHILD_CHECK(notify_listen_fds() == TOKEND_EINVAL && listen_unset());
	_exit(0);
}

START_TEST(listen_fds)
{
	int status = 0;
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		listen_fds_child();
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "the LISTEN_FDS child failed (exit %d: line %% 250 + 1 of a CHILD_CHECK)",
		      WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}
END_TEST

static Suite *notify_suite(void)
{
	Suite *s = suite_create("notify");
	TCase *tc = tcase_create("notify");

	tcase_add_test(tc, path_socket);
	tcase_add_test(tc, abstract_socket);
	tcase_add_test(tc, no_socket);
	tcase_add_test(tc, watchdog);
	tcase_add_test(tc, listen_fds);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(notify_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
