/* SPDX-License-Identifier: MIT */
/*
 * This module implements the connection watchdog (contract in watchdog.h):
 * a table of watched sockets under one lock, and one thread that every tick
 * poll()s the sockets of unfinished requests with POLLRDHUP (level
 * triggered, timeout 0, independent of libmicrohttpd's edge-triggered epoll,
 * which misses a FIN that comes with the last bytes of a partial request)
 * and shutdown(2)s those whose client has gone or whose deadline has passed,
 * so that libmicrohttpd closes them on its next event. libmicrohttpd's own
 * timeout is an idle timer that every byte resets; this deadline is not.
 */
#define _GNU_SOURCE /* POLLRDHUP */
#include "http/watchdog.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "tokend/err.h"
#include "tokend/log.h"
#include "tokend/util.h"

#define NIL (-1)
#define FIRST_CAPACITY 256
#define JIFFY_MARGIN_US 50000u
#define IDLE_BATCH 1024
/* An idle connection is looked at this often (or once per deadline if that
 * is shorter): a next request's deadline starts at most this late, and a
 * client that sends part of it and leaves is noticed this late. 10,000 idle
 * connections cost 10,000 getsockopt() a second, about 1 % of a core. */
#define IDLE_LOOK_US 1000000u

enum wd_state { WD_FREE, WD_READING, WD_ARRIVED, WD_IDLE };

/*
 * One watched connection. Slots live in one array indexed by id, linked
 * (by index, since the array may move when it grows) into the free list,
 * the reading list or the idle FIFO according to state.
 */
struct slot {
	int fd;
	ino_t ino; /* the socket's inode: proves fd still names it */
	enum wd_state state;
	uint32_t gen;      /* bumped on every change: the thread's copies check it */
	bool gone_seen;    /* peer gone at the last tick too */
	uint64_t since_us; /* reading: request start; idle: no bytes came before */
	int prev, next;
};

struct list {
	int head, tail;
	long n;
};

/* What the thread copies out of a slot to check it without the lock. */
struct probe {
	int id;
	uint32_t gen;
	int fd;
	uint64_t since_us;
	short revents;
	bool gone, late, busy;
};

struct watchdog {
	pthread_mutex_t lock; /* guards everything below but the thread's own */
	struct slot *slots;
	int cap;
	struct list free_list, reading, idle;
	long shut_gone, shut_late, fd_mismatch;
	atomic_long open;
	uint64_t deadline_us;
	uint64_t idle_look_us; /* how often an idle connection is looked at */
	long tick_ms;

	pthread_mutex_t stop_lock; /* the thread's sleep and stop request */
	pthread_cond_t stop_cv;
	bool stop;
	bool running;
	pthread_t thread;

	/* the thread's own scratch (never touched under the lock by others) */
	struct probe *probes;
	struct pollfd *pfds;
	size_t probes_cap;
	long logged_gone, logged_late;
	uint64_t logged_at_us;
};

static void list_push(struct watchdog *wd, struct list *l, int id)
{
	struct slot *s = &wd->slots[id];

	s->prev = l->tail;
	s->next = NIL;
	if (l->tail != NIL)
		wd->slots[l->tail].next = id;
	else
		l->head = id;
	l->tail = id;
	l->n++;
}

static void list_unlink(struct watchdog *wd, struct list *l, int id)
{
	struct slot *s = &wd->slots[id];

	if (s->prev != NIL)
		wd->slots[s->prev].next = s->next;
	else
		l->head = s->next;
	if (s->next != NIL)
		wd->slots[s->next].prev = s->prev;
	else
		l->tail = s->prev;
	s->prev = s->next = NIL;
	l->n--;
}

static struct list *list_of(struct watchdog *wd, enum wd_state st)
{
	switch (st) {
	case WD_READING: return &wd->reading;
	case WD_IDLE: return &wd->idle;
	case WD_FREE: return &wd->free_list;
	case WD_ARRIVED: break;
	}
	return NULL;
}

