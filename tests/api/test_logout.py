"""POST /api/auth/jwt/blacklist/ -- log out (API.md "log out", issue 11):
the session of the refresh token presented ends, its refresh family is
revoked and the access tokens minted in it fail at once; every refusal is
simplejwt's 401 token_not_valid body (or a 400 field error) and changes
nothing."""

import time
import uuid as uuidlib

import pytest

from conftest import UUID_RE, claims_of, db_rows, expect_invalid, expect_json, expect_tokens

LOGOUT = "/api/auth/jwt/blacklist/"
REFRESH = "/api/auth/jwt/refresh/"
VERIFY = "/api/auth/jwt/verify/"
API = "/api/openapi/token/"


class World:
    def __init__(self, inst, srv):
        self.inst, self.srv = inst, srv

    def user(self, *teams):
        name = f"lo-{uuidlib.uuid4().hex[:10]}"
        pw = f"pw-{uuidlib.uuid4().hex[:8]}"
        uid = self.inst.add_user(name, pw)
        for t in teams:
            self.inst.cli_ok("team", "add-member", t, name)
        return name, pw, uid

    def team(self):
        tid = self.inst.cli_ok("team", "add", f"t-{uuidlib.uuid4().hex[:10]}").out.strip()
        assert UUID_RE.match(tid), tid
        return tid

    def login(self, name, pw):
        return expect_tokens(self.srv.login(name, pw), f"login {name}")

    def logout(self, token, path=LOGOUT, form=False):
        if form:
            return self.srv.post(path, data={"refresh": token})
        return self.srv.post(path, json={"refresh": token})

    def refresh(self, token):
        return self.srv.post(REFRESH, json={"refresh": token})

    def verify(self, token):
        return self.srv.post(VERIFY, json={"token": token}).status_code

    def bearer(self, access, team):
        return self.srv.request("GET", f"{API}{team}/",
                                headers={"Authorization": f"Bearer {access}"})

    def snapshot(self):
        snap = {}
        for table in ("users", "sessions", "refresh_tokens", "api_tokens"):
            rows = db_rows(self.inst.database, f"SELECT * FROM {table}")
            snap[table] = sorted(repr(sorted(r.items())) for r in rows)
        return snap


@pytest.fixture(scope="module")
def w(module_factory):
    """Default configuration: grace 10 s."""
    inst, srv = module_factory.server(label="logout")
    return World(inst, srv)


@pytest.fixture(scope="module")
def w0(module_factory):
    """grace 0: a used refresh token presented again is reuse at once."""
    inst, srv = module_factory.server(env={"TOKEND_TOKENS_REFRESH_GRACE": "0"},
                                      label="logout grace=0")
    return World(inst, srv)


def expect_ok(resp, what):
    body = expect_json(resp, 200, what)
    assert body == {}, f"{what}: logout answers 200 {{}}, got {body!r}"


def expect_refused_unchanged(w, resp_fn, what):
    before = w.snapshot()
    expect_invalid(resp_fn(), what)
    assert w.snapshot() == before, f"{what}: a refused logout changed the store"
    w.srv.assert_alive(what)


def session_revoked(w, sid):
    rows = db_rows(w.inst.database, "SELECT revoked_at FROM sessions WHERE id = ?", (sid,))
    assert len(rows) == 1, rows
    return rows[0]["revoked_at"] is not None


# ---------------------------------------------------------------- the logout


def test_logout_ends_the_session(w):
    team = w.team()
    name, pw, uid = w.user(team)
    pair = w.login(name, pw)
    other = w.login(name, pw)
    assert w.bearer(pair["access"], team).status_code == 200
    expect_ok(w.logout(pair["refresh"]), "logout")
    assert session_revoked(w, claims_of(pair["refresh"])["sid"])
    # access and refresh tokens of the session fail at once
    assert w.verify(pair["access"]) == 401, "access token verifies after logout"
    assert w.verify(pair["refresh"]) == 401, "refresh token verifies after logout"
    r = w.bearer(pair["access"], team)
    body = expect_json(r, 401, "Bearer after logout")
    assert body.get("code") == "token_not_valid", body
    expect_invalid(w.refresh(pair["refresh"]), "refresh after logout")
    # the user's other session is untouched
    assert w.verify(other["access"]) == 201
    assert w.bearer(other["access"], team).status_code == 200
    expect_tokens(w.refresh(other["refresh"]), "the other session still refreshes")


def test_logout_revokes_the_whole_family(w):
    name, pw, _ = w.user()
    pair = w.login(name, pw)
    r1 = expect_tokens(w.refresh(pair["refresh"]), "rotate 1")
    r2 = expect_tokens(w.refresh(r1["refresh"]), "rotate 2")
    expect_ok(w.logout(r2["refresh"]), "logout with the newest refresh token")
    for tok in (pair["access"], r1["access"], r2["access"], r2["refresh"]):
        assert w.verify(tok) == 401, f"token of the family verifies after logout: {claims_of(tok)}"
    sid = claims_of(pair["refresh"])["sid"]
    rows = db_rows(w.inst.database, "SELECT revoked FROM refresh_tokens WHERE family = ?", (sid,))
    assert len(rows) == 3 and all(r["revoked"] for r in rows), rows


