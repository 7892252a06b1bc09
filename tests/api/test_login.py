"""POST /api/auth/jwt/ -- obtain a token pair (API.md, issue 2 "Login")."""

import json
import time
import uuid

import pytest

from conftest import (LOGIN, NO_ACCOUNT, UUID_RE, db_rows, decode_token, expect_401,
                      expect_json, expect_parse_error, expect_tokens, user_row)


def _claims(shared, tokens):
    keys = shared.inst.keys_by_kid()
    assert keys, f"no *.HS256.key file in {shared.inst.keys}"
    return {kind: decode_token(tokens[kind], keys) for kind in ("access", "refresh")}


# ---------------------------------------------------------------- success

def test_login_json_returns_token_pair(srv, alice):
    user, pw, _ = alice
    r = srv.login(user, pw)
    body = expect_tokens(r, "JSON login")
    assert all(isinstance(v, str) and v.count(".") == 2 for v in body.values()), body
    assert pw not in r.text


def test_login_form_returns_token_pair(srv, alice):
    user, pw, _ = alice
    expect_tokens(srv.login(user, pw, form=True), "form login")


def test_tokens_verify_with_key_file(srv, shared, alice):
    user, pw, uid = alice
    before = int(time.time())
    tokens = expect_tokens(srv.login(user, pw))
    after = int(time.time())
    decoded = _claims(shared, tokens)
    jtis = set()
    for kind, (header, claims) in decoded.items():
        assert header.get("typ") == "JWT", f"{kind} header typ: {header}"
        assert header.get("alg") == "HS256", header
        assert claims["token_type"] == kind, f"{kind} token has token_type {claims.get('token_type')!r}"
        assert claims["user_id"] == uid, f"{kind} user_id {claims.get('user_id')!r} != uuid from `user add` {uid}"
        assert UUID_RE.match(claims["jti"]), f"{kind} jti not a lowercase canonical uuid: {claims['jti']!r}"
        assert isinstance(claims["iat"], int) and isinstance(claims["exp"], int), claims
        assert before - 2 <= claims["iat"] <= after + 2, f"{kind} iat {claims['iat']} not now ({before})"
        jtis.add(claims["jti"])
    assert len(jtis) == 2, "access and refresh tokens share a jti"
    a, rf = decoded["access"][1], decoded["refresh"][1]
    assert a["exp"] - a["iat"] == 300, f"access lifetime {a['exp'] - a['iat']} != 300"
    assert rf["exp"] - rf["iat"] == 86400, f"refresh lifetime {rf['exp'] - rf['iat']} != 86400"


def test_kid_names_the_key_file_and_key_file_format(srv, shared, alice):
    import os
    import stat
    user, pw, _ = alice
    tokens = expect_tokens(srv.login(user, pw))
    files = shared.inst.keyfiles()
    assert files, f"no <kid>.HS256.key in {shared.inst.keys}"
    dmode = stat.S_IMODE(os.stat(shared.inst.keys).st_mode)
    assert dmode == 0o700, f"key dir mode {oct(dmode)} != 0700"
    for f in files:
        fmode = stat.S_IMODE(os.stat(f).st_mode)
        assert fmode == 0o600, f"{f.name} mode {oct(fmode)} != 0600"
        text = f.read_text()
        assert text.count("\n") <= 1 and text.strip(), f"{f.name} must hold one line"
        line = text.strip()
        assert "=" not in line and all(c.isalnum() or c in "-_" for c in line), (
            f"{f.name} is not unpadded base64url: {line[:20]}...")
        from conftest import b64url_decode
        assert len(b64url_decode(line)) == 64, f"{f.name} does not decode to 64 bytes"
    kids = {f.name[:-len(".HS256.key")] for f in files}
    import jwt
    for kind in ("access", "refresh"):
        assert jwt.get_unverified_header(tokens[kind]).get("kid") in kids


def test_every_login_gets_fresh_jtis(srv, shared, alice):
    user, pw, _ = alice
    seen = set()
    for _ in range(3):
        d = _claims(shared, expect_tokens(srv.login(user, pw)))
        for kind in d:
            jti = d[kind][1]["jti"]
            assert jti not in seen, "jti reused across logins"
            seen.add(jti)


