"""Several instances on one PostgreSQL database (issue 13, API.md
"Deployment shapes"): two tokend processes, A and B, on one database and
one key directory, addressed directly and through a real nginx round-robin
upstream (proxy.py), behave as one service.

What each test proves:
- test_concurrent_refresh_one_rotation: 50 simultaneous refreshes of one
  refresh token, spread over A, B and nginx, rotate it exactly once (one
  new refresh row in the database, the rotated counter 1 summed over both)
  and every answer is 201 with the pair of that rotation (the grace
  window's replays are the same strings).
- test_concurrent_refresh_without_grace: the same with
  tokens.refresh_grace = 0: exactly one 201, every other answer 401, never
  two different pairs; the reuse revoked the family, so the new refresh
  token fails too; one new refresh row, revoked.
- test_api_token_cap_across_instances: concurrent issues on both instances
  never leave more than tokens.api_max_tokens live; exactly the cap get 201
  and the rest 409, as API.md says.
- test_revocation_holds_on_the_other_instance: a deletion on A fails
  verify and Bearer use (forward auth) on B with the very next request; so
  does a logout on A for the access token on B; `tokend user disable`
  through the CLI on the PostgreSQL URL fails logins, verify and Bearer use
  on both.
- test_password_never_logged: a password in the postgresql:// URL (and in
  PGPASSWORD) appears in no log line and no CLI output: "***" stands in.
- test_key_rollover_shared_dir: `tokend key add` + `tokend key use` on the
  shared directory, no signal: A signs with the new key within
  keys.reload_interval, B verifies those tokens, both JWKS list the key.
- test_list_cache_sees_other_instance: a listing cached on B is never
  served after A issued or deleted a token in it.

Each test has its own database on a PostgreSQL server started for this
module (tests/pgtmp.py); the module skips only when initdb is missing.
No assertion is on a duration: waits poll for a condition, and their
deadlines only bound a hang."""

import sys
import threading
import uuid as uuidlib
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: pgtmp
import pgtmp  # noqa: E402

import dbsql  # noqa: E402
from conftest import (HTTP_TIMEOUT, claims_of, expect_invalid, expect_json,  # noqa: E402
                      expect_tokens, header_of)
from proxy import Nginx  # noqa: E402
from test_keys import JWKS, KID_RE, current_kid, wait_until  # noqa: E402
from test_metrics import parse, scrape, value  # noqa: E402

if not pgtmp.available():
    pytest.skip(f"PostgreSQL's initdb is missing ({pgtmp.PG_BIN / 'initdb'}): "
                "install postgresql-15 to run the several-instances tests",
                allow_module_level=True)

DEADLINE = 30.0  # seconds: bounds a hang, never a measurement
PASSWORD = "several instances password"
REFRESH = "/api/auth/jwt/refresh/"
VERIFY = "/api/auth/jwt/verify/"
LOGOUT = "/api/auth/jwt/blacklist/"
FORWARD = "/api/auth/forward/"
# Both instances behind nginx on loopback: believe 127.0.0.1's
# X-Forwarded-For, and no in-flight cap per client (every test client is
# 127.0.0.1, and 50 requests at once are the point).
ENV = {"TOKEND_SERVER_TRUSTED_PROXIES": "127.0.0.1",
       "TOKEND_SERVER_PER_CLIENT_REQUESTS": "0",
       "TOKEND_KEYS_RELOAD_INTERVAL": "1"}


@pytest.fixture(scope="module")
def pg():
    with pgtmp.PgTmp() as server:
        yield server


def use_database(inst, url):
    """inst (a conftest.Tokend) runs on `url`, a database of this module's server."""
    inst.db, inst.database = None, url


class Cluster:
    """A and B on one fresh database and one key directory, and nginx in
    front of both (round robin)."""

    def __init__(self, factory, pg, tmp_path, env=None):
        self.url = pg.create_database(f"t_{uuidlib.uuid4().hex[:12]}")
        env = {**ENV, **(env or {})}
        self.a = factory(env=env, label="A")
        use_database(self.a, self.url)
        self.sa = self.a.start(label="A")
        self.b = factory(env=env, label="B")
        use_database(self.b, self.url)
        self.b.keys = self.a.keys
        self.sb = self.b.start(label="B")
        self.ngx = Nginx(tmp_path, upstreams=[self.sa.port, self.sb.port]).start()
        self.targets = [self.sa.url, self.sb.url, self.ngx.url]

    def stop(self):
        self.ngx.stop()

    def user(self, team=None):
        name = f"u-{uuidlib.uuid4().hex[:10]}"
        uid = self.a.add_user(name, PASSWORD)
        if team:
            self.a.cli_ok("team", "add-member", team, name)
        return name, uid

    def team(self):
        return self.a.cli_ok("team", "add", f"t-{uuidlib.uuid4().hex[:10]}").out.strip()

    def rows(self, sql, params=()):
        return dbsql.rows(self.url, sql, params)


