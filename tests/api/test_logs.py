"""Logs: `log.format = text | json`, the request id (X-Request-Id on every
answer, a trusted proxy's own taken when sane), and that nothing a client
sends can forge or break a log line in either format."""

import json
import re

import pytest

from conftest import HANG, LOGIN, RawConn, build_request

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
FRESH_ID = re.compile(r"^[0-9a-f]{16}$")
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (debug|info|warn|error|access) ")
QUIET = {"TOKEND_LOG_ACCESS_LOG_FLUSH_MS": "0"}  # each access line written at once

ACCESS_FIELDS = {"client": str, "method": str, "path": str, "status": int, "us": int,
                 "bytes": int, "request_id": str}


def server(factory, fmt, **env):
    e = dict(QUIET, TOKEND_LOG_FORMAT=fmt)
    e.update(env)
    return factory.server(env=e)


def json_lines(srv):
    out = []
    for ln in list(srv.err_lines):
        try:
            out.append(json.loads(ln))
        except ValueError:
            raise AssertionError(f"stderr line is not JSON: {ln!r}\n{srv.tail()}")
        assert isinstance(out[-1], dict), ln
    return out


def access_line(srv, request_id, timeout=HANG):
    """The access line (as text) that names request_id."""
    ln = srv.wait_for_stderr(lambda l: request_id in l and "access" in l, timeout)
    assert ln is not None, f"no access line with request id {request_id}:\n{srv.tail()}"
    return ln


def raw_one(srv, data):
    with RawConn(srv.port) as c:
        c.send(data)
        resps = c.read_final(1)
    assert resps, f"no answer to {data[:120]!r}"
    return resps[0]


# ------------------------------------------------------------------ JSON lines

def test_json_lines_parse_with_their_fields(factory):
    inst, srv = server(factory, "json")
    ids = []
    for method, path, kw in [("GET", "/healthz", {}), ("GET", "/nope", {}),
                             ("POST", LOGIN, {"json": {"username": "x", "password": "y"}}),
                             ("HEAD", "/healthz", {})]:
        r = srv.request(method, path, **kw)
        ids.append((r.headers["X-Request-Id"], r.status_code, method, path))
    for rid, status, method, path in ids:
        access_line(srv, rid)
    lines = json_lines(srv)
    for obj in lines:
        assert isinstance(obj.get("time"), str) and RFC3339.match(obj["time"]), obj
        assert obj.get("level") in ("debug", "info", "warn", "error"), obj
        assert isinstance(obj.get("message"), str), obj
    assert any(o["message"].startswith("listening on http://") for o in lines)
    access = {o["request_id"]: o for o in lines if o["message"] == "access"}
    for rid, status, method, path in ids:
        o = access[rid]
        for k, t in ACCESS_FIELDS.items():
            assert type(o.get(k)) is t, f"{k} must be a {t.__name__}: {o}"
        assert (o["client"], o["method"], o["path"], o["status"]) == (
            "127.0.0.1", method, path, status), o
        assert o["us"] >= 0 and o["bytes"] >= 0, o
        assert FRESH_ID.match(rid), rid
    assert access[ids[0][0]]["bytes"] == len(b'{"status":"ok"}')
    assert access[ids[3][0]]["bytes"] == 0, "HEAD sends no body"


def test_text_access_line_ends_with_the_request_id(factory):
    inst, srv = server(factory, "text")
    r = srv.request("GET", "/healthz")
    rid = r.headers["X-Request-Id"]
    ln = access_line(srv, rid)
    assert re.search(r" access 127\.0\.0\.1 GET /healthz 200 \d+us \d+B " + rid + "$", ln), ln
    for ln in srv.err_lines:
        assert TEXT_LINE.match(ln), ln


def test_request_ids_differ(factory):
    inst, srv = server(factory, "text")
    ids = {srv.request("GET", "/healthz").headers["X-Request-Id"] for _ in range(50)}
    assert len(ids) == 50
    assert all(FRESH_ID.match(i) for i in ids), ids


# ------------------------------------------------------------------ forging

