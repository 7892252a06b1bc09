# SPDX-License-Identifier: MIT
"""A throw-away PostgreSQL server for tests and benchmarks.

This module starts a private PostgreSQL 15 cluster (Debian's initdb and
pg_ctl from /usr/lib/postgresql/15/bin, or $TOKEND_PG_BIN) in a temporary
directory, reachable only through a Unix socket in that directory, with
trust authentication for the role ``tokend`` and durability switched off
(the data is thrown away). It removes the cluster at the end, also when the
caller fails, and when the process gets SIGTERM or SIGINT.

As a library::

    with PgTmp() as pg:
        pg.url                      # postgresql://tokend@/postgres?host=/tmp/...
        url = pg.create_database("t1")              # empty (TEMPLATE template0)
        pg.create_template("tpl", ["sql/postgres/001_init.sql", ...])
        url = pg.create_database("t2", template="tpl")  # a copy of tpl
    # stopped, directory removed

As a command (the server outlives the command; nothing removes it but
``stop``)::

    /usr/bin/python3 tests/pgtmp.py start DIR     # prints the URL
    /usr/bin/python3 tests/pgtmp.py createdb DIR NAME [TEMPLATE]  # prints its URL
    /usr/bin/python3 tests/pgtmp.py stop DIR      # stops it, removes DIR
    /usr/bin/python3 tests/pgtmp.py reap          # removes servers whose owner was SIGKILLed

PostgreSQL refuses to run as root. As root (CI), the server runs as the
``postgres`` system user that the postgresql-15 package creates, through
runuser (or setpriv), and the directory is handed to that user; otherwise
it runs as the caller. Clients connect as any user: trust on the socket.

Cleanup, in order of preference: the context manager (or stop()); an atexit
hook; SIGTERM/SIGINT handlers that clean up and then do what the previous
handler would have done. Each stop tries ``pg_ctl stop -m fast``, then
``-m immediate``, then SIGKILL of the postmaster. Only a SIGKILL of the owning
process leaves a server behind: ``pgtmp.py stop DIR`` or ``pgtmp.py reap``
removes it (reap is never automatic: it would stop servers of processes in
another pid namespace sharing /tmp). A forked child (multiprocessing) never
stops its parent's server.
"""

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

PG_BIN = Path(os.environ.get("TOKEND_PG_BIN", "/usr/lib/postgresql/15/bin"))
ROLE = "tokend"
PORT = 5432  # only names the socket file: each server has its own directory
MARKER = ".pgtmp"  # in DIR: it was made by this module, `stop` may remove it
# sun_path is 108 bytes; "/.s.PGSQL.5432" and its lock file take 19 of them
SOCKET_DIR_MAX = 88
START_TIMEOUT = 60  # bounds a hang only
STOP_TIMEOUT = 30

# Throw-away data: no durability, and enough connections for ~8 servers of
# 16 threads plus the tests' own (the black-box suite). A small shared_buffers
# keeps many clusters (benchmarks, parallel runs) cheap on a shared machine.
SETTINGS = {
    "listen_addresses": "''",
    "port": str(PORT),
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "400",
    "shared_buffers": "32MB",
    "max_wal_size": "1GB",          # no checkpoint storms under a benchmark
    "wal_level": "minimal",         # no replicas: less WAL per CREATE DATABASE
    "max_wal_senders": "0",
    "log_min_messages": "warning",
    "log_line_prefix": "'%m [%p] %d '",
    "timezone": "UTC",
}

_live = set()          # PgTmp instances this process must clean up
_live_lock = threading.Lock()
_atexit_installed = False
_signals_installed = False


def available():
    """True when initdb exists: the server can be started at all."""
    return (PG_BIN / "initdb").is_file() and os.access(PG_BIN / "initdb", os.X_OK)


def _owner_prefix():
    """argv prefix that runs a command as the server's user."""
    if os.geteuid() != 0:
        return []
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--"]
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]


