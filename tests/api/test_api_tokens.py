"""The three /api/openapi/token/{team_uuid}/ routes (API.md "The six routes",
"Tokens"): list, issue and delete per-team API tokens; the team checks; the
cap; storage without token strings; isolation between users and teams; and
the hostile inputs of issue 4.

Bearer authentication itself (every row of API.md's table) is in
test_bearer_auth.py.
"""

import calendar
import hashlib
import sqlite3
import threading
import time
import uuid as uuidlib

import jwt
import pytest

from conftest import (UUID_RE, b64url_decode, db_rows, decode_token, expect_json,
                      expect_tokens, sqlite_only, sqlite_undo_006)

API = "/api/openapi/token/"
VERIFY = "/api/auth/jwt/verify/"
DAY = 86400
NOT_FOUND = {"detail": "Not found."}
FORBIDDEN = {"detail": "You do not have permission to perform this action."}
TOKEN_KEYS = {"access_token", "token_issuer_uuid", "created_at", "updated_at", "expires_at"}
ISSUE_KEYS = TOKEN_KEYS | {"name"}


# --------------------------------------------------------------------------
# helpers


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def parse_z(s, what=""):
    assert isinstance(s, str) and len(s) == 20 and s.endswith("Z") and s[10] == "T", (
        f"{what}: time must be RFC 3339 UTC with Z like 2026-11-28T01:02:03Z, got {s!r}")
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))


def no_store(resp, what):
    assert resp.headers.get("Cache-Control", "").lower().replace(" ", "") == "no-store", (
        f"{what}: needs 'Cache-Control: no-store', got {resp.headers.get('Cache-Control')!r}")


class User:
    def __init__(self, name, uid, password, access, refresh):
        self.name, self.uid, self.password = name, uid, password
        self.access, self.refresh = access, refresh

    @property
    def auth(self):
        return {"Authorization": f"Bearer {self.access}"}


class World:
    """One installation + server, with helpers to make users and teams."""

    def __init__(self, inst, srv):
        self.inst, self.srv = inst, srv

    def team(self, prefix="team"):
        res = self.inst.cli_ok("team", "add", f"{prefix}-{uuidlib.uuid4().hex[:10]}")
        tid = res.out.strip()
        assert UUID_RE.match(tid), f"`team add` must print the team's uuid, got {res.out!r}"
        return tid

    def add_member(self, team, user):
        self.inst.cli_ok("team", "add-member", team, user.name)

    def user(self, *teams, prefix="u"):
        name = f"{prefix}-{uuidlib.uuid4().hex[:10]}"
        pw = f"pw-{uuidlib.uuid4().hex}"
        uid = self.inst.add_user(name, pw)
        for t in teams:
            self.inst.cli_ok("team", "add-member", t, name)
        return self.login(User(name, uid, pw, None, None))

    def login(self, u):
        body = expect_tokens(self.srv.login(u.name, u.password), f"login {u.name}")
        u.access, u.refresh = body["access"], body["refresh"]
        return u

    # -- routes
    def list(self, team, user, slash=True, headers=None):
        h = dict(user.auth) if user is not None else {}
        h.update(headers or {})
        return self.srv.request("GET", f"{API}{team}{'/' if slash else ''}", headers=h)

    def issue(self, team, user, slash=True, headers=None, **kw):
        h = dict(user.auth) if user is not None else {}
        h.update(headers or {})
        return self.srv.post(f"{API}{team}{'/' if slash else ''}", headers=h, **kw)

    def delete(self, team, user, body=None, slash=True, headers=None, **kw):
        h = dict(user.auth) if user is not None else {}
        h.update(headers or {})
        if body is not None:
            kw["json"] = body
        return self.srv.post(f"{API}{team}/delete{'/' if slash else ''}", headers=h, **kw)

    def verify(self, token):
        return self.srv.post(VERIFY, json={"token": token})

    # -- checked versions
    def issued(self, team, user, what="issue", **kw):
        r = self.issue(team, user, **kw)
        body = expect_json(r, 201, what)
        check_token_object(body, what, ISSUE_KEYS)
        no_store(r, what)
        return body

    def listed(self, team, user, what="list", **kw):
        r = self.list(team, user, **kw)
        body = expect_json(r, 200, what)
        assert isinstance(body, dict) and set(body) == {"tokens"} and isinstance(body["tokens"], list), (
            f"{what}: body must be {{\"tokens\": [...]}}, got {body!r}")
        no_store(r, what)
        for i, t in enumerate(body["tokens"]):
            check_token_object(t, f"{what}: tokens[{i}]", None)
        return body["tokens"]

    def deleted(self, team, user, body, what="delete", **kw):
        r = self.delete(team, user, body, **kw)
        out = expect_json(r, 200, what)
        assert isinstance(out, dict) and set(out) == {"requested_count", "deleted_count"}, (
            f"{what}: body must be exactly {{requested_count, deleted_count}}, got {out!r}")
        return out["requested_count"], out["deleted_count"]

    def verifies(self, token):
        r = self.verify(token)
        if r.status_code == 201:
            assert r.json() == {"token": token}, f"verify 201 must echo the token, got {r.text!r}"
            return True
        body = expect_json(r, 401, "verify of a dead token")
        assert body.get("code") == "token_not_valid", f"verify 401 must be token_not_valid: {body!r}"
        return False

    def claims(self, token):
        return decode_token(token, self.inst.keys_by_kid())[1]

    def db_tokens(self, user=None, team=None):
        rows = db_rows(self.inst.database, "SELECT * FROM api_tokens")
        return [r for r in rows if (user is None or r["user_uuid"] == user.uid)
                and (team is None or r["team_uuid"] == team)]


