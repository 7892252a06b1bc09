"""GET /metrics (API.md "Around the six routes"): the Prometheus text format,
served to the [metrics] allowed addresses only (others get the JSON 404),
off with [metrics] enabled = false. The counters move exactly as requests
are made; the histogram agrees with the counter; promtool accepts a scrape
taken after traffic of every kind."""

import re
import shutil
import subprocess
import threading

import pytest

from conftest import LOGIN, expect_json, expect_tokens

CTYPE = "text/plain; version=0.0.4; charset=utf-8"
LINE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """{(name, ((label, value), ...)): float} and {name: type}."""
    samples, types = {}, {}
    for ln in text.splitlines():
        if ln.startswith("# TYPE "):
            _, _, name, kind = ln.split(" ", 3)
            types[name] = kind
            continue
        if not ln or ln.startswith("#"):
            continue
        m = LINE_RE.match(ln)
        assert m, f"not an exposition line: {ln!r}"
        labels = tuple(sorted(LABEL_RE.findall(m.group(2) or "")))
        key = (m.group(1), labels)
        assert key not in samples, f"duplicate series {ln!r}"
        samples[key] = float(m.group(3))
    return samples, types


def scrape(s):
    r = s.request("GET", "/metrics")
    assert r.status_code == 200, f"GET /metrics: {r.status_code} {r.text[:200]!r}"
    assert r.headers.get("Content-Type") == CTYPE, r.headers
    return r.text


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def requests_of(samples, route, status):
    return value(samples, "tokend_http_requests_total", route=route, status=str(status))


@pytest.fixture
def team_server(factory):
    inst = factory()
    inst.add_user("mia", "mia-password")
    team = inst.cli_ok("team", "add", "metrics-team").out.strip()
    inst.cli_ok("team", "add-member", "metrics-team", "mia")
    s = inst.start()
    return inst, s, team


def traffic(s, team):
    """One of every kind; returns what it did, by (route, status)."""
    done = {}

    def count(route, r):
        done[(route, r.status_code)] = done.get((route, r.status_code), 0) + 1
        return r

    pair = expect_tokens(count(LOGIN, s.login("mia", "mia-password")))
    count(LOGIN, s.login("mia", "wrong"))
    count(LOGIN, s.login("nobody", "wrong"))
    new = count("/api/auth/jwt/refresh/",
                s.post("/api/auth/jwt/refresh/", json={"refresh": pair["refresh"]}))
    assert new.status_code == 201, new.text
    # the same token again within the grace window: the same pair
    assert count("/api/auth/jwt/refresh/",
                 s.post("/api/auth/jwt/refresh/", json={"refresh": pair["refresh"]})
                 ).status_code == 201
    for _ in range(3):
        assert count("/api/auth/jwt/verify/",
                     s.post("/api/auth/jwt/verify/", json={"token": pair["access"]})
                     ).status_code == 201
    auth = {"Authorization": "Bearer " + pair["access"]}
    tpath = "/api/openapi/token/{team}/"
    path = f"/api/openapi/token/{team}/"
    issued = count(tpath, s.post(path, headers=auth, json={"name": "m"}))
    assert issued.status_code == 201, issued.text
    count(tpath, s.post(path, headers=auth, json={"name": "m2"}))
    assert count(tpath, s.request("GET", path, headers=auth)).status_code == 200
    d = count("/api/openapi/token/{team}/delete/",
              s.post(path + "delete/", headers=auth,
                     json={"token_issuer_uuids": [issued.json()["token_issuer_uuid"]]}))
    assert d.json() == {"requested_count": 1, "deleted_count": 1}, d.text
    assert count(tpath, s.request("GET", path)).status_code == 401
    assert count("unmatched", s.request("GET", "/nope/" + "x" * 50)).status_code == 404
    assert count("unmatched", s.request("GET", "/api/unknown?a=b")).status_code == 404
    assert count("unmatched", s.request("GET", LOGIN)).status_code == 405
    assert count(LOGIN, s.post(LOGIN, data=b"x" * 70000,
                               headers={"Content-Type": "application/json"})).status_code == 413
    assert count("/healthz", s.request("GET", "/healthz")).status_code == 200
    assert count("/readyz", s.request("GET", "/readyz")).status_code == 200
    return done


def test_content_type_and_build_info(srv):
    text = scrape(srv)
    samples, types = parse(text)
    assert value(samples, "tokend_build_info", version="0.1.0") == 1, text[:500]
    assert types.get("tokend_http_requests_total") == "counter"
    assert types.get("tokend_http_request_duration_seconds") == "histogram"
    for outcome in ("success", "failure", "throttled", "queue_full"):
        assert ("tokend_logins_total", (("outcome", outcome),)) in samples, outcome
    for outcome in ("rotated", "grace_replay", "reuse_revoked", "session_ended"):
        assert ("tokend_refresh_total", (("outcome", outcome),)) in samples, outcome
    for name in ("tokend_api_tokens_issued_total", "tokend_api_tokens_deleted_total",
                 "tokend_store_errors_total", "tokend_store_commits_total",
                 "tokend_hash_queue_depth",
                 "tokend_hash_workers_busy", "tokend_open_connections"):
        assert (name, ()) in samples, f"{name} missing from\n{text}"
    assert value(samples, "tokend_open_connections") >= 1, "the scrape's own connection"
    assert value(samples, "tokend_logins_total", outcome="throttled") == 0


