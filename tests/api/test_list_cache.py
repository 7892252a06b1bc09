"""GET /api/openapi/token/{team_uuid}/ while the server keeps the listings it
has built (a cache per HTTP thread): whatever changed, the very next list
says so. Each test lists several times over fresh connections first, so that
several of the server's HTTP threads hold a copy, then makes a change and
lists again at once (again over several fresh connections, so that the
answer comes from warm threads):

- issue shows the new token, delete (by id and by token string) hides it;
  with nothing changed the lists are byte-identical, also while other users
  and teams change theirs;
- an expired token leaves the list the moment it expires;
- a row deleted or renamed by another process (sqlite3 here);
- tokens of a key retired with `key retire --force` + SIGHUP leave the list,
  a token of the new key is listed; a rotation alone changes nothing;
- a user removed from the team gets 403, a disabled user 401 (user_inactive);
- two users of one team, and one user in two teams, never see each other's
  listing.

The routes themselves are tested in test_api_tokens.py, whose helpers this
module uses.
"""

import signal
import dbsql
import time

import pytest

from conftest import expect_json, header_of
from test_api_tokens import FORBIDDEN, World, rfc3339
from test_bearer_auth import INACTIVE
from test_keys import current_kid, rotate, wait_until

THREADS = 4  # HTTP threads of the servers here: each has its own cache
WARM = 8     # lists before a change: most threads then hold a copy
AFTER = 6    # lists right after it: every one must show the change
RELOADED = "SIGHUP: keys reloaded"


# --------------------------------------------------------------------------
# helpers


def ids(tokens):
    return [t["token_issuer_uuid"] for t in tokens]


def warm(w, team, user, what, n=WARM):
    """Lists n times (a fresh connection each); all must be 200 and
    byte-identical. Returns (raw body, parsed tokens)."""
    bodies = []
    for i in range(n):
        r = w.list(team, user)
        expect_json(r, 200, f"{what}: list {i + 1} of {n}")
        bodies.append(r.content)
    assert len(set(bodies)) == 1, (
        f"{what}: with nothing changed, {n} lists must be byte-identical; got "
        f"{len(set(bodies))} different bodies:\n" + "\n".join(repr(b[:300]) for b in set(bodies)))
    return bodies[0], w.listed(team, user, f"{what}: parsed")


def listed_after(w, team, user, what, n=AFTER):
    """Lists n times right after a change; all answers must agree. Returns
    the tokens."""
    first = None
    for i in range(n):
        toks = w.listed(team, user, f"{what}: list {i + 1} of {n}")
        if first is None:
            first = toks
        assert toks == first, (
            f"{what}: list {i + 1} differs from list 1 (a thread served an old copy?):\n"
            f"  list 1: {ids(first)}\n  list {i + 1}: {ids(toks)}")
    return first


def status_after(w, team, user, status, what, n=AFTER):
    """Lists n times; each must answer status. Returns the last body."""
    body = None
    for i in range(n):
        body = expect_json(w.list(team, user), status, f"{what}: list {i + 1} of {n}")
    return body


def db_write(db, sql, params=()):
    """One write by another process's connection (autocommit), as an operator's
    sqlite3 or psql shell would make it. Returns the number of rows changed."""
    with dbsql.connect(db) as con:
        return con.execute(sql, params).rowcount


def wait_reloads(srv, count, timeout=30.0):  # bounds a hang only
    """Waits until the server has logged count key reloads."""
    ok = wait_until(lambda: sum(RELOADED in ln for ln in list(srv.err_lines)) >= count,
                    timeout=timeout)
    assert ok, f"no '{RELOADED}' line #{count} within {timeout}s\n{srv.tail()}"


@pytest.fixture(scope="module")
def world(module_factory):
    inst, srv = module_factory.server(env={"TOKEND_SERVER_THREADS": THREADS},
                                      label="list-cache server")
    return World(inst, srv)


@pytest.fixture
def w(world):
    if not world.srv.alive():
        world.srv = world.inst.start(label="list-cache server (restarted after a crash)")
    return world


# --------------------------------------------------------------------------
# changes through the API


def test_issue_then_list_shows_it_at_once(w):
    team = w.team()
    u = w.user(team)
    _, toks = warm(w, team, u, "empty listing")
    assert toks == [], toks
    first = w.issued(team, u, "first token", json={"name": "first"})
    got = listed_after(w, team, u, "after the first issue")
    assert ids(got) == [first["token_issuer_uuid"]], (
        f"a warm empty listing must not hide the token just issued: {ids(got)}")
    assert got[0]["access_token"] == first["access_token"]

    warm(w, team, u, "one token")
    second = w.issued(team, u, "second token", json={"name": "second"})
    got = listed_after(w, team, u, "after the second issue")
    assert ids(got) == [second["token_issuer_uuid"], first["token_issuer_uuid"]], (
        f"the new token must be listed at once, newest first: {ids(got)}")


