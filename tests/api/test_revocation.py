"""Revocation that holds (issue 10): sessions, and what disable, delete,
passwd and remove-member end.

A session is one login: its refresh family, named by the `sid` claim that
its access and refresh tokens carry. `user disable`, `user passwd` and a
refresh-token reuse end sessions (every token minted in them fails verify,
refresh and Bearer at once, and stays failed after `user enable`); `user
delete` removes them; `team remove-member` deletes the user's API tokens in
that team; `user disable --revoke` deletes all of them. docs/tokens.md,
"Revocation", is the contract these tests check.
"""

import os
import sqlite3
import threading
import time
import uuid as uuidlib

import jwt
import pytest

from conftest import (NO_ACCOUNT, UUID_RE, WWW_AUTH, claims_of, db_rows, expect_invalid,
                      expect_json, expect_tokens, expect_verified, sqlite_only,
                      sqlite_undo_006)

REFRESH = "/api/auth/jwt/refresh/"
VERIFY = "/api/auth/jwt/verify/"
API = "/api/openapi/token/"
BEARER_INVALID_CODE = "token_not_valid"
INACTIVE = {"detail": "User is inactive", "code": "user_inactive"}
NOT_FOUND_USER = {"detail": "User not found", "code": "user_not_found"}
SLOW_ITERATIONS = int(os.environ.get("TOKEND_TEST_SLOW_ITERATIONS", "12000000"))


class World:
    """An installation + server with helpers for users, teams, API tokens."""

    def __init__(self, inst, srv):
        self.inst, self.srv = inst, srv

    def user(self, *teams, prefix="r"):
        name = f"{prefix}-{uuidlib.uuid4().hex[:10]}"
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

    def verify(self, token):
        return self.srv.post(VERIFY, json={"token": token})

    def refresh(self, token):
        return self.srv.post(REFRESH, json={"refresh": token})

    def bearer(self, access, team):
        return self.srv.request("GET", f"{API}{team}/",
                                headers={"Authorization": f"Bearer {access}"})

    def issue_api(self, team, access):
        r = self.srv.post(f"{API}{team}/", headers={"Authorization": f"Bearer {access}"})
        return expect_json(r, 201, "issue API token")["access_token"]

    def list_api(self, team, access):
        return expect_json(self.bearer(access, team), 200, "list API tokens")["tokens"]


@pytest.fixture(scope="module")
def w(module_factory):
    # grace 0: test_reuse_ends_the_session_access_tokens_too reuses at once
    inst, srv = module_factory.server(env={"TOKEND_TOKENS_REFRESH_GRACE": "0"},
                                      label="revocation grace=0")
    return World(inst, srv)


def expect_bearer_401(resp, what, code):
    body = expect_json(resp, 401, what)
    assert body.get("code") == code, f"{what}: expected code {code!r}, got {body!r}"
    assert resp.headers.get("WWW-Authenticate") == WWW_AUTH, what
    return body


def sessions_of(db, uid):
    return db_rows(db, "SELECT * FROM sessions WHERE user_uuid = ?", (uid,))


# ---------------------------------------------------------------- sessions exist


def test_tokens_name_their_session(w):
    name, pw, uid = w.user()
    pair = w.login(name, pw)
    a, r = claims_of(pair["access"]), claims_of(pair["refresh"])
    assert a["sid"] == r["sid"] == r["jti"], (a, r)
    rows = sessions_of(w.inst.database, uid)
    assert [s["id"] for s in rows] == [r["sid"]], rows
    assert rows[0]["revoked_at"] is None and rows[0]["created_at"] == r["iat"], rows
    # a rotation stays in the session
    nxt = expect_tokens(w.refresh(pair["refresh"]), "refresh")
    assert claims_of(nxt["access"])["sid"] == claims_of(nxt["refresh"])["sid"] == r["sid"]
    assert len(sessions_of(w.inst.database, uid)) == 1


def test_api_tokens_carry_no_sid(w):
    team = w.team()
    name, pw, uid = w.user(team)
    tok = w.issue_api(team, w.login(name, pw)["access"])
    assert "sid" not in claims_of(tok), claims_of(tok)


