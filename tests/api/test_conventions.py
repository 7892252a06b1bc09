"""API.md "Conventions": JSON everywhere, content types, trailing slashes,
404/405/415 shapes, security headers, the access log."""

import json
import re
import time
import uuid

import pytest
import requests

from conftest import (LOGIN, build_request, expect_detail, expect_json, expect_parse_error,
                      expect_tokens, raw_one)


# ---------------------------------------------------------------- routing

@pytest.mark.parametrize("path", ["/", "/nope", "/api/", "/api/auth/", "/api/auth/jwt/x/",
                                  "/api/auth/jwtx/", "/API/AUTH/JWT/"])
def test_unknown_path_is_json_404(srv, path):
    for method in ("GET", "POST"):
        r = srv.request(method, path, json={"username": "alice", "password": "x"})
        body = expect_json(r, 404, f"{method} {path}")
        assert body == {"detail": "Not found."}, f"{method} {path}: 404 body {body!r}"


@pytest.mark.parametrize("path", ["/api/auth/jwt/", "/api/auth/jwt"])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "FOO"])
def test_wrong_method_on_login_is_405_with_allow(srv, path, method):
    r = srv.request(method, path, json={"username": "alice", "password": "x"})
    body = expect_detail(r, 405, f"{method} {path}")
    allow = {m.strip().upper() for m in r.headers.get("Allow", "").split(",") if m.strip()}
    assert "POST" in allow, f"{method} {path}: 405 must carry 'Allow: POST', got {r.headers.get('Allow')!r}"
    assert not allow & {"GET", "PUT", "DELETE", "PATCH"}, f"Allow lists methods that are not allowed: {allow}"
    assert method in body["detail"] or "not allowed" in body["detail"].lower(), body


def test_head_on_login_is_405(srv):
    r = srv.request("HEAD", LOGIN)
    assert r.status_code == 405, f"HEAD {LOGIN}: expected 405, got {r.status_code}"
    assert "POST" in r.headers.get("Allow", ""), r.headers
    assert r.headers.get("X-Content-Type-Options") == "nosniff", r.headers


def test_trailing_slash_optional(srv, alice):
    user, pw, _ = alice
    expect_tokens(srv.login(user, pw, path="/api/auth/jwt/"), "with slash")
    expect_tokens(srv.login(user, pw, path="/api/auth/jwt"), "without slash")


@pytest.mark.parametrize("path", ["/.well-known/jwks.json", "/.well-known/jwks.json/"])
def test_trailing_slash_optional_without_one_in_the_route(srv, path):
    r = srv.request("GET", path)
    assert expect_json(r, 200, f"GET {path}") == {"keys": []}, "HS256 keys are never published"


def test_double_trailing_slash_is_404(srv):
    expect_json(srv.request("GET", "/.well-known/jwks.json//"), 404, "two trailing slashes")


def test_query_string_does_not_change_routing(srv, alice):
    user, pw, _ = alice
    expect_tokens(srv.login(user, pw, path="/api/auth/jwt/?format=json"), "login with a query string")


# ---------------------------------------------------------------- content types

@pytest.mark.parametrize("ctype", ["application/json", "application/json; charset=utf-8",
                                   "application/json;charset=UTF-8", "Application/JSON"])
def test_json_content_types_accepted(srv, alice, ctype):
    user, pw, _ = alice
    body = json.dumps({"username": user, "password": pw}).encode()
    r = srv.post(LOGIN, data=body, headers={"Content-Type": ctype})
    expect_tokens(r, f"Content-Type {ctype!r}")


@pytest.mark.parametrize("ctype", ["application/x-www-form-urlencoded",
                                   "application/x-www-form-urlencoded; charset=utf-8"])
def test_form_content_types_accepted(srv, alice, ctype):
    user, pw, _ = alice
    from urllib.parse import urlencode
    r = srv.post(LOGIN, data=urlencode({"username": user, "password": pw}),
                 headers={"Content-Type": ctype})
    expect_tokens(r, f"Content-Type {ctype!r}")


def test_missing_content_type_is_treated_as_json(srv, alice):
    user, pw, _ = alice
    data = json.dumps({"username": user, "password": pw}).encode()
    req = build_request("POST", LOGIN, [("Content-Length", str(len(data))),
                                        ("Connection", "close")], data)
    r = raw_one(srv.port, req, what="login without Content-Type")
    expect_tokens(r, "login without Content-Type")


UNSUPPORTED_MEDIA = {"detail": "Unsupported media type in request."}