def check_token_object(t, what, keys):
    assert isinstance(t, dict), f"{what}: token object must be a JSON object, got {t!r}"
    if keys is not None:
        assert set(t) == keys, f"{what}: keys must be {sorted(keys)}, got {sorted(t)}"
    else:
        assert TOKEN_KEYS <= set(t), f"{what}: token object needs {sorted(TOKEN_KEYS)}, got {sorted(t)}"
    assert isinstance(t["access_token"], str) and t["access_token"].count(".") == 2, (
        f"{what}: access_token must be a JWT string, got {t['access_token']!r}")
    assert isinstance(t["token_issuer_uuid"], str) and UUID_RE.match(t["token_issuer_uuid"]), (
        f"{what}: token_issuer_uuid must be a lowercase uuid, got {t['token_issuer_uuid']!r}")
    for k in ("created_at", "updated_at", "expires_at"):
        parse_z(t[k], f"{what}: {k}")


@pytest.fixture(scope="module")
def world(module_factory):
    inst, srv = module_factory.server(label="api-tokens server")
    return World(inst, srv)


@pytest.fixture
def w(world):
    if not world.srv.alive():
        world.srv = world.inst.start(label="api-tokens server (restarted after a crash)")
    return world


# --------------------------------------------------------------------------
# issue


def test_issue_without_body(w):
    team = w.team()
    u = w.user(team)
    before = int(time.time())
    body = w.issued(team, u, "issue with no body")
    after = int(time.time())
    assert body["name"] is None, f"name must be null when not given: {body!r}"
    created = parse_z(body["created_at"])
    assert before - 1 <= created <= after + 1, f"created_at {body['created_at']} is not now"
    assert body["updated_at"] == body["created_at"], body
    assert parse_z(body["expires_at"]) == created + 90 * DAY, (
        f"default lifetime must be 90 days: created {body['created_at']}, expires {body['expires_at']}")

    header, claims = decode_token(body["access_token"], w.inst.keys_by_kid())
    assert claims["token_type"] == "api", claims
    assert claims["jti"] == body["token_issuer_uuid"], claims
    assert claims["user_id"] == u.uid, claims
    assert claims["team_uuid"] == team, claims
    assert claims["iat"] == created, claims
    assert claims["exp"] == parse_z(body["expires_at"]), claims
    assert w.verifies(body["access_token"]), "a fresh API token must verify (201)"


def test_issue_body_forms_and_trailing_slash(w):
    team = w.team()
    u = w.user(team)
    b = w.issued(team, u, "no trailing slash", slash=False)
    assert b["name"] is None
    b = w.issued(team, u, "JSON name", json={"name": "ci"})
    assert b["name"] == "ci"
    b = w.issued(team, u, "form name", data={"name": "deploy bot"})
    assert b["name"] == "deploy bot"
    b = w.issued(team, u, "empty JSON object", json={})
    assert b["name"] is None
    b = w.issued(team, u, "name null", json={"name": None})
    assert b["name"] is None
    b = w.issued(team, u, "150-character name", json={"name": "n" * 150})
    assert b["name"] == "n" * 150
    b = w.issued(team, u, "unicode name", json={"name": "Ünïcødé ✓"})
    assert b["name"] == "Ünïcødé ✓"
    b = w.issued(team, u, "no trailing slash, JSON", slash=False, json={"name": "x"})
    assert b["name"] == "x"
    # every issue is a fresh token
    tokens = w.listed(team, u)
    assert len({t["token_issuer_uuid"] for t in tokens}) == 8


def test_issue_415_for_other_content_type(w):
    team = w.team()
    u = w.user(team)
    r = w.issue(team, u, data=b"name=x", headers={"Content-Type": "text/plain"})
    expect_json(r, 415, "issue with text/plain body")
    assert w.db_tokens(u) == []


def test_issue_explicit_expires_at(w):
    team = w.team()
    u = w.user(team)
    now = int(time.time())

    exp = now + 7 * DAY
    b = w.issued(team, u, "expires_at with Z", json={"expires_at": rfc3339(exp)})
    assert b["expires_at"] == rfc3339(exp), b
    assert w.claims(b["access_token"])["exp"] == exp

    b = w.issued(team, u, "lowercase z", json={"expires_at": rfc3339(exp).lower()})
    assert b["expires_at"] == rfc3339(exp), b

    b = w.issued(team, u, "fraction", json={"expires_at": rfc3339(exp)[:-1] + ".750Z"})
    assert b["expires_at"] == rfc3339(exp), b

    # +02:00: local 12:00 is 10:00 UTC
    local = time.gmtime(exp + 2 * 3600)
    s = time.strftime("%Y-%m-%dT%H:%M:%S+02:00", local)
    b = w.issued(team, u, "offset +02:00", json={"expires_at": s})
    assert b["expires_at"] == rfc3339(exp), f"{s} must come back as {rfc3339(exp)}, got {b}"
    assert w.claims(b["access_token"])["exp"] == exp

    local = time.gmtime(exp - 5 * 3600 - 1800)
    s = time.strftime("%Y-%m-%dT%H:%M:%S-05:30", local)
    b = w.issued(team, u, "offset -05:30", data={"expires_at": s})
    assert b["expires_at"] == rfc3339(exp), f"{s} must come back as {rfc3339(exp)}, got {b}"

    # close to the maximum (365 days) is fine
    exp = now + 365 * DAY - 300
    b = w.issued(team, u, "near max", json={"expires_at": rfc3339(exp), "name": "long"})
    assert b["expires_at"] == rfc3339(exp) and b["name"] == "long", b

    # and it lists with the same times
    listed = {t["token_issuer_uuid"]: t for t in w.listed(team, u)}
    assert listed[b["token_issuer_uuid"]]["expires_at"] == rfc3339(exp)


