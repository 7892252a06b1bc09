"""Issue 10, request smuggling and lenient framing: behind a proxy, a
disagreement about where a request ends is a smuggled request.

Each refusal is a JSON 400 (`{"detail": ...}`, no request bytes echoed), the
connection is closed after it, and the request pipelined behind it on the
same connection is never served (no second response, no access-log line for
its marker path). What libmicrohttpd 0.9.75 hands over in each case is proven
in tests/unit/test_framing.c; docs/architecture.md states the choices.
"""

import json
import time
import uuid as uuidlib

import pytest

from conftest import (HANG, LOGIN, UUID_RE, RawConn, build_request, expect_detail, expect_json,
                      expect_tokens, final_responses)
from proxy import Nginx, nginx_available

VERIFY = "/api/auth/jwt/verify/"
JWKS = "/.well-known/jwks.json"
API = "/api/openapi/token/"
JSON_CT = ("Content-Type", "application/json")
FORM_CT = ("Content-Type", "application/x-www-form-urlencoded")


class Env:
    def __init__(self, inst, srv):
        self.inst, self.srv = inst, srv
        res = inst.cli_ok("team", "add", f"fr-{uuidlib.uuid4().hex[:10]}")
        self.team = res.out.strip()
        assert UUID_RE.match(self.team), res
        self.user = f"fr-{uuidlib.uuid4().hex[:10]}"
        self.pw = f"pw-{uuidlib.uuid4().hex}"
        inst.add_user(self.user, self.pw)
        inst.cli_ok("team", "add-member", self.team, self.user)
        body = expect_tokens(srv.login(self.user, self.pw), "login")
        self.access = body["access"]

    @property
    def list_path(self):
        return f"{API}{self.team}/"


@pytest.fixture(scope="module")
def env(module_factory):
    # Access-log lines written at once: the log assertions need no waiting
    # for a flush.
    inst, srv = module_factory.server(env={"TOKEND_LOG_ACCESS_LOG_FLUSH_MS": "0"},
                                      label="framing server")
    return Env(inst, srv)


def marker_request():
    """A request whose path names it, to be pipelined behind a bad one."""
    path = f"/smuggled-{uuidlib.uuid4().hex}"
    return path, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def access_lines(srv, needle):
    return [ln for ln in list(srv.err_lines) if " access " in ln and needle in ln]


def sentinel(srv):
    """A request on a fresh connection whose access line, once written, shows
    that every line of earlier, already answered requests was written too."""
    path = f"/sentinel-{uuidlib.uuid4().hex}"
    expect_json(srv.request("GET", path), 404, "sentinel")
    deadline = time.monotonic() + HANG  # bounds a hang only
    while not access_lines(srv, path):
        assert time.monotonic() < deadline, f"no access line for {path}:\n{srv.tail()}"
        time.sleep(0.02)


def refused(srv, head, body=b"", what=""):
    """Send head + body + a marker request on one connection: expect one JSON
    400, the connection closed, and the marker never served."""
    mpath, mreq = marker_request()
    with RawConn(srv.port) as c:
        c.send(head + body + mreq)
        closed = c.wait_closed(10)
        resps = final_responses(c.buf)
    assert resps, f"{what}: no answer"
    assert [r.status_code for r in resps] == [400], (
        f"{what}: expected exactly one 400 and nothing served after it, got "
        f"{[r.status_code for r in resps]}: {resps!r}")
    detail = expect_detail(resps[0], 400, what)["detail"]
    assert closed, f"{what}: connection not closed after the 400"
    assert resps[0].headers.get("Connection", "").lower() == "close", (
        f"{what}: a 400 for bad framing must say Connection: close, got {resps[0].headers!r}")
    sentinel(srv)
    assert not access_lines(srv, mpath), f"{what}: the pipelined request was served"
    return detail


def head_of(method, path, headers, version="HTTP/1.1", host=True):
    return build_request(method, path, headers, b"", version=version, host=host)


# ---------------------------------------------------------------- Content-Length

