"""Signing keys (issue 3 "Signing keys"): the key directory, `tokend key
rotate|list|retire`, keys.algorithm, GET /.well-known/jwks.json with RS256
and ES256 interoperability (PyJWT both ways), SIGHUP reload, retired keys,
and the purge of expired refresh-token rows (`tokend purge` and the
server's sweeper)."""

import base64
import json
import os
import re
import signal
import dbsql
import stat
import time
import uuid as uuidlib

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from conftest import (b64url_decode, claims_of, db_rows, expect_invalid, expect_json, expect_tokens,
                      header_of)

REFRESH = "/api/auth/jwt/refresh/"
VERIFY = "/api/auth/jwt/verify/"
JWKS = "/.well-known/jwks.json"
KID_RE = re.compile(r"^[0-9a-f]{16}$")
RFC3339_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


# ---------------------------------------------------------------- helpers

def verify(srv, token):
    return srv.post(VERIFY, json={"token": token})


def refresh(srv, token):
    return srv.post(REFRESH, json={"refresh": token})


def key_files(inst):
    """{kid: (alg, path)} of the key directory."""
    out = {}
    for f in inst.keys.glob("*.key"):
        kid, alg, _ = f.name.split(".")
        out[kid] = (alg, f)
    return out


def current_kid(inst):
    return (inst.keys / "current").read_text().strip()


def rotate(inst, alg=None):
    args = ["key", "rotate"] + (["--alg", alg] if alg else [])
    res = inst.cli_ok(*args)
    kid = res.out.strip()
    assert KID_RE.match(kid), f"`key rotate` must print the new kid (16 hex) alone: {res!r}"
    return kid


def key_list(inst):
    res = inst.cli_ok("key", "list")
    rows = []
    for ln in res.out.splitlines():
        f = ln.split("\t")
        assert len(f) in (3, 4), f"`key list` line {ln!r}: kid<TAB>alg<TAB>created[<TAB>current]"
        assert KID_RE.match(f[0]) and f[1] in ("HS256", "RS256", "ES256"), ln
        assert RFC3339_RE.match(f[2]), f"created not RFC 3339 UTC: {ln!r}"
        if len(f) == 4:
            assert f[3] == "current", ln
        rows.append((f[0], f[1], f[2], len(f) == 4))
    return rows


def new_user(inst, prefix="k"):
    name = f"{prefix}-{uuidlib.uuid4().hex[:8]}"
    pw = "key tests password"
    return name, pw, inst.add_user(name, pw)


def jwks(srv):
    r = srv.request("GET", JWKS)
    body = expect_json(r, 200, "GET jwks")
    assert isinstance(body, dict) and isinstance(body.get("keys"), list), body
    return body["keys"]


HANG = 30  # seconds: bounds a hang in the polls below, never a speed