def test_refresh_jti_is_recorded_in_store(srv, shared, alice):
    user, pw, uid = alice
    tokens = expect_tokens(srv.login(user, pw))
    claims = _claims(shared, tokens)
    rjti = claims["refresh"][1]["jti"]
    rows = db_rows(shared.inst.database, "SELECT * FROM refresh_tokens WHERE jti = ?", (rjti,))
    assert len(rows) == 1, f"refresh token jti {rjti} not recorded in refresh_tokens"
    row = rows[0]
    assert row["user_uuid"] == uid, row
    assert row["used_at"] is None, f"fresh refresh token already marked used: {row}"
    assert row["family"], f"refresh token row has no family: {row}"
    ajti = claims["access"][1]["jti"]
    assert not db_rows(shared.inst.database, "SELECT jti FROM refresh_tokens WHERE jti = ?", (ajti,)), (
        "the access token's jti must not be stored as a refresh token")


def test_last_login_is_set(srv, shared):
    name, _ = shared.new_user("lastlogin", "pw-lastlogin")
    assert user_row(shared.inst.database, name)["last_login"] is None, "new user has last_login set"
    expect_tokens(srv.login(name, "pw-lastlogin"))
    row = user_row(shared.inst.database, name)
    assert row["last_login"] is not None, f"last_login not updated after a login: {row}"
    expect_401(srv.login(name, "wrong"))
    assert user_row(shared.inst.database, name)["last_login"] == row["last_login"], (
        "a failed login changed last_login")


def test_user_added_while_server_runs_can_log_in(srv, shared):
    name, uid = shared.new_user("live", "live-pw")
    _, claims = _claims(shared, expect_tokens(srv.login(name, "live-pw")))["access"]
    assert claims["user_id"] == uid


def test_token_lifetimes_follow_config(factory):
    inst = factory(env={"TOKEND_TOKENS_ACCESS_LIFETIME": "60",
                        "TOKEND_TOKENS_REFRESH_LIFETIME": "7200"})
    inst.add_user("erin", "erin-pw")
    srv = inst.start()
    tokens = expect_tokens(srv.login("erin", "erin-pw"))
    keys = inst.keys_by_kid()
    _, a = decode_token(tokens["access"], keys)
    _, r = decode_token(tokens["refresh"], keys)
    assert a["exp"] - a["iat"] == 60, f"TOKEND_TOKENS_ACCESS_LIFETIME=60 gave {a['exp'] - a['iat']}"
    assert r["exp"] - r["iat"] == 7200, f"TOKEND_TOKENS_REFRESH_LIFETIME=7200 gave {r['exp'] - r['iat']}"


def test_key_survives_restart(factory):
    inst = factory()
    inst.add_user("fay", "fay-pw")
    srv = inst.start()
    t1 = expect_tokens(srv.login("fay", "fay-pw"))
    keys1 = inst.keys_by_kid()
    assert srv.stop() == 0
    srv2 = inst.start()
    t2 = expect_tokens(srv2.login("fay", "fay-pw"))
    assert inst.keys_by_kid() == keys1, "restart replaced the signing key"
    import jwt
    assert jwt.get_unverified_header(t1["access"])["kid"] == jwt.get_unverified_header(t2["access"])["kid"]
    decode_token(t1["access"], keys1)


# ---------------------------------------------------------------- 401

def test_401_identical_for_wrong_password_unknown_user_disabled_user(srv, alice, unchanged):
    user, pw, _ = alice
    with unchanged("401 logins"):
        rs = {
            "wrong password": srv.login(user, pw + "x"),
            "unknown user": srv.login("nobody-" + uuid.uuid4().hex, pw),
            "disabled user (right password)": srv.login("dora", "dora-password"),
            "wrong password (form)": srv.login(user, "nope", form=True),
            "username in another case": srv.login(user.upper(), pw),
        }
        for what, r in rs.items():
            expect_401(r, what)
    bodies = {what: r.content for what, r in rs.items()}
    assert len(set(bodies.values())) == 1, f"401 bodies differ: {bodies}"
    for r in rs.values():
        assert pw not in r.text


