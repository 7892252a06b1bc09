# SPDX-License-Identifier: MIT
# A thin wrapper over CMake (like neovim's): `make run`, `make test`.
BUILD       ?= build
BUILD_ASAN  ?= build-asan
BUILD_COV   ?= build-cov
PYTHON      ?= /usr/bin/python3
CMAKE_FLAGS ?=
JOBS        ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps build run test test-unit test-api test-pg test-asan test-torture run-api run-pg run-asan fuzz coverage bench clean format check-style

all: build

deps:
	@scripts/install-deps

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) -- --no-print-directory

# Serves on http://127.0.0.1:8000 with var/tokend.db and var/keys/.
run: build
	@mkdir -p var
	$(BUILD)/tokend serve --demo

# The three long parts (the black-box suite on SQLite, the PostgreSQL part,
# the ASan build and run) go side by side (scripts/parallel): they spend
# most of their time waiting, and one after the other they took 20 minutes
# of CI's budget of 15.
test: build
	@scripts/check-style
	@cd $(BUILD) && ctest --output-on-failure -E test_torture
	@JOBS=$(JOBS) fuzz/run $(FUZZ_TEST_SECONDS)
	@$(MAKE) --no-print-directory test-torture
	@$(PYTHON) scripts/parallel \
		"black-box, SQLite" "$(MAKE) --no-print-directory run-api" \
		"PostgreSQL" "$(MAKE) --no-print-directory run-pg" \
		"ASan" "$(MAKE) --no-print-directory run-asan"

# The same suites under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: deps
	@$(MAKE) --no-print-directory run-asan

# The recipes of test-api, test-pg and test-asan without their dependencies
# (`make test` builds first, then runs them side by side).
run-asan:
	@cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DTOKEND_SANITIZE=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD_ASAN) -j $(JOBS) -- --no-print-directory
	@cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure
	@ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		TOKEND_BIN=$(CURDIR)/$(BUILD_ASAN)/tokend TOKEND_SANITIZED=1 \
		$(PYTHON) -m pytest -q -p no:cacheprovider tests/api

# The PostgreSQL part of `make test` (issue 13), on one throw-away server
# (tests/pgtmp.py; the trap stops it and removes its directory however the
# recipe ends): the store's PostgreSQL unit suites (ctest's *_pg, each on a
# database of its own), the black-box suite with one database per
# installation (tests/api/conftest.py), and tests/pg, the schema tests,
# which start servers of their own. The server lives in /dev/shm when there
# is one: each installation's CREATE DATABASE copies ~8 MB, which took
# 0.4-1.1 s on this machine's shared disk and 40-90 ms in tmpfs (the
# black-box pass: 48 s instead of 7 s for test_config/cli/login/logout).
test-pg: build
	@$(MAKE) --no-print-directory run-pg

run-pg:
	@base=/tmp; if [ -d /dev/shm ] && [ -w /dev/shm ]; then base=/dev/shm; fi; \
	d=$$(mktemp -u -d $$base/tokend-pg.XXXXXX); \
	trap '$(PYTHON) tests/pgtmp.py stop "$$d"' EXIT; trap 'exit 130' INT TERM; \
	url=$$($(PYTHON) tests/pgtmp.py start "$$d") || exit 1; \
	for t in $$(cd $(BUILD) && ctest -N -R '_pg$$' | sed -n 's/^ *Test *#[0-9]*: //p'); do \
		u=$$($(PYTHON) tests/pgtmp.py createdb "$$d" "$$t") || exit 1; \
		(cd $(BUILD) && TOKEND_TEST_PG_URL=$$u ctest --output-on-failure -R "^$$t$$") || exit 1; \
	done; \
	TOKEND_TEST_DATABASE=postgres TOKEND_TEST_PG_URL=$$url TOKEND_BIN=$(CURDIR)/$(BUILD)/tokend \
		$(PYTHON) -m pytest -q -p no:cacheprovider tests/api || exit 1; \
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/pg

# Allocation-failure injection (tests/unit/test_torture.c): every operation
# with its 1st, 2nd, ... allocation failing; TORTURE_ALL=1 for every N.
test-torture: build
	@cd $(BUILD) && ctest --output-on-failure -R test_torture

test-unit: build
	@cd $(BUILD) && ctest --output-on-failure

test-api: build
	@$(MAKE) --no-print-directory run-api

run-api:
	@TOKEND_BIN=$(CURDIR)/$(BUILD)/tokend $(PYTHON) -m pytest -q -p no:cacheprovider tests/api

# The benchmark (not part of `make test`): release build, wrk against tokend
# and two ceilings on loopback, nginx and bare libmicrohttpd
# (bench/mhd_ceiling.c, compiled by bench/run.py into build-bench/); report
# in bench/results/. BENCH_ARGS=--scale: the same reads and refresh on a
# database of a million users (bench/scale.py); --postgres: SQLite against
# PostgreSQL. docs/performance.md describes each.
bench:
	@scripts/install-deps --bench
	@$(PYTHON) bench/run.py $(BENCH_ARGS)

# libFuzzer drivers (clang, built by CMake with -DTOKEND_FUZZ=ON in
# build-fuzz/), each for FUZZ_SECONDS on its corpus; `make test` runs each
# for FUZZ_TEST_SECONDS.
FUZZ_SECONDS ?= 60
FUZZ_TEST_SECONDS ?= 3
fuzz: deps
	@JOBS=$(JOBS) fuzz/run $(FUZZ_SECONDS)

# Line and branch coverage (gcov + gcovr) of src/ by the unit suites and the
# black-box suite, run against an instrumented build. Slow: not in `make test`.
coverage: deps
	@cmake -S . -B $(BUILD_COV) -DCMAKE_BUILD_TYPE=Debug -DTOKEND_COVERAGE=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD_COV) -j $(JOBS) -- --no-print-directory
	@find $(BUILD_COV) -name '*.gcda' -delete
	@cd $(BUILD_COV) && ctest --output-on-failure
	@TOKEND_BIN=$(CURDIR)/$(BUILD_COV)/tokend $(PYTHON) -m pytest -q -p no:cacheprovider tests/api
	@gcovr -r . --object-directory $(BUILD_COV) --filter 'src/' --print-summary \
		-o $(BUILD_COV)/coverage.txt
	@cat $(BUILD_COV)/coverage.txt

# The same files and .clang-format as scripts/check-style.
format:
	@find src include tests/unit fuzz -name '*.[ch]' | sort | xargs clang-format --style=file -i

check-style:
	@scripts/check-style

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_COV) build-fuzz build-bench
