"""verify of an access token checks its session in memory (issue 11, last
part; docs/tokens.md "How verify checks a session"): no database lookup, yet
a session ended by any process on the same database fails verify on every
server at once (the shared counter file <db>-ends), and one ended by a
writer that does not bump the counter (another tool, a process that crashed
after its COMMIT) within the 1 s reload. No wall-clock assertion: "at once"
means the very next request, "within the reload" is polled with a generous
deadline."""

import json
import dbsql
import time
import uuid as uuidlib

import jwt
import pytest

from conftest import b64url_decode, db_rows, expect_json, expect_tokens, sqlite_only

LOGOUT = "/api/auth/jwt/blacklist/"
VERIFY = "/api/auth/jwt/verify/"
API = "/api/openapi/token/"
DEADLINE = 30.0  # seconds: far beyond the 1 s reload; bounds a hang only


def claims_of(token):
    return json.loads(b64url_decode(token.split(".")[1]))


def new_user(inst):
    name = f"se-{uuidlib.uuid4().hex[:10]}"
    pw = f"pw-{uuidlib.uuid4().hex[:8]}"
    uid = inst.add_user(name, pw)
    return name, pw, uid


def login(srv, name, pw):
    return expect_tokens(srv.login(name, pw), f"login {name}")


def verify(srv, token):
    return srv.post(VERIFY, json={"token": token}).status_code


def logout(srv, refresh):
    expect_json(srv.post(LOGOUT, json={"refresh": refresh}), 200, "logout")


def expect_refused(srv, token, what):
    r = srv.post(VERIFY, json={"token": token})
    body = expect_json(r, 401, what)
    assert body.get("code") == "token_not_valid", f"{what}: {body!r}"


def refused_within(srv, token, deadline=DEADLINE):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if verify(srv, token) == 401:
            return True
        time.sleep(0.05)
    return False


def external(db, sql, params=()):
    """A write by another tool: no counter bump."""
    with dbsql.connect(db) as con:  # foreign keys on, as the server's
        con.execute(sql, params)


@pytest.fixture(scope="module")
def pair(module_factory):
    """Two servers on one database file."""
    inst = module_factory(label="session-ends")
    a = inst.start(label="session-ends A")
    b = inst.start(label="session-ends B")
    return inst, a, b


def test_logout_then_verify_fails_at_once(pair):
    inst, a, _ = pair
    name, pw, _ = new_user(inst)
    tok = login(a, name, pw)
    other = login(a, name, pw)
    assert verify(a, tok["access"]) == 201
    logout(a, tok["refresh"])
    expect_refused(a, tok["access"], "access token after its logout")
    assert verify(a, other["access"]) == 201, "another session of the user"


def test_logout_on_one_server_fails_verify_on_the_other_at_once(pair):
    inst, a, b = pair
    name, pw, _ = new_user(inst)
    for _ in range(3):  # no reload window to hide in: each round at once
        tok = login(a, name, pw)
        assert verify(b, tok["access"]) == 201, "B verifies A's login"
        logout(a, tok["refresh"])
        expect_refused(b, tok["access"], "B, right after A's logout")
        tok = login(b, name, pw)
        assert verify(a, tok["access"]) == 201
        logout(b, tok["refresh"])
        expect_refused(a, tok["access"], "A, right after B's logout")


@pytest.mark.parametrize("cmd", ["logout", "disable", "passwd", "delete"])
def test_cli_session_ends_fail_verify_at_once(pair, cmd):
    inst, a, b = pair
    name, pw, _ = new_user(inst)
    tok = login(a, name, pw)
    assert verify(a, tok["access"]) == 201 and verify(b, tok["access"]) == 201
    if cmd == "passwd":
        inst.cli_ok("user", "passwd", name, "--password-stdin", input="pw-new\n")
    else:
        inst.cli_ok("user", cmd, name)
    expect_refused(a, tok["access"], f"A after `tokend user {cmd}`")
    expect_refused(b, tok["access"], f"B after `tokend user {cmd}`")


def test_external_disable_fails_verify_within_the_reload(pair):
    inst, a, b = pair
    name, pw, uid = new_user(inst)
    tok = login(a, name, pw)
    assert verify(b, tok["access"]) == 201
    external(inst.database, "UPDATE users SET is_active = 0 WHERE uuid = ?", (uid,))
    sid = claims_of(tok["access"])["sid"]
    assert db_rows(inst.database, "SELECT sid FROM session_ends WHERE sid = ?", (sid,)), \
        "the trigger recorded the end"
    assert refused_within(a, tok["access"]), "A never saw the external disable"
    assert refused_within(b, tok["access"]), "B never saw the external disable"


