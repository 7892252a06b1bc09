"""The operator CLI: users, teams, migrate, --help, exit codes 0/1/2."""

import pytest

from conftest import UUID_RE, db_rows, expect_401, expect_tokens

HELP_PATHS = [
    [], ["serve"], ["migrate"], ["user"], ["user", "add"], ["user", "passwd"], ["user", "disable"],
    ["user", "enable"], ["user", "delete"], ["user", "logout"], ["user", "list"], ["team"], ["team", "add"],
    ["team", "list"], ["team", "add-member"], ["team", "remove-member"],
]


@pytest.fixture
def cli(factory):
    inst = factory()
    inst.cli_ok("migrate")
    return inst


def one_line_error(res, what):
    assert res.rc == 1, f"{what}: expected exit 1, got {res!r}"
    msg = res.err.strip()
    assert msg, f"{what}: no message on stderr"
    assert "\n" not in msg, f"{what}: error message must be one line, got {res.err!r}"


def user_lines(inst):
    return inst.cli_ok("user", "list").out.splitlines()


def user_state(inst, name):
    for ln in user_lines(inst):
        fields = ln.replace("\t", " ").split()
        if name in fields:
            return "disabled" if "disabled" in fields else ("active" if "active" in fields else ln)
    return None


def teams(inst):
    out = {}
    for ln in inst.cli_ok("team", "list").out.splitlines():
        parts = ln.split("\t")
        assert len(parts) >= 3, f"team list line is not uuid<TAB>name<TAB>members: {ln!r}"
        assert UUID_RE.match(parts[0]), f"team list: first field not a uuid: {ln!r}"
        out[parts[1]] = (parts[0], int(parts[2]))
    return out


# ---------------------------------------------------------------- help & usage

@pytest.mark.parametrize("path", HELP_PATHS, ids=lambda p: " ".join(p) or "top")
def test_help_everywhere(cli, path):
    res = cli.cli(*path, "--help")
    assert res.rc == 0, f"`tokend {' '.join(path)} --help`: {res!r}"
    assert "usage" in res.out.lower(), f"`tokend {' '.join(path)} --help` printed no usage on stdout: {res!r}"


def test_help_lists_commands(cli):
    out = cli.cli_ok("--help").out
    for cmd in ("serve", "migrate", "user", "team"):
        assert cmd in out, f"top-level --help does not mention {cmd}"


@pytest.mark.parametrize("argv", [
    [], ["frobnicate"], ["--nope", "user", "list"], ["user"], ["user", "frob"], ["user", "add"],
    ["user", "add", "x", "--nope"], ["user", "disable"], ["user", "delete"], ["team"], ["team", "add"],
    ["team", "add-member", "t"], ["team", "remove-member", "t"], ["serve", "--threads", "abc"],
    ["serve", "--bogus"], ["user", "list", "extra-arg"], ["--database"], ["user", "logout"],
    ["user", "logout", "x", "--revoke"],
], ids=lambda a: " ".join(a) or "no-args")
def test_usage_errors_exit_2(cli, argv):
    res = cli.cli(*argv, input="")
    assert res.rc == 2, f"`tokend {' '.join(argv)}` is a usage error: expected exit 2, got {res!r}"
    assert res.err.strip(), f"usage error without a message on stderr: {res!r}"


# ---------------------------------------------------------------- users

def test_user_add_prints_uuid_and_lists(cli):
    res = cli.cli("user", "add", "alice", "--password-stdin", input="pw1\n")
    assert res.rc == 0, res
    assert UUID_RE.match(res.out.strip()) and res.out.strip() == res.out.rstrip("\n"), (
        f"user add must print only the uuid: {res.out!r}")
    row = db_rows(cli.database, "SELECT * FROM users WHERE username='alice'")
    assert row and row[0]["uuid"] == res.out.strip(), f"users row {row} vs printed uuid {res.out!r}"
    assert row[0]["is_active"] in (1, True), row
    assert row[0]["created_at"], row
    assert user_state(cli, "alice") == "active", user_lines(cli)


def test_user_add_duplicate_is_1(cli):
    cli.add_user("bob", "pw")
    res = cli.cli("user", "add", "bob", "--password-stdin", input="other\n")
    one_line_error(res, "duplicate user")
    assert len(db_rows(cli.database, "SELECT * FROM users WHERE username='bob'")) == 1


