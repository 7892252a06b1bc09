#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Interleaved A/B of one route on tokend variants (same store and keys):
default, CORS on (an allowed Origin on every request), metrics off; and
an nginx ceiling. Consecutive scenarios of `make bench` drift by ±15 % on
this shared 2-core machine; alternating the variants round by round puts
each pair under the same drift. Loopback only, bounded: ROUNDS x variants
x SECONDS.

    /usr/bin/python3 bench/ab.py [--rounds 4] [--seconds 5] [--route verify|list]
"""
import argparse
import os
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
    ap.add_argument("--route", choices=["verify", "list"], default="verify")
    a = ap.parse_args()
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


if __name__ == "__main__":
    main()