def test_logout_without_trailing_slash_and_by_form(w):
    name, pw, _ = w.user()
    a, b = w.login(name, pw), w.login(name, pw)
    expect_ok(w.logout(a["refresh"], path=LOGOUT.rstrip("/")), "logout without the slash")
    expect_ok(w.logout(b["refresh"], form=True), "logout by form")
    assert w.verify(a["access"]) == 401 and w.verify(b["access"]) == 401


def test_logout_twice_is_401(w):
    name, pw, _ = w.user()
    pair = w.login(name, pw)
    expect_ok(w.logout(pair["refresh"]), "logout")
    expect_refused_unchanged(w, lambda: w.logout(pair["refresh"]), "second logout")


def test_grace_replay_after_logout_is_refused(w):
    """Inside the window the just-rotated token would get the pair again;
    after a logout it gets nothing."""
    name, pw, _ = w.user()
    pair = w.login(name, pw)
    nxt = expect_tokens(w.refresh(pair["refresh"]), "rotate")
    assert expect_tokens(w.refresh(pair["refresh"]), "replay inside the window") == nxt
    expect_ok(w.logout(nxt["refresh"]), "logout")
    expect_invalid(w.refresh(pair["refresh"]), "grace replay after logout")
    expect_invalid(w.refresh(nxt["refresh"]), "successor after logout")


def test_logout_with_the_just_rotated_token_inside_the_window(w):
    """Documented: inside the grace window the token just rotated stands for
    its successor (refresh answers the successor's pair), so a logout with
    it ends the session too."""
    name, pw, _ = w.user()
    pair = w.login(name, pw)
    nxt = expect_tokens(w.refresh(pair["refresh"]), "rotate")
    expect_ok(w.logout(pair["refresh"]), "logout with the token rotated a moment ago")
    assert w.verify(nxt["access"]) == 401 and w.verify(nxt["refresh"]) == 401
    expect_invalid(w.refresh(pair["refresh"]), "replay after logout")


# ---------------------------------------------------------------- hostile


def test_logout_with_an_access_token_is_401(w):
    name, pw, _ = w.user()
    pair = w.login(name, pw)
    expect_refused_unchanged(w, lambda: w.logout(pair["access"]), "logout with an access token")
    assert w.verify(pair["access"]) == 201


def test_logout_with_an_api_token_is_401(w):
    team = w.team()
    name, pw, _ = w.user(team)
    pair = w.login(name, pw)
    r = w.srv.post(f"{API}{team}/", headers={"Authorization": f"Bearer {pair['access']}"})
    api = expect_json(r, 201, "issue")["access_token"]
    expect_refused_unchanged(w, lambda: w.logout(api), "logout with an API token")
    assert w.verify(api) == 201 and w.verify(pair["access"]) == 201


def test_someone_elses_refresh_token_ends_that_session(w):
    """A refresh token is a bearer credential: whoever presents it may end
    its session (simplejwt's TokenBlacklistView asks for nothing else).
    The route needs no Authorization header, and ignores one."""
    me, my_pw, _ = w.user()
    them, their_pw, _ = w.user()
    mine = w.login(me, my_pw)
    theirs = w.login(them, their_pw)
    r = w.srv.post(LOGOUT, json={"refresh": theirs["refresh"]},
                   headers={"Authorization": f"Bearer {mine['access']}"})
    expect_ok(r, "logout with another user's refresh token")
    assert w.verify(theirs["access"]) == 401, "their session did not end"
    assert w.verify(mine["access"]) == 201, "my session ended instead"
    expect_tokens(w.refresh(mine["refresh"]), "my session still refreshes")


def test_refresh_token_of_a_deleted_user_is_401(w):
    name, pw, _ = w.user()
    pair = w.login(name, pw)
    w.inst.cli_ok("user", "delete", name)
    expect_refused_unchanged(w, lambda: w.logout(pair["refresh"]), "deleted user's token")


def test_refresh_token_of_a_disabled_user_is_401(w):
    name, pw, _ = w.user()
    pair = w.login(name, pw)
    w.inst.cli_ok("user", "disable", name)
    expect_refused_unchanged(w, lambda: w.logout(pair["refresh"]), "disabled user's token")


@pytest.mark.parametrize("garbage", [
    "x", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30.", "é" * 10, "x" * 9000,
], ids=["x", "abc", "unsigned", "unicode", "long"])
def test_garbage_is_401(w, garbage):
    expect_refused_unchanged(w, lambda: w.logout(garbage), f"garbage {garbage[:12]!r}")


def test_tampered_refresh_token_is_401(w):
    name, pw, _ = w.user()
    pair = w.login(name, pw)
    expect_refused_unchanged(w, lambda: w.logout(pair["refresh"][:-2] + "AA"), "tampered")
    assert w.verify(pair["refresh"]) == 201


