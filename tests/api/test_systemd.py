"""tokend under a service manager (issue 14), against the real binary:

- config/tokend.service and config/tokend.socket pass `systemd-analyze
  verify` (on copies whose ExecStart= names the binary under test), and the
  service's `systemd-analyze security --offline=yes` exposure stays low;
- sd_notify: READY=1 arrives on $NOTIFY_SOCKET (a path or an abstract name)
  and then a request succeeds; SIGTERM brings STOPPING=1; WATCHDOG_USEC
  brings WATCHDOG=1 pings, and none when WATCHDOG_PID names another process;
- socket activation: under `systemd-socket-activate` tokend serves fd 3
  (IPv4 and IPv6) and says so; of two sockets it serves the first and
  closes the other; LISTEN_PID of another process is ignored; a socket that
  is not a listening TCP one is refused with what it is;
- the unit's own Environment= and ExecStart=, moved into a temporary
  directory, put the database and keys in the state directory and serve;
- the variables Kubernetes sets for a Service named tokend
  (TOKEND_PORT, TOKEND_SERVICE_HOST, ...) never stop start-up, while an
  unknown key of a known section still does (exit 2).

No timing is asserted: every wait polls against a generous deadline.
"""

import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid

import pytest
import requests

from conftest import REPO, START_TIMEOUT, Server, child_env

UNITS = REPO / "config"
DEADLINE = 30.0  # seconds: bounds a hang only
SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")
ANALYZE = shutil.which("systemd-analyze")


def unit_copy(tokend_bin, dest):
    """Both units in dest, the service's ExecStart= naming tokend_bin
    (verify insists that the binary exists)."""
    text = (UNITS / "tokend.service").read_text()
    assert "ExecStart=/usr/local/bin/tokend " in text
    text = text.replace("ExecStart=/usr/local/bin/tokend ", f"ExecStart={tokend_bin} ")
    (dest / "tokend.service").write_text(text)
    shutil.copy(UNITS / "tokend.socket", dest / "tokend.socket")
    return dest / "tokend.service", dest / "tokend.socket"


def analyze(*args, cwd):
    env = dict(os.environ, SYSTEMD_LOG_LEVEL="notice", SYSTEMD_PAGER="cat", SYSTEMD_COLORS="0")
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, env=env,
                          cwd=str(cwd), timeout=120)


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------- the units


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze missing (Debian package systemd)")
def test_units_verify(tokend_bin, tmp_path):
    service, sock = unit_copy(tokend_bin, tmp_path)
    res = analyze("verify", "--man=no", str(sock), str(service), cwd=tmp_path)
    # Unknown keys and bad values are warnings with exit 0: any line naming
    # our units is a failure.
    ours = [ln for ln in (res.stdout + res.stderr).splitlines() if "tokend" in ln]
    assert res.returncode == 0 and not ours, (
        f"systemd-analyze verify: exit {res.returncode}\n{res.stdout}{res.stderr}")


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze missing (Debian package systemd)")
def test_unit_verify_catches_a_missing_binary(tmp_path):
    """The check above has teeth: ExecStart= naming no binary fails it."""
    service, sock = unit_copy(pathlib.Path("/nonexistent/tokend"), tmp_path)
    res = analyze("verify", "--man=no", str(service), cwd=tmp_path)
    assert res.returncode != 0, res


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze missing (Debian package systemd)")
def test_service_security_exposure(tokend_bin, tmp_path):
    service, _ = unit_copy(tokend_bin, tmp_path)
    res = analyze("security", "--offline=yes", str(service), cwd=tmp_path)
    m = re.search(r"Overall exposure level for tokend\.service: (\d+\.\d+)", res.stdout)
    if m is None and "offline" in res.stderr:
        pytest.skip(f"systemd-analyze security --offline unsupported here: {res.stderr.strip()}")
    assert m, f"no exposure level in:\n{res.stdout}{res.stderr}"
    score = float(m.group(1))
    print(f"systemd-analyze security --offline=yes tokend.service: {score}")
    # 1.2 when written (README.md); 10 is a service with no hardening at all.
    assert score <= 2.0, f"exposure {score} (README says 1.2):\n{res.stdout}"
    for want in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
                 "PrivateTmp=yes", "PrivateDevices=yes", "MemoryDenyWriteExecute=yes",
                 "LockPersonality=yes", "RestrictNamespaces=yes", "CapabilityBoundingSet=\n",
                 "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
                 "SystemCallFilter=@system-service", "Type=notify", "StateDirectory=tokend",
                 "Environment=TOKEND_DATABASE_PATH=/var/lib/tokend/tokend.db\n",
                 "Environment=TOKEND_KEYS_DIR=/var/lib/tokend/keys\n"):
        assert want in service.read_text(), f"tokend.service lacks {want!r}"


