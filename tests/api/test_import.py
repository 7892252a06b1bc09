"""`tokend user import`: users with the hashes Django made, from CSV, JSONL and
`manage.py dumpdata auth.user` (a real one, from a throw-away Django project),
logged in through the HTTP API afterwards; --update; a batch per transaction
(a failure keeps the batches before it, writes nothing of its own); and the
hostile inputs (over-long, NUL, invalid UTF-8, RFC 4180 quoting, non-objects,
duplicates, empty input, huge lines, hashes tokend cannot verify), each
refused with its line number and nothing written.

No timing is asserted: the 100,000-user import prints how long it took."""

import json
import os
import subprocess
import sys
import time
import uuid as uuidlib

import pytest

from conftest import UUID_RE, django_hash, expect_401, expect_json, expect_tokens

PW_ITER = 1000  # Django hashes at a fast count: the test is the format, not the cost


@pytest.fixture(scope="module")
def imp(module_factory):
    """One installation with a team "imp-team" and a server on it."""
    inst = module_factory(label="import")
    team = inst.cli_ok("team", "add", "imp-team").out.strip()
    assert UUID_RE.match(team)
    srv = inst.start()
    return inst, srv, team


def uniq(prefix):
    return f"{prefix}-{uuidlib.uuid4().hex[:8]}"


def run_import(inst, data, *args, name="users.in"):
    path = inst.root / f"{uuidlib.uuid4().hex[:6]}-{name}"
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return inst.cli("user", "import", *args, str(path)), path


def counts(res):
    line = [ln for ln in res.out.splitlines() if ln.startswith("added ")]
    assert line, f"no counts line on stdout: {res!r}"
    return tuple(int(x.split()[-1]) for x in line[-1].split(","))


def usernames(inst):
    return {ln.split("\t")[1] for ln in inst.cli_ok("user", "list").out.splitlines()}


def login_ok(srv, name, pw, what):
    return expect_tokens(srv.login(name, pw), what)


def issue_in_team(srv, access, team, what):
    """A member can issue an API token in the team: proves the membership."""
    r = srv.post(f"/api/openapi/token/{team}/",
                 headers={"Authorization": f"Bearer {access}"}, json={"name": "imp"})
    expect_json(r, 201, what)


def csv_quote(s):
    return '"' + s.replace('"', '""') + '"'


# ------------------------------------------------------------ the three formats

def test_csv_with_django_hashes_logs_in(imp):
    inst, srv, team = imp
    users = [(uniq("csv"), "pw one", True), (uniq("o,brien"), 'pw "two"', True),
             (uniq("csvoff"), "pw three", False)]
    rows = ["username,password,is_active,teams"]
    for i, (name, pw, active) in enumerate(users):
        h = django_hash(pw, PW_ITER * (i + 1))
        rows.append(",".join([csv_quote(name), h, "true" if active else "false",
                              "imp-team" if i == 0 else f"imp-team;{team}"]))
    res, _ = run_import(inst, "\r\n".join(rows) + "\r\n", name="u.csv")
    assert res.rc == 0, res
    assert counts(res) == (3, 0, 0), res
    for name, pw, active in users:
        if active:
            body = login_ok(srv, name, pw, f"imported {name}")
            issue_in_team(srv, body["access"], team, f"{name} joined imp-team")
        else:
            expect_401(srv.login(name, pw), f"{name} imported inactive")


def test_jsonl_with_django_hashes_logs_in(imp):
    inst, srv, team = imp
    a, b = uniq("jl"), uniq("jl")
    lines = [json.dumps({"username": a, "password": django_hash("alpha", PW_ITER),
                         "teams": ["imp-team"]}),
             "",
             json.dumps({"username": b, "password": django_hash("beta", 260000),
                         "is_active": True})]
    res, _ = run_import(inst, "\n".join(lines), "--format", "jsonl")
    assert res.rc == 0 and counts(res) == (2, 0, 0), res
    issue_in_team(srv, login_ok(srv, a, "alpha", "jsonl user")["access"], team, "jsonl team")
    login_ok(srv, b, "beta", "jsonl user at Django 4.x's 260000 iterations")