def test_authorization_header_is_ignored_by_login(srv, alice):
    user, pw, _ = alice
    for value in ["Bearer garbage", "Bearer a.b.c", "Basic YWxpY2U6eA==", "Bearer", "nonsense value here"]:
        expect_tokens(srv.login(user, pw, headers={"Authorization": value}), f"Authorization: {value}")
    expect_401(srv.login(user, "wrong", headers={"Authorization": "Bearer x"}), "bad password + Authorization")


# ---------------------------------------------------------------- form details

def test_form_plus_and_percent_decoding(srv, shared):
    pw = "p+q r&s=t%ü"
    name, _ = shared.new_user("formy", pw)
    ct = {"Content-Type": "application/x-www-form-urlencoded"}
    from urllib.parse import quote_plus
    ok = f"username={quote_plus(name)}&password={quote_plus(pw)}"
    expect_tokens(srv.post(LOGIN, data=ok, headers=ct), f"form {ok!r}")
    # '+' means space: a literal '+' sent unencoded is a space, so this fails
    bad = f"username={name}&password=p+q+r%26s%3Dt%25%C3%BC"
    expect_401(srv.post(LOGIN, data=bad, headers=ct), f"form {bad!r} ('+' must decode to space)")
    # lowercase hex escapes work too
    lower = f"username={name}&password=p%2bq+r%26s%3dt%25%c3%bc"
    expect_tokens(srv.post(LOGIN, data=lower, headers=ct), f"form {lower!r}")


def test_form_space_as_plus(srv, alice):
    user, pw, _ = alice  # "alice pässword +1"
    data = "username=alice&password=alice+p%C3%A4ssword+%2B1"
    expect_tokens(srv.post(LOGIN, data=data, headers={"Content-Type": "application/x-www-form-urlencoded"}))


def test_form_duplicate_keys_last_wins(srv, alice):
    user, pw, _ = alice
    from urllib.parse import quote_plus
    ct = {"Content-Type": "application/x-www-form-urlencoded"}
    good = quote_plus(pw)
    expect_tokens(srv.post(LOGIN, data=f"username=nobody&password=x&username=alice&password={good}",
                           headers=ct), "duplicate keys, last ones good")
    expect_401(srv.post(LOGIN, data=f"username=alice&password={good}&password=wrong",
                        headers=ct), "duplicate keys, last password wrong")


def test_form_repeated_username_last_wins_json_list_refused(srv, alice):
    """A form's repeated key is a list to a list field and its last value to a
    string field; a JSON list for a string field stays a type error."""
    user, pw, _ = alice
    expect_tokens(srv.post(LOGIN, data=[("username", "nobody"), ("username", user),
                                        ("password", pw)]), "form, username twice")
    r = srv.post(LOGIN, json={"username": [user], "password": pw})
    body = expect_json(r, 400, "JSON list for username")
    assert body == {"username": ["Not a valid string."]}, body


def test_json_extra_fields_ignored(srv, alice):
    user, pw, _ = alice
    expect_tokens(srv.post(LOGIN, json={"username": user, "password": pw, "access": "x",
                                        "refresh": 1, "extra": {"a": [1, 2]}}))


def test_json_unicode_escapes_in_password(srv, alice):
    user, pw, _ = alice
    raw = json.dumps({"username": user, "password": pw}, ensure_ascii=True).encode()
    assert b"\\u00e4" in raw
    expect_tokens(srv.post(LOGIN, data=raw, headers={"Content-Type": "application/json"}))


# ---------------------------------------------------------------- 400 field errors

REQ = ["This field is required."]
BLANK = ["This field may not be blank."]
NOTSTR = ["Not a valid string."]
NULL = ["This field may not be null."]
LONG = ["Ensure this field has no more than 4096 characters."]


