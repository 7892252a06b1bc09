// SPDX-License-Identifier: MIT
/*
 * This program is the bench's libmicrohttpd ceiling: a daemon started with
 * the flags and the speed-relevant options of tokend's server_start()
 * (src/http/server.c: internal polling thread, epoll, suspend/resume
 * allowed, a thread pool of two per CPU, the same connection, per-address,
 * timeout, memory-pool and backlog limits) that answers every request with
 * a fixed 200 `{}` (Content-Type: application/json). What tokend adds on
 * top (routing, decoding, JWT, the store, logging, metrics) is the
 * difference between its req/s and this one's, measured by bench/run.py
 * with the same wrk settings as nginx's ceiling.
 *
 * Usage: mhd_ceiling [--port N] [--threads N] [--max-connections N]
 *        [--per-ip N] [--timeout S] [--max-header BYTES]
 * Each option mirrors the tokend setting of the same name (server.port of
 * server.listen, server.threads with 0 = two per CPU, server.max_connections,
 * server.per_ip_connections, server.idle_timeout, server.max_header); the
 * defaults are tokend's. It binds 127.0.0.1 only, prints "port N" on stdout
 * once it listens, and stops on SIGTERM or SIGINT.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <microhttpd.h>

#define BODY "{}"
/* tokend's listen backlog (server_start). */
#define BACKLOG 1024u

struct options {
	long port;
	long threads;
	long max_connections;
	long per_ip;
	long timeout;
	long max_header;
};

/* One response for every request: created before the daemon, destroyed after it. */
static struct MHD_Response *fixed;

/*
 * Answers 200 {} once the request (and any body, which is read and
 * dropped) is complete. The first call for a request only marks it seen,
 * as libmicrohttpd expects; later calls with data consume it.
 */
static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url,
			      const char *method, const char *version, const char *upload_data,
			      size_t *upload_size, void **req_cls)
{
	static int seen;

	(void)cls;
	(void)url;
	(void)method;
	(void)version;
	(void)upload_data;
	if (*req_cls == NULL) {
		*req_cls = &seen;
		return MHD_YES;
	}
	if (*upload_size != 0) {
		*upload_size = 0;
		return MHD_YES;
	}
	return MHD_queue_response(conn, MHD_HTTP_OK, fixed);
}

/* Parses "--name value" pairs into o; false (with a message) on anything else. */
static int parse(int argc, char **argv, struct options *o)
{
	static const struct {
		const char *name;
		size_t off;
		long min, max;
	} known[] = {
		{"--port", offsetof(struct options, port), 0, 65535},
		{"--threads", offsetof(struct options, threads), 0, 1024},
		{"--max-connections", offsetof(struct options, max_connections), 1, 1000000},
		{"--per-ip", offsetof(struct options, per_ip), 0, 1000000},
		{"--timeout", offsetof(struct options, timeout), 1, 86400},
		{"--max-header", offsetof(struct options, max_header), 1024, 1L << 20},
	};
	int i;
	size_t k;

	for (i = 1; i < argc; i += 2) {
		char *end;
		long v;

		for (k = 0; k < sizeof(known) / sizeof(known[0]); k++)
			if (strcmp(argv[i], known[k].name) == 0)
				break;
		if (k == sizeof(known) / sizeof(known[0]) || i + 1 >= argc) {
			fprintf(stderr, "mhd_ceiling: unknown option or missing value: %s\n",
				argv[i]);
			return -1;
		}
		errno = 0;
		v = strtol(argv[i + 1], &end, 10);
		if (errno != 0 || *end != '\0' || end == argv[i + 1] || v < known[k].min ||
		    v > known[k].max) {
			fprintf(stderr, "mhd_ceiling: %s: not a number in [%ld, %ld]: %s\n",
				argv[i], known[k].min, known[k].max, argv[i + 1]);
			return -1;
		}
		*(long *)(void *)((char *)o + known[k].off) = v;
	}
	return 0;
}

int main(int argc, char **argv)
{
	/* tokend's defaults (src/config/config.c), per_ip as for a direct
	 * client (PER_IP_DIRECT in server.c). */
	struct options o = {.port = 0,
			    .threads = 0,
			    .max_connections = 1024,
			    .per_ip = 128,
			    .timeout = 30,
			    .max_header = 16384};
	struct MHD_Daemon *d = NULL;
	const union MHD_DaemonInfo *di;
	struct sockaddr_in sa;
	sigset_t stop, old;
	int sig, rc = 1;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	sigemptyset(&old);
	if (parse(argc, argv, &o) != 0)
		return 2;
	if (o.threads == 0)
		o.threads = 2 * (ncpu > 0 ? ncpu : 1);
	fixed = MHD_create_response_from_buffer(sizeof(BODY) - 1, (void *)BODY,
						MHD_RESPMEM_PERSISTENT);
	if (fixed == NULL || MHD_add_response_header(fixed, MHD_HTTP_HEADER_CONTENT_TYPE,
						     "application/json") != MHD_YES) {
		fprintf(stderr, "mhd_ceiling: cannot build the response\n");
		goto out;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)o.port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	/* As tokend: the pool's threads start with every signal blocked, and
	 * the main thread waits for the one that stops it. */
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	{
		sigset_t all;
		sigfillset(&all);
		pthread_sigmask(SIG_BLOCK, &all, &old);
	}
	d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
				     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG,
			     (uint16_t)o.port, NULL, NULL, answer, NULL, MHD_OPTION_SOCK_ADDR,
			     (struct sockaddr *)&sa, MHD_OPTION_THREAD_POOL_SIZE,
			     (unsigned)o.threads, MHD_OPTION_CONNECTION_LIMIT,
			     (unsigned)(o.max_connections + o.threads),
			     MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)o.per_ip,
			     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o.timeout,
			     MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)o.max_header + 4 * 1024,
			     MHD_OPTION_LISTEN_BACKLOG_SIZE, BACKLOG, MHD_OPTION_END);
	if (d == NULL) {
		fprintf(stderr, "mhd_ceiling: cannot listen on 127.0.0.1:%ld: %s\n", o.port,
			strerror(errno));
		goto out;
	}
	di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	printf("port %u\n", di != NULL && di->port != 0 ? (unsigned)di->port : (unsigned)o.port);
	fflush(stdout);
	if (sigwait(&stop, &sig) == 0)
		rc = 0;
out:
	if (d != NULL)
		MHD_stop_daemon(d);
	if (fixed != NULL)
		MHD_destroy_response(fixed);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}
