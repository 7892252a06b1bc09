#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Issue rate of POST /api/openapi/token/{team}/ against the live tokens the
user already holds in the team.

For each build given (one tokend each, its own fresh database) it seeds,
for each level N, N live tokens of one user in a team of its own straight
into api_tokens (random jti and digest: they are only counted, never
looked up), then runs wrk with bench/lua/issue.lua for a few seconds in
that team and deletes the tokens the run issued, so that each run starts
at N. The levels and the builds are
interleaved (rep by rep, the levels up then down) and each figure is the
median of the reps: the machine is shared. The cap (api_max_tokens) is
raised to 1,000,000.

    /usr/bin/python3 bench/issue_scale.py [--build build] [--build build-before]
        [--backend sqlite|postgres|both] [--levels 0,5000,...] [--reps 3]

One build on one backend takes about 45 s (5 levels, 3 reps, 2 s each).

run(build_dir, ...) returns the rows for bench/run.py.
"""

import argparse
import os
import re
import secrets
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LUA = os.path.join(ROOT, "bench", "lua", "issue.lua")
LEVELS = (0, 5000, 11000, 22000, 50000)
ENV = {
    "TOKEND_TOKENS_API_MAX_TOKENS": "1000000",
    "TOKEND_TOKENS_ACCESS_LIFETIME": "3600",
    "TOKEND_PASSWORD_PBKDF2_ITERATIONS": "1000",
    "TOKEND_SERVER_PER_IP_CONNECTIONS": "0",
    "TOKEND_SERVER_PER_CLIENT_REQUESTS": "0",
    "TOKEND_LOG_LEVEL": "warn",
}
SEED_PREFIX = "seed-"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wrk_rps(url, duration, conns, auth):
    cmd = ["wrk", "-t2", f"-c{conns}", f"-d{duration}s", "-s", LUA, url]
    out = subprocess.run(cmd, env={**os.environ, "AUTH": auth}, capture_output=True,
                         text=True, timeout=duration + 60).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if bad:
        raise RuntimeError(f"{bad.group(1)} refused issues (the cap?): {out}")
    return float(m.group(1)) if m else 0.0


class Store:
    """The bench's own connection to the tokend's database (SQLite file or
    PostgreSQL URL), for seeding and trimming api_tokens."""

    def __init__(self, database):
        self.pg = database.startswith("postgres")
        if self.pg:
            import psycopg2
            self.con = psycopg2.connect(database)
        else:
            self.con = sqlite3.connect(database, timeout=30)

    def exec(self, sql, params=(), many=False):
        cur = self.con.cursor()
        if self.pg and many:
            # A statement per 1,000 rows, each committed: the triggers update
            # the pair's one api_token_versions row for every row, and
            # PostgreSQL walks that row's versions of the same transaction
            # on each update (50,000 in one took minutes).
            from psycopg2.extras import execute_values
            for i in range(0, len(params), 1000):
                execute_values(cur, re.sub(r"VALUES \(.*\)", "VALUES %s", sql),
                               params[i:i + 1000], page_size=1000)
                self.con.commit()
        elif self.pg:
            cur.execute(sql.replace("?", "%s"), params)
        else:
            (cur.executemany if many else cur.execute)(sql, params)
        self.con.commit()
        return cur

    def count(self, user, team):
        return self.exec("SELECT count(*) FROM api_tokens WHERE user_uuid = ? AND team_uuid = ?",
                         (user, team)).fetchone()[0]

    def seed(self, user, team, n):
        """Adds n live tokens of user in team."""
        now = int(time.time())
        blob = (lambda b: b) if self.pg else sqlite3.Binary
        rows = [(f"{SEED_PREFIX}{uuid.uuid4()}", blob(secrets.token_bytes(32)), user, team,
                 "bench", now, now, now + 30 * 86400) for _ in range(n)]
        if rows:
            self.exec("INSERT INTO api_tokens (jti, digest, user_uuid, team_uuid, kid, "
                      "issued_at, updated_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      rows, many=True)
        assert self.count(user, team) == n

    def trim(self, user, team):
        """Deletes the tokens a run issued, also those whose request was
        still in flight when wrk stopped (until none has come for 0.2 s)."""
        for _ in range(50):
            cur = self.exec("DELETE FROM api_tokens WHERE user_uuid = ? AND team_uuid = ? "
                            "AND jti NOT LIKE ?", (user, team, SEED_PREFIX + "%"))
            if cur.rowcount == 0:
                return
            time.sleep(0.2)

    def close(self):
        self.con.close()


class Server:
    """One tokend of build_dir on database, with user bench holding n seeded
    tokens in team bench-n for each level n (a team per level: no level is
    seeded twice, and the rows of the others share the table and indexes)."""

    def __init__(self, build_dir, tmp, database, label, levels):
        self.binary = os.path.join(build_dir, "tokend")
        self.label = label
        self.base = [self.binary, "--database", database, "--key-dir",
                     os.path.join(tmp, f"keys-{label}")]
        self.env = {**os.environ, **ENV}
        pw = "bench-" + uuid.uuid4().hex
        self.user = self.cli("user", "add", "bench", "--password-stdin", stdin=pw + "\n")
        self.teams = {}
        for n in levels:
            self.teams[n] = self.cli("team", "add", f"bench-{n}")
            self.cli("team", "add-member", f"bench-{n}", "bench")
        self.port = free_port()
        self.log = open(os.path.join(tmp, f"tokend-{label}.log"), "w")
        self.proc = subprocess.Popen(self.base + ["serve", "--listen", f"127.0.0.1:{self.port}"],
                                     env=self.env, stderr=self.log)
        self.url = f"http://127.0.0.1:{self.port}"
        end = time.time() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                if time.time() > end or self.proc.poll() is not None:
                    raise RuntimeError(f"{label}: tokend did not start")
                time.sleep(0.05)
        r = requests.post(self.url + "/api/auth/jwt/", data={"username": "bench", "password": pw})
        r.raise_for_status()
        self.auth = "Bearer " + r.json()["access"]
        self.store = Store(database)
        for n, team in self.teams.items():
            self.store.seed(self.user, team, n)

    def cli(self, *args, stdin=None):
        return subprocess.run(self.base + list(args), input=stdin, env=self.env,
                              capture_output=True, text=True, check=True).stdout.strip()

    def measure(self, n, duration, conns):
        team = self.teams[n]
        rps = wrk_rps(f"{self.url}/api/openapi/token/{team}/", duration, conns, self.auth)
        self.store.trim(self.user, team)
        assert self.store.count(self.user, team) == n
        return rps

    def stop(self):
        self.store.close()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        self.log.close()


def run_many(builds, backend="sqlite", levels=LEVELS, reps=3, duration=2, conns=32, pg=None):
    """Interleaved runs of every build; one row per (build, level):
    dict(backend, build, live, rps (median), runs, ratio (to live=0))."""
    tmp = tempfile.mkdtemp(prefix="tokend-issue-scale-")
    servers = []
    try:
        for i, b in enumerate(builds):
            label = f"{i}-{os.path.basename(os.path.normpath(b))}"
            db = (pg.create_database(f"issue_scale_{i}_{uuid.uuid4().hex[:6]}") if backend == "postgres"
                  else os.path.join(tmp, f"{label}.db"))
            servers.append(Server(b, tmp, db, label, levels))
        got = {(s.label, n): [] for s in servers for n in levels}
        for rep in range(reps):
            order = list(levels) if rep % 2 == 0 else list(reversed(levels))
            for n in order:
                for s in (servers if rep % 2 == 0 else reversed(servers)):
                    got[(s.label, n)].append(s.measure(n, duration, conns))
        rows = []
        for s, b in zip(servers, builds):
            base = statistics.median(got[(s.label, levels[0])])
            for n in levels:
                rps = statistics.median(got[(s.label, n)])
                rows.append({"backend": backend, "build": b, "live": n, "rps": rps,
                             "runs": got[(s.label, n)], "ratio": rps / base if base else 0.0})
        return rows
    finally:
        for s in servers:
            s.stop()


def run(build_dir, backend="sqlite", **kw):
    """Rows (see run_many) for one build on one backend ("sqlite" or
    "postgres": a throw-away server from tests/pgtmp.py)."""
    return run_backend([build_dir], backend, **kw)


def run_backend(builds, backend, **kw):
    if backend != "postgres":
        return run_many(builds, backend, **kw)
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import pgtmp
    with pgtmp.PgTmp() as pg:
        return run_many(builds, backend, pg=pg, **kw)


def table(rows):
    lines = [f"{'backend':9} {'build':24} {'live':>7} {'issue/s':>9} {'vs 0':>6}  runs"]
    for r in rows:
        lines.append(f"{r['backend']:9} {r['build'][-24:]:24} {r['live']:>7} {r['rps']:>9.0f} "
                     f"{r['ratio']:>6.2f}  {' '.join(f'{x:.0f}' for x in r['runs'])}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", action="append", help="build directory (repeat to compare); "
                    "default build/")
    ap.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="sqlite",
                    help="postgres: a throw-away server (tests/pgtmp.py)")
    ap.add_argument("--levels", default=",".join(map(str, LEVELS)))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=int, default=2, help="seconds per wrk run")
    ap.add_argument("--conns", type=int, default=32)
    args = ap.parse_args()
    builds = args.build or [os.path.join(ROOT, "build")]
    levels = tuple(int(x) for x in args.levels.split(","))
    kw = dict(levels=levels, reps=args.reps, duration=args.duration, conns=args.conns)
    rows = []
    for backend in ("sqlite", "postgres"):
        if args.backend in (backend, "both"):
            rows += run_backend(builds, backend, **kw)
    print(table(rows))
    print(f"wrk -t2 -c{args.conns} -d{args.duration}s -s bench/lua/issue.lua, "
          f"median of {args.reps} interleaved runs; live = tokens held at the start of a run "
          f"(a run adds about issue/s x {args.duration} more); {os.cpu_count()} cores, shared")


if __name__ == "__main__":
    main()