@pytest.mark.parametrize("body,errors", [
    ({}, {"refresh": ["This field is required."]}),
    ({"refresh": ""}, {"refresh": ["This field may not be blank."]}),
    ({"refresh": "   "}, {"refresh": ["This field may not be blank."]}),
    ({"refresh": None}, {"refresh": ["This field may not be null."]}),
    ({"refresh": 12}, {"refresh": ["Not a valid string."]}),
    ({"refresh": ["a"]}, {"refresh": ["Not a valid string."]}),
    ({"token": "x"}, {"refresh": ["This field is required."]}),
], ids=["missing", "blank", "spaces", "null", "int", "list", "wrong-name"])
def test_field_errors_are_400(w, body, errors):
    before = w.snapshot()
    got = expect_json(w.srv.post(LOGOUT, json=body), 400, f"body {body!r}")
    assert got == errors, f"body {body!r}: {got!r}"
    assert w.snapshot() == before


def test_non_object_and_malformed_bodies_are_400(w):
    got = expect_json(w.srv.post(LOGOUT, json=["x"]), 400, "a list body")
    assert "non_field_errors" in got, got
    r = w.srv.post(LOGOUT, data=b"{nope", headers={"Content-Type": "application/json"})
    assert expect_json(r, 400, "malformed JSON")["detail"].startswith("JSON parse error"), r.text
    got = expect_json(w.srv.post(LOGOUT, data={}), 400, "empty form")
    assert got == {"refresh": ["This field is required."]}, got


def test_get_is_405(w):
    r = w.srv.request("GET", LOGOUT)
    expect_json(r, 405, "GET logout")
    assert "POST" in r.headers.get("Allow", ""), r.headers


def test_used_token_outside_the_window_is_reuse(w0):
    """A rotated token presented to logout after the window is the same
    theft signal as presenting it to refresh: the family is revoked (so the
    holder of the newest tokens loses them too) and the answer is 401, as
    simplejwt answers for a blacklisted token."""
    name, pw, _ = w0.user()
    pair = w0.login(name, pw)
    nxt = expect_tokens(w0.refresh(pair["refresh"]), "rotate")
    expect_invalid(w0.logout(pair["refresh"]), "logout with a used token")
    assert w0.verify(nxt["refresh"]) == 401, "the family was not revoked"
    assert w0.verify(nxt["access"]) == 401, "the session was not ended"
    line = w0.srv.wait_for_stderr(
        lambda ln: claims_of(pair["refresh"])["jti"] in ln and "family revoked" in ln, timeout=10)
    assert line is not None, w0.srv.tail()


def test_expired_refresh_token_is_401(factory):
    inst, srv = factory.server(env={"TOKEND_TOKENS_REFRESH_LIFETIME": "1"},
                               label="refresh lifetime=1")
    w = World(inst, srv)
    name, pw, _ = w.user()
    pair = w.login(name, pw)
    end = claims_of(pair["refresh"])["exp"]
    deadline = time.monotonic() + 30
    while time.time() < end + 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    expect_refused_unchanged(w, lambda: w.logout(pair["refresh"]), "expired refresh token")


def test_logout_past_the_session_lifetime_is_401(w):
    """A session older than tokens.session_lifetime (30 days) is over even if
    the token presented expires tomorrow: the logout is refused."""
    name, pw, _ = w.user()
    pair = w.login(name, pw)
    sid = claims_of(pair["refresh"])["sid"]
    w.inst.sql("UPDATE sessions SET created_at = ? WHERE id = ?",
               (int(time.time()) - 30 * 86400 - 5, sid))
    expect_invalid(w.logout(pair["refresh"]), "logout 30 days after the login")
    assert session_revoked(w, sid), "the session past its lifetime was not ended"
    assert w.verify(pair["access"]) == 401


def test_logout_racing_a_refresh_of_the_same_token_ends_the_session(w):
    """Refresh and logout with one token at once: whichever the store runs
    first, the logout answers 200 (inside the grace window the rotated token
    stands for its successor) and no token of the session is left alive,
    including a pair the refresh may have returned."""
    import threading
    import requests
    for _ in range(5):
        name, pw, _ = w.user()
        pair = w.login(name, pw)
        barrier = threading.Barrier(2)
        res = {}

        def call(kind, path):
            with requests.Session() as s:
                barrier.wait(timeout=30)
                r = s.post(w.srv.url(path), json={"refresh": pair["refresh"]}, timeout=30)
                res[kind] = (r.status_code, r.json())

        ts = [threading.Thread(target=call, args=a) for a in (("refresh", REFRESH),
                                                               ("logout", LOGOUT))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout=60)
        assert res.get("logout") == (200, {}), res
        status, body = res["refresh"]
        assert status in (201, 401), res
        assert session_revoked(w, claims_of(pair["refresh"])["sid"])
        alive = [pair["access"]] + ([body["access"], body["refresh"]] if status == 201 else [])
        for tok in alive:
            assert w.verify(tok) == 401, f"a token of the logged-out session verifies: {res}"
