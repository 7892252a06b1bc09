/* SPDX-License-Identifier: MIT */
/*
 * This module implements the service manager's notify and socket-passing
 * protocols in their few lines (sd_notify(3), sd_listen_fds(3)), so that
 * tokend needs no libsystemd: a datagram of "KEY=VALUE" lines to the
 * AF_UNIX socket $NOTIFY_SOCKET names ('@' first: an abstract name, the
 * '@' standing for the leading NUL), and the listening descriptors from 3
 * on when $LISTEN_PID is ours, with the check that such a descriptor is a
 * listening TCP socket. The environment is read once, on the main
 * thread, before other threads start (getenv and unsetenv are not safe
 * against each other); the copies below are written only then.
 */
#include "tokend/notify.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tokend/err.h"

/* The notify socket's address (sun_path bytes, abstract ones with their
 * leading NUL) and its length; 0 = none. Written by notify_init() only. */
static struct sockaddr_un notify_addr;
static socklen_t notify_addr_len;
static uint64_t watchdog_usec;

/* Parses a decimal unsigned number that fills the whole of s. */
static bool parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (s == NULL || s[0] < '0' || s[0] > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*out = (uint64_t)v;
	return true;
}

/* True when $name is unset (any process may use the value) or our pid. */
static bool pid_is_ours(const char *name, bool required)
{
	const char *v = getenv(name);
	uint64_t pid;

	if (v == NULL)
		return !required;
	return parse_u64(v, &pid) && pid == (uint64_t)getpid();
}

bool notify_init(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	size_t len;
	uint64_t usec;

	memset(&notify_addr, 0, sizeof(notify_addr));
	notify_addr_len = 0;
	watchdog_usec = 0;
	if (parse_u64(getenv("WATCHDOG_USEC"), &usec) && usec > 0 &&
	    pid_is_ours("WATCHDOG_PID", false))
		watchdog_usec = usec;
	if (path == NULL || (path[0] != '/' && path[0] != '@'))
		return false; /* unset, or a kind (vsock:) this code does not speak */
	len = strlen(path);
	if (len < 2 || len > NOTIFY_SOCKET_MAX)
		return false;
	notify_addr.sun_family = AF_UNIX;
	memcpy(notify_addr.sun_path, path, len);
	if (path[0] == '@')
		notify_addr.sun_path[0] = '\0'; /* the length, not a NUL, ends it */
	notify_addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
				      (path[0] == '/' ? 1 : 0));
	return true;
}

int notify_send(const char *state)
{
	int fd;
	ssize_t n;
	size_t len = strlen(state);

	if (notify_addr_len == 0)
		return 0;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return TOKEND_EIO;
	/* MSG_NOSIGNAL: a manager gone away must not kill us with SIGPIPE. */
	n = sendto(fd, state, len, MSG_NOSIGNAL, (const struct sockaddr *)&notify_addr,
		   notify_addr_len);
	close(fd);
	return n == (ssize_t)len ? 0 : TOKEND_EIO;
}

uint64_t notify_watchdog_usec(void)
{
	return watchdog_usec;
}

int notify_listen_fds(void)
{
	uint64_t n = 0;
	bool ours = pid_is_ours("LISTEN_PID", true);
	bool valid = parse_u64(getenv("LISTEN_FDS"), &n);
	int rc = 0;

	if (ours && !valid)
		rc = TOKEND_EINVAL;
	else if (ours && n > 0 && n <= (uint64_t)(INT_MAX - NOTIFY_LISTEN_FDS_START))
		rc = (int)n;
	else if (ours && n > 0)
		rc = TOKEND_EINVAL;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	for (int i = 0; i < rc; i++) {
		int fd = NOTIFY_LISTEN_FDS_START + i;
		int flags = fcntl(fd, F_GETFD);

		if (flags < 0)
			return TOKEND_EINVAL; /* announced but not open */
		if ((flags & FD_CLOEXEC) == 0)
			fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
	}
	return rc;
}

/* A datagram, AF_UNIX or not-listening socket, or no socket at all, is the
 * unit's mistake (ListenDatagram=, a path, Accept=yes): said as such. */
int notify_listen_fd_check(int fd, char *host, size_t hostlen, unsigned *port, char *errbuf,
			   size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int type = 0, listening = 0;
	socklen_t il = sizeof(int);

	memset(&ss, 0, sizeof(ss));
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &il) != 0) {
		snprintf(errbuf, errlen, "inherited fd %d (LISTEN_FDS) is not a socket: %s", fd,
			 strerror(errno));
		return TOKEND_EINVAL;
	}
	il = sizeof(int);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0 ||
	    (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) || type != SOCK_STREAM) {
		snprintf(errbuf, errlen,
			 "inherited fd %d (LISTEN_FDS) is not a TCP socket (family %d, type %d): "
			 "tokend serves HTTP on ListenStream=ADDRESS:PORT only",
			 fd, (int)ss.ss_family, type);
		return TOKEND_EINVAL;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &il) != 0 || !listening) {
		snprintf(errbuf, errlen,
			 "inherited fd %d (LISTEN_FDS) is a TCP socket that is not listening "
			 "(Accept=yes hands over connections: use Accept=no)",
			 fd);
		return TOKEND_EINVAL;
	}
	if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)(const void *)&ss;
		inet_ntop(AF_INET6, &a6->sin6_addr, host, (socklen_t)hostlen);
		*port = ntohs(a6->sin6_port);
	} else {
		const struct sockaddr_in *a4 = (const struct sockaddr_in *)(const void *)&ss;
		inet_ntop(AF_INET, &a4->sin_addr, host, (socklen_t)hostlen);
		*port = ntohs(a4->sin_port);
	}
	return 0;
}