@pytest.mark.parametrize("payload,expected", [
    ({}, {"username": REQ, "password": REQ}),
    ({"username": "alice"}, {"password": REQ}),
    ({"password": "x"}, {"username": REQ}),
    ({"username": "", "password": ""}, {"username": BLANK, "password": BLANK}),
    ({"username": "alice", "password": ""}, {"password": BLANK}),
    ({"username": 123, "password": 4.5}, {"username": NOTSTR, "password": NOTSTR}),
    ({"username": {"a": 1}, "password": ["x"]}, {"username": NOTSTR, "password": NOTSTR}),
    ({"username": True, "password": False}, {"username": NOTSTR, "password": NOTSTR}),
    ({"username": [], "password": {}}, {"username": NOTSTR, "password": NOTSTR}),
    ({"username": None, "password": None}, {"username": NULL, "password": NULL}),
    ({"username": None, "password": 5}, {"username": NULL, "password": NOTSTR}),
    ({"username": "", "password": None}, {"username": BLANK, "password": NULL}),
    ({"username": "a" * 4097, "password": "b" * 4097}, {"username": LONG, "password": LONG}),
    ({"username": "alice", "password": "b" * 4097}, {"password": LONG}),
    ({"username": "a" * 4097}, {"username": LONG, "password": REQ}),
], ids=["empty", "no-password", "no-username", "both-blank", "password-blank", "numbers",
        "object-array", "bools", "empty-containers", "nulls", "null-and-number",
        "blank-and-null", "too-long", "password-too-long", "too-long-and-missing"])
def test_field_errors(srv, unchanged, payload, expected):
    with unchanged(f"field errors {list(payload)}"):
        r = srv.post(LOGIN, json=payload)
        body = expect_json(r, 400, f"payload {str(payload)[:80]}")
    assert body == expected, f"payload {str(payload)[:80]}: expected {expected}, got {body}"


def test_field_errors_form(srv, unchanged):
    ct = {"Content-Type": "application/x-www-form-urlencoded"}
    with unchanged("form field errors"):
        cases = [("", {"username": REQ, "password": REQ}),
                 ("username=&password=", {"username": BLANK, "password": BLANK}),
                 ("username=alice", {"password": REQ}),
                 ("foo=bar", {"username": REQ, "password": REQ}),
                 ("username=" + "a" * 4097 + "&password=x", {"username": LONG})]
        for data, expected in cases:
            body = expect_json(srv.post(LOGIN, data=data, headers=ct), 400, f"form {data[:40]!r}")
            assert body == expected, f"form {data[:40]!r}: expected {expected}, got {body}"


def test_4096_characters_is_accepted(srv, unchanged):
    with unchanged("4096-char fields"):
        r = srv.login("u" * 4096, "p" * 4096)
        expect_401(r, "4096-byte username/password (limit is inclusive)")


def test_empty_json_body_is_400(srv, unchanged):
    with unchanged("empty body"):
        r = srv.post(LOGIN, data=b"", headers={"Content-Type": "application/json"})
        body = expect_json(r, 400, "empty JSON body")
    assert isinstance(body, dict) and body, body


# ---------------------------------------------------------------- body not an object

@pytest.mark.parametrize("raw,typename", [
    (b'["alice", "pw"]', "list"), (b"[]", "list"), (b"42", "int"), (b"-1.5e3", "float"),
    (b"null", "NoneType"), (b'"alice"', "str"), (b"true", "bool"),
])
def test_body_not_an_object(srv, unchanged, raw, typename):
    with unchanged(f"body {raw!r}"):
        r = srv.post(LOGIN, data=raw, headers={"Content-Type": "application/json"})
        body = expect_json(r, 400, f"body {raw!r}")
    assert body == {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {typename}."]}, (
        f"body {raw!r}: got {body}")


# ---------------------------------------------------------------- malformed JSON

@pytest.mark.parametrize("raw", [
    b"{", b'{"username": "alice", "password": ', b"{'username': 'alice'}",
    b'{"username": "alice", "password": "x",}', b'{"username" "alice"}',
    b'{"username": "alice"} {}', b'{"username": "alice"} x', b"nul", b"tru",
    b'{"username": "a\\x", "password": "b"}', b'{"username": "a\\u12", "password": "b"}',
    b'{"username": "a\nb", "password": "c"}', b"\x00", b"{\x00}",
    b'{"username": NaN, "password": "x"}', b'{"username": 01, "password": "x"}',
    b"  ", b"]", b"{]",
], ids=lambda b: repr(b)[:40])
def test_malformed_json(srv, unchanged, raw):
    with unchanged(f"malformed {raw!r}"):
        r = srv.post(LOGIN, data=raw, headers={"Content-Type": "application/json"})
        expect_parse_error(r, f"malformed JSON {raw!r}")