# ------------------------------------------------------------------ notify


class NotifySocket:
    """The manager's end of $NOTIFY_SOCKET: an AF_UNIX datagram socket."""

    def __init__(self, path=None, abstract=False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"tokend-test-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self.sock.bind(str(path))
            self.address = str(path)
        self.messages = []  # each a dict of the datagram's KEY=VALUE lines

    def count(self, key, value):
        return sum(1 for m in self.messages if m.get(key) == value)

    def wait_for(self, key, value, timeout=DEADLINE, proc=None, n=1):
        """Receives datagrams until n of those seen say key=value; returns
        the last of them."""
        deadline = time.monotonic() + timeout
        while self.count(key, value) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"not {n} x {key}={value} within {timeout} s; "
                                     f"got {self.messages}")
            self.sock.settimeout(0.2)
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                if proc is not None and proc.poll() is not None:
                    raise AssertionError(f"tokend exited ({proc.returncode}) before "
                                         f"{key}={value}")
                continue
            self.messages.append(dict(ln.split("=", 1) for ln in data.decode().split("\n")
                                      if "=" in ln))
        return [m for m in self.messages if m.get(key) == value][-1]

    def close(self):
        self.sock.close()


def serve(factory, env, label, **kw):
    inst = factory()
    return inst, inst.start(env=env, label=label, **kw)


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_ready_then_serving_then_stopping(factory, tmp_path, abstract):
    ns = NotifySocket(tmp_path / "notify.sock", abstract=abstract)
    try:
        inst = factory()
        srv = inst.start(env={"NOTIFY_SOCKET": ns.address}, wait=False, label="notify")
        ready = ns.wait_for("READY", "1", proc=srv.proc)
        # READY=1 comes once the socket listens and the store is open: a
        # request right after it succeeds.
        srv.wait_listening()
        r = requests.get(srv.url("/healthz"), timeout=10)
        assert r.status_code == 200, r.text
        assert ready.get("STATUS") == f"serving on http://127.0.0.1:{srv.port}", ready
        assert requests.get(srv.url("/readyz"), timeout=10).status_code == 200
        assert srv.stop(signal.SIGTERM) == 0, srv.tail()
        ns.wait_for("STOPPING", "1")
        assert not any("WATCHDOG" in m for m in ns.messages), "no watchdog was asked for"
    finally:
        ns.close()


def test_watchdog_pings(factory, tmp_path):
    ns = NotifySocket(tmp_path / "wd.sock")
    try:
        inst = factory()
        # 200 ms asked for: a ping every 100 ms.
        srv = inst.start(env={"NOTIFY_SOCKET": ns.address, "WATCHDOG_USEC": "200000"},
                         label="watchdog")
        ns.wait_for("READY", "1", proc=srv.proc)
        ns.wait_for("WATCHDOG", "1", proc=srv.proc, n=3)
        assert srv.wait_for_stderr(lambda ln: "notify: watchdog every 100 ms" in ln), srv.tail()
        # SIGHUP wakes the loop early; pings go on after it
        srv.send_signal(signal.SIGHUP)
        assert srv.wait_for_stderr(lambda ln: "SIGHUP" in ln or "reload" in ln.lower(),
                                   timeout=DEADLINE), srv.tail()
        seen = ns.count("WATCHDOG", "1")
        ns.wait_for("WATCHDOG", "1", proc=srv.proc, n=seen + 2)
        assert requests.get(srv.url("/healthz"), timeout=10).status_code == 200
    finally:
        ns.close()


