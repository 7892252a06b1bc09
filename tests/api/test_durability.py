"""Acknowledged writes survive kill -9 under concurrent writers, and
tokend_store_commits_total counts the COMMITs, against the real binary.

What each test proves:
- test_kill_9_under_concurrent_refresh: eight threads rotate refresh
  tokens at once (so that rotations queue on the write lock), each recording every rotation answered 201; the process gets
  SIGKILL mid-load and is started again on the same file. Every
  acknowledged rotation's new row is there, unrevoked, and each token it
  replaced is marked used; the last acknowledged token of each chain
  refreshes (201), after which the one before it is refused (401: its
  successor is used, a reuse). tokend_store_commits_total counted the
  COMMITs, never more than the writes answered.
- test_commits_metric_counts_writes: one write at a time, nothing queued:
  each is its own COMMIT.

The grace window is long: a rotation committed whose answer the kill lost
is replayed, not called a reuse, when the chain's last token is presented
again. No assertion is on a duration: waits poll for a condition, and
their deadlines only bound a hang."""

import re
import threading
import uuid as uuidlib

import pytest
import requests

import dbsql
from conftest import claims_of, expect_tokens, sqlite_only
from test_keys import wait_until

DEADLINE = 60.0  # seconds: bounds a hang, never a measurement
PASSWORD = "durability test password"
REFRESH = "/api/auth/jwt/refresh/"
THREADS = 8
ENV = {"TOKEND_TOKENS_REFRESH_GRACE": "3600",
       "TOKEND_SERVER_PER_CLIENT_REQUESTS": "0",
       "TOKEND_SERVER_THREADS": str(THREADS)}

pytestmark = sqlite_only("reads the rows from the SQLite file after kill -9")


def commits(srv):
    r = srv.request("GET", "/metrics")
    assert r.status_code == 200, r.text[:200]
    m = re.search(r"^tokend_store_commits_total (\d+)$", r.text, re.M)
    assert m, "tokend_store_commits_total missing"
    return int(m.group(1))


def test_kill_9_under_concurrent_refresh(factory):
    inst = factory(env=ENV, label="kill -9 under refreshers")
    name = f"g-{uuidlib.uuid4().hex[:8]}"
    inst.add_user(name, PASSWORD)
    srv = inst.start()
    chains = [[expect_tokens(srv.login(name, PASSWORD))["refresh"]] for _ in range(THREADS)]
    before = commits(srv)
    lock = threading.Lock()
    stop = threading.Event()
    failures = []

    def refresher(chain):
        token = chain[0]
        while not stop.is_set():
            try:
                r = srv.post(REFRESH, json={"refresh": token})
            except requests.RequestException:
                return  # killed
            if r.status_code != 201:
                with lock:
                    failures.append((r.status_code, r.text[:200]))
                return
            token = r.json()["refresh"]
            with lock:
                chain.append(token)

    threads = [threading.Thread(target=refresher, args=(c,)) for c in chains]
    for t in threads:
        t.start()
    try:
        assert wait_until(lambda: sum(len(c) - 1 for c in chains) >= 400 or failures,
                          DEADLINE), f"too few rotations: {[len(c) for c in chains]}"
        during = commits(srv) - before
        acked = sum(len(c) - 1 for c in chains)
        srv.proc.kill()  # SIGKILL, mid-load
        srv.proc.wait(DEADLINE)
        srv.stopped = True
    finally:
        stop.set()
        for t in threads:
            t.join(DEADLINE)
    assert not any(t.is_alive() for t in threads)
    assert not failures, failures[:3]
    # the scrape above came after those rotations: each COMMIT held at least one
    assert 0 < during <= acked + THREADS, (during, acked)

    rows = {r["jti"]: r for r in dbsql.rows(
        inst.database, "SELECT jti, used_at, revoked FROM refresh_tokens")}
    for chain in chains:
        for tok in chain[1:]:
            jti = claims_of(tok)["jti"]
            assert jti in rows, "an acknowledged rotation's refresh row is lost"
            assert rows[jti]["revoked"] == 0
        for tok in chain[:-1]:  # each was used by the next acknowledged rotation
            assert rows[claims_of(tok)["jti"]]["used_at"] is not None

    srv2 = inst.start(label="restarted after kill -9")
    for chain in chains:
        expect_tokens(srv2.post(REFRESH, json={"refresh": chain[-1]}),
                      "the last acknowledged refresh token after the restart")
        if len(chain) >= 2:
            r = srv2.post(REFRESH, json={"refresh": chain[-2]})
            assert r.status_code == 401, (r.status_code, r.text[:200])
    srv2.assert_alive("kill -9 and restart")


def test_commits_metric_counts_writes(factory):
    inst = factory(env={**ENV, "TOKEND_TOKENS_PURGE_INTERVAL": "86400"},
                   label="commits, one write at a time")
    name = f"g-{uuidlib.uuid4().hex[:8]}"
    inst.add_user(name, PASSWORD)
    srv = inst.start()
    token = expect_tokens(srv.login(name, PASSWORD))["refresh"]
    before = commits(srv)
    for _ in range(5):
        token = expect_tokens(srv.post(REFRESH, json={"refresh": token}))["refresh"]
    assert commits(srv) - before == 5