@pytest.fixture
def cluster(factory, pg, tmp_path):
    made = []

    def make(env=None):
        c = Cluster(factory, pg, tmp_path, env)
        made.append(c)
        return c
    yield make
    for c in made:
        c.stop()


def post(url_of, path, **kw):
    return requests.post(url_of(path), timeout=HTTP_TIMEOUT, **kw)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def metric_sum(servers, name, **labels):
    return sum(value(parse(scrape(s))[0], name, **labels) for s in servers)


def burst(n, fn):
    """Runs fn(i) in n threads released together; returns the results in i order."""
    barrier = threading.Barrier(n)
    out = [None] * n

    def run(i):
        barrier.wait(DEADLINE)
        try:
            out[i] = fn(i)
        except requests.RequestException as e:
            out[i] = e
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE * 2)
    assert not any(t.is_alive() for t in threads), "a request hung"
    return out


# ---------------------------------------------------------------- refresh

def concurrent_refreshes(c, token, n=50):
    return burst(n, lambda i: post(c.targets[i % 3], REFRESH, json={"refresh": token}))


def test_concurrent_refresh_one_rotation(cluster):
    c = cluster()
    name, _ = c.user()
    pair = expect_tokens(c.sa.login(name, PASSWORD))
    family = claims_of(pair["refresh"])["sid"]
    answers = concurrent_refreshes(c, pair["refresh"])
    errors = [a for a in answers if isinstance(a, Exception)]
    assert not errors, errors[:3]
    statuses = sorted({a.status_code for a in answers})
    assert statuses == [201], f"every refresh within the grace window is 201: {statuses} " \
        f"{[a.text[:120] for a in answers if a.status_code != 201][:3]}"
    pairs = {(a.json()["refresh"], a.json()["access"]) for a in answers}
    assert len(pairs) == 1, f"{len(pairs)} different pairs from one rotation"
    new_refresh, new_access = pairs.pop()
    assert new_refresh != pair["refresh"]
    # exactly one rotation: one new row in the family, counted once
    rows = c.rows("SELECT jti, used_at, revoked FROM refresh_tokens WHERE family = ?", (family,))
    assert len(rows) == 2, f"one new refresh row, got {len(rows) - 1}: {rows}"
    assert metric_sum([c.sa, c.sb], "tokend_refresh_total", outcome="rotated") == 1
    assert metric_sum([c.sa, c.sb], "tokend_refresh_total", outcome="grace_replay") == 49
    assert metric_sum([c.sa, c.sb], "tokend_refresh_total", outcome="reuse_revoked") == 0
    for s in (c.sa, c.sb):  # both answered: a third each directly, and nginx's share
        assert metric_sum([s], "tokend_http_requests_total", route=REFRESH, status="201") >= 16
    # the pair works on both instances, and the session is live
    for s in (c.sa, c.sb):
        assert s.post(VERIFY, json={"token": new_access}).status_code == 201
    expect_tokens(c.sb.post(REFRESH, json={"refresh": new_refresh}), "refresh the new token")


def test_concurrent_refresh_without_grace(cluster):
    c = cluster({"TOKEND_TOKENS_REFRESH_GRACE": "0"})
    name, _ = c.user()
    pair = expect_tokens(c.sa.login(name, PASSWORD))
    family = claims_of(pair["refresh"])["sid"]
    answers = concurrent_refreshes(c, pair["refresh"])
    errors = [a for a in answers if isinstance(a, Exception)]
    assert not errors, errors[:3]
    ok = [a for a in answers if a.status_code == 201]
    assert len(ok) == 1, f"exactly one rotation may answer 201, {len(ok)} did"
    for a in answers:
        if a.status_code != 201:
            expect_invalid(a, "a reuse without grace")
    new = ok[0].json()
    # the reuses revoked the family: the new tokens fail on both instances
    for s in (c.sa, c.sb):
        expect_invalid(s.post(REFRESH, json={"refresh": new["refresh"]}), f"{s.label}: new refresh")
        expect_invalid(s.post(VERIFY, json={"token": new["access"]}), f"{s.label}: new access")
    rows = c.rows("SELECT jti, revoked FROM refresh_tokens WHERE family = ?", (family,))
    assert len(rows) == 2, f"one new refresh row, got {len(rows) - 1}: {rows}"
    assert all(r["revoked"] == 1 for r in rows), rows
    assert metric_sum([c.sa, c.sb], "tokend_refresh_total", outcome="rotated") == 1
    assert metric_sum([c.sa, c.sb], "tokend_refresh_total", outcome="grace_replay") == 0


# ---------------------------------------------------------------- API tokens

CAP = 5


