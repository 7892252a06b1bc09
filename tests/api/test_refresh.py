"""POST /api/auth/jwt/refresh/ -- rotation, reuse (theft) detection, the
grace window, disabled / deleted users, concurrency, expiry (API.md "refresh",
issue 3 "Refresh")."""

import base64
import json
import threading
import time
import uuid as uuidlib

import pytest
import requests

from conftest import (HANG, TOKEN_INVALID, UUID_RE, WWW_AUTH, claims_of, db_rows, expect_invalid,
                      expect_json, expect_tokens, header_of)

REFRESH = "/api/auth/jwt/refresh/"
VERIFY = "/api/auth/jwt/verify/"
NO_ACTIVE = {"detail": "No active account found for the given token.",
             "code": "no_active_account"}


# ---------------------------------------------------------------- helpers

def refresh(srv, token, path=REFRESH, form=False, **extra):
    body = {"refresh": token, **extra}
    if form:
        return srv.post(path, data=body)
    return srv.post(path, json=body)


def verify(srv, token):
    return srv.post(VERIFY, json={"token": token})


def verify_status(srv, token):
    return verify(srv, token).status_code


class Inst:
    """A module's installation + server + a user factory."""

    def __init__(self, inst, srv):
        self.inst, self.srv = inst, srv

    def user(self, prefix="u"):
        name = f"{prefix}-{uuidlib.uuid4().hex[:10]}"
        pw = f"pw-{uuidlib.uuid4().hex[:8]}"
        uid = self.inst.add_user(name, pw)
        return name, pw, uid

    def login(self, name, pw):
        return expect_tokens(self.srv.login(name, pw), f"login {name}")

    def fresh_pair(self, prefix="u"):
        name, pw, uid = self.user(prefix)
        return self.login(name, pw), name, uid


@pytest.fixture(scope="module")
def d(module_factory):
    """Default configuration, but grace 0 (immediate reuse is theft); leeway 0."""
    inst, srv = module_factory.server(env={"TOKEND_TOKENS_REFRESH_GRACE": "0"},
                                      label="refresh grace=0")
    return Inst(inst, srv)


@pytest.fixture(scope="module")
def grace(module_factory):
    inst, srv = module_factory.server(env={"TOKEND_TOKENS_REFRESH_GRACE": "30"},
                                      label="refresh grace=30")
    return Inst(inst, srv)


@pytest.fixture(scope="module")
def short(module_factory):
    """Refresh tokens live 1 s; the sweeper runs every second."""
    inst, srv = module_factory.server(env={"TOKEND_TOKENS_REFRESH_LIFETIME": "1",
                                           "TOKEND_TOKENS_PURGE_INTERVAL": "1"},
                                      label="refresh lifetime=1")
    return Inst(inst, srv)


# ---------------------------------------------------------------- rotation

def test_refresh_returns_new_pair(d):
    pair, _, uid = d.fresh_pair()
    r = refresh(d.srv, pair["refresh"])
    new = expect_tokens(r, "refresh")  # exactly {refresh, access}, Cache-Control: no-store
    old_c, new_c, acc_c = (claims_of(pair["refresh"]), claims_of(new["refresh"]),
                           claims_of(new["access"]))
    assert new["refresh"] != pair["refresh"] and new["access"] != pair["access"]
    assert new_c["token_type"] == "refresh", new_c
    assert acc_c["token_type"] == "access", acc_c
    assert new_c["jti"] != old_c["jti"], "rotated refresh token kept the old jti"
    assert UUID_RE.match(new_c["jti"]) and UUID_RE.match(acc_c["jti"])
    assert acc_c["jti"] != new_c["jti"]
    assert new_c["user_id"] == uid and acc_c["user_id"] == uid
    assert header_of(new["refresh"]).get("kid") == header_of(pair["refresh"]).get("kid")