BAD_EXPIRES = [
    ("past", lambda now: rfc3339(now - 3600)),
    ("long past", lambda now: "2001-01-01T00:00:00Z"),
    ("now", lambda now: rfc3339(now)),
    ("beyond max", lambda now: rfc3339(now + 365 * DAY + 600)),
    ("far future", lambda now: "9999-12-31T23:59:59Z"),
    ("no zone", lambda now: rfc3339(now + DAY)[:-1]),
    ("date only", lambda now: rfc3339(now + DAY)[:10]),
    ("no such day", lambda now: "2027-02-30T00:00:00Z"),
    ("hour 24", lambda now: rfc3339(now + DAY)[:11] + "24:00:00Z"),
    ("garbage", lambda now: "tomorrow"),
    ("empty", lambda now: ""),
    ("trailing", lambda now: rfc3339(now + DAY) + "x"),
    ("epoch number", lambda now: now + DAY),
    ("float", lambda now: float(now + DAY)),
    ("true", lambda now: True),
    ("list", lambda now: [rfc3339(now + DAY)]),
    ("object", lambda now: {"t": rfc3339(now + DAY)}),
]


@pytest.mark.parametrize("label,make", BAD_EXPIRES, ids=[b[0] for b in BAD_EXPIRES])
def test_issue_bad_expires_at(w, label, make):
    team, u = _team_user(w)
    r = w.issue(team, u, json={"expires_at": make(int(time.time()))})
    body = expect_json(r, 400, f"expires_at {label}")
    assert isinstance(body, dict) and set(body) == {"expires_at"}, (
        f"expires_at {label}: body must be {{'expires_at': [...]}}, got {body!r}")
    msgs = body["expires_at"]
    assert isinstance(msgs, list) and msgs and all(isinstance(m, str) and m for m in msgs), body
    assert w.db_tokens(u, team) == [], f"expires_at {label}: a token was stored anyway"


_TU = {}


def _team_user(w):
    """One team and member reused by the parametrized validation tests."""
    if _TU.get("w") is not w:
        _TU.clear()
        _TU["w"] = w
        team = w.team()
        _TU["tu"] = (team, w.user(team))
    return _TU["tu"]


@pytest.mark.parametrize("name", [5, 1.5, True, [], ["x"], {"a": "b"}],
                         ids=["int", "float", "bool", "empty-list", "list", "object"])
def test_issue_name_not_a_string(w, name):
    team, u = _team_user(w)
    r = w.issue(team, u, json={"name": name})
    body = expect_json(r, 400, f"name {name!r}")
    assert body == {"name": ["Not a valid string."]}, body
    assert w.db_tokens(u, team) == []


def test_issue_name_too_long(w):
    team, u = _team_user(w)
    r = w.issue(team, u, json={"name": "n" * 151})
    body = expect_json(r, 400, "151-character name")
    assert isinstance(body, dict) and set(body) == {"name"} and isinstance(body["name"], list) \
        and body["name"], body
    assert w.db_tokens(u, team) == []


def test_issue_all_field_errors_together(w):
    team, u = _team_user(w)
    r = w.issue(team, u, json={"name": 5, "expires_at": "2001-01-01T00:00:00Z"})
    body = expect_json(r, 400, "bad name and expires_at")
    assert set(body) == {"name", "expires_at"}, f"both failing fields must be reported: {body!r}"
    assert body["name"] == ["Not a valid string."], body


def test_lifetimes_and_cap_follow_config_expired_do_not_count(factory):
    inst, srv = factory.server(env={"TOKEND_TOKENS_API_LIFETIME": 3600,
                                    "TOKEND_TOKENS_API_MAX_LIFETIME": 7200,
                                    "TOKEND_TOKENS_API_MAX_TOKENS": 4},
                               label="cap-4 server")
    w = World(inst, srv)
    team = w.team()
    u = w.user(team)

    a = w.issued(team, u, "default lifetime from config")
    assert parse_z(a["expires_at"]) == parse_z(a["created_at"]) + 3600, a
    now = int(time.time())
    b = w.issued(team, u, "within configured max", json={"expires_at": rfc3339(now + 7000)})
    r = w.issue(team, u, json={"expires_at": rfc3339(now + 7400)})
    body = expect_json(r, 400, "beyond configured max lifetime")
    assert set(body) == {"expires_at"}, body

    # two more that expire soon: now at the cap. Expiry needs the real
    # clock; the margin (8 s) is generous so that a slow (ASan, loaded
    # 2-core) run cannot cross it before the 409 below, which needs them live.
    short_exp = int(time.time()) + 8
    short = w.issued(team, u, "short-lived", json={"expires_at": rfc3339(short_exp)})
    short2 = w.issued(team, u, "short-lived 2", json={"expires_at": rfc3339(short_exp)})
    r = w.issue(team, u)
    assert time.time() < short_exp, "setup took over 8 s: the short tokens expired before the cap was tried"
    body = expect_json(r, 409, "fifth live token")
    assert isinstance(body, dict) and isinstance(body.get("detail"), str) and body["detail"], body
    assert len(w.db_tokens(u, team)) == 4, "a refused issue must store nothing"
    # the cap is per user and per team: another member, and another team, may issue
    other = w.user(team)
    w.issued(team, other, "other user at cap of first")
    team2 = w.team()
    w.add_member(team2, u)
    w.issued(team2, u, "same user, other team")

    # once the short ones expired they no longer count: wait until the
    # clock is past their expiry (a lower bound), then assert the outcome
    while time.time() < short_exp + 1.2:
        time.sleep(0.2)
    listed = w.listed(team, u, "list after expiry")
    assert {t["token_issuer_uuid"] for t in listed} == {a["token_issuer_uuid"], b["token_issuer_uuid"]}, (
        "an expired token must not be listed")
    assert not w.verifies(short["access_token"]), "an expired API token must not verify"
    assert not w.verifies(short2["access_token"])
    c = w.issued(team, u, "issue after two expired")
    w.issued(team, u, "issue after two expired (2)")
    expect_json(w.issue(team, u), 409, "at the cap again")

    # expired tokens can be named in a delete but are not counted
    # (checked at the end, so that the rest of the test still runs)
    problems = []
    got = w.deleted(team, u, {"access_tokens": [short["access_token"]]}, "delete expired by token")
    if got != (1, 0):
        problems.append(f"expired token by string: want requested 1, deleted 0; got {got}")
    got = w.deleted(team, u, {"token_issuer_uuids": [short2["token_issuer_uuid"]]},
                    "delete expired by id")
    if got != (1, 0):
        problems.append(f"expired token by id: want requested 1, deleted 0; got {got}")

    # deleting one makes room for exactly one more
    req, dele = w.deleted(team, u, {"token_issuer_uuids": [c["token_issuer_uuid"]]})
    assert (req, dele) == (1, 1)
    w.issued(team, u, "issue after a delete")
    expect_json(w.issue(team, u), 409, "at the cap after refilling")
    assert not problems, "; ".join(problems)


