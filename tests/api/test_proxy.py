"""Behind the reverse proxy (issue 12, "The real client"): with
server.trusted_proxies, the client address (access log, throttling, the
per-client limit) is the right-most X-Forwarded-For address that is not a
trusted proxy; from any other peer the headers are ignored. Tested with a
real nginx (proxy.py, X-Forwarded-For $proxy_add_x_forwarded_for) and with
raw requests from trusted and untrusted loopback addresses (127.0.0.1 is
the trusted proxy; clients bind 127.0.0.2 and up).

Also: per_ip_connections follows trusted_proxies by default (-1: 128
exposed directly, off behind proxies), and per_client_requests limits the
requests in flight per client address, behind the proxy too."""

import os
import socket
import threading
import time
import uuid

import pytest

from conftest import LOGIN, NO_ACCOUNT, build_request, expect_json, final_responses
from proxy import Nginx, nginx_available
from test_slow_clients import connect_from, server_side_conns

_SLOWDOWN = 2.0 if os.environ.get("TOKEND_SANITIZED") else 1.0
needs_nginx = pytest.mark.skipif(not nginx_available(), reason="nginx not installed")
THROTTLED = {"detail": "Request was throttled. Expected available in 1 second."}


def request_from(src, port, path, headers=(), method="GET", body=b"", timeout=15):
    """One request over a connection bound to source address src; returns
    the final response (or None if the connection ended without one)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(src, 0))
    buf = b""
    try:
        hdrs = list(headers) + [("Connection", "close")]
        if body:
            hdrs.append(("Content-Length", str(len(body))))
        s.sendall(build_request(method, path, hdrs, body=body))
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    resps = final_responses(buf)
    return resps[0] if resps else None


def logged_client(srv, path, timeout=30.0):
    """The client address of the access-log line of path (polled)."""
    deadline = time.monotonic() + timeout * _SLOWDOWN
    while True:
        for ln in list(srv.err_lines):
            parts = ln.split()
            if " access " in ln and len(parts) > 4 and parts[4] == path:
                return parts[2]
        if time.monotonic() > deadline:
            raise AssertionError(f"no access-log line for {path}:\n{srv.tail()}")
        time.sleep(0.05)


def new_path():
    return f"/who-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def behind(module_factory):
    inst, srv = module_factory.server(env={"TOKEND_SERVER_TRUSTED_PROXIES": "127.0.0.1 ::1"},
                                      label="behind a proxy")
    return srv


@pytest.fixture(scope="module")
def ngx(behind, tmp_path_factory):
    n = Nginx(tmp_path_factory.mktemp("ngx"), upstreams=[behind.port])
    if not nginx_available():
        pytest.skip("nginx not installed")
    n.start()
    yield n
    n.stop()


def open_connections(srv):
    """tokend_open_connections from /metrics, less the scrape's own."""
    for ln in srv.request("GET", "/metrics").text.splitlines():
        if ln.startswith("tokend_open_connections "):
            return int(float(ln.split()[1])) - 1
    raise AssertionError("no tokend_open_connections on /metrics")


def seen_as(srv, port, src, headers=()):
    path = new_path()
    r = request_from(src, port, path, headers)
    assert r is not None and r.status_code == 404, (src, headers, r)
    return logged_client(srv, path)


# ---------------------------------------------------------------- through nginx

@needs_nginx
def test_log_names_each_client_through_nginx(behind, ngx):
    for src in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
        assert seen_as(behind, ngx.port, src) == src