/* Moves slot id to state st (and its list); caller holds the lock. */
static void set_state(struct watchdog *wd, int id, enum wd_state st, uint64_t now)
{
	struct slot *s = &wd->slots[id];
	struct list *from = list_of(wd, s->state);
	struct list *to = list_of(wd, st);

	if (from != NULL)
		list_unlink(wd, from, id);
	s->state = st;
	s->gen++;
	s->gone_seen = false;
	s->since_us = now;
	if (to != NULL)
		list_push(wd, to, id);
}

static int grow(struct watchdog *wd)
{
	int cap = wd->cap ? wd->cap * 2 : FIRST_CAPACITY;
	struct slot *p = realloc(wd->slots, (size_t)cap * sizeof(*p));

	if (p == NULL)
		return TOKEND_ENOMEM;
	wd->slots = p;
	for (int i = wd->cap; i < cap; i++) {
		memset(&p[i], 0, sizeof(p[i]));
		p[i].fd = -1;
		p[i].state = WD_FREE;
		list_push(wd, &wd->free_list, i);
	}
	wd->cap = cap;
	return 0;
}

struct watchdog *watchdog_new(long deadline_ms, long tick_ms)
{
	struct watchdog *wd = calloc(1, sizeof(*wd));
	pthread_condattr_t ca;

	if (wd == NULL)
		return NULL;
	wd->free_list = wd->reading = wd->idle = (struct list){NIL, NIL, 0};
	wd->deadline_us = (uint64_t)deadline_ms * 1000u;
	wd->idle_look_us = wd->deadline_us < IDLE_LOOK_US ? wd->deadline_us : IDLE_LOOK_US;
	wd->tick_ms = tick_ms;
	pthread_mutex_init(&wd->lock, NULL);
	pthread_mutex_init(&wd->stop_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&wd->stop_cv, &ca);
	pthread_condattr_destroy(&ca);
	if (grow(wd) != 0) {
		watchdog_free(&wd);
		return NULL;
	}
	return wd;
}

int watchdog_open(struct watchdog *wd, int fd)
{
	struct stat st;
	int id;

	/* One fstat per connection: the inode lets a shutdown prove that fd
	 * still names this socket. */
	if (fstat(fd, &st) != 0)
		st.st_ino = 0;
	pthread_mutex_lock(&wd->lock);
	if (wd->free_list.head == NIL && grow(wd) != 0) {
		pthread_mutex_unlock(&wd->lock);
		return TOKEND_ENOMEM;
	}
	id = wd->free_list.head;
	wd->slots[id].fd = fd;
	wd->slots[id].ino = st.st_ino;
	set_state(wd, id, WD_READING, util_mono_us());
	pthread_mutex_unlock(&wd->lock);
	atomic_fetch_add(&wd->open, 1);
	return id;
}

void watchdog_close(struct watchdog *wd, int id)
{
	if (id < 0)
		return;
	pthread_mutex_lock(&wd->lock);
	set_state(wd, id, WD_FREE, 0);
	wd->slots[id].fd = -1;
	pthread_mutex_unlock(&wd->lock);
	atomic_fetch_sub(&wd->open, 1);
}

void watchdog_begin(struct watchdog *wd, int id)
{
	if (id < 0)
		return;
	pthread_mutex_lock(&wd->lock);
	/* A first request is reading since accept: keep that start. */
	if (wd->slots[id].state != WD_READING)
		set_state(wd, id, WD_READING, util_mono_us());
	pthread_mutex_unlock(&wd->lock);
}

void watchdog_arrived(struct watchdog *wd, int id)
{
	if (id < 0)
		return;
	pthread_mutex_lock(&wd->lock);
	if (wd->slots[id].state != WD_ARRIVED)
		set_state(wd, id, WD_ARRIVED, 0);
	pthread_mutex_unlock(&wd->lock);
}

void watchdog_done(struct watchdog *wd, int id)
{
	if (id < 0)
		return;
	pthread_mutex_lock(&wd->lock);
	/* The time is read under the lock, so the idle FIFO stays in order. */
	set_state(wd, id, WD_IDLE, util_mono_us());
	pthread_mutex_unlock(&wd->lock);
}

long watchdog_open_count(struct watchdog *wd)
{
	return atomic_load(&wd->open);
}

