"""Process life cycle: signals, --demo, the listening line, store sharing."""

import re
import signal
import time

from conftest import LOGIN, db_rows, expect_json, expect_tokens


def test_sigterm_exits_0(factory):
    inst, srv = factory.server()
    expect_json(srv.request("GET", "/nope"), 404)
    assert srv.stop(signal.SIGTERM) == 0, f"SIGTERM: exit {srv.returncode}\n{srv.tail()}"


def test_sigint_exits_0(factory):
    inst, srv = factory.server()
    expect_json(srv.request("GET", "/nope"), 404)
    assert srv.stop(signal.SIGINT) == 0, f"SIGINT: exit {srv.returncode}\n{srv.tail()}"


HANG = 30  # seconds: bounds a hang in the waits below, never a speed


def _jwks_kids(srv):
    r = srv.request("GET", "/.well-known/jwks.json")
    return [k.get("kid") for k in expect_json(r, 200, "GET jwks")["keys"]]


def _wait(pred, what, srv):
    deadline = time.monotonic() + HANG
    while not pred():
        assert srv.alive(), f"{what}: the server died (exit {srv.proc.returncode})\n{srv.tail()}"
        assert time.monotonic() < deadline, f"{what}: not within {HANG}s\n{srv.tail()}"
        time.sleep(0.05)


def test_sighup_keeps_serving(factory):
    """Each SIGHUP reloads (proved by a key only the reload can know: the
    periodic check is off) and the server serves on."""
    inst, srv = factory.server(env={"TOKEND_KEYS_RELOAD_INTERVAL": "0"})
    inst.add_user("hal", "hal-pw")
    kid1 = inst.cli_ok("key", "add", "--alg", "RS256").out.strip()
    assert _jwks_kids(srv) == [], "the new key was known before any SIGHUP"
    srv.send_signal(signal.SIGHUP)
    _wait(lambda: _jwks_kids(srv) == [kid1], f"JWKS lists {kid1} after the first SIGHUP", srv)
    expect_tokens(srv.login("hal", "hal-pw"), "login after SIGHUP")
    kid2 = inst.cli_ok("key", "add", "--alg", "RS256").out.strip()
    srv.send_signal(signal.SIGHUP)
    _wait(lambda: sorted(_jwks_kids(srv)) == sorted([kid1, kid2]),
          f"JWKS lists {kid2} too after the second SIGHUP", srv)
    srv.assert_alive("a second SIGHUP")
    expect_tokens(srv.login("hal", "hal-pw"), "login after the second SIGHUP")


def test_sigterm_with_open_idle_connection_exits_promptly(factory):
    """The idle timeout is an hour: a shutdown that waited for the idle
    keep-alive connection could not end within the (hang-bounding) wait."""
    from conftest import RawConn
    inst, srv = factory.server(env={"TOKEND_SERVER_IDLE_TIMEOUT": "3600"})
    c = RawConn(srv.port, timeout=HANG)
    c.send(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
    assert c.read_final(timeout=HANG), "no answer to GET /nope"
    try:
        assert srv.stop(timeout=HANG) == 0, f"SIGTERM: exit {srv.returncode}\n{srv.tail()}"
    finally:
        c.close()


def test_listening_line_names_the_real_port(factory):
    inst, srv = factory.server()
    m = [ln for ln in srv.err_lines if "listening on http://" in ln]
    assert len(m) == 1, f"expected one 'listening on' line, got {m}"
    assert srv.port != 0
    expect_json(srv.request("GET", "/nope"), 404)


def test_fresh_start_creates_schema_and_key(factory):
    inst = factory(empty=True)
    srv = inst.start()
    if inst.db is not None:
        assert inst.db.exists(), "serve did not create the database"
    tables = inst.tables()
    for t in ("users", "teams", "team_members", "refresh_tokens"):
        assert t in tables, f"table {t} missing after start-up (have {sorted(tables)})"
    assert inst.keyfiles(), "serve did not create an HS256 key in the key dir"
    version = inst.schema_version()
    assert version >= 1, f"schema version {version} after migrations"
    if inst.db is not None:
        mode = db_rows(inst.database, "PRAGMA journal_mode")[0]["journal_mode"]
        assert mode.lower() == "wal", f"journal_mode {mode!r}, expected wal"


DEMO_RE = re.compile(r"curl .*-X POST (http://[^\s'\"]+)")
PW_RE = re.compile(r"password=([^'\s\"]+)")


def _demo_line(srv, timeout=HANG):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ln in list(srv.out_lines):
            if "curl" in ln and "password=" in ln:
                return ln
        time.sleep(0.05)
    return None


def test_demo_prints_working_curl_once(factory):
    inst = factory(empty=True)
    srv = inst.start(serve_args=["--demo"])
    line = _demo_line(srv)
    if line is None:
        # maybe stdout is block-buffered on a pipe: stop and look again
        srv.stop()
        line = next((ln for ln in srv.out_lines if "curl" in ln and "password=" in ln), None)
        assert line is None, ("the demo curl line only appeared at exit: stdout is not flushed, "
                              f"a user would not see {line!r} while the server runs")
        raise AssertionError(f"--demo on a new database printed no curl line on stdout:\n{srv.stdout()}")
    url = DEMO_RE.search(line)
    pw = PW_RE.search(line)
    assert url and pw, f"demo line is not `curl -X POST URL -d username=demo -d 'password=...'`: {line!r}"
    assert "username=demo" in line, line
    assert url.group(1).rstrip("/") == srv.url(LOGIN).rstrip("/"), (
        f"demo curl URL {url.group(1)} is not this server's login URL {srv.url(LOGIN)}")
    assert "'password=" in line and "'" not in pw.group(1), f"password not single-quoted for the shell: {line!r}"
    password = pw.group(1)
    assert len(password) >= 12, f"demo password {password!r} is too short to be random"
    expect_tokens(srv.login("demo", password, form=True), "login with the printed demo password")
    assert password not in srv.stderr(), "demo password also leaked to stderr/access log"
    users = inst.cli_ok("user", "list").out
    assert "demo" in users, users
    teams = inst.cli_ok("team", "list").out
    assert any(ln.split("\t")[1:2] == ["demo"] for ln in teams.splitlines()), f"no team demo: {teams!r}"
    assert srv.stop() == 0
    srv2 = inst.start(serve_args=["--demo"])
    # serve prints the demo account before it starts waiting for signals
    # (src/cli/cli_serve.c), and stop() drains its output: what a second
    # start would print is all there once it has exited on SIGTERM
    assert srv2.stop() == 0
    assert not any("password=" in ln for ln in srv2.out_lines + srv2.err_lines), (
        f"second --demo start on the same database printed credentials again:\n{srv2.stdout()}")


def test_demo_passwords_differ(factory):
    a = factory(empty=True).start(serve_args=["--demo"])
    b = factory(empty=True).start(serve_args=["--demo"])
    la, lb = _demo_line(a), _demo_line(b)
    assert la and lb, "no demo line"
    assert PW_RE.search(la).group(1) != PW_RE.search(lb).group(1), "two fresh databases got the same demo password"


def test_without_demo_no_demo_user(factory):
    inst, srv = factory.server()
    assert srv.stop() == 0  # a demo line would come before the signal wait: all output is in
    assert not any("password=" in ln for ln in srv.out_lines), srv.stdout()
    assert "demo" not in inst.cli_ok("user", "list").out