@needs_nginx
@pytest.mark.parametrize("forged", [
    [("X-Forwarded-For", "198.51.100.7")],
    [("X-Forwarded-For", "198.51.100.7, 127.0.0.1")],
    [("X-Forwarded-For", "127.0.0.1")],
    [("X-Forwarded-For", "unknown")],
    [("X-Forwarded-For", "garbage, , ;;")],
    [("X-Forwarded-For", "[2001:db8::1]:4711")],
    [("X-Forwarded-For", "fe80::1%eth0")],
    [("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-For", "5.6.7.8")],
    # (nginx takes header lines up to 8 KiB: 600 entries; 1,000 directly, below)
    [("X-Forwarded-For", ", ".join(f"10.{i % 250}.0.1" for i in range(600)))],
    [("X-Forwarded-For", ", ".join(["127.0.0.1"] * 600))],
    [("Forwarded", "for=198.51.100.7")],
    [("Forwarded", 'for="[2001:db8::1]:4711"'), ("X-Forwarded-For", "198.51.100.8")],
    [("X-Real-IP", "198.51.100.9")],
], ids=lambda f: f[0][0] + ":" + f[0][1][:24])
def test_client_cannot_choose_its_address_through_nginx(behind, ngx, forged):
    """nginx appends the real peer: tokend takes the right-most untrusted."""
    assert seen_as(behind, ngx.port, "127.0.0.2", forged) == "127.0.0.2"


@needs_nginx
def test_huge_forwarded_header_through_nginx(behind, ngx):
    """64 KiB of X-Forwarded-For: refused before tokend (nginx's header
    buffers), and nothing breaks."""
    path = new_path()
    r = request_from("127.0.0.2", ngx.port, path, [("X-Forwarded-For", "1.2.3.4, " * 7300)])
    assert r is not None and r.status_code in (400, 431, 494), r
    # a later request's line (waited for) comes from a later flush: had the
    # refused one reached tokend, its line would be there by then
    assert seen_as(behind, ngx.port, "127.0.0.3") == "127.0.0.3"
    assert not [ln for ln in behind.err_lines if path in ln]
    behind.assert_alive("64 KiB X-Forwarded-For through nginx")


# ---------------------------------------------------------------- directly

def test_untrusted_peer_headers_are_ignored(behind):
    for headers in ([("X-Forwarded-For", "198.51.100.7")], [("Forwarded", "for=198.51.100.7")],
                    [("X-Forwarded-For", "198.51.100.7, 127.0.0.1")]):
        assert seen_as(behind, behind.port, "127.0.0.3", headers) == "127.0.0.3", headers


@pytest.mark.parametrize("headers,client", [
    ([], "127.0.0.1"),
    ([("X-Forwarded-For", "198.51.100.7")], "198.51.100.7"),
    ([("X-Forwarded-For", "203.0.113.1, 198.51.100.7")], "198.51.100.7"),
    ([("X-Forwarded-For", "198.51.100.7, 127.0.0.1, ::1")], "198.51.100.7"),
    ([("X-Forwarded-For", "198.51.100.7"), ("X-Forwarded-For", "::1")], "198.51.100.7"),
    ([("X-Forwarded-For", "198.51.100.6"), ("X-Forwarded-For", "198.51.100.7")], "198.51.100.7"),
    ([("X-Forwarded-For", "198.51.100.7:8080")], "198.51.100.7"),
    ([("X-Forwarded-For", "[2001:DB8::1]:4711")], "2001:db8::1"),
    ([("X-Forwarded-For", "2001:db8::1")], "2001:db8::1"),
    ([("X-Forwarded-For", "::ffff:198.51.100.7")], "198.51.100.7"),
    ([("X-Forwarded-For", "fe80::1%eth0")], "127.0.0.1"),
    ([("X-Forwarded-For", "198.51.100.7, unknown")], "127.0.0.1"),
    ([("X-Forwarded-For", "198.51.100.7, _hidden, ::1")], "::1"),
    ([("X-Forwarded-For", "garbage\x7f")], None),  # a CTL: 400 from the framing checks
    ([("X-Forwarded-For", "\u00e9\u00e9")], "127.0.0.1"),
    ([("X-Forwarded-For", "")], "127.0.0.1"),
    ([("X-Forwarded-For", "," * 5000)], "127.0.0.1"),
    ([("X-Forwarded-For", "127.0.0.1, ::1")], "127.0.0.1"),
    ([("Forwarded", "for=198.51.100.7;proto=http;by=127.0.0.1")], "198.51.100.7"),
    ([("Forwarded", 'for="[2001:db8::1]:4711"')], "2001:db8::1"),
    ([("Forwarded", "for=198.51.100.7:80")], "198.51.100.7"),
    ([("Forwarded", "for=unknown")], "127.0.0.1"),
    ([("Forwarded", 'for="_hidden"')], "127.0.0.1"),
    ([("Forwarded", 'for="198.51.100.7')], "127.0.0.1"),
    ([("Forwarded", "for=203.0.113.1, for=198.51.100.7")], "198.51.100.7"),
    # both: X-Forwarded-For wins (nginx passes a client's Forwarded on as it is)
    ([("Forwarded", "for=203.0.113.1"), ("X-Forwarded-For", "198.51.100.7")], "198.51.100.7"),
])
def test_trusted_peer_hostile_values(behind, headers, client):
    path = new_path()
    r = request_from("127.0.0.1", behind.port, path, headers)
    assert r is not None, headers
    if client is None:
        assert r.status_code == 400, (headers, r)
        behind.assert_alive(repr(headers))
        return
    assert r.status_code == 404, (headers, r)
    assert logged_client(behind, path) == client, headers