@pytest.mark.parametrize("stdin", ["\n", ""], ids=["empty-line", "no-input"])
def test_user_add_empty_password_refused(cli, stdin):
    res = cli.cli("user", "add", "nopw", "--password-stdin", input=stdin)
    assert res.rc in (1, 2), f"user add with an empty password must fail: {res!r}"
    assert not db_rows(cli.database, "SELECT * FROM users WHERE username='nopw'"), "user created without a password"


def test_password_stdin_reads_one_line(factory):
    inst = factory()
    inst.cli_ok("user", "add", "ann", "--password-stdin", input="first line\nsecond line\n")
    inst.cli_ok("user", "add", "ben", "--password-stdin", input="no-newline")
    srv = inst.start()
    expect_tokens(srv.login("ann", "first line"), "password = first stdin line")
    expect_tokens(srv.login("ben", "no-newline"), "password without trailing newline")
    expect_401(srv.login("ann", "first line\nsecond line"))


def test_user_unknown_is_1(cli):
    for argv in (["user", "disable", "ghost"], ["user", "enable", "ghost"], ["user", "delete", "ghost"],
                 ["user", "logout", "ghost"]):
        one_line_error(cli.cli(*argv), " ".join(argv))
    one_line_error(cli.cli("user", "passwd", "ghost", "--password-stdin", input="x\n"), "passwd ghost")


def test_disable_enable_delete_passwd_over_http(shared, srv):
    inst = shared.inst
    name, _ = shared.new_user("cycle", "pw-one")
    expect_tokens(srv.login(name, "pw-one"), "fresh user")
    inst.cli_ok("user", "disable", name)
    assert user_state(inst, name) == "disabled", user_lines(inst)
    expect_401(srv.login(name, "pw-one"), "disabled user")
    inst.cli_ok("user", "enable", name)
    assert user_state(inst, name) == "active", user_lines(inst)
    expect_tokens(srv.login(name, "pw-one"), "re-enabled user")
    inst.cli_ok("user", "passwd", name, "--password-stdin", input="pw-two\n")
    expect_401(srv.login(name, "pw-one"), "old password after passwd")
    expect_tokens(srv.login(name, "pw-two"), "new password after passwd")
    inst.cli_ok("user", "delete", name)
    assert user_state(inst, name) is None, f"deleted user still listed: {user_lines(inst)}"
    expect_401(srv.login(name, "pw-two"), "deleted user")
    assert not db_rows(inst.database, "SELECT * FROM users WHERE username=?", (name,))


def test_user_logout_ends_every_session(shared, srv):
    inst = shared.inst
    name, uid = shared.new_user("bye", "pw")
    other, _ = shared.new_user("stay", "pw")
    pairs = [expect_tokens(srv.login(name, "pw")) for _ in range(2)]
    kept = expect_tokens(srv.login(other, "pw"))
    res = inst.cli_ok("user", "logout", name)
    assert res.out == "2\n", f"`user logout` prints how many sessions ended: {res!r}"
    assert res.err == "", res
    for p in pairs:
        for tok in (p["access"], p["refresh"]):
            r = srv.post("/api/auth/jwt/verify/", json={"token": tok})
            assert r.status_code == 401, f"token of a logged-out session still verifies: {r.text}"
        r = srv.post("/api/auth/jwt/refresh/", json={"refresh": p["refresh"]})
        assert r.status_code == 401, r.text
    for tok in (kept["access"], kept["refresh"]):
        r = srv.post("/api/auth/jwt/verify/", json={"token": tok})
        assert r.status_code == 201, f"another user's session ended too: {r.text}"
    rows = db_rows(inst.database, "SELECT revoked_at FROM sessions WHERE user_uuid = ?", (uid,))
    assert len(rows) == 2 and all(r["revoked_at"] is not None for r in rows), rows
    # nothing left to end; the user can log in again
    assert inst.cli_ok("user", "logout", name).out == "0\n"
    expect_tokens(srv.login(name, "pw"), "login after logout")


