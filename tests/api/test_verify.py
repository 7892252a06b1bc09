"""POST /api/auth/jwt/verify/ (API.md "verify", issue 3 "Verify")."""

import base64
import json
import time
import uuid as uuidlib

import jwt
import pytest

from conftest import (claims_of, db_snapshot, expect_invalid, expect_json, expect_tokens,
                      expect_verified, header_of)

REFRESH = "/api/auth/jwt/refresh/"
VERIFY = "/api/auth/jwt/verify/"


# ---------------------------------------------------------------- helpers

def verify(srv, token, path=VERIFY, form=False, **kw):
    if form:
        return srv.post(path, data={"token": token}, **kw)
    return srv.post(path, json={"token": token}, **kw)


def refresh(srv, token):
    return srv.post(REFRESH, json={"refresh": token})


class Inst:
    def __init__(self, inst, srv):
        self.inst, self.srv = inst, srv

    def user(self, prefix="v"):
        name = f"{prefix}-{uuidlib.uuid4().hex[:10]}"
        pw = f"pw-{uuidlib.uuid4().hex[:8]}"
        return name, pw, self.inst.add_user(name, pw)

    def fresh_pair(self, prefix="v"):
        name, pw, uid = self.user(prefix)
        return expect_tokens(self.srv.login(name, pw)), name, uid


@pytest.fixture(scope="module")
def d(module_factory):
    # grace 0: test_revoked_family reuses a token at once
    inst, srv = module_factory.server(env={"TOKEND_TOKENS_REFRESH_GRACE": "0"},
                                      label="verify grace=0")
    return Inst(inst, srv)


@pytest.fixture(scope="module")
def short_access(module_factory):
    # 8 s: a token minted at second T lives until T+8, so the "fresh" check
    # has at least 7 s, room for a slow (ASan, loaded 2-core) run; the
    # expiry itself is waited for as a lower bound (the clock is past it).
    inst, srv = module_factory.server(env={"TOKEND_TOKENS_ACCESS_LIFETIME": "8"},
                                      label="verify access lifetime=8")
    return Inst(inst, srv)


# ---------------------------------------------------------------- 201

@pytest.mark.parametrize("path", ["/api/auth/jwt/verify/", "/api/auth/jwt/verify"])
@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
def test_access_and_refresh_tokens_verify(d, path, form):
    pair, _, _ = d.fresh_pair()
    expect_verified(verify(d.srv, pair["access"], path=path, form=form), pair["access"], "access")
    expect_verified(verify(d.srv, pair["refresh"], path=path, form=form), pair["refresh"],
                    "refresh")


def test_verify_changes_nothing_and_does_not_consume(d):
    pair, _, _ = d.fresh_pair()
    before = db_snapshot(d.inst.database)
    for _ in range(3):
        expect_verified(verify(d.srv, pair["refresh"]), pair["refresh"])
        expect_verified(verify(d.srv, pair["access"]), pair["access"])
    assert db_snapshot(d.inst.database) == before, "verify wrote to the store"
    expect_tokens(refresh(d.srv, pair["refresh"]), "refresh after verifies")


def test_authorization_header_is_ignored(d):
    pair, _, _ = d.fresh_pair()
    expect_verified(verify(d.srv, pair["access"], headers={"Authorization": "Bearer junk"}),
                    pair["access"])
    expect_verified(verify(d.srv, pair["access"], headers={"Authorization": "Basic eDp5"}),
                    pair["access"])


def test_extra_fields_ignored(d):
    pair, _, _ = d.fresh_pair()
    r = d.srv.post(VERIFY, json={"token": pair["access"], "refresh": "x", "other": 1})
    expect_verified(r, pair["access"])


def test_rotated_tokens_verify(d):
    pair, _, _ = d.fresh_pair()
    new = expect_tokens(refresh(d.srv, pair["refresh"]))
    expect_verified(verify(d.srv, new["access"]), new["access"])
    expect_verified(verify(d.srv, new["refresh"]), new["refresh"])


# ---------------------------------------------------------------- 401