def test_text_plain_is_415_with_drf_message(srv, alice, unchanged):
    """DRF's message without its quoted value: a request's bytes are never
    echoed in an error body."""
    user, pw, _ = alice
    with unchanged("text/plain login"):
        r = srv.post(LOGIN, data=json.dumps({"username": user, "password": pw}),
                     headers={"Content-Type": "text/plain"})
        body = expect_json(r, 415, "text/plain")
    assert body == UNSUPPORTED_MEDIA, body


@pytest.mark.parametrize("template", ["text/plain; secret={}", "application/{}",
                                      "application/json; charset={}", "{}/{}",
                                      "<script>{}</script>"])
def test_415_never_echoes_the_content_type(srv, alice, unchanged, template):
    user, pw, _ = alice
    secret = "ct" + uuid.uuid4().hex
    ctype = template.format(secret, secret)
    with unchanged(f"Content-Type {ctype!r}"):
        r = srv.post(LOGIN, data=json.dumps({"username": user, "password": pw}),
                     headers={"Content-Type": ctype})
        body = expect_json(r, 415, f"Content-Type {ctype!r}")
    assert body == UNSUPPORTED_MEDIA, body
    assert secret[:8] not in r.text and "script" not in r.text, r.text


@pytest.mark.parametrize("ctype", ["application/xml", "application/json; charset=latin1",
                                   "application/json; charset=iso-8859-1",
                                   "multipart/form-data; boundary=xyz", "text/json",
                                   "application/jsonx", "application/octet-stream"])
def test_other_content_types_are_415(srv, alice, unchanged, ctype):
    user, pw, _ = alice
    with unchanged(ctype):
        r = srv.post(LOGIN, data=json.dumps({"username": user, "password": pw}),
                     headers={"Content-Type": ctype})
        body = expect_detail(r, 415, f"Content-Type {ctype!r}")
    assert "Unsupported media type" in body["detail"], body


def test_chunked_request_body_is_accepted(srv, alice):
    user, pw, _ = alice
    data = json.dumps({"username": user, "password": pw}).encode()
    half = len(data) // 2
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (data[:half], data[half:])) + b"0\r\n\r\n"
    req = build_request("POST", LOGIN, [("Content-Type", "application/json"),
                                        ("Transfer-Encoding", "chunked"),
                                        ("Connection", "close")], chunks)
    expect_tokens(raw_one(srv.port, req, what="chunked login"), "chunked login")


# ---------------------------------------------------------------- every response

def test_every_response_is_json_with_nosniff(srv, alice):
    user, pw, _ = alice
    cases = [
        (201, lambda: srv.login(user, pw)),
        (400, lambda: srv.post(LOGIN, json={})),
        (400, lambda: srv.post(LOGIN, data=b"{", headers={"Content-Type": "application/json"})),
        (401, lambda: srv.login(user, "wrong")),
        (404, lambda: srv.request("GET", "/nope")),
        (405, lambda: srv.request("GET", LOGIN)),
        (413, lambda: srv.post(LOGIN, data=b" " * 70000, headers={"Content-Type": "application/json"})),
        (415, lambda: srv.post(LOGIN, data=b"x", headers={"Content-Type": "text/plain"})),
    ]
    for status, call in cases:
        r = call()
        expect_json(r, status, f"response {status}")


def test_cache_control_no_store_on_tokens_only_required_there(srv, alice):
    user, pw, _ = alice
    r = srv.login(user, pw)
    expect_tokens(r)
    assert "no-store" in r.headers.get("Cache-Control", ""), r.headers


def test_parse_error_shape(srv):
    r = srv.post(LOGIN, data=b'{"username": "alice", "password": ', headers={"Content-Type": "application/json"})
    body = expect_parse_error(r, "truncated JSON")
    assert set(body) == {"detail"}, body


PARSE_WHERE = re.compile(r"^JSON parse error - [A-Za-z0-9 ()\\',-]+: "
                         r"line (\d+) column (\d+) \(char (\d+)\)$")


@pytest.mark.parametrize("template", [
    b'{"username": "alice", "password": SECRET}',
    b'{"username": "alice", "password": "SECRET"',
    b'{"username": "alice", "password": "SECRET"} SECRET',
    b'{"username": "alice", "password": "SECRET\xff"}',
    b'{"username": "alice", "password": "SECRET\x01"}',
    b'{"username": "alice", "password": "SECRET\\q"}',
    b'{"username": "alice", "password": "SECRET\\u0000"}',
    b'{"username": "alice", "password": "SECRET\\ud800"}',
    b'{"username": "alice", "password": 1e999SECRET}',
    b'{"username": "alice", "SECRET": "x",}',
    b'{"username": "alice" "password": "SECRET"}',
    b'\n\n  {"SECRET" 1}',
    b'SECRET',
    b'{"username": "alice", "password" "SECRET"}',
], ids=["unquoted", "unterminated", "extra-data", "bad-utf8", "control-char", "bad-escape",
        "nul-escape", "lone-surrogate", "overflow", "trailing-comma", "missing-comma",
        "missing-colon", "bare-word", "password-without-colon"])
