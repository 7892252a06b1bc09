"""The bounded password-hashing pool: slow hashes never block cheap
requests, a full queue answers 503 + Retry-After at once, and clients that
vanish mid-hash do not hurt the server."""

import threading
import time

import pytest

from conftest import LOGIN, UNTHROTTLED, RawConn, build_request, expect_detail, expect_json

SLOW = {
    "TOKEND_PASSWORD_PBKDF2_ITERATIONS": "2000000",
    "TOKEND_PASSWORD_HASH_WORKERS": "1",
    "TOKEND_PASSWORD_HASH_QUEUE": "1",
    # one HTTP thread: if hashing ran on it, cheap requests would stall
    "TOKEND_SERVER_THREADS": "1",
    # every test here fails many logins of one user on purpose
    **UNTHROTTLED,
}


@pytest.fixture(scope="module")
def slow(module_factory):
    inst = module_factory(env=SLOW, label="slow-hash server")
    inst.add_user("slowpoke", "slow-pw")  # stored with 2,000,000 iterations
    return inst, inst.start()


def wait_pool_idle(srv, timeout=30):
    """Wait until a login is accepted by the pool again (no 503)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = srv.login("slowpoke", "wrong", timeout=30)
        if r.status_code != 503:
            return r
        time.sleep(0.3)
    raise AssertionError("hash pool still answering 503 after 30 s")


def login_in_background(srv, results, password="wrong"):
    def run():
        t0 = time.monotonic()
        try:
            r = srv.login("slowpoke", password, timeout=60)
            results.append((r, time.monotonic() - t0))
        except Exception as e:  # noqa: BLE001 - recorded for the assertion message
            results.append((e, time.monotonic() - t0))
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_cheap_requests_are_not_delayed_by_hashing(slow):
    inst, srv = slow
    wait_pool_idle(srv)
    results = []
    # two logins: one hashing, one queued -- about two hash-times of work
    bg = [login_in_background(srv, results), login_in_background(srv, results)]
    time.sleep(0.2)  # the first hash is running now
    for what, call, status in [
        ("GET unknown path", lambda: srv.request("GET", "/nope"), 404),
        ("GET on login (405)", lambda: srv.request("GET", LOGIN), 405),
        ("POST text/plain to login (415)", lambda: srv.post(LOGIN, data="x", headers={"Content-Type": "text/plain"}), 415),
    ]:
        t0 = time.monotonic()
        r = call()
        dt = time.monotonic() - t0
        expect_json(r, status, what)
        assert dt < 0.5, f"{what} took {dt:.2f}s while a password hash was running (must not wait for it)"
    overlapped = len(results) < 2
    for t in bg:
        t.join(60)
    assert len(results) == 2, f"background logins did not finish: {results}"
    for r, _ in results:
        assert not isinstance(r, Exception), f"background login failed: {r!r}"
        assert r.status_code in (401, 503), r.text
    assert overlapped, "inconclusive: both background hashes finished before the cheap requests ran"


def test_field_errors_need_no_hash_slot(slow):
    """A login that fails validation needs no hash: it gets its 400 even when
    the hash queue is full (retrying after a 503 could never succeed)."""
    inst, srv = slow
    wait_pool_idle(srv)
    results = []
    bg = [login_in_background(srv, results) for _ in range(3)]
    time.sleep(0.2)
    try:
        t0 = time.monotonic()
        r = srv.post(LOGIN, json={})
        dt = time.monotonic() - t0
        body = expect_json(r, 400, "login with no fields while the hash queue is full")
        assert body == {"username": ["This field is required."], "password": ["This field is required."]}, body
        assert dt < 0.5, f"field errors took {dt:.2f}s while hashes ran"
    finally:
        for t in bg:
            t.join(60)


def test_full_queue_answers_503_at_once(slow):
    inst, srv = slow
    wait_pool_idle(srv)
    results = []
    barrier = threading.Barrier(8)

    def run():
        barrier.wait()
        t0 = time.monotonic()
        try:
            r = srv.login("slowpoke", "wrong", timeout=60)
        except Exception as e:  # noqa: BLE001
            r = e
        results.append((r, time.monotonic() - t0))

    threads = [threading.Thread(target=run, daemon=True) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(90)
    errors = [r for r, _ in results if isinstance(r, Exception)]
    assert not errors, f"login requests failed at the transport level: {errors}"
    statuses = sorted(r.status_code for r, _ in results)
    busy = [(r, dt) for r, dt in results if r.status_code == 503]
    assert busy, f"8 concurrent logins with 1 worker and queue 1: no 503 (statuses {statuses})"
    assert any(r.status_code == 401 for r, _ in results), f"no login was served at all: {statuses}"
    assert set(statuses) <= {401, 503}, f"unexpected statuses {statuses}"
    for r, dt in busy:
        expect_detail(r, 503, "hash queue full")
        ra = r.headers.get("Retry-After", "")
        assert ra.strip().isdigit() and int(ra) >= 1, f"503 needs Retry-After (seconds), got {ra!r}"
        assert dt < 1.0, f"503 came after {dt:.2f}s: a full queue must be answered at once"
        assert "Cache-Control" not in r.headers or "no-store" in r.headers["Cache-Control"]


def test_correct_password_at_slow_count(slow):
    inst, srv = slow
    r = wait_pool_idle(srv)
    expect_json(r, 401, "wrong password after the pool drained")
    r = srv.login("slowpoke", "slow-pw", timeout=60)
    if r.status_code == 503:
        time.sleep(3)
        r = srv.login("slowpoke", "slow-pw", timeout=60)
    expect_json(r, 201, "correct password at 2,000,000 iterations")


def test_client_disconnect_while_hashing_then_sigterm(slow):
    inst, srv = slow
    wait_pool_idle(srv)
    body = b'{"username": "slowpoke", "password": "slow-pw"}'
    req = build_request("POST", LOGIN, [("Content-Type", "application/json"),
                                        ("Content-Length", str(len(body)))], body)
    import socket
    import struct
    for abort in (False, True, False):
        c = RawConn(srv.port)
        c.send(req)
        time.sleep(0.1)
        if abort:  # RST instead of FIN
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
    time.sleep(0.3)
    srv.assert_alive("clients disconnected while their logins were hashed")
    t0 = time.monotonic()
    r = srv.request("GET", "/nope")
    assert time.monotonic() - t0 < 0.5, "cheap request slow after client disconnects"
    expect_json(r, 404)
    r = wait_pool_idle(srv)
    expect_json(r, 401, "pool still works after the disconnects")
    # one more vanished client, then stop while its hash is still running
    c = RawConn(srv.port)
    c.send(req)
    time.sleep(0.2)
    c.close()
    inflight = []
    login_in_background(srv, inflight, password="slow-pw")
    time.sleep(0.2)
    rc = srv.stop()
    assert rc == 0, f"SIGTERM while hashes were in flight: exit {rc}\n{srv.tail()}"
