#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Interleaved A/B of tokend builds on PostgreSQL: refresh and issue+delete.

Starts one throw-away PostgreSQL (tests/pgtmp.py: fsync and
synchronous_commit off, on the same cores as everything else), and for each
round and each binary a fresh database seeded as bench/run.py seeds it
(run.seed_deployment), 1 or 2 instances (2: behind run.Proxy, nginx
round-robin), then wrk -t2 -c64 on each scenario. Alternating the binaries
round by round puts each pair under the same drift of this shared machine;
the summary is the median per binary. Loopback only, bounded; every process
started here is stopped before exit.

    /usr/bin/python3 bench/pg_ab.py --bin A=build-base/tokend --bin B=build/tokend \
        [--rounds 3] [--seconds 5] [--instances 1] [--scenarios refresh,issue]
"""
import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests"))
import pgtmp  # noqa: E402
import run as bench  # noqa: E402  (the harness: Tokend, Proxy, wrk, seeding)

SCENARIOS = {
    "refresh": ("/api/auth/jwt/refresh/", "refresh.lua", 1.0),
    "issue": (None, "issue_delete.lua", 2.0),
    "verify": ("/api/auth/jwt/verify/", "post_body.lua", 1.0),
}


def ticks(pids):
    """utime + stime of pids (clock ticks), those gone counting 0."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total


def cluster_pids(pg):
    """The postmaster of pg and its children (backends, walwriter, ...)."""
    root = pg._postmaster_pid()
    pids = [root]
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == root:
                        pids.append(int(d))
            except OSError:
                pass
    return pids


def one(binary, pg, tmp, tag, instances, seconds, scenarios):
    keys = os.path.join(tmp, "keys")
    env = {**bench.TD_ENV, "TOKEND_SERVER_TRUSTED_PROXIES": "127.0.0.1",
           "TOKEND_PASSWORD_PBKDF2_ITERATIONS": "1000"}
    db = pg.create_database(tag)
    tds, seed = bench.seed_deployment(binary, tmp, env, db, keys, instances,
                                      12000 * seconds)
    proxy = None
    out = {}
    try:
        target = tds[0].url
        if instances > 1:
            proxy = bench.Proxy(tmp, [t.port for t in tds])
            target = proxy.url
        for name in scenarios:
            path, script, per = SCENARIOS[name]
            wenv = {"BODY": "token=" + seed["access"], "AUTH": seed["auth"],
                    "TOKENS_DIR": seed["refresh_dir"]}
            td_pids = [t.proc.pid for t in tds]
            pg_pids = cluster_pids(pg)
            t0, p0 = ticks(td_pids), ticks(pg_pids)
            res = bench.wrk(target + (path or seed["list_path"]), seconds, 64, script, wenv)
            hz = os.sysconf("SC_CLK_TCK")
            n = max(1, res["requests"]) / per
            us_td = (ticks(td_pids) - t0) * 1e6 / hz / n
            us_pg = (ticks(pg_pids) - p0) * 1e6 / hz / n
            out[name] = (res["rps"] / per, res["p99"], res["non2xx"], us_td, us_pg)
    finally:
        if proxy is not None:
            proxy.stop()
        for t in tds:
            if t.proc and t.proc.poll() is None:
                t.stop()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", action="append", required=True, help="NAME=PATH")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--instances", type=int, default=1)
    ap.add_argument("--scenarios", default="refresh,issue")
    a = ap.parse_args()
    bins = [b.split("=", 1) for b in a.bin]
    scen = a.scenarios.split(",")
    tmp = tempfile.mkdtemp(prefix="tokend-pgab-")
    results = {(n, s): [] for n, _ in bins for s in scen}
    cpu = {(n, s): [] for n, _ in bins for s in scen}
    with pgtmp.PgTmp() as pg:
        for r in range(a.rounds):
            for n, path in bins:
                res = one(os.path.abspath(path), pg, tmp, f"ab_{r}_{n.lower()}", a.instances,
                          a.seconds, scen)
                for s, (rps, p99, bad, us_td, us_pg) in res.items():
                    results[(n, s)].append(rps)
                    cpu[(n, s)].append(us_td + us_pg)
                    print(f"round {r} {n} {s}: {rps:,.0f}/s p99 {bench.fmt_ms(p99)} ms, "
                          f"CPU per op: tokend {us_td:.0f} us + postgres {us_pg:.0f} us"
                          + (f" non-2xx {bad}" if bad else ""), flush=True)
    print(f"\nmedians ({a.rounds} rounds, {a.seconds} s, {a.instances} instance(s)):")
    for s in scen:
        print(f"  {s}: " + ", ".join(f"{n} {statistics.median(results[(n, s)]):,.0f}/s "
                                     f"({statistics.median(cpu[(n, s)]):.0f} us CPU/op)"
                                     for n, _ in bins))


if __name__ == "__main__":
    main()