def test_external_delete_fails_verify_within_the_reload(pair):
    inst, a, b = pair
    name, pw, uid = new_user(inst)
    tok = login(a, name, pw)
    assert verify(b, tok["access"]) == 201
    external(inst.database, "DELETE FROM users WHERE uuid = ?", (uid,))
    assert refused_within(b, tok["access"]), "the cascade's end was never seen"


def test_end_without_a_bump_is_seen_within_the_reload(pair):
    """A process that committed a session end and crashed before bumping
    the counter: the periodic reload still finds the row."""
    inst, a, b = pair
    name, pw, _ = new_user(inst)
    tok = login(a, name, pw)
    sid = claims_of(tok["access"])["sid"]
    assert verify(a, tok["access"]) == 201
    external(inst.database, "UPDATE sessions SET revoked_at = ? WHERE id = ?",
             (int(time.time()), sid))
    assert refused_within(a, tok["access"])
    assert refused_within(b, tok["access"])
    # The refresh token is looked up: refused at once.
    r = a.post("/api/auth/jwt/refresh/", json={"refresh": tok["refresh"]})
    assert r.status_code == 401


def test_a_server_started_later_loads_earlier_ends(pair):
    inst, a, _ = pair
    name, pw, _ = new_user(inst)
    tok = login(a, name, pw)
    logout(a, tok["refresh"])
    c = inst.start(label="session-ends C")
    try:
        expect_refused(c, tok["access"], "a server started after the logout")
    finally:
        c.check_clean_exit()


@sqlite_only("the <db>-ends counter file beside the database file")
def test_counter_file_unusable_falls_back_to_the_reload(factory):
    inst = factory(label="no counter file")
    inst.cli_ok("migrate")
    # A directory where the counter file would be: no process can share it.
    (inst.root / "tokend.db-ends").unlink()  # the CLI made it
    (inst.root / "tokend.db-ends").mkdir()
    a = inst.start(label="no-counter A")
    b = inst.start(label="no-counter B")
    assert a.wait_for_stderr(lambda ln: "tokend.db-ends" in ln), \
        "the fallback is logged"
    name, pw, _ = new_user(inst)
    tok = login(a, name, pw)
    assert verify(b, tok["access"]) == 201
    logout(a, tok["refresh"])
    expect_refused(a, tok["access"], "the server's own logout: at once")
    assert refused_within(b, tok["access"]), "B never saw A's logout"
    tok = login(b, name, pw)
    inst.cli_ok("user", "logout", name)
    assert refused_within(a, tok["access"]) and refused_within(b, tok["access"])


def hand_mint(inst, claims):
    keys = inst.keys_by_kid()
    kid = (inst.keys / "current").read_text().strip()
    return jwt.encode(claims, keys[kid], algorithm="HS256", headers={"kid": kid})


def test_a_token_outliving_the_horizon_is_looked_up(factory):
    """The memory holds the ends of one access lifetime (+ leeway + 60 s).
    A token minted to live longer (say under an earlier, longer
    tokens.access_lifetime) whose session ended before that horizon is
    still refused: such a token is looked up."""
    inst = factory(env={"TOKEND_TOKENS_ACCESS_LIFETIME": "1"}, label="short lifetime")
    name, pw, uid = new_user(inst)
    a = inst.start(label="short lifetime A")
    tok = login(a, name, pw)
    sid = claims_of(tok["refresh"])["sid"]
    logout(a, tok["refresh"])
    a.check_clean_exit()
    # The end, long before the horizon of a server started now (61 s).
    old = int(time.time()) - 1000
    external(inst.database, "UPDATE session_ends SET ended_at = ? WHERE sid = ?", (old, sid))
    b = inst.start(label="short lifetime B")
    now = int(time.time())
    long_lived = hand_mint(inst, {"exp": now + 300, "iat": now - 10, "jti": str(uuidlib.uuid4()),
                                  "sid": sid, "token_type": "access", "user_id": uid})
    expect_refused(b, long_lived, "a token minted to outlive the horizon")