def test_watchdog_of_another_pid_is_not_ours(factory, tmp_path):
    ns = NotifySocket(tmp_path / "wd.sock")
    try:
        inst = factory()
        srv = inst.start(env={"NOTIFY_SOCKET": ns.address, "WATCHDOG_USEC": "200000",
                              "WATCHDOG_PID": "1"}, label="watchdog-pid")
        ns.wait_for("READY", "1", proc=srv.proc)
        assert srv.wait_for_stderr(lambda ln: "listening on" in ln)
        assert not any("watchdog every" in ln for ln in srv.err_lines), srv.tail()
        assert srv.stop() == 0
        ns.wait_for("STOPPING", "1")
        assert not any("WATCHDOG" in m for m in ns.messages), ns.messages
    finally:
        ns.close()


def test_notify_socket_gone_does_not_matter(factory, tmp_path):
    """A NOTIFY_SOCKET nobody listens on: tokend serves and stops as usual."""
    inst = factory()
    srv = inst.start(env={"NOTIFY_SOCKET": str(tmp_path / "nobody.sock"),
                          "WATCHDOG_USEC": "100000"}, label="no-manager")
    assert requests.get(srv.url("/healthz"), timeout=10).status_code == 200
    assert srv.stop() == 0, srv.tail()


# ------------------------------------------------------- socket activation


needs_activate = pytest.mark.skipif(
    SOCKET_ACTIVATE is None, reason="systemd-socket-activate missing (Debian package systemd)")


def activated(factory, tmp_path, address, extra_env=None):
    inst = factory()
    # It hands the child only LISTEN_* and what -E names.
    passed = dict(inst.env, **(extra_env or {}))
    cmd = [SOCKET_ACTIVATE, "-l", address] + [f"-E{k}={v}" for k, v in passed.items()] + [
        str(inst.bin)] + inst.global_args() + ["serve"]
    env = inst.merged_env(extra_env)
    srv = Server(cmd, env, inst.root, "socket-activated")
    inst.servers.append(srv)
    return inst, srv


@needs_activate
@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")],
                         ids=["ipv4", "ipv6"])
def test_socket_activation(factory, tmp_path, family, host):
    try:
        port = free_port(family, host)
    except OSError as e:
        pytest.skip(f"no {host} here: {e}")
    address = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
    ns = NotifySocket(tmp_path / "n.sock")
    try:
        inst, srv = activated(factory, tmp_path, address, {"NOTIFY_SOCKET": ns.address})
        # systemd-socket-activate binds ("Listening on ... as 3."), holds the
        # socket until the first connection, then execs tokend with it as fd 3
        assert srv.wait_for_stderr(lambda ln: "Listening on" in ln, timeout=DEADLINE), \
            srv.tail()
        r = requests.get(f"http://{address}/healthz", timeout=30)
        assert r.status_code == 200, r.text
        line = srv.wait_for_stderr(lambda ln: "listening on" in ln, timeout=START_TIMEOUT)
        assert line is not None, srv.tail()
        want = f"listening on http://{'[' + host + ']' if ':' in host else host}:{port} " \
               f"(socket activation: inherited fd 3;"
        assert want in line, line
        ns.wait_for("READY", "1", proc=srv.proc)
        assert requests.get(f"http://{address}/readyz", timeout=10).status_code == 200
        assert srv.stop() == 0, srv.tail()
        ns.wait_for("STOPPING", "1")
    finally:
        ns.close()