def test_blacklisted_refresh_token(d):
    pair, _, _ = d.fresh_pair()
    expect_tokens(refresh(d.srv, pair["refresh"]))
    expect_invalid(verify(d.srv, pair["refresh"]), "used (blacklisted) refresh token")


def test_revoked_family(d):
    pair, _, _ = d.fresh_pair()
    r1 = expect_tokens(refresh(d.srv, pair["refresh"]))["refresh"]
    expect_invalid(refresh(d.srv, pair["refresh"]), "reuse")
    expect_invalid(verify(d.srv, r1), "successor in a revoked family")


def test_purged_refresh_token(d):
    """A refresh token whose row is gone (never issued / purged) is not live."""
    pair, _, uid = d.fresh_pair()
    d.inst.sql("DELETE FROM refresh_tokens WHERE jti = ?", (claims_of(pair["refresh"])["jti"],))
    expect_invalid(verify(d.srv, pair["refresh"]), "refresh token without its row")
    expect_invalid(refresh(d.srv, pair["refresh"]), "refresh with a token without its row")


@pytest.mark.parametrize("junk", ["garbage", "a.b.c", "a.b", "a.b.c.d", "..", "....",
                                  "eyJhbGciOiJub25lIn0.e30.", "x" * 5000, "\u00e9\u00e9.\u00e9.\u00e9",
                                  "null", "0"])
def test_garbage(d, junk):
    expect_invalid(verify(d.srv, junk), f"token={junk[:20]!r}")
    expect_invalid(verify(d.srv, junk, form=True), f"form token={junk[:20]!r}")


def test_tampered_tokens(d):
    pair, _, _ = d.fresh_pair()
    for kind in ("access", "refresh"):
        h, p, s = pair[kind].split(".")
        c = claims_of(pair[kind])
        c["user_id"] = str(uuidlib.uuid4())
        p2 = base64.urlsafe_b64encode(json.dumps(c).encode()).rstrip(b"=").decode()
        expect_invalid(verify(d.srv, f"{h}.{p2}.{s}"), f"{kind}: claims changed")
        expect_invalid(verify(d.srv, f"{h}.{p}."), f"{kind}: signature removed")
        expect_invalid(verify(d.srv, f"{h}.{p}.{s}{s}"), f"{kind}: signature doubled")
        expect_invalid(verify(d.srv, pair[kind][:-1]), f"{kind}: truncated")


def test_same_claims_other_key(d):
    pair, _, _ = d.fresh_pair()
    for kind in ("access", "refresh"):
        c = claims_of(pair[kind])
        h = header_of(pair[kind])
        forged = jwt.encode(c, uuidlib.uuid4().bytes * 4, algorithm="HS256",
                            headers={"kid": h["kid"]})
        expect_invalid(verify(d.srv, forged), f"{kind} re-signed with another key")


def test_api_typed_token_is_refused(d):
    """No API tokens exist yet (issue 4): an api token signed with our key
    names no stored token."""
    pair, _, uid = d.fresh_pair()
    keys = d.inst.keys_by_kid()
    kid = header_of(pair["access"])["kid"]
    now = int(time.time())
    tok = jwt.encode({"token_type": "api", "exp": now + 3600, "iat": now,
                      "jti": str(uuidlib.uuid4()), "user_id": uid,
                      "team_uuid": str(uuidlib.uuid4())},
                     keys[kid], algorithm="HS256", headers={"kid": kid})
    expect_invalid(verify(d.srv, tok), "api token never issued")


def test_expired_access_token(short_access):
    pair, _, _ = short_access.fresh_pair()
    c = claims_of(pair["access"])
    assert c["exp"] - c["iat"] == 8, c
    expect_verified(verify(short_access.srv, pair["access"]), pair["access"], "fresh")
    # Wait until exp has passed (a lower bound, however slow the run).
    while time.time() < c["exp"] + 1.1:
        time.sleep(0.2)
    expect_invalid(verify(short_access.srv, pair["access"]), "expired access token")
    # the refresh token still lives
    expect_verified(verify(short_access.srv, pair["refresh"]), pair["refresh"])


# ---------------------------------------------------------------- 400