def test_rotated_tokens_verify_and_old_one_is_blacklisted(d):
    pair, _, _ = d.fresh_pair()
    new = expect_tokens(refresh(d.srv, pair["refresh"]))
    expect_invalid(verify(d.srv, pair["refresh"]), "verify of the used refresh token")
    assert verify_status(d.srv, new["refresh"]) == 201
    assert verify_status(d.srv, new["access"]) == 201
    # the access token of the original login is stateless: still valid
    assert verify_status(d.srv, pair["access"]) == 201


def test_rotation_is_recorded_by_jti_in_one_family(d):
    pair, _, uid = d.fresh_pair()
    new = expect_tokens(refresh(d.srv, pair["refresh"]))
    old_jti, new_jti = claims_of(pair["refresh"])["jti"], claims_of(new["refresh"])["jti"]
    rows = {r["jti"]: r for r in db_rows(
        d.inst.database, "SELECT * FROM refresh_tokens WHERE user_uuid = ?", (uid,))}
    assert set(rows) == {old_jti, new_jti}, rows
    assert rows[old_jti]["family"] == old_jti, "a login's token starts its own family"
    assert rows[new_jti]["family"] == old_jti, "the successor is not in the login's family"
    assert rows[old_jti]["used_at"] is not None, "used token not marked used"
    assert rows[old_jti]["replaced_by"] == new_jti
    assert rows[new_jti]["used_at"] is None and rows[new_jti]["revoked"] == 0
    assert rows[new_jti]["access_jti"] == claims_of(new["access"])["jti"]
    # never the token string
    dump = json.dumps(list(rows.values()))
    for tok in (pair["refresh"], new["refresh"], new["access"]):
        assert tok.split(".")[2] not in dump


def test_chain_of_rotations(d):
    pair, _, _ = d.fresh_pair()
    tok = pair["refresh"]
    seen = {claims_of(tok)["jti"]}
    for i in range(5):
        nxt = expect_tokens(refresh(d.srv, tok), f"rotation {i}")["refresh"]
        jti = claims_of(nxt)["jti"]
        assert jti not in seen
        seen.add(jti)
        tok = nxt
    assert verify_status(d.srv, tok) == 201


@pytest.mark.parametrize("path", ["/api/auth/jwt/refresh", "/api/auth/jwt/refresh/"])
@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
def test_refresh_paths_and_body_kinds(d, path, form):
    pair, _, _ = d.fresh_pair()
    expect_tokens(refresh(d.srv, pair["refresh"], path=path, form=form), f"{path} form={form}")


def test_access_field_is_ignored(d):
    pair, _, _ = d.fresh_pair()
    expect_tokens(refresh(d.srv, pair["refresh"], access="garbage"), "json with access")
    pair, _, _ = d.fresh_pair()
    expect_tokens(refresh(d.srv, pair["refresh"], form=True, access="x.y.z"), "form with access")


def test_authorization_header_is_ignored(d):
    pair, _, _ = d.fresh_pair()
    r = d.srv.post(REFRESH, json={"refresh": pair["refresh"]},
                   headers={"Authorization": "Bearer not-a-token"})
    expect_tokens(r, "refresh with a junk Authorization header")


# ---------------------------------------------------------------- reuse = theft

def test_reuse_is_401_and_revokes_the_family(d):
    pair, _, uid = d.fresh_pair()
    r1 = expect_tokens(refresh(d.srv, pair["refresh"]))["refresh"]
    expect_invalid(refresh(d.srv, pair["refresh"]), "second use of a refresh token")
    # the successor, held by the thief or the victim, is dead too
    expect_invalid(refresh(d.srv, r1), "refresh with the successor after reuse")
    expect_invalid(verify(d.srv, r1), "verify of the successor after reuse")
    rows = db_rows(d.inst.database, "SELECT revoked FROM refresh_tokens WHERE user_uuid = ?", (uid,))
    assert rows and all(r["revoked"] == 1 for r in rows), f"family not revoked: {rows}"


