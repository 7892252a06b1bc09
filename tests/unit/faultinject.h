/* SPDX-License-Identifier: MIT */
/*
 * Allocation-failure injection for the torture suite (test_torture.c), in
 * the spirit of curl's torture tests: faultinject.c defines malloc, calloc,
 * realloc, free and the aligned allocators in the test executable itself,
 * so that every allocation of the process (ours, jansson's, SQLite's,
 * OpenSSL's, libc's own) goes through it, and forwards them to glibc's
 * __libc_* functions. It is linked only into test_torture, and not under
 * the sanitizer build (ASan has its own allocator).
 *
 * Failures are injected only on the thread that armed them, so background
 * threads (the store's checkpointer, the log flusher) neither shift the
 * count nor fail. Under Check's CK_FORK each test runs in a child: it arms,
 * counts and checks in that child, whose counters start as a copy of the
 * parent's and never reach back to it.
 */
#ifndef TOKEND_TESTS_FAULTINJECT_H
#define TOKEND_TESTS_FAULTINJECT_H

#include <stdbool.h>

/*
 * From now on, on this thread, counts allocations and makes the n-th fail
 * (returns NULL with errno ENOMEM); n <= 0 only counts. Only that one
 * allocation fails.
 */
void fi_arm(long n);

/* Stops counting on this thread; returns how many allocations were made. */
long fi_disarm(void);

/* Whether the armed allocation failed since the last fi_arm(). */
bool fi_hit(void);

/* Blocks allocated and not yet freed, by every thread of the process. */
long fi_outstanding(void);

/* With FI_LIVE set: lists the armed allocations whose blocks are still allocated. */
void fi_live_report(void);

#endif
