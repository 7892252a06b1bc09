"""Bearer authentication of the /api/openapi/token/ routes: every row of
API.md's "Authentication of requests" table, on each of the three routes,
with its exact status, body and `WWW-Authenticate: Bearer realm="api"`.
"""

import time
import uuid as uuidlib

import jwt
import pytest

from conftest import UUID_RE, WWW_AUTH, expect_json, expect_tokens

API = "/api/openapi/token/"
NOT_PROVIDED = {"detail": "Authentication credentials were not provided."}
BAD_HEADER = {"detail": "Authorization header must contain two space-delimited values",
              "code": "bad_authorization_header"}
INACTIVE = {"detail": "User is inactive", "code": "user_inactive"}
NOT_FOUND_USER = {"detail": "User not found", "code": "user_not_found"}


def not_valid(message):
    return {"detail": "Given token not valid for any token type", "code": "token_not_valid",
            "messages": [{"token_class": "AccessToken", "token_type": "access",
                          "message": message}]}


INVALID = not_valid("Token is invalid or expired")
WRONG_TYPE = not_valid("Token has wrong type")


class Env:
    def __init__(self, inst, srv):
        self.inst, self.srv = inst, srv
        self.team = self.new_team()
        self.name, self.uid, self.pw, self.access, self.refresh = self.new_user(self.team)

    def new_team(self):
        res = self.inst.cli_ok("team", "add", f"bt-{uuidlib.uuid4().hex[:10]}")
        tid = res.out.strip()
        assert UUID_RE.match(tid), res
        return tid

    def new_user(self, *teams):
        name = f"b-{uuidlib.uuid4().hex[:10]}"
        pw = f"pw-{uuidlib.uuid4().hex}"
        uid = self.inst.add_user(name, pw)
        for t in teams:
            self.inst.cli_ok("team", "add-member", t, name)
        body = expect_tokens(self.srv.login(name, pw), f"login {name}")
        return name, uid, pw, body["access"], body["refresh"]

    def routes(self, team=None):
        """(label, callable(headers) -> response) for the three routes."""
        t = team or self.team
        return [
            ("list", lambda h: self.srv.request("GET", f"{API}{t}/", headers=h)),
            ("list-noslash", lambda h: self.srv.request("GET", f"{API}{t}", headers=h)),
            ("issue", lambda h: self.srv.post(f"{API}{t}/", headers=h, json={"name": "x"})),
            ("issue-nobody", lambda h: self.srv.post(f"{API}{t}/", headers=h)),
            ("delete", lambda h: self.srv.post(
                f"{API}{t}/delete/", headers=h,
                json={"token_issuer_uuids": [str(uuidlib.uuid4())]})),
            ("delete-noslash", lambda h: self.srv.post(
                f"{API}{t}/delete", headers=h, json={"access_tokens": ["x"]})),
        ]

    def keys(self):
        return self.inst.keys_by_kid()

    def forge(self, token, **changes):
        """Re-sign token's claims (with changes; a value of None removes the
        claim) using the real key of its kid."""
        kid = jwt.get_unverified_header(token)["kid"]
        claims = jwt.decode(token, options={"verify_signature": False})
        for k, v in changes.items():
            if v is None:
                claims.pop(k, None)
            else:
                claims[k] = v
        return jwt.encode(claims, self.keys()[kid], algorithm="HS256", headers={"kid": kid})

    def api_token(self):
        r = self.srv.post(f"{API}{self.team}/", headers={"Authorization": f"Bearer {self.access}"})
        return expect_json(r, 201, "issue an API token")["access_token"]


@pytest.fixture(scope="module")
def env(module_factory):
    inst, srv = module_factory.server(label="bearer server")
    return Env(inst, srv)


def assert_401(resp, body, what):
    got = expect_json(resp, 401, what)
    assert got == body, f"{what}: 401 body must be {body!r}, got {got!r}"
    assert resp.headers.get("WWW-Authenticate") == WWW_AUTH, (
        f"{what}: 401 must carry 'WWW-Authenticate: {WWW_AUTH}', got "
        f"{resp.headers.get('WWW-Authenticate')!r}")


def assert_all_routes_401(env, headers, body, what, team=None):
    for label, call in env.routes(team):
        assert_401(call(headers), body, f"{what} on {label}")


def assert_all_routes_ok(env, headers, what, team=None):
    for label, call in env.routes(team):
        r = call(headers)
        assert r.status_code in (200, 201), (
            f"{what} on {label}: expected success, got {r.status_code} {r.text[:300]!r}")


# --------------------------------------------------------------------------


def test_valid_access_token_is_accepted(env):
    assert_all_routes_ok(env, {"Authorization": f"Bearer {env.access}"}, "valid bearer")


def test_no_authorization_header(env):
    assert_all_routes_401(env, {}, NOT_PROVIDED, "no Authorization header")


@pytest.mark.parametrize("value", [
    "Basic x",
    "Basic dXNlcjpwYXNz",
    "Bearer",
    "Bearer a b",
    "bearer x",
    "BEARER x",
    "Token x",
    "JWT x",
], ids=lambda v: v.replace(" ", "_"))
def test_header_not_bearer_one_value(env, value):
    assert_all_routes_401(env, {"Authorization": value}, BAD_HEADER, f"Authorization: {value!r}")


def test_header_with_valid_token_but_wrong_shape(env):
    for value in (f"bearer {env.access}", f"Bearer {env.access} extra", f"Basic {env.access}",
                  f"Token {env.access}", env.access):
        assert_all_routes_401(env, {"Authorization": value}, BAD_HEADER,
                              f"Authorization: {value[:20]!r}...")


