#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The tokend benchmark: `make bench`.

Builds the release configuration, starts tokend on a loopback port with a
fresh temporary database, seeds it through the CLI, and drives each route
with wrk (2 threads, keep-alive, fixed duration). There are two ceilings,
each measured before the first scenario and after the last with the same
wrk settings: nginx answering `return 200 '{}'` on another loopback port,
and bare libmicrohttpd (bench/mhd_ceiling.c, compiled here) with tokend's
daemon flags, thread count and limits answering the same. Every figure is
reported as req/s, p50, p99 and its ratio to nginx (and, for the read
routes, to libmicrohttpd), with the server's RSS after the scenario and,
for the write routes, commits/s from tokend_store_commits_total; the table
goes to stdout and to bench/results/<date>-<commit>.md.

`--scale` (`make bench BENCH_ARGS=--scale`, bench/scale.py) runs verify,
list and refresh on a seeded database of 1,000,000 users against a small
one.

`--postgres` (`make bench BENCH_ARGS=--postgres`) runs instead the routes
that write or look up (verify, list, refresh, issue+delete) on three
deployments side by side: the SQLite file with one instance, a throw-away
PostgreSQL (tests/pgtmp.py, on this machine, started and removed here) with
one instance, and the same PostgreSQL with two instances behind an nginx
round-robin upstream (the README's "Several instances").

Everything targets 127.0.0.1, every load is bounded in time, and every
process started here is stopped before exit.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LUA = os.path.join(ROOT, "bench", "lua")
WRK_THREADS = 2


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def to_ms(value):
    m = re.match(r"([\d.]+)(us|ms|s)", value)
    n, unit = float(m.group(1)), m.group(2)
    return n / 1000 if unit == "us" else n * 1000 if unit == "s" else n


def wrk(url, duration, conns, script=None, env=None, timeout_s=None):
    """Runs wrk; returns dict(rps, p50, p99 (ms), non2xx, requests, cmd)."""
    cmd = ["wrk", f"-t{WRK_THREADS}", f"-c{conns}", f"-d{duration}s", "--latency"]
    if timeout_s:
        cmd.append(f"--timeout={timeout_s}s")
    if script:
        cmd += ["-s", os.path.join(LUA, script)]
    cmd.append(url)
    out = subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True,
                         text=True, timeout=duration + 60).stdout
    res = {"cmd": " ".join(cmd), "rps": 0.0, "p50": None, "p99": None, "non2xx": 0,
           "requests": 0}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        res["rps"] = float(m.group(1))
    for pct, key in (("50%", "p50"), ("99%", "p99")):
        m = re.search(rf"^\s+{pct}\s+(\S+)", out, re.M)
        if m:
            res[key] = to_ms(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        res["non2xx"] = int(m.group(1))
    m = re.search(r"(\d+) requests in", out)
    if m:
        res["requests"] = int(m.group(1))
    return res


class Nginx:
    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "nginx")
        os.makedirs(self.dir)
        self.port = free_port()
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""worker_processes 2;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log;
daemon off;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{self.port};
    location / {{ default_type application/json; return 200 '{{}}'; }}
  }}
}}
""")
        self.cmd = ["nginx", "-c", conf, "-p", self.dir]
        self.proc = subprocess.Popen(self.cmd, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


class MhdCeiling:
    """bench/mhd_ceiling.c: bare libmicrohttpd with tokend's daemon flags and
    the options of td_env (threads, connection limits, idle timeout, memory
    pool), answering 200 {} to everything; built with cc into build_dir."""

    def __init__(self, build_dir, td_env):
        src = os.path.join(ROOT, "bench", "mhd_ceiling.c")
        self.binary = os.path.join(build_dir, "mhd_ceiling")
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libmicrohttpd"],
                               check=True, capture_output=True, text=True).stdout.split()
        subprocess.run(["cc", "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-O2", "-Wall",
                        "-Wextra", "-Werror", "-o", self.binary, src, *flags, "-lpthread"],
                       check=True)

        def opt(name, default):
            return str(td_env.get(f"TOKEND_SERVER_{name}", default))
        self.cmd = [self.binary, "--port", "0", "--threads", opt("THREADS", 0),
                    "--max-connections", opt("MAX_CONNECTIONS", 1024),
                    "--per-ip", opt("PER_IP_CONNECTIONS", 128),
                    "--timeout", opt("IDLE_TIMEOUT", 30),
                    "--max-header", opt("MAX_HEADER", 16384)]
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"port (\d+)", line)
        if not m:
            self.proc.kill()
            self.proc.wait(10)
            raise RuntimeError(f"mhd_ceiling did not start: {line!r}")
        self.port = int(m.group(1))
        wait_port(self.port)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(10)
        self.proc.stdout.close()
        return code


LOG_TAIL = 256 * 1024


def tidy(tmp):
    """Deletes what a finished run left in tmp but its reports and the last
    LOG_TAIL bytes of each log: the databases, keys, token pools and access
    logs came to 4-5 GB a full run."""
    for name in os.listdir(tmp):
        path = os.path.join(tmp, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif name.endswith(".log") and os.path.getsize(path) > LOG_TAIL:
            with open(path, "rb") as f:
                f.seek(-LOG_TAIL, os.SEEK_END)
                tail = f.read()
            with open(path, "wb") as f:
                f.write(tail)
        elif not name.endswith((".log", ".md")):
            os.unlink(path)
    print(f"kept the reports and the logs' last {LOG_TAIL // 1024} KiB in {tmp}", file=sys.stderr)


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Tokend:
    def __init__(self, binary, tmp, env, log="tokend.log", db=None, keys=None):
        self.binary = binary
        self.db = db or os.path.join(tmp, "tokend.db")
        self.keys = keys or os.path.join(tmp, "keys")
        self.env = {**os.environ, **env}
        self.port = None
        self.proc = None
        self.log = open(os.path.join(tmp, log), "w")

    def cli(self, *args, stdin=None):
        return subprocess.run([self.binary, "--database", self.db, "--key-dir", self.keys,
                               *args], input=stdin, env=self.env, capture_output=True,
                              text=True, check=True).stdout.strip()

    def start(self):
        self.port = free_port()
        self.cmd = [self.binary, "--database", self.db, "--key-dir", self.keys, "serve",
                    "--listen", f"127.0.0.1:{self.port}"]

        def more_files():
            resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
        self.proc = subprocess.Popen(self.cmd, env=self.env, stderr=self.log,
                                     preexec_fn=more_files)
        wait_port(self.port)
        self.url = f"http://127.0.0.1:{self.port}"

    def rss(self):
        return rss_kib(self.proc.pid)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


TD_ENV = {
    "TOKEND_TOKENS_ACCESS_LIFETIME": "3600",
    "TOKEND_SERVER_MAX_CONNECTIONS": "12000",
    # The 10,000 idle connections and wrk all come from 127.0.0.1: the
    # per-client limit (128 by default) is for a tokend exposed directly.
    "TOKEND_SERVER_PER_IP_CONNECTIONS": "0",
    # wrk's 64 connections are one client too: no in-flight cap (429).
    "TOKEND_SERVER_PER_CLIENT_REQUESTS": "0",
    "TOKEND_SERVER_IDLE_TIMEOUT": "600",
    "TOKEND_TOKENS_API_MAX_TOKENS": "1000",
    # The login scenarios (4 connections; a 64-connection flood) are one
    # user from one address: with the default throttle at most 10 of its
    # logins are in flight and the rest are 429s at once, which would
    # change what the flood measures. The throttle's own figures:
    # bench/throttle_flood.py.
    "TOKEND_THROTTLE_LOGIN_CLIENT_FAILURES": "65535",
    "TOKEND_THROTTLE_LOGIN_USER_FAILURES": "65535",
}


def pbkdf2_seconds(iterations):
    best = None
    for _ in range(3):
        t = time.perf_counter()
        hashlib.pbkdf2_hmac("sha256", b"benchmark password", b"saltsaltsaltsaltsaltsa",
                            iterations)
        d = time.perf_counter() - t
        best = d if best is None else min(best, d)
    return best


def key_bytes(keydir):
    kid = open(os.path.join(keydir, "current")).read().strip()
    text = open(os.path.join(keydir, f"{kid}.HS256.key")).read().strip()
    return kid, base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def mint_refresh_pool(td, user_uuid, count, outdir):
    """Single-use refresh tokens: rows in the store (each its own session, as
    a login records it) and JWTs signed with our key, exactly as a login
    would have made them (same claims, sid included, same kid)."""
    kid, key = key_bytes(td.keys)
    now = int(time.time())
    exp = now + 86400
    # Signed here with hmac, in the form tokend mints (sorted keys, no
    # spaces): PyJWT took 40 us a token, and --scale spends four pools.
    header = b64url(json.dumps({"alg": "HS256", "kid": kid, "typ": "JWT"},
                               separators=(",", ":"), sort_keys=True).encode())
    rows, per_thread = [], [[] for _ in range(WRK_THREADS)]
    for i in range(count):
        jti, access_jti = str(uuid.uuid4()), str(uuid.uuid4())
        rows.append((jti, jti, user_uuid, kid, access_jti, now, exp))
        payload = b64url((f'{{"exp":{exp},"iat":{now},"jti":"{jti}","sid":"{jti}",'
                          f'"token_type":"refresh","user_id":"{user_uuid}"}}').encode())
        signing = header + b"." + payload
        sig = b64url(hmac.new(key, signing, hashlib.sha256).digest())
        per_thread[i % WRK_THREADS].append((signing + b"." + sig).decode())
    if td.db.startswith("postgresql://"):
        copy_rows_pg(td.db, rows)
    else:
        db = sqlite3.connect(td.db, timeout=30)
        db.executemany("INSERT INTO sessions (id, user_uuid, created_at) VALUES (?, ?, ?)",
                       [(r[1], r[2], r[5]) for r in rows])
        db.executemany("INSERT INTO refresh_tokens (jti, family, user_uuid, kid, access_jti, "
                       "issued_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        db.commit()
        db.close()
    os.makedirs(outdir, exist_ok=True)
    for n, toks in enumerate(per_thread):
        with open(os.path.join(outdir, f"{n}.txt"), "w") as f:
            f.write("\n".join(toks) + "\n")


def copy_rows_pg(url, rows):
    """The pool's rows into PostgreSQL with COPY (INSERTs of 100,000 rows
    took longer than the scenario that spends them)."""
    import io
    import psycopg2
    con = psycopg2.connect(url)
    try:
        with con, con.cursor() as cur:
            cur.copy_from(io.StringIO("".join(f"{r[1]}\t{r[2]}\t{r[5]}\n" for r in rows)),
                          "sessions", columns=("id", "user_uuid", "created_at"))
            cur.copy_from(io.StringIO("".join("\t".join(map(str, r)) + "\n" for r in rows)),
                          "refresh_tokens", columns=("jti", "family", "user_uuid", "kid",
                                                     "access_jti", "issued_at", "expires_at"))
    finally:
        con.close()


class Proxy:
    """nginx in front of several tokend instances: the README's round-robin
    upstream (keep-alive to the upstreams, X-Forwarded-For)."""

    def __init__(self, tmp, ports):
        self.dir = os.path.join(tmp, f"proxy-{free_port()}")
        os.makedirs(self.dir)
        self.port = free_port()
        servers = "".join(f"    server 127.0.0.1:{p};\n" for p in ports)
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log;
daemon off;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {self.dir}/body;
  proxy_temp_path {self.dir}/proxy;
  upstream tokend {{
{servers}    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{self.port};
    location / {{
      proxy_pass http://tokend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}
}}
""")
        self.proc = subprocess.Popen(["nginx", "-c", conf, "-p", self.dir],
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def hold_idle(port, count, stop, ready):
    """Opens count keep-alive connections, one request each, then holds them."""
    socks = []
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port), 5)
            s.sendall(b"GET /nope HTTP/1.1\r\nHost: bench\r\n\r\n")
            socks.append(s)
            if len(socks) % 500 == 0:
                for t in socks[-500:]:
                    t.recv(4096)
        for t in socks[len(socks) - len(socks) % 500:]:
            t.recv(4096)
        ready["held"] = len(socks)
    except OSError as e:
        ready["error"] = str(e)
    ready["event"].set()
    stop.wait()
    for s in socks:
        s.close()


