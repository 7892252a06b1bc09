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
struct throttle;

struct app {
	struct config cfg;
	struct store *store;       /* owned by main; closed last */
	struct jwtsign_keys *keys; /* owned by main */
	/* Login failures (tokend/throttle.h), owned by main, freed after the
	 * server stops; NULL = that limit is off. */
	struct throttle *login_client;    /* per (username, client address) */
	struct throttle *login_user;      /* per username, from all clients */
	struct cidr_list metrics_allowed; /* [metrics] allowed, parsed once */
};

#endif