# ---------------------------------------------------------------- disable while hashing


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_disable_during_login_hash_refuses_the_pair(factory):
    """The user row is read, the (very slow) hash runs, and meanwhile the
    operator disables the user: the login must not hand out a pair."""
    inst, srv = factory.server(label="slow hash")
    name, pw = f"slow-{uuidlib.uuid4().hex[:8]}", "slow-pw"
    uid = inst.add_user(name, pw, env={"TOKEND_PASSWORD_PBKDF2_ITERATIONS": str(SLOW_ITERATIONS)})
    pid = srv.proc.pid
    before = cpu_seconds(pid)
    results = []
    t = threading.Thread(target=lambda: results.append(srv.login(name, pw, timeout=600)),
                         daemon=True)
    t.start()
    # The hash has started (so the user was read as active) once the server
    # has burnt CPU time no idle server burns; poll for it, no fixed sleep.
    deadline = time.monotonic() + 120
    while cpu_seconds(pid) - before < 0.3 and t.is_alive():
        assert time.monotonic() < deadline, "the login's hash never started"
        time.sleep(0.02)
    inst.cli_ok("user", "disable", name)
    assert t.is_alive(), (
        "inconclusive: the login finished before the user was disabled; raise "
        "TOKEND_TEST_SLOW_ITERATIONS")
    t.join(600)
    assert results, "login did not answer"
    body = expect_json(results[0], 401, "login of a user disabled during its hash")
    assert body == {"detail": NO_ACCOUNT}, body
    assert not db_rows(inst.database, "SELECT * FROM refresh_tokens WHERE user_uuid = ?", (uid,))
    assert not sessions_of(inst.database, uid)


# ---------------------------------------------------------------- disable / delete


def test_verify_refuses_every_token_of_a_disabled_user(w):
    team = w.team()
    name, pw, uid = w.user(team)
    pair = w.login(name, pw)
    api = w.issue_api(team, pair["access"])
    for what, tok in (("access", pair["access"]), ("refresh", pair["refresh"]), ("api", api)):
        expect_verified(w.verify(tok), tok, f"{what} before disable")
    w.inst.cli_ok("user", "disable", name)
    for what, tok in (("access", pair["access"]), ("refresh", pair["refresh"]), ("api", api)):
        expect_invalid(w.verify(tok), f"verify of the {what} token of a disabled user")
    # Bearer keeps API.md's body for an inactive user
    expect_bearer_401(w.bearer(pair["access"], team), "bearer, disabled", "user_inactive")
    assert all(s["revoked_at"] is not None for s in sessions_of(w.inst.database, uid))


def test_verify_refuses_every_token_of_a_deleted_user(w):
    team = w.team()
    name, pw, uid = w.user(team)
    pair = w.login(name, pw)
    api = w.issue_api(team, pair["access"])
    w.inst.cli_ok("user", "delete", name)
    for what, tok in (("access", pair["access"]), ("refresh", pair["refresh"]), ("api", api)):
        expect_invalid(w.verify(tok), f"verify of the {what} token of a deleted user")
    expect_bearer_401(w.bearer(pair["access"], team), "bearer, deleted", "user_not_found")
    assert not sessions_of(w.inst.database, uid)


def test_enable_brings_back_api_tokens_but_not_sessions(w):
    team = w.team()
    name, pw, uid = w.user(team)
    pair = w.login(name, pw)
    api = w.issue_api(team, pair["access"])
    w.inst.cli_ok("user", "disable", name)
    w.inst.cli_ok("user", "enable", name)
    expect_invalid(w.verify(pair["access"]), "old access token after disable + enable")
    expect_invalid(w.verify(pair["refresh"]), "old refresh token after disable + enable")
    expect_invalid(w.refresh(pair["refresh"]), "refresh with it after disable + enable")
    expect_bearer_401(w.bearer(pair["access"], team), "old access as bearer", BEARER_INVALID_CODE)
    expect_verified(w.verify(api), api, "API token after disable + enable")
    fresh = w.login(name, pw)
    assert [t["access_token"] for t in w.list_api(team, fresh["access"])] == [api]


def test_disable_revoke_deletes_api_tokens(w):
    t1, t2 = w.team(), w.team()
    name, pw, uid = w.user(t1, t2)
    pair = w.login(name, pw)
    apis = [w.issue_api(t1, pair["access"]), w.issue_api(t2, pair["access"])]
    w.inst.cli_ok("user", "disable", name, "--revoke")
    assert not db_rows(w.inst.database, "SELECT * FROM api_tokens WHERE user_uuid = ?", (uid,))
    w.inst.cli_ok("user", "enable", name)
    for tok in apis:
        expect_invalid(w.verify(tok), "API token after disable --revoke + enable")
    fresh = w.login(name, pw)
    assert w.list_api(t1, fresh["access"]) == [] and w.list_api(t2, fresh["access"]) == []


# ---------------------------------------------------------------- passwd


