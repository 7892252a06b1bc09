/* SPDX-License-Identifier: MIT */
/*
 * This suite tests src/http/watchdog.h on loopback TCP sockets: a request
 * not whole by the deadline is shut down, so is one whose client left (but
 * not while unread bytes wait), an arrived request is left alone, and an
 * idle kept-alive connection is cut only after a next request has begun and
 * overstayed (or its client left mid-way), and a descriptor number reused
 * behind the watchdog's back is never shut down. The last test runs a real libmicrohttpd 0.9.75 daemon (thread
 * pool, epoll) and proves on every connection that NOTIFY_CLOSED comes
 * while the descriptor still names the connection's socket, i.e. before
 * libmicrohttpd close()s it: the order the watchdog's safety rests on.
 */
#include <check.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "http/watchdog.h"

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0)
		;
}

/* A connected loopback pair: *srv is the accepted side. */
static void tcp_pair(int *cli, int *srv)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_ge(l, 0);
	ck_assert_int_eq(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(l, 4), 0);
	ck_assert_int_eq(getsockname(l, (struct sockaddr *)&a, &len), 0);
	*cli = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_eq(connect(*cli, (struct sockaddr *)&a, sizeof(a)), 0);
	*srv = accept(l, NULL, NULL);
	ck_assert_int_ge(*srv, 0);
	close(l);
}

/* Whether the peer of fd has sent FIN (read returns 0) within ms. */
static bool sees_eof(int fd, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	char c;

	if (poll(&p, 1, ms) != 1)
		return false;
	return recv(fd, &c, 1, MSG_DONTWAIT) == 0;
}

static void ticks(struct watchdog *wd, int n, long gap_ms)
{
	for (int i = 0; i < n; i++) {
		watchdog_tick(wd);
		sleep_ms(gap_ms);
	}
}

START_TEST(late_request_is_shut_down)
{
	struct watchdog *wd = watchdog_new(200, 20);
	struct watchdog_stats st;
	int cli, srv, id;

	tcp_pair(&cli, &srv);
	id = watchdog_open(wd, srv);
	ck_assert_int_ge(id, 0);
	ck_assert_int_eq(send(cli, "GET / HT", 8, 0), 8);
	ticks(wd, 3, 20);
	ck_assert(!sees_eof(cli, 0)); /* before the deadline: untouched */
	ticks(wd, 10, 30);
	ck_assert(sees_eof(cli, 100));
	watchdog_stats(wd, &st);
	ck_assert_int_eq(st.shut_late, 1);
	ck_assert_int_eq(st.shut_gone, 0);
	watchdog_close(wd, id);
	ck_assert_int_eq(watchdog_open_count(wd), 0);
	close(cli);
	close(srv);
	watchdog_free(&wd);
	ck_assert_ptr_null(wd);
}
END_TEST

START_TEST(gone_client_is_shut_down_once_bytes_are_read)
{
	struct watchdog *wd = watchdog_new(60000, 20);
	struct watchdog_stats st;
	char buf[64];
	int cli, srv, id;

	tcp_pair(&cli, &srv);
	id = watchdog_open(wd, srv);
	ck_assert_int_eq(send(cli, "POST / HTTP/1.1\r\n", 17, 0), 17);
	shutdown(cli, SHUT_WR); /* gone, as far as a request can tell */
	sleep_ms(20);
	ticks(wd, 3, 10);
	watchdog_stats(wd, &st);
	ck_assert_int_eq(st.shut_gone, 0); /* bytes still unread: the owner may finish */
	ck_assert_int_eq(recv(srv, buf, sizeof(buf), 0), 17);
	watchdog_tick(wd);
	watchdog_stats(wd, &st);
	ck_assert_int_eq(st.shut_gone, 0); /* seen once: not yet */
	watchdog_tick(wd);
	watchdog_stats(wd, &st);
	ck_assert_int_eq(st.shut_gone, 1);
	ck_assert(sees_eof(cli, 100));
	watchdog_close(wd, id);
	close(cli);
	close(srv);
	watchdog_free(&wd);
}
END_TEST

START_TEST(arrived_request_is_left_alone)
{
	struct watchdog *wd = watchdog_new(50, 10);
	struct watchdog_stats st;
	int cli, srv, id;

	tcp_pair(&cli, &srv);
	id = watchdog_open(wd, srv);
	watchdog_begin(wd, id);
	watchdog_arrived(wd, id);
	shutdown(cli, SHUT_WR);
	ticks(wd, 10, 20); /* past the deadline, peer half-closed */
	watchdog_stats(wd, &st);
	ck_assert_int_eq(st.shut_gone + st.shut_late, 0);
	ck_assert_int_eq(st.reading, 0);
	ck_assert(!sees_eof(cli, 0));
	watchdog_close(wd, id);
	close(cli);
	close(srv);
	watchdog_free(&wd);
}
END_TEST