void watchdog_stats(struct watchdog *wd, struct watchdog_stats *out)
{
	pthread_mutex_lock(&wd->lock);
	out->open = atomic_load(&wd->open);
	out->reading = wd->reading.n;
	out->shut_gone = wd->shut_gone;
	out->shut_late = wd->shut_late;
	out->fd_mismatch = wd->fd_mismatch;
	pthread_mutex_unlock(&wd->lock);
}

static int reserve(struct watchdog *wd, size_t n)
{
	size_t cap = wd->probes_cap ? wd->probes_cap : 64;
	struct probe *p;
	struct pollfd *f;

	if (n <= wd->probes_cap)
		return 0;
	while (cap < n)
		cap *= 2;
	p = realloc(wd->probes, cap * sizeof(*p));
	if (p == NULL)
		return TOKEND_ENOMEM;
	wd->probes = p;
	f = realloc(wd->pfds, cap * sizeof(*f));
	if (f == NULL)
		return TOKEND_ENOMEM;
	wd->pfds = f;
	wd->probes_cap = cap;
	return 0;
}

/* Copies out the reading slots, then the idle ones whose look is due.
 * Caller holds the lock. Returns how many probes; *nreading of them first. */
static size_t collect(struct watchdog *wd, uint64_t now, size_t *nreading)
{
	size_t n = 0;
	int id;

	if (reserve(wd, (size_t)(wd->reading.n +
				 (wd->idle.n < IDLE_BATCH ? wd->idle.n : IDLE_BATCH))) != 0)
		return 0; /* next tick, then */
	for (id = wd->reading.head; id != NIL; id = wd->slots[id].next)
		wd->probes[n++] = (struct probe){.id = id,
						 .gen = wd->slots[id].gen,
						 .fd = wd->slots[id].fd,
						 .since_us = wd->slots[id].since_us};
	*nreading = n;
	/* The FIFO is ordered by since_us: stop at the first not yet due, and
	 * after IDLE_BATCH (the rest next tick), to keep the lock held briefly
	 * when thousands of idle connections fall due together. */
	for (id = wd->idle.head; id != NIL && n < *nreading + IDLE_BATCH &&
				 wd->slots[id].since_us + wd->idle_look_us <= now;
	     id = wd->slots[id].next)
		wd->probes[n++] = (struct probe){.id = id,
						 .gen = wd->slots[id].gen,
						 .fd = wd->slots[id].fd,
						 .since_us = wd->slots[id].since_us};
	return n;
}

/* Whether a next request has begun on an idle connection: bytes arrived
 * after since_us (the kernel counts them even before anyone reads them). */
static bool bytes_since(int fd, uint64_t since_us, uint64_t now)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
		return false;
	/* The kernel counts in jiffies: a margin keeps the previous request's
	 * last bytes from looking newer than they are. */
	return now - (uint64_t)ti.tcpi_last_data_recv * 1000u > since_us + JIFFY_MARGIN_US;
}

/* Caller holds the lock and has checked the slot's generation. */
static void shut(struct watchdog *wd, int id, bool late)
{
	struct slot *s = &wd->slots[id];
	struct stat st;

	/* Never expected (close and reuse happen only after watchdog_close()),
	 * and checked anyway: a shutdown must never hit another socket. */
	if (s->ino != 0 && (fstat(s->fd, &st) != 0 || st.st_ino != s->ino)) {
		wd->fd_mismatch++;
		set_state(wd, id, WD_ARRIVED, 0);
		return;
	}
	shutdown(s->fd, SHUT_RDWR);
	if (late)
		wd->shut_late++;
	else
		wd->shut_gone++;
	/* Not watched again: libmicrohttpd closes it on its next event. */
	set_state(wd, id, WD_ARRIVED, 0);
}