FORGED = b'{"level":"error","message":"forged"}'
# Printable, so it is logged: quotes, a backslash-n, a JSON escape's text
# and a whole JSON object in one request target.
HOSTILE_PATH = b'/x"\\n' + FORGED + b'\\u000a\\"}/'
# Raw control bytes, DEL and non-ASCII (invalid UTF-8 too) in the target:
# not HTTP, answered 400, and the path is logged as "-".
CONTROL_PATH = b'/c\x01\x1b[31m\x7f\xff\x80\xc3(\xc0\xaf\xc3\xa9/'
# A raw LF (then CR LF) inside the request line: whatever the server makes
# of it, never a second log line.
RAW_LF = b'GET /y"\n' + FORGED + b' HTTP/1.1\r\nHost: a\r\n\r\n'
RAW_CRLF = b'GET /z"\r\n' + FORGED + b' HTTP/1.1\r\nHost: a\r\n\r\n'


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_a_hostile_request_cannot_forge_a_line(factory, fmt):
    inst, srv = server(factory, fmt)
    before = len(srv.err_lines)
    r = raw_one(srv, build_request("GET", HOSTILE_PATH, headers=[("Connection", "close")]))
    assert r.status_code == 404
    rid = r.headers["X-Request-Id"]
    ln = access_line(srv, rid)
    rc = raw_one(srv, build_request("GET", CONTROL_PATH, headers=[("Connection", "close")]))
    assert rc.status_code == 400
    access_line(srv, rc.headers["X-Request-Id"])
    for data in (RAW_LF, RAW_CRLF):
        # libmicrohttpd refuses the broken request line (400, closed): wait
        # for both, so that whatever it logs is written before the marker's
        with RawConn(srv.port) as c:
            c.send(data)
            resps = c.read_final(1, timeout=HANG)
            closed = c.wait_closed(HANG)
        assert [r.status_code for r in resps] == [400] and closed, (
            f"a raw LF in the request line: want 400 and close, got {resps!r} closed={closed}")
    marker = srv.request("GET", "/healthz").headers["X-Request-Id"]
    access_line(srv, marker)
    new = srv.err_lines[before:]
    # one line per request: two hostile ones, at most one per raw LF attempt, the marker
    assert len(new) <= 5, "\n".join(new)
    for line in new:
        for ch in line:
            assert ord(ch) >= 0x20 and ord(ch) != 0x7f, f"raw control byte in {line!r}"
    if fmt == "json":
        objs = [json.loads(line) for line in new]
        assert all(o["level"] == "info" and o["message"] == "access" for o in objs), objs
        hostile = [o for o in objs if o.get("request_id") == rid]
        assert len(hostile) == 1, objs
        assert hostile[0]["path"] == HOSTILE_PATH.decode(), hostile[0]
        control = [o for o in objs if o.get("request_id") == rc.headers["X-Request-Id"]]
        assert len(control) == 1 and control[0]["path"] in (
            "-", CONTROL_PATH.decode("utf-8", "replace")), control
    else:
        for line in new:
            assert TEXT_LINE.match(line), line
            assert " error " not in line[:30], line
            assert '"' not in line, f"a raw quote in a text line: {line!r}"
        assert "/x\\x22\\x5cn{\\x22level\\x22:\\x22error\\x22" in ln, ln


def test_json_message_text_is_escaped(factory):
    """A hostile username reaches a message line (the throttle's warning)
    and stays inside its string."""
    inst, srv = server(factory, "json", TOKEND_THROTTLE_LOGIN_CLIENT_FAILURES="1")
    name = 'eve"\n{"level":"error"}\x01\xff'
    body = json.dumps({"username": name, "password": "x"})
    for _ in range(3):
        srv.post(LOGIN, data=body, headers={"Content-Type": "application/json"})
    ln = srv.wait_for_stderr(lambda l: "login throttled" in l)
    assert ln is not None, srv.tail()
    objs = json_lines(srv)
    assert all(o["level"] != "error" for o in objs), objs
    warn = [o for o in objs if "login throttled" in o["message"]]
    assert warn and warn[0]["level"] == "warn", objs
    # the name went through log_escape, then JSON: its bytes as \xHH text
    assert 'eve\\x22\\x0a{\\x22level\\x22:\\x22error\\x22}\\x01' in warn[0]["message"], warn


