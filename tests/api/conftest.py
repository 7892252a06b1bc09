"""Black-box test harness for tokend.

Everything here talks to the real binary: it is started as a subprocess on a
free port, driven over HTTP (requests, or raw sockets where the framing
matters) and through its operator CLI, and its store (through dbsql) and key
directory are inspected from the outside.

Binary: $TOKEND_BIN, default <repo>/build/tokend.  Run with
    /usr/bin/python3 -m pytest tests/api -q

The store is SQLite unless TOKEND_TEST_DATABASE=postgres: then each
installation gets its own fresh PostgreSQL database (a FILE_COPY of a
template that `tokend migrate` made once per session), on the server whose
maintenance database TOKEND_TEST_PG_URL names, or else on a throw-away
server (tests/pgtmp.py) the session starts and stops. `Tokend.database` is
what `--database` gets (the path or the URL), `Tokend.db` the SQLite path
(None on PostgreSQL). Tests inherently about SQLite carry
@sqlite_only("reason").

Helpers are imported by the test modules with ``from conftest import ...``.
"""

import base64
import json
import os
import queue
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid as uuidlib
from pathlib import Path

import jwt
import pytest
import requests
from requests.structures import CaseInsensitiveDict

import dbsql

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
LOGIN = "/api/auth/jwt/"
NO_ACCOUNT = "No active account found with the given credentials"
WWW_AUTH = 'Bearer realm="api"'
FAST_ITERATIONS = "1000"
DEFAULT_ITERATIONS = 600000
LISTEN_RE = re.compile(r"listening on http://[^:\s]+:(\d+)")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
HASH_RE = re.compile(r"^pbkdf2_sha256\$(\d+)\$([^$]+)\$([A-Za-z0-9+/]+=*)$")
# a sanitizer build (make test-asan sets TOKEND_SANITIZED=1) starts and stops slower
_SLOWDOWN = 2.0 if os.environ.get("TOKEND_SANITIZED") else 1.0
# Waits in this harness bound a hang, never a speed (issue 16: the suite runs
# again under ASan on a loaded 2-core CI machine): a wait that returns as
# soon as its condition holds costs nothing for being long.
HANG = 30 * _SLOWDOWN
START_TIMEOUT = float(os.environ.get("TOKEND_TEST_START_TIMEOUT", HANG))
STOP_TIMEOUT = float(os.environ.get("TOKEND_TEST_STOP_TIMEOUT", HANG))
HTTP_TIMEOUT = 15
# For servers of tests that fail many logins on purpose (timing samples, a
# saturated hash pool): login throttling (test_throttle.py) at its highest
# limits, so that it neither refuses them nor is switched off.
UNTHROTTLED = {"TOKEND_THROTTLE_LOGIN_CLIENT_FAILURES": "65535",
               "TOKEND_THROTTLE_LOGIN_USER_FAILURES": "65535"}
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "runtime error:", "UndefinedBehaviorSanitizer",
                     "ThreadSanitizer")


# --------------------------------------------------------------------------
# locating the binary


def find_binary():
    raw = os.environ.get("TOKEND_BIN")
    if raw:
        cand = Path(raw)
        if not cand.is_absolute():
            here = Path.cwd() / cand
            cand = here if here.exists() else REPO / cand
    else:
        cand = REPO / "build" / "tokend"
    return cand.resolve()


@pytest.fixture(scope="session")
def tokend_bin():
    path = find_binary()
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"tokend binary not found or not executable at {path}; build it "
            f"(cmake -S . -B build && cmake --build build) or set TOKEND_BIN",
            pytrace=False)
    return path


def child_env(overrides=None):
    """Environment for a tokend process: the caller's, minus every TOKEND_*
    variable (so the harness's own TOKEND_BIN or a developer's overrides can
    not leak into the config), plus `overrides` (a value of None removes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKEND_")}
    for k, v in (overrides or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


# --------------------------------------------------------------------------
# the database backend: SQLite files, or one PostgreSQL database each

BACKEND = os.environ.get("TOKEND_TEST_DATABASE", "sqlite") or "sqlite"
if BACKEND not in ("sqlite", "postgres"):
    raise RuntimeError(f"TOKEND_TEST_DATABASE={BACKEND!r}: sqlite or postgres")
ON_PG = BACKEND == "postgres"
TEMPLATE = "tokend_tpl"


def sqlite_only(reason):
    """Marks a test that is about SQLite itself (its file, WAL, PRAGMAs):
    skipped on PostgreSQL, with the reason."""
    return pytest.mark.skipif(ON_PG, reason=f"SQLite only: {reason}")


def sqlite_undo_006(con):
    """Takes a SQLite store back from version 6 to 5 (sqlite3 connection
    con; the caller sets user_version): 006's column goes, and 003's
    triggers on api_tokens come back in place of 006's."""
    v003 = (REPO / "sql" / "sqlite" / "003_api_token_versions.sql").read_text()
    triggers = re.findall(r"CREATE TRIGGER api_tokens_version_(?:insert|delete|update) .*?END;",
                          v003, re.S)
    assert len(triggers) == 3
    con.executescript("DROP TRIGGER api_tokens_version_insert;"
                      "DROP TRIGGER api_tokens_version_delete;"
                      "DROP TRIGGER api_tokens_version_update;"
                      "ALTER TABLE api_token_versions DROP COLUMN tokens;" + "\n".join(triggers))