def wait_until(pred, timeout=HANG, step=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def insert_refresh_row(db, user_uuid, kid, issued_at, expires_at, used_at=None,
                       revoked=0):
    jti = str(uuidlib.uuid4())
    con = dbsql.connect(db)
    try:
        con.execute(
            "INSERT INTO refresh_tokens (jti, family, user_uuid, kid, access_jti, issued_at,"
            " expires_at, used_at, replaced_by, revoked) VALUES (?,?,?,?,?,?,?,?,NULL,?)",
            (jti, jti, user_uuid, kid, str(uuidlib.uuid4()), issued_at, expires_at, used_at,
             revoked))
    finally:
        con.close()
    return jti


def public_pem(priv_path):
    k = serialization.load_pem_private_key(priv_path.read_bytes(), None)
    return k.public_key().public_bytes(serialization.Encoding.PEM,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)


# ---------------------------------------------------------------- CLI: rotate / list

def test_rotate_on_fresh_dir_and_list(factory):
    inst = factory()
    kids = {}
    for alg in ("HS256", "RS256", "ES256"):
        kid = rotate(inst, alg)
        assert kid not in kids
        kids[kid] = alg
        assert current_kid(inst) == kid, "rotate must make the new key current"
        files = key_files(inst)
        assert files[kid][0] == alg, files
        mode = stat.S_IMODE(os.stat(files[kid][1]).st_mode)
        assert mode == 0o600, f"{files[kid][1].name} mode {oct(mode)}"
        rows = key_list(inst)
        assert {r[0]: r[1] for r in rows} == kids
        assert [r[0] for r in rows if r[3]] == [kid], f"exactly the new key is current: {rows}"
    assert stat.S_IMODE(os.stat(inst.keys).st_mode) == 0o700
    for kid, alg in kids.items():
        text = key_files(inst)[kid][1].read_text()
        if alg == "HS256":
            assert len(b64url_decode(text.strip())) == 64
        else:
            assert text.startswith("-----BEGIN ") and "PRIVATE KEY-----" in text, alg
    # the CLI wrote no key into the database
    if inst.db is not None and inst.db.exists():
        raw = inst.db.read_bytes()
        for kid, alg in kids.items():
            if alg == "HS256":
                assert key_files(inst)[kid][1].read_text().strip().encode() not in raw


@pytest.mark.parametrize("alg", ["none", "hs256", "RS512", "PS256", "EdDSA", ""])
def test_rotate_bad_alg_is_usage_error(factory, alg):
    inst = factory()
    before = rotate(inst)
    res = inst.cli("key", "rotate", "--alg", alg)
    assert res.rc == 2, f"--alg {alg!r}: {res!r}"
    assert res.out.strip() == "", res
    assert set(key_files(inst)) == {before}, "a key was made for a bad --alg"
    assert current_kid(inst) == before


def test_key_list_without_keys_fails(factory):
    inst = factory()
    res = inst.cli("key", "list")
    assert res.rc != 0 or res.out.strip() == "", res


# ---------------------------------------------------------------- CLI: retire

def test_retire_rules(factory):
    inst, srv = factory.server(label="retire")
    name, pw, uid = new_user(inst)
    k1 = current_kid(inst)
    pair = expect_tokens(srv.login(name, pw))
    assert header_of(pair["refresh"])["kid"] == k1
    k2 = rotate(inst)
    k3 = rotate(inst, "ES256")

    # the current key: refused, with and without --force
    for args in ((k3,), (k3, "--force")):
        res = inst.cli("key", "retire", *args)
        assert res.rc == 1, f"retire of the current key {args}: {res!r}"
    assert k3 in key_files(inst)

    # a key that signed a still-valid refresh token: refused without --force
    res = inst.cli("key", "retire", k1)
    assert res.rc == 1, f"retire of a key with live tokens: {res!r}"
    assert k1 in key_files(inst)

    # a key that signed nothing: retired
    res = inst.cli("key", "retire", k2)
    assert res.rc == 0, res
    assert k2 not in key_files(inst), "retired key file still present"
    assert k2 not in [r[0] for r in key_list(inst)]

    # unknown kids
    for bad in ("0123456789abcdef", k2, "../current", "current", "x"):
        res = inst.cli("key", "retire", bad)
        assert res.rc == 1, f"retire {bad!r}: {res!r}"
        res = inst.cli("key", "retire", bad, "--force")
        assert res.rc == 1, f"retire {bad!r} --force: {res!r}"
    assert (inst.keys / "current").exists()

    # --force retires a key in use
    res = inst.cli("key", "retire", k1, "--force")
    assert res.rc == 0, res
    assert k1 not in key_files(inst)
    assert set(key_files(inst)) == {k3}


def test_retire_missing_kid_is_usage_error(factory):
    inst = factory()
    rotate(inst)
    assert inst.cli("key", "retire").rc == 2


@pytest.mark.parametrize("row,in_use", [
    ("expired", False),
    ("revoked", False),
    ("used-long-ago", False),
    ("outstanding", True),
    ("used-just-now", True),
], ids=lambda v: str(v))
def test_retire_in_use_follows_the_tokens(factory, row, in_use):
    """`in use` = an unused, unrevoked, unexpired refresh token, or an
    access token minted less than access_lifetime (300 s) ago."""
    inst = factory()
    uid = new_user(inst)[2]  # creates the schema
    old = rotate(inst)
    rotate(inst)
    now = int(time.time())
    if row == "expired":
        insert_refresh_row(inst.database, uid, old, now - 7200, now - 3600)
    elif row == "revoked":
        insert_refresh_row(inst.database, uid, old, now - 7200, now + 3600, used_at=now - 7000,
                           revoked=1)
    elif row == "used-long-ago":
        insert_refresh_row(inst.database, uid, old, now - 7200, now + 3600, used_at=now - 7000)
    elif row == "outstanding":
        insert_refresh_row(inst.database, uid, old, now - 7200, now + 3600)
    elif row == "used-just-now":
        insert_refresh_row(inst.database, uid, old, now - 10, now + 3600, used_at=now - 5)
    res = inst.cli("key", "retire", old)
    assert res.rc == (1 if in_use else 0), f"{row}: {res!r}"
    assert (old in key_files(inst)) == in_use


# ---------------------------------------------------------------- keys.algorithm

@pytest.mark.parametrize("alg", ["HS256", "RS256", "ES256"])
def test_keys_algorithm_chooses_first_key(factory, alg):
    inst, srv = factory.server(env={"TOKEND_KEYS_ALGORITHM": alg}, label=f"first key {alg}")
    files = key_files(inst)
    assert len(files) == 1, files
    kid, (falg, path) = next(iter(files.items()))
    assert falg == alg, f"first key is {falg}, keys.algorithm={alg}"
    assert current_kid(inst) == kid
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    name, pw, _ = new_user(inst)
    pair = expect_tokens(srv.login(name, pw))
    for tok in pair.values():
        h = header_of(tok)
        assert h["alg"] == alg and h["kid"] == kid, h


def test_keys_algorithm_does_not_replace_existing_key(factory):
    inst, srv = factory.server(label="hs first")
    k1 = current_kid(inst)
    srv.stop()
    srv2 = inst.start(env={"TOKEND_KEYS_ALGORITHM": "ES256"}, label="restart with ES256")
    assert set(key_files(inst)) == {k1}
    name, pw, _ = new_user(inst)
    h = header_of(expect_tokens(srv2.login(name, pw))["access"])
    assert (h["alg"], h["kid"]) == ("HS256", k1), h


# ---------------------------------------------------------------- JWKS

def test_jwks_empty_with_hs256_only(factory):
    inst, srv = factory.server(label="jwks hs")
    assert jwks(srv) == []
    r = srv.request("GET", JWKS)
    assert r.json() == {"keys": []}


@pytest.fixture(scope="module")
def mixed(module_factory):
    inst = module_factory(label="jwks mixed")
    kids = {alg: rotate(inst, alg) for alg in ("RS256", "ES256", "HS256")}
    srv = inst.start()
    return inst, srv, kids


def _check_jwk(jwk, kid, alg, priv_path):
    assert jwk.get("kid") == kid and jwk.get("alg") == alg and jwk.get("use") == "sig", jwk
    assert not PRIVATE_JWK_MEMBERS & set(jwk), f"private members published: {jwk}"
    pub = serialization.load_pem_private_key(priv_path.read_bytes(), None).public_key()
    nums = pub.public_numbers()

    def b64int(s):
        assert isinstance(s, str) and "=" not in s and "+" not in s and "/" not in s, s
        return int.from_bytes(b64url_decode(s), "big")

    if alg == "RS256":
        assert jwk.get("kty") == "RSA", jwk
        assert b64int(jwk["n"]) == nums.n and b64int(jwk["e"]) == nums.e
        assert nums.n.bit_length() >= 2048, "RSA key under 2048 bits"
    else:
        assert jwk.get("kty") == "EC" and jwk.get("crv") == "P-256", jwk
        assert len(b64url_decode(jwk["x"])) == 32 and len(b64url_decode(jwk["y"])) == 32, jwk
        assert b64int(jwk["x"]) == nums.x and b64int(jwk["y"]) == nums.y


def test_jwks_publishes_rs_and_es_keys_only(mixed):
    inst, srv, kids = mixed
    keys = jwks(srv)
    by_kid = {k.get("kid"): k for k in keys}
    assert len(keys) == 2 and set(by_kid) == {kids["RS256"], kids["ES256"]}, keys
    files = key_files(inst)
    for alg in ("RS256", "ES256"):
        _check_jwk(by_kid[kids[alg]], kids[alg], alg, files[kids[alg]][1])
    hs_text = files[kids["HS256"]][1].read_text().strip()
    assert hs_text not in srv.request("GET", JWKS).text


def test_jwks_route_methods(mixed):
    inst, srv, kids = mixed
    r = srv.request("POST", JWKS, json={})
    expect_json(r, 405, "POST jwks")
    assert "GET" in r.headers.get("Allow", "")


@pytest.fixture(scope="module", params=["RS256", "ES256"])
def asym(request, module_factory):
    alg = request.param
    inst, srv = module_factory.server(env={"TOKEND_KEYS_ALGORITHM": alg}, label=f"{alg} server")
    name, pw, uid = new_user(inst, alg.lower())
    kid, (_, path) = next(iter(key_files(inst).items()))
    return alg, inst, srv, name, pw, uid, kid, path


def test_asym_tokens_verify_with_pyjwt_via_jwks(asym):
    alg, inst, srv, name, pw, uid, kid, path = asym
    pair = expect_tokens(srv.login(name, pw))
    keys = jwks(srv)
    assert [k["kid"] for k in keys] == [kid], keys
    _check_jwk(keys[0], kid, alg, path)
    pyjwk = jwt.PyJWK(keys[0])
    for kind, tok in pair.items():
        hdr = jwt.get_unverified_header(tok)
        assert hdr.get("alg") == alg and hdr.get("kid") == kid, hdr
        cl = jwt.decode(tok, pyjwk.key, algorithms=[alg],
                        options={"require": ["exp", "iat", "jti"]})
        assert cl["token_type"] == kind and cl["user_id"] == uid, cl
    if alg == "RS256":
        k = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(keys[0]))
        jwt.decode(pair["access"], k, algorithms=["RS256"])