def test_cap_gives_back_the_places_of_every_kind_of_delete(factory):
    """Migration 006 counts each user's token rows in a team: a delete, a
    removal from the team, `user disable --revoke` and a purge of expired
    rows each give back exactly the places they free, and the count kept in
    the store is the rows' number after each."""
    cap = 2
    inst, srv = factory.server(env={"TOKEND_TOKENS_API_MAX_TOKENS": cap}, label="cap-2 server")
    w = World(inst, srv)
    team = w.team()
    u = w.user(team)

    def fill(what):
        got = [w.issued(team, u, f"{what}: {i + 1} of {cap}") for i in range(cap)]
        expect_json(w.issue(team, u), 409, f"{what}: past the cap")
        counted = db_rows(inst.database, "SELECT tokens FROM api_token_versions "
                          "WHERE user_uuid = ? AND team_uuid = ?", (u.uid, team))
        assert counted == [{"tokens": len(w.db_tokens(u, team))}], (what, counted)
        return got

    toks = fill("first")
    assert w.deleted(team, u, {"token_issuer_uuids": [t["token_issuer_uuid"] for t in toks]}) == (2, 2)
    fill("after a delete of both")
    inst.cli_ok("team", "remove-member", team, u.name)
    w.add_member(team, u)
    fill("after leaving the team and joining again")
    inst.cli_ok("user", "disable", u.name, "--revoke")
    inst.cli_ok("user", "enable", u.name)
    w.login(u)
    toks = fill("after a disable that deletes the tokens")
    w.deleted(team, u, {"token_issuer_uuids": [t["token_issuer_uuid"] for t in toks]})
    short_exp = int(time.time()) + 3
    for i in range(cap):
        w.issued(team, u, f"short-lived {i}", json={"expires_at": rfc3339(short_exp)})
    while time.time() < short_exp + 1.2:
        time.sleep(0.2)
    inst.cli_ok("purge")
    assert w.db_tokens(u, team) == [], "the purge left expired tokens"
    fill("after a purge of the expired")


@sqlite_only("rolls the schema back with PRAGMA user_version (tests/pg covers 006 on PostgreSQL)")
def test_migration_006_counts_the_tokens_already_held(factory):
    """A store at version 5 whose user holds 3 live and 2 expired tokens
    migrates to 6 with a count of 5 rows, and the cap (4) then lets exactly
    one more through."""
    inst = factory(env={"TOKEND_TOKENS_API_MAX_TOKENS": 4})
    inst.cli_ok("migrate")
    w = World(inst, None)
    team = w.team()
    name, pw = f"m-{uuidlib.uuid4().hex[:8]}", "pw-" + uuidlib.uuid4().hex
    uid = inst.add_user(name, pw)
    inst.cli_ok("team", "add-member", team, name)
    con = sqlite3.connect(str(inst.db))
    try:
        sqlite_undo_006(con)
        con.execute("PRAGMA user_version = 5")
        now = int(time.time())
        for i, exp in enumerate([now + DAY] * 3 + [now - 10] * 2):
            con.execute("INSERT INTO api_tokens (jti, digest, user_uuid, team_uuid, kid, issued_at, "
                        "updated_at, expires_at) VALUES (?, ?, ?, ?, 'k', ?, ?, ?)",
                        (str(uuidlib.uuid4()), hashlib.sha256(bytes([i])).digest(), uid, team,
                         now - 100, now - 100, exp))
        con.commit()
    finally:
        con.close()
    assert inst.schema_version() == 5
    inst.cli_ok("migrate")
    assert inst.schema_version() == 6
    assert db_rows(inst.database, "SELECT tokens FROM api_token_versions WHERE user_uuid = ? "
                   "AND team_uuid = ?", (uid, team)) == [{"tokens": 5}]
    w.srv = inst.start(label="migrated to 006")
    u = w.login(User(name, uid, pw, None, None))
    w.issued(team, u, "the fourth live token")
    expect_json(w.issue(team, u), 409, "a fifth live token")


# --------------------------------------------------------------------------
# list