START_TEST(idle_connection_cut_only_when_next_request_overstays)
{
	struct watchdog *wd = watchdog_new(300, 20);
	struct watchdog_stats st;
	int cli, srv, id;

	tcp_pair(&cli, &srv);
	id = watchdog_open(wd, srv);
	watchdog_arrived(wd, id);
	watchdog_done(wd, id);
	ticks(wd, 25, 30); /* 750 ms idle, more than two deadlines */
	watchdog_stats(wd, &st);
	ck_assert_int_eq(st.shut_gone + st.shut_late, 0);
	ck_assert_int_eq(st.reading, 0);
	ck_assert(!sees_eof(cli, 0));
	/* A next request begins and never ends: cut within two deadlines. */
	ck_assert_int_eq(send(cli, "G", 1, 0), 1);
	for (int i = 0; i < 40 && st.shut_late == 0; i++) {
		ticks(wd, 1, 25);
		watchdog_stats(wd, &st);
	}
	ck_assert_int_eq(st.shut_late, 1);
	ck_assert(sees_eof(cli, 100));
	watchdog_close(wd, id);
	close(cli);
	close(srv);
	watchdog_free(&wd);
}
END_TEST

START_TEST(idle_client_gone_mid_next_request_is_shut_down)
{
	struct watchdog *wd = watchdog_new(60000, 20);
	struct watchdog_stats st = {0};
	char buf[64];
	int cli, srv, id;

	tcp_pair(&cli, &srv);
	id = watchdog_open(wd, srv);
	watchdog_arrived(wd, id);
	watchdog_done(wd, id);
	/* Part of a next request and a FIN, read (as libmicrohttpd does) but
	 * never handed over: it stays idle, as far as the server can tell. */
	ck_assert_int_eq(send(cli, "POST / HT", 9, 0), 9);
	shutdown(cli, SHUT_WR);
	sleep_ms(20);
	ck_assert_int_eq(recv(srv, buf, sizeof(buf), 0), 9);
	for (int i = 0; i < 80 && st.shut_gone == 0; i++) { /* idle look: 1 s */
		ticks(wd, 1, 25);
		watchdog_stats(wd, &st);
	}
	ck_assert_int_eq(st.shut_gone, 1);
	ck_assert(sees_eof(cli, 100));
	watchdog_close(wd, id);
	close(cli);
	close(srv);
	watchdog_free(&wd);
}
END_TEST

START_TEST(reused_descriptor_is_never_shut_down)
{
	struct watchdog *wd = watchdog_new(100, 10);
	struct watchdog_stats st;
	int cli, srv, cli2, srv2, id;

	tcp_pair(&cli, &srv);
	id = watchdog_open(wd, srv);
	/* The order libmicrohttpd never uses (the MHD test below proves it):
	 * the descriptor closed and its number reused by a new connection
	 * before watchdog_close(). */
	tcp_pair(&cli2, &srv2);
	ck_assert_int_eq(dup2(srv2, srv), srv);
	close(srv2);
	ticks(wd, 20, 10); /* past the deadline */
	watchdog_stats(wd, &st);
	ck_assert_int_eq(st.fd_mismatch, 1);
	ck_assert_int_eq(st.shut_late + st.shut_gone, 0);
	ck_assert(!sees_eof(cli2, 50)); /* the new connection was not touched */
	watchdog_close(wd, id);
	close(cli);
	close(cli2);
	close(srv);
	watchdog_free(&wd);
}
END_TEST

START_TEST(close_frees_the_slot_for_reuse)
{
	struct watchdog *wd = watchdog_new(1000, 10);
	int ids[600];

	/* Past the first capacity: the table grows, ids stay valid. */
	for (int i = 0; i < 600; i++) {
		ids[i] = watchdog_open(wd, 0);
		ck_assert_int_ge(ids[i], 0);
	}
	ck_assert_int_eq(watchdog_open_count(wd), 600);
	for (int i = 0; i < 600; i += 2)
		watchdog_close(wd, ids[i]);
	ck_assert_int_eq(watchdog_open_count(wd), 300);
	for (int i = 0; i < 600; i += 2) {
		int id = watchdog_open(wd, 0);
		ck_assert_int_ge(id, 0);
		for (int j = 1; j < 600; j += 2) /* never an id still open */
			ck_assert_int_ne(id, ids[j]);
	}
	ck_assert_int_eq(watchdog_open_count(wd), 600);
	watchdog_free(&wd);
}
END_TEST

/* ---- a real daemon: the order of NOTIFY_CLOSED and close() ---- */

struct order {
	struct watchdog *wd;
	atomic_long started, closed, mismatched;
};

struct conn_rec {
	int fd;
	ino_t ino;
	int id;
};