def test_asym_tokens_verify_with_pyjwt_via_pem(asym):
    alg, inst, srv, name, pw, uid, kid, path = asym
    pair = expect_tokens(srv.login(name, pw))
    pem = public_pem(path)
    for kind, tok in pair.items():
        cl = jwt.decode(tok, pem, algorithms=[alg])
        assert cl["token_type"] == kind
    # and the rotated pair
    new = expect_tokens(refresh(srv, pair["refresh"]), f"{alg} refresh")
    for kind, tok in new.items():
        assert jwt.decode(tok, pem, algorithms=[alg])["token_type"] == kind


def test_asym_pyjwt_minted_tokens_verify_with_us(asym):
    alg, inst, srv, name, pw, uid, kid, path = asym
    now = int(time.time())
    claims = {"token_type": "access", "exp": now + 300, "iat": now,
              "jti": str(uuidlib.uuid4()), "user_id": uid}
    tok = jwt.encode(claims, path.read_bytes(), algorithm=alg, headers={"kid": kid})
    body = expect_json(verify(srv, tok), 201, f"PyJWT {alg} token")
    assert body == {"token": tok}
    # a refresh token PyJWT mints with a recorded jti rotates
    genuine = expect_tokens(srv.login(name, pw))["refresh"]
    rtok = jwt.encode(claims_of(genuine), path.read_bytes(), algorithm=alg,
                      headers={"kid": kid})
    expect_tokens(refresh(srv, rtok), f"refresh with a PyJWT {alg} token")
    # other key, same kid and claims
    if alg == "RS256":
        from cryptography.hazmat.primitives.asymmetric import rsa
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        from cryptography.hazmat.primitives.asymmetric import ec
        other = ec.generate_private_key(ec.SECP256R1())
    expect_invalid(verify(srv, jwt.encode(claims, other, algorithm=alg, headers={"kid": kid})),
                   f"{alg} token of another key")
    # the confusion attack against the only (asymmetric) key
    hs = jwt.algorithms.HMACAlgorithm(jwt.algorithms.HMACAlgorithm.SHA256)
    for secret in (public_pem(path), public_pem(path).strip()):
        hdr = base64.urlsafe_b64encode(json.dumps(
            {"alg": "HS256", "typ": "JWT", "kid": kid}).encode()).rstrip(b"=")
        pl = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
        si = hdr + b"." + pl
        sig = base64.urlsafe_b64encode(hs.sign(si, secret)).rstrip(b"=")
        expect_invalid(verify(srv, (si + b"." + sig).decode()), f"HS256 with the {alg} PEM")