def test_head_metrics(srv):
    r = srv.request("HEAD", "/metrics")
    assert r.status_code == 200 and r.content == b""
    assert r.headers.get("Content-Type") == CTYPE


def test_counters_move_exactly(team_server):
    inst, s, team = team_server
    before, _ = parse(scrape(s))
    done = traffic(s, team)
    after, _ = parse(scrape(s))
    for (route, status), n in done.items():
        got = requests_of(after, route, status) - requests_of(before, route, status)
        assert got == n, f"requests {route} {status}: +{got}, made {n}"
    assert requests_of(after, "/metrics", 200) - requests_of(before, "/metrics", 200) == 1, (
        "the first scrape is counted in the second")
    for labels, want in ((("outcome", "success"),), 1), ((("outcome", "failure"),), 2):
        got = after.get(("tokend_logins_total", labels), 0) - before.get(
            ("tokend_logins_total", labels), 0)
        assert got == want, f"logins {labels}: +{got}, want {want}"
    assert value(after, "tokend_refresh_total", outcome="rotated") - value(
        before, "tokend_refresh_total", outcome="rotated") == 1
    assert value(after, "tokend_refresh_total", outcome="grace_replay") - value(
        before, "tokend_refresh_total", outcome="grace_replay") == 1
    assert value(after, "tokend_api_tokens_issued_total") - value(
        before, "tokend_api_tokens_issued_total") == 2
    assert value(after, "tokend_api_tokens_deleted_total") - value(
        before, "tokend_api_tokens_deleted_total") == 1
    # no raw path ever becomes a label
    for (name, labels) in after:
        for k, v in labels:
            if k == "route":
                assert v == "unmatched" or v.startswith("/"), v
                assert "nope" not in v and "unknown" not in v and team not in v, v


def check_histograms(samples):
    name = "tokend_http_request_duration_seconds"
    routes = {dict(l)["route"] for (n, l) in samples if n == name + "_count"}
    assert routes, "no histogram series"
    for route in routes:
        count = value(samples, name + "_count", route=route)
        total = sum(v for (n, l), v in samples.items()
                    if n == "tokend_http_requests_total" and dict(l)["route"] == route)
        assert count == total, f"{route}: histogram count {count} != requests {total}"
        buckets = sorted(((float(dict(l)["le"]), v) for (n, l), v in samples.items()
                          if n == name + "_bucket" and dict(l)["route"] == route))
        les = [le for le, _ in buckets]
        assert les[0] == 0.00005 and les[-2] == 5.0 and les[-1] == float("inf"), les
        vals = [v for _, v in buckets]
        assert vals == sorted(vals), f"{route}: buckets not cumulative {vals}"
        assert vals[-1] == count, f"{route}: +Inf {vals[-1]} != count {count}"
        assert value(samples, name + "_sum", route=route) >= 0


def test_histogram_agrees_with_counter(team_server):
    inst, s, team = team_server
    traffic(s, team)
    samples, _ = parse(scrape(s))
    check_histograms(samples)


def test_refresh_reuse_and_session_ended(factory):
    inst, s = factory.server(env={"TOKEND_TOKENS_REFRESH_GRACE": "0"})
    inst.add_user("rex", "rex-password")
    before, _ = parse(scrape(s))
    pair = expect_tokens(s.login("rex", "rex-password"))
    assert s.post("/api/auth/jwt/refresh/", json={"refresh": pair["refresh"]}).status_code == 201
    assert s.post("/api/auth/jwt/refresh/", json={"refresh": pair["refresh"]}).status_code == 401
    pair = expect_tokens(s.login("rex", "rex-password"))
    assert s.post("/api/auth/jwt/blacklist/", json={"refresh": pair["refresh"]}).status_code == 200
    assert s.post("/api/auth/jwt/refresh/", json={"refresh": pair["refresh"]}).status_code == 401
    after, _ = parse(scrape(s))
    for outcome, want in (("rotated", 1), ("reuse_revoked", 1), ("session_ended", 1),
                          ("grace_replay", 0)):
        got = value(after, "tokend_refresh_total", outcome=outcome) - value(
            before, "tokend_refresh_total", outcome=outcome)
        assert got == want, f"refresh {outcome}: +{got}, want {want}"


def test_login_throttled_counted(factory):
    """A 429 of the login throttle is outcome="throttled", never a failure."""
    inst, s = factory.server(env={"TOKEND_THROTTLE_LOGIN_CLIENT_FAILURES": "2"})
    inst.add_user("tess", "tess-password")
    before, _ = parse(scrape(s))
    codes = [s.login("tess", "wrong").status_code for _ in range(2)]
    codes += [s.login("tess", "tess-password").status_code for _ in range(3)]
    assert codes == [401, 401, 429, 429, 429], codes
    after, _ = parse(scrape(s))
    for outcome, want in (("failure", 2), ("throttled", 3), ("success", 0)):
        got = value(after, "tokend_logins_total", outcome=outcome) - value(
            before, "tokend_logins_total", outcome=outcome)
        assert got == want, f"login {outcome}: +{got}, want {want}"