def test_delete_by_id_and_by_token_hides_it_at_once(w):
    team = w.team()
    u = w.user(team)
    toks = [w.issued(team, u, json={"name": f"d{i}"}) for i in range(3)]
    want = list(reversed(ids(toks)))
    _, got = warm(w, team, u, "three tokens")
    assert ids(got) == want

    assert w.deleted(team, u, {"token_issuer_uuids": [toks[0]["token_issuer_uuid"]]}) == (1, 1)
    want.remove(toks[0]["token_issuer_uuid"])
    assert ids(listed_after(w, team, u, "after delete by id")) == want, (
        "a token deleted by id must leave the list at once")

    warm(w, team, u, "two tokens")
    assert w.deleted(team, u, {"access_tokens": [toks[2]["access_token"]]}) == (1, 1)
    want.remove(toks[2]["token_issuer_uuid"])
    assert ids(listed_after(w, team, u, "after delete by token string")) == want, (
        "a token deleted by its string must leave the list at once")

    warm(w, team, u, "one token")
    assert w.deleted(team, u, {"token_issuer_uuids": [toks[1]["token_issuer_uuid"]]}) == (1, 1)
    assert listed_after(w, team, u, "after deleting the last one") == []


def test_repeated_lists_are_byte_identical(w):
    t1, t2 = w.team(), w.team()
    u = w.user(t1, t2)
    other = w.user(t1)
    for i in range(3):
        w.issued(t1, u, json={"name": f"n{i}"})
    body, _ = warm(w, t1, u, "three tokens", n=12)
    # changes to other listings: another user in the team, the user in another team
    w.issued(t1, other)
    w.issued(t2, u)
    for i in range(AFTER):
        r = w.list(t1, u)
        expect_json(r, 200, f"after others' changes: list {i + 1}")
        assert r.content == body, (
            f"nothing in this listing changed, so it must stay byte-identical; list {i + 1}:\n"
            f"  before: {body[:300]!r}\n  after:  {r.content[:300]!r}")


# Expiry needs the real clock (the server's, in whole seconds). The margins
# are generous so that a slow (ASan, loaded 2-core) run cannot cross an
# expiry before the step that needs the token still live; the waits are
# lower bounds (the clock has passed the expiry), so what is asserted is the
# outcome: which tokens the list holds on either side of each expiry.
EXPIRY_MARGIN = 8  # seconds between "now" and the first expiry, and between the two


def wait_past(t):
    """Sleep until the wall clock is past t (a lower bound, however slow)."""
    while time.time() < t:
        time.sleep(0.02)


def test_expired_token_leaves_warm_list(w):
    team = w.team()
    u = w.user(team)
    keep = w.issued(team, u, "long-lived", json={"name": "keep"})
    now = int(time.time())
    exp1 = now + EXPIRY_MARGIN
    exp2 = exp1 + EXPIRY_MARGIN
    short1 = w.issued(team, u, "expires first", json={"expires_at": rfc3339(exp1)})
    short2 = w.issued(team, u, "expires next", json={"expires_at": rfc3339(exp2)})
    _, got = warm(w, team, u, "before any expiry")
    assert time.time() < exp1, f"setup took over {EXPIRY_MARGIN}s: the warm list was read after the first expiry"
    assert set(ids(got)) == {keep["token_issuer_uuid"], short1["token_issuer_uuid"],
                             short2["token_issuer_uuid"]}, ids(got)

    wait_past(exp1 + 0.05)
    got = listed_after(w, team, u, "just after the first expiry")
    assert time.time() < exp2, f"listing took over {EXPIRY_MARGIN}s: read after the second expiry too"
    assert ids(got) == [short2["token_issuer_uuid"], keep["token_issuer_uuid"]], (
        f"a token must leave the list the moment it expires, warm copies or not: {ids(got)}")

    wait_past(exp2 + 0.05)
    got = listed_after(w, team, u, "just after the second expiry")
    assert ids(got) == [keep["token_issuer_uuid"]], (
        f"the copies built after the first expiry must not outlive the second: {ids(got)}")


# --------------------------------------------------------------------------
# changes by another process