def test_asym_signature_with_junk_appended(asym):
    """PITFALLS: libjwt accepts RS/ES signatures with junk appended; the
    token as sent must not verify."""
    alg, inst, srv, name, pw, uid, kid, path = asym
    pair = expect_tokens(srv.login(name, pw))
    for junk in ("A", "AA", "AAAA", "x", "_-"):
        expect_invalid(verify(srv, pair["access"] + junk), f"{alg} signature + {junk!r}")


# ---------------------------------------------------------------- SIGHUP

def _login_kid(srv, name, pw):
    return header_of(expect_tokens(srv.login(name, pw))["access"])["kid"]


def test_sighup_rotation_and_retirement(factory):
    # the periodic check off: it would pick up the rotation by itself (issue 13)
    inst, srv = factory.server(env={"TOKEND_KEYS_RELOAD_INTERVAL": "0"}, label="sighup")
    name, pw, uid = new_user(inst)
    k1 = current_kid(inst)
    a = expect_tokens(srv.login(name, pw))
    b = expect_tokens(srv.login(name, pw))
    assert header_of(a["access"])["kid"] == k1

    k2 = rotate(inst)
    assert _login_kid(srv, name, pw) == k1, "the server changed keys before SIGHUP"
    srv.send_signal(signal.SIGHUP)
    assert wait_until(lambda: _login_kid(srv, name, pw) == k2), (
        f"after rotate + SIGHUP new logins are not signed by {k2}\n{srv.tail()}")
    # tokens of the old key still verify and refresh
    assert verify(srv, a["access"]).status_code == 201
    assert verify(srv, b["refresh"]).status_code == 201
    new = expect_tokens(refresh(srv, a["refresh"]), "refresh of an old-key token")
    assert header_of(new["refresh"])["kid"] == k2 and header_of(new["access"])["kid"] == k2

    # b's refresh token keeps k1 in use
    assert inst.cli("key", "retire", k1).rc == 1
    inst.cli_ok("key", "retire", k1, "--force")
    srv.send_signal(signal.SIGHUP)
    assert wait_until(lambda: verify(srv, b["access"]).status_code == 401), (
        f"old-key access token still verifies after retire --force + SIGHUP\n{srv.tail()}")
    expect_invalid(verify(srv, b["access"]), "token of a retired key")
    expect_invalid(verify(srv, b["refresh"]), "refresh token of a retired key (verify)")
    expect_invalid(refresh(srv, b["refresh"]), "refresh token of a retired key (refresh)")
    # tokens of the current key are unaffected
    assert verify(srv, new["access"]).status_code == 201
    expect_tokens(refresh(srv, new["refresh"]), "current-key refresh after retirement")
    srv.assert_alive("SIGHUPs")