def store_commits(td):
    """tokend_store_commits_total from tokend's /metrics (its samples summed),
    or None when the route or the counter is absent."""
    try:
        r = requests.get(td.url + "/metrics", timeout=5)
    except requests.RequestException:
        return None
    if r.status_code != 200:
        return None
    total, seen = 0.0, False
    for line in r.text.splitlines():
        m = re.match(r"tokend_store_commits_total(?:\{[^}]*\})?\s+(\S+)", line)
        if m:
            total += float(m.group(1))
            seen = True
    return total if seen else None


def fmt_ms(v):
    return "-" if v is None else f"{v:.2f}"


# The --postgres comparison: the routes that reach the store, per deployment.
PG_SCENARIOS = [
    # name, route (relative to the team's list path or absolute), script, per
    ("verify (valid access token)", "/api/auth/jwt/verify/", "post_body.lua", 1.0),
    ("list (10 tokens)", None, "get_auth.lua", 1.0),
    ("refresh (single-use tokens)", "/api/auth/jwt/refresh/", "refresh.lua", 1.0),
    ("issue + delete (pairs/s)", None, "issue_delete.lua", 2.0),
]


def seed_deployment(binary, tmp, env, db, keys, count, pool_size):
    """Users, team and tokens on one database, `count` instances on it
    (started), and the refresh pool; returns (instances, seed dict)."""
    first = Tokend(binary, tmp, env, log=f"tokend-{len(os.listdir(tmp))}.log", db=db, keys=keys)
    password = "benchmark-" + uuid.uuid4().hex
    user = first.cli("user", "add", "bench", "--password-stdin", stdin=password + "\n")
    team = first.cli("team", "add", "bench")
    first.cli("team", "add-member", "bench", "bench")
    tds = [first] + [Tokend(binary, tmp, env, log=f"tokend-{len(os.listdir(tmp))}-{i}.log",
                            db=db, keys=keys) for i in range(1, count)]
    for t in tds:
        t.start()
    r = requests.post(first.url + "/api/auth/jwt/", data={"username": "bench",
                                                          "password": password})
    access = r.json()["access"]
    auth = "Bearer " + access
    list_path = f"/api/openapi/token/{team}/"
    for i in range(10):
        requests.post(first.url + list_path, headers={"Authorization": auth},
                      json={"name": f"bench-{i}"}).raise_for_status()
    refresh_dir = os.path.join(tmp, f"refresh-{uuid.uuid4().hex[:8]}")
    mint_refresh_pool(first, user, pool_size, refresh_dir)
    return tds, {"access": access, "auth": auth, "list_path": list_path,
                 "refresh_dir": refresh_dir}