@needs_activate
def test_two_sockets_handed_over(factory):
    """Two ListenStream= lines: tokend serves the first (fd 3), says it
    closes the other, and the second port no longer accepts."""
    p1, p2 = free_port(), free_port()
    inst = factory()
    cmd = [SOCKET_ACTIVATE, "-l", f"127.0.0.1:{p1}", "-l", f"127.0.0.1:{p2}"] + \
        [f"-E{k}={v}" for k, v in inst.env.items()] + [str(inst.bin)] + inst.global_args() + \
        ["serve"]
    srv = Server(cmd, inst.merged_env(), inst.root, "two-sockets")
    inst.servers.append(srv)
    assert srv.wait_for_stderr(lambda ln: f"Listening on 127.0.0.1:{p2}" in ln,
                               timeout=DEADLINE), srv.tail()
    assert requests.get(f"http://127.0.0.1:{p1}/healthz", timeout=30).status_code == 200
    assert srv.wait_for_stderr(lambda ln: "2 sockets handed over; serving fd 3, closing the "
                               "other 1" in ln, timeout=DEADLINE), srv.tail()
    line = srv.wait_for_stderr(lambda ln: "listening on" in ln, timeout=DEADLINE)
    assert f"listening on http://127.0.0.1:{p1} (socket activation: inherited fd 3;" in line
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{p2}/healthz", timeout=10)


@needs_activate
def test_the_units_command_line(tokend_bin, tmp_path):
    """tokend.service's Environment= and ExecStart= as written, with
    /var/lib/tokend and /etc/tokend/tokend.conf moved into tmp_path and
    tokend.socket's part played by systemd-socket-activate: the database
    and the keys land in the state directory, READY=1 arrives, it serves."""
    unit = (UNITS / "tokend.service").read_text().splitlines()
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    etc = tmp_path / "etc"
    etc.mkdir()
    shutil.copy(REPO / "config" / "tokend.conf", etc / "tokend.conf")

    def moved(text):
        return (text.replace("/var/lib/tokend", str(state))
                .replace("/etc/tokend/tokend.conf", str(etc / "tokend.conf"))
                .replace("/usr/local/bin/tokend", str(tokend_bin)))

    env = {"TOKEND_PASSWORD_PBKDF2_ITERATIONS": "1000"}
    for ln in unit:
        if ln.startswith("Environment="):
            k, v = moved(ln[len("Environment="):]).split("=", 1)
            env[k] = v
    argv = moved([ln for ln in unit if ln.startswith("ExecStart=")][0][len("ExecStart="):]).split()
    port = free_port()
    ns = NotifySocket(tmp_path / "n.sock")
    env["NOTIFY_SOCKET"] = ns.address
    cmd = [SOCKET_ACTIVATE, "-l", f"127.0.0.1:{port}"] + [f"-E{k}={v}" for k, v in env.items()] \
        + argv
    srv = Server(cmd, child_env(env), tmp_path, "unit-command-line")
    try:
        assert srv.wait_for_stderr(lambda ln: "Listening on" in ln, timeout=DEADLINE), srv.tail()
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=30).status_code == 200
        ns.wait_for("READY", "1", proc=srv.proc)
        assert (state / "tokend.db").is_file(), list(state.iterdir())
        assert any((state / "keys").glob("*.HS256.key")), list(state.iterdir())
        assert requests.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 200
    finally:
        srv.check_clean_exit()
        ns.close()


