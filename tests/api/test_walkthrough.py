"""README.md's "Using it" walkthrough, run as a newcomer runs it: `make run`
(a real `tokend serve --demo` in a temporary copy of the layout: build/tokend
and an empty var/), then the block as written, with bash, curl and jq, in a
second "terminal" in that directory: it finds tokend in build/, reads the
demo password from var/demo-credentials, logs in, issues an API token,
lists it, verifies it, deletes it, sees the verification fail (401), and
leaves no file behind."""

import os
import re
import shutil
import stat
import subprocess
import time

import pytest

from conftest import FAST_ITERATIONS, LISTEN_RE, REPO, Server, child_env, db_rows, sqlite_only

BASE_RE = re.compile(r"^BASE=.*$", re.M)


def readme_block():
    text = (REPO / "README.md").read_text()
    m = re.search(r"^## Using it\s*$(.*?)(?=^## )", text, re.M | re.S)
    assert m, "README.md has no '## Using it' section"
    block = re.search(r"^```sh\n(.*?)^```", m.group(1), re.M | re.S)
    assert block, "the '## Using it' section has no ```sh block"
    return block.group(1)


def tree(root):
    """Every file under root but var/ (the server's state), with its bytes."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if rel == "var" or rel.startswith("var" + os.sep):
            continue
        for f in files:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = open(p, "rb").read() if not os.path.islink(p) else p
    return out


@sqlite_only("the walkthrough is `make run`'s embedded default: var/tokend.db")
def test_readme_walkthrough(tokend_bin, tmp_path):
    for tool in ("bash", "curl", "jq", "sed", "awk"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    script = readme_block()

    # The layout `make run` works in: build/tokend and var/ (the Makefile
    # makes it), run from the repository root.
    work = tmp_path / "repo"
    (work / "build").mkdir(parents=True)
    (work / "var").mkdir()
    (work / "build" / "tokend").symlink_to(tokend_bin)
    env = child_env({"TOKEND_PASSWORD_PBKDF2_ITERATIONS": FAST_ITERATIONS})
    env.pop("BASE", None)
    env.pop("PASSWORD", None)
    # `make run` is `build/tokend serve --demo` on 127.0.0.1:8000; here a free port.
    srv = Server([str(work / "build" / "tokend"), "serve", "--demo", "--listen", "127.0.0.1:0"],
                 env, work, "make run")
    try:
        srv.wait_listening()
        creds = work / "var" / "demo-credentials"
        # printed (and written) just after the listening line; 30 s bounds a hang
        deadline = time.monotonic() + 30
        while not any("demo-credentials" in ln for ln in srv.out_lines):
            assert time.monotonic() < deadline, f"no demo-credentials line on stdout in 30 s:\n{srv.stdout()}"
            time.sleep(0.05)
        assert creds.is_file(), f"serve --demo wrote no {creds}:\n{srv.stdout()}\n{srv.tail()}"
        mode = stat.S_IMODE(creds.stat().st_mode)
        assert mode == 0o600, f"{creds} has mode {mode:o}, not 0600"
        text = creds.read_text()
        printed = re.search(r"password: (\S+)", srv.stdout()).group(1)
        assert f"\npassword={printed}\n" in text, text

        # the block sets BASE for `make run`'s port; point it at this server
        script, n = BASE_RE.subn(f"BASE={srv.base}", script, count=1)
        assert n == 1, "the walkthrough must set BASE on a line of its own"
        before = tree(work)
        path = tmp_path / "walkthrough.sh"
        path.write_text("set -euo pipefail\n" + script)
        # A second terminal: the user's own PATH, without any tokend on it.
        term = dict(env)
        term["PATH"] = "/usr/local/bin:/usr/bin:/bin"
        proc = subprocess.run(["bash", str(path)], cwd=str(work), env=term, capture_output=True,
                              text=True, timeout=60)
        report = (f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}\n"
                  f"script:\n{script}")
        assert proc.returncode == 0, f"walkthrough failed: {report}"
        lines = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
        assert lines and lines[-1] == "401", f"the last command must print 401: {report}"
        assert lines[:-1] == ["true", "true", "true"], (
            f"the three jq -e checks (list, verify, delete) must each print true: {report}")

        # it really went through the server: the demo user's token is gone
        db = work / "var" / "tokend.db"
        demo = db_rows(db, "SELECT uuid FROM users WHERE username = 'demo'")[0]["uuid"]
        assert db_rows(db, "SELECT jti FROM api_tokens WHERE user_uuid = ?", (demo,)) == []
        # and it left nothing in the work tree (no token.json)
        assert tree(work) == before, f"the walkthrough left files: {set(tree(work)) - set(before)}"
    finally:
        assert srv.stop() == 0, srv.tail()
    srv.check_clean_exit()
