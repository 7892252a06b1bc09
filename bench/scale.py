#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""`make bench BENCH_ARGS=--scale`: tokend on a large SQLite database.

Seeds one database with 1,000,000 users (50,000 teams of 20), 1,500,000
sessions, 3,000,000 refresh-token rows and 1,000,000 API tokens directly
through SQL (one transaction per table, journal_mode=WAL and
synchronous=OFF during the seed only), around bench users that the CLI
made (`tokend user add`: a real PBKDF2 hash), and a small database with
only the bench users. Both servers run side by side; verify (access token),
verify (refresh token), list (10 tokens) and refresh are measured on each,
small, big, big, small, so that a drift of the shared machine falls on
both, and each big/small ratio is reported with the database's size and
tokend's RSS.

The rows are shaped like a deployment's: each user has a session (every
second user two), each session a rotation chain of two refresh rows (the
first used and replaced by the second); 10 % of the sessions expired, 5 %
ended (revoked, with their session_ends row) as are those of the 2 % of
users who are disabled; API tokens belong to random users in their own
team, 10 % of them expired. The bulk users' hashes are PBKDF2 at one
iteration (of a password per user), so that 1,000,000 of them take seconds;
no bulk user logs in. The tokens the scenarios send are the server's own:
the bench user logs in through the API and issues its API tokens through
it, and the refresh pools are signed with the server's key and recorded as
a login records them (run.py's mint_refresh_pool, signed here by hand for
speed).

