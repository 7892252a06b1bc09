# SPDX-License-Identifier: MIT
"""tests/pgtmp.py: the throw-away PostgreSQL server.

Properties proved: the URL works with psycopg2 and with libpq's psql; the
server listens on its own socket only, with the fast settings, as the
postgres user when we are root; it is stopped and its directory removed
when the `with` block raises, when the process raises, exits without
stopping it (atexit), or gets SIGTERM or SIGINT; a forked child leaves its
parent's server alone; the command line starts, serves and stops one.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
sys.path.insert(0, str(TESTS))
import pgtmp  # noqa: E402

pytestmark = pytest.mark.skipif(
    not pgtmp.available(),
    reason=f"PostgreSQL 15 is not installed ({pgtmp.PG_BIN}/initdb is missing; "
           "scripts/install-deps installs postgresql-15)")

if pgtmp.available():
    import psycopg2

PY = sys.executable
DEADLINE = 60  # seconds; bounds a hang only
PGTMP = str(TESTS / "pgtmp.py")


def gone(pid):
    """The process has exited (a zombie nobody reaped counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


def wait_gone(pid):
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.05)
    return False


def query(url, sql):
    con = psycopg2.connect(url)
    try:
        with con.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        con.close()


CHILD = r"""
import os, signal, sys, time
sys.path.insert(0, {tests!r})
import pgtmp
action = sys.argv[1]
pg = pgtmp.PgTmp()
pg.start()
print(pg.dir, pg._postmaster_pid(), flush=True)
if action == "atexit":
    sys.exit(0)                      # no stop(): atexit must clean up
with pg:
    print("READY", flush=True)
    if action == "raise":
        raise RuntimeError("a failing test")
    time.sleep(120)                  # until a signal
"""