def test_two_different_content_lengths(env):
    body = b'{"token":"a"}'
    head = head_of("POST", VERIFY, [JSON_CT, ("Content-Length", "13"), ("Content-Length", "56")])
    refused(env.srv, head, body, "Content-Length: 13 and Content-Length: 56")


def test_two_equal_content_lengths(env):
    body = b'{"token":"a"}'
    head = head_of("POST", VERIFY, [JSON_CT, ("Content-Length", "13"), ("Content-Length", "13")])
    refused(env.srv, head, body, "Content-Length: 13 twice")


@pytest.mark.parametrize("name", ["Content-Length ", "Content-Length\t", "Host ", "X-Note ",
                                  "X Note", " X-Note"],
                         ids=["cl-space", "cl-tab", "host-space", "x-space", "space-inside",
                              "leading-space"])
def test_whitespace_in_or_around_a_field_name(env, name):
    _, inner = marker_request()
    # Where the bad name is Content-Length's, the body is the bytes of a
    # request: if the name is not taken as a length, it is read as the next
    # request. It must not be.
    if name.startswith("Content-Length"):
        headers = [JSON_CT, (name, str(len(inner)))]
    else:
        headers = [JSON_CT, ("Content-Length", str(len(inner))), (name, "v")]
    refused(env.srv, head_of("POST", VERIFY, headers), inner, f"field name {name!r}")


def test_empty_field_name(env):
    head = head_of("GET", JWKS, [("", "v")])
    refused(env.srv, head, b"", "empty field name")


# ---------------------------------------------------------------- obs-fold

def test_obs_folded_transfer_encoding_with_content_length(env):
    head = (f"POST {VERIFY} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Content-Length: 5\r\nTransfer-Encoding:\r\n chunked\r\n\r\n").encode()
    refused(env.srv, head, b"0\r\n\r\n", "Transfer-Encoding:\\r\\n chunked with Content-Length")


def test_obs_folded_content_length(env):
    _, inner = marker_request()
    head = (f"POST {VERIFY} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length:\r\n {len(inner)}\r\n\r\n").encode()
    refused(env.srv, head, inner, "Content-Length:\\r\\n N")


def test_obs_folded_ordinary_header(env):
    head = (f"GET {JWKS} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Note: one\r\n two\r\n\r\n").encode()
    refused(env.srv, head, b"", "X-Note: one\\r\\n two")


# ---------------------------------------------------------------- Transfer-Encoding

def test_two_transfer_encodings_chunked_then_gzip(env):
    head = head_of("POST", VERIFY, [JSON_CT, ("Transfer-Encoding", "chunked"),
                                    ("Transfer-Encoding", "gzip")])
    refused(env.srv, head, b"0\r\n\r\n", "Transfer-Encoding: chunked, then gzip")


@pytest.mark.parametrize("te", ["chunked, gzip", "gzip", "chunked, chunked", ""])
def test_coding_not_ending_in_a_single_chunked(env, te):
    head = head_of("POST", VERIFY, [JSON_CT, ("Transfer-Encoding", te)])
    refused(env.srv, head, b"0\r\n\r\n", f"Transfer-Encoding: {te!r}")


# ---------------------------------------------------------------- Host

def test_http11_without_host(env):
    refused(env.srv, head_of("GET", JWKS, [], host=False), b"", "HTTP/1.1 without Host")


def test_two_hosts(env):
    refused(env.srv, head_of("GET", JWKS, [("Host", "other.example")]), b"", "two Host headers")


@pytest.mark.parametrize("host", ["a b", "a/b", "user@a", "a\\b"])
def test_invalid_host_value(env, host):
    refused(env.srv, head_of("GET", JWKS, [("Host", host)], host=False), b"", f"Host: {host!r}")


def test_http10_without_host_is_served(env):
    with RawConn(env.srv.port) as c:
        c.send(head_of("GET", JWKS, [], version="HTTP/1.0", host=False))
        resps = c.read_final(timeout=HANG)
    assert resps, "HTTP/1.0 without Host: no answer"
    expect_json(resps[0], 200, "HTTP/1.0 without Host")


# ---------------------------------------------------------------- control characters