def test_parse_error_never_echoes_the_body(srv, unchanged, template):
    """A malformed body's bytes (a password among them) never come back: the
    detail says where parsing failed, not what was there."""
    # jansson quotes the token it stopped at when it is 20 bytes or less,
    # so the secret is short (as passwords are), and starts with a rare
    # pair of letters so that even a partial echo shows
    secret = "Zq" + uuid.uuid4().hex[:12]
    data = template.replace(b"SECRET", secret.encode())
    with unchanged(f"malformed body {template!r}"):
        r = srv.post(LOGIN, data=data, headers={"Content-Type": "application/json"})
        body = expect_parse_error(r, f"malformed body {template!r}")
    assert set(body) == {"detail"}, body
    assert "Zq" not in r.text, f"the body's bytes come back: {r.text!r}"
    assert PARSE_WHERE.match(body["detail"]), (
        f"detail must say line/column/char, as Python's json does: {body['detail']!r}")


@pytest.mark.parametrize("data", [
    '{"username": "alice", "password": s3cr3t}',
    '\n\n  {"a" 1}',
    '{"\u00e9": x}',
    '{"a": 1,}',
    '[1, 2',
], ids=["unquoted", "line-3", "non-ascii", "trailing-comma", "unterminated"])
def test_parse_error_position_is_pythons(srv, data):
    """The line, column and (0-based) character of a one-character error
    are those Python's json (and so DRF) reports."""
    try:
        json.loads(data)
        raise AssertionError(f"{data!r} parses")
    except json.JSONDecodeError as e:
        want = f"line {e.lineno} column {e.colno} (char {e.pos})"
    r = srv.post(LOGIN, data=data.encode(), headers={"Content-Type": "application/json"})
    body = expect_parse_error(r, f"malformed body {data!r}")
    assert body["detail"].endswith(": " + want), (data, body["detail"], want)


def test_keep_alive_connection_serves_several_requests(srv, alice):
    import requests
    user, pw, _ = alice
    with requests.Session() as s:
        for i in range(3):
            r = s.post(srv.url(LOGIN), json={"username": user, "password": pw}, timeout=HANG)
            expect_tokens(r, f"request #{i} on one keep-alive connection")
            r = s.get(srv.url("/nope"), timeout=HANG)
            expect_json(r, 404, f"404 #{i} on one keep-alive connection")


# ---------------------------------------------------------------- access log

# Lines are buffered and written by a flusher thread every 100 ms, then read
# from the pipe by the harness: how soon they show up is not asserted (a
# loaded machine, ASan), only that they do. HANG bounds a hang.
HANG = 30


def _log_lines_for(srv, needle, timeout=HANG):
    deadline = time.monotonic() + timeout
    while True:
        lines = [ln for ln in list(srv.err_lines) if needle in ln]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def _wait_access_line(srv, resp, what):
    """The access-log line of `resp` (found by its X-Request-Id, which ends
    the line): waits for it, fails naming `what` if it never comes."""
    rid = resp.headers.get("X-Request-Id")
    assert rid, f"{what}: response has no X-Request-Id"
    lines = _log_lines_for(srv, rid)
    assert lines, f"{what}: no access-log line ending in request id {rid} within {HANG}s:\n{srv.tail()}"
    return lines


def test_access_log_one_line_per_request(srv):
    path = f"/nope-{uuid.uuid4().hex}"
    expect_json(srv.request("GET", path), 404)
    lines = _log_lines_for(srv, path)
    assert len(lines) == 1, f"expected exactly one access-log line for {path}, got {lines!r}"
    line = lines[0]
    assert "GET" in line and "404" in line, f"access-log line lacks method or status: {line!r}"
    # a later request's line comes from a later flush than the first one's:
    # once it is there, a duplicate of the first would be there too
    _wait_access_line(srv, srv.request("GET", "/healthz"), "the request after it")
    assert len([ln for ln in srv.err_lines if path in ln]) == 1, "duplicate access-log lines"


