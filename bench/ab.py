#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Interleaved A/B of one route on tokend variants (same store and keys):
default, CORS on (an allowed Origin on every request), metrics off; and
an nginx ceiling. Consecutive scenarios of `make bench` drift by ±15 % on
this shared 2-core machine; alternating the variants round by round puts
each pair under the same drift. Loopback only, bounded: ROUNDS x variants
x SECONDS.

    /usr/bin/python3 bench/ab.py [--rounds 4] [--seconds 5] [--route verify|list]

With --route refresh|issue_delete it compares two binaries instead (--a,
--b; each on a store of its own, seeded alike), the writes of issue 15:
refresh/s (single-use tokens, a fresh pool per round) and issue+delete
pairs/s, each with COMMITs/s from tokend_store_commits_total (0 on a binary
without it).

    /usr/bin/python3 bench/ab.py --route refresh --a OLD/tokend --b NEW/tokend
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402  (the harness: Tokend, Nginx, wrk, build)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--route", choices=["verify", "list", "refresh", "issue_delete"],
                    default="verify")
    ap.add_argument("--a", help="binary A (refresh, issue_delete)")
    ap.add_argument("--b", help="binary B (refresh, issue_delete)")
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--pool-rate", type=int, default=35000,
                    help="refresh tokens minted per second of each run")
    a = ap.parse_args()
    if a.route in ("refresh", "issue_delete"):
        return main_writes(a)
    binary = os.path.join(bench.ROOT, "build-bench", "tokend")  # make bench builds it
    tmp = tempfile.mkdtemp(prefix="tokend-ab-")
    env = {"TOKEND_TOKENS_ACCESS_LIFETIME": "3600", "TOKEND_SERVER_PER_IP_CONNECTIONS": "0",
           "TOKEND_SERVER_PER_CLIENT_REQUESTS": "0", "TOKEND_PASSWORD_PBKDF2_ITERATIONS": "1000"}
    origin = "https://app.example"
    base = bench.Tokend(binary, tmp, env)
    pw = "ab-" + uuid.uuid4().hex
    base.cli("user", "add", "ab", "--password-stdin", stdin=pw + "\n")
    team = base.cli("team", "add", "ab").strip()
    base.cli("team", "add-member", "ab", "ab")
    variants = {
        "default": base,
        "CORS on": bench.Tokend(binary, tmp, {**env, "TOKEND_CORS_ALLOWED_ORIGINS": origin},
                                log="cors.log"),
        "metrics off": bench.Tokend(binary, tmp, {**env, "TOKEND_METRICS_ENABLED": "false"},
                                    log="nometrics.log"),
    }
    nginx = bench.Nginx(tmp)
    nginx.url = f"http://127.0.0.1:{nginx.port}/"
    try:
        for t in variants.values():
            t.start()
        import requests
        pair = requests.post(base.url + "/api/auth/jwt/", data={"username": "ab", "password": pw}).json()
        access = pair["access"]
        for i in range(10):
            requests.post(base.url + f"/api/openapi/token/{team}/",
                          headers={"Authorization": "Bearer " + access}, json={"name": f"t{i}"})
        got = {k: [] for k in ["nginx", *variants]}
        names = list(variants)
        for r in range(a.rounds):
            got["nginx"].append(bench.wrk(nginx.url, a.seconds, 64)["rps"])
            # each round starts with another variant: no position favours one
            for name in names[r % len(names):] + names[:r % len(names)]:
                t = variants[name]
                wenv = {"ORIGIN": origin} if name == "CORS on" else {}
                if a.route == "verify":
                    r = bench.wrk(t.url + "/api/auth/jwt/verify/", a.seconds, 64,
                                  "post_body.lua", {"BODY": "token=" + access, **wenv})
                else:
                    r = bench.wrk(t.url + f"/api/openapi/token/{team}/", a.seconds, 64,
                                  "get_auth.lua", {"AUTH": "Bearer " + access, **wenv})
                assert r["non2xx"] == 0, (name, r)
                got[name].append(r["rps"])
        ceiling = statistics.mean(got["nginx"])
        print(f"{a.route}: {a.rounds} rounds x {a.seconds} s, interleaved; mean req/s")
        for name, v in got.items():
            m = statistics.mean(v)
            print(f"  {name:12s} {m:10,.0f}  x ceiling {m / ceiling:.2f}  "
                  f"x default {m / statistics.mean(got['default']):.3f}  "
                  f"runs {', '.join(f'{x:,.0f}' for x in v)}")
    finally:
        for t in variants.values():
            t.stop()
        nginx.stop()


def commits(t):
    """tokend_store_commits_total of instance t (0 when it has none)."""
    import requests
    m = re.search(r"^tokend_store_commits_total (\d+)", requests.get(t.url + "/metrics").text,
                  re.M)
    return int(m.group(1)) if m else 0


def main_writes(a):
    """A/B of two binaries on the write routes, each on its own store."""
    import requests
    assert a.a and a.b, "--a and --b name the two binaries"
    env = {**bench.TD_ENV, "TOKEND_PASSWORD_PBKDF2_ITERATIONS": "1000"}
    root = tempfile.mkdtemp(prefix="tokend-abw-")
    sides = {}
    try:
        for name, binary in (("A", a.a), ("B", a.b)):
            tmp = os.path.join(root, name)
            os.makedirs(tmp)
            t = bench.Tokend(binary, tmp, env)
            pw = "ab-" + uuid.uuid4().hex
            user = t.cli("user", "add", "ab", "--password-stdin", stdin=pw + "\n").strip()
            team = t.cli("team", "add", "ab").strip()
            t.cli("team", "add-member", "ab", "ab")
            t.start()  # creates the key the pool is signed with
            pools = []
            if a.route == "refresh":
                for r in range(a.rounds):
                    d = os.path.join(tmp, f"pool-{r}")
                    bench.mint_refresh_pool(t, user, a.pool_rate * a.seconds, d)
                    pools.append(d)
            pair = requests.post(t.url + "/api/auth/jwt/",
                                 data={"username": "ab", "password": pw}).json()
            sides[name] = (t, team, "Bearer " + pair["access"], pools)
        os.sync()
        got = {"A": [], "B": []}
        cps = {"A": [], "B": []}
        for r in range(a.rounds):
            for name in (["A", "B"] if r % 2 == 0 else ["B", "A"]):
                t, team, auth, pools = sides[name]
                c0 = commits(t)
                if a.route == "refresh":
                    res = bench.wrk(t.url + "/api/auth/jwt/refresh/", a.seconds, a.conns,
                                    "refresh.lua", {"TOKENS_DIR": pools[r]})
                    per = 1.0
                else:
                    res = bench.wrk(t.url + f"/api/openapi/token/{team}/", a.seconds, a.conns,
                                    "issue_delete.lua", {"AUTH": auth})
                    per = 2.0
                c1 = commits(t)
                assert res["non2xx"] == 0, (name, res)
                got[name].append(res["rps"] / per)
                cps[name].append((c1 - c0) / a.seconds)
        unit = "refresh/s" if a.route == "refresh" else "pairs/s"
        print(f"{a.route}: {a.rounds} rounds x {a.seconds} s, {a.conns} connections, "
              f"interleaved; median {unit}")
        for name, binary in (("A", a.a), ("B", a.b)):
            v = got[name]
            print(f"  {name} {binary}: {statistics.median(v):10,.0f}  "
                  f"commits/s {statistics.median(cps[name]):9,.0f}  "
                  f"runs {', '.join(f'{x:,.0f}' for x in v)}")
    finally:
        for t, *_ in sides.values():
            t.stop()


if __name__ == "__main__":
    main()