@pytest.mark.parametrize("ctl", [b"\x00", b"\r", b"\x01", b"\x1b", b"\x7f"],
                         ids=["nul", "bare-cr", "soh", "esc", "del"])
def test_control_character_in_a_value(env, ctl):
    head = (f"GET {JWKS} HTTP/1.1\r\nHost: 127.0.0.1\r\n").encode() + b"X-Note: a" + ctl + \
        b"b\r\n\r\n"
    refused(env.srv, head, b"", f"X-Note with {ctl!r}")


def test_nul_in_the_last_header_value(env):
    head = (f"GET {JWKS} HTTP/1.1\r\nHost: 127.0.0.1\r\n").encode() + b"X-Note: a\x00 junk\r\n\r\n"
    refused(env.srv, head, b"", "NUL in the last header")


def test_htab_in_a_value_is_fine(env):
    with RawConn(env.srv.port) as c:
        c.send(head_of("GET", JWKS, [("X-Note", "a\tb")]))
        resps = c.read_final(timeout=HANG)
    assert resps, "HTAB in a value: no answer"
    expect_json(resps[0], 200, "HTAB in a value")


def test_genuine_token_with_nul_and_junk_does_not_authenticate(env):
    # 0.9.75 cuts the value at the NUL: without the check, this is a 200.
    auth = b"Bearer " + env.access.encode() + b"\x00 junk junk"
    head = build_request("GET", env.list_path, [("Authorization", auth)])
    with RawConn(env.srv.port) as c:
        c.send(head)
        resps = c.read_final(timeout=HANG)
    assert resps, "no answer"
    assert resps[0].status_code != 200, "a token with '\\0 junk' appended authenticated"
    expect_detail(resps[0], 400, "NUL in Authorization")
    # ... and the genuine token alone still does.
    r = env.srv.request("GET", env.list_path, headers={"Authorization": f"Bearer {env.access}"})
    expect_json(r, 200, "genuine token")


def test_two_authorization_headers(env):
    head = head_of("GET", env.list_path, [("Authorization", f"Bearer {env.access}"),
                                          ("Authorization", "Bearer x")])
    refused(env.srv, head, b"", "two Authorization headers")


# ---------------------------------------------------------------- request targets

def test_absolute_form_target_is_accepted(env):
    body = json.dumps({"token": env.access}).encode()
    target = f"http://127.0.0.1:{env.srv.port}{VERIFY}"
    req = build_request("POST", target, [JSON_CT, ("Content-Length", str(len(body)))], body)
    with RawConn(env.srv.port) as c:
        c.send(req)
        resps = c.read_final(timeout=HANG)
    assert resps, "absolute-form: no answer"
    assert expect_json(resps[0], 201, f"POST {target}") == {"token": env.access}


@pytest.mark.parametrize("target", ["http://127.0.0.1", "HTTP://127.0.0.1:80/.well-known/jwks.json"])
def test_absolute_form_variants(env, target):
    req = build_request("GET", target, [])
    with RawConn(env.srv.port) as c:
        c.send(req)
        resps = c.read_final(timeout=HANG)
    assert resps, f"{target}: no answer"
    want = 200 if target.endswith("jwks.json") else 404
    expect_json(resps[0], want, f"GET {target}")


@pytest.mark.parametrize("target", ["ftp://127.0.0.1/.well-known/jwks.json",
                                    "http://user@127.0.0.1/.well-known/jwks.json",
                                    "http:///.well-known/jwks.json", "jwks.json"])
def test_bad_targets_are_refused(env, target):
    refused(env.srv, build_request("GET", target, []), b"", f"target {target!r}")


# ---------------------------------------------------------------- HEAD