def test_row_deleted_by_another_process(w):
    team = w.team()
    u = w.user(team)
    toks = [w.issued(team, u, json={"name": f"x{i}"}) for i in range(3)]
    warm(w, team, u, "three tokens")
    gone = toks[1]["token_issuer_uuid"]
    assert db_write(w.inst.database, "DELETE FROM api_tokens WHERE jti = ?", (gone,)) == 1
    got = listed_after(w, team, u, "after a DELETE in sqlite3")
    assert ids(got) == [toks[2]["token_issuer_uuid"], toks[0]["token_issuer_uuid"]], (
        f"a row deleted by another process must leave the list at once: {ids(got)}")


def test_row_renamed_by_another_process(w):
    team = w.team()
    u = w.user(team)
    a = w.issued(team, u, json={"name": "alpha"})
    b = w.issued(team, u, json={"name": "beta"})
    _, got = warm(w, team, u, "two named tokens")
    assert [t["name"] for t in got] == ["beta", "alpha"], got
    new_name = 'renamed "\u00fc" \\ by hand'
    assert db_write(w.inst.database, "UPDATE api_tokens SET name = ? WHERE jti = ?",
                    (new_name, a["token_issuer_uuid"])) == 1
    got = listed_after(w, team, u, "after an UPDATE in sqlite3")
    assert ids(got) == [b["token_issuer_uuid"], a["token_issuer_uuid"]], ids(got)
    assert [t["name"] for t in got] == ["beta", new_name], (
        f"a name changed by another process must be listed at once: {[t['name'] for t in got]}")
    assert got[1]["access_token"] == a["access_token"], "the token itself did not change"


def test_row_replaced_by_another_process(w):
    """INSERT OR REPLACE removes the colliding row without its DELETE trigger:
    the listing it was in must still change at once."""
    team = w.team()
    a_user = w.user(team)
    b_user = w.user(team)
    t = w.issued(team, a_user, json={"name": "mine"})
    _, got = warm(w, team, a_user, "one token")
    assert ids(got) == [t["token_issuer_uuid"]], got
    # SQLite's REPLACE; PostgreSQL has none: its upsert is the nearest
    replace = ("INSERT OR REPLACE INTO" if w.inst.backend == "sqlite" else "INSERT INTO")
    upsert = ("" if w.inst.backend == "sqlite" else
              " ON CONFLICT (jti) DO UPDATE SET user_uuid = excluded.user_uuid, name = excluded.name")
    changed = db_write(w.inst.database,
                       f"{replace} api_tokens (jti, digest, user_uuid, team_uuid, kid, "
                       "name, issued_at, updated_at, expires_at) SELECT jti, digest, ?, team_uuid, "
                       "kid, 'moved', issued_at, updated_at, expires_at FROM api_tokens "
                       f"WHERE jti = ?{upsert}", (b_user.uid, t["token_issuer_uuid"]))
    assert changed == 1
    got = listed_after(w, team, a_user, "after its row was replaced by another user's")
    assert got == [], f"a token replaced away by another process must leave the list at once: {got}"


# --------------------------------------------------------------------------
# signing keys


def test_retired_key_tokens_leave_warm_list(factory):
    inst, srv = factory.server(env={"TOKEND_SERVER_THREADS": THREADS}, label="list-cache keys")
    w = World(inst, srv)
    team = w.team()
    u = w.user(team)
    k1 = current_kid(inst)
    old = [w.issued(team, u, json={"name": f"old{i}"}) for i in range(2)]
    assert {header_of(t["access_token"])["kid"] for t in old} == {k1}
    body, got = warm(w, team, u, "tokens of the first key")
    assert ids(got) == list(reversed(ids(old)))

    # a rotation alone: the old tokens stay listed, byte for byte
    k2 = rotate(inst)
    srv.send_signal(signal.SIGHUP)
    wait_reloads(srv, 1)
    for i in range(AFTER):
        r = w.list(team, u)
        expect_json(r, 200, f"after rotate + SIGHUP: list {i + 1}")
        assert r.content == body, (
            f"a rotation must not change the listing of the old key's tokens:\n"
            f"  before: {body[:300]!r}\n  after:  {r.content[:300]!r}")

    new = w.issued(team, u, "token of the new key", json={"name": "new"})
    assert header_of(new["access_token"])["kid"] == k2
    _, got = warm(w, team, u, "tokens of both keys")
    assert ids(got) == [new["token_issuer_uuid"]] + list(reversed(ids(old)))

    # retiring the old key (it signed live tokens: --force) and reloading
    inst.cli_ok("key", "retire", k1, "--force")
    srv.send_signal(signal.SIGHUP)
    wait_reloads(srv, 2)
    w.login(u)  # the caller's access token was signed by the retired key too
    got = listed_after(w, team, u, "after retire --force + SIGHUP")
    assert ids(got) == [new["token_issuer_uuid"]], (
        f"tokens of the retired key {k1} must leave the list at once, the new key's "
        f"token stays: {ids(got)}")
    assert got[0]["access_token"] == new["access_token"]


