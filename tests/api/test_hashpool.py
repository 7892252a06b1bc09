"""The bounded password-hashing pool: slow hashes never block cheap
requests, a full queue answers 503 + Retry-After at once, and clients that
vanish mid-hash do not hurt the server.

Nothing here measures a duration (that is the bench's business, and the
suite runs again under ASan on a shared 2-core machine). "Not delayed" and
"at once" are asserted as order: the pool is filled and seen full on
/metrics (tokend_hash_workers_busy, tokend_hash_queue_depth), and the cheap
answer must arrive while a login queued behind a 2,000,000-iteration hash
is still waiting -- were the cheap request to wait for a hash slot, it
would come after that login. Deadlines only bound a hang."""

import threading
import time

import pytest

from conftest import LOGIN, UNTHROTTLED, RawConn, build_request, expect_detail, expect_json

SLOW = {
    "TOKEND_PASSWORD_PBKDF2_ITERATIONS": "2000000",
    "TOKEND_PASSWORD_HASH_WORKERS": "1",
    "TOKEND_PASSWORD_HASH_QUEUE": "1",
    # a queued login is never turned away for waiting (an ASan hash takes
    # seconds): the only 503 is the full queue's
    "TOKEND_PASSWORD_HASH_DEADLINE_MS": "3600000",
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


HANG = 60  # seconds; bounds a hang, never a speed


def pool_state(srv):
    """(hashing threads at work, logins queued for one), from /metrics."""
    r = srv.request("GET", "/metrics", timeout=HANG)
    assert r.status_code == 200, f"GET /metrics: {r.status_code} {r.text[:200]!r}"
    got = {}
    for ln in r.text.splitlines():
        name, _, val = ln.partition(" ")
        if name in ("tokend_hash_workers_busy", "tokend_hash_queue_depth"):
            got[name] = int(float(val))
    return got.get("tokend_hash_workers_busy", 0), got.get("tokend_hash_queue_depth", 0)


def wait_pool(srv, busy, queued, what):
    """Poll /metrics until the pool holds `busy` running and `queued`
    waiting logins."""
    deadline = time.monotonic() + HANG
    state = pool_state(srv)
    while state != (busy, queued):
        assert time.monotonic() < deadline, (
            f"{what}: hash pool never reached {busy} hashing + {queued} queued "
            f"within {HANG}s (last seen {state[0]} + {state[1]})")
        time.sleep(0.05)
        state = pool_state(srv)


def wait_pool_idle(srv, timeout=HANG):
    """Wait until a login is accepted by the pool again (no 503)."""
    deadline = time.monotonic() + timeout
    while True:
        r = srv.login("slowpoke", "wrong", timeout=HANG)
        if r.status_code != 503:
            return r
        assert time.monotonic() < deadline, f"hash pool still answering 503 after {timeout}s"
        time.sleep(0.3)


def fill_pool(srv, results):
    """One login hashing, one queued behind it (1 worker, queue 1), seen on
    /metrics; returns their threads. The queued one cannot finish before
    two full hashes have run."""
    wait_pool_idle(srv)
    wait_pool(srv, 0, 0, "before filling the pool")
    bg = [login_in_background(srv, results)]
    wait_pool(srv, 1, 0, "first background login")
    bg.append(login_in_background(srv, results))
    wait_pool(srv, 1, 1, "second background login")
    return bg


def login_in_background(srv, results, password="wrong"):
    """A login on a thread; its response (or exception) is appended to
    `results` when it arrives, so len(results) tells how many are done."""
    def run():
        try:
            results.append(srv.login("slowpoke", password, timeout=HANG))
        except Exception as e:  # noqa: BLE001 - recorded for the assertion message
            results.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_cheap_requests_are_not_delayed_by_hashing(slow):
    inst, srv = slow
    wait_pool_idle(srv)
    results = []
    # two logins: one hashing, one queued -- two hash-times of work
    bg = fill_pool(srv, results)
    for what, call, status in [
        ("GET unknown path", lambda: srv.request("GET", "/nope"), 404),
        ("GET on login (405)", lambda: srv.request("GET", LOGIN), 405),
        ("POST text/plain to login (415)", lambda: srv.post(LOGIN, data="x", headers={"Content-Type": "text/plain"}), 415),
    ]:
        r = call()
        expect_json(r, status, what)
        assert len(results) < 2, (
            f"{what} was answered only after the queued login (results {results}): "
            f"a cheap request waited for a password hash")
    for t in bg:
        t.join(HANG)
    assert len(results) == 2, f"background logins did not finish within {HANG}s: {results}"
    for r in results:
        assert not isinstance(r, Exception), f"background login failed: {r!r}"
        expect_json(r, 401, "background login with a wrong password")


def test_field_errors_need_no_hash_slot(slow):
    """A login that fails validation needs no hash: it gets its 400 even when
    the hash queue is full (retrying after a 503 could never succeed)."""
    inst, srv = slow
    results = []
    bg = fill_pool(srv, results)
    try:
        r = srv.login("slowpoke", "wrong")
        expect_detail(r, 503, "a third login while the hash queue is full")
        r = srv.post(LOGIN, json={})
        body = expect_json(r, 400, "login with no fields while the hash queue is full")
        assert body == {"username": ["This field is required."], "password": ["This field is required."]}, body
        assert len(results) < 2, (
            f"the field errors came only after the queued login (results {results}): "
            f"they waited for a hash slot")
    finally:
        for t in bg:
            t.join(HANG)


def test_full_queue_answers_503_at_once(slow):
    """With the worker hashing and the queue full, a login is answered 503
    with Retry-After while the queued one still waits (it does not wait for
    a slot); and a burst of 8 logins gets only 401s and 503s, some of each."""
    inst, srv = slow
    results = []
    bg = fill_pool(srv, results)
    try:
        r = srv.login("slowpoke", "wrong")
        expect_detail(r, 503, "a login while the hash queue is full")
        ra = r.headers.get("Retry-After", "")
        assert ra.strip().isdigit() and int(ra) >= 1, f"503 needs Retry-After (seconds), got {ra!r}"
        assert len(results) < 2, (
            f"the 503 came only after the queued login was answered (results {results}): "
            f"a full queue must be answered without waiting for a slot")
    finally:
        for t in bg:
            t.join(HANG)

    wait_pool_idle(srv)
    results = []
    barrier = threading.Barrier(8)

    def run():
        barrier.wait()
        try:
            r = srv.login("slowpoke", "wrong", timeout=HANG)
        except Exception as e:  # noqa: BLE001
            r = e
        results.append(r)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(HANG * 2)
    assert len(results) == 8, f"only {len(results)} of 8 logins answered within {HANG * 2}s"
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, f"login requests failed at the transport level: {errors}"
    statuses = sorted(r.status_code for r in results)
    busy = [r for r in results if r.status_code == 503]
    assert busy, f"8 concurrent logins with 1 worker and queue 1: no 503 (statuses {statuses})"
    assert any(r.status_code == 401 for r in results), f"no login was served at all: {statuses}"
    assert set(statuses) <= {401, 503}, f"unexpected statuses {statuses}"
    for r in busy:
        expect_detail(r, 503, "hash queue full")
        ra = r.headers.get("Retry-After", "")
        assert ra.strip().isdigit() and int(ra) >= 1, f"503 needs Retry-After (seconds), got {ra!r}"
        assert "Cache-Control" not in r.headers or "no-store" in r.headers["Cache-Control"]


def test_correct_password_at_slow_count(slow):
    inst, srv = slow
    r = wait_pool_idle(srv)
    expect_json(r, 401, "wrong password after the pool drained")
    wait_pool(srv, 0, 0, "after the pool drained")
    r = srv.login("slowpoke", "slow-pw", timeout=HANG)
    expect_json(r, 201, "correct password at 2,000,000 iterations on an idle pool")


def test_client_disconnect_while_hashing_then_sigterm(slow):
    inst, srv = slow
    wait_pool_idle(srv)
    body = b'{"username": "slowpoke", "password": "slow-pw"}'
    req = build_request("POST", LOGIN, [("Content-Type", "application/json"),
                                        ("Content-Length", str(len(body)))], body)
    import socket
    import struct
    # each client vanishes (FIN, RST, FIN) only once its login is being hashed
    for i, abort in enumerate((False, True, False)):
        wait_pool(srv, 0, 0, f"before vanishing client {i + 1}")
        c = RawConn(srv.port)
        c.send(req)
        wait_pool(srv, 1, 0, f"vanishing client {i + 1}'s login")
        if abort:  # RST instead of FIN
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
    # every vanished client's hash has run (and its answer had nowhere to go)
    # before the server is asked to prove it is still well
    wait_pool(srv, 0, 0, "after the clients vanished")
    srv.assert_alive("clients disconnected while their logins were hashed")
    expect_json(srv.request("GET", "/nope"), 404, "cheap request after the disconnects")
    r = wait_pool_idle(srv)
    expect_json(r, 401, "pool still works after the disconnects")
    # one more vanished client, then stop while a hash is still running
    wait_pool(srv, 0, 0, "before the last vanished client")
    c = RawConn(srv.port)
    c.send(req)
    wait_pool(srv, 1, 0, "the last vanished client's login")
    c.close()
    inflight = []
    login_in_background(srv, inflight, password="slow-pw")
    wait_pool(srv, 1, 1, "a login queued behind the vanished client's")
    rc = srv.stop()
    assert rc == 0, f"SIGTERM while hashes were in flight: exit {rc}\n{srv.tail()}"