void watchdog_tick(struct watchdog *wd)
{
	uint64_t now;
	size_t n, nreading = 0;

	pthread_mutex_lock(&wd->lock);
	now = util_mono_us(); /* under the lock: no slot's time is later */
	n = collect(wd, now, &nreading);
	pthread_mutex_unlock(&wd->lock);
	if (n == 0)
		return;

	/* Without the lock: the server's threads keep going meanwhile. One
	 * poll() for all, reading and idle. */
	for (size_t i = 0; i < n; i++)
		wd->pfds[i] = (struct pollfd){.fd = wd->probes[i].fd, .events = POLLRDHUP};
	if (poll(wd->pfds, (nfds_t)n, 0) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		struct probe *p = &wd->probes[i];
		int pending = 0;

		p->late = now > p->since_us && now - p->since_us > wd->deadline_us;
		p->gone = (wd->pfds[i].revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
		/* Bytes not yet read: libmicrohttpd may still find the request
		 * whole in them. Wait for it to read them. */
		if (p->gone && ioctl(p->fd, FIONREAD, &pending) == 0 && pending > 0)
			p->gone = false;
	}
	/* An idle connection whose client has gone: libmicrohttpd closes it
	 * itself unless the FIN came with bytes of a next request, which it
	 * misses; as reading, the checks above see to it from the next tick.
	 * Otherwise, have bytes of a next request come? */
	for (size_t i = nreading; i < n; i++)
		wd->probes[i].busy = wd->probes[i].gone ||
				     bytes_since(wd->probes[i].fd, wd->probes[i].since_us, now);

	pthread_mutex_lock(&wd->lock);
	for (size_t i = 0; i < n; i++) {
		struct probe *p = &wd->probes[i];
		struct slot *s = &wd->slots[p->id];

		if (s->gen != p->gen)
			continue; /* moved on (or closed) meanwhile */
		if (i >= nreading) {
			/* A next request began: its deadline runs from now, so it
			 * gets at most IDLE_LOOK_US more than a first request. */
			set_state(wd, p->id, p->busy ? WD_READING : WD_IDLE, now);
		} else if (p->late) {
			shut(wd, p->id, true);
		} else if (p->gone) {
			/* Twice in a row: between libmicrohttpd reading the last bytes
			 * of a whole request and telling us, the peer may look gone. */
			if (s->gone_seen)
				shut(wd, p->id, false);
			else
				s->gone_seen = true;
		} else {
			s->gone_seen = false;
		}
	}
	pthread_mutex_unlock(&wd->lock);
}

/* At most one line a second on what was cut off, not one per connection. */
static void log_summary(struct watchdog *wd)
{
	struct watchdog_stats st;
	uint64_t now = util_mono_us();

	if (now - wd->logged_at_us < 1000000u)
		return;
	watchdog_stats(wd, &st);
	if (st.shut_gone != wd->logged_gone || st.shut_late != wd->logged_late)
		log_info("http: closed %ld connections whose client left mid-request and %ld "
			 "whose request was not whole within the deadline",
			 st.shut_gone - wd->logged_gone, st.shut_late - wd->logged_late);
	wd->logged_gone = st.shut_gone;
	wd->logged_late = st.shut_late;
	wd->logged_at_us = now;
}

static void *run(void *arg)
{
	struct watchdog *wd = arg;
	struct timespec until;

	pthread_mutex_lock(&wd->stop_lock);
	while (!wd->stop) {
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += wd->tick_ms * 1000000L;
		until.tv_sec += until.tv_nsec / 1000000000L;
		until.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&wd->stop_cv, &wd->stop_lock, &until);
		if (wd->stop)
			break;
		pthread_mutex_unlock(&wd->stop_lock);
		watchdog_tick(wd);
		log_summary(wd);
		pthread_mutex_lock(&wd->stop_lock);
	}
	pthread_mutex_unlock(&wd->stop_lock);
	return NULL;
}

int watchdog_start(struct watchdog *wd)
{
	if (pthread_create(&wd->thread, NULL, run, wd) != 0)
		return TOKEND_ENOMEM;
	wd->running = true;
	return 0;
}

void watchdog_free(struct watchdog **wdp)
{
	struct watchdog *wd = wdp ? *wdp : NULL;

	if (wd == NULL)
		return;
	if (wd->running) {
		pthread_mutex_lock(&wd->stop_lock);
		wd->stop = true;
		pthread_cond_signal(&wd->stop_cv);
		pthread_mutex_unlock(&wd->stop_lock);
		pthread_join(wd->thread, NULL);
	}
	pthread_cond_destroy(&wd->stop_cv);
	pthread_mutex_destroy(&wd->stop_lock);
	pthread_mutex_destroy(&wd->lock);
	free(wd->probes);
	free(wd->pfds);
	free(wd->slots);
	free(wd);
	*wdp = NULL;
}
