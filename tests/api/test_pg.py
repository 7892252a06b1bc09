"""The PostgreSQL backend's own black-box tests (the PostgreSQL pass only:
TOKEND_TEST_DATABASE=postgres): /readyz while the server is down and after
it is back (the counterpart of test_ops.py's SQLite file tests), and a
database password that never reaches a log line, /readyz or /metrics,
whether the server answers or not.

Each test stops a PostgreSQL server, so they run on one of their own
(tests/pgtmp.py, trust authentication: any password is accepted), not the
session's that every other installation shares."""

import os
import signal
import time
import urllib.parse

import pytest

import pgtmp
from conftest import ON_PG, Tokend, expect_json, expect_tokens

pytestmark = pytest.mark.skipif(not ON_PG, reason="PostgreSQL pass only "
                                "(TOKEND_TEST_DATABASE=postgres)")

SECRET = "s3cret"
DEADLINE = 30.0  # bounds a hang only


@pytest.fixture(scope="module")
def pg():
    if not pgtmp.available():
        pytest.skip(f"{pgtmp.PG_BIN}/initdb is missing")
    with pgtmp.PgTmp() as server:
        yield server


def pg_ctl(pg, *args):
    pg._run([pgtmp.PG_BIN / "pg_ctl", *args, "-D", pg.data, "-w", "-s", "-t", "60"],
            timeout=90)


def pg_down(pg):
    pg_ctl(pg, "stop", "-m", "fast")


def pg_up(pg):
    pg_ctl(pg, "start", "-l", pg.log)


def installation(tokend_bin, tmp_path, pg, name, password=None):
    """A Tokend whose --database is database `name` on pg (created here),
    with `password` in the URL's user info."""
    pg.create_database(name)
    user = pgtmp.ROLE + (f":{password}" if password else "")
    url = (f"postgresql://{user}@/{name}?host="
           f"{urllib.parse.quote(str(pg.dir), safe='/')}")
    inst = Tokend(tokend_bin, tmp_path / name, label=f"tokend on {name}")
    inst.database = url
    return inst


def poll_ready(s, want):
    end = time.monotonic() + DEADLINE
    while True:
        r = s.request("GET", "/readyz", timeout=10)
        if r.status_code == want or time.monotonic() > end:
            assert r.status_code == want, f"/readyz never answered {want}: {r.text!r}"
            return r
        time.sleep(0.1)


def test_readyz_while_the_server_is_stopped_and_after(tokend_bin, tmp_path, pg):
    inst = installation(tokend_bin, tmp_path, pg, "ready")
    inst.add_user("pat", "pat-password")
    s = inst.start()
    try:
        poll_ready(s, 200)
        pg_down(pg)
        try:
            body = expect_json(poll_ready(s, 503), 503, "PostgreSQL stopped")
            assert body == {"status": "unavailable", "reason": body.get("reason")}, body
            assert expect_json(s.request("GET", "/healthz"), 200) == {"status": "ok"}, (
                "liveness does not depend on the store")
        finally:
            pg_up(pg)
        assert poll_ready(s, 200).json() == {"status": "ready"}
        # the connections come back too, not only the probe's
        expect_tokens(s.login("pat", "pat-password"))
    finally:
        inst.cleanup()


def server_pids(pg):
    """The postmaster and its children (the backends among them)."""
    master = pg._postmaster_pid()
    pids = [master]
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == master:
                        pids.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return pids


def test_readyz_answers_promptly_while_the_server_hangs(tokend_bin, tmp_path, pg):
    """A server that accepts but never answers (stopped with SIGSTOP): the
    probe gives up within its own short wait, as with SQLite's lock
    (test_ops.py), so a load balancer's probe timeout sees the 503."""
    inst = installation(tokend_bin, tmp_path, pg, "hang")
    s = inst.start(env={"TOKEND_SERVER_THREADS": "1"})  # one connection to warm
    try:
        poll_ready(s, 200)
        pids = server_pids(pg)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            # a probe without its own short wait would hang here for good:
            # an answer at all within the (hang-bounding) 60 s is the proof
            r = s.request("GET", "/readyz", timeout=60)
            assert r.status_code == 503, r.text
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        poll_ready(s, 200)
    finally:
        inst.cleanup()


def no_secret(what, text):
    lines = [ln for ln in text.splitlines() if SECRET in ln]
    assert not lines, f"{what}: the database password is shown: {lines[:5]}"


def test_the_database_password_is_never_shown(tokend_bin, tmp_path, pg):
    inst = installation(tokend_bin, tmp_path, pg, "pw", password=SECRET)
    res = inst.cli_ok("migrate")
    no_secret("migrate", res.out + res.err)
    assert "***" in res.out, f"migrate names the database, password redacted: {res.out!r}"
    inst.add_user("pat", "pat-password")
    s = inst.start(env={"TOKEND_LOG_LEVEL": "debug"})
    try:
        poll_ready(s, 200)
        expect_tokens(s.login("pat", "pat-password"))
        no_secret("/readyz", s.request("GET", "/readyz").text)
        no_secret("/metrics", s.request("GET", "/metrics").text)
        pg_down(pg)
        try:
            poll_ready(s, 503)
            r = s.login("pat", "pat-password")
            assert r.status_code == 503, r.text  # the store away: EDB, 503 (src/http/response.c)
            no_secret("/readyz, server down", s.request("GET", "/readyz").text)
            no_secret("/metrics, server down", s.request("GET", "/metrics").text)
            # unreachable at start: the error message names the database
            # without its password
            late = Tokend(tokend_bin, tmp_path / "late", label="started while down")
            late.database = inst.database
            try:
                res = late.cli("user", "list")
                assert res.rc != 0, res
                no_secret("user list, server down", res.out + res.err)
                srv = late.start(wait=False)
                srv.proc.wait(timeout=DEADLINE)
                srv.stop()
                assert srv.returncode != 0, srv.stderr()
                assert srv.stderr().strip(), "no error message when the database is unreachable"
                no_secret("serve, server down", srv.stderr() + srv.stdout())
            finally:
                late.cleanup()
        finally:
            pg_up(pg)
        poll_ready(s, 200)
    finally:
        inst.cleanup()
    no_secret("serve's stderr", s.stderr())
    no_secret("serve's stdout", s.stdout())