def test_reuse_of_a_middle_token_revokes_the_descendants(d):
    pair, _, _ = d.fresh_pair()
    r0 = pair["refresh"]
    r1 = expect_tokens(refresh(d.srv, r0))["refresh"]
    r2 = expect_tokens(refresh(d.srv, r1))["refresh"]
    assert verify_status(d.srv, r2) == 201
    expect_invalid(refresh(d.srv, r1), "reuse of r1")
    expect_invalid(verify(d.srv, r2), "r2 after reuse of r1")
    expect_invalid(refresh(d.srv, r2), "refresh r2 after reuse of r1")
    expect_invalid(refresh(d.srv, r0), "r0 after revocation")


def test_reuse_leaves_other_logins_alone(d):
    name, pw, _ = d.user()
    a = d.login(name, pw)
    b = d.login(name, pw)
    a1 = expect_tokens(refresh(d.srv, a["refresh"]))["refresh"]
    expect_invalid(refresh(d.srv, a["refresh"]))
    expect_invalid(verify(d.srv, a1))
    # the other login (another family) of the same user still works
    assert verify_status(d.srv, b["refresh"]) == 201
    expect_tokens(refresh(d.srv, b["refresh"]), "other family after theft in one family")


def test_reuse_without_grace(d):
    """With grace 0 an immediate retry is reuse."""
    pair, _, _ = d.fresh_pair()
    first = expect_tokens(refresh(d.srv, pair["refresh"]))
    expect_invalid(refresh(d.srv, pair["refresh"]), "immediate retry with grace 0")
    expect_invalid(refresh(d.srv, first["refresh"]))


# ---------------------------------------------------------------- grace window

def test_grace_replay_is_byte_identical_and_keeps_family(grace):
    pair, _, _ = grace.fresh_pair()
    r1 = refresh(grace.srv, pair["refresh"])
    first = expect_tokens(r1, "first refresh")
    second = expect_tokens(refresh(grace.srv, pair["refresh"]), "retry within grace")
    assert second["refresh"] == first["refresh"], "grace replay gave another refresh token"
    assert second["access"] == first["access"], "grace replay gave another access token"
    third = expect_tokens(refresh(grace.srv, pair["refresh"]), "third try within grace")
    assert third == first
    # the family is not revoked: the successor works
    assert verify_status(grace.srv, first["refresh"]) == 201
    assert verify_status(grace.srv, first["access"]) == 201
    expect_tokens(refresh(grace.srv, first["refresh"]), "successor after grace replay")


def test_grace_replay_after_successor_was_used_is_theft(grace):
    pair, _, _ = grace.fresh_pair()
    r1 = expect_tokens(refresh(grace.srv, pair["refresh"]))["refresh"]
    r2 = expect_tokens(refresh(grace.srv, r1))["refresh"]
    expect_invalid(refresh(grace.srv, pair["refresh"]),
                   "replay of r0 after its successor r1 was used")
    expect_invalid(verify(grace.srv, r2), "r2 after theft detected")


def test_grace_does_not_resurrect_other_invalid_tokens(grace):
    pair, _, _ = grace.fresh_pair()
    expect_invalid(refresh(grace.srv, pair["access"]), "access token as refresh (grace 30)")
    expect_invalid(refresh(grace.srv, pair["refresh"] + "x"), "tampered (grace 30)")


# ---------------------------------------------------------------- bad tokens

def test_access_token_presented_as_refresh(d):
    pair, _, _ = d.fresh_pair()
    expect_invalid(refresh(d.srv, pair["access"]), "access token at refresh")
    # the refresh token was not touched
    expect_tokens(refresh(d.srv, pair["refresh"]))


@pytest.mark.parametrize("junk", ["garbage", "a.b.c", "....", "eyJ", "x" * 300,
                                  "é.é.é", "null"])