def test_delete_user_with_tokens_and_teams(shared, srv):
    inst = shared.inst
    name, uid = shared.new_user("leaver", "pw")
    team = f"team-{name}"
    inst.cli_ok("team", "add", team)
    inst.cli_ok("team", "add-member", team, name)
    expect_tokens(srv.login(name, "pw"))
    inst.cli_ok("user", "delete", name)
    assert not db_rows(inst.database, "SELECT * FROM team_members WHERE user_uuid=?", (uid,)), "membership left behind"
    assert teams(inst)[team][1] == 0


# ---------------------------------------------------------------- teams

def test_team_add_prints_only_uuid(cli):
    res = cli.cli("team", "add", "Research")
    assert res.rc == 0, res
    uid = res.out.strip()
    assert UUID_RE.match(uid) and res.out in (uid, uid + "\n"), f"team add must print the uuid alone: {res.out!r}"
    assert teams(cli)["Research"] == (res.out.strip(), 0)


def test_team_add_duplicate_is_1(cli):
    cli.cli_ok("team", "add", "Ops")
    one_line_error(cli.cli("team", "add", "Ops"), "duplicate team")
    assert len([t for t in teams(cli) if t == "Ops"]) == 1


def test_team_membership(cli):
    tid = cli.cli_ok("team", "add", "Research").out.strip()
    uid_a = cli.add_user("alice", "pw")
    uid_b = cli.add_user("bob", "pw")
    cli.cli_ok("team", "add-member", "Research", "alice")
    cli.cli_ok("team", "add-member", tid, "bob", "--role", "admin")
    assert teams(cli)["Research"] == (tid, 2), teams(cli)
    rows = {r["user_uuid"]: r["role"] for r in db_rows(cli.database, "SELECT * FROM team_members WHERE team_uuid=?", (tid,))}
    assert rows == {uid_a: "member", uid_b: "admin"}, f"team_members rows {rows}"
    cli.cli_ok("team", "remove-member", tid, "alice")
    assert teams(cli)["Research"][1] == 1
    cli.cli_ok("team", "remove-member", "Research", "bob")
    assert teams(cli)["Research"][1] == 0


def test_team_errors(cli):
    cli.cli_ok("team", "add", "Research")
    cli.add_user("alice", "pw")
    one_line_error(cli.cli("team", "add-member", "NoSuchTeam", "alice"), "unknown team")
    one_line_error(cli.cli("team", "add-member", "00000000-0000-4000-8000-000000000000", "alice"),
                   "unknown team uuid")
    one_line_error(cli.cli("team", "add-member", "Research", "ghost"), "unknown user")
    one_line_error(cli.cli("team", "remove-member", "NoSuchTeam", "alice"), "remove from unknown team")
    res = cli.cli("team", "add-member", "Research", "alice", "--role", "owner")
    assert res.rc in (1, 2), f"--role owner must be refused: {res!r}"
    assert teams(cli)["Research"][1] == 0


# ---------------------------------------------------------------- migrate

def test_migrate_fresh_and_idempotent(factory):
    inst = factory(empty=True)
    res = inst.cli("migrate")
    assert res.rc == 0, res
    v1 = inst.schema_version()
    assert v1 >= 1, f"schema version {v1} after migrate"
    assert {"users", "teams", "team_members", "refresh_tokens"} <= inst.tables(), inst.tables()
    cols = inst.columns("users")
    assert {"uuid", "username", "password", "is_active", "created_at", "last_login"} <= cols, cols
    cols = inst.columns("refresh_tokens")
    assert {"jti", "family", "user_uuid", "issued_at", "expires_at", "used_at"} <= cols, cols
    res = inst.cli("migrate")
    assert res.rc == 0, f"second migrate: {res!r}"
    assert inst.schema_version() == v1


def test_cli_honours_iterations_env(factory):
    inst = factory(env={"TOKEND_PASSWORD_PBKDF2_ITERATIONS": "1234"})
    inst.add_user("it", "pw")
    h = db_rows(inst.database, "SELECT password FROM users WHERE username='it'")[0]["password"]
    assert h.startswith("pbkdf2_sha256$1234$"), f"CLI ignored TOKEND_PASSWORD_PBKDF2_ITERATIONS: {h[:30]}"


def test_no_secret_on_cli_output(cli):
    res = cli.cli("user", "add", "sec", "--password-stdin", input="very-secret-pw\n")
    assert "very-secret-pw" not in res.out + res.err
    assert "very-secret-pw" not in cli.cli_ok("user", "list").out