def _tampered(token, part, pos=-2):
    parts = token.split(".")
    s = parts[part]
    c = "A" if s[pos] != "A" else "B"
    parts[part] = s[:pos] + c + s[pos + 1:]
    return ".".join(parts)


def test_invalid_tokens(env):
    now = int(time.time())
    kid = jwt.get_unverified_header(env.access)["kid"]
    claims = jwt.decode(env.access, options={"verify_signature": False})
    cases = {
        "garbage": "garbage",
        "three dots": "a.b.c",
        "empty parts": "..",
        "tampered signature": _tampered(env.access, 2),
        "tampered payload": _tampered(env.access, 1, 5),
        "wrong key": jwt.encode(claims, b"k" * 32, algorithm="HS256", headers={"kid": kid}),
        "unknown kid": jwt.encode(claims, env.keys()[kid], algorithm="HS256",
                                  headers={"kid": "ffffffffffffffff"}),
        "alg none": jwt.encode(claims, None, algorithm="none", headers={"kid": kid}),
        "alg HS512": jwt.encode(claims, env.keys()[kid], algorithm="HS512", headers={"kid": kid}),
        "expired": env.forge(env.access, exp=now - 60, iat=now - 360),
        "no exp": env.forge(env.access, exp=None),
        "long garbage": "x" * 3000,
    }
    for label, tok in cases.items():
        assert_all_routes_401(env, {"Authorization": f"Bearer {tok}"}, INVALID, f"{label} token")


def test_forged_control_token_is_accepted(env):
    """The forging helper re-signs exactly like the service: an unexpired
    forged access token passes (so the 'expired' case above fails for its
    exp alone)."""
    now = int(time.time())
    tok = env.forge(env.access, exp=now + 120, iat=now)
    assert_all_routes_ok(env, {"Authorization": f"Bearer {tok}"}, "re-signed valid access token")


def test_really_expired_access_token(factory):
    inst, srv = factory.server(env={"TOKEND_TOKENS_ACCESS_LIFETIME": 1}, label="1-second access")
    e = Env(inst, srv)
    exp = jwt.decode(e.access, options={"verify_signature": False})["exp"]
    while time.time() < exp + 1.1:
        time.sleep(0.1)
    assert_all_routes_401(e, {"Authorization": f"Bearer {e.access}"}, INVALID, "expired access token")


def test_refresh_token_as_bearer(env):
    assert_all_routes_401(env, {"Authorization": f"Bearer {env.refresh}"}, WRONG_TYPE,
                          "refresh token as bearer")


def test_api_token_as_bearer(env):
    tok = env.api_token()
    assert_all_routes_401(env, {"Authorization": f"Bearer {tok}"}, WRONG_TYPE, "API token as bearer")


def test_inactive_user(env):
    name, uid, pw, access, refresh = env.new_user(env.team)
    h = {"Authorization": f"Bearer {access}"}
    env.inst.cli_ok("user", "disable", name)
    assert_all_routes_401(env, h, INACTIVE, "disabled user")
    # the disable ended the session (issue 10): its token stays refused,
    # a new login works
    env.inst.cli_ok("user", "enable", name)
    assert_all_routes_401(env, h, INVALID, "old session of a user enabled again")
    r = env.srv.login(name, pw)
    assert r.status_code == 201, r.text
    assert_all_routes_ok(env, {"Authorization": f"Bearer {r.json()['access']}"},
                         "new login of a user enabled again")


def test_deleted_user(env):
    name, uid, pw, access, refresh = env.new_user(env.team)
    env.inst.cli_ok("user", "delete", name)
    assert_all_routes_401(env, {"Authorization": f"Bearer {access}"}, NOT_FOUND_USER, "deleted user")


def test_auth_before_team_checks(env):
    team = env.team
    other = env.new_team()  # not a member
    bad = [team.upper(), team.replace("-", ""), team + "x", team[:-1], str(uuidlib.uuid4()), other]
    for t in bad:
        assert_all_routes_401(env, {}, NOT_PROVIDED, f"no header, team {t!r}", team=t)
        assert_all_routes_401(env, {"Authorization": "Bearer garbage"}, INVALID,
                              f"bad token, team {t!r}", team=t)
        assert_all_routes_401(env, {"Authorization": "Basic x"}, BAD_HEADER,
                              f"bad header, team {t!r}", team=t)
        assert_all_routes_401(env, {"Authorization": f"Bearer {env.refresh}"}, WRONG_TYPE,
                              f"refresh token, team {t!r}", team=t)


def test_auth_routes_ignore_authorization_header(env):
    for value in ("Bearer garbage", "Basic x", "Bearer", f"Bearer {env.refresh}"):
        h = {"Authorization": value}
        r = env.srv.post("/api/auth/jwt/", headers=h, json={"username": env.name, "password": env.pw})
        pair = expect_tokens(r, f"login with Authorization: {value[:20]!r}")
        r = env.srv.post("/api/auth/jwt/verify/", headers=h, json={"token": pair["access"]})
        assert expect_json(r, 201, f"verify with Authorization: {value[:20]!r}") == {"token": pair["access"]}
        r = env.srv.post("/api/auth/jwt/refresh/", headers=h, json={"refresh": pair["refresh"]})
        expect_tokens(r, f"refresh with Authorization: {value[:20]!r}")
