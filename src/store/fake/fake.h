/* SPDX-License-Identifier: MIT */
/*
 * This header declares the fake backend: src/store/backend.h's ops table kept
 * in memory, for unit tests of store.c's rules and of the handlers. It is
 * built into a library of its own that only the unit tests link (never the
 * tokend binary). Open it with store_open_backend(&store_fake_backend,
 * "fake:", ...): any target opens a new, empty database, which
 * store_migrate() then marks migrated. Its rows mean what the SQLite
 * backend's rows mean, trigger for trigger (sql/003, sql/004), so that one
 * list of rule tests (tests/unit/store_rules.c) runs against both.
 */
#ifndef TOKEND_STORE_FAKE_H
#define TOKEND_STORE_FAKE_H

#include "store/backend.h"

extern const struct store_backend store_fake_backend;

#endif
