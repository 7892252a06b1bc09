"""GET /api/auth/forward/ — forward authentication for a reverse proxy
(API.md "Around the six routes", issue 12 "Forward auth").

Directly: a live access token or API token of an active user answers 200
with X-Auth-User-Id, X-Auth-Username, X-Auth-Token-Type (and X-Auth-Team
for an API token); everything else, the verify battery's hostile tokens
included, 401 with WWW-Authenticate. A username that cannot be a header
value is left out, never escaped. Through a real nginx (`auth_request`):
the upstream is reached with the user (or the team) only for a good token.
"""

import http.server
import json
import threading
import time
import uuid as uuidlib

import jwt
import pytest
import requests

from conftest import (HANG, UUID_RE, WWW_AUTH, RawConn, build_request, django_hash, expect_json,
                      expect_tokens, insert_user)
from proxy import Nginx, nginx_available
from test_jwt_checks import HOSTILE, _genuine, ctx  # noqa: F401  (ctx is a fixture)

FORWARD = "/api/auth/forward/"
API = "/api/openapi/token/"
LOGOUT = "/api/auth/jwt/blacklist/"
X_HEADERS = ("X-Auth-User-Id", "X-Auth-Username", "X-Auth-Token-Type", "X-Auth-Team")


class World:
    def __init__(self, inst, srv):
        self.inst, self.srv = inst, srv
        self.team = inst.cli_ok("team", "add", f"fw-{uuidlib.uuid4().hex[:8]}").out.strip()
        assert UUID_RE.match(self.team)

    def user(self, prefix="fw", team=True):
        name = f"{prefix}-{uuidlib.uuid4().hex[:10]}"
        pw = f"pw-{uuidlib.uuid4().hex[:8]}"
        uid = self.inst.add_user(name, pw)
        if team:
            self.inst.cli_ok("team", "add-member", self.team, name)
        pair = expect_tokens(self.srv.login(name, pw), f"login {name}")
        return name, uid, pair

    def api_token(self, access):
        r = self.srv.post(f"{API}{self.team}/", headers={"Authorization": f"Bearer {access}"})
        return expect_json(r, 201, "issue API token")

    def forward(self, token=None, method="GET", path=FORWARD, header=None):
        h = {}
        if header is not None:
            h["Authorization"] = header
        elif token is not None:
            h["Authorization"] = f"Bearer {token}"
        return self.srv.request(method, path, headers=h)


@pytest.fixture(scope="module")
def w(module_factory):
    inst, srv = module_factory.server(label="forward auth")
    return World(inst, srv)


def expect_ok(r, what, uid, name, kind, team=None):
    body = expect_json(r, 200, what) if r.request.method != "HEAD" else None
    if body is not None:
        assert isinstance(body, dict), body
    assert r.headers.get("X-Auth-User-Id") == uid, (what, dict(r.headers))
    assert r.headers.get("X-Auth-Username") == name, (what, dict(r.headers))
    assert r.headers.get("X-Auth-Token-Type") == kind, (what, dict(r.headers))
    assert r.headers.get("X-Auth-Team") == team, (what, dict(r.headers))


def expect_refused(r, what):
    assert r.status_code == 401, f"{what}: expected 401, got {r.status_code} {r.text[:200]!r}"
    assert r.headers.get("WWW-Authenticate") == WWW_AUTH, (what, dict(r.headers))
    for h in X_HEADERS:
        assert h not in r.headers, f"{what}: a refusal carries {h}"


# ---------------------------------------------------------------- directly

@pytest.mark.parametrize("path", [FORWARD, FORWARD.rstrip("/")])
def test_access_token(w, path):
    name, uid, pair = w.user()
    expect_ok(w.forward(pair["access"], path=path), "access token", uid, name, "access")


def test_head_works_like_get(w):
    name, uid, pair = w.user()
    r = w.forward(pair["access"], method="HEAD")
    assert r.status_code == 200 and r.content == b"", (r.status_code, r.content)
    expect_ok(r, "HEAD", uid, name, "access")
    expect_refused(w.forward("garbage", method="HEAD"), "HEAD garbage")


def test_api_token(w):
    name, uid, pair = w.user()
    tok = w.api_token(pair["access"])
    expect_ok(w.forward(tok["access_token"]), "API token", uid, name, "api", team=w.team)


def test_refresh_token_never(w):
    _, _, pair = w.user()
    expect_refused(w.forward(pair["refresh"]), "refresh token")


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Bearer a b", "Basic eDp5",
                                    "bearer x", "Bearer garbage", "Bearer a.b.c", "Token x"])
def test_bad_headers(w, header):
    r = w.srv.request("GET", FORWARD, headers={} if header is None else {"Authorization": header})
    expect_refused(r, f"Authorization {header!r}")


