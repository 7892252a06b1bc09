/* SPDX-License-Identifier: MIT */
/*
 * This header is the contract of the service manager's two small protocols,
 * written here instead of linking libsystemd (sd_notify(3), sd_listen_fds(3)):
 * the readiness, stopping and watchdog datagrams sent to $NOTIFY_SOCKET,
 * and the listening sockets handed over as fd 3 onwards with $LISTEN_PID and
 * $LISTEN_FDS. Without those variables every call is a no-op, so tokend runs
 * the same from a shell, a container or a unit.
 */
#ifndef TOKEND_NOTIFY_H
#define TOKEND_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The first descriptor the service manager passes (SD_LISTEN_FDS_START). */
#define NOTIFY_LISTEN_FDS_START 3

/* $NOTIFY_SOCKET's address longer than this (sun_path less its NUL) is ignored. */
#define NOTIFY_SOCKET_MAX 107

/*
 * Reads $NOTIFY_SOCKET (a path, or "@name" for an abstract socket) and
 * $WATCHDOG_USEC (honoured only when $WATCHDOG_PID is unset or names this
 * process) once, into this module. Call it on the main thread before any
 * other thread starts: later calls read the copy, never the environment.
 * Returns true when a notify socket is set.
 */
bool notify_init(void);

/*
 * Sends state ("READY=1", "STOPPING=1", "WATCHDOG=1", "STATUS=...", several
 * separated by newlines) as one datagram to the notify socket. Returns 0
 * (also when there is no socket: nothing to tell) or TOKEND_EIO.
 */
int notify_send(const char *state);

/* The watchdog interval the manager asked for in microseconds, 0 = none. */
uint64_t notify_watchdog_usec(void);

/*
 * The sockets handed over for this process: when $LISTEN_PID is our pid
 * and $LISTEN_FDS a count >= 1, returns that count (the descriptors are
 * NOTIFY_LISTEN_FDS_START onwards, each marked close-on-exec here), else 0;
 * TOKEND_EINVAL when the variables are ours but malformed. Either way
 * $LISTEN_PID, $LISTEN_FDS and $LISTEN_FDNAMES are removed from the
 * environment, so no child inherits them. Main thread, before threads start
 * (it calls unsetenv).
 */
int notify_listen_fds(void);

/*
 * Checks that fd, handed over as above, is what an HTTP server can serve
 * on: a listening TCP socket (SOCK_STREAM, SO_ACCEPTCONN, AF_INET or
 * AF_INET6), and fills host (numeric, without brackets) and *port from its
 * own address. Returns 0, or TOKEND_EINVAL with errbuf saying what the fd
 * is instead. Never closes fd.
 */
int notify_listen_fd_check(int fd, char *host, size_t hostlen, unsigned *port, char *errbuf,
			   size_t errlen);

#endif