@pytest.mark.parametrize("payload,expected", [
    ({}, {"token": ["This field is required."]}),
    ({"refresh": "a.b.c"}, {"token": ["This field is required."]}),
    ({"token": ""}, {"token": ["This field may not be blank."]}),
    ({"token": "  "}, {"token": ["This field may not be blank."]}),
    ({"token": 1}, {"token": ["Not a valid string."]}),
    ({"token": ["a"]}, {"token": ["Not a valid string."]}),
    ({"token": {}}, {"token": ["Not a valid string."]}),
    ({"token": False}, {"token": ["Not a valid string."]}),
    ({"token": None}, {"token": ["This field may not be null."]}),
])
def test_field_errors(d, payload, expected):
    body = expect_json(d.srv.post(VERIFY, json=payload), 400, f"verify {payload!r}")
    assert body == expected, f"{payload!r}: {body!r}"


def test_field_errors_form(d):
    body = expect_json(d.srv.post(VERIFY, data={"x": "1"}), 400, "form without token")
    assert body == {"token": ["This field is required."]}, body
    body = expect_json(d.srv.post(VERIFY, data={"token": ""}), 400, "form blank token")
    assert body == {"token": ["This field may not be blank."]}, body


def test_malformed_json(d):
    r = d.srv.post(VERIFY, data=b'{"token": ', headers={"Content-Type": "application/json"})
    body = expect_json(r, 400, "malformed JSON")
    assert body.get("detail", "").startswith("JSON parse error - "), body


def test_get_is_405(d):
    r = d.srv.request("GET", VERIFY)
    expect_json(r, 405, "GET verify")
    assert "POST" in r.headers.get("Allow", ""), r.headers


# ---------------------------------------------------------------- cost

def test_verify_is_cheap(factory):
    """Verify does no password work. Asserted as order, not speed: the only
    hash worker is busy with a 2,000,000-iteration login and a second one
    is queued behind it (seen on /metrics); six verifies of a pair of that
    user's are answered 201 while the queued login still waits -- had each
    done a hash of that cost, inline or through the pool, they could not
    come before two hashes had run."""
    import threading
    from conftest import HANG, UNTHROTTLED
    inst = factory(env={"TOKEND_PASSWORD_PBKDF2_ITERATIONS": "2000000",
                        "TOKEND_PASSWORD_HASH_WORKERS": "1", "TOKEND_PASSWORD_HASH_QUEUE": "1",
                        "TOKEND_PASSWORD_HASH_DEADLINE_MS": "3600000",
                        "TOKEND_SERVER_THREADS": "1", **UNTHROTTLED}, label="verify cost")
    inst.add_user("slowpoke", "slow-pw")
    srv = inst.start()
    pair = expect_tokens(srv.login("slowpoke", "slow-pw", timeout=HANG))

    def pool():
        text = srv.request("GET", "/metrics", timeout=HANG).text
        got = dict(ln.split(" ", 1) for ln in text.splitlines()
                   if ln.startswith(("tokend_hash_workers_busy ", "tokend_hash_queue_depth ")))
        return (int(float(got.get("tokend_hash_workers_busy", 0))),
                int(float(got.get("tokend_hash_queue_depth", 0))))

    def wait_pool(want, what):
        deadline = time.monotonic() + HANG
        while pool() != want:
            assert time.monotonic() < deadline, f"{what}: hash pool never at {want} (busy, queued)"
            time.sleep(0.05)

    done = []

    def login():
        done.append(srv.login("slowpoke", "wrong", timeout=HANG))

    threads = []
    wait_pool((0, 0), "before")
    for want in ((1, 0), (1, 1)):
        threads.append(threading.Thread(target=login, daemon=True))
        threads[-1].start()
        wait_pool(want, "background login")
    try:
        for i in range(3):
            for kind in ("access", "refresh"):
                r = verify(srv, pair[kind])
                assert r.status_code == 201, (i, kind, r.text)
        assert len(done) < 2, (
            f"six verifies were answered only after the queued login (answers {done}): "
            f"verify does password work")
    finally:
        for t in threads:
            t.join(HANG)