def test_list_newest_first_identical_tokens(w):
    team = w.team()
    u = w.user(team)
    assert w.listed(team, u, "empty list") == []
    issued = [w.issued(team, u, f"issue {i}", json={"name": f"t{i}"}) for i in range(4)]
    tokens = w.listed(team, u)
    assert [t["token_issuer_uuid"] for t in tokens] == \
        [b["token_issuer_uuid"] for b in reversed(issued)], "list must be newest first"
    for t, b in zip(tokens, reversed(issued)):
        for k in TOKEN_KEYS:
            assert t[k] == b[k], f"listed {k} differs from issued: {t[k]!r} != {b[k]!r}"
        assert set(t) == set(b), (
            f"a listed token must have the same shape as the issue answer: {sorted(t)} vs {sorted(b)}")
        if "name" in t:
            assert t["name"] == b["name"]
        assert w.verifies(t["access_token"])
    # without trailing slash: the same
    assert w.listed(team, u, "list without slash", slash=False) == tokens


def test_list_only_own_tokens_of_that_team(w):
    t1, t2 = w.team(), w.team()
    a = w.user(t1, t2)
    b = w.user(t1, t2)
    a1 = w.issued(t1, a)
    a2 = w.issued(t2, a)
    b1 = w.issued(t1, b)
    assert [t["token_issuer_uuid"] for t in w.listed(t1, a)] == [a1["token_issuer_uuid"]]
    assert [t["token_issuer_uuid"] for t in w.listed(t2, a)] == [a2["token_issuer_uuid"]]
    assert [t["token_issuer_uuid"] for t in w.listed(t1, b)] == [b1["token_issuer_uuid"]]
    assert w.listed(t2, b) == []


# --------------------------------------------------------------------------
# delete


def test_delete_by_id_and_by_token(w):
    team = w.team()
    u = w.user(team)
    toks = [w.issued(team, u, json={"name": f"d{i}"}) for i in range(5)]
    ids = [t["token_issuer_uuid"] for t in toks]

    req, dele = w.deleted(team, u, {"token_issuer_uuids": [ids[0], ids[0]]}, "by id, duplicated")
    assert (req, dele) == (1, 1), f"duplicates count once: got {(req, dele)}"
    req, dele = w.deleted(team, u, {"access_tokens": [toks[1]["access_token"]] * 3},
                          "by token, duplicated", slash=False)
    assert (req, dele) == (1, 1), f"duplicates count once: got {(req, dele)}"
    req, dele = w.deleted(team, u, {"token_issuer_uuids": [ids[2]],
                                    "access_tokens": [toks[3]["access_token"]]}, "both fields")
    assert (req, dele) == (2, 2), (req, dele)

    for t in toks[:4]:
        assert not w.verifies(t["access_token"]), "a deleted token must fail verify at once"
    assert w.verifies(toks[4]["access_token"])
    assert [t["token_issuer_uuid"] for t in w.listed(team, u)] == [ids[4]]
    assert [r["jti"] for r in w.db_tokens(u, team)] == [ids[4]]

    # again: nothing left to delete
    req, dele = w.deleted(team, u, {"token_issuer_uuids": ids[:4]})
    assert (req, dele) == (4, 0)


def test_delete_counts_only_own_tokens_in_that_team(w):
    t1, t2 = w.team(), w.team()
    a = w.user(t1, t2)
    b = w.user(t1, t2)
    a_t1 = w.issued(t1, a)
    a_t2 = w.issued(t2, a)
    b_t1 = w.issued(t1, b)
    body = {
        "token_issuer_uuids": [str(uuidlib.uuid4()), b_t1["token_issuer_uuid"],
                               a_t2["token_issuer_uuid"]],
        "access_tokens": ["garbage", "a.b.c", "x" * 300, b_t1["access_token"],
                          a_t2["access_token"], a.refresh, a.access],
    }
    req, dele = w.deleted(t1, a, body, "others' ids, other team's, garbage, refresh, access")
    assert (req, dele) == (10, 0), f"expected requested 10, deleted 0, got {(req, dele)}"
    for tok in (a_t1, a_t2, b_t1):
        assert w.verifies(tok["access_token"]), "a token not the caller's in that team must survive"
    assert w.verifies(a.refresh), "a refresh token named in access_tokens must not be touched"
    assert w.verifies(a.access)
    assert len(w.db_tokens()) >= 3
    # and with one of its own among them exactly one is deleted
    body["token_issuer_uuids"].append(a_t1["token_issuer_uuid"])
    req, dele = w.deleted(t1, a, body)
    assert (req, dele) == (11, 1), (req, dele)
    assert not w.verifies(a_t1["access_token"])
    assert w.verifies(a_t2["access_token"]) and w.verifies(b_t1["access_token"])


@pytest.mark.parametrize("field", ["token_issuer_uuids", "access_tokens"])
@pytest.mark.parametrize("value", ["x", 5, True, {"0": "x"}, None],
                         ids=["string", "int", "bool", "object", "null"])
def test_delete_field_not_an_array(w, field, value):
    team, u = _team_user(w)
    r = w.delete(team, u, {field: value})
    body = expect_json(r, 400, f"{field}={value!r}")
    assert isinstance(body, dict) and body, body
    if value is not None:  # null may be read as "not given" (then non_field_errors)
        assert field in body, f"error must name {field}: {body!r}"


@pytest.mark.parametrize("field", ["token_issuer_uuids", "access_tokens"])
@pytest.mark.parametrize("entry", [5, None, True, [], {}], ids=["int", "null", "bool", "list", "object"])
def test_delete_non_string_entries(w, field, entry):
    team, u = _team_user(w)
    r = w.delete(team, u, {field: [entry]})
    body = expect_json(r, 400, f"{field}=[{entry!r}]")
    assert body == {field: {"0": ["Not a valid string."]}}, body