def test_garbage_refresh_token(d, junk):
    expect_invalid(refresh(d.srv, junk), f"refresh={junk[:20]!r}")
    expect_invalid(refresh(d.srv, junk, form=True), f"form refresh={junk[:20]!r}")


def test_tampered_refresh_token(d):
    pair, _, _ = d.fresh_pair()
    h, p, s = pair["refresh"].split(".")
    c = claims_of(pair["refresh"])
    c["exp"] += 3600
    p2 = base64.urlsafe_b64encode(json.dumps(c).encode()).rstrip(b"=").decode()
    expect_invalid(refresh(d.srv, f"{h}.{p2}.{s}"), "payload changed, old signature")
    flipped = s[:-2] + ("A" if s[-2] != "A" else "B") + s[-1]
    expect_invalid(refresh(d.srv, f"{h}.{p}.{flipped}"), "signature changed")
    expect_tokens(refresh(d.srv, pair["refresh"]), "original still valid")


# ---------------------------------------------------------------- field errors

@pytest.mark.parametrize("payload,expected", [
    ({}, {"refresh": ["This field is required."]}),
    ({"access": "x"}, {"refresh": ["This field is required."]}),
    ({"refresh": ""}, {"refresh": ["This field may not be blank."]}),
    ({"refresh": "   "}, {"refresh": ["This field may not be blank."]}),
    ({"refresh": 5}, {"refresh": ["Not a valid string."]}),
    ({"refresh": ["a.b.c"]}, {"refresh": ["Not a valid string."]}),
    ({"refresh": {"t": 1}}, {"refresh": ["Not a valid string."]}),
    ({"refresh": True}, {"refresh": ["Not a valid string."]}),
    ({"refresh": None}, {"refresh": ["This field may not be null."]}),
])
def test_field_errors(d, payload, expected):
    r = d.srv.post(REFRESH, json=payload)
    body = expect_json(r, 400, f"refresh {payload!r}")
    assert body == expected, f"{payload!r}: {body!r} != {expected!r}"


def test_field_errors_form(d):
    body = expect_json(d.srv.post(REFRESH, data={"other": "x"}), 400, "form without refresh")
    assert body == {"refresh": ["This field is required."]}, body
    body = expect_json(d.srv.post(REFRESH, data={"refresh": ""}), 400, "form blank")
    assert body == {"refresh": ["This field may not be blank."]}, body


# ---------------------------------------------------------------- users

def test_disabled_user_cannot_refresh(d):
    name, pw, _ = d.user("dis")
    pair = d.login(name, pw)
    d.inst.cli_ok("user", "disable", name)
    r = refresh(d.srv, pair["refresh"])
    body = expect_json(r, 401, "refresh of a disabled user")
    assert body == NO_ACTIVE, body
    assert r.headers.get("WWW-Authenticate") == WWW_AUTH
    # the disable ended the session: enabling does not bring it back
    # (issue 10; test_revocation.py has the rest)
    d.inst.cli_ok("user", "enable", name)
    expect_invalid(refresh(d.srv, pair["refresh"]), "refresh after re-enable")
    expect_tokens(d.srv.login(name, pw), "a new login after re-enable")


def test_deleted_user_cannot_refresh(d):
    pair, name, _ = d.fresh_pair("del")
    d.inst.cli_ok("user", "delete", name)
    expect_invalid(refresh(d.srv, pair["refresh"]), "refresh of a deleted user")
    expect_invalid(verify(d.srv, pair["refresh"]), "verify of a deleted user's refresh token")


def test_deleted_and_recreated_user_name_cannot_use_old_token(d):
    pair, name, _ = d.fresh_pair("rec")
    d.inst.cli_ok("user", "delete", name)
    d.inst.add_user(name, "another password")
    expect_invalid(refresh(d.srv, pair["refresh"]), "old token of a re-created user name")


# ---------------------------------------------------------------- concurrency

