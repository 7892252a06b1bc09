"""Faults under load (issue 13): the database going away, and an instance
killed mid-write.

What each test proves:
- test_postgres_stopped_under_load: threads loop login, refresh, verify and
  list against one instance; PostgreSQL is stopped (`pg_ctl stop -m fast`)
  and started again. Every request made while it is down answers 503 (and
  /readyz 503, /healthz 200); no request of the whole run answers 401 (a
  valid token is never called bad because the database is away), none a
  500 or a dropped connection; after the restart service resumes in the
  same tokend process (a refresh and a list succeed again).
- test_kill_9_loses_no_acknowledged_write[postgres|sqlite]: threads issue
  API tokens and rotate refresh tokens, recording each write answered 2xx;
  the instance gets SIGKILL mid-load and is started again on the same
  database: every acknowledged API token is in the database, verifies and
  is listed; every acknowledged rotation's new refresh row is there, and
  the last one of each chain refreshes (201).

PostgreSQL servers come from tests/pgtmp.py (the stop/start test has its
own); the PostgreSQL cases skip only when initdb is missing. No assertion
is on a duration: waits poll for a condition, and their deadlines only
bound a hang."""

import sys
import threading
import time
import uuid as uuidlib
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: pgtmp
import pgtmp  # noqa: E402

import dbsql  # noqa: E402
from conftest import HTTP_TIMEOUT, claims_of, expect_json, expect_tokens  # noqa: E402
from test_keys import wait_until  # noqa: E402

NO_PG = f"PostgreSQL's initdb is missing ({pgtmp.PG_BIN / 'initdb'}): install postgresql-15"
needs_pg = pytest.mark.skipif(not pgtmp.available(), reason=NO_PG)
DEADLINE = 60.0  # seconds: bounds a hang, never a measurement
PASSWORD = "faults test password"
REFRESH = "/api/auth/jwt/refresh/"
VERIFY = "/api/auth/jwt/verify/"
# A rotation committed whose answer was lost to the fault is replayed by
# the grace window when the client retries: the longest window, so that a
# retry is never a reuse however long the fault lasts.
ENV = {"TOKEND_TOKENS_REFRESH_GRACE": "3600",
       "TOKEND_SERVER_PER_CLIENT_REQUESTS": "0",
       "TOKEND_TOKENS_API_MAX_TOKENS": "1000000"}


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def setup_user(inst):
    team = inst.cli_ok("team", "add", f"t-{uuidlib.uuid4().hex[:8]}").out.strip()
    name = f"f-{uuidlib.uuid4().hex[:8]}"
    inst.add_user(name, PASSWORD)
    inst.cli_ok("team", "add-member", team, name)
    return name, team


def use_database(inst, db):
    """inst (a conftest.Tokend) runs on db: a PostgreSQL URL or a SQLite path."""
    inst.database = db
    inst.db = None if dbsql.is_postgres(db) else Path(db)


class Recorder:
    """(started, ended, what, status) of every request, status None for a
    connection error."""

    def __init__(self):
        self.lock = threading.Lock()
        self.log = []

    def call(self, what, fn):
        t0 = time.monotonic()
        try:
            r = fn()
        except requests.RequestException:
            r = None
        with self.lock:
            self.log.append((t0, time.monotonic(), what, None if r is None else r.status_code))
        return r

    def between(self, t0, t1):
        with self.lock:
            return [e for e in self.log if e[0] >= t0 and e[1] <= t1]

    def after(self, t0, what, status):
        with self.lock:
            return any(e[0] >= t0 and e[2] == what and e[3] == status for e in self.log)


# ---------------------------------------------------------------- PostgreSQL stopped

def pg_ctl(pg, *args):
    return pg._run([pgtmp.PG_BIN / "pg_ctl", *args, "-D", pg.data], timeout=pgtmp.START_TIMEOUT + 10)


@needs_pg
def test_postgres_stopped_under_load(factory):
    with pgtmp.PgTmp() as pg:
        inst = factory(env=ENV, label="pg stopped")
        use_database(inst, pg.create_database("faults"))
        name, team = setup_user(inst)
        srv = inst.start(label="pg stopped")
        pid = srv.proc.pid
        path = f"/api/openapi/token/{team}/"
        rec = Recorder()
        stop = threading.Event()

        def worker():
            pair = None
            while not stop.is_set():
                if pair is None:
                    r = rec.call("login", lambda: srv.login(name, PASSWORD))
                    if r is not None and r.status_code == 201:
                        pair = r.json()
                    else:
                        time.sleep(0.02)
                    continue
                r = rec.call("refresh", lambda: srv.post(REFRESH, json={"refresh": pair["refresh"]}))
                if r is not None and r.status_code == 201:
                    pair = r.json()
                rec.call("verify", lambda: srv.post(VERIFY, json={"token": pair["access"]}))
                rec.call("list", lambda: srv.request("GET", path, headers=bearer(pair["access"])))
                if r is None or r.status_code != 201:
                    time.sleep(0.02)  # the database is away: do not spin

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            t_begin = time.monotonic()
            assert wait_until(lambda: rec.after(t_begin, "list", 200), DEADLINE), "no list before"
            pg_ctl(pg, "stop", "-m", "fast", "-w")
            down = time.monotonic()
            # down: wait until the workers have met the outage, and /readyz says so
            assert wait_until(lambda: len(rec.between(down, time.monotonic())) >= 40, DEADLINE)
            assert wait_until(lambda: srv.request("GET", "/readyz").status_code == 503, DEADLINE)
            ready = expect_json(srv.request("GET", "/readyz"), 503, "readyz while down")
            assert ready["status"] == "unavailable", ready
            expect_json(srv.request("GET", "/healthz"), 200, "healthz while down")
            up = time.monotonic()
            pg_ctl(pg, "start", "-l", pg.log, "-w", "-t", str(pgtmp.START_TIMEOUT), "-s")
            back = time.monotonic()
            assert wait_until(lambda: rec.after(back, "refresh", 201) and
                              rec.after(back, "list", 200), DEADLINE), (
                f"service did not resume after PostgreSQL came back\n{srv.tail()}")
            assert wait_until(lambda: srv.request("GET", "/readyz").status_code == 200, DEADLINE)
        finally:
            stop.set()
            for t in threads:
                t.join(DEADLINE)
        assert srv.alive() and srv.proc.pid == pid, "the same process served throughout"
        during = rec.between(down, up)
        assert during, "no request was made while PostgreSQL was down"
        odd = [e for e in during if e[3] != 503]
        assert not odd, (f"while down, every answer is 503: {len(odd)} of {len(during)} "
                         f"were not, {sorted({(e[2], e[3]) for e in odd})}\n{srv.tail(30)}")
        by_what = {e[2] for e in during}
        assert {"refresh", "verify", "list"} <= by_what, by_what
        statuses = {e[3] for e in rec.log}
        assert 401 not in statuses, "a valid token was answered 401"
        assert None not in statuses, "a connection was dropped"
        assert statuses <= {200, 201, 503}, statuses
        srv.assert_alive("PostgreSQL stopped and started")