def test_sighup_to_rs256_updates_jwks(factory):
    # the periodic check off: only the SIGHUP can make the new key known
    inst, srv = factory.server(env={"TOKEND_KEYS_RELOAD_INTERVAL": "0"}, label="sighup rs256")
    name, pw, uid = new_user(inst)
    old = expect_tokens(srv.login(name, pw))
    assert jwks(srv) == []
    kid = rotate(inst, "RS256")
    srv.send_signal(signal.SIGHUP)
    assert wait_until(lambda: [k.get("kid") for k in jwks(srv)] == [kid]), (
        f"JWKS does not list {kid} {HANG}s after rotate + SIGHUP: {jwks(srv)}\n{srv.tail()}")
    pair = expect_tokens(srv.login(name, pw))
    h = header_of(pair["access"])
    assert h["alg"] == "RS256" and h["kid"] == kid, h
    key = jwt.PyJWK(jwks(srv)[0]).key
    jwt.decode(pair["access"], key, algorithms=["RS256"])
    # the HS256 pair from before still works
    assert verify(srv, old["access"]).status_code == 201
    expect_tokens(refresh(srv, old["refresh"]))


def test_sighup_with_broken_key_dir_keeps_old_keys(factory):
    # the periodic check off: the refusal logged below is the SIGHUP's
    inst, srv = factory.server(env={"TOKEND_KEYS_RELOAD_INTERVAL": "0"}, label="sighup broken")
    name, pw, uid = new_user(inst)
    k1 = current_kid(inst)
    pair = expect_tokens(srv.login(name, pw))
    bad = inst.keys / "0123456789abcdef.HS256.key"
    bad.write_text("short\n")
    os.chmod(bad, 0o600)
    srv.send_signal(signal.SIGHUP)
    # the reload ran (and refused), not merely 0.3 s passed
    assert srv.wait_for_stderr(lambda ln: "SIGHUP: keys not reloaded" in ln, HANG), (
        f"no 'SIGHUP: keys not reloaded' line {HANG}s after a SIGHUP with a broken key file\n{srv.tail()}")
    srv.assert_alive("SIGHUP with a broken key file")
    assert verify(srv, pair["access"]).status_code == 201
    assert _login_kid(srv, name, pw) == k1
    bad.unlink()