def test_delete_non_string_entry_index(w):
    team, u = _team_user(w)
    r = w.delete(team, u, {"token_issuer_uuids": [str(uuidlib.uuid4()), 7]})
    body = expect_json(r, 400, "second entry bad")
    assert body == {"token_issuer_uuids": {"1": ["Not a valid string."]}}, body


@pytest.mark.parametrize("entry", ["abc", "not-a-uuid-at-all-not-a-uuid-at-all0",
                                   "00000000-0000-4000-8000-00000000000g",
                                   "00000000-0000-4000-8000-0000000000000",
                                   "00000000-0000-4000-8000-00000000000"])
def test_delete_non_uuid_ids(w, entry):
    team, u = _team_user(w)
    r = w.delete(team, u, {"token_issuer_uuids": [entry]})
    body = expect_json(r, 400, f"id {entry!r}")
    assert body == {"token_issuer_uuids": {"0": ["Must be a valid UUID."]}}, body


@pytest.mark.parametrize("payload", [{}, {"token_issuer_uuids": [], "access_tokens": []},
                                     {"token_issuer_uuids": []}, {"access_tokens": []},
                                     {"other": ["x"]}],
                         ids=["none", "both-empty", "ids-empty", "tokens-empty", "unknown-field"])
def test_delete_nothing_requested(w, payload):
    team, u = _team_user(w)
    r = w.delete(team, u, payload)
    body = expect_json(r, 400, f"delete {payload}")
    assert isinstance(body, dict) and set(body) == {"non_field_errors"}, body
    assert isinstance(body["non_field_errors"], list) and body["non_field_errors"] \
        and all(isinstance(m, str) for m in body["non_field_errors"]), body


def test_delete_without_body(w):
    team, u = _team_user(w)
    r = w.delete(team, u)
    body = expect_json(r, 400, "delete with no body")
    assert isinstance(body, dict) and body, body


def test_delete_1000_and_1001_entries(w):
    team = w.team()
    u = w.user(team)
    mine = w.issued(team, u)
    ids = [str(uuidlib.uuid4()) for _ in range(999)] + [mine["token_issuer_uuid"]]

    r = w.delete(team, u, {"token_issuer_uuids": ids + [str(uuidlib.uuid4())]})
    body = expect_json(r, 400, "1001 distinct ids")
    assert isinstance(body, dict) and body, body
    assert w.verifies(mine["access_token"]), "a refused delete must delete nothing"

    garbage = [f"g{i}" for i in range(401)]
    r = w.delete(team, u, {"token_issuer_uuids": ids[:600], "access_tokens": garbage})
    expect_json(r, 400, "600 ids + 401 tokens = 1001 entries")

    # the bound counts entries as sent: 1000 distinct plus duplicates is too many
    r = w.delete(team, u, {"token_issuer_uuids": ids + ids[:5], "access_tokens": []})
    expect_json(r, 400, "1000 distinct + 5 duplicates = 1005 entries")
    # 1001 entries that are all the same id: 400 too, nothing deleted
    r = w.delete(team, u, {"token_issuer_uuids": [mine["token_issuer_uuid"]] * 1001})
    body = expect_json(r, 400, "1001 duplicates")
    assert set(body) == {"non_field_errors"}, body
    assert w.verifies(mine["access_token"]), "a refused delete must delete nothing"
    r = w.delete(team, u, {"token_issuer_uuids": [mine["token_issuer_uuid"]] * 600,
                           "access_tokens": ["x"] * 401})
    expect_json(r, 400, "600 + 401 duplicates")
    assert w.verifies(mine["access_token"])

    # 1000 entries as sent, duplicates among them: fine, counted once
    req, dele = w.deleted(team, u, {"token_issuer_uuids": ids[:995] + ids[-1:] * 5,
                                    "access_tokens": []}, "996 distinct in 1000 entries")
    assert (req, dele) == (996, 1), (req, dele)
    assert not w.verifies(mine["access_token"])


def test_delete_by_form_one_and_two_ids(w):
    """API.md: in a form body a list field is its repeated key, as DRF reads
    a QueryDict (curl -d token_issuer_uuids=A -d token_issuer_uuids=B)."""
    team = w.team()
    u = w.user(team)
    toks = [w.issued(team, u, json={"name": f"f{i}"}) for i in range(4)]
    ids = [t["token_issuer_uuid"] for t in toks]
    req, dele = w.deleted(team, u, None, "form, one id", data={"token_issuer_uuids": ids[0]})
    assert (req, dele) == (1, 1), (req, dele)
    req, dele = w.deleted(team, u, None, "form, two ids",
                          data=[("token_issuer_uuids", ids[1]), ("token_issuer_uuids", ids[2])])
    assert (req, dele) == (2, 2), (req, dele)
    assert [t["token_issuer_uuid"] for t in w.listed(team, u)] == [ids[3]]
    req, dele = w.deleted(team, u, None, "form, a token string and a repeated id",
                          data=[("access_tokens", toks[3]["access_token"]),
                                ("token_issuer_uuids", ids[0]), ("token_issuer_uuids", ids[0])])
    assert (req, dele) == (2, 1), (req, dele)
    assert w.listed(team, u) == []
    # a bad entry in a form list is named by its index, as in JSON
    r = w.delete(team, u, data=[("token_issuer_uuids", ids[0]), ("token_issuer_uuids", "nope")])
    body = expect_json(r, 400, "form, second id not a uuid")
    assert body == {"token_issuer_uuids": {"1": ["Must be a valid UUID."]}}, body