def _fire(srv, token, n):
    barrier = threading.Barrier(n)
    results = [None] * n

    def worker(i):
        with requests.Session() as s:
            try:
                barrier.wait(timeout=30)
                r = s.post(srv.url(REFRESH), json={"refresh": token}, timeout=30)
                results[i] = (r.status_code, r.json() if r.content else None)
            except Exception as e:  # noqa: BLE001 - reported below
                results[i] = ("error", repr(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_two_concurrent_refreshes_exactly_one_wins(d):
    for _ in range(3):
        pair, _, _ = d.fresh_pair("c2")
        res = _fire(d.srv, pair["refresh"], 2)
        statuses = sorted(r[0] for r in res if r)
        assert statuses == [201, 401], f"two concurrent refreshes: {res}"
        loser = [b for s, b in res if s == 401][0]
        assert loser == TOKEN_INVALID, loser
        winner = [b for s, b in res if s == 201][0]
        # the loser is treated as reuse: the winner's token is revoked
        expect_invalid(refresh(d.srv, winner["refresh"]), "winner's token after the race")


def test_hundred_parallel_refreshes(d):
    pair, _, _ = d.fresh_pair("c100")
    res = _fire(d.srv, pair["refresh"], 100)
    errors = [r for r in res if r is None or r[0] == "error"]
    assert not errors, f"requests failed: {errors[:5]}"
    ok = [b for s, b in res if s == 201]
    bad = [(s, b) for s, b in res if s != 201]
    assert len(ok) == 1, f"{len(ok)} of 100 parallel refreshes succeeded (expected 1)"
    assert all(s == 401 and b == TOKEN_INVALID for s, b in bad), (
        f"losers must get 401 token_not_valid: {sorted(set((s, json.dumps(b)) for s, b in bad))[:5]}")
    expect_invalid(refresh(d.srv, ok[0]["refresh"]), "winner's refresh after the stampede")
    expect_invalid(verify(d.srv, ok[0]["refresh"]), "verify winner's refresh after the stampede")
    d.srv.assert_alive("100 parallel refreshes")


def test_parallel_refreshes_with_grace_all_get_the_same_pair(grace):
    pair, _, _ = grace.fresh_pair("g20")
    res = _fire(grace.srv, pair["refresh"], 20)
    statuses = [r[0] for r in res]
    assert statuses.count(201) == 20, f"with grace 30 every retry is a replay: {statuses}"
    bodies = {json.dumps(b, sort_keys=True) for _, b in res}
    assert len(bodies) == 1, "grace replays differ"
    body = res[0][1]
    assert verify_status(grace.srv, body["refresh"]) == 201


# ---------------------------------------------------------------- expiry and purge

def test_expired_refresh_token_is_refused(short):
    pair, _, uid = short.fresh_pair("exp")
    c = claims_of(pair["refresh"])
    assert c["exp"] - c["iat"] == 1, c
    while time.time() < c["exp"] + 1.1:  # a lower bound: the clock is past the expiry
        time.sleep(0.1)
    expect_invalid(refresh(short.srv, pair["refresh"]), "expired refresh token")
    expect_invalid(verify(short.srv, pair["refresh"]), "verify of an expired refresh token")


def test_sweeper_purges_expired_rows(short):
    pair, _, uid = short.fresh_pair("sweep")
    jti = claims_of(pair["refresh"])["jti"]
    deadline = time.monotonic() + HANG  # bounds a hang only
    while time.monotonic() < deadline:
        rows = db_rows(short.inst.database, "SELECT jti FROM refresh_tokens WHERE jti = ?", (jti,))
        if not rows:
            break
        time.sleep(0.2)
    assert not rows, f"expired refresh row still present {HANG}s after login (purge_interval 1)"


# ---------------------------------------------------------------- the default grace window (10 s)
# Issue 11: two tabs refreshing at once must not log the user out.

@pytest.fixture(scope="module")
def dflt(module_factory):
    """The default configuration: grace 10 s."""
    inst, srv = module_factory.server(label="refresh default")
    return Inst(inst, srv)


@pytest.fixture(scope="module")
def grace1(module_factory):
    """A grace window of 1 s, to reach "after the window" by polling the clock."""
    inst, srv = module_factory.server(env={"TOKEND_TOKENS_REFRESH_GRACE": "1"},
                                      label="refresh grace=1")
    return Inst(inst, srv)


def _used_at(inst, token):
    rows = db_rows(inst.database, "SELECT used_at FROM refresh_tokens WHERE jti = ?",
                   (claims_of(token)["jti"],))
    assert rows and rows[0]["used_at"] is not None, f"token not recorded as used: {rows}"
    return rows[0]["used_at"]


def _wait_past_grace(inst, token, grace):
    """Poll the clock until `token`'s rotation is more than `grace` s old
    (the store compares whole seconds: now - used_at > grace)."""
    end = _used_at(inst, token) + grace + 1
    deadline = time.monotonic() + grace + 30
    while time.time() < end:
        assert time.monotonic() < deadline, "the clock did not move"
        time.sleep(0.05)


def test_default_grace_replays_the_same_pair(dflt):
    pair, _, _ = dflt.fresh_pair("dg")
    first = expect_tokens(refresh(dflt.srv, pair["refresh"]), "rotation")
    again = expect_tokens(refresh(dflt.srv, pair["refresh"]), "retry inside the default window")
    assert again == first, "the default grace window (10 s) must answer the same pair"
    assert verify_status(dflt.srv, first["refresh"]) == 201, "the family was revoked"
    assert verify_status(dflt.srv, first["access"]) == 201, "the session was ended"
    # a second rotation inside the window, from the new token, proceeds normally
    second = expect_tokens(refresh(dflt.srv, first["refresh"]), "rotation of the successor")
    assert second["refresh"] != first["refresh"]
    assert claims_of(second["refresh"])["sid"] == claims_of(pair["refresh"])["sid"]
    assert verify_status(dflt.srv, second["access"]) == 201


def test_fifty_concurrent_refreshes_inside_the_window_get_one_pair(dflt):
    pair, _, _ = dflt.fresh_pair("dg50")
    res = _fire(dflt.srv, pair["refresh"], 50)
    statuses = [r[0] for r in res]
    assert statuses == [201] * 50, f"inside the window every refresh gets the pair: {statuses}"
    bodies = {json.dumps(b, sort_keys=True) for _, b in res}
    assert len(bodies) == 1, f"{len(bodies)} different pairs for one token"
    body = res[0][1]
    assert verify_status(dflt.srv, body["refresh"]) == 201
    assert verify_status(dflt.srv, body["access"]) == 201
    expect_tokens(refresh(dflt.srv, body["refresh"]), "the successor still rotates")


def test_reuse_after_the_window_revokes_the_family(grace1):
    pair, _, _ = grace1.fresh_pair("g1")
    first = expect_tokens(refresh(grace1.srv, pair["refresh"]), "rotation")
    _wait_past_grace(grace1.inst, pair["refresh"], 1)
    expect_invalid(refresh(grace1.srv, pair["refresh"]), "reuse after the window")
    expect_invalid(verify(grace1.srv, first["refresh"]), "successor after reuse")
    expect_invalid(verify(grace1.srv, first["access"]), "access token after reuse")


def test_fifty_concurrent_reuses_after_the_window_revoke_once(grace1):
    pair, _, _ = grace1.fresh_pair("g1x50")
    jti = claims_of(pair["refresh"])["jti"]
    first = expect_tokens(refresh(grace1.srv, pair["refresh"]), "rotation")
    _wait_past_grace(grace1.inst, pair["refresh"], 1)
    res = _fire(grace1.srv, pair["refresh"], 50)
    assert all(r == (401, TOKEN_INVALID) for r in res), (
        f"after the window no reuse gets a pair: {sorted(set(map(str, res)))[:5]}")
    expect_invalid(verify(grace1.srv, first["refresh"]), "successor after the stampede")
    expect_invalid(verify(grace1.srv, first["access"]), "access token after the stampede")
    # one family revocation: the other 49 found the session ended already
    ended = lambda ln: jti in ln and "session has ended" in ln  # noqa: E731
    deadline = time.monotonic() + HANG  # bounds a hang only
    while sum(1 for ln in list(grace1.srv.err_lines) if ended(ln)) < 49:
        assert time.monotonic() < deadline, (
            f"fewer than 49 'session has ended' lines for {jti} after {HANG}s\n{grace1.srv.tail()}")
        time.sleep(0.05)
    revoked = [ln for ln in list(grace1.srv.err_lines) if jti in ln and "family revoked" in ln]
    assert len(revoked) == 1, f"expected one family revocation, got {revoked}"


def test_two_instances_on_one_database_replay_the_same_pair(factory):
    inst = factory(label="shared db")
    a = inst.start(label="instance A")
    b = inst.start(label="instance B")
    one = Inst(inst, a)
    for _ in range(3):
        pair, _, _ = one.fresh_pair("two")
        barrier = threading.Barrier(2)
        res = [None, None]

        def worker(i, srv):
            with requests.Session() as s:
                barrier.wait(timeout=30)
                r = s.post(srv.url(REFRESH), json={"refresh": pair["refresh"]}, timeout=30)
                res[i] = (r.status_code, r.json())

        ts = [threading.Thread(target=worker, args=(i, srv)) for i, srv in enumerate((a, b))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout=60)
        assert res[0] is not None and res[1] is not None, res
        assert res[0][0] == res[1][0] == 201, f"both instances answer 201 inside the window: {res}"
        assert res[0][1] == res[1][1], "the two instances gave different pairs"
        assert verify_status(b, res[0][1]["refresh"]) == 201
        assert verify_status(a, res[0][1]["access"]) == 201


def test_refresh_of_an_ended_session_is_not_logged_as_reuse(dflt):
    pair, name, _ = dflt.fresh_pair("ended")
    jti = claims_of(pair["refresh"])["jti"]
    dflt.inst.cli_ok("user", "passwd", name, "--password-stdin", input="a new password\n")
    expect_invalid(refresh(dflt.srv, pair["refresh"]), "refresh after passwd")
    line = dflt.srv.wait_for_stderr(lambda ln: jti in ln and "session has ended" in ln,
                                    timeout=HANG)
    assert line is not None, f"no 'session has ended' line for {jti}:\n{dflt.srv.tail()}"
    reuse = [ln for ln in list(dflt.srv.err_lines) if jti in ln and "reused" in ln]
    assert not reuse, f"an ended session is not a reuse: {reuse}"


def test_refresh_past_the_session_lifetime_whatever_the_tokens_exp(dflt):
    """tokens.session_lifetime (30 days): a session older than that is over
    even if the refresh token presented expires tomorrow."""
    pair, _, uid = dflt.fresh_pair("old")
    c = claims_of(pair["refresh"])
    assert c["exp"] - c["iat"] >= 3600, c  # the token itself lives on
    dflt.inst.sql("UPDATE sessions SET created_at = ? WHERE id = ?",
                  (int(time.time()) - 30 * 86400 - 5, c["sid"]))
    expect_invalid(refresh(dflt.srv, pair["refresh"]), "refresh 30 days after the login")
    rows = db_rows(dflt.inst.database, "SELECT revoked_at FROM sessions WHERE id = ?", (c["sid"],))
    assert rows and rows[0]["revoked_at"] is not None, f"the session was not ended: {rows}"
    expect_invalid(verify(dflt.srv, pair["access"]), "access token of the ended session")