# ---------------------------------------------------------------- purge

def test_cli_purge(factory):
    inst = factory(env={"TOKEND_TOKENS_PURGE_BATCH": "2"})
    uid = new_user(inst)[2]
    kid = rotate(inst)
    now = int(time.time())
    expired = [insert_refresh_row(inst.database, uid, kid, now - 7200, now - 3600),
               insert_refresh_row(inst.database, uid, kid, now - 7200, now - 10, used_at=now - 7000),
               insert_refresh_row(inst.database, uid, kid, now - 7200, now - 1, used_at=now - 7000,
                                  revoked=1),
               insert_refresh_row(inst.database, uid, kid, now - 9000, now - 8000),
               insert_refresh_row(inst.database, uid, kid, now - 9000, now - 8000)]
    live = [insert_refresh_row(inst.database, uid, kid, now, now + 3600),
            insert_refresh_row(inst.database, uid, kid, now - 60, now + 60, used_at=now - 30),
            insert_refresh_row(inst.database, uid, kid, now - 60, now + 60, revoked=1)]
    res = inst.cli_ok("purge")
    assert res.out.strip() == f"purged {len(expired)} expired token rows", res
    left = {r["jti"] for r in db_rows(inst.database, "SELECT jti FROM refresh_tokens")}
    assert left == set(live), f"purge left {left}"
    res = inst.cli_ok("purge")
    assert res.out.strip() == "purged 0 expired token rows", res


def test_cli_purge_after_real_expiry(factory):
    # 3 s: a token minted at second T lives until T+3, so the refresh right
    # after the login cannot meet its expiry (1 s did, at a second boundary).
    # (6 s, so that a slow ASan run cannot reach the expiry before the refresh)
    inst, srv = factory.server(env={"TOKEND_TOKENS_REFRESH_LIFETIME": "6"}, label="purge real")
    name, pw, uid = new_user(inst)
    p1 = expect_tokens(srv.login(name, pw))
    expect_tokens(refresh(srv, p1["refresh"]))
    assert len(db_rows(inst.database, "SELECT jti FROM refresh_tokens")) == 2
    last_exp = max(r["expires_at"] for r in db_rows(inst.database, "SELECT expires_at FROM refresh_tokens"))
    while time.time() < last_exp + 1.1:  # a lower bound: the clock is past both expiries
        time.sleep(0.2)
    res = inst.cli_ok("purge")
    assert res.out.strip() == "purged 2 expired token rows", res
    assert db_rows(inst.database, "SELECT jti FROM refresh_tokens") == []