def head_then_get(srv, path, headers=()):
    """HEAD then GET pipelined on one connection. Returns (head response
    head text, get response). No body bytes may follow the HEAD's headers:
    the next bytes must be the GET's status line."""
    with RawConn(srv.port) as c:
        c.send(build_request("HEAD", path, headers) + build_request("GET", path, headers))
        deadline = time.monotonic() + HANG  # bounds a hang only
        while c.buf.count(b"\r\n\r\n") < 2 and time.monotonic() < deadline and not c.closed_by_peer:
            c.pump(0.2)
        end = c.buf.find(b"\r\n\r\n")
        assert end > 0, f"HEAD {path}: no answer: {c.buf!r}"
        head_text = c.buf[:end].decode("latin-1")
        assert c.buf[end + 4:].startswith(b"HTTP/1.1 "), (
            f"HEAD {path}: bytes after the headers that are not the next response: "
            f"{c.buf[end + 4:end + 84]!r}")
        # parse_responses would take the HEAD's Content-Length as a body.
        while not final_responses(c.buf[end + 4:]) and time.monotonic() < deadline:
            c.pump(0.2)
        got = final_responses(c.buf[end + 4:])
    assert got, f"GET {path} after HEAD: no answer"
    return head_text, got[0]


def head_headers(text):
    status = int(text.split("\r\n", 1)[0].split(" ")[1])
    headers = {}
    for ln in text.split("\r\n")[1:]:
        k, v = ln.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    return status, headers


@pytest.mark.parametrize("which", ["jwks", "list"])
def test_head_is_get_without_body(env, which):
    if which == "jwks":
        path, headers = JWKS, []
    else:
        path, headers = env.list_path, [("Authorization", f"Bearer {env.access}")]
    text, get = head_then_get(env.srv, path, headers)
    status, h = head_headers(text)
    assert status == get.status_code == 200, f"HEAD {path}: {status}, GET: {get.status_code}"
    assert h.get("content-type") == get.headers.get("Content-Type"), (h, get.headers)
    if "content-length" in h:
        assert int(h["content-length"]) == len(get.content), (
            f"HEAD {path}: Content-Length {h['content-length']} but the GET body has "
            f"{len(get.content)} bytes")


def test_head_without_token_is_401(env):
    text, get = head_then_get(env.srv, env.list_path)
    status, h = head_headers(text)
    assert status == get.status_code == 401, (status, get.status_code)
    assert h.get("www-authenticate") == 'Bearer realm="api"', h


@pytest.mark.parametrize("method,path,want", [
    ("POST", JWKS, {"GET", "HEAD"}),
    ("PUT", "/api/openapi/token/00000000-0000-0000-0000-000000000000/", {"GET", "HEAD", "POST"}),
    ("HEAD", VERIFY, {"POST"}),
])
def test_allow_lists_head_where_get_is_allowed(env, method, path, want):
    r = env.srv.request(method, path)
    assert r.status_code == 405, f"{method} {path}: {r.status_code}"
    allow = {m.strip() for m in r.headers.get("Allow", "").split(",") if m.strip()}
    assert allow == want, f"{method} {path}: Allow {r.headers.get('Allow')!r}, want {want}"


# ---------------------------------------------------------------- the access log

def test_body_without_content_length_is_not_logged_as_a_method(env):
    """A form body sent without Content-Length on a kept-alive connection is
    read as the next request line: its bytes must not reach the log."""
    secret = f"S3cr3t{uuidlib.uuid4().hex[:8]}"
    head = head_of("POST", LOGIN, [FORM_CT])
    body = f"password={secret}".encode()
    _, follow = marker_request()
    with RawConn(env.srv.port) as c:
        c.send(head + body + follow)
        c.wait_closed(10)
        resps = final_responses(c.buf)
    assert resps and resps[0].status_code == 400, resps
    assert len(resps) <= 2 and (len(resps) == 1 or resps[1].status_code == 400), (
        f"the body read as a request must be refused, got {[r.status_code for r in resps]}")
    for r in resps:
        assert secret.encode() not in r.content, f"a response echoed the body: {r.content!r}"
    sentinel(env.srv)
    leaked = [ln for ln in list(env.srv.err_lines) if secret in ln]
    assert not leaked, f"body bytes in the log: {leaked!r}"


