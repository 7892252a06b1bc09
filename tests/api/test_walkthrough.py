"""README.md's "Using it" walkthrough, run as it stands with bash, curl and
jq against a fresh server: log in, issue an API token, list it, verify it,
delete it, and see the verification fail (401)."""

import os
import re
import shutil
import stat
import subprocess

import pytest

from conftest import REPO, child_env, db_rows

BASE_RE = re.compile(r"^BASE=.*$", re.M)


def readme_block():
    text = (REPO / "README.md").read_text()
    m = re.search(r"^## Using it\s*$(.*?)(?=^## )", text, re.M | re.S)
    assert m, "README.md has no '## Using it' section"
    block = re.search(r"^```sh\n(.*?)^```", m.group(1), re.M | re.S)
    assert block, "the '## Using it' section has no ```sh block"
    return block.group(1)


def test_readme_walkthrough(factory, tmp_path):
    for tool in ("bash", "curl", "jq"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    script = readme_block()
    inst, srv = factory.server(label="walkthrough server")
    password = "demo walkthrough pässword"
    inst.add_user("demo", password)
    inst.cli_ok("team", "add", "demo")
    inst.cli_ok("team", "add-member", "demo", "demo")

    # the block sets BASE for `make run`'s port; point it at this server
    script, n = BASE_RE.subn(f"BASE={srv.base}", script, count=1)
    assert n == 1, "the walkthrough must set BASE on a line of its own"

    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "tokend"
    wrapper.write_text(
        "#!/bin/sh\n"
        "# tokend of the test installation\n"
        'bin="$TOKEND_BIN"\n'
        "unset TOKEND_BIN\n"
        f'exec "$bin" --database "{inst.database}" --key-dir "{inst.keys}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    work = tmp_path / "work"
    work.mkdir()
    path = work / "walkthrough.sh"
    path.write_text("set -euo pipefail\n" + script)

    env = child_env(inst.env)
    env.update({"TOKEND_BIN": str(inst.bin), "PASSWORD": password,
                "PATH": f"{bindir}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"})
    env.pop("BASE", None)
    proc = subprocess.run(["bash", str(path)], cwd=str(work), env=env, capture_output=True,
                          text=True, timeout=60)
    report = f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}\nscript:\n{script}"
    assert proc.returncode == 0, f"walkthrough failed: {report}"
    lines = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
    assert lines and lines[-1] == "401", f"the last command must print 401: {report}"
    assert lines[:-1] == ["true", "true", "true"], (
        f"the three jq -e checks (list, verify, delete) must each print true: {report}")

    # it really went through the server: the demo user's token is gone
    demo = db_rows(inst.database, "SELECT uuid FROM users WHERE username = 'demo'")[0]["uuid"]
    assert db_rows(inst.database, "SELECT jti FROM api_tokens WHERE user_uuid = ?", (demo,)) == []
    assert (work / "token.json").is_file(), "the walkthrough writes token.json in its directory"