def run_child(action, sig=None):
    proc = subprocess.Popen([PY, "-c", CHILD.format(tests=str(TESTS)), action],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline().split()
        assert len(first) == 2, f"child did not start a server: {first} {proc.stderr.read()}"
        directory, pid = Path(first[0]), int(first[1])
        assert directory.is_dir() and not gone(pid)
        if sig is not None:
            assert proc.stdout.readline().strip() == "READY"
            proc.send_signal(sig)
        proc.wait(DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc, directory, pid


@pytest.mark.parametrize("action,sig", [("raise", None), ("atexit", None),
                                        ("sleep", signal.SIGTERM), ("sleep", signal.SIGINT)],
                         ids=["exception", "atexit", "SIGTERM", "SIGINT"])
def test_server_removed_when_its_process_fails_exits_or_is_signalled(action, sig):
    proc, directory, pid = run_child(action, sig)
    assert wait_gone(pid), f"postmaster {pid} still runs after the child ended ({action})"
    assert not directory.exists(), f"{directory} left behind ({action})"
    if action == "raise":
        assert proc.returncode == 1 and "a failing test" in proc.stderr.read()
    if sig == signal.SIGTERM:
        assert proc.returncode == -signal.SIGTERM, "SIGTERM's default action must still end it"


def test_server_removed_when_the_with_block_raises():
    with pytest.raises(ZeroDivisionError):
        with pgtmp.PgTmp() as pg:
            directory, pid = pg.dir, pg._postmaster_pid()
            assert query(pg.url, "SELECT 1") == [(1,)]
            1 / 0
    assert wait_gone(pid) and not directory.exists()


def test_url_settings_and_user():
    with pgtmp.PgTmp() as pg:
        assert pg.url == f"postgresql://tokend@/postgres?host={pg.dir}"
        settings = dict(query(pg.url, "SELECT name, setting FROM pg_settings WHERE name IN "
                                      "('fsync', 'synchronous_commit', 'full_page_writes', "
                                      "'max_connections', 'listen_addresses', "
                                      "'unix_socket_directories', 'lc_collate')"))
        assert settings == {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
                            "max_connections": "400", "listen_addresses": "",
                            "unix_socket_directories": str(pg.dir), "lc_collate": "C"}
        assert query(pg.url, "SELECT current_user") == [("tokend",)]
        # libpq's own client takes the same URL
        out = subprocess.run([str(pgtmp.PG_BIN / "psql"), "-X", "-At", "-d", pg.url, "-c", "SELECT 42"],
                             capture_output=True, text=True, timeout=DEADLINE)
        assert out.stdout.strip() == "42", out.stderr
        with open(f"/proc/{pg._postmaster_pid()}/status") as f:
            uid = int(next(ln for ln in f if ln.startswith("Uid:")).split()[1])
        if os.geteuid() == 0:
            import pwd
            assert uid == pwd.getpwnam("postgres").pw_uid, "as root, the server runs as postgres"
        else:
            assert uid == os.geteuid()
        url = pg.create_database("made")
        assert url.endswith("/made?host=" + str(pg.dir))
        assert query(url, "SELECT current_database()") == [("made",)]
        pg.drop_database("made")


def test_template_copies_carry_the_schema():
    with pgtmp.PgTmp() as pg:
        pg.create_template("tpl", [])
        pg.sql("CREATE TABLE marker (x int)", dbname="tpl")
        url = pg.create_database("copy", template="tpl")
        assert query(url, "SELECT to_regclass('marker') IS NOT NULL") == [(True,)]


def test_forked_child_leaves_the_parents_server_alone():
    with pgtmp.PgTmp() as pg:
        child = os.fork()
        if child == 0:
            try:
                pgtmp._cleanup_all()
                pg.stop()
            finally:
                os._exit(0)
        os.waitpid(child, 0)
        assert query(pg.url, "SELECT 1") == [(1,)], "a forked child stopped its parent's server"


def test_directory_too_long_for_a_socket_fails_cleanly(tmp_path):
    deep = tmp_path / ("d" * 100)
    with pytest.raises(RuntimeError, match="too long"):
        with pgtmp.PgTmp(deep):
            pass
    assert not deep.exists()


def test_command_line_start_createdb_stop(tmp_path):
    directory = Path("/tmp") / f"pgtmp-cli-{os.getpid()}"
    try:
        out = subprocess.run([PY, PGTMP, "start", str(directory)], capture_output=True, text=True,
                             timeout=DEADLINE)
        assert out.returncode == 0, out.stderr
        url = out.stdout.strip()
        assert url == pgtmp.url_for(directory)
        assert query(url, "SELECT 1") == [(1,)], "the server must outlive `start`"
        again = subprocess.run([PY, PGTMP, "start", str(directory)], capture_output=True,
                               text=True, timeout=DEADLINE)
        assert again.returncode == 1 and "already runs" in again.stderr
        made = subprocess.run([PY, PGTMP, "createdb", str(directory), "x1"], capture_output=True,
                              text=True, timeout=DEADLINE)
        assert made.returncode == 0, made.stderr
        assert query(made.stdout.strip(), "SELECT current_database()") == [("x1",)]
        pid = int((directory / "data" / "postmaster.pid").read_text().split()[0])
        stop = subprocess.run([PY, PGTMP, "stop", str(directory)], capture_output=True, text=True,
                              timeout=DEADLINE)
        assert stop.returncode == 0, stop.stderr
        assert wait_gone(pid) and not directory.exists()
        usage = subprocess.run([PY, PGTMP], capture_output=True, text=True, timeout=DEADLINE)
        assert usage.returncode == 2 and "usage" in usage.stderr
    finally:
        if directory.exists():
            subprocess.run([PY, PGTMP, "stop", str(directory)], timeout=DEADLINE)


def test_reap_removes_the_server_of_a_sigkilled_owner_only():
    parent = Path("/tmp") / f"pgtmp-reap-{os.getpid()}"
    parent.mkdir()
    child = (f"import os, signal, sys; sys.path.insert(0, {str(TESTS)!r}); import pgtmp\n"
             f"pg = pgtmp.PgTmp({str(parent / 'tokend-pg-dead')!r}).start()\n"
             "print(pg._postmaster_pid(), flush=True)\n"
             "os.kill(os.getpid(), signal.SIGKILL)\n")
    alive = pgtmp.PgTmp(parent / "tokend-pg-alive")
    try:
        alive.start()
        proc = subprocess.run([PY, "-c", child], capture_output=True, text=True, timeout=DEADLINE)
        assert proc.returncode == -signal.SIGKILL
        pid = int(proc.stdout.split()[0])
        assert not gone(pid), "nothing may stop a server whose owner was SIGKILLed"
        assert pgtmp.reap(parent) == [parent / "tokend-pg-dead"]
        assert wait_gone(pid) and not (parent / "tokend-pg-dead").exists()
        assert query(alive.url, "SELECT 1") == [(1,)], "reap stopped a live owner's server"
    finally:
        alive.stop()
        for d in parent.glob("tokend-pg-*"):
            subprocess.run([PY, PGTMP, "stop", str(d)], timeout=DEADLINE)
        parent.rmdir()