def test_delete_json_string_is_still_not_a_list(w):
    team, u = _team_user(w)
    r = w.delete(team, u, {"token_issuer_uuids": str(uuidlib.uuid4())})
    body = expect_json(r, 400, "JSON string for a list field")
    assert body == {"token_issuer_uuids": ["Expected a list of items."]}, body


def test_issue_by_form_repeated_name_last_wins(w):
    team, u = _team_user(w)
    b = w.issued(team, u, "form, name twice", data=[("name", "first"), ("name", "second")])
    rows = [r for r in w.db_tokens(u, team) if r["jti"] == b["token_issuer_uuid"]]
    assert rows and rows[0]["name"] == "second", rows


# --------------------------------------------------------------------------
# team checks


def _bad_team_uuids(team):
    return {
        "upper": team.upper(),
        "no-dashes": team.replace("-", ""),
        "trailing": team + "x",
        "trailing-digit": team + "0",
        "short": team[:-1],
        "braces": "{" + team + "}",
        "word": "demo",
    }


def test_malformed_team_uuid_is_404(w):
    team = w.team()
    u = w.user(team)
    for label, bad in _bad_team_uuids(team).items():
        for what, r in (("list", w.list(bad, u)),
                        ("issue", w.issue(bad, u, json={"name": "x"})),
                        ("delete", w.delete(bad, u, {"token_issuer_uuids": [str(uuidlib.uuid4())]}))):
            body = expect_json(r, 404, f"{what} with team {label} {bad!r}")
            assert body == NOT_FOUND, f"{what} team {label}: {body!r}"
    assert w.db_tokens(u) == []


def test_unknown_team_and_non_member_are_the_same_403(w):
    team = w.team()
    other_team = w.team()
    u = w.user(team)
    mine = w.issued(team, u)
    for label, t in (("unknown team", str(uuidlib.uuid4())), ("not a member", other_team)):
        for what, r in (("list", w.list(t, u)),
                        ("issue", w.issue(t, u)),
                        ("delete", w.delete(t, u, {"token_issuer_uuids": [mine["token_issuer_uuid"]]}))):
            body = expect_json(r, 403, f"{what}: {label}")
            assert body == FORBIDDEN, f"{what} {label}: {body!r}"
    assert w.verifies(mine["access_token"])
    assert len(w.db_tokens(u)) == 1


def test_auth_is_checked_before_the_team(w):
    team = w.team()
    for bad in list(_bad_team_uuids(team).values()) + [str(uuidlib.uuid4()), team]:
        for what, r in (("list", w.list(bad, None)),
                        ("issue", w.issue(bad, None)),
                        ("delete", w.delete(bad, None, {"token_issuer_uuids": [str(uuidlib.uuid4())]}))):
            body = expect_json(r, 401, f"unauthenticated {what} on team {bad!r}")
            assert body == {"detail": "Authentication credentials were not provided."}, body
            assert r.headers.get("WWW-Authenticate") == 'Bearer realm="api"'


def test_wrong_method_is_405(w):
    team = w.team()
    u = w.user(team)
    for method, path in (("DELETE", f"{API}{team}/"), ("PUT", f"{API}{team}/"),
                         ("GET", f"{API}{team}/delete/")):
        r = w.srv.request(method, path, headers=u.auth)
        expect_json(r, 405, f"{method} {path}")
        assert r.headers.get("Allow"), f"{method} {path}: 405 needs an Allow header"


# --------------------------------------------------------------------------
# membership and account state


def test_removed_member_tokens_stop_verifying(w):
    t1, t2 = w.team(), w.team()
    u = w.user(t1, t2)
    k1 = w.issued(t1, u)
    k2 = w.issued(t2, u)
    assert w.verifies(k1["access_token"])
    w.inst.cli_ok("team", "remove-member", t1, u.name)
    assert not w.verifies(k1["access_token"]), "after remove-member the team's tokens must not verify"
    assert w.verifies(k2["access_token"]), "tokens of the user's other teams still verify"
    expect_json(w.list(t1, u), 403, "list after removal")
    expect_json(w.issue(t1, u), 403, "issue after removal")
    assert w.listed(t2, u) != []


def test_disabled_user_tokens_stop_verifying(w):
    t1, t2 = w.team(), w.team()
    u = w.user(t1, t2)
    k1 = w.issued(t1, u)
    k2 = w.issued(t2, u)
    w.inst.cli_ok("user", "disable", u.name)
    assert not w.verifies(k1["access_token"]), "a disabled user's API tokens must not verify"
    assert not w.verifies(k2["access_token"])
    w.inst.cli_ok("user", "enable", u.name)
    assert w.verifies(k1["access_token"]), "enabled again: the tokens verify again"
    assert w.verifies(k2["access_token"])


def test_isolation_between_users_and_teams(w):
    ta, tb = w.team(), w.team()
    a = w.user(ta)
    b = w.user(ta, tb)
    a_toks = [w.issued(ta, a) for _ in range(3)]
    a_ids = [t["token_issuer_uuid"] for t in a_toks]
    a_strs = [t["access_token"] for t in a_toks]

    # B, same team: does not see them, cannot delete them
    assert w.listed(ta, b) == []
    assert w.deleted(ta, b, {"token_issuer_uuids": a_ids, "access_tokens": a_strs}) == (6, 0)
    # B through its other team
    assert w.listed(tb, b) == []
    assert w.deleted(tb, b, {"token_issuer_uuids": a_ids, "access_tokens": a_strs}) == (6, 0)
    # A through team B (not a member): 403, nothing deleted
    expect_json(w.delete(tb, a, {"token_issuer_uuids": a_ids}), 403, "A on team B")
    for s in a_strs:
        assert w.verifies(s), "A's tokens must survive B's attempts"
    assert [t["token_issuer_uuid"] for t in w.listed(ta, a)] == list(reversed(a_ids))
    # B's own token in team A is unaffected by A deleting its tokens
    b_tok = w.issued(ta, b)
    assert w.deleted(ta, a, {"token_issuer_uuids": a_ids + [b_tok["token_issuer_uuid"]]}) == (4, 3)
    assert w.verifies(b_tok["access_token"])