class PgDatabases:
    """Databases on one PostgreSQL server (admin_url: its maintenance
    database): one per installation, copied from a migrated template
    (STRATEGY FILE_COPY, tests/pg/README.md: 35-65 ms against 60-160 ms for
    the migrations). A worker thread, on a connection of its own, copies
    the next few ahead and drops the used ones, so that a test rarely waits
    for either: the copies overlap the tests' own waits."""

    AHEAD = 2  # copies made before they are asked for

    def __init__(self, admin_url):
        import psycopg2
        self.admin_url = admin_url
        self._con = psycopg2.connect(admin_url, connect_timeout=10)
        self._con.autocommit = True
        self._lock = threading.Lock()
        self._n = 0
        self._prefix = f"t{os.getpid()}_"
        self._template_ready = False
        self._ready = queue.Queue()  # (name, url): copies of the template
        self._jobs = queue.Queue()   # ("copy", None), ("drop", name), ("stop", None)
        self._wcon = psycopg2.connect(admin_url, connect_timeout=10)
        self._wcon.autocommit = True
        self._worker = threading.Thread(target=self._work, name="pg-databases", daemon=True)
        self._worker.start()
        self.stats = {"made": 0, "waited": 0, "dropped": 0}

    def url_of(self, name):
        """admin_url with its database replaced by `name` (a conninfo's
        last dbname= wins)."""
        if not self.admin_url.startswith(dbsql.PG_PREFIXES):
            return f"{self.admin_url} dbname={name}"
        u = urllib.parse.urlsplit(self.admin_url)
        return urllib.parse.urlunsplit(u._replace(path="/" + urllib.parse.quote(name, safe="")))

    def _exec(self, sql, con=None):
        with (con or self._con).cursor() as cur:
            cur.execute(sql)

    def _next_name(self):
        with self._lock:
            self._n += 1
            return f"{self._prefix}{self._n}"

    def _copy(self, con):
        name = self._next_name()
        self._exec(f'CREATE DATABASE "{name}" TEMPLATE "{self._prefix}{TEMPLATE}" '
                   "STRATEGY FILE_COPY", con)
        return name, self.url_of(name)

    def _work(self):
        while True:
            job, arg = self._jobs.get()
            try:
                if job == "stop":
                    return
                if job == "copy":
                    self._ready.put(self._copy(self._wcon))
                else:
                    self._exec(f'DROP DATABASE IF EXISTS "{arg}" WITH (FORCE)', self._wcon)
            except Exception as e:  # noqa: BLE001 -- the main thread copies for itself
                print(f"conftest: pg-databases worker: {job} {arg or ''}: {e}", file=sys.stderr)

    def _template(self, binary):
        if self._template_ready:
            return
        name = f"{self._prefix}{TEMPLATE}"
        self._exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._exec(f'CREATE DATABASE "{name}" TEMPLATE template0')
        proc = subprocess.run([str(binary), "--database", self.url_of(name), "migrate"],
                              capture_output=True, text=True, env=child_env(), timeout=120)
        assert proc.returncode == 0, f"tokend migrate of the template failed: {proc.stderr}"
        self._exec(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE true')
        self._template_ready = True
        for _ in range(self.AHEAD):
            self._jobs.put(("copy", None))

    def create(self, binary, empty=False):
        """A new database, migrated unless `empty`; returns (name, url)."""
        self.stats["made"] += 1
        if empty:
            name = self._next_name()
            self._exec(f'CREATE DATABASE "{name}" TEMPLATE template0')
            return name, self.url_of(name)
        self._template(binary)
        self._jobs.put(("copy", None))  # the one that replaces this
        try:
            return self._ready.get_nowait()
        except queue.Empty:
            self.stats["waited"] += 1
        try:
            return self._ready.get(timeout=60)
        except queue.Empty:  # the worker failed (it said why): copy here
            return self._copy(self._con)

    def drop(self, name):
        self.stats["dropped"] += 1
        self._jobs.put(("drop", name))

    def close(self):
        self._jobs.put(("stop", None))
        self._worker.join(timeout=120)
        while True:
            try:
                name, _ = self._ready.get_nowait()
            except queue.Empty:
                break
            self._exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if self._template_ready:
            name = f"{self._prefix}{TEMPLATE}"
            self._exec(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE false')
            self._exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._wcon.close()
        self._con.close()


PG = None  # the session's PgDatabases when ON_PG
PG_SERVER = None  # the session's pgtmp.PgTmp, when it started one


@pytest.fixture(scope="session", autouse=True)
def pg_databases():
    """On PostgreSQL: the server (TOKEND_TEST_PG_URL, or a throw-away one
    for the session) the installations' databases are made on."""
    global PG, PG_SERVER
    if not ON_PG:
        yield None
        return
    url = os.environ.get("TOKEND_TEST_PG_URL")
    if not url:
        import pgtmp
        if not pgtmp.available():
            pytest.exit("TOKEND_TEST_DATABASE=postgres: no TOKEND_TEST_PG_URL and no "
                        f"{pgtmp.PG_BIN}/initdb to start a server with", returncode=2)
        # in tmpfs when there is one: a CREATE DATABASE per installation
        # copies ~8 MB (40-90 ms there, 0.4-1.1 s on a busy shared disk)
        shm = Path("/dev/shm")
        where = None
        if shm.is_dir() and os.access(shm, os.W_OK):
            where = shm / f"tokend-pg-{os.getpid()}-{uuidlib.uuid4().hex[:6]}"
        PG_SERVER = pgtmp.PgTmp(where).start()
        url = PG_SERVER.url
    PG = PgDatabases(url)
    try:
        yield PG
    finally:
        PG.close()
        PG = None
        if PG_SERVER is not None:
            PG_SERVER.stop()
            PG_SERVER = None


def sanitizer_lines(text):
    return [ln for ln in text.splitlines()
            if any(m in ln for m in SANITIZER_MARKERS)]


# --------------------------------------------------------------------------
# one tokend process running `serve`


class Server:
    def __init__(self, cmd, env, cwd, label):
        self.cmd = cmd
        self.label = label
        self.err_lines = []
        self.out_lines = []
        self.port = None
        self.returncode = None
        self.stopped = False
        self.proc = subprocess.Popen(
            cmd, env=env, cwd=str(cwd), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.err_lines), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.out_lines), daemon=True),
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream, sink):
        for raw in iter(stream.readline, b""):
            sink.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
        stream.close()

    # -- output
    def stderr(self):
        return "\n".join(self.err_lines)

    def stdout(self):
        return "\n".join(self.out_lines)

    def tail(self, n=40):
        return "\n".join(self.err_lines[-n:])

    def wait_listening(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ln in list(self.err_lines):
                m = LISTEN_RE.search(ln)
                if m:
                    self.port = int(m.group(1))
                    return self.port
            if self.proc.poll() is not None:
                for t in self._threads:  # the pumps drain to EOF
                    t.join(timeout=HANG)
                raise AssertionError(
                    f"{self.label}: tokend exited with {self.proc.returncode} before "
                    f"printing 'listening on http://...'\ncmd: {self.cmd}\nstderr:\n{self.stderr()}")
            time.sleep(0.02)
        raise AssertionError(
            f"{self.label}: no 'listening on http://HOST:PORT' line on stderr within "
            f"{timeout}s\ncmd: {self.cmd}\nstderr:\n{self.stderr()}")

    def wait_for_stderr(self, predicate, timeout=HANG):
        """Wait until a stderr line satisfies predicate; return it or None."""
        deadline = time.monotonic() + timeout
        while True:
            for ln in list(self.err_lines):
                if predicate(ln):
                    return ln
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)

    # -- http
    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def url(self, path):
        return self.base + path

    def request(self, method, path, **kw):
        kw.setdefault("timeout", HTTP_TIMEOUT)
        kw.setdefault("allow_redirects", False)
        return requests.request(method, self.url(path), **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def login(self, username, password, form=False, path=LOGIN, **kw):
        if form:
            return self.post(path, data={"username": username, "password": password}, **kw)
        return self.post(path, json={"username": username, "password": password}, **kw)

    def raw(self, data, **kw):
        return raw_exchange(self.port, data, **kw)

    # -- life cycle
    def alive(self):
        return self.proc.poll() is None

    def assert_alive(self, context=""):
        """The process is running and still answers a cheap request."""
        assert self.proc.poll() is None, (
            f"{self.label}: tokend died{' after ' + context if context else ''} "
            f"(exit {self.proc.returncode})\nstderr tail:\n{self.tail()}")
        try:
            r = requests.get(self.url("/__still-alive__"), timeout=HANG)
        except requests.RequestException as e:
            raise AssertionError(
                f"{self.label}: tokend no longer answers"
                f"{' after ' + context if context else ''}: {e!r}\nstderr tail:\n{self.tail()}")
        assert r.status_code == 404, (
            f"{self.label}: unknown path answered {r.status_code} instead of 404"
            f"{' after ' + context if context else ''}")

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Send sig, wait for exit, return the exit code (kills on timeout
        and raises)."""
        if self.stopped:
            return self.returncode
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                for t in self._threads:
                    t.join(timeout=2)
                self.returncode = self.proc.returncode
                raise AssertionError(
                    f"{self.label}: tokend did not exit within {timeout}s of "
                    f"{signal.Signals(sig).name}; killed\nstderr tail:\n{self.tail()}")
        for t in self._threads:
            t.join(timeout=5)
        self.returncode = self.proc.returncode
        return self.returncode

    def check_clean_exit(self):
        """Stop (SIGTERM) if still running; assert exit 0 and no sanitizer
        report.  Used by fixture teardown."""
        if self.stopped:  # a test stopped it and asserted on the result itself
            problems = sanitizer_lines(self.stderr())
            assert not problems, (f"{self.label}: sanitizer report on stderr:\n" + "\n".join(problems[:20]))
            return
        was_running = self.proc.poll() is None
        rc = self.stop()
        problems = sanitizer_lines(self.stderr())
        assert not problems, (
            f"{self.label}: sanitizer report on stderr:\n" + "\n".join(problems[:20])
            + f"\nstderr tail:\n{self.tail(80)}")
        if was_running:
            assert rc == 0, (
                f"{self.label}: tokend exited with {rc} after SIGTERM (expected 0)"
                f"\nstderr tail:\n{self.tail()}")
        else:
            # died on its own before teardown: that is a crash unless a test
            # stopped it explicitly (then self.stopped was already set)
            assert rc == 0, (
                f"{self.label}: tokend had already exited with {rc} before teardown"
                f"\nstderr tail:\n{self.tail()}")


# --------------------------------------------------------------------------
# one tokend "installation": a database and a key directory


class CliResult:
    def __init__(self, args, proc):
        self.args = args
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def __repr__(self):
        return (f"<tokend {' '.join(map(str, self.args))}: exit {self.rc}\n"
                f"stdout: {self.out!r}\nstderr: {self.err!r}>")


class Tokend:
    """A database + key directory in a temp dir, with the CLI and servers
    pointed at them.  `env` holds TOKEND_* overrides used by both the CLI and
    servers (default: fast PBKDF2). On PostgreSQL the database is a fresh
    one of its own, migrated (`empty`: not even that), dropped at cleanup."""

    def __init__(self, binary, root, env=None, label="tokend", empty=False):
        self.bin = Path(binary)
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.pg_name = None
        if ON_PG:
            self.db = None
            self.pg_name, self.database = PG.create(self.bin, empty=empty)
        else:
            self.db = self.root / "tokend.db"
            self.database = str(self.db)
        self.keys = self.root / "keys"
        self.label = label
        self.env = {"TOKEND_PASSWORD_PBKDF2_ITERATIONS": FAST_ITERATIONS}
        self.env.update(env or {})
        self.servers = []

    @property
    def backend(self):
        return BACKEND

    def connect(self, readonly=False, timeout=10):
        """A dbsql connection to this installation's database."""
        return dbsql.connect(self.database, readonly=readonly, timeout=timeout)

    def sql(self, query, params=()):
        """One statement (dbsql's `?` placeholders) on this installation's
        database: a query's rows as dicts, else the count of rows changed."""
        with self.connect() as con:
            cur = con.execute(query, params)
            if cur.description is None:
                return cur.rowcount
            cols = cur.columns
            return [dict(zip(cols, r)) for r in cur.fetchall()]

    def share_database(self, other):
        """Use `other`'s database (two instances of one store); this
        installation's own is dropped now."""
        if self.pg_name is not None:
            PG.drop(self.pg_name)
            self.pg_name = None
        self.db, self.database = other.db, other.database

    def schema_version(self):
        """The migrations applied: SQLite's user_version, PostgreSQL's
        schema_version table."""
        if ON_PG:
            return self.sql("SELECT coalesce(max(version), 0) AS v FROM schema_version")[0]["v"]
        return self.sql("PRAGMA user_version")[0]["user_version"]

    def tables(self):
        if ON_PG:
            q = "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public'"
        else:
            q = "SELECT name FROM sqlite_master WHERE type = 'table'"
        return {r["name"] for r in self.sql(q)}

    def columns(self, table):
        if ON_PG:
            return {r["name"] for r in self.sql(
                "SELECT column_name AS name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name = ?", (table,))}
        return {r["name"] for r in self.sql(f"PRAGMA table_info({table})")}

    def global_args(self):
        return ["--database", self.database, "--key-dir", str(self.keys)]

    def merged_env(self, env=None):
        e = dict(self.env)
        e.update(env or {})
        return child_env(e)

    def cli(self, *args, input=None, env=None, global_args=None, timeout=120):
        ga = self.global_args() if global_args is None else list(global_args)
        argv = [str(self.bin)] + ga + [str(a) for a in args]
        try:
            proc = subprocess.run(argv, input=input, capture_output=True, text=True,
                                  errors="replace", env=self.merged_env(env),
                                  cwd=str(self.root), timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"tokend {' '.join(map(str, args))} hung for {timeout}s")
        res = CliResult(args, proc)
        problems = sanitizer_lines(res.err)
        assert not problems, f"sanitizer report from CLI {res!r}"
        return res

    def cli_ok(self, *args, **kw):
        res = self.cli(*args, **kw)
        assert res.rc == 0, f"CLI command failed: {res!r}"
        return res

    def add_user(self, name, password, env=None):
        res = self.cli("user", "add", name, "--password-stdin",
                       input=password + "\n", env=env)
        assert res.rc == 0, f"`user add {name}` failed: {res!r}"
        uid = res.out.strip()
        assert UUID_RE.match(uid), (
            f"`user add` must print the new user's lowercase uuid alone on stdout, got {res.out!r}")
        return uid

    def start(self, env=None, serve_args=(), global_args=None, listen="127.0.0.1:0",
              wait=True, label=None):
        ga = self.global_args() if global_args is None else list(global_args)
        sa = list(serve_args)
        if listen is not None:
            sa = ["--listen", listen] + sa
        cmd = [str(self.bin)] + ga + ["serve"] + sa
        srv = Server(cmd, self.merged_env(env), self.root, label or self.label)
        self.servers.append(srv)
        if wait:
            try:
                srv.wait_listening()
            except AssertionError:
                srv.stopped = True
                if srv.proc.poll() is None:
                    srv.proc.kill()
                    srv.proc.wait()
                raise
        return srv

    def keyfiles(self):
        return sorted(self.keys.glob("*.HS256.key"))

    def keys_by_kid(self):
        out = {}
        for f in self.keyfiles():
            kid = f.name[:-len(".HS256.key")]
            out[kid] = b64url_decode(f.read_text().strip())
        return out

    def drop_database(self):
        if self.pg_name is not None and PG is not None:
            PG.drop(self.pg_name)
            self.pg_name = None

    def cleanup(self, drop=True):
        errors = []
        for srv in self.servers:
            try:
                srv.check_clean_exit()
            except AssertionError as e:
                errors.append(str(e))
        self.servers = []
        if drop:
            self.drop_database()
        if errors:
            pytest.fail("\n\n".join(errors), pytrace=False)


class Factory:
    def __init__(self, binary, base):
        self.bin = binary
        self.base = Path(base)
        self.instances = []

    def __call__(self, env=None, label=None, empty=False):
        n = len(self.instances)
        inst = Tokend(self.bin, self.base / f"inst{n}", env=env, label=label or f"tokend#{n}",
                      empty=empty)
        self.instances.append(inst)
        return inst

    def server(self, env=None, serve_args=(), label=None, **kw):
        """New installation and a running server on it."""
        inst = self(env=env, label=label)
        return inst, inst.start(serve_args=serve_args, **kw)

    def cleanup(self):
        errors = []
        # every server stopped before any database goes: two installations
        # may share one (Tokend.share_database)
        for inst in self.instances:
            try:
                inst.cleanup(drop=False)
            except BaseException as e:  # pytest.fail raises Failed
                errors.append(str(e))
        for inst in self.instances:
            inst.drop_database()
        if errors:
            pytest.fail("\n\n".join(errors), pytrace=False)


@pytest.fixture
def factory(tokend_bin, tmp_path):
    """Function-scoped factory of installations/servers; every server still
    running at teardown must exit 0 on SIGTERM with a clean stderr."""
    f = Factory(tokend_bin, tmp_path)
    yield f
    f.cleanup()


@pytest.fixture(scope="module")
def module_factory(tokend_bin, tmp_path_factory):
    f = Factory(tokend_bin, tmp_path_factory.mktemp("mod"))
    yield f
    f.cleanup()


# --------------------------------------------------------------------------
# the shared default server


class Shared:
    """Session-wide installation: users alice (active) and dora (disabled),
    a server with default settings except fast PBKDF2."""

    def __init__(self, inst):
        self.inst = inst
        self.server = None
        self.users = {}

    def new_user(self, prefix, password, **kw):
        name = f"{prefix}-{uuidlib.uuid4().hex[:10]}"
        uid = self.inst.add_user(name, password, **kw)
        self.users[name] = (uid, password)
        return name, uid


@pytest.fixture(scope="session")
def shared(tokend_bin, tmp_path_factory):
    inst = Tokend(tokend_bin, tmp_path_factory.mktemp("shared"), label="shared server")
    sh = Shared(inst)
    # users created before the server starts (CLI creates the schema) ...
    sh.users["alice"] = (inst.add_user("alice", "alice pässword +1"), "alice pässword +1")
    sh.users["dora"] = (inst.add_user("dora", "dora-password"), "dora-password")
    inst.cli_ok("user", "disable", "dora")
    sh.server = inst.start()
    yield sh
    inst.cleanup()


@pytest.fixture
def srv(shared):
    """The shared server, restarted (on the same store) if an earlier test
    crashed it -- that earlier test has failed already, later ones should not
    fail for the same reason."""
    if not shared.server.alive():
        shared.server = shared.inst.start(label="shared server (restarted after a crash)")
    return shared.server


@pytest.fixture
def alice(shared):
    uid, pw = shared.users["alice"]
    return "alice", pw, uid


# --------------------------------------------------------------------------
# assertions on responses


def media_type(resp):
    return resp.headers.get("Content-Type", "").split(";")[0].strip().lower()


def expect_json(resp, status, what=""):
    """Assert status, JSON content type, nosniff; return the parsed body."""
    label = f"{what}: " if what else ""
    text = resp.text if hasattr(resp, "text") else ""
    assert resp.status_code == status, (
        f"{label}expected HTTP {status}, got {resp.status_code}; body {text[:400]!r}")
    assert media_type(resp) == "application/json", (
        f"{label}HTTP {status} must have Content-Type application/json, got "
        f"{resp.headers.get('Content-Type')!r}; body {text[:200]!r}")
    assert resp.headers.get("X-Content-Type-Options", "").lower() == "nosniff", (
        f"{label}HTTP {status} lacks 'X-Content-Type-Options: nosniff' "
        f"(headers: {dict(resp.headers)})")
    try:
        body = resp.json()
    except ValueError:
        raise AssertionError(f"{label}HTTP {status} body is not JSON: {text[:400]!r}")
    return body


def expect_detail(resp, status, what=""):
    body = expect_json(resp, status, what)
    assert isinstance(body, dict) and isinstance(body.get("detail"), str) and body["detail"], (
        f"{what}: HTTP {status} body must be an object with a non-empty 'detail' string, got {body!r}")
    return body


def expect_parse_error(resp, what=""):
    body = expect_detail(resp, 400, what)
    assert body["detail"].startswith("JSON parse error - "), (
        f"{what}: expected detail 'JSON parse error - <reason>', got {body!r}")
    return body


def expect_401(resp, what=""):
    body = expect_detail(resp, 401, what)
    assert body["detail"] == NO_ACCOUNT, f"{what}: wrong 401 detail {body!r}"
    assert set(body) <= {"detail", "code"}, f"{what}: unexpected keys in 401 body {body!r}"
    assert resp.headers.get("WWW-Authenticate") == WWW_AUTH, (
        f"{what}: 401 must carry 'WWW-Authenticate: {WWW_AUTH}', got "
        f"{resp.headers.get('WWW-Authenticate')!r}")
    return body


def expect_tokens(resp, what="login"):
    body = expect_json(resp, 201, what)
    assert isinstance(body, dict) and set(body) == {"refresh", "access"}, (
        f"{what}: 201 body must be exactly {{refresh, access}}, got keys {sorted(body) if isinstance(body, dict) else body!r}")
    assert resp.headers.get("Cache-Control", "").lower().replace(" ", "") == "no-store", (
        f"{what}: token response needs 'Cache-Control: no-store', got {resp.headers.get('Cache-Control')!r}")
    return body


def b64url_decode(s):
    s = s.strip()
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


# The 401 body of a refused token (verify, refresh, logout; API.md's table).
TOKEN_INVALID = {"detail": "Token is invalid or expired", "code": "token_not_valid"}


def claims_of(token):
    """The unverified payload of a JWT."""
    return json.loads(b64url_decode(token.split(".")[1]))


def header_of(token):
    """The unverified header of a JWT."""
    return json.loads(b64url_decode(token.split(".")[0]))


def expect_invalid(resp, what=""):
    """Assert the 401 of a refused token: TOKEN_INVALID and the Bearer challenge."""
    body = expect_json(resp, 401, what)
    assert body == TOKEN_INVALID, f"{what}: 401 body {body!r} != {TOKEN_INVALID!r}"
    assert resp.headers.get("WWW-Authenticate") == WWW_AUTH, (
        f"{what}: 401 lacks 'WWW-Authenticate: {WWW_AUTH}' (got "
        f"{resp.headers.get('WWW-Authenticate')!r})")
    return body


def expect_verified(resp, token, what=""):
    """Assert verify's 201: exactly {"token": <the token>}."""
    body = expect_json(resp, 201, what)
    assert body == {"token": token}, (
        f"{what}: 201 body must be {{'token': <the token>}}, got {body!r}")
    return body


def decode_token(token, keys):
    """Verify a JWT with the key files' bytes; return (header, claims)."""
    header = jwt.get_unverified_header(token)
    assert header.get("alg") == "HS256", f"token header alg must be HS256: {header}"
    assert header.get("kid") in keys, (
        f"token kid {header.get('kid')!r} does not name a key file (have {sorted(keys)})")
    claims = jwt.decode(token, keys[header["kid"]], algorithms=["HS256"],
                        options={"require": ["exp", "iat", "jti"]})
    return header, claims


# --------------------------------------------------------------------------
# the store, read from outside


def _database(db):
    """An installation, or what its .database is (a path or a URL)."""
    return db.database if isinstance(db, Tokend) else db


def db_rows(db, sql, params=()):
    """Every row of a read-only query as dicts; db: an installation, a
    SQLite path or a PostgreSQL URL."""
    return dbsql.rows(_database(db), sql, params)


def db_snapshot(db):
    snap = {}
    for table in ("users", "refresh_tokens"):
        rows = db_rows(db, f"SELECT * FROM {table}")
        snap[table] = sorted(repr(sorted(r.items())) for r in rows)
    return snap


class StoreUnchanged:
    """with StoreUnchanged(server, db): ...  -- asserts the users and
    refresh_tokens tables are identical afterwards and the server still
    answers."""

    def __init__(self, server, db, what=""):
        self.server, self.db, self.what = server, db, what

    def __enter__(self):
        self.before = db_snapshot(self.db)
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            return False
        self.server.assert_alive(self.what)
        after = db_snapshot(self.db)
        assert after == self.before, f"store changed by hostile input ({self.what})"
        return False


@pytest.fixture
def unchanged(srv, shared):
    return lambda what="": StoreUnchanged(srv, shared.inst.database, what)


# --------------------------------------------------------------------------
# raw HTTP over sockets


class RawResponse:
    def __init__(self, status, reason, headers, body):
        self.status_code = status
        self.reason = reason
        self.headers = headers
        self.content = body
        self.text = body.decode("utf-8", "replace")

    def json(self):
        import json
        return json.loads(self.content.decode("utf-8"))

    def __repr__(self):
        return f"<HTTP {self.status_code} {dict(self.headers)} {self.content[:200]!r}>"


def build_request(method, path, headers=(), body=b"", version="HTTP/1.1", host=True):
    if isinstance(path, str):
        path = path.encode("latin-1")
    lines = [method.encode() + b" " + path + b" " + version.encode()]
    if host:
        lines.append(b"Host: 127.0.0.1")
    for k, v in headers:
        k = k.encode("latin-1") if isinstance(k, str) else k
        v = v.encode("latin-1") if isinstance(v, str) else v
        lines.append(k + b": " + v)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def parse_responses(data):
    """Parse as many complete responses as `data` holds.
    Returns (responses, complete) where complete is False when trailing bytes
    form an incomplete response."""
    out = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            return out, False
        head = data[pos:end].decode("latin-1").split("\r\n")
        status_line = head[0].split(" ", 2)
        try:
            status = int(status_line[1])
        except (IndexError, ValueError):
            raise AssertionError(f"malformed status line {head[0]!r} in {data[:300]!r}")
        reason = status_line[2] if len(status_line) > 2 else ""
        headers = CaseInsensitiveDict()
        for ln in head[1:]:
            if ":" in ln:
                k, v = ln.split(":", 1)
                k, v = k.strip(), v.strip()
                headers[k] = headers[k] + ", " + v if k in headers else v
        pos = end + 4
        if 100 <= status < 200 or status in (204, 304):
            out.append(RawResponse(status, reason, headers, b""))
            continue
        if "chunked" in headers.get("Transfer-Encoding", "").lower():
            body = b""
            while True:
                nl = data.find(b"\r\n", pos)
                if nl < 0:
                    return out, False
                size = int(data[pos:nl].split(b";")[0].strip() or b"0", 16)
                pos = nl + 2
                if size == 0:
                    tr = data.find(b"\r\n", pos)
                    while tr >= 0 and tr != pos:  # skip trailers
                        pos = tr + 2
                        tr = data.find(b"\r\n", pos)
                    if tr < 0:
                        return out, False
                    pos = tr + 2
                    break
                if len(data) < pos + size + 2:
                    return out, False
                body += data[pos:pos + size]
                pos += size + 2
        elif "Content-Length" in headers:
            n = int(headers["Content-Length"].split(",")[0])
            if len(data) < pos + n:
                return out, False
            body = data[pos:pos + n]
            pos += n
        else:  # until close
            body = data[pos:]
            pos = len(data)
        out.append(RawResponse(status, reason, headers, body))
    return out, True


def final_responses(data):
    resps, _ = parse_responses(data)
    return [r for r in resps if not 100 <= r.status_code < 200]


class RawConn:
    """A raw client connection with helpers that never block longer than a
    deadline."""

    def __init__(self, port, timeout=HANG):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.closed_by_peer = False
        self.reset = False

    def send(self, data):
        """Send; return False if the peer has closed/reset the connection."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.reset = True
            return False

    def readable(self, timeout=0.0):
        r, _, _ = select.select([self.sock], [], [], timeout)
        return bool(r)

    def pump(self, timeout):
        """Read what arrives within `timeout` seconds (stops early at EOF)."""
        deadline = time.monotonic() + timeout
        while not self.closed_by_peer:
            left = deadline - time.monotonic()
            if left <= 0 or not self.readable(left):
                break
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, ConnectionAbortedError):
                self.reset = True
                self.closed_by_peer = True
                break
            except socket.timeout:
                break
            if not chunk:
                self.closed_by_peer = True
                break
            self.buf += chunk

    def read_final(self, n=1, timeout=HANG):
        """Read until n final (non-1xx) responses are complete, EOF, or
        timeout; return the list of final responses parsed so far."""
        deadline = time.monotonic() + timeout
        while True:
            resps = final_responses(self.buf)
            if len(resps) >= n or self.closed_by_peer:
                return resps
            left = deadline - time.monotonic()
            if left <= 0:
                return resps
            self.pump(min(left, 0.2))

    def wait_closed(self, timeout):
        """Wait up to timeout for EOF/reset; True if the peer closed."""
        deadline = time.monotonic() + timeout
        while not self.closed_by_peer and time.monotonic() < deadline:
            self.pump(min(0.2, deadline - time.monotonic()))
        return self.closed_by_peer

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def raw_exchange(port, data, n=1, timeout=HANG):
    """Send raw bytes, return the first n final responses (list)."""
    with RawConn(port, timeout=timeout) as c:
        c.send(data)
        return c.read_final(n=n, timeout=timeout)


def raw_one(port, data, timeout=HANG, what=""):
    resps = raw_exchange(port, data, timeout=timeout)
    assert resps, f"{what}: no complete HTTP response within {timeout}s"
    return resps[0]


# --------------------------------------------------------------------------
# Django, used as the reference implementation of the password hashes

_django_ready = False


def django_hashers():
    """Return the django.contrib.auth.hashers module, configured with the
    PBKDF2 hasher only."""
    global _django_ready
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if not _django_ready:
            from django.conf import settings
            if not settings.configured:
                settings.configure(PASSWORD_HASHERS=[
                    "django.contrib.auth.hashers.PBKDF2PasswordHasher"])
            _django_ready = True
        from django.contrib.auth import hashers
        hashers.get_hasher("pbkdf2_sha256")  # imports the rest of Django now
    return hashers


def django_hash(password, iterations):
    hashers = django_hashers()

    class Hasher(hashers.PBKDF2PasswordHasher):
        pass

    Hasher.iterations = iterations
    encoded = hashers.make_password(password, hasher=Hasher())
    assert encoded.startswith(f"pbkdf2_sha256${iterations}$"), encoded
    return encoded


def django_check(password, encoded):
    return django_hashers().check_password(password, encoded)


def insert_user(db, username, encoded, active=True):
    """Write a user row straight into the store (as an import from Django
    would); return its uuid."""
    uid = str(uuidlib.uuid4())
    with dbsql.connect(_database(db)) as con:
        con.execute(
            "INSERT INTO users (uuid, username, password, is_active, created_at, last_login)"
            " VALUES (?, ?, ?, ?, ?, NULL)",
            (uid, username, encoded, 1 if active else 0, int(time.time())))
    return uid


def user_row(db, username):
    rows = db_rows(db, "SELECT * FROM users WHERE username = ?", (username,))
    return rows[0] if rows else None
