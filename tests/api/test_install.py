"""`cmake --install` (issue 14): what lands where under a prefix, that the
installed unit names the installed binary, and that the installed binary
serves with the installed example configuration, outside the source tree.

The build directory is the one of the binary under test ($TOKEND_BIN's
directory, default build/); the install goes to a temporary prefix.
"""

import os
import shutil
import subprocess

import pytest
from conftest import REPO, Server, child_env, expect_tokens, find_binary

FAST = {"TOKEND_PASSWORD_PBKDF2_ITERATIONS": "1000"}


def build_dir():
    d = find_binary().parent
    if not (d / "cmake_install.cmake").is_file():
        pytest.skip(f"{d} is not a CMake build directory (no cmake_install.cmake)")
    return d


def cmake_install(prefix, destdir=None):
    env = dict(os.environ)
    if destdir is not None:
        env["DESTDIR"] = str(destdir)
    res = subprocess.run(["cmake", "--install", str(build_dir()), "--prefix", str(prefix)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, f"cmake --install: exit {res.returncode}\n{res.stdout}{res.stderr}"
    return res


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    p = tmp_path_factory.mktemp("prefix")
    cmake_install(p)
    return p


def test_installed_files(prefix):
    assert os.access(prefix / "bin" / "tokend", os.X_OK)
    conf = prefix / "share" / "doc" / "tokend" / "tokend.conf"
    assert conf.read_text() == (REPO / "config" / "tokend.conf").read_text()
    units = prefix / "lib" / "systemd" / "system"
    assert (units / "tokend.socket").read_text() == (REPO / "config" / "tokend.socket").read_text()
    service = (units / "tokend.service").read_text()
    execs = [ln for ln in service.splitlines() if ln.startswith("ExecStart=")]
    assert execs == [f"ExecStart={prefix}/bin/tokend --config /etc/tokend/tokend.conf serve"], \
        execs
    # the rest of the unit is the source's, line for line
    src = (REPO / "config" / "tokend.service").read_text().splitlines()
    assert [ln for ln in service.splitlines() if not ln.startswith("ExecStart=")] == \
           [ln for ln in src if not ln.startswith("ExecStart=")]
    sysusers = (prefix / "lib" / "sysusers.d" / "tokend.conf").read_text()
    assert "u tokend " in sysusers


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze missing (Debian package systemd)")
def test_installed_units_verify(prefix):
    """The installed service's ExecStart= names a binary that exists: the
    installed units verify as they are."""
    units = prefix / "lib" / "systemd" / "system"
    env = dict(os.environ, SYSTEMD_LOG_LEVEL="notice", SYSTEMD_PAGER="cat")
    res = subprocess.run(["systemd-analyze", "verify", "--man=no", str(units / "tokend.socket"),
                          str(units / "tokend.service")], capture_output=True, text=True,
                         env=env, timeout=120)
    ours = [ln for ln in (res.stdout + res.stderr).splitlines() if "tokend" in ln]
    assert res.returncode == 0 and not ours, f"exit {res.returncode}\n{res.stdout}{res.stderr}"


def test_installed_binary_serves(prefix, tmp_path):
    """From a directory outside the source tree, with the installed example
    configuration: the CLI adds a user, serve answers, a login succeeds."""
    tokend = str(prefix / "bin" / "tokend")
    conf = str(prefix / "share" / "doc" / "tokend" / "tokend.conf")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    ga = ["--config", conf, "--database", str(state / "tokend.db"), "--key-dir",
          str(state / "keys")]
    env = child_env(FAST)
    res = subprocess.run([tokend] + ga + ["user", "add", "ops", "--password-stdin"],
                         input="ops-password\n", capture_output=True, text=True, env=env,
                         cwd=str(tmp_path), timeout=60)
    assert res.returncode == 0, res.stderr
    srv = Server([tokend] + ga + ["serve", "--listen", "127.0.0.1:0"], env, tmp_path,
                 "installed")
    try:
        srv.wait_listening()
        assert srv.request("GET", "/healthz").status_code == 200
        assert srv.request("GET", "/readyz").status_code == 200
        expect_tokens(srv.login("ops", "ops-password"), "login on the installed binary")
    finally:
        srv.check_clean_exit()


def test_prefix_at_install_time_and_destdir(tmp_path):
    """--prefix /usr with DESTDIR: files under DESTDIR/usr, and ExecStart=
    names /usr/bin/tokend (the prefix, never the staging directory)."""
    stage = tmp_path / "stage"
    cmake_install("/usr", destdir=stage)
    service = (stage / "usr" / "lib" / "systemd" / "system" / "tokend.service").read_text()
    assert "ExecStart=/usr/bin/tokend --config" in service
    assert str(stage) not in service
    assert (stage / "usr" / "bin" / "tokend").is_file()
    assert (stage / "usr" / "share" / "doc" / "tokend" / "tokend.conf").is_file()