# ------------------------------------------------------------------ request ids

def with_id(srv, value, path="/healthz", method="GET"):
    data = build_request(method, path, headers=[("X-Request-Id", value), ("Connection", "close")])
    return raw_one(srv, data)


GOOD_IDS = ["edge-1234", "a" * 64, "1-67891233-abcdef012345678912345678",
            "!#$%&'*+-.^_`|~09AZaz"]
BAD_IDS = ["a" * 65, "a b", 'a"b', "a\\b", "a;b", "a,b", "a/b", "a=b", "é".encode("utf-8"),
           b"a\x7fb", "(x)", "{x}", "a:b"]


@pytest.mark.parametrize("value", GOOD_IDS)
def test_trusted_proxy_id_is_echoed_and_logged(factory, value):
    inst, srv = server(factory, "json", TOKEND_SERVER_TRUSTED_PROXIES="127.0.0.1/32")
    r = with_id(srv, value)
    assert r.status_code == 200
    assert r.headers["X-Request-Id"] == value
    access_line(srv, value)
    objs = [o for o in json_lines(srv) if o.get("request_id") == value]
    assert len(objs) == 1 and objs[0]["path"] == "/healthz", objs


@pytest.mark.parametrize("value", BAD_IDS)
def test_trusted_proxy_bad_id_is_replaced(factory, value):
    inst, srv = server(factory, "json", TOKEND_SERVER_TRUSTED_PROXIES="127.0.0.1/32")
    r = with_id(srv, value)
    rid = r.headers["X-Request-Id"]
    assert FRESH_ID.match(rid), f"{value!r} must be replaced by a fresh id, got {rid!r}"
    access_line(srv, rid)


def test_untrusted_peer_id_is_replaced(factory):
    inst, srv = server(factory, "text", TOKEND_SERVER_TRUSTED_PROXIES="10.0.0.0/8")
    r = with_id(srv, "edge-1234")
    rid = r.headers["X-Request-Id"]
    assert rid != "edge-1234" and FRESH_ID.match(rid), rid
    assert "edge-1234" not in access_line(srv, rid)
    # and without any trusted proxy at all
    inst2, srv2 = server(factory, "text")
    r = with_id(srv2, "edge-1234")
    assert FRESH_ID.match(r.headers["X-Request-Id"]), r.headers


def test_error_answers_carry_the_request_id(factory):
    inst, srv = server(factory, "json", TOKEND_SERVER_MAX_BODY="1024",
                       TOKEND_THROTTLE_LOGIN_CLIENT_FAILURES="1")
    seen = {}
    r = srv.request("GET", "/nope")
    seen[404] = r
    r = srv.request("GET", LOGIN)
    seen[405] = r
    r = srv.post(LOGIN, data="x" * 4096, headers={"Content-Type": "application/json"})
    seen[413] = r
    for _ in range(3):
        r = srv.post(LOGIN, json={"username": "mallory", "password": "wrong"})
        if r.status_code == 429:
            break
    seen[429] = r
    seen[400] = raw_one(srv, b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    seen[415] = srv.post(LOGIN, data="x", headers={"Content-Type": "text/plain"})
    for status, r in seen.items():
        assert r.status_code == status, (status, r.status_code, r.headers)
        rid = r.headers.get("X-Request-Id")
        assert rid and FRESH_ID.match(rid), (status, dict(r.headers))
        access_line(srv, rid)
    objs = {o["request_id"]: o for o in json_lines(srv) if o.get("message") == "access"}
    for status, r in seen.items():
        assert objs[r.headers["X-Request-Id"]]["status"] == status


def test_preflight_and_head_carry_the_request_id(factory):
    inst, srv = server(factory, "text", TOKEND_CORS_ALLOWED_ORIGINS="https://app.example")
    r = srv.request("OPTIONS", LOGIN, headers={"Origin": "https://app.example",
                                               "Access-Control-Request-Method": "POST"})
    assert r.status_code == 204 and FRESH_ID.match(r.headers["X-Request-Id"]), r.headers
    r = srv.request("HEAD", "/healthz")
    assert r.status_code == 200 and FRESH_ID.match(r.headers["X-Request-Id"]), r.headers