def test_access_log_records_login_status(srv, alice):
    user, pw, _ = alice
    marker = uuid.uuid4().hex
    path = f"{LOGIN}?m={marker}"
    r = srv.login(user, pw, path=path)
    expect_tokens(r)
    lines = _wait_access_line(srv, r, "login")
    assert all("POST" in ln and "/api/auth/jwt/" in ln and " 201 " in ln for ln in lines), (
        f"the login's access-log line must say POST /api/auth/jwt/ 201: {lines!r}")


def _access_lines(srv, needle):
    return [ln for ln in list(srv.err_lines) if " access " in ln and needle in ln]


@pytest.mark.parametrize("flush_ms", [0, 100])
def test_access_log_lines_arrive_within_the_flush_interval(factory, flush_ms):
    """Buffered (the default, 100 ms) or not (0), a line shows up on its
    own: no further traffic, no full buffer, no shutdown needed (the 60 s
    interval of the next test would show nothing for the whole wait)."""
    inst, srv = factory.server(env={"TOKEND_LOG_ACCESS_LOG_FLUSH_MS": flush_ms},
                               label=f"flush {flush_ms} ms")
    path = f"/nope-{uuid.uuid4().hex}"
    expect_json(srv.request("GET", path), 404)
    lines = _log_lines_for(srv, path)
    assert len(lines) == 1, (
        f"flush {flush_ms} ms: want one line for {path} while the server runs "
        f"(waited up to {HANG}s), got {lines!r}")


def test_access_log_buffer_loses_no_line_at_shutdown(factory):
    """With an hour-long flush interval, lines still reach stderr when a
    thread's buffer fills, and every one of them at SIGTERM."""
    inst, srv = factory.server(env={"TOKEND_LOG_ACCESS_LOG_FLUSH_MS": 60000},
                               label="flush 60 s")
    marker = uuid.uuid4().hex
    n = 300
    with requests.Session() as s:
        for i in range(n):
            assert s.get(srv.url(f"/nope-{marker}-{i}"), timeout=HANG).status_code == 404
    # full buffers are written by the request threads themselves: wait for
    # them (not for a fixed 0.3 s), then count
    deadline = time.monotonic() + HANG
    while len(_access_lines(srv, marker)) < n // 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    before = len(_access_lines(srv, marker))
    # ~110-byte lines, 4 KiB buffers: all but the last buffer's worth per thread
    assert before >= n // 2, f"only {before} of {n} lines written before shutdown: full buffers must be written"
    assert before < n, "every line was written at once: the buffer is not in use"
    assert srv.stop() == 0
    lines = _access_lines(srv, marker)
    got = sorted(int(ln.split(f"{marker}-", 1)[1].split()[0]) for ln in lines)
    assert got == list(range(n)), (
        f"after SIGTERM want each of the {n} lines exactly once; missing "
        f"{sorted(set(range(n)) - set(got))[:10]}, duplicates {len(got) - len(set(got))}")
    # whole lines: they end with the bytes and the request id
    assert all(ln.startswith("20") and re.search(r" \d+B [0-9a-f]{16}$", ln) for ln in lines), (
        "a line was cut or mixed")


def test_access_log_never_contains_secrets(srv, alice):
    user, pw, _ = alice
    secret_auth = f"secret-xyz-{uuid.uuid4().hex}"
    bad_pw = f"wrong-{uuid.uuid4().hex}"
    r = srv.login(user, pw, headers={"Authorization": f"Bearer {secret_auth}"})
    tokens = expect_tokens(r, "login with an Authorization header (must be ignored)")
    expect_json(srv.login(user, bad_pw, form=True), 401)
    r404 = srv.request("GET", "/nope", headers={"Authorization": f"Bearer {secret_auth}"})
    expect_json(r404, 404)
    # every request's line is on stderr before it is searched (not after 0.5 s and hope)
    _wait_access_line(srv, r, "login with an Authorization header")
    _wait_access_line(srv, r404, "GET /nope with an Authorization header")
    err = srv.stderr()
    for label, secret in [("Authorization header value", secret_auth),
                          ("correct password", pw), ("wrong password", bad_pw),
                          ("access token", tokens["access"]), ("refresh token", tokens["refresh"]),
                          ("access token signature", tokens["access"].rsplit(".", 1)[1]),
                          ("refresh token signature", tokens["refresh"].rsplit(".", 1)[1])]:
        assert secret not in err, f"{label} appears on stderr (access log)"
    for label, secret in [("password", pw), ("wrong password", bad_pw)]:
        assert secret not in r.text, f"{label} echoed in response"