# --------------------------------------------------------------------------
# the caller's standing


def test_removed_member_gets_403_at_once(w):
    t1, t2 = w.team(), w.team()
    u = w.user(t1, t2)
    k1 = w.issued(t1, u)
    k2 = w.issued(t2, u)
    body1, _ = warm(w, t1, u, "team 1")
    body2, _ = warm(w, t2, u, "team 2")
    w.inst.cli_ok("team", "remove-member", t1, u.name)
    assert status_after(w, t1, u, 403, "after remove-member") == FORBIDDEN
    got = listed_after(w, t2, u, "the other team after remove-member")
    assert ids(got) == [k2["token_issuer_uuid"]], ids(got)
    # added again: the removal deleted the tokens (issue 10), and no thread
    # may serve its warm copy of the old listing
    w.add_member(t1, u)
    for i in range(AFTER):
        r = w.list(t1, u)
        expect_json(r, 200, f"after add-member again: list {i + 1}")
        assert r.content != body1, "a cached listing of deleted tokens was served"
        assert r.json() == {"tokens": []}, r.text
    assert k1["token_issuer_uuid"] not in ids(w.listed(t1, u))
    assert w.list(t2, u).content == body2


def test_removed_member_without_tokens_gets_403_at_once(w):
    # an empty listing (the user never had a token in the team) is warm too
    team = w.team()
    u = w.user(team)
    _, toks = warm(w, team, u, "empty listing")
    assert toks == []
    w.inst.cli_ok("team", "remove-member", team, u.name)
    assert status_after(w, team, u, 403, "empty listing after remove-member") == FORBIDDEN, (
        "a removed member must get 403, not the warm empty listing")


def test_disabled_user_gets_401_at_once(w):
    t1, t2 = w.team(), w.team()
    u = w.user(t1, t2)
    w.issued(t1, u)
    w.issued(t2, u)
    body1, _ = warm(w, t1, u, "team 1")
    warm(w, t2, u, "team 2")
    w.inst.cli_ok("user", "disable", u.name)
    for team in (t1, t2):
        for i in range(AFTER):
            r = w.list(team, u)
            body = expect_json(r, 401, f"disabled user: list {i + 1}")
            assert body == INACTIVE, f"a disabled user's list must be 401 user_inactive: {body!r}"
    # enabled again: the disable ended the session (issue 10), so log in
    # again; the API tokens were kept and are listed as before
    w.inst.cli_ok("user", "enable", u.name)
    expect_json(w.list(t1, u), 401, "enabled again, the old session")
    w.login(u)
    r = w.list(t1, u)
    expect_json(r, 200, "enabled again, a new login")
    assert r.content == body1, "enabled again: the same listing"


# --------------------------------------------------------------------------
# isolation


def test_users_and_teams_never_share_a_listing(w):
    ta, tb = w.team(), w.team()
    a = w.user(ta)
    b = w.user(ta, tb)   # one user in two teams
    c = w.user(ta)       # in the same team, without tokens
    want = {
        (ta, a.uid): [w.issued(ta, a, json={"name": "a-in-ta"})["token_issuer_uuid"]],
        (ta, b.uid): [w.issued(ta, b, json={"name": "b-in-ta"})["token_issuer_uuid"]],
        (tb, b.uid): [w.issued(tb, b, json={"name": "b-in-tb"})["token_issuer_uuid"]],
        (ta, c.uid): [],
    }
    users = {a.uid: a, b.uid: b, c.uid: c}

    def check_all(what):
        # interleaved, over fresh connections: every thread sees every key
        for rnd in range(WARM):
            for (team, uid), expect in want.items():
                got = ids(w.listed(team, users[uid], f"{what}: round {rnd + 1}"))
                assert got == expect, (
                    f"{what}: round {rnd + 1}: user {users[uid].name} in team {team} "
                    f"must see {expect}, got {got}")

    check_all("warm")
    # one listing changes; the others must neither change nor borrow it
    extra = w.issued(ta, b, json={"name": "b-in-ta-2"})
    want[(ta, b.uid)].insert(0, extra["token_issuer_uuid"])
    check_all("after b issues in ta")
    assert expect_json(w.list(tb, a), 403, "a is not in tb") == FORBIDDEN
    assert expect_json(w.list(tb, c), 403, "c is not in tb") == FORBIDDEN
