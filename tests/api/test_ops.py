"""API.md "Around the six routes": GET /healthz and GET /readyz, the probes
of a load balancer or an orchestrator. /healthz answers while the process
serves; /readyz answers 503 while the store cannot be queried (database file
moved away, database locked by another process) and recovers by itself.
Both answer Cache-Control: no-store, HEAD like GET, other methods 405 with
Allow, and ignore a body."""

import os
import sqlite3
import threading
import time

import pytest

from conftest import build_request, expect_json, raw_one, sqlite_only

READY_DEADLINE = 30.0  # bounds a hang only


def no_store(resp, what):
    assert resp.headers.get("Cache-Control", "").lower().replace(" ", "") == "no-store", (
        f"{what}: probes must answer 'Cache-Control: no-store', got "
        f"{resp.headers.get('Cache-Control')!r}")


@pytest.mark.parametrize("path", ["/healthz", "/healthz/"])
def test_healthz_ok(srv, path):
    r = srv.request("GET", path)
    assert expect_json(r, 200, f"GET {path}") == {"status": "ok"}
    no_store(r, f"GET {path}")


@pytest.mark.parametrize("path", ["/readyz", "/readyz/"])
def test_readyz_ready(srv, path):
    r = srv.request("GET", path)
    assert expect_json(r, 200, f"GET {path}") == {"status": "ready"}
    no_store(r, f"GET {path}")


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_head_is_get_without_body(srv, path):
    r = srv.request("HEAD", path)
    assert r.status_code == 200, f"HEAD {path}: {r.status_code}"
    assert r.content == b"", f"HEAD {path} sent a body: {r.content[:100]!r}"
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    no_store(r, f"HEAD {path}")


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405_with_allow(srv, path, method):
    r = srv.request(method, path, json={"x": 1})
    body = expect_json(r, 405, f"{method} {path}")
    assert "detail" in body, body
    allow = {m.strip() for m in r.headers.get("Allow", "").split(",")}
    assert allow == {"GET", "HEAD"}, f"{method} {path}: Allow {r.headers.get('Allow')!r}"


@pytest.mark.parametrize("path,want", [("/healthz", {"status": "ok"}),
                                       ("/readyz", {"status": "ready"})])
@pytest.mark.parametrize("body,ctype", [
    (b'{"status": "down"}', "application/json"), (b"not json at all", "application/json"),
    (b"a=1&b=2", "application/x-www-form-urlencoded"), (b"\x00\xff" * 50, "text/plain")])
def test_a_body_is_ignored(srv, path, want, body, ctype):
    """A GET with a body is legal (RFC 9110 9.3.1 gives it no meaning): the
    probe answers as without one, whatever the body or its type."""
    req = build_request("GET", path, [("Content-Type", ctype),
                                      ("Content-Length", str(len(body))),
                                      ("Connection", "close")], body)
    r = raw_one(srv.port, req, what=f"GET {path} with a body")
    assert r.status_code == 200, f"GET {path} with {body[:20]!r} ({ctype}): {r!r}"
    assert r.json() == want, r


def test_probe_body_over_the_limit_is_413(factory):
    _, s = factory.server(env={"TOKEND_SERVER_MAX_BODY": "1024"})
    body = b"x" * 4096
    req = build_request("GET", "/healthz", [("Content-Length", str(len(body))),
                                            ("Connection", "close")], body)
    r = raw_one(s.port, req, what="GET /healthz with 4 KiB over a 1 KiB limit")
    assert r.status_code == 413, r
    s.assert_alive("an oversized probe body")


def poll_ready(s, want, deadline=READY_DEADLINE):
    end = time.monotonic() + deadline
    last = None
    while time.monotonic() < end:
        last = s.request("GET", "/readyz", timeout=READY_DEADLINE)
        if last.status_code == want:
            return last
        time.sleep(0.1)
    raise AssertionError(f"/readyz did not answer {want} within {deadline}s; last: "
                         f"{last.status_code} {last.text[:200]!r}")


def unavailable(r, inst, what):
    body = expect_json(r, 503, what)
    assert body.get("status") == "unavailable", body
    reason = body.get("reason")
    assert isinstance(reason, str) and reason and len(reason) < 64, body
    assert str(inst.root) not in reason and "/" not in reason, (
        f"{what}: the reason must be a short constant, not internals: {reason!r}")
    no_store(r, what)
    assert set(body) == {"status", "reason"}, body