def test_server_sweeper(factory):
    inst, srv = factory.server(env={"TOKEND_TOKENS_PURGE_INTERVAL": "1",
                                    "TOKEND_TOKENS_PURGE_BATCH": "3"}, label="sweeper")
    uid = new_user(inst)[2]
    kid = current_kid(inst)
    now = int(time.time())
    expired = {insert_refresh_row(inst.database, uid, kid, now - 7200, now - 3600 + i)
               for i in range(8)}
    live = {insert_refresh_row(inst.database, uid, kid, now, now + 3600)}

    def gone():
        left = {r["jti"] for r in db_rows(inst.database, "SELECT jti FROM refresh_tokens")}
        return not (left & expired)

    assert wait_until(gone, step=0.1), f"sweeper (every 1 s) left expired rows after {HANG}s"
    left = {r["jti"] for r in db_rows(inst.database, "SELECT jti FROM refresh_tokens")}
    assert left == live, left
    srv.assert_alive("sweeps")


# ---------------------------------------------------------------- start-up checks of the key directory
#
# Keys are chosen by kid, so whoever can write in the key directory can
# plant a key and mint any token. As OpenSSH's StrictModes: the directory
# and each key file must be owned by the user tokend runs as or by root, and
# writable by no one else (key files: no group/other bits at all). tokend
# refuses to start (and `tokend key ...` to run) otherwise, with one line on
# stderr. A root-run tokend therefore refuses a directory owned by nobody.

def serve_refused(inst, what, expect):
    """Start `serve`; assert it exits non-zero without listening, with a
    stderr line naming the key directory and containing expect."""
    srv = inst.start(wait=False, label=what)
    # until it exits or says it listens: which of the two it does is the outcome
    deadline = time.monotonic() + HANG
    while srv.proc.poll() is None and not any("listening on" in ln for ln in srv.err_lines):
        assert time.monotonic() < deadline, f"{what}: tokend neither exited nor listened in {HANG}s"
        time.sleep(0.02)
    listening = srv.proc.poll() is None
    rc = srv.stop()
    assert not listening, f"{what}: tokend started\n{srv.stderr()}"
    assert rc not in (0, None), f"{what}: exit {rc}\n{srv.stderr()}"
    lines = [ln for ln in srv.err_lines if str(inst.keys) in ln and expect in ln]
    assert len(lines) == 1, (
        f"{what}: want one stderr line naming {inst.keys} and saying {expect!r}:\n{srv.stderr()}")
    return lines[0]


def cli_refused(inst, expect, *args):
    res = inst.cli(*args)
    assert res.rc == 1, f"`tokend {' '.join(args)}` with an unsafe key directory: {res!r}"
    assert expect in res.err and str(inst.keys) in res.err, res
    return res


def _unsafe_install(factory):
    inst = factory()
    kid = rotate(inst)
    return inst, kid


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o770, 0o757, 0o1777, 0o720, 0o702], ids=oct)
def test_key_dir_writable_by_others_is_refused(factory, mode):
    inst, kid = _unsafe_install(factory)
    os.chmod(inst.keys, mode)
    line = serve_refused(inst, f"key dir {oct(mode)}", "writable")
    assert oct(mode)[2:] in line, f"the line should show the mode: {line!r}"
    cli_refused(inst, "writable", "key", "list")
    cli_refused(inst, "writable", "key", "rotate")
    assert set(key_files(inst)) == {kid}, "`key rotate` wrote into an unsafe directory"
    cli_refused(inst, "writable", "key", "retire", kid, "--force")
    assert set(key_files(inst)) == {kid}
    # fixed: starts again
    os.chmod(inst.keys, 0o700)
    inst.start(label="key dir 0700 again")