Everything targets 127.0.0.1, every load is bounded in time, and every
process started here is stopped before return.
"""

import base64
import hashlib
import itertools
import os
import queue
import random
import sqlite3
import sys
import tempfile
import threading
import time

import requests

import run as bench

USERS = 1_000_000
TEAM_SIZE = 20
SESSIONS_PER_USER = 1.5  # every second user has two
ROWS_PER_SESSION = 2  # 3,000,000 refresh rows
API_TOKENS = 1_000_000
DAY = 86400
SEED = 15  # the same rows on every run


def uuid_of(bits):
    """A lowercase canonical UUID (version 4, variant 1) from 128 random bits."""
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[bits & 3]}{h[17:20]}-{h[20:]}"


def session_plan(users, now):
    """The sessions, the same on each call: (sid, second jti, user, state,
    created_at, first issued_at, second issued_at, ended_at or None); state
    is 'live', 'expired' or 'ended'. The users of index i % 50 == 7 (2 %)
    are the disabled ones: their sessions ended. (random() and arithmetic,
    not randrange: this runs three times over 1,500,000 sessions.)"""
    rng = random.Random(SEED)
    rand, bits = rng.random, rng.getrandbits
    for i, user in enumerate(users):
        for _ in range(2 if i % 2 == 0 else 1):
            sid, second = uuid_of(bits(128)), uuid_of(bits(128))
            r, f = rand(), rand()
            if r < 0.10:  # expired: its last refresh 2-29 days ago
                t2 = now - 2 * DAY - int(f * 27 * DAY)
                state = "expired"
            else:  # its last refresh within the refresh lifetime
                t2 = now - int(f * 20 * 3600)
                state = "ended" if r < 0.15 or i % 50 == 7 else "live"
            t1 = t2 - 300 - int(f * 3300)
            created = t1 - int(r * DAY)
            ended = min(t2 + 1 + int(f * 3600), now - 1) if state == "ended" else None
            yield sid, second, user, state, created, t1, t2, ended


def prefetch(rows, batch=5000):
    """rows, made by a thread of their own in batches: the seed's Python
    (uuids, hashes) runs while SQLite inserts the batch before, which it
    does with the GIL released."""
    q = queue.Queue(maxsize=8)

    def produce():
        try:
            it = iter(rows)
            while chunk := list(itertools.islice(it, batch)):
                q.put(chunk)
            q.put(None)
        except BaseException as e:  # re-raised in the inserting thread
            q.put(e)

    threading.Thread(target=produce, daemon=True).start()
    while (chunk := q.get()) is not None:
        if isinstance(chunk, BaseException):
            raise chunk
        yield from chunk


def seed(db_path, kid, log=print):
    """The bulk rows into db_path (the CLI's database, migrations applied);
    returns {table: rows} and prints each table's time."""
    now = int(time.time())
    rng = random.Random(SEED + 1)
    counts = {}
    con = sqlite3.connect(db_path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA cache_size=-1048576")  # 1 GiB: random keys into big indexes
    con.execute("PRAGMA temp_store=MEMORY")
    con.execute("PRAGMA threads=2")  # CREATE INDEX sorts on two cores

    # Secondary indexes and triggers go for the seed and come back from
    # their own text after it (the schema stays byte for byte the
    # migrations'): CREATE INDEX sorts once where 3,000,000 random-key
    # inserts each walked a B-tree, and api_tokens' four triggers cost more
    # than the row. Their one effect on inserts, api_token_versions, is
    # computed below as they would have left it (a version per token).
    saved = con.execute("SELECT type, name, sql FROM sqlite_master WHERE type IN ('index', "
                        "'trigger') AND sql IS NOT NULL ORDER BY type DESC").fetchall()
    for kind, name, _ in saved:
        con.execute(f'DROP {kind} "{name}"')

    def table(name, sql, rows):
        t = time.perf_counter()
        con.execute("BEGIN")
        cur = con.executemany(sql, prefetch(rows))
        con.execute("COMMIT")
        counts[name] = cur.rowcount
        log(f"seed: {name}: {cur.rowcount:,} rows in {time.perf_counter() - t:.1f} s")

    users = [uuid_of(rng.getrandbits(128)) for _ in range(USERS)]
    teams = [uuid_of(rng.getrandbits(128)) for _ in range(USERS // TEAM_SIZE)]

    def user_rows():
        for i, u in enumerate(users):
            salt = f"{rng.getrandbits(88):022x}"
            dk = hashlib.pbkdf2_hmac("sha256", b"scale-password-%d" % i, salt.encode(), 1)
            f = rng.random()
            created = now - DAY - int(f * 364 * DAY)
            last = None if i % 10 == 3 else now - int(f * 30 * DAY)
            yield (u, f"scale-{i:07d}", f"pbkdf2_sha256$1${salt}${base64.b64encode(dk).decode()}",
                   0 if i % 50 == 7 else 1, created, last)

    table("users", "INSERT INTO users (uuid, username, password, is_active, created_at, "
          "last_login) VALUES (?, ?, ?, ?, ?, ?)", user_rows())
    table("teams", "INSERT INTO teams (uuid, name, created_at) VALUES (?, ?, ?)",
          ((t, f"scale-team-{j:05d}", now - 400 * DAY) for j, t in enumerate(teams)))
    table("team_members", "INSERT INTO team_members (team_uuid, user_uuid, role) "
          "VALUES (?, ?, ?)",
          ((teams[i // TEAM_SIZE], u, "admin" if i % TEAM_SIZE == 0 else "member")
           for i, u in enumerate(users)))
    ends = []  # (ended_at, sid) of the ended sessions, for session_ends

    def session_rows():
        for s in session_plan(users, now):
            if s[7] is not None:
                ends.append((s[7], s[0]))
            yield s[0], s[2], s[4], s[7]

    table("sessions", "INSERT INTO sessions (id, user_uuid, created_at, revoked_at) "
          "VALUES (?, ?, ?, ?)", session_rows())

    def refresh_rows():
        # The chain: the first row (jti = sid) was used and replaced by the
        # second; an ended session's rows are revoked. 24 h lifetime.
        arng = random.Random(SEED + 2)
        for sid, second, user, state, _, t1, t2, ended in session_plan(users, now):
            revoked = 1 if state == "ended" else 0
            yield (sid, sid, user, kid, uuid_of(arng.getrandbits(128)), t1, t1 + DAY, t2,
                   second, revoked)
            yield (second, sid, user, kid, uuid_of(arng.getrandbits(128)), t2, t2 + DAY,
                   ended if revoked else None, None, revoked)

    table("refresh_tokens", "INSERT INTO refresh_tokens (jti, family, user_uuid, kid, "
          "access_jti, issued_at, expires_at, used_at, replaced_by, revoked) "
          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", refresh_rows())
    ends.sort()  # seq in the order the sessions ended, as the triggers number them
    table("session_ends", "INSERT INTO session_ends (ended_at, sid) VALUES (?, ?)", ends)

    def api_rows():
        for n in range(API_TOKENS):
            f = rng.random()
            i = int(f * USERS)
            issued = now - int(f * 1e6 % 1 * 200 * DAY)
            expires = now - 1 - int(f * 1e3 % 1 * 30 * DAY) if n % 10 == 4 else \
                issued + 365 * DAY
            yield (uuid_of(rng.getrandbits(128)), rng.randbytes(32), users[i],
                   teams[i // TEAM_SIZE], kid, f"token-{n}", issued, issued, expires)

    table("api_tokens", "INSERT INTO api_tokens (jti, digest, user_uuid, team_uuid, kid, "
          "name, issued_at, updated_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
          api_rows())
    t = time.perf_counter()
    con.execute("BEGIN")
    con.execute("INSERT INTO api_token_versions (user_uuid, team_uuid, version) "
                "SELECT user_uuid, team_uuid, count(*) FROM api_tokens WHERE true "
                "GROUP BY user_uuid, team_uuid "
                "ON CONFLICT (user_uuid, team_uuid) DO UPDATE SET version = version + "
                "excluded.version")
    for kind, name, sql in reversed(saved):
        con.execute(sql)
    con.execute("COMMIT")
    log(f"seed: {len(saved)} indexes and triggers back, api_token_versions, in "
        f"{time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    log(f"seed: checkpoint in {time.perf_counter() - t:.1f} s")
    con.close()
    return counts


def db_bytes(path):
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def prepare(binary, tmp, name, env):
    """A database with the bench user (CLI), its team; returns the Tokend (not started)."""
    td = bench.Tokend(binary, tmp, env, log=f"tokend-{name}.log",
                      db=os.path.join(tmp, f"{name}.db"), keys=os.path.join(tmp, f"keys-{name}"))
    password = "benchmark-" + os.urandom(8).hex()
    td.user = td.cli("user", "add", "bench", "--password-stdin", stdin=password + "\n")
    td.team = td.cli("team", "add", "bench")
    td.cli("team", "add-member", "bench", "bench")
    td.cli("key", "rotate")  # the seed's rows name the kid the server signs with
    td.password = password
    return td


def log_in(td):
    """The bench user's login and its 10 API tokens, through the API."""
    r = requests.post(td.url + "/api/auth/jwt/", data={"username": "bench",
                                                       "password": td.password}, timeout=30)
    r.raise_for_status()
    td.access, td.refresh = r.json()["access"], r.json()["refresh"]
    td.auth = "Bearer " + td.access
    td.list_path = f"/api/openapi/token/{td.team}/"
    for i in range(10):
        requests.post(td.url + td.list_path, headers={"Authorization": td.auth},
                      json={"name": f"bench-{i}"}, timeout=30).raise_for_status()


def main(args, binary, commit):
    D = args.duration
    started = time.time()
    tmp = tempfile.mkdtemp(prefix="tokend-bench-scale-")
    # The sweeper's first pass would delete the expired rows' backlog
    # during the scenarios (a one-off after the seed, not the steady state).
    env = {**bench.TD_ENV, "TOKEND_PASSWORD_PBKDF2_ITERATIONS": "1000",
           "TOKEND_TOKENS_PURGE_INTERVAL": "86400"}
    small, big = prepare(binary, tmp, "small", env), prepare(binary, tmp, "big", env)
    kid = open(os.path.join(big.keys, "current")).read().strip()
    t, cpu = time.perf_counter(), time.process_time()
    counts = seed(big.db, kid, log=lambda m: print(m, file=sys.stderr))
    seed_s, seed_cpu = time.perf_counter() - t, time.process_time() - cpu
    load = os.getloadavg()[0]
    seeded_bytes = db_bytes(big.db)
    print(f"seed: {seed_s:.1f} s ({seed_cpu:.1f} s of CPU; load average {load:.1f}), "
          f"{seeded_bytes / 2**20:,.0f} MiB", file=sys.stderr)
    pool = 30000 * D  # above the refresh target (25,000/s) for D seconds
    scenarios = [("verify (access token)", "verify", "post_body.lua"),
                 ("verify (refresh token)", "verify", "post_body.lua"),
                 ("list (10 tokens)", "list", "get_auth.lua"),
                 ("refresh (single-use tokens)", "refresh", "refresh.lua")]
    results = {}  # (scenario, "small"/"big") -> [wrk results]
    rss = {}
    try:
        for td in (small, big):
            td.start()
            log_in(td)
        for name, kind, script in scenarios:
            if kind == "refresh":
                # The pools' rows (each its own session) only now: the small
                # database stays small for the reads.
                read_bytes = {"small": db_bytes(small.db), "big": db_bytes(big.db)}
                for td in (small, big):
                    td.pools = []
                    for n in range(2):
                        d = os.path.join(tmp, f"refresh-{os.path.basename(td.db)}-{n}")
                        bench.mint_refresh_pool(td, td.user, pool, d)
                        td.pools.append(d)
            for n, (label, td) in enumerate((("small", small), ("big", big), ("big", big),
                                             ("small", small))):
                path = td.list_path if kind == "list" else \
                    "/api/auth/jwt/refresh/" if kind == "refresh" else "/api/auth/jwt/verify/"
                env_w = {"BODY": "token=" + (td.refresh if "refresh token" in name
                                             else td.access),
                         "AUTH": td.auth,
                         "TOKENS_DIR": td.pools[n // 2] if kind == "refresh" else ""}
                results.setdefault((name, label), []).append(
                    bench.wrk(td.url + path, D, 64, script, env_w))
                rss[label] = td.rss()
        codes = {label: td.stop() for label, td in (("small", small), ("big", big))}
    finally:
        for td in (small, big):
            if td.proc and td.proc.poll() is None:
                td.proc.kill()
                td.proc.wait(10)
        end_bytes, small_bytes = db_bytes(big.db), db_bytes(small.db)
        # The databases (the big one is GiBs in /tmp) go whatever happened;
        # the logs, pools and the report stay in the temporary directory.
        for db in (big.db, small.db):
            for p in (db, db + "-wal", db + "-shm", db + "-ends"):
                if os.path.exists(p):
                    os.remove(p)

    lines = [f"# tokend at scale, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"commit {commit}", "",
             f"Machine: {os.cpu_count()} cores, shared; wrk -t{bench.WRK_THREADS} -c64, "
             f"keep-alive, {D} s per run, loopback. Each scenario ran small, big, big, small "
             f"(the means below); both servers were up throughout, one loaded at a time.", "",
             "Big database: " + ", ".join(f"{v:,} {k}" for k, v in counts.items()) +
             f" seeded in **{seed_s:.0f} s** (target < 180 s: "
             f"{'yes' if seed_s < 180 else '**no**'}; {seed_cpu:.0f} s of CPU, the load "
             f"average {load:.1f} at its end: the machine's other work shares its cores), "
             f"{seeded_bytes / 2**20:,.0f} MiB "
             f"after the seed, {read_bytes['big'] / 2**20:,.0f} MiB during the reads, "
             f"{end_bytes / 2**20:,.0f} MiB at the end (with the refresh pools' "
             f"{2 * pool:,} rows and sessions, minted after the reads); small: "
             f"{read_bytes['small'] / 2**20:,.1f} MiB during the reads, "
             f"{small_bytes / 2**20:,.1f} MiB at the end (database and WAL).", "",
             "| scenario | small req/s | big req/s | big p99 ms | big / small | target | met |",
             "|---|---:|---:|---:|---:|---|---|"]
    for name, *_ in scenarios:
        s, b = results[(name, "small")], results[(name, "big")]
        ms, mb = sum(r["rps"] for r in s) / len(s), sum(r["rps"] for r in b) / len(b)
        ratio = mb / ms if ms else 0
        non2xx = sum(r["non2xx"] for r in s + b)
        p99 = max((r["p99"] or 0) for r in b)
        lines.append(f"| {name} | {ms:,.0f} | {mb:,.0f} | {p99:.2f} | {ratio:.2f} | ≥ 0.85 × | "
                     f"{'yes' if ratio >= 0.85 else '**no**'} |" +
                     (f" ({non2xx} non-2xx)" if non2xx else ""))
    lines += ["", f"- tokend RSS after the last scenario: small {rss['small'] / 1024:.1f} MiB, "
              f"big {rss['big'] / 1024:.1f} MiB.",
              f"- tokend exited with {codes['small']} (small) and {codes['big']} (big) after "
              f"SIGTERM.",
              f"- The whole --scale run: {time.time() - started:.0f} s (the build not counted).",
              "", "Commands (`make bench BENCH_ARGS=--scale`, i.e. "
              "`/usr/bin/python3 bench/run.py --scale`):", "", "```"]
    lines += [f"# {name}, {label}\n{results[(name, label)][0]['cmd']}"
              for name, *_ in scenarios for label in ("small", "big")]
    lines += ["```", ""]
    report = "\n".join(lines)
    print(report)
    out = os.path.join(bench.ROOT, "bench", "results" if D == 10 else tmp,
                       f"{time.strftime('%Y-%m-%d-%H%M', time.gmtime())}-{commit}-scale.md")
    with open(out, "w") as f:
        f.write(report)
    print(f"written to {os.path.relpath(out, bench.ROOT)}", file=sys.stderr)