@sqlite_only("the database file is moved away")
def test_readyz_database_moved_away_and_back(factory):
    inst, s = factory.server()
    poll_ready(s, 200)
    # warm a few threads' connections, so that a thread that already has
    # one is asked as well as one that would open it
    for _ in range(20):
        s.request("GET", "/readyz")
    away = inst.db.with_name("tokend.db.away")
    os.rename(inst.db, away)
    try:
        for _ in range(10):  # every thread notices, not only one
            r = poll_ready(s, 503)
            unavailable(r, inst, "database file moved away")
        assert not inst.db.exists(), "the probe must not create a new empty database"
        assert expect_json(s.request("GET", "/healthz"), 200) == {"status": "ok"}, (
            "liveness does not depend on the store")
    finally:
        os.rename(away, inst.db)
    r = poll_ready(s, 200)
    assert r.json() == {"status": "ready"}
    for _ in range(10):
        assert s.request("GET", "/readyz").status_code == 200
    # logged once each way, not once per probe
    assert s.wait_for_stderr(lambda ln: "readyz: ready again" in ln, timeout=READY_DEADLINE)
    lines = [ln for ln in s.err_lines if "readyz:" in ln]
    assert len(lines) == 2 and "not ready: store unavailable" in lines[0] and (
        "ready again" in lines[1]), lines


@sqlite_only("the database file is unlinked")
def test_readyz_database_removed(factory):
    """The file unlinked (SQLite keeps its descriptor open: queries still
    work on a file no one else can see): not ready."""
    inst, s = factory.server()
    poll_ready(s, 200)
    keep = inst.db.with_name("tokend.db.keep")
    os.link(inst.db, keep)
    os.unlink(inst.db)
    try:
        unavailable(poll_ready(s, 503), inst, "database file removed")
    finally:
        os.link(keep, inst.db)  # the same file back under its name
        os.unlink(keep)
    poll_ready(s, 200)


@sqlite_only("a copy is renamed over the database file")
def test_readyz_database_replaced_by_a_copy(factory):
    """A copy renamed over the database is another file: the process still
    reads and writes the old one (and its -wal, which must never be applied
    to another file), so it stays not ready until restarted, or until the
    file it opened is back under its name."""
    inst, s = factory.server()
    poll_ready(s, 200)
    keep = inst.db.with_name("tokend.db.keep")
    copy = inst.db.with_name("tokend.db.copy")
    os.link(inst.db, keep)
    src = sqlite3.connect(str(inst.db), timeout=10)
    dst = sqlite3.connect(str(copy))
    src.backup(dst)
    src.close()
    dst.close()
    os.replace(copy, inst.db)
    try:
        unavailable(poll_ready(s, 503), inst, "database replaced by a copy")
        for _ in range(5):
            assert s.request("GET", "/readyz").status_code == 503
    finally:
        os.replace(keep, inst.db)
    poll_ready(s, 200)


@sqlite_only("another process holds the file's exclusive lock (PostgreSQL: test_pg.py stops the server)")
def test_readyz_database_locked_by_another_process(factory):
    inst, s = factory.server()
    poll_ready(s, 200)
    con = sqlite3.connect(str(inst.db), timeout=10, isolation_level=None)
    try:
        con.execute("BEGIN EXCLUSIVE")
        r = poll_ready(s, 503)
        unavailable(r, inst, "database locked by another process")
        assert expect_json(s.request("GET", "/healthz"), 200) == {"status": "ok"}
    finally:
        con.execute("ROLLBACK")
        con.close()
    poll_ready(s, 200)


@sqlite_only("another process holds the file's exclusive lock")
def test_readyz_answers_promptly_while_locked(factory):
    """A probe never waits for the whole busy timeout: it answers within its
    own short wait, so that a load balancer's probe timeout (1 s is common)
    sees the 503 rather than a timeout. Asserted without timing: the busy
    timeout is ten minutes here, so a probe that waited for it could not
    answer within the (hang-bounding) 60 s."""
    inst, s = factory.server(env={"TOKEND_DATABASE_BUSY_TIMEOUT_MS": "600000"})
    poll_ready(s, 200)
    con = sqlite3.connect(str(inst.db), timeout=10, isolation_level=None)
    try:
        con.execute("BEGIN EXCLUSIVE")
        r = s.request("GET", "/readyz", timeout=60)
        assert r.status_code == 503, r.text
    finally:
        con.execute("ROLLBACK")
        con.close()


def test_probes_flood_and_concurrency(srv):
    errors = []

    def probe():
        try:
            for _ in range(50):
                for path, want in (("/healthz", 200), ("/readyz", 200)):
                    r = srv.request("GET", path)
                    if r.status_code != want:
                        errors.append((path, r.status_code, r.text[:100]))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    ts = [threading.Thread(target=probe) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors[:5]
    srv.assert_alive("400 concurrent probes")
