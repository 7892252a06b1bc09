"""The man pages (docs/man/*.scd, built by CMake into build/man/) against the
binary they describe: tokend(8) names every command, subcommand and option
that `tokend --help` and each command's --help list, and tokend.conf(5)
documents every key of the option table (as `tokend serve --check-config`
prints it with no file and no TOKEND_* variable) under its section, with the
binary's default, and no key the binary does not have. Both render with
man(1) without a warning."""

import os
import re
import shutil
import subprocess

import pytest

from conftest import child_env

HELP_OPT_RE = re.compile(r"(?<![\w-])(--[a-z][a-z-]*|-h)\b")
SUBCOMMAND_RE = re.compile(r"^  ([a-z][a-z-]*)(?=\s|$)")


@pytest.fixture(scope="module")
def man_dir(tokend_bin):
    d = tokend_bin.parent / "man"
    for page in ("tokend.8", "tokend.conf.5"):
        if not (d / page).is_file():
            pytest.fail(f"{d / page} missing: the CMake target `man` (part of all) builds it",
                        pytrace=False)
    return d


def roff_text(path):
    """The words of a page as a reader sees them: macros dropped, font
    escapes and zero-width marks removed; .SS headings kept as '## x'."""
    out = []
    for ln in path.read_text().splitlines():
        if ln.startswith(".SS ") or ln.startswith(".SH "):
            mark = "## " if ln.startswith(".SS ") else "# "
            out.append(mark + ln[4:].strip().strip('"'))
            continue
        if ln.startswith(".") or ln.startswith("'"):
            continue
        ln = re.sub(r"\\f[BIRP]", "", ln)
        ln = ln.replace("\\&", "").replace("\\*(Aq", "'").replace("\\-", "-")
        ln = ln.replace("\\e", "\\")
        out.append(ln)
    return "\n".join(out)


def flat(text):
    return re.sub(r"\s+", " ", text)


def run(tokend_bin, tmp_path, *args):
    proc = subprocess.run([str(tokend_bin), *args], capture_output=True, text=True,
                          env=child_env(), cwd=str(tmp_path), timeout=30)
    return proc


def help_of(tokend_bin, tmp_path, *args):
    proc = run(tokend_bin, tmp_path, *args, "--help")
    assert proc.returncode == 0 and proc.stdout.strip(), f"tokend {' '.join(args)} --help: {proc!r}"
    return proc.stdout


def commands(tokend_bin, tmp_path):
    """{command: {subcommand: help text}} from the binary's own help."""
    top = help_of(tokend_bin, tmp_path)
    block = top.split("Commands:", 1)[1].split("\n\n", 1)[0]
    cmds = [m.group(1) for m in (SUBCOMMAND_RE.match(ln) for ln in block.splitlines()) if m]
    assert {"serve", "migrate", "user", "team", "key", "purge"} <= set(cmds), cmds
    out = {}
    for c in cmds:
        text = help_of(tokend_bin, tmp_path, c)
        subs = {}
        if re.search(r"usage: .* COMMAND$", text.splitlines()[0]):
            for ln in text.splitlines()[1:]:
                m = SUBCOMMAND_RE.match(ln)
                if m:
                    subs[m.group(1)] = ln
        out[c] = (text, subs)
    return top, out


def test_tokend_8_names_every_command_and_option(tokend_bin, tmp_path, man_dir):
    page = flat(roff_text(man_dir / "tokend.8"))
    top, cmds = commands(tokend_bin, tmp_path)
    missing = []
    for opt in HELP_OPT_RE.findall(top):
        if opt not in page:
            missing.append(f"global option {opt}")
    for cmd, (text, subs) in cmds.items():
        if f"tokend {cmd}" not in page:
            missing.append(f"command {cmd}")
        for sub in subs:
            if f"tokend {cmd} {sub}" not in page:
                missing.append(f"command {cmd} {sub}")
        texts = [text]
        # a subcommand with a --help of its own (user import)
        for sub in subs:
            proc = run(tokend_bin, tmp_path, cmd, sub, "--help")
            if proc.returncode == 0 and proc.stdout.startswith(f"usage: tokend [global options] {cmd} {sub}"):
                texts.append(proc.stdout)
        for t in texts:
            for opt in HELP_OPT_RE.findall(t):
                if opt not in page:
                    missing.append(f"{cmd}: option {opt}")
    assert not missing, f"tokend(8) does not mention: {sorted(set(missing))}"
    assert "user import" in page and "tokend user import" in cmds["user"][0]


def defaults(tokend_bin, tmp_path):
    proc = run(tokend_bin, tmp_path, "serve", "--check-config")
    assert proc.returncode == 0, proc
    vals = dict(re.match(r"^([a-z_]+\.[a-z0-9_]+) = ?(.*)$", ln).groups()
                for ln in proc.stdout.splitlines() if re.match(r"^[a-z_]+\.[a-z0-9_]+ =", ln))
    assert len(vals) > 40, proc.stdout
    return vals


def documented_keys(man_dir):
    """{section.key: default} of tokend.conf(5): the `key = default` lines
    under each `[section]` heading of KEYS."""
    text = roff_text(man_dir / "tokend.conf.5")
    keys_part = text.split("\n# KEYS\n", 1)[-1]
    doc = {}
    section = None
    for ln in keys_part.splitlines():
        m = re.match(r"^## \[([a-z]+)\]$", ln)
        if m:
            section = m.group(1)
            continue
        if ln.startswith("#"):
            section = None
        m = re.match(r"^([a-z0-9_]+) = (.*)$", ln)
        if m and section:
            value = m.group(2).strip()
            doc[f"{section}.{m.group(1)}"] = "" if value == "(empty)" else value
    return doc


def test_tokend_conf_5_documents_every_key_with_its_default(tokend_bin, tmp_path, man_dir):
    binary = defaults(tokend_bin, tmp_path)
    doc = documented_keys(man_dir)
    missing = sorted(set(binary) - set(doc))
    assert not missing, f"tokend.conf(5) does not document: {missing}"
    stale = sorted(set(doc) - set(binary))
    assert not stale, f"tokend.conf(5) documents keys the binary does not have: {stale}"
    wrong = {k: (doc[k], binary[k]) for k in binary if doc[k] != binary[k]}
    assert not wrong, f"tokend.conf(5) defaults differ from the binary's (page, binary): {wrong}"


def test_the_checks_catch_a_missing_key(man_dir, tmp_path):
    """The parser above finds keys: drop one and it is missed."""
    doc = documented_keys(man_dir)
    assert doc.get("server.listen") == "127.0.0.1:8000", doc
    assert doc.get("tokens.issuer") == "", "an empty default reads (empty)"
    assert doc.get("throttle.login_user_window") == "3600"


@pytest.mark.skipif(shutil.which("man") is None, reason="man(1) is not installed")
@pytest.mark.parametrize("page", ["tokend.8", "tokend.conf.5"])
def test_pages_render_without_warnings(man_dir, page):
    env = dict(os.environ, MANWIDTH="100", MAN_KEEP_FORMATTING="")
    proc = subprocess.run(["man", "--warnings", "-l", str(man_dir / page)], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc
    assert not proc.stderr.strip(), f"man -l {page} warns: {proc.stderr}"
    assert "NAME" in proc.stdout and "SEE ALSO" in proc.stdout