def test_api_token_cap_across_instances(cluster):
    c = cluster({"TOKEND_TOKENS_API_MAX_TOKENS": str(CAP)})
    team = c.team()
    name, uid = c.user(team)
    access = expect_tokens(c.sa.login(name, PASSWORD))["access"]
    path = f"/api/openapi/token/{team}/"
    n = 30
    answers = burst(n, lambda i: post(c.targets[i % 3], path, headers=bearer(access),
                                      json={"name": f"cap-{i}"}))
    errors = [a for a in answers if isinstance(a, Exception)]
    assert not errors, errors[:3]
    codes = [a.status_code for a in answers]
    assert set(codes) <= {201, 409}, f"only 201 or 409: {sorted(set(codes))} " \
        f"{[a.text[:120] for a in answers if a.status_code not in (201, 409)][:3]}"
    assert codes.count(201) == CAP, f"{codes.count(201)} issued, cap {CAP}"
    for a in answers:
        if a.status_code == 409:
            expect_json(a, 409, "over the cap")
    live = c.rows("SELECT jti FROM api_tokens WHERE user_uuid = ? AND team_uuid = ?",
                  (uid, team))
    assert len(live) == CAP, f"{len(live)} rows live, cap {CAP}"
    issued = sorted(a.json()["token_issuer_uuid"] for a in answers if a.status_code == 201)
    assert sorted(r["jti"] for r in live) == issued
    for s in (c.sa, c.sb):
        body = expect_json(s.request("GET", path, headers=bearer(access)), 200, "list")
        assert sorted(t["token_issuer_uuid"] for t in body["tokens"]) == issued
        expect_json(s.post(path, headers=bearer(access), json={}), 409, f"{s.label}: at the cap")


# ---------------------------------------------------------------- revocation

def forward(srv, token):
    return srv.request("GET", FORWARD, headers=bearer(token))


def test_revocation_holds_on_the_other_instance(cluster):
    c = cluster()
    team = c.team()
    name, _ = c.user(team)
    pair = expect_tokens(c.sa.login(name, PASSWORD))
    path = f"/api/openapi/token/{team}/"

    # an API token deleted on A
    tok = expect_json(c.sa.post(path, headers=bearer(pair["access"])), 201, "issue")
    api = tok["access_token"]
    assert c.sb.post(VERIFY, json={"token": api}).status_code == 201
    assert forward(c.sb, api).status_code == 200
    deleted = expect_json(c.sa.post(path + "delete/", headers=bearer(pair["access"]),
                                    json={"token_issuer_uuids": [tok["token_issuer_uuid"]]}),
                          200, "delete on A")
    assert deleted == {"requested_count": 1, "deleted_count": 1}
    expect_invalid(c.sb.post(VERIFY, json={"token": api}), "B: verify a token deleted on A")
    assert forward(c.sb, api).status_code == 401, "B: Bearer use of a token deleted on A"

    # a logout on A
    assert c.sb.post(VERIFY, json={"token": pair["access"]}).status_code == 201
    assert forward(c.sb, pair["access"]).status_code == 200
    expect_json(c.sa.post(LOGOUT, json={"refresh": pair["refresh"]}), 200, "logout on A")
    expect_invalid(c.sb.post(VERIFY, json={"token": pair["access"]}),
                   "B: verify an access token logged out on A")
    assert forward(c.sb, pair["access"]).status_code == 401
    assert c.sb.request("GET", path, headers=bearer(pair["access"])).status_code == 401

    # `tokend user disable` through the CLI, on the PostgreSQL URL
    p2 = expect_tokens(c.sb.login(name, PASSWORD))
    api2 = expect_json(c.sb.post(path, headers=bearer(p2["access"])), 201, "issue")["access_token"]
    for s in (c.sa, c.sb):
        assert s.post(VERIFY, json={"token": p2["access"]}).status_code == 201
        assert forward(s, api2).status_code == 200
    assert c.a.global_args()[:2] == ["--database", c.url], "the CLI runs on the PostgreSQL URL"
    c.a.cli_ok("user", "disable", name)
    for s in (c.sa, c.sb):
        expect_invalid(s.post(VERIFY, json={"token": p2["access"]}), f"{s.label}: disabled access")
        expect_invalid(s.post(VERIFY, json={"token": api2}), f"{s.label}: disabled API token")
        assert forward(s, p2["access"]).status_code == 401
        assert forward(s, api2).status_code == 401
        assert s.login(name, PASSWORD).status_code == 401
        body = expect_json(s.post(REFRESH, json={"refresh": p2["refresh"]}), 401,
                           f"{s.label}: refresh of a disabled user")
        assert body["code"] == "no_active_account", body
    for s in (c.sa, c.sb):
        s.assert_alive("revocation across instances")


# ---------------------------------------------------------------- keys