def test_logged_out_session_fails_at_once(w):
    name, uid, pair = w.user()
    expect_ok(w.forward(pair["access"]), "before logout", uid, name, "access")
    expect_json(w.srv.post(LOGOUT, json={"refresh": pair["refresh"]}), 200, "logout")
    expect_refused(w.forward(pair["access"]), "access token of an ended session")


def test_deleted_api_token_fails_at_once(w):
    name, uid, pair = w.user()
    tok = w.api_token(pair["access"])
    expect_ok(w.forward(tok["access_token"]), "before delete", uid, name, "api", team=w.team)
    r = w.srv.post(f"{API}{w.team}/delete/", headers={"Authorization": f"Bearer {pair['access']}"},
                   json={"token_issuer_uuids": [tok["token_issuer_uuid"]]})
    assert expect_json(r, 200, "delete")["deleted_count"] == 1
    expect_refused(w.forward(tok["access_token"]), "deleted API token")


def test_disabled_user_and_left_team(w):
    name, uid, pair = w.user()
    tok = w.api_token(pair["access"])
    w.inst.cli_ok("team", "remove-member", w.team, name)
    expect_refused(w.forward(tok["access_token"]), "API token of a user who left the team")
    expect_ok(w.forward(pair["access"]), "access token still fine", uid, name, "access")
    w.inst.cli_ok("user", "disable", name)
    expect_refused(w.forward(pair["access"]), "access token of a disabled user")


def test_post_is_405(w):
    r = w.srv.post(FORWARD)
    expect_json(r, 405, "POST forward")
    assert "GET" in r.headers.get("Allow", "") and "HEAD" in r.headers.get("Allow", "")


def test_forward_writes_nothing(w):
    from conftest import db_snapshot
    _, _, pair = w.user()
    before = db_snapshot(w.inst.database)
    for _ in range(5):
        assert w.forward(pair["access"]).status_code == 200
    assert db_snapshot(w.inst.database) == before


@pytest.mark.parametrize("username,emitted", [
    ("j\u00f6rg-" + uuidlib.uuid4().hex[:6], True),      # UTF-8: sent as its bytes
    ("evil\r\nX-Injected: 1-" + uuidlib.uuid4().hex[:6], False),
    ("tab\tname-" + uuidlib.uuid4().hex[:6], False),
    ("del\x7f-" + uuidlib.uuid4().hex[:6], False),
    (" lead-" + uuidlib.uuid4().hex[:6], False),           # a parser would strip it
    ("trail-" + uuidlib.uuid4().hex[:6] + " ", False),
])
def test_username_that_is_no_header_value_is_left_out(w, username, emitted):
    """Usernames imported from elsewhere may hold any byte; a header value
    may not (RFC 9110 5.5). X-Auth-Username is then left out, never escaped
    or cut; X-Auth-User-Id, the identity, is always there."""
    uid = insert_user(w.inst.database, username, django_hash("pw-odd", 1000))
    if username != username.strip():
        # login trims the field as DRF does: mint a (session-less) access token
        keys = w.inst.keys_by_kid()
        kid = sorted(keys)[0]
        now = int(time.time())
        access = jwt.encode({"token_type": "access", "exp": now + 300, "iat": now,
                             "jti": str(uuidlib.uuid4()), "user_id": uid},
                            keys[kid], algorithm="HS256", headers={"kid": kid})
    else:
        access = expect_tokens(w.srv.login(username, "pw-odd"), f"login {username!r}")["access"]
    with RawConn(w.srv.port) as c:
        c.send(build_request("GET", FORWARD, [("Authorization", f"Bearer {access}"),
                                              ("Connection", "close")]))
        c.wait_closed(10)
        raw = c.buf
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"HTTP/1.1 200"), raw[:300]
    lines = head.split(b"\r\n")[1:]
    names = [ln.split(b":", 1)[0].lower() for ln in lines]
    assert b"x-injected" not in names, head
    assert f"X-Auth-User-Id: {uid}".encode() in lines, head
    want = b"X-Auth-Username: " + username.encode("utf-8")
    if emitted:
        assert want in lines, head
    else:
        assert not any(n == b"x-auth-username" for n in names), head
    for ln in lines:
        assert not any(b < 0x20 and b != 0x09 or b == 0x7f for b in ln), ln


# ---------------------------------------------------------------- hostile battery