def _postgres_ids():
    import pwd
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("running as root, and there is no 'postgres' user to run "
                           "PostgreSQL as (install postgresql-15)") from None
    return pw.pw_uid, pw.pw_gid


def url_for(sockdir, dbname="postgres"):
    """libpq URL of database `dbname` on the server whose socket is in `sockdir`
    (libpq and psycopg2 both accept it)."""
    host = urllib.parse.quote(str(sockdir), safe="/")
    return f"postgresql://{ROLE}@/{urllib.parse.quote(dbname, safe='')}?host={host}"


def _cleanup_all():
    with _live_lock:
        live = list(_live)
    for pg in live:
        try:
            pg.stop()
        except Exception as e:  # noqa: BLE001 -- at exit, report and go on
            print(f"pgtmp: cleanup of {pg.dir}: {e}", file=sys.stderr)


def _on_signal(signum, frame):
    _cleanup_all()
    prev = _prev_handlers.get(signum, signal.SIG_DFL)
    if callable(prev):
        prev(signum, frame)
    elif prev == signal.SIG_DFL:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


_prev_handlers = {}


def _install_hooks():
    global _atexit_installed, _signals_installed
    if not _atexit_installed:
        _atexit_installed = True
        atexit.register(_cleanup_all)
    if _signals_installed or threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread
    _signals_installed = True
    for sig in (signal.SIGTERM, signal.SIGINT):
        prev = signal.getsignal(sig)
        if prev is signal.SIG_IGN:
            continue  # whoever ignores it meant it (nohup)
        _prev_handlers[sig] = prev
        signal.signal(sig, _on_signal)