def test_key_rollover_shared_dir(cluster):
    c = cluster()
    name, _ = c.user()
    k1 = current_kid(c.a)
    k2 = c.a.cli_ok("key", "add", "--alg", "ES256").out.strip()
    assert KID_RE.match(k2)

    def kids(s):
        return sorted(k["kid"] for k in expect_json(s.request("GET", JWKS), 200)["keys"])
    for s in (c.sa, c.sb):
        assert wait_until(lambda: kids(s) == [k2], DEADLINE), f"{s.label}: JWKS\n{s.tail()}"
    assert header_of(expect_tokens(c.sa.login(name, PASSWORD))["access"])["kid"] == k1
    c.a.cli_ok("key", "use", k2)
    assert wait_until(lambda: header_of(expect_tokens(c.sa.login(name, PASSWORD))["access"])
                      ["kid"] == k2, DEADLINE), c.sa.tail()
    pair = expect_tokens(c.sa.login(name, PASSWORD))
    assert header_of(pair["access"])["kid"] == k2
    assert c.sb.post(VERIFY, json={"token": pair["access"]}).status_code == 201
    expect_tokens(c.sb.post(REFRESH, json={"refresh": pair["refresh"]}), "B refreshes A's token")
    for s in (c.sa, c.sb):
        assert kids(s) == [k2]
        assert not [ln for ln in s.err_lines if "SIGHUP" in ln], "no signal was sent"


# ---------------------------------------------------------------- list cache

def test_list_cache_sees_other_instance(cluster):
    c = cluster({"TOKEND_SERVER_THREADS": "2"})
    team = c.team()
    name, _ = c.user(team)
    access = expect_tokens(c.sa.login(name, PASSWORD))["access"]
    path = f"/api/openapi/token/{team}/"
    first = expect_json(c.sa.post(path, headers=bearer(access)), 201, "issue on A")

    def listed(s):
        body = expect_json(s.request("GET", path, headers=bearer(access)), 200, "list")
        return [t["token_issuer_uuid"] for t in body["tokens"]]
    with requests.Session() as keep:  # one connection and fresh ones: every B thread warms
        for _ in range(8):
            assert listed(c.sb) == [first["token_issuer_uuid"]]
            r = keep.get(c.sb.url(path), headers=bearer(access), timeout=HTTP_TIMEOUT)
            assert [t["token_issuer_uuid"] for t in r.json()["tokens"]] == \
                [first["token_issuer_uuid"]]
        second = expect_json(c.sa.post(path, headers=bearer(access)), 201, "issue on A")
        want = [second["token_issuer_uuid"], first["token_issuer_uuid"]]
        for _ in range(8):
            assert listed(c.sb) == want, "B served a listing A had changed"
            r = keep.get(c.sb.url(path), headers=bearer(access), timeout=HTTP_TIMEOUT)
            assert [t["token_issuer_uuid"] for t in r.json()["tokens"]] == want
        expect_json(c.sa.post(path + "delete/", headers=bearer(access),
                              json={"token_issuer_uuids": [first["token_issuer_uuid"]]}),
                    200, "delete on A")
        for _ in range(8):
            assert listed(c.sb) == [second["token_issuer_uuid"]], "B served a deleted token"
            r = keep.get(c.sb.url(path), headers=bearer(access), timeout=HTTP_TIMEOUT)
            assert [t["token_issuer_uuid"] for t in r.json()["tokens"]] == \
                [second["token_issuer_uuid"]]
    # through nginx too, alternating between the two
    for _ in range(4):
        r = requests.get(c.ngx.url(path), headers=bearer(access), timeout=HTTP_TIMEOUT)
        assert [t["token_issuer_uuid"] for t in r.json()["tokens"]] == \
            [second["token_issuer_uuid"]]


# ---------------------------------------------------------------- the setting

def test_password_never_logged(factory, pg):
    """The README's setting: a password in the URL (or PGPASSWORD) reaches
    libpq, never the log or the CLI's output. (The test server trusts the
    socket, so any password connects.)"""
    secret = f"pw-{uuidlib.uuid4().hex}"
    db = f"t_{uuidlib.uuid4().hex[:12]}"
    pg.create_database(db)
    inst = factory(env={**ENV, "PGPASSWORD": secret + "-env"}, label="password")
    use_database(inst, pg.url_of(db).replace("postgresql://tokend@",
                                             f"postgresql://tokend:{secret}@"))
    assert secret in inst.database
    res = inst.cli_ok("migrate")
    inst.add_user("p-user", PASSWORD)
    srv = inst.start(label="password")
    expect_tokens(srv.login("p-user", PASSWORD))
    assert srv.stop() == 0
    text = srv.stderr() + srv.stdout() + res.out + res.err
    assert "database" in text and "***" in text, text[-2000:]
    assert secret not in text, "the password reached the log"