@pytest.mark.parametrize("mode", [0o666, 0o606, 0o660, 0o620, 0o644, 0o640], ids=oct)
def test_key_file_open_to_others_is_refused(factory, mode):
    inst, kid = _unsafe_install(factory)
    path = key_files(inst)[kid][1]
    os.chmod(path, mode)
    serve_refused(inst, f"key file {oct(mode)}", path.name)
    cli_refused(inst, path.name, "key", "list")


@pytest.mark.parametrize("dmode", [0o700, 0o750, 0o755, 0o711], ids=oct)
def test_safe_modes_start(factory, dmode):
    inst, kid = _unsafe_install(factory)
    os.chmod(inst.keys, dmode)
    os.chmod(key_files(inst)[kid][1], 0o600)
    srv = inst.start(label=f"key dir {oct(dmode)}")
    name, pw, _ = new_user(inst)
    assert header_of(expect_tokens(srv.login(name, pw))["access"])["kid"] == kid
    assert [r[0] for r in key_list(inst)] == [kid]


def test_fresh_key_dir_is_created_0700(factory):
    inst, srv = factory.server(label="fresh key dir")
    assert stat.S_IMODE(os.stat(inst.keys).st_mode) == 0o700
    for _, path in key_files(inst).values():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


def _nobody():
    import pwd
    return pwd.getpwnam("nobody").pw_uid


@needs_root
def test_root_refuses_key_dir_owned_by_another_user(factory):
    """Run as root, the directory must be root's: one owned by nobody could
    be written by whoever runs as nobody."""
    inst, kid = _unsafe_install(factory)
    os.chown(inst.keys, _nobody(), -1)
    os.chmod(inst.keys, 0o700)
    serve_refused(inst, "key dir owned by nobody", "owned by")
    cli_refused(inst, "owned by", "key", "list")
    cli_refused(inst, "owned by", "key", "rotate")
    assert set(key_files(inst)) == {kid}
    os.chown(inst.keys, 0, -1)
    inst.start(label="key dir owned by root again")


@needs_root
def test_root_refuses_key_file_owned_by_another_user(factory):
    inst, kid = _unsafe_install(factory)
    path = key_files(inst)[kid][1]
    os.chown(path, _nobody(), -1)
    serve_refused(inst, "key file owned by nobody", "owned by")
    cli_refused(inst, "owned by", "key", "list")


def test_sighup_refuses_a_key_dir_made_writable(factory):
    """A key planted in a directory that became world-writable is not
    loaded by a SIGHUP reload; the server keeps its keys and says why."""
    # the periodic check off: the refusal waited for below is the SIGHUP's
    inst, srv = factory.server(env={"TOKEND_KEYS_RELOAD_INTERVAL": "0"}, label="sighup unsafe dir")
    name, pw, _ = new_user(inst)
    k1 = current_kid(inst)
    os.chmod(inst.keys, 0o777)
    planted = inst.keys / "0123456789abcdef.HS256.key"
    planted.write_text(base64.urlsafe_b64encode(b"p" * 64).decode().rstrip("=") + "\n")
    os.chmod(planted, 0o600)
    (inst.keys / "current").write_text("0123456789abcdef\n")
    srv.send_signal(signal.SIGHUP)
    assert srv.wait_for_stderr(lambda ln: "writable" in ln and str(inst.keys) in ln, HANG), srv.tail()
    srv.assert_alive("SIGHUP with a world-writable key directory")
    assert _login_kid(srv, name, pw) == k1
    now = int(time.time())
    forged = jwt.encode({"token_type": "access", "exp": now + 60, "iat": now,
                         "jti": str(uuidlib.uuid4()), "user_id": new_user(inst)[2]},
                        b"p" * 64, algorithm="HS256", headers={"kid": "0123456789abcdef"})
    expect_invalid(verify(srv, forged), "token of a planted key")
    os.chmod(inst.keys, 0o700)