# ---------------------------------------------------------------- kill -9

@pytest.fixture(scope="module")
def pg_module():
    if not pgtmp.available():
        pytest.skip(NO_PG)
    with pgtmp.PgTmp() as server:
        yield server


@pytest.fixture(params=["postgres", "sqlite"])
def backend_inst(request, factory):
    inst = factory(env=ENV, label=f"kill -9 ({request.param})")
    if request.param == "postgres":
        pg = request.getfixturevalue("pg_module")
        use_database(inst, pg.create_database(f"k_{uuidlib.uuid4().hex[:12]}"))
    else:  # a file, also when the suite runs on PostgreSQL (TOKEND_TEST_DATABASE)
        use_database(inst, str(inst.root / "tokend.db"))
    return inst


def test_kill_9_loses_no_acknowledged_write(backend_inst):
    inst = backend_inst
    name, team = setup_user(inst)
    srv = inst.start()
    path = f"/api/openapi/token/{team}/"
    access = expect_tokens(srv.login(name, PASSWORD))["access"]
    acked_api = []                    # (jti, token) answered 201
    chains = [[] for _ in range(2)]   # per refresher: the refresh tokens answered 201
    lock = threading.Lock()
    stop = threading.Event()

    def issuer():
        while not stop.is_set():
            try:
                r = srv.post(path, headers=bearer(access), json={"name": "k9"})
            except requests.RequestException:
                return  # killed
            if r.status_code == 201:
                b = r.json()
                with lock:
                    acked_api.append((b["token_issuer_uuid"], b["access_token"]))

    def refresher(chain):
        try:
            token = expect_tokens(srv.login(name, PASSWORD))["refresh"]
        except requests.RequestException:
            return
        chain.append(token)
        while not stop.is_set():
            try:
                r = srv.post(REFRESH, json={"refresh": token})
            except requests.RequestException:
                return
            if r.status_code == 201:
                token = r.json()["refresh"]
                with lock:
                    chain.append(token)

    threads = [threading.Thread(target=issuer) for _ in range(2)] + \
        [threading.Thread(target=refresher, args=(ch,)) for ch in chains]
    for t in threads:
        t.start()
    try:
        assert wait_until(lambda: len(acked_api) >= 20 and all(len(c) >= 10 for c in chains),
                          DEADLINE), f"too few writes acknowledged: {len(acked_api)}, " \
            f"{[len(c) for c in chains]}\n{srv.tail()}"
        srv.proc.kill()  # SIGKILL, mid-load
        srv.proc.wait(DEADLINE)
        srv.stopped = True
    finally:
        stop.set()
        for t in threads:
            t.join(DEADLINE)
    assert not any(t.is_alive() for t in threads)
    with lock:
        api = list(acked_api)
        rotations = [list(c) for c in chains]

    srv2 = inst.start(label=f"{srv.label}, restarted")
    # every acknowledged API token: a row, a 201 from verify, listed
    jtis = {j for j, _ in api}
    rows = {r["jti"] for r in dbsql.rows(inst.database, "SELECT jti FROM api_tokens")}
    assert jtis <= rows, f"{len(jtis - rows)} acknowledged API tokens lost"
    for _, tok in api:
        assert srv2.post(VERIFY, json={"token": tok}).status_code == 201
    access2 = expect_tokens(srv2.login(name, PASSWORD))["access"]
    listed = {t["token_issuer_uuid"] for t in
              expect_json(srv2.request("GET", path, headers=bearer(access2)), 200, "list")["tokens"]}
    assert jtis <= listed, f"{len(jtis - listed)} acknowledged API tokens not listed"
    # every acknowledged rotation: its new row, and each chain's last token works
    refresh_rows = {r["jti"]: r for r in dbsql.rows(
        inst.database, "SELECT jti, used_at, revoked FROM refresh_tokens")}
    for chain in rotations:
        for tok in chain:
            jti = claims_of(tok)["jti"]
            assert jti in refresh_rows, "an acknowledged rotation's refresh row is lost"
            assert refresh_rows[jti]["revoked"] == 0
        for tok in chain[:-1]:  # each was used by the next acknowledged rotation
            assert refresh_rows[claims_of(tok)["jti"]]["used_at"] is not None
        expect_tokens(srv2.post(REFRESH, json={"refresh": chain[-1]}),
                      "the last acknowledged refresh token after the restart")
    srv2.assert_alive("kill -9 and restart")