static void on_conn(void *cls, struct MHD_Connection *c, void **ctx,
		    enum MHD_ConnectionNotificationCode code)
{
	struct order *o = cls;
	struct conn_rec *r;
	struct stat st;

	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		r = calloc(1, sizeof(*r));
		ck_assert_ptr_nonnull(r);
		r->fd = ci->connect_fd;
		ck_assert_int_eq(fstat(r->fd, &st), 0);
		r->ino = st.st_ino;
		r->id = watchdog_open(o->wd, r->fd);
		*ctx = r;
		atomic_fetch_add(&o->started, 1);
		return;
	}
	r = *ctx;
	if (r == NULL)
		return;
	/* The descriptor must still be open and name the same socket. */
	if (fstat(r->fd, &st) != 0 || st.st_ino != r->ino)
		atomic_fetch_add(&o->mismatched, 1);
	watchdog_close(o->wd, r->id);
	atomic_fetch_add(&o->closed, 1);
	free(r);
	*ctx = NULL;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version, const char *data,
			      size_t *size, void **req)
{
	static int first;
	struct MHD_Response *r;
	enum MHD_Result ret;

	(void)cls, (void)url, (void)method, (void)version, (void)data;
	if (*req == NULL) {
		*req = &first;
		return MHD_YES;
	}
	if (*size > 0) {
		*size = 0;
		return MHD_YES;
	}
	r = MHD_create_response_from_buffer(2, (void *)"ok", MHD_RESPMEM_PERSISTENT);
	ret = MHD_queue_response(c, 200, r);
	MHD_destroy_response(r);
	return ret;
}

static int connect_to(uint16_t port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons(port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int s = socket(AF_INET, SOCK_STREAM, 0);

	if (s >= 0 && connect(s, (struct sockaddr *)&a, sizeof(a)) != 0) {
		close(s);
		s = -1;
	}
	return s;
}

START_TEST(mhd_notifies_closed_before_it_closes)
{
	static const char *const sends[] = {
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",                         /* whole */
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{", /* partial */
		"GET / HT",                                                  /* headers cut */
		"",                                                          /* nothing */
	};
	struct order o = {.wd = watchdog_new(300, 20)};
	struct MHD_Daemon *d;
	const union MHD_DaemonInfo *di;
	int held[64];
	int nheld = 0;

	ck_assert_int_eq(watchdog_start(o.wd), 0);
	d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, NULL, NULL, answer,
			     NULL, MHD_OPTION_THREAD_POOL_SIZE, 4u, MHD_OPTION_CONNECTION_TIMEOUT,
			     1u, MHD_OPTION_NOTIFY_CONNECTION, on_conn, &o, MHD_OPTION_END);
	ck_assert_ptr_nonnull(d);
	di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	/* Connections that close every way, while the watchdog shuts others
	 * down and new accepts reuse the numbers just freed. */
	for (int i = 0; i < 2000; i++) {
		int s = connect_to(di->port);
		const char *m = sends[i % 4];
		char buf[256];

		ck_assert_int_ge(s, 0);
		if (*m != '\0')
			ck_assert_int_ge(send(s, m, strlen(m), MSG_NOSIGNAL), 0);
		if (i % 4 == 0)
			(void)!recv(s, buf, sizeof(buf), 0);
		if (i % 7 == 0) { /* RST instead of FIN */
			struct linger lg = {1, 0};
			setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
		if (i % 50 == 0 && nheld < 64) {
			held[nheld++] = s; /* left to the deadline and to stop */
			continue;
		}
		close(s);
	}
	sleep_ms(600); /* the watchdog cuts the held ones that never finished */
	MHD_stop_daemon(d);
	for (int i = 0; i < nheld; i++)
		close(held[i]);
	ck_assert_int_eq(atomic_load(&o.closed), atomic_load(&o.started));
	ck_assert_int_ge(atomic_load(&o.started), 2000);
	ck_assert_int_eq(atomic_load(&o.mismatched), 0);
	{
		struct watchdog_stats st;
		watchdog_stats(o.wd, &st);
		ck_assert_int_eq(st.fd_mismatch, 0);
		ck_assert_int_eq(st.open, 0);
	}
	watchdog_free(&o.wd);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("watchdog");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, late_request_is_shut_down);
	tcase_add_test(tc, gone_client_is_shut_down_once_bytes_are_read);
	tcase_add_test(tc, arrived_request_is_left_alone);
	tcase_add_test(tc, idle_connection_cut_only_when_next_request_overstays);
	tcase_add_test(tc, idle_client_gone_mid_next_request_is_shut_down);
	tcase_add_test(tc, reused_descriptor_is_never_shut_down);
	tcase_add_test(tc, close_frees_the_slot_for_reuse);
	tcase_add_test(tc, mhd_notifies_closed_before_it_closes);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