def test_login_queue_full_counted(factory):
    inst, s = factory.server(env={"TOKEND_PASSWORD_HASH_WORKERS": "1",
                                  "TOKEND_PASSWORD_HASH_QUEUE": "1",
                                  "TOKEND_PASSWORD_PBKDF2_ITERATIONS": "200000"})
    statuses = []
    lock = threading.Lock()

    def login():
        r = s.login("nobody", "x")
        with lock:
            statuses.append(r.status_code)

    ts = [threading.Thread(target=login) for _ in range(12)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    samples, _ = parse(scrape(s))
    busy = statuses.count(503)
    assert value(samples, "tokend_logins_total", outcome="queue_full") == busy, statuses
    assert value(samples, "tokend_logins_total", outcome="failure") == statuses.count(401)
    assert requests_of(samples, LOGIN, 503) == busy


def test_store_errors_counted(factory):
    inst = factory(env={"TOKEND_DATABASE_BUSY_TIMEOUT_MS": "50"})
    inst.add_user("sam", "sam-password")
    inst.cli_ok("team", "add", "t")
    inst.cli_ok("team", "add-member", "t", "sam")
    team = inst.cli_ok("team", "list").out.split()[0]
    s = inst.start()
    pair = expect_tokens(s.login("sam", "sam-password"))
    before, _ = parse(scrape(s))
    # another process holds the lock an API-token issue needs, longer than
    # the 50 ms the server waits for it (SQLite's busy timeout, PostgreSQL's
    # lock_timeout)
    con = inst.connect()
    try:
        if inst.backend == "postgres":
            con.execute("BEGIN")
            con.execute("LOCK TABLE api_tokens IN ACCESS EXCLUSIVE MODE")
        else:
            con.execute("BEGIN EXCLUSIVE")
        r = s.post(f"/api/openapi/token/{team}/", json={},
                   headers={"Authorization": "Bearer " + pair["access"]})
        assert r.status_code == 503, r.text  # the store busy: EBUSY/EDB, 503 (src/http/response.c)
    finally:
        con.execute("ROLLBACK")
        con.close()
    after, _ = parse(scrape(s))
    assert value(after, "tokend_store_errors_total") > value(before, "tokend_store_errors_total")


def test_promtool_accepts_a_scrape_after_all_kinds_of_traffic(team_server, tmp_path):
    promtool = shutil.which("promtool") or ("/usr/bin/promtool" if shutil.os.path.exists(
        "/usr/bin/promtool") else None)
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; scripts/install-deps)")
    inst, s, team = team_server
    traffic(s, team)
    text = scrape(s)
    p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, f"promtool check metrics:\n{p.stdout}\n{p.stderr}\n---\n{text}"


def test_not_allowed_address_gets_json_404(factory):
    _, s = factory.server(env={"TOKEND_METRICS_ALLOWED": "10.0.0.0/8"})
    for method in ("GET", "HEAD"):
        r = s.request(method, "/metrics")
        assert r.status_code == 404, f"{method} /metrics from 127.0.0.1: {r.status_code}"
        assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    assert expect_json(s.request("GET", "/metrics"), 404) == {"detail": "Not found."}
    assert expect_json(s.request("GET", "/metrics/"), 404) == {"detail": "Not found."}
    # the probes do not depend on the allow-list
    assert s.request("GET", "/healthz").status_code == 200


def test_empty_allow_list_serves_no_one(factory):
    _, s = factory.server(env={"TOKEND_METRICS_ALLOWED": ""})
    assert expect_json(s.request("GET", "/metrics"), 404) == {"detail": "Not found."}


def test_bad_allow_list_stops_start_up(factory):
    res = factory().cli("serve", "--check-config", env={"TOKEND_METRICS_ALLOWED": "10.0.0.1/8"})
    assert res.rc == 2 and "metrics.allowed" in res.err, res


def test_disabled_is_404(factory):
    _, s = factory.server(env={"TOKEND_METRICS_ENABLED": "false"})
    assert expect_json(s.request("GET", "/metrics"), 404) == {"detail": "Not found."}
    assert s.request("GET", "/healthz").status_code == 200
    assert s.request("GET", "/readyz").status_code == 200


def test_scrape_flood_is_bounded(srv):
    first = scrape(srv)
    sizes = []
    for i in range(500):
        r = srv.request("GET", "/metrics")
        assert r.status_code == 200
        sizes.append(len(r.content))
    last = scrape(srv)
    assert len(last.splitlines()) == len(first.splitlines()) or len(
        last.splitlines()) - len(first.splitlines()) <= 60, "series appeared from scrapes alone"
    assert max(sizes) - min(sizes) < 200, f"output size drifts: {min(sizes)}..{max(sizes)}"
    srv.assert_alive("500 scrapes")