def test_passwd_ends_every_session(w):
    team = w.team()
    name, pw, uid = w.user(team)
    p1, p2 = w.login(name, pw), w.login(name, pw)
    rotated = expect_tokens(w.refresh(p2["refresh"]), "rotate the second session")
    api = w.issue_api(team, p1["access"])
    w.inst.cli_ok("user", "passwd", name, "--password-stdin", input="new-pw\n")
    for pair in (p1, rotated):
        expect_invalid(w.verify(pair["access"]), "access token after passwd")
        expect_invalid(w.verify(pair["refresh"]), "refresh token after passwd")
        expect_invalid(w.refresh(pair["refresh"]), "refresh after passwd")
        expect_bearer_401(w.bearer(pair["access"], team), "bearer after passwd",
                          BEARER_INVALID_CODE)
    assert all(s["revoked_at"] is not None for s in sessions_of(w.inst.database, uid))
    expect_verified(w.verify(api), api, "API tokens survive a password change")
    fresh = w.login(name, "new-pw")
    expect_verified(w.verify(fresh["access"]), fresh["access"], "new session")
    assert w.bearer(fresh["access"], team).status_code == 200


# ---------------------------------------------------------------- reuse ends the session


def test_reuse_ends_the_session_access_tokens_too(w):
    team = w.team()
    name, pw, uid = w.user(team)
    pair = w.login(name, pw)
    other = w.login(name, pw)
    nxt = expect_tokens(w.refresh(pair["refresh"]), "rotate")
    expect_invalid(w.refresh(pair["refresh"]), "reuse")
    for tok in (pair["access"], nxt["access"], nxt["refresh"]):
        expect_invalid(w.verify(tok), "token of a session revoked by reuse")
    expect_bearer_401(w.bearer(nxt["access"], team), "bearer, session revoked", BEARER_INVALID_CODE)
    expect_verified(w.verify(other["access"]), other["access"], "the other session")
    assert w.bearer(other["access"], team).status_code == 200


# ---------------------------------------------------------------- remove-member


def test_remove_member_deletes_that_teams_api_tokens(w):
    t1, t2 = w.team(), w.team()
    name, pw, uid = w.user(t1, t2)
    pair = w.login(name, pw)
    gone = [w.issue_api(t1, pair["access"]) for _ in range(2)]
    kept = w.issue_api(t2, pair["access"])
    w.inst.cli_ok("team", "remove-member", t1, name)
    assert not db_rows(w.inst.database, "SELECT * FROM api_tokens WHERE user_uuid = ? AND team_uuid = ?",
                       (uid, t1))
    w.inst.cli_ok("team", "add-member", t1, name)
    for tok in gone:
        expect_invalid(w.verify(tok), "API token of a removed membership, after re-adding")
    assert w.list_api(t1, pair["access"]) == []
    expect_verified(w.verify(kept), kept, "API token in another team")
    assert [t["access_token"] for t in w.list_api(t2, pair["access"])] == [kept]


# ---------------------------------------------------------------- tokens without sid


def hand_mint(inst, claims):
    keys = inst.keys_by_kid()
    kid = (inst.keys / "current").read_text().strip()
    return jwt.encode(claims, keys[kid], algorithm="HS256", headers={"kid": kid})


def test_access_token_without_sid_falls_back_to_the_user_check(w):
    """Access tokens minted before the upgrade carry no sid: they live out
    their 5 minutes unless the user is disabled or deleted."""
    team = w.team()
    name, pw, uid = w.user(team)
    now = int(time.time())
    tok = hand_mint(w.inst, {"exp": now + 300, "iat": now, "jti": str(uuidlib.uuid4()),
                             "token_type": "access", "user_id": uid})
    expect_verified(w.verify(tok), tok, "access token without sid")
    assert w.bearer(tok, team).status_code == 200
    w.inst.cli_ok("user", "disable", name)
    expect_invalid(w.verify(tok), "access token without sid, user disabled")
    expect_bearer_401(w.bearer(tok, team), "bearer without sid, disabled", "user_inactive")


def test_forged_sid_of_another_user(w):
    """Bearer authentication looks the session up for its own user and
    refuses. verify checks the sid against the ended sessions only (no
    lookup, docs/tokens.md): it does not bind the sid to the user. That
    costs nothing: only the signing key mints such a token, and its holder
    could as well leave the sid out (the user row then decides)."""
    team = w.team()
    name, pw, uid = w.user(team)
    other_name, other_pw, other_uid = w.user()
    pair = w.login(other_name, other_pw)
    sid = claims_of(pair["access"])["sid"]
    now = int(time.time())
    tok = hand_mint(w.inst, {"exp": now + 300, "iat": now, "jti": str(uuidlib.uuid4()),
                             "sid": sid, "token_type": "access", "user_id": uid})
    expect_bearer_401(w.bearer(tok, team), "bearer naming another user's session",
                      "token_not_valid")
    expect_verified(w.verify(tok), tok, "verify: the sid is live")
    expect_json(w.srv.post("/api/auth/jwt/blacklist/", json={"refresh": pair["refresh"]}),
                200, "logout of the named session")
    expect_invalid(w.verify(tok), "verify: the sid has ended")