def main_postgres(args, binary, commit):
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import pgtmp
    if not pgtmp.available():
        sys.exit(f"--postgres: {pgtmp.PG_BIN / 'initdb'} is missing (install postgresql-15)")
    D = args.duration
    tmp = tempfile.mkdtemp(prefix="tokend-bench-pg-")
    keys = os.path.join(tmp, "keys")  # one key set for every instance
    # Behind the proxy every request comes from 127.0.0.1: believe its XFF.
    env = {**TD_ENV, "TOKEND_SERVER_TRUSTED_PROXIES": "127.0.0.1",
           "TOKEND_PASSWORD_PBKDF2_ITERATIONS": "1000"}
    # Sized above what each deployment spends in D seconds (SQLite ~12 k/s):
    # a pool that ran dry would replay its last token (grace replays).
    pools = {"sqlite": 20000 * D, "pg1": 10000 * D, "pg2": 10000 * D}
    deployments = [("SQLite, 1 instance", "sqlite", 1),
                   ("PostgreSQL, 1 instance", "pg1", 1),
                   ("PostgreSQL, 2 instances behind nginx", "pg2", 2)]
    results = {}  # (deployment, scenario) -> wrk result
    nginx = Nginx(tmp)
    pg = pgtmp.PgTmp()
    running, proxy = [], None
    try:
        pg.start()
        ceiling = wrk(f"http://127.0.0.1:{nginx.port}/", D, 64)
        for label, key, count in deployments:
            db = os.path.join(tmp, "tokend.db") if key == "sqlite" else \
                pg.create_database(f"bench_{key}")
            tds, seed = seed_deployment(binary, tmp, env, db, keys, count, pools[key])
            running = tds
            if count > 1:
                proxy = Proxy(tmp, [t.port for t in tds])
                target = proxy.url
            else:
                target = tds[0].url
            os.sync()
            for name, path, script, per in PG_SCENARIOS:
                wenv = {"BODY": "token=" + seed["access"], "AUTH": seed["auth"],
                        "TOKENS_DIR": seed["refresh_dir"]}
                res = wrk(target + (path or seed["list_path"]), D, 64, script, wenv)
                res["rps"] /= per
                res["rss"] = sum(t.rss() for t in tds)
                results[(label, name)] = res
            if proxy is not None:
                proxy.stop()
                proxy = None
            codes = [t.stop() for t in tds]
            running = []
            results[(label, "exit")] = codes
    finally:
        for t in running:
            if t.proc and t.proc.poll() is None:
                t.proc.kill()
        if proxy is not None:
            proxy.stop()
        nginx.stop()
        pg.stop()

    c = ceiling["rps"]
    lines = [f"# tokend on SQLite and PostgreSQL, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"commit {commit}", "",
             f"Machine: {os.cpu_count()} cores, shared by wrk, nginx, tokend and PostgreSQL; "
             f"wrk -t{WRK_THREADS} -c64, keep-alive, {D} s per scenario, loopback. PostgreSQL "
             f"15 is the tests' throw-away server (tests/pgtmp.py: fsync and "
             f"synchronous_commit off), on the same cores. Ceiling: nginx `return 200 '{{}}'`: "
             f"**{c:,.0f} req/s**.", "",
             "req/s (p99 ms) per deployment:", "",
             "| scenario | " + " | ".join(d[0] for d in deployments) + " |",
             "|---|" + "---:|" * len(deployments)]
    for name, *_ in PG_SCENARIOS:
        cells = []
        for label, *_ in deployments:
            r = results[(label, name)]
            cell = f"{r['rps']:,.0f} ({fmt_ms(r['p99'])})"
            if r["non2xx"]:
                cell += f", {r['non2xx']} non-2xx"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [""] + [f"- {label}: tokend exited with {results[(label, 'exit')]} after SIGTERM; "
                     f"RSS after the last scenario {results[(label, PG_SCENARIOS[-1][0])]['rss'] / 1024:.1f} MiB "
                     f"(all instances)" for label, *_ in deployments]
    lines += ["", "Commands (the harness: `make bench BENCH_ARGS=--postgres`, i.e. "
              "`/usr/bin/python3 bench/run.py --postgres`; the URL is tokend's, or nginx's "
              "in front of two):", "", "```", f"# ceiling\n{ceiling['cmd']}"]
    lines += [f"# {label}: {name}\n{results[(label, name)]['cmd']}"
              for label, *_ in deployments for name, *_ in PG_SCENARIOS]
    lines += ["```", ""]
    report = "\n".join(lines)
    print(report)
    out = os.path.join(ROOT, "bench", "results" if D == 10 else tmp,
                       f"{time.strftime('%Y-%m-%d-%H%M', time.gmtime())}-{commit}-postgres.md")
    with open(out, "w") as f:
        f.write(report)
    print(f"written to {os.path.relpath(out, ROOT)}", file=sys.stderr)
    tidy(tmp)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per scenario")
    ap.add_argument("--soak", type=int, default=240, help="seconds of the mixed soak run")
    ap.add_argument("--idle", type=int, default=10000, help="idle keep-alive connections")
    ap.add_argument("--build", default=os.path.join(ROOT, "build-bench"))
    ap.add_argument("--postgres", action="store_true",
                    help="verify, list, refresh, issue+delete on SQLite, PostgreSQL and two "
                         "instances on PostgreSQL behind nginx")
    ap.add_argument("--scale", action="store_true",
                    help="verify, list and refresh on a database of 1,000,000 users, "
                         "3,000,000 refresh rows and 1,000,000 API tokens against a small "
                         "one (bench/scale.py)")
    args = ap.parse_args()
    D = args.duration

    subprocess.run(["cmake", "-S", ROOT, "-B", args.build, "-DCMAKE_BUILD_TYPE=Release"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", args.build, "-j2", "--target", "tokend"], check=True,
                   stdout=subprocess.DEVNULL)
    binary = os.path.join(args.build, "tokend")
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 20000), hard), hard))

    if args.postgres:
        return main_postgres(args, binary, commit)
    if args.scale:
        import scale
        return scale.main(args, binary, commit)
    tmp = tempfile.mkdtemp(prefix="tokend-bench-")
    rows, notes = [], []
    td_env = dict(TD_ENV)
    nginx = Nginx(tmp)
    mhd = None
    td = Tokend(binary, tmp, td_env)
    td_cors = None
    off = None
    try:
        mhd = MhdCeiling(args.build, td_env)
        iterations = 600000
        password = "benchmark-" + uuid.uuid4().hex
        user = td.cli("user", "add", "bench", "--password-stdin", stdin=password + "\n")
        team = td.cli("team", "add", "bench")
        td.cli("team", "add-member", "bench", "bench")
        td.start()
        idle_rss = td.rss()
        r = requests.post(td.url + "/api/auth/jwt/", data={"username": "bench",
                                                           "password": password})
        access = r.json()["access"]
        auth = "Bearer " + access
        list_path = f"/api/openapi/token/{team}/"
        for i in range(10):
            requests.post(td.url + list_path, headers={"Authorization": auth},
                          json={"name": f"bench-{i}"}).raise_for_status()
        refresh_dir = os.path.join(tmp, "refresh")
        mint_refresh_pool(td, user, 60000 * max(1, D // 2), refresh_dir)
        # The pool's pages go to disk now, not during the next scenarios.
        os.sync()

        # Both ceilings now and again after the last scenario: the tables
        # divide by their means (consecutive scenarios drift on this machine).
        ceilings = {"nginx": [wrk(f"http://127.0.0.1:{nginx.port}/", D, 64)],
                    "MHD": [wrk(f"http://127.0.0.1:{mhd.port}/", D, 64)]}

        def run(name, path, conns=64, script=None, env=None, target=None, per=1.0, srv=td,
                read=True, commits=False):
            before = store_commits(srv) if commits else None
            res = wrk(srv.url + path, D, conns, script, env)
            after = store_commits(srv) if commits else None
            res["rps"] /= per
            res.update(name=name, rss=srv.rss(), target=target, read=read,
                       commits=None if before is None or after is None
                       else (after - before) / D, counted=commits)
            rows.append(res)
            return res

        verify = run("verify (valid access token)", "/api/auth/jwt/verify/",
                     script="post_body.lua", env={"BODY": "token=" + access},
                     target=("ratio", 0.85))
        # The same verify on a second tokend (same store and keys) with
        # [metrics] enabled = false: what counting costs (target: within 3 %).
        off = Tokend(binary, tmp, {**td_env, "TOKEND_METRICS_ENABLED": "false"},
                     log="tokend-metrics-off.log")
        off.start()
        res = wrk(off.url + "/api/auth/jwt/verify/", D, 64, "post_body.lua",
                  {"BODY": "token=" + access})
        res.update(name="verify, metrics off", rss=off.rss(), target=("ratio", 0.85),
                   read=True, commits=None, counted=False)
        rows.append(res)
        off.stop()
        off = None
        notes.append(f"metrics on vs off (verify): {verify['rps']:,.0f} vs {res['rps']:,.0f} "
                     f"req/s ({(verify['rps'] / res['rps'] - 1) * 100 if res['rps'] else 0:+.1f} %; "
                     f"target within 3 %)")
        listed = run("list (10 tokens)", list_path, script="get_auth.lua", env={"AUTH": auth},
                     target=("ratio", 0.7))

        # The same two with CORS on and an allowed Origin on every request
        # (issue 11: within 5 % of CORS off): a second server on the same
        # store and keys, stopped before the next scenario.
        origin = "https://app.example"
        td_cors = Tokend(binary, tmp, {**td_env, "TOKEND_CORS_ALLOWED_ORIGINS": origin},
                         log="tokend-cors.log")
        td_cors.start()
        for base, (name, path, script, env) in (
                (verify, ("verify, CORS on", "/api/auth/jwt/verify/", "post_body.lua",
                          {"BODY": "token=" + access})),
                (listed, ("list, CORS on", list_path, "get_auth.lua", {"AUTH": auth}))):
            res = run(name, path, script=script, env={**env, "ORIGIN": origin},
                      target=("vs", 0.95), srv=td_cors)
            res["base"] = base["rps"]
        notes.append(f"CORS on: tokend-cors exited with {td_cors.stop()} after SIGTERM")
        run("401 path (list, bad token)", list_path, script="get_auth.lua",
            env={"AUTH": "Bearer not.a.token"}, target=("ratio", 0.9))
        run("refresh (single-use tokens)", "/api/auth/jwt/refresh/", script="refresh.lua",
            env={"TOKENS_DIR": refresh_dir}, target=("rps", 25000), read=False, commits=True)
        run("issue + delete (pairs/s)", list_path, script="issue_delete.lua",
            env={"AUTH": auth}, target=("rps", 12000), per=2.0, read=False, commits=True)

        hash_s = pbkdf2_seconds(iterations)
        bound = (os.cpu_count() or 1) / hash_s
        login = run(f"login ({iterations} iterations)", "/api/auth/jwt/", conns=4,
                    script="post_body.lua",
                    env={"BODY": f"username=bench&password={password}"},
                    target=("bound", 0.9), read=False)
        login["bound"] = bound

        # Mixed: a login flood (64 connections) while verify is measured.
        flood = subprocess.Popen(
            ["wrk", "-t1", "-c64", f"-d{D + 4}s", "-s", os.path.join(LUA, "post_body.lua"),
             td.url + "/api/auth/jwt/"],
            env={**os.environ, "BODY": f"username=bench&password={password}"},
            stdout=subprocess.PIPE, text=True)
        time.sleep(2)
        mixed = run("verify during a login flood", "/api/auth/jwt/verify/", conns=32,
                    script="post_body.lua", env={"BODY": "token=" + access},
                    target=("flood", 0.5))
        flood_out = flood.communicate(timeout=D + 60)[0]
        m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", flood_out)
        m2 = re.search(r"(\d+) requests in", flood_out)
        notes.append(f"login flood: {m2.group(1) if m2 else '?'} requests, "
                     f"{m.group(1) if m else 0} answered 503 (queue full) at once")
        mixed["solo"] = verify["rps"]

        # Soak: the mix for args.soak seconds; RSS after the first minute and at
        # the end. Before the idle-connection scenario, whose 10,000 freed
        # connection pools would otherwise be trimmed during the soak.
        soak_env = {**os.environ, "AUTH": auth, "TOKEN": access, "LIST_PATH": list_path}
        soak = subprocess.Popen(["wrk", "-t2", "-c64", f"-d{args.soak}s", "-s",
                                 os.path.join(LUA, "mixed.lua"), td.url + "/"],
                                env=soak_env, stdout=subprocess.PIPE, text=True)
        time.sleep(min(60, args.soak / 5))
        rss_1min = td.rss()
        soak_out = soak.communicate(timeout=args.soak + 60)[0]
        rss_end = td.rss()
        m = re.search(r"Requests/sec:\s+([\d.]+)", soak_out)
        soak_rps = float(m.group(1)) if m else 0
        # 10,000 idle keep-alive connections, verify measured meanwhile.
        stop, ready = threading.Event(), {"event": threading.Event()}
        holder = threading.Thread(target=hold_idle, args=(td.port, args.idle, stop, ready))
        holder.start()
        ready["event"].wait(120)
        held = ready.get("held", 0)
        idle_conn_rss = td.rss()
        idle = run(f"verify with {held} idle keep-alive connections", "/api/auth/jwt/verify/",
                   conns=32, script="post_body.lua", env={"BODY": "token=" + access},
                   target=("p99", 10.0))
        idle["rss"] = idle_conn_rss
        stop.set()
        holder.join()
        if "error" in ready:
            notes.append(f"idle connections: stopped at {held}: {ready['error']}")

        code = td.stop()
        notes.append(f"tokend exited with {code} after SIGTERM")
        ceilings["nginx"].append(wrk(f"http://127.0.0.1:{nginx.port}/", D, 64))
        ceilings["MHD"].append(wrk(f"http://127.0.0.1:{mhd.port}/", D, 64))
    finally:
        for t in (td, td_cors, off):
            if t is not None and t.proc and t.proc.poll() is None:
                t.proc.kill()
        nginx.stop()
        if mhd is not None:
            notes.append(f"mhd_ceiling exited with {mhd.stop()} after SIGTERM")

    # The report.
    def mean(runs):
        return sum(r["rps"] for r in runs) / len(runs)

    c, cm = mean(ceilings["nginx"]), mean(ceilings["MHD"])

    def ceiling_text(runs):
        first = runs[0]
        return (" then ".join(f"{r['rps']:,.0f}" for r in runs) + f" req/s (first run p50 "
                f"{fmt_ms(first['p50'])} ms, p99 {fmt_ms(first['p99'])} ms)")

    lines = [f"# tokend benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"commit {commit}", "",
             f"Machine: {os.cpu_count()} cores; wrk -t{WRK_THREADS}, keep-alive, {D} s per "
             f"scenario, loopback. Two ceilings, each measured before the first scenario "
             f"and after the last, with the same wrk settings; the ratios divide by their "
             f"means:", "",
             f"- nginx `return 200 '{{}}'`, 2 workers, no access log: **{c:,.0f} req/s** "
             f"({ceiling_text(ceilings['nginx'])}).",
             f"- bare libmicrohttpd (bench/mhd_ceiling.c: tokend's daemon flags, thread "
             f"pool and limits, a fixed 200 `{{}}`): **{cm:,.0f} req/s** "
             f"({ceiling_text(ceilings['MHD'])}); {cm / c:.2f} × nginx.", "",
             "Targets are those of issue 15. × MHD is shown for the read routes, whose "
             "ceiling libmicrohttpd is; commits/s (tokend_store_commits_total over the "
             "scenario) for the write routes.", "",
             "| scenario | req/s | p50 ms | p99 ms | × nginx | × MHD | commits/s | non-2xx "
             "| RSS MiB | target | met |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        kind, val = r["target"]
        if kind == "ratio":
            goal, met = f"≥ {val} × nginx", r["rps"] >= val * c
        elif kind == "rps":
            goal, met = f"≥ {val:,} /s", r["rps"] >= val
        elif kind == "bound":
            goal = f"≥ {val} × bound ({r['bound']:.1f}/s = cores ÷ {1000 / r['bound'] * (os.cpu_count() or 1):.0f} ms)"
            met = r["rps"] >= val * r["bound"]
        elif kind == "vs":
            goal = f"≥ {val} × CORS off ({r['base']:,.0f})"
            met = r["rps"] >= val * r["base"]
        elif kind == "flood":
            goal = f"p99 ≤ 5 ms and ≥ {val} × solo ({r['solo']:,.0f})"
            met = (r["p99"] or 99) <= 5 and r["rps"] >= val * r["solo"]
        else:
            goal, met = f"p99 < {val} ms, RSS < 256 MiB", (r["p99"] or 99) < val and r["rss"] < 256 * 1024
        if not r["counted"]:
            commits = ""
        elif r["commits"] is None:
            commits = "n/a"
        else:
            commits = f"{r['commits']:,.0f}"
        mhd_ratio = f"{r['rps'] / cm:.2f}" if r["read"] else ""
        lines.append(f"| {r['name']} | {r['rps']:,.0f} | {fmt_ms(r['p50'])} | "
                     f"{fmt_ms(r['p99'])} | {r['rps'] / c:.2f} | "
                     f"{mhd_ratio} | "
                     f"{commits} | {r['non2xx']} | "
                     f"{r['rss'] / 1024:.1f} | {goal} | {'yes' if met else '**no**'} |")
    drift = (rss_end - rss_1min) / rss_1min * 100 if rss_1min else 0
    lines += ["",
              f"- Idle RSS after start-up: {idle_rss / 1024:.1f} MiB (target < 16 MiB: "
              f"{'yes' if idle_rss < 16 * 1024 else '**no**'}).",
              f"- Soak ({args.soak} s of verify/list/401/404, {soak_rps:,.0f} req/s): RSS "
              f"{rss_1min / 1024:.1f} MiB after the first minute, {rss_end / 1024:.1f} MiB at "
              f"the end ({drift:+.1f} %; target within 5 %: "
              f"{'yes' if abs(drift) <= 5 else '**no**'}).",
              f"- One PBKDF2-SHA256 hash at {iterations} iterations on one core: "
              f"{hash_s * 1000:.1f} ms (Python's hashlib, OpenSSL)."]
    # Issue at 50,000 live tokens against issue at 0 (bench/issue_scale.py:
    # a team per level, seeded through SQL, the same server).
    import issue_scale
    flat = issue_scale.run(args.build, levels=(0, 50000), reps=2, duration=3)
    at0, at50k = flat[0]["rps"], flat[1]["rps"]
    ratio = at50k / at0 if at0 else 0
    lines.append(f"- Issue with 50,000 live tokens in the team: {at50k:,.0f}/s against "
                 f"{at0:,.0f}/s with none ({ratio:.2f} ×; target ≥ 0.9: "
                 f"{'yes' if ratio >= 0.9 else '**no**'}; bench/issue_scale.py, wrk -c32, "
                 f"median of 2 × 3 s).")
    lines += [f"- {n}" for n in notes]
    lines += ["", "Commands (the harness: `make bench`, i.e. `/usr/bin/python3 bench/run.py`):",
              "", "```"]
    lines += [f"# ceiling: {name}\n{runs[0]['cmd']}" for name, runs in ceilings.items()]
    lines += [f"# {r['name']}\n{r['cmd']}" for r in rows]
    lines += ["```", ""]
    report = "\n".join(lines)
    print(report)
    # Only full runs (the defaults) go to bench/results/; trial runs with
    # shorter settings go to the temporary directory.
    full = (D, args.soak, args.idle) == (10, 240, 10000)
    out = os.path.join(ROOT, "bench", "results" if full else tmp,
                       f"{time.strftime('%Y-%m-%d-%H%M', time.gmtime())}-{commit}.md")
    with open(out, "w") as f:
        f.write(report)
    print(f"written to {os.path.relpath(out, ROOT)}", file=sys.stderr)
    tidy(tmp)


if __name__ == "__main__":
    main()