def run_with_fd3(inst, fd, env, listen_pid="self", timeout=30):
    """Runs tokend serve with fd as its fd 3 and LISTEN_FDS=1; LISTEN_PID is
    the child's own pid (sh execs tokend, which keeps it) or the given one."""
    pid = "$$" if listen_pid == "self" else str(listen_pid)
    args = " ".join(f"'{a}'" for a in [str(inst.bin)] + inst.global_args() +
                    ["serve", "--listen", "127.0.0.1:0"])
    script = f"LISTEN_PID={pid} LISTEN_FDS=1 exec {args}"
    # dup2 leaves fd 3 inheritable; close_fds=False so that it stays open
    # (Python's own descriptors are not inheritable: nothing else leaks)
    return subprocess.Popen(["/bin/sh", "-c", script], env=inst.merged_env(env),
                            cwd=str(inst.root), close_fds=False,
                            preexec_fn=lambda: os.dup2(fd, 3), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("kind", ["udp", "unlistened-tcp", "unix-stream", "pipe"])
def test_inherited_fd_that_is_not_a_listening_tcp_socket(factory, kind):
    inst = factory()
    keep = []
    if kind == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        fd, want = s.fileno(), "is not a TCP socket"
        keep.append(s)
    elif kind == "unlistened-tcp":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        fd, want = s.fileno(), "is a TCP socket that is not listening"
        keep.append(s)
    elif kind == "unix-stream":
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        fd, want = a.fileno(), "is not a TCP socket"
        keep += [a, b]
    else:
        r, w = os.pipe()
        fd, want = r, "is not a socket"
        keep.append(w)
    try:
        proc = run_with_fd3(inst, fd, {})
        out, err = proc.communicate(timeout=30)
    finally:
        for k in keep:
            k.close() if hasattr(k, "close") else os.close(k)
        if kind == "pipe":
            os.close(fd)
    assert proc.returncode == 1, f"exit {proc.returncode}\n{err}"
    assert f"inherited fd 3 (LISTEN_FDS) {want}" in err, err
    assert "listening on" not in err


def test_listen_pid_of_another_process_is_ignored(factory):
    """LISTEN_FDS meant for some other process (here: pid 1): tokend binds
    server.listen itself and serves there."""
    inst = factory()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # would be refused if taken
    try:
        proc = run_with_fd3(inst, s.fileno(), {}, listen_pid=1)
        srv_port = None
        deadline = time.monotonic() + DEADLINE
        lines = []
        while time.monotonic() < deadline and srv_port is None:
            ln = proc.stderr.readline()
            if not ln:
                break
            lines.append(ln)
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)$", ln.strip())
            if m:
                srv_port = int(m.group(1))
        assert srv_port, "".join(lines)
        assert requests.get(f"http://127.0.0.1:{srv_port}/healthz", timeout=10).status_code == 200
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    finally:
        s.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------- environment


KUBERNETES = {
    # what kubelet sets in every pod of the namespace for a Service "tokend"
    "TOKEND_PORT": "tcp://10.0.0.1:80",
    "TOKEND_SERVICE_HOST": "10.0.0.1",
    "TOKEND_SERVICE_PORT": "80",
    "TOKEND_SERVICE_PORT_HTTP": "80",
    "TOKEND_PORT_8000_TCP": "tcp://10.0.0.1:8000",
    "TOKEND_PORT_8000_TCP_PROTO": "tcp",
    "TOKEND_PORT_8000_TCP_PORT": "8000",
    "TOKEND_PORT_8000_TCP_ADDR": "10.0.0.1",
}


def test_kubernetes_service_variables_do_not_stop_start_up(factory):
    inst = factory()
    srv = inst.start(env=dict(KUBERNETES, TOKEND_SERVER_THREADS="2"), label="k8s")
    assert requests.get(srv.url("/healthz"), timeout=10).status_code == 200
    # and they are not configuration: --check-config lists no such key
    res = inst.cli("serve", "--check-config", env=KUBERNETES)
    assert res.rc == 0, res
    assert "10.0.0.1" not in res.out, res.out


def test_kubernetes_variables_beside_a_typo(factory):
    """An unknown key of a known section still stops start-up, with them set."""
    inst = factory()
    res = inst.cli("serve", "--listen", "127.0.0.1:0",
                   env=dict(KUBERNETES, TOKEND_SERVER_THREAD="2"), timeout=30)
    assert res.rc == 2, res
    assert res.err.startswith("env TOKEND_SERVER_THREAD: "), res.err
    assert "listening on" not in res.err