@pytest.mark.parametrize("line", [
    b"S3CRET-PASSWORD-BUT-LONGER-THAN-A-METHOD /x HTTP/1.1",
    b"GET /x\x01y HTTP/1.1",
])
def test_odd_request_lines_log_placeholders(env, line):
    mark = uuidlib.uuid4().hex[:8]
    line = line.replace(b"/x", b"/x" + mark.encode()).replace(b"S3CRET", b"S3CRET" + mark.encode())
    with RawConn(env.srv.port) as c:
        c.send(line + b"\r\nHost: 127.0.0.1\r\n\r\n")
        c.wait_closed(10)
        resps = final_responses(c.buf)
    for r in resps:
        assert r.status_code == 400, resps
    sentinel(env.srv)
    leaked = [ln for ln in list(env.srv.err_lines) if mark in ln]
    assert not leaked, f"request-line bytes that are not a method/target were logged: {leaked!r}"


def test_ordinary_request_is_logged_with_method_and_path(env):
    path = f"/nope-{uuidlib.uuid4().hex}"
    expect_json(env.srv.request("GET", path), 404)
    sentinel(env.srv)
    lines = access_lines(env.srv, path)
    assert len(lines) == 1 and f" GET {path} 404 " in lines[0], lines


# ---------------------------------------------------------------- behind nginx

NGINX_CASES = {
    "two-content-lengths": (f"POST {VERIFY} HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\n"
                            "Content-Length: 56\r\n\r\n").encode() + b'{"token":"a"}',
    "obs-fold": (f"POST {VERIFY} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                 "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n").encode(),
    "space-before-colon": (f"POST {VERIFY} HTTP/1.1\r\nHost: x\r\nContent-Length : 13\r\n\r\n"
                           ).encode() + b'{"token":"a"}',
    "two-hosts": f"GET {JWKS} HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".encode(),
    "no-host": f"GET {JWKS} HTTP/1.1\r\n\r\n".encode(),
    "nul": f"GET {JWKS} HTTP/1.1\r\nHost: a\r\nX-Note: a\x00b\r\n\r\n".encode(),
}


@pytest.mark.skipif(not nginx_available(), reason="nginx not installed")
@pytest.mark.parametrize("case", sorted(NGINX_CASES))
def test_nginx_in_front_refuses_too(env, tmp_path, case):
    """Defence in depth: the documented nginx in front refuses these itself
    (400 from nginx, not from tokend: tokend never sees them)."""
    mpath, mreq = marker_request()
    with Nginx(tmp_path, upstreams=[env.srv.port]) as ngx:
        with RawConn(ngx.port) as c:
            c.send(NGINX_CASES[case] + mreq)
            c.wait_closed(10)
            resps = final_responses(c.buf)
    assert resps and resps[0].status_code == 400, f"{case}: nginx answered {resps!r}"
    assert "nginx" in resps[0].headers.get("Server", ""), f"{case}: not nginx's 400: {resps[0]!r}"
    assert len(resps) == 1, f"{case}: nginx served more: {[r.status_code for r in resps]}"
    sentinel(env.srv)
    assert not access_lines(env.srv, mpath)


# ---------------------------------------------------------------- no false refusals

def test_large_dripped_and_pipelined_blocks_are_served(env):
    """The layout check relies on libmicrohttpd keeping the block in one
    read buffer: a block that arrives in many pieces (the buffer grows), or
    behind another request on the connection (the buffer is reset), must
    still pass."""
    hdrs = [(f"X-H-{i}", "v" * 100) for i in range(60)] + [("X-Big", "b" * 8000)]
    req = build_request("GET", JWKS, hdrs)
    with RawConn(env.srv.port) as c:
        for i in range(0, len(req), 997):
            c.send(req[i:i + 997])
            time.sleep(0.002)
        resps = c.read_final(timeout=HANG)
    assert resps, "dripped block: no answer"
    expect_json(resps[0], 200, "a 14 KB header block sent in 1 KB pieces")
    first = build_request("GET", JWKS, [])
    with RawConn(env.srv.port) as c:
        c.send(first + req[:3000])
        assert c.read_final(n=1, timeout=10), "first of two pipelined requests: no answer"
        c.send(req[3000:])
        resps = c.read_final(n=2, timeout=10)
    assert [r.status_code for r in resps] == [200, 200], resps
