/* SPDX-License-Identifier: MIT */
/*
 * This file implements faultinject.h: the allocator interposed in the
 * torture suite's executable, forwarding to glibc's __libc_* allocator.
 */
#include "faultinject.h"

#include <errno.h>
#include <execinfo.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t n);
void __libc_free(void *p);
void *__libc_memalign(size_t align, size_t n);

void *malloc(size_t n);
void *calloc(size_t n, size_t size);
void *realloc(void *p, size_t n);
void free(void *p);
void *memalign(size_t align, size_t n);
void *aligned_alloc(size_t align, size_t n);
int posix_memalign(void **out, size_t align, size_t n);

static atomic_long outstanding;
static _Thread_local bool armed;
static _Thread_local bool hit;
static _Thread_local long fail_at;
static _Thread_local long count;
static _Thread_local bool tracing;
static long trace_at = -1; /* FI_TRACE=n: a backtrace of the n-th allocation */
static long show_at = -1;  /* FI_SHOW=k: a backtrace of the k-th, which succeeds */

/*
 * FI_LIVE=1 (debugging): remembers which armed allocation made each block,
 * so that fi_live_report() can name those still allocated (then FI_TRACE
 * shows where one was made; it fails that allocation too, so use it with
 * the same n only to find a block of the same run).
 */
#define LIVE_SLOTS 65536
static bool live_on;
static struct {
	void *p;
	long seq;
} live[LIVE_SLOTS];

static void live_add(void *p, long seq)
{
	for (size_t i = 0; i < LIVE_SLOTS; i++) {
		size_t k = ((size_t)p / 16 + i) % LIVE_SLOTS;
		if (live[k].p == NULL) {
			live[k].p = p;
			live[k].seq = seq;
			return;
		}
	}
}

static void live_del(void *p)
{
	for (size_t i = 0; i < LIVE_SLOTS; i++) {
		size_t k = ((size_t)p / 16 + i) % LIVE_SLOTS;
		if (live[k].p == p) {
			live[k].p = (void *)1; /* a tombstone */
			return;
		}
		if (live[k].p == NULL)
			return;
	}
}

/* Prints where the failing allocation came from (FI_TRACE, for debugging). */
static void trace(void)
{
	void *frames[32];

	if (tracing)
		return;
	tracing = true;
	backtrace_symbols_fd(frames, backtrace(frames, 32), 2);
	tracing = false;
}

/* True when this allocation is the one to fail. */
static bool inject(void)
{
	if (!armed)
		return false;
	if (++count == show_at)
		trace();
	if (count == fail_at) {
		if (fail_at == trace_at)
			trace();
		hit = true;
		errno = ENOMEM;
		return true;
	}
	return false;
}

static void *counted(void *p)
{
	if (p != NULL) {
		atomic_fetch_add_explicit(&outstanding, 1, memory_order_relaxed);
		if (live_on && armed)
			live_add(p, count);
	}
	return p;
}

void *malloc(size_t n)
{
	return inject() ? NULL : counted(__libc_malloc(n));
}

void *calloc(size_t n, size_t size)
{
	return inject() ? NULL : counted(__libc_calloc(n, size));
}

void *realloc(void *p, size_t n)
{
	void *q;

	if (p == NULL)
		return malloc(n);
	if (n == 0) { /* glibc frees p */
		free(p);
		return NULL;
	}
	if (inject())
		return NULL; /* p stays valid, as after a real failure */
	q = __libc_realloc(p, n);
	if (q != NULL && q != p && live_on) {
		live_del(p);
		live_add(q, count);
	}
	return q;
}

void free(void *p)
{
	if (p != NULL) {
		atomic_fetch_sub_explicit(&outstanding, 1, memory_order_relaxed);
		if (live_on)
			live_del(p);
	}
	__libc_free(p);
}

void *memalign(size_t align, size_t n)
{
	return inject() ? NULL : counted(__libc_memalign(align, n));
}

void *aligned_alloc(size_t align, size_t n)
{
	return memalign(align, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
	void *p;

	if (align < sizeof(void *) || (align & (align - 1)) != 0)
		return EINVAL;
	p = memalign(align, n);
	if (p == NULL)
		return ENOMEM;
	*out = p;
	return 0;
}

void fi_arm(long n)
{
	const char *t = getenv("FI_TRACE");

	trace_at = t ? strtol(t, NULL, 10) : -1;
	live_on = getenv("FI_LIVE") != NULL;
	if (t != NULL) { /* backtrace() loads libgcc on first use: not while armed */
		void *frame;
		(void)backtrace(&frame, 1);
	}
	t = getenv("FI_SHOW");
	show_at = t && n == trace_at ? strtol(t, NULL, 10) : -1;
	if (live_on)
		for (size_t i = 0; i < LIVE_SLOTS; i++)
			live[i].p = NULL;
	count = 0;
	fail_at = n;
	hit = false;
	armed = true;
}

long fi_disarm(void)
{
	armed = false;
	return count;
}

bool fi_hit(void)
{
	return hit;
}

long fi_outstanding(void)
{
	return atomic_load(&outstanding);
}

void fi_live_report(void)
{
	if (!live_on)
		return;
	for (size_t i = 0; i < LIVE_SLOTS; i++)
		if (live[i].p != NULL && live[i].p != (void *)1)
			fprintf(stderr, "faultinject: block of allocation %ld still allocated\n",
				live[i].seq);
}