class PgTmp:
    """One throw-away PostgreSQL server. start() (or `with`) runs it; stop()
    stops it and removes its directory. `directory`: where to put it (made if
    missing; must be short, the socket lives there); default a new temporary
    directory. `keep`: do not stop it at exit (the `start` command).
    `settings`: postgresql.conf overrides (values are written as given)."""

    def __init__(self, directory=None, keep=False, settings=None):
        self.dir = Path(directory) if directory else None
        self.keep = keep
        self.settings = dict(SETTINGS)
        self.settings.update(settings or {})
        self._owner_pid = os.getpid()
        self._made_dir = False
        self.started = False
        self.timings = {}  # seconds: initdb, start, stop

    # -- paths
    @property
    def data(self):
        return self.dir / "data"

    @property
    def log(self):
        return self.dir / "postgres.log"

    @property
    def url(self):
        return url_for(self.dir)

    def url_of(self, dbname):
        return url_for(self.dir, dbname)

    def dsn(self, dbname="postgres"):
        """keyword/value conninfo, for clients that prefer it."""
        return f"host={self.dir} user={ROLE} dbname={dbname}"

    # -- running commands
    def _run(self, argv, as_owner=True, timeout=START_TIMEOUT, check=True):
        cmd = (_owner_prefix() if as_owner else []) + [str(a) for a in argv]
        proc = subprocess.run(cmd, cwd=str(self.dir), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, errors="replace",
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"pgtmp: {' '.join(cmd)} exited with {proc.returncode}:\n"
                               f"{proc.stdout}{proc.stderr}{self._log_tail()}")
        return proc

    def _log_tail(self, n=20):
        try:
            lines = self.log.read_text(errors="replace").splitlines()[-n:]
        except OSError:
            return ""
        return "\n--- postgres.log ---\n" + "\n".join(lines) if lines else ""

    # -- life cycle
    def start(self):
        if self.started:
            return self
        if not available():
            raise RuntimeError(f"pgtmp: {PG_BIN / 'initdb'} is missing (install postgresql-15)")
        if self.dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix="tokend-pg-"))
            self._made_dir = True
        elif not self.dir.exists():
            self.dir.mkdir(parents=True)
            self._made_dir = True
        self.dir = self.dir.resolve()
        self.started = True  # from here on stop() has something to undo
        if not self.keep:
            with _live_lock:
                _live.add(self)
            _install_hooks()
        if self._made_dir:
            # `reap` reads it: whose server this is ("keep": the command's)
            (self.dir / MARKER).write_text("keep\n" if self.keep else
                                           f"{os.getpid()} {_start_time(os.getpid())}\n")
        if len(str(self.dir)) > SOCKET_DIR_MAX:
            raise RuntimeError(f"pgtmp: {self.dir}: too long for a Unix socket directory "
                               f"(at most {SOCKET_DIR_MAX} characters)")
        if os.geteuid() == 0:
            uid, gid = _postgres_ids()
            os.chown(self.dir, uid, gid)
            os.chmod(self.dir, 0o700)
            probe = self._run(["test", "-w", self.dir, "-a", "-x", self.dir], check=False)
            if probe.returncode != 0:
                raise RuntimeError(f"pgtmp: the postgres user cannot reach {self.dir} "
                                   "(a parent directory is closed to it); use a directory "
                                   "under /tmp")
        t0 = time.monotonic()
        self._run([PG_BIN / "initdb", "-D", self.data, "-U", ROLE, "-A", "trust",
                   "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions"])
        self.timings["initdb"] = time.monotonic() - t0
        with open(self.data / "postgresql.conf", "a") as f:
            f.write("\n# pgtmp.py\n")
            for k, v in self.settings.items():
                f.write(f"{k} = {v}\n")
            f.write(f"unix_socket_directories = '{self.dir}'\n")
        t0 = time.monotonic()
        self._run([PG_BIN / "pg_ctl", "start", "-D", self.data, "-l", self.log,
                   "-w", "-t", str(START_TIMEOUT), "-s"], timeout=START_TIMEOUT + 10)
        self.timings["start"] = time.monotonic() - t0
        return self

    def _postmaster_pid(self):
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def running(self):
        return self._postmaster_pid() is not None and \
            self._run([PG_BIN / "pg_ctl", "status", "-D", self.data], check=False,
                      timeout=STOP_TIMEOUT).returncode == 0

    def stop(self):
        """Stop the server (fast, else immediate, else SIGKILL) and remove its
        directory (only the data and log when the caller gave an existing
        directory). Idempotent; a forked child does nothing."""
        if os.getpid() != self._owner_pid or not self.started:
            return
        t0 = time.monotonic()
        try:
            if self.data.is_dir() and self._postmaster_pid() is not None:
                self._stop_server()
        finally:
            with _live_lock:
                _live.discard(self)
            self.started = False
            self.timings["stop"] = time.monotonic() - t0
            self._remove()

    def _stop_server(self):
        for mode in ("fast", "immediate"):
            try:
                proc = self._run([PG_BIN / "pg_ctl", "stop", "-D", self.data, "-m", mode,
                                  "-w", "-t", str(STOP_TIMEOUT), "-s"], check=False,
                                 timeout=STOP_TIMEOUT + 10)
            except subprocess.TimeoutExpired:
                continue
            if proc.returncode == 0 or self._postmaster_pid() is None:
                return
        pid = self._postmaster_pid()
        if pid:
            try:
                os.killpg(pid, signal.SIGKILL)  # postmaster leads its group (pg_ctl setsid)
            except OSError:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            deadline = time.monotonic() + STOP_TIMEOUT
            while time.monotonic() < deadline and _pid_alive(pid):
                time.sleep(0.05)

    def _remove(self):
        if self.dir is None or not self.dir.exists():
            return
        if self._made_dir or (self.dir / MARKER).exists():
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            shutil.rmtree(self.data, ignore_errors=True)
            for p in self.dir.glob(".s.PGSQL.*"):
                p.unlink(missing_ok=True)
            self.log.unlink(missing_ok=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- databases
    def sql(self, statements, dbname="postgres"):
        """Run SQL (autocommit, one statement or a list) as `tokend`."""
        if isinstance(statements, str):
            statements = [statements]
        try:
            import psycopg2
        except ImportError:
            psycopg2 = None
        if psycopg2 is None:
            argv = [PG_BIN / "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.url_of(dbname)]
            for s in statements:
                argv += ["-c", s]
            self._run(argv, as_owner=False)
            return
        con = psycopg2.connect(self.url_of(dbname))
        try:
            con.autocommit = True
            with con.cursor() as cur:
                for s in statements:
                    cur.execute(s)
        finally:
            con.close()

    def create_database(self, name, template="template0"):
        """CREATE DATABASE name (a copy of `template`); returns its URL."""
        self.sql(f'CREATE DATABASE {_ident(name)} TEMPLATE {_ident(template)}')
        return self.url_of(name)

    def create_template(self, name, sql_files):
        """A database with `sql_files` applied in order (each in one
        transaction), marked as a template so create_database(x, template=name)
        copies it; returns its URL. Nobody may stay connected to it."""
        url = self.create_database(name)
        for f in sql_files:
            body = Path(f).read_text()
            self.sql(["BEGIN", body, "COMMIT"] if body.strip() else [], dbname=name)
        self.sql(f"ALTER DATABASE {_ident(name)} WITH IS_TEMPLATE true")
        return url

    def drop_database(self, name):
        self.sql(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)")


def _ident(name):
    return '"' + str(name).replace('"', '""') + '"'


def _start_time(pid):
    """The process's start time in clock ticks since boot (tells a reused
    pid from the original), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def reap(parent=None):
    """Stop and remove the servers this module left under `parent` (default
    the temporary directory) whose owning process no longer exists: what a
    SIGKILL, which no handler sees, leaves behind. Servers of the `start`
    command and of live processes are left alone. Returns the directories
    removed."""
    parent = Path(parent or tempfile.gettempdir())
    removed = []
    for d in sorted(parent.glob("tokend-pg-*")):
        try:
            owner = (d / MARKER).read_text().split()
        except OSError:
            continue
        if len(owner) != 2 or not owner[0].isdigit():
            continue
        if _start_time(int(owner[0])) == owner[1]:
            continue  # its owner still runs
        _existing(d).stop()
        removed.append(d)
    return removed


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------
# command line


def _existing(directory):
    pg = PgTmp(directory, keep=True)
    pg.dir = Path(directory).resolve()
    pg.started = True
    pg._made_dir = (pg.dir / MARKER).exists()
    return pg


def main(argv):
    usage = ("usage: pgtmp.py start DIR | stop DIR | url DIR [DBNAME] | "
             "createdb DIR NAME [TEMPLATE] | reap [PARENT]")
    if argv[:1] == ["reap"] and len(argv) <= 2:
        for d in reap(argv[1] if len(argv) > 1 else None):
            print(f"pgtmp: removed {d}")
        return 0
    if len(argv) < 2 or argv[0] not in ("start", "stop", "url", "createdb"):
        print(usage, file=sys.stderr)
        return 2
    cmd, directory = argv[0], argv[1]
    try:
        if cmd == "start":
            if Path(directory, "data", "postmaster.pid").exists():
                print(f"pgtmp: {directory}: a server already runs there", file=sys.stderr)
                return 1
            pg = PgTmp(directory, keep=True)
            try:
                pg.start()
            except BaseException:
                pg.stop()
                raise
            print(pg.url)
        elif cmd == "stop":
            if not Path(directory).exists():
                return 0
            _existing(directory).stop()
        elif cmd == "url":
            print(url_for(Path(directory).resolve(), argv[2] if len(argv) > 2 else "postgres"))
        else:
            if len(argv) < 3:
                print(usage, file=sys.stderr)
                return 2
            pg = _existing(directory)
            print(pg.create_database(argv[2], argv[3] if len(argv) > 3 else "template0"))
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