DJANGO_PROJECT = r'''
import io, sys, django
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    PASSWORD_HASHERS=["django.contrib.auth.hashers.PBKDF2PasswordHasher"],
    USE_TZ=True)
django.setup()
from django.core.management import call_command
from django.contrib.auth.models import Group, User
from django.contrib.auth.hashers import PBKDF2PasswordHasher
PBKDF2PasswordHasher.iterations = 1000
call_command("migrate", verbosity=0)
g = Group.objects.create(name="staff")
for name, pw, active in [(sys.argv[1], "dj-one", True), (sys.argv[2], "dj-two", True),
                         (sys.argv[3], "dj-three", False)]:
    u = User.objects.create_user(name, f"{name}@example.org", pw, first_name="F{",
                                 last_name='L"}', is_active=active)
    u.groups.add(g)
out = io.StringIO()
call_command("dumpdata", "auth.user", indent=int(sys.argv[4]), stdout=out)
sys.stdout.write(out.getvalue())
'''


def real_dumpdata(names, indent):
    proc = subprocess.run(["/usr/bin/python3", "-c", DJANGO_PROJECT, *names, str(indent)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"the Django project failed: {proc.stderr}"
    data = json.loads(proc.stdout)
    assert data[0]["model"] == "auth.user" and "password" in data[0]["fields"], data
    return proc.stdout


@pytest.mark.parametrize("indent,args", [(2, ()), (0, ("--format", "django"))])
def test_real_django_dumpdata(imp, indent, args):
    inst, srv, _ = imp
    names = [uniq("dj"), uniq("dj"), uniq("dj")]
    res, _ = run_import(inst, real_dumpdata(names, indent), *args, name="users.json")
    assert res.rc == 0 and counts(res) == (3, 0, 0), res
    login_ok(srv, names[0], "dj-one", "dumpdata user")
    login_ok(srv, names[1], "dj-two", "dumpdata user")
    expect_401(srv.login(names[2], "dj-three"), "dumpdata user with is_active false")


def test_dumpdata_shaped_json(imp):
    inst, srv, _ = imp
    name = uniq("shape")
    data = [{"model": "auth.user", "pk": 7, "fields": {
        "password": django_hash("shaped", PW_ITER), "last_login": None, "is_superuser": False,
        "username": name, "first_name": "[{", "last_name": "\\\"}]", "email": "",
        "is_staff": False, "is_active": True, "date_joined": "2024-01-01T00:00:00Z",
        "groups": [1, 2], "user_permissions": []}}]
    res, _ = run_import(inst, "  \n" + json.dumps(data, indent=4) + "\n")
    assert res.rc == 0 and counts(res) == (1, 0, 0), res
    login_ok(srv, name, "shaped", "dumpdata-shaped user")
    res, _ = run_import(inst, "[]")
    assert res.rc == 0 and counts(res) == (0, 0, 0), res


# ------------------------------------------------------------ --update

def test_update_rehashes_disables_and_ends_sessions(imp):
    inst, srv, team = imp
    name = uniq("upd")
    h1 = django_hash("first", PW_ITER)
    res, _ = run_import(inst, f"username,password\n{name},{h1}\n")
    assert res.rc == 0 and counts(res) == (1, 0, 0), res
    pair = login_ok(srv, name, "first", "before the update")

    res, _ = run_import(inst, f"username,password\n{name},{h1}\n")
    assert res.rc == 1 and "already exists" in res.err and ":2:" in res.err, res
    assert counts(res) == (0, 0, 0), res

    res, _ = run_import(inst, f"username,password\n{name},{h1}\n", "--update")
    assert res.rc == 0 and counts(res) == (0, 0, 1), f"unchanged user is skipped: {res!r}"
    expect_tokens(srv.post("/api/auth/jwt/refresh/", json={"refresh": pair["refresh"]}),
                  "a skipped user keeps their sessions")

    h2 = django_hash("second", PW_ITER)
    res, _ = run_import(inst, f"username,password,teams\n{name},{h2},imp-team\n", "--update")
    assert res.rc == 0 and counts(res) == (0, 1, 0), res
    expect_401(srv.login(name, "first"), "the old password after the update")
    body = login_ok(srv, name, "second", "the new password")
    issue_in_team(srv, body["access"], team, "team added by the update")
    r = srv.post("/api/auth/jwt/refresh/", json={"refresh": pair["refresh"]})
    expect_json(r, 401, "a new hash ends the sessions of the old password")

    res, _ = run_import(inst, f"username,password,is_active\n{name},{h2},false\n", "--update")
    assert res.rc == 0 and counts(res) == (0, 1, 0), res
    expect_401(srv.login(name, "second"), "disabled by the update")
    r = srv.post("/api/auth/jwt/refresh/", json={"refresh": body["refresh"]})
    expect_json(r, 401, "a disable by the update ends the sessions")

    res, _ = run_import(inst, json.dumps({"username": name, "password": h2, "is_active": True}),
                        "--update")
    assert res.rc == 0 and counts(res) == (0, 1, 0), res
    login_ok(srv, name, "second", "enabled again by the update")


# ------------------------------------------------------------ batches

def test_failure_keeps_earlier_batches_only(imp):
    inst, _, _ = imp
    h = django_hash("batch", PW_ITER)
    prefix = uniq("bat")
    rows = ["username,password"] + [f"{prefix}-{i},{h}" for i in range(1500)]
    rows[1400] = f"{prefix}-bad,plaintext"  # line 1401, in the second batch of 1000
    res, _ = run_import(inst, "\n".join(rows) + "\n")
    assert res.rc == 1, res
    assert ":1401:" in res.err and f"{prefix}-bad" in res.err, res
    assert counts(res) == (1000, 0, 0), f"the first batch stays and is counted: {res!r}"
    names = usernames(inst)
    assert f"{prefix}-999" in names and f"{prefix}-998" in names
    assert f"{prefix}-1000" not in names and f"{prefix}-1398" not in names, \
        "nothing of the failing batch is written"


def test_hundred_thousand_users(module_factory):
    inst = module_factory(label="import-100k")
    inst.cli_ok("team", "add", "big")
    h = django_hash("same", PW_ITER)
    rows = ["username,password,teams"]
    rows += [f"u{i:06d},{h},big" for i in range(100_000)]
    path = inst.root / "100k.csv"
    path.write_text("\n".join(rows) + "\n")
    t0 = time.monotonic()
    res = inst.cli("user", "import", str(path), timeout=600)
    took = time.monotonic() - t0
    assert res.rc == 0 and counts(res) == (100_000, 0, 0), res
    sys.stderr.write(f"\n[test_import] 100,000 users imported in {took:.1f} s\n")
    listed = inst.cli_ok("user", "list").out.splitlines()
    assert len(listed) == 100_000
    team = [ln.split("\t") for ln in inst.cli_ok("team", "list").out.splitlines()]
    assert team[0][1] == "big" and team[0][2] == "100000", team


# ------------------------------------------------------------ hostile inputs

GOOD = None


def good_hash():
    global GOOD
    if GOOD is None:
        GOOD = django_hash("good", PW_ITER)
    return GOOD


def hostile_cases():
    """(id, build(prefix, hash) -> bytes, expected line, needle in stderr)."""
    csv = lambda body: (lambda p, h: ("username,password\n" + f"{p}-ok,{h}\n" + body(p, h)).encode())

    def jl(line):
        def build(p, h):
            tail = line(p, h)
            first = json.dumps({"username": f"{p}-ok", "password": h}) + "\n"
            return first.encode() + (tail.encode() if isinstance(tail, str) else tail)
        return build

    return [
        ("long-username", csv(lambda p, h: f"{p}{'x' * 150},{h}\n"), 3, "longer than 150 bytes"),
        ("username-150-ok-then-bad", csv(lambda p, h: f"{p}-{'y' * 130},{h}\n{p}-z,plain\n"), 4,
         "plain passwords are refused"),
        ("nul-csv", lambda p, h: b"username,password\n" + f"{p}-ok,{h}\n".encode()
         + p.encode() + b"\x00x," + h.encode() + b"\n", 3, "NUL"),
        ("nul-json", jl(lambda p, h: json.dumps({"username": f"{p}\u0000x", "password": h})), 2,
         "not valid JSON"),
        ("invalid-utf8-csv", lambda p, h: b"username,password\n" + f"{p}-ok,{h}\n".encode()
         + p.encode() + b"\xff\xfe," + h.encode() + b"\n", 3, "not valid UTF-8"),
        ("invalid-utf8-json", jl(lambda p, h: b'{"username": "' + p.encode() + b'\xc3\x28", '
                                 b'"password": "' + h.encode() + b'"}\n'), 2, "not valid JSON"),
        ("quoted-newline-username", csv(lambda p, h: f'"{p}\nx",{h}\n'), 3, "control character"),
        ("quote-not-closed", csv(lambda p, h: f'"{p},{h}\n'), 3, "not closed"),
        ("quote-in-unquoted", csv(lambda p, h: f'{p}"x,{h}\n'), 3, "quote inside an unquoted"),
        ("after-closing-quote", csv(lambda p, h: f'"{p}"x,{h}\n'), 3, "after a closing quote"),
        ("field-count", csv(lambda p, h: f"{p}-3,{h},extra\n"), 3, "3 fields, the header has 2"),
        ("space-username", csv(lambda p, h: f"{p} x,{h}\n"), 3, "space"),
        ("empty-username", csv(lambda p, h: f",{h}\n"), 3, "empty username"),
        ("json-array-line", jl(lambda p, h: "[1, 2]"), 2, "not a JSON object"),
        ("json-string-line", jl(lambda p, h: '"just a string"'), 2, "not a JSON object"),
        ("json-number-line", jl(lambda p, h: "42"), 2, "not a JSON object"),
        ("json-garbage", jl(lambda p, h: "{username: 1}"), 2, "not valid JSON"),
        ("json-unknown-field", jl(lambda p, h: json.dumps({"username": f"{p}-u", "password": h,
                                                           "is_admin": True})), 2, "unknown field"),
        ("json-username-type", jl(lambda p, h: json.dumps({"username": 5, "password": h})), 2,
         "username is not a string"),
        ("json-teams-type", jl(lambda p, h: json.dumps({"username": f"{p}-t", "password": h,
                                                        "teams": "imp-team"})), 2, "not a list"),
        ("duplicate", csv(lambda p, h: f"{p}-2,{h}\n{p}-ok,{h}\n"), 4,
         "appears again (first at line 2)"),
        ("huge-line", jl(lambda p, h: json.dumps({"username": f"{p}-h", "password": h,
                                                  "pad": "x" * 200_000})), 2, "longer than 65536"),
        ("huge-csv-record", csv(lambda p, h: f'"{p}{"y" * 100_000}",{h}\n'), 3, "longer than 65536"),
        ("iterations-zero", csv(lambda p, h: f"{p}-i,pbkdf2_sha256$0$salt${h.split('$')[3]}\n"), 3,
         "iteration count"),
        ("iterations-too-many",
         csv(lambda p, h: f"{p}-i,pbkdf2_sha256$100000001$salt${h.split('$')[3]}\n"), 3,
         "iteration count"),
        ("iterations-overflow",
         csv(lambda p, h: f"{p}-i,pbkdf2_sha256$99999999999999999999999$s${h.split('$')[3]}\n"),
         3, "iteration count"),
        ("iterations-negative", csv(lambda p, h: f"{p}-i,pbkdf2_sha256$-5$s${h.split('$')[3]}\n"),
         3, "iteration count"),
        ("hash-truncated", csv(lambda p, h: f"{p}-t,{h[:-4]}\n"), 3, "malformed pbkdf2_sha256"),
        ("plain-password", csv(lambda p, h: f"{p}-p,hunter2\n"), 3, "plain passwords are refused"),
        ("argon2", csv(lambda p, h: f"{p}-a,\"argon2$argon2id$v=19$m=102400,t=2,p=8$c2FsdA$aGFzaA\"\n"),
         3, 'hasher "argon2" is not supported'),
        ("unusable", csv(lambda p, h: f"{p}-u,!uFWDvOmXkUMSGvYWrrWVGYZJwHQVqUnnovUtmBVi\n"), 3,
         "unusable"),
        ("missing-team",
         lambda p, h: f"username,password,teams\n{p}-ok,{h},\n{p}-m,{h},imp-team;nope-{p}\n".encode(),
         3, "does not exist"),
        ("unknown-column", lambda p, h: f"username,password,email\n{p}-ok,{h},x\n".encode(), 1,
         'unknown column "email"'),
        ("no-password-column", lambda p, h: f"username,is_active\n{p}-ok,true\n".encode(), 1,
         "username and password are required"),
        ("bad-is-active",
         lambda p, h: f"username,password,is_active\n{p}-ok,{h},\n{p}-b,{h},maybe\n".encode(), 3,
         "is_active"),
        ("django-not-object", lambda p, h: (
            '[{"model": "auth.user", "fields": {"username": "%s-ok", "password": "%s"}},\n 5]'
            % (p, h)).encode(), 2, "not an object"),
        ("django-other-model", lambda p, h: (
            '[{"model": "auth.user", "fields": {"username": "%s-ok", "password": "%s"}},\n'
            ' {"model": "auth.group", "fields": {"name": "x"}}]' % (p, h)).encode(), 2,
         "not a user"),
        ("django-unclosed", lambda p, h: (
            '[{"model": "auth.user", "fields": {"username": "%s-ok", "password": "%s"}},\n'
            % (p, h)).encode(), 2, "not closed"),
        ("django-trailing", lambda p, h: (
            '[{"model": "auth.user", "fields": {"username": "%s-ok", "password": "%s"}}]\n]'
            % (p, h)).encode(), 2, "after the JSON array"),
    ]


@pytest.mark.parametrize("case", hostile_cases(), ids=lambda c: c[0])
def test_hostile_input_is_refused_with_its_line(imp, case):
    inst, _, _ = imp
    _, build, line, needle = case
    prefix = uniq("h")
    before = usernames(inst)
    res, path = run_import(inst, build(prefix, good_hash()))
    assert res.rc == 1, f"{case[0]}: must fail: {res!r}"
    assert f"{path}:{line}:" in res.err, f"{case[0]}: the error names line {line}: {res.err!r}"
    assert needle in res.err, f"{case[0]}: stderr should say {needle!r}: {res.err!r}"
    assert len(res.err.splitlines()) <= 3, f"{case[0]}: a short message: {res.err!r}"
    assert counts(res) == (0, 0, 0), res
    assert usernames(inst) == before, f"{case[0]}: nothing of the failing batch is written"


def test_hostile_message_names_the_user_escaped(imp):
    inst, _, _ = imp
    res, path = run_import(inst, b"username,password\nev\x1b[31mil,plain\n")
    assert res.rc == 1 and f"{path}:2:" in res.err, res
    assert "\x1b" not in res.err and "ev\\x1b[31mil" in res.err, \
        f"a control character of a username is escaped in the message: {res.err!r}"


@pytest.mark.parametrize("data", [b"", b"   \n\n\t\n"], ids=["empty", "blank"])
def test_empty_input_is_an_error(imp, data):
    inst, _, _ = imp
    res, path = run_import(inst, data)
    assert res.rc == 1 and "empty input" in res.err, res


def test_header_only_csv_imports_nothing(imp):
    inst, _, _ = imp
    res, _ = run_import(inst, "\ufeffusername,password,is_active,teams\r\n")
    assert res.rc == 0 and counts(res) == (0, 0, 0), res


def test_stdin_and_usage(imp):
    inst, srv, _ = imp
    name = uniq("stdin")
    line = json.dumps({"username": name, "password": django_hash("in", PW_ITER)})
    res = inst.cli("user", "import", "-", input=line + "\n")
    assert res.rc == 0 and counts(res) == (1, 0, 0), res
    login_ok(srv, name, "in", "imported from stdin")
    assert inst.cli("user", "import", "--format", "xml", "-").rc == 2
    assert inst.cli("user", "import", "--bogus").rc == 2
    res = inst.cli("user", "import", str(inst.root / "no-such-file"))
    assert res.rc == 1 and "no-such-file" in res.err, res
    help_text = inst.cli_ok("user", "import", "--help").out
    for word in ("--format", "--update", "csv", "jsonl", "django", "batches before it stay"):
        assert word in help_text, f"--help mentions {word!r}"