@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_token_refused(ctx, case):  # noqa: F811
    tok, cl, hdr = _genuine(ctx, "access")
    ctx.kind = "access"
    forged = HOSTILE[case](ctx, cl, hdr)
    assert forged != tok
    if any(ch in forged for ch in "\r\n"):
        with RawConn(ctx.srv.port) as c:
            c.send(build_request("GET", FORWARD, [("Authorization", f"Bearer {forged}")]))
            resps = c.read_final(1, timeout=HANG)
        # a line break inside the header: the line after it is not a
        # header line, which is refused before any handler, 400
        assert resps and resps[0].status_code == 400, (case, resps)
        return
    r = ctx.srv.request("GET", FORWARD, headers={"Authorization": f"Bearer {forged}"})
    if len(forged) > 16 * 1024:
        # over the header block limit: refused before any handler runs
        assert r.status_code == 431, (case, r.status_code)
        return
    expect_refused(r, f"forward with {case}")


def test_hostile_control_genuine_passes(ctx):  # noqa: F811
    tok, _, _ = _genuine(ctx, "access")
    r = ctx.srv.request("GET", FORWARD, headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 200 and r.headers.get("X-Auth-User-Id") == ctx.uid


# ---------------------------------------------------------------- behind nginx

class Upstream:
    """A small HTTP server recording the requests it gets."""

    def __init__(self):
        seen = self.seen = []

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                body = b'{"upstream": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def auth_locations(tokend_port, app_port):
    return f"""
        location = /_auth {{
            internal;
            proxy_pass http://127.0.0.1:{tokend_port}/api/auth/forward/;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
        location /app/ {{
            auth_request /_auth;
            auth_request_set $auth_user $upstream_http_x_auth_user_id;
            auth_request_set $auth_name $upstream_http_x_auth_username;
            auth_request_set $auth_type $upstream_http_x_auth_token_type;
            auth_request_set $auth_team $upstream_http_x_auth_team;
            proxy_set_header X-User $auth_user;
            proxy_set_header X-User-Name $auth_name;
            proxy_set_header X-Token-Type $auth_type;
            proxy_set_header X-Team $auth_team;
            proxy_set_header Authorization "";
            proxy_pass http://127.0.0.1:{app_port};
        }}
"""


needs_nginx = pytest.mark.skipif(not nginx_available(), reason="nginx not installed")


@needs_nginx
def test_nginx_auth_request(w, tmp_path):
    name, uid, pair = w.user()
    tok = w.api_token(pair["access"])["access_token"]
    _, _, other = w.user()
    expect_json(w.srv.post(LOGOUT, json={"refresh": other["refresh"]}), 200, "logout")
    _, _, third = w.user()
    deleted = w.api_token(third["access"])
    r = w.srv.post(f"{API}{w.team}/delete/", headers={"Authorization": f"Bearer {third['access']}"},
                   json={"token_issuer_uuids": [deleted["token_issuer_uuid"]]})
    assert expect_json(r, 200, "delete")["deleted_count"] == 1
    with Upstream() as app, Nginx(tmp_path, upstreams=[w.srv.port],
                                  locations=auth_locations(w.srv.port, app.port)) as ngx:
        def get(path, auth):
            h = {} if auth is None else {"Authorization": auth}
            return requests.get(ngx.url(path), headers=h, timeout=15)

        r = get("/app/a", f"Bearer {pair['access']}")
        assert r.status_code == 200 and r.json() == {"upstream": True}, (r.status_code, r.text)
        path, hdrs = app.seen[-1]
        assert path == "/app/a" and hdrs.get("x-user") == uid, app.seen[-1]
        assert hdrs.get("x-user-name") == name and hdrs.get("x-token-type") == "access"
        assert "authorization" not in hdrs

        # a client's own identity headers are replaced, never passed on
        r = requests.get(ngx.url("/app/c"), timeout=15, headers={
            "Authorization": f"Bearer {pair['access']}", "X-User": "forged",
            "X-Team": "forged", "X-Auth-User-Id": "forged"})
        assert r.status_code == 200
        path, hdrs = app.seen[-1]
        assert hdrs.get("x-user") == uid and "x-team" not in hdrs, hdrs

        r = get("/app/b", f"Bearer {tok}")
        assert r.status_code == 200, (r.status_code, r.text)
        path, hdrs = app.seen[-1]
        assert path == "/app/b" and hdrs.get("x-user") == uid, app.seen[-1]
        assert hdrs.get("x-team") == w.team and hdrs.get("x-token-type") == "api", hdrs

        n = len(app.seen)
        for what, auth in [("refresh token", f"Bearer {pair['refresh']}"),
                           ("garbage", "Bearer garbage"), ("none", None),
                           ("basic", "Basic eDp5"),
                           ("logged-out session", f"Bearer {other['access']}"),
                           ("deleted API token", f"Bearer {deleted['access_token']}")]:
            r = get(f"/app/{what.replace(' ', '-')}", auth)
            assert r.status_code == 401, f"{what}: nginx answered {r.status_code} {r.text[:200]!r}"
        assert len(app.seen) == n, f"the upstream was reached without a good token: {app.seen[n:]}"
    w.srv.assert_alive("forward auth through nginx")
