/* SPDX-License-Identifier: MIT */
/*
 * This header defines the application context: what start-up builds once
 * (configuration, store, keys) and every handler reads. It is read-only after
 * start-up; the objects it points to are thread-safe.
 */
#ifndef TOKEND_APP_H
#define TOKEND_APP_H

#include "tokend/cidr.h"
#include "tokend/config.h"

struct store;
struct jwtsign_keys;

struct app {
	struct config cfg;
	struct store *store;        /* owned by main; closed last */
	struct jwtsign_keys *keys;  /* owned by main */
	struct cidr_list metrics_allowed; /* [metrics] allowed, parsed once */
};

#endif