def test_long_chains_from_a_trusted_peer(behind):
    """1,000 entries (under the 16 KiB header limit): the right-most
    untrusted; 64 KiB: 431 before any of this runs."""
    chain = ", ".join(f"203.0.{i % 250}.{i % 200 + 1}" for i in range(999)) + ", 198.51.100.7"
    assert len(chain) < 16000
    path = new_path()
    r = request_from("127.0.0.1", behind.port, path, [("X-Forwarded-For", chain)])
    assert r is not None and r.status_code == 404, r
    assert logged_client(behind, path) == "198.51.100.7"
    trusted = "198.51.100.7, " + ", ".join(["127.0.0.1"] * 100)
    path = new_path()
    r = request_from("127.0.0.1", behind.port, path, [("X-Forwarded-For", trusted)])
    assert r is not None and r.status_code == 404, r
    assert logged_client(behind, path) == "127.0.0.1", "a walk past 64 hops stops at a trusted hop"
    r = request_from("127.0.0.1", behind.port, new_path(), [("X-Forwarded-For", "1.2.3.4, " * 7300)])
    assert r is not None and r.status_code == 431, r
    behind.assert_alive("long X-Forwarded-For chains")


def test_no_trusted_proxies_by_default(srv):
    path = new_path()
    r = request_from("127.0.0.1", srv.port, path, [("X-Forwarded-For", "198.51.100.7")])
    assert r is not None and r.status_code == 404
    assert logged_client(srv, path) == "127.0.0.1"


# ---------------------------------------------------------------- per-IP connections

def test_per_ip_connections_off_behind_proxies(factory):
    """Default -1: with trusted proxies, every connection comes from them,
    so the per-address limit at accept is off (test_slow_clients proves it
    on, at 128, without)."""
    inst, srv = factory.server(env={"TOKEND_SERVER_TRUSTED_PROXIES": "127.0.0.0/8"})
    socks = []
    try:
        for _ in range(200):
            s = connect_from("127.0.0.3", srv.port, timeout=30)
            assert s is not None
            socks.append(s)
        deadline = time.monotonic() + 30 * _SLOWDOWN  # bounds a hang only
        while server_side_conns(srv.port) < 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server_side_conns(srv.port) >= 200, server_side_conns(srv.port)
    finally:
        for s in socks:
            s.close()


def test_per_ip_connections_explicit_wins(factory):
    inst, srv = factory.server(env={"TOKEND_SERVER_TRUSTED_PROXIES": "127.0.0.0/8",
                                    "TOKEND_SERVER_PER_IP_CONNECTIONS": "10"})
    socks = []
    try:
        for _ in range(40):
            s = connect_from("127.0.0.3", srv.port, timeout=0.5)
            if s is not None:
                socks.append(s)
        # refused connections are closed at accept: wait until they are
        # (not 0.5 s), then count what the address holds
        deadline = time.monotonic() + 30 * _SLOWDOWN
        while server_side_conns(srv.port) > 12 and time.monotonic() < deadline:
            time.sleep(0.05)
        held = server_side_conns(srv.port)
        assert 0 < held <= 12, f"one address holds {held} connections with per_ip_connections=10"
    finally:
        for s in socks:
            s.close()