# --------------------------------------------------------------------------
# storage


def test_store_holds_digests_never_token_strings(factory):
    inst, srv = factory.server(label="storage server")
    w = World(inst, srv)
    team = w.team()
    u = w.user(team)
    issued = [w.issued(team, u, json={"name": f"s{i}"}) for i in range(6)]
    listed = w.listed(team, u)  # re-minted for the list
    assert {t["access_token"] for t in listed} == {t["access_token"] for t in issued}

    rows = {r["jti"]: r for r in w.db_tokens()}
    assert set(rows) == {t["token_issuer_uuid"] for t in issued}
    for t in issued:
        row = rows[t["token_issuer_uuid"]]
        tok = t["access_token"]
        assert set(row) >= {"jti", "digest", "user_uuid", "team_uuid", "kid", "name",
                            "issued_at", "updated_at", "expires_at"}, sorted(row)
        assert bytes(row["digest"]) == hashlib.sha256(tok.encode()).digest(), (
            "api_tokens.digest must be SHA-256 of the token string")
        assert row["user_uuid"] == u.uid and row["team_uuid"] == team
        assert row["kid"] == jwt.get_unverified_header(tok)["kid"]
        assert row["name"] == t["name"]
        assert row["issued_at"] == parse_z(t["created_at"])
        assert row["expires_at"] == parse_z(t["expires_at"])

    def check_files(when):
        if inst.db is None:
            return  # PostgreSQL: no files of ours; the rows are checked above
        for f in sorted(inst.db.parent.glob(inst.db.name + "*")):
            data = f.read_bytes()
            for t in issued:
                tok = t["access_token"]
                sig = tok.rsplit(".", 1)[1]
                assert tok.encode() not in data, f"{when}: {f.name} contains an issued token"
                assert sig.encode() not in data, f"{when}: {f.name} contains a token signature"
                assert b64url_decode(sig) not in data, f"{when}: {f.name} contains raw signature bytes"

    check_files("server running")
    assert srv.stop() == 0
    check_files("server stopped")


# --------------------------------------------------------------------------
# concurrency


def test_concurrent_issue_and_delete_respect_cap(factory):
    cap = 50
    inst, srv = factory.server(env={"TOKEND_TOKENS_API_MAX_TOKENS": cap}, label="concurrency server")
    w = World(inst, srv)
    team = w.team()
    u = w.user(team)
    lock = threading.Lock()
    stats = {"issued": 0, "conflicts": 0, "deleted": 0, "bad": [], "max_seen": 0}
    stop = threading.Event()
    start = threading.Barrier(33)

    def worker():
        mine = []
        try:
            start.wait(timeout=30)
            for _ in range(10):
                r = w.issue(team, u)
                if r.status_code == 201:
                    mine.append(r.json()["token_issuer_uuid"])
                elif r.status_code == 409:
                    with lock:
                        stats["conflicts"] += 1
                else:
                    with lock:
                        stats["bad"].append(("issue", r.status_code, r.text[:200]))
            gone = mine[::2]
            n = 0
            if gone:
                r = w.delete(team, u, {"token_issuer_uuids": gone})
                if r.status_code == 200:
                    n = r.json()["deleted_count"]
                    if n != len(gone):
                        with lock:
                            stats["bad"].append(("delete count", len(gone), n))
                else:
                    with lock:
                        stats["bad"].append(("delete", r.status_code, r.text[:200]))
            with lock:
                stats["issued"] += len(mine)
                stats["deleted"] += n
        except Exception as e:  # noqa: BLE001 -- reported below
            with lock:
                stats["bad"].append(("exception", repr(e)))

    def monitor():
        while not stop.is_set():
            r = w.list(team, u)
            if r.status_code == 200:
                n = len(r.json()["tokens"])
                with lock:
                    stats["max_seen"] = max(stats["max_seen"], n)
            else:
                with lock:
                    stats["bad"].append(("list", r.status_code, r.text[:200]))
            time.sleep(0.01)

    threads = [threading.Thread(target=worker) for _ in range(32)]
    mon = threading.Thread(target=monitor)
    for t in threads:
        t.start()
    mon.start()
    start.wait(timeout=30)
    for t in threads:
        t.join(timeout=120)
    stop.set()
    mon.join(timeout=30)
    assert not stats["bad"], f"unexpected answers: {stats['bad'][:10]}"
    final = w.listed(team, u, "final list")
    assert len(final) == stats["issued"] - stats["deleted"], (
        f"list has {len(final)} tokens; issued {stats['issued']} - deleted {stats['deleted']}")
    assert len(final) <= cap and stats["max_seen"] <= cap, (
        f"cap {cap} exceeded: final {len(final)}, max seen {stats['max_seen']}")
    assert stats["issued"] >= cap, f"only {stats['issued']} issues succeeded under a cap of {cap}"
    assert stats["issued"] + stats["conflicts"] == 320
    assert len(w.db_tokens(u, team)) == len(final)
    srv.assert_alive("32 threads issuing and deleting")