# ---------------------------------------------------------------- grace replay


def test_grace_replay_is_byte_identical_with_sid(module_factory):
    inst, srv = module_factory.server(env={"TOKEND_TOKENS_REFRESH_GRACE": "30"},
                                      label="revocation grace=30")
    g = World(inst, srv)
    name, pw, uid = g.user()
    pair = g.login(name, pw)
    first = expect_tokens(g.refresh(pair["refresh"]), "first refresh")
    again = expect_tokens(g.refresh(pair["refresh"]), "replay within grace")
    assert again == first, "grace replay is not byte-identical"
    sid = claims_of(pair["refresh"])["sid"]
    assert claims_of(first["access"])["sid"] == claims_of(first["refresh"])["sid"] == sid


# ---------------------------------------------------------------- migration


@sqlite_only("rolls the schema back with PRAGMA user_version (tests/pg covers 004 on PostgreSQL)")
def test_migration_backfills_one_session_per_family(factory):
    inst = factory()
    inst.cli_ok("migrate")
    uid = inst.add_user(f"m-{uuidlib.uuid4().hex[:8]}", "pw")
    con = sqlite3.connect(str(inst.db))
    try:
        # Back to version 3: 006's objects go first, then 005's, then 004's.
        sqlite_undo_006(con)
        con.executescript("DROP TRIGGER users_disabled_sessions_end; DROP TABLE session_ends;"
                          "DROP TRIGGER refresh_tokens_session_gone; DROP TABLE sessions;"
                          "PRAGMA user_version = 3;")
        rows = [("j1", "fam1", 100), ("j2", "fam1", 50), ("j3", "fam2", 70)]
        for jti, fam, iat in rows:
            con.execute("INSERT INTO refresh_tokens (jti, family, user_uuid, kid, access_jti, "
                        "issued_at, expires_at) VALUES (?, ?, ?, 'k', 'a', ?, ?)",
                        (jti, fam, uid, iat, iat + 10))
        con.commit()
    finally:
        con.close()
    inst.cli_ok("migrate")
    got = {r["id"]: (r["user_uuid"], r["created_at"], r["revoked_at"])
           for r in db_rows(inst.database, "SELECT * FROM sessions")}
    assert got == {"fam1": (uid, 50, None), "fam2": (uid, 70, None)}, got


# ---------------------------------------------------------------- absolute lifetime


def test_session_ends_at_its_absolute_lifetime(module_factory):
    """API.md: a session ends at an absolute limit after its login however
    often it is refreshed; no token minted in it outlives that limit."""
    life = 8  # seconds: room for the refresh inside it on a slow (ASan) run
    inst, srv = module_factory.server(env={"TOKEND_TOKENS_SESSION_LIFETIME": str(life)},
                                      label=f"session_lifetime={life}")
    s = World(inst, srv)
    name, pw, uid = s.user()
    pair = s.login(name, pw)
    login_iat = claims_of(pair["refresh"])["iat"]
    end = login_iat + life
    for tok in (pair["access"], pair["refresh"]):
        assert claims_of(tok)["exp"] == end, claims_of(tok)
    nxt = expect_tokens(s.refresh(pair["refresh"]), "refresh inside the session")
    for tok in (nxt["access"], nxt["refresh"]):
        assert claims_of(tok)["exp"] <= end, (claims_of(tok), end)
    # past the end (poll the clock, no fixed sleep): refused, and ended
    while time.time() < end + 1:
        time.sleep(0.1)
    expect_invalid(s.refresh(nxt["refresh"]), "refresh after the session's end")
    expect_invalid(s.verify(nxt["access"]), "access token after the session's end")
    # (its tokens expired with it: the store's own limit, which ends the
    # session row, is for a lifetime shortened after they were minted; the
    # unit suite test_sessions.c covers it)
    expect_tokens(s.refresh(s.login(name, pw)["refresh"]), "a new login starts a new session")


def test_session_lifetime_is_configurable_and_the_default_cuts_nothing(w):
    name, pw, uid = w.user()
    pair = w.login(name, pw)
    r = claims_of(pair["refresh"])
    assert r["exp"] - r["iat"] == 86400, r  # the refresh lifetime, well inside 30 days
    res = w.inst.cli_ok("serve", "--check-config",
                        env={"TOKEND_TOKENS_SESSION_LIFETIME": str(30 * 86400)})
    assert res.rc == 0