# ---------------------------------------------------------------- per-client requests

PARTIAL = b'POST /api/auth/jwt/verify/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"to'


def test_per_client_requests_directly(factory):
    """Requests in flight (headers read, not yet answered) per client: past
    the limit 429 with Retry-After: 1 and DRF's body; other clients are not
    affected; the count goes down as requests complete."""
    inst, srv = factory.server(env={"TOKEND_SERVER_PER_CLIENT_REQUESTS": "3"})
    held = []
    try:
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10,
                                         source_address=("127.0.0.5", 0))
            s.sendall(PARTIAL)
            held.append(s)
        deadline = time.monotonic() + 30 * _SLOWDOWN  # bounds a hang only
        while True:
            r = request_from("127.0.0.5", srv.port, new_path())
            if r.status_code == 429 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert r.status_code == 429, r
        assert r.headers.get("Retry-After") == "1", r.headers
        assert r.json() == THROTTLED, r.json()
        other = request_from("127.0.0.6", srv.port, new_path())
        assert other.status_code == 404, other
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 30 * _SLOWDOWN  # bounds a hang only
    while True:
        r = request_from("127.0.0.5", srv.port, new_path())
        if r.status_code != 429 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert r.status_code == 404, f"the client stays throttled after its requests ended: {r}"


def test_per_client_requests_zero_is_off(factory):
    inst, srv = factory.server(env={"TOKEND_SERVER_PER_CLIENT_REQUESTS": "0"})
    held = []
    try:
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10,
                                         source_address=("127.0.0.5", 0))
            s.sendall(PARTIAL)
            held.append(s)
        # the five are open on the server's side (not 0.3 s and hope)
        deadline = time.monotonic() + 30 * _SLOWDOWN
        while open_connections(srv) < 5:
            assert time.monotonic() < deadline, "the five partial requests' connections never opened"
            time.sleep(0.05)
        assert request_from("127.0.0.5", srv.port, new_path()).status_code == 404
    finally:
        for s in held:
            s.close()


@needs_nginx
def test_per_client_requests_behind_nginx(factory, tmp_path):
    """Behind nginx every request comes from one connection address; the
    limit counts the client of X-Forwarded-For. Slow logins (one hashing
    thread) from 127.0.0.2 pile up and meet the limit; 127.0.0.3 meanwhile
    is never throttled."""
    inst, srv = factory.server(env={"TOKEND_SERVER_TRUSTED_PROXIES": "127.0.0.1",
                                    "TOKEND_SERVER_PER_CLIENT_REQUESTS": "2",
                                    "TOKEND_PASSWORD_HASH_WORKERS": "1",
                                    "TOKEND_PASSWORD_PBKDF2_ITERATIONS": "300000"})
    body = b'{"username": "nobody-here", "password": "x"}'
    hdrs = [("Content-Type", "application/json")]
    with Nginx(tmp_path, upstreams=[srv.port]) as ngx:
        results, others = [], []

        def flood():
            r = request_from("127.0.0.2", ngx.port, LOGIN, hdrs, method="POST", body=body, timeout=60)
            results.append(r.status_code if r else None)

        threads = [threading.Thread(target=flood) for _ in range(10)]
        for t in threads:
            t.start()
        for _ in range(3):
            r = request_from("127.0.0.3", ngx.port, LOGIN, hdrs, method="POST", body=body, timeout=60)
            others.append(r.status_code if r else None)
        for t in threads:
            t.join(90)
    assert sorted(set(results)) == [401, 429], results
    assert others == [401, 401, 401], f"another client was throttled with the flood: {others}"
    assert results.count(401) >= 2, results
