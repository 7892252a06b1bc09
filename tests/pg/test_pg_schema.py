# SPDX-License-Identifier: MIT
"""The PostgreSQL schema (sql/postgres/) against the SQLite one (sql/).

Properties proved:
  - sql/postgres has a twin of every SQLite migration, numbered alike; each
    file applies in one transaction, in order, with no BEGIN/COMMIT of its own;
  - every SQLite table, column (NOT NULL alike, types mapped), index and
    trigger has its PostgreSQL twin;
  - the same statements, run side by side on a SQLite store built from
    sql/sqlite/*.sql and a PostgreSQL one built from sql/postgres/*.sql, leave the
    same rows: api_token_versions bumps (insert, update, delete, upserts,
    multi-row statements, cascades), sessions deleted with their last refresh
    row, cascades of a user's and a team's deletion;
  - 005: session_ends rows for a revocation, a deletion of a live session,
    a user's deletion; disabling a user ends their live sessions;
  - 006: every pair's token count equals its rows after each of those
    statements; a store at 005 with tokens migrates to the right counts;
  - under concurrency (two instances): two transactions deleting a family's
    last two refresh rows leave no session behind; concurrent bumps of one
    pair are serialised, not lost.

Run: /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/pg
"""

import itertools
import re
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "api")]
import pgtmp  # noqa: E402
import dbsql  # noqa: E402

pytestmark = pytest.mark.skipif(
    not pgtmp.available(),
    reason=f"PostgreSQL 15 is not installed ({pgtmp.PG_BIN}/initdb is missing; "
           "scripts/install-deps installs postgresql-15)")

if pgtmp.available():
    import psycopg2  # a dependency whenever PostgreSQL is: no skip for it

SQLITE_MIGRATIONS = sorted((REPO / "sql" / "sqlite").glob("[0-9][0-9][0-9]_*.sql"))
PG_MIGRATIONS = sorted((REPO / "sql" / "postgres").glob("[0-9][0-9][0-9]_*.sql"))
DEADLINE = 30  # seconds; bounds a hang only

U1, U2 = "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"
T1, T2 = "10000000-0000-4000-8000-000000000001", "10000000-0000-4000-8000-000000000002"
_names = itertools.count()
# 006: pairs whose count is not their number of api_tokens rows, and rows
# of a pair without one.
WRONG_COUNTS = ("SELECT (SELECT count(*) FROM api_token_versions v WHERE tokens <> "
                "(SELECT count(*) FROM api_tokens a WHERE a.user_uuid = v.user_uuid "
                "AND a.team_uuid = v.team_uuid)) + (SELECT count(*) FROM api_tokens a "
                "WHERE NOT EXISTS (SELECT 1 FROM api_token_versions v "
                "WHERE v.user_uuid = a.user_uuid AND v.team_uuid = a.team_uuid)) AS n")


# --------------------------------------------------------------------------
# fixtures: one server for the module, one fresh database per test


@pytest.fixture(scope="module")
def pg():
    with pgtmp.PgTmp() as server:
        server.create_template("schema_tpl", PG_MIGRATIONS)
        yield server


@pytest.fixture
def pgdb(pg):
    """URL of a fresh database with the whole PostgreSQL schema."""
    name = f"t{next(_names)}"
    url = pg.create_database(name, template="schema_tpl")
    yield url
    pg.drop_database(name)


def sqlite_store(path):
    """A SQLite store built as store_sqlite.c builds it: each migration in one
    transaction, foreign keys on."""
    con = dbsql.connect(path)
    for f in SQLITE_MIGRATIONS:
        with con.transaction():
            con.script(f.read_text())
    return con


class Twin:
    """The same statements on a SQLite and a PostgreSQL store."""

    def __init__(self, lite, pgc):
        self.lite, self.pg = lite, pgc
        self.has_session_ends = bool(lite.rows(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'session_ends'"))

    def run(self, sql, params=()):
        """Run on both; both must succeed or both fail. Returns the rowcounts."""
        out = []
        for con in (self.lite, self.pg):
            try:
                out.append(con.execute(sql, params).rowcount)
            except (sqlite3.Error, psycopg2.Error) as e:
                out.append(type(e).__mro__[1].__name__ if isinstance(e, psycopg2.Error) else "error")
        failed = [not isinstance(x, int) for x in out]
        assert failed[0] == failed[1], f"{sql!r} {params!r}: sqlite -> {out[0]}, postgres -> {out[1]}"
        return out

    def same(self, sql, params=()):
        a, b = self.lite.rows(sql, params), self.pg.rows(sql, params)
        assert a == b, f"{sql}\nsqlite:   {a}\npostgres: {b}"
        return a

    def same_state(self):
        assert self.same(WRONG_COUNTS) == [{"n": 0}], "a count is not its pair's rows (006)"
        return {
            "versions": self.same("SELECT user_uuid, team_uuid, version, tokens "
                                  "FROM api_token_versions ORDER BY user_uuid, team_uuid"),
            "tokens": self.same("SELECT jti, digest, user_uuid, team_uuid, kid, name, issued_at, "
                                "updated_at, expires_at FROM api_tokens ORDER BY jti"),
            "sessions": self.same("SELECT id, user_uuid, created_at, revoked_at FROM sessions ORDER BY id"),
            "refresh": self.same("SELECT * FROM refresh_tokens ORDER BY jti"),
            "members": self.same("SELECT * FROM team_members ORDER BY team_uuid, user_uuid"),
            "users": self.same("SELECT * FROM users ORDER BY uuid"),
            "teams": self.same("SELECT * FROM teams ORDER BY uuid"),
        }

    def versions(self):
        return {(r["user_uuid"], r["team_uuid"]): r["version"] for r in self.same(
            "SELECT user_uuid, team_uuid, version FROM api_token_versions")}


@pytest.fixture
def twin(tmp_path, pgdb):
    lite = sqlite_store(tmp_path / "tokend.db")
    pgc = dbsql.connect(pgdb)
    t = Twin(lite, pgc)
    for uid, name in ((U1, "alice"), (U2, "bob")):
        t.run("INSERT INTO users (uuid, username, password, is_active, created_at) "
              "VALUES (?, ?, 'x', 1, 1000)", (uid, name))
    for tid, name in ((T1, "red"), (T2, "blue")):
        t.run("INSERT INTO teams (uuid, name, created_at) VALUES (?, ?, 1000)", (tid, name))
    for tid in (T1, T2):
        for uid in (U1, U2):
            t.run("INSERT INTO team_members (team_uuid, user_uuid, role) VALUES (?, ?, 'member')",
                  (tid, uid))
    yield t
    lite.close()
    pgc.close()


def add_token(t, jti, user=U1, team=T1, digest=None, name=None, exp=5000):
    return t.run("INSERT INTO api_tokens (jti, digest, user_uuid, team_uuid, kid, name, issued_at, "
                 "updated_at, expires_at) VALUES (?, ?, ?, ?, 'k1', ?, 1000, 1000, ?)",
                 (jti, digest or jti.encode() * 4, user, team, name, exp))


def add_session(t, sid, user=U1, refresh=(), revoked_at=None, exp=5000):
    t.run("INSERT INTO sessions (id, user_uuid, created_at, revoked_at) VALUES (?, ?, 1000, ?)",
          (sid, user, revoked_at))
    for jti in refresh:
        t.run("INSERT INTO refresh_tokens (jti, family, user_uuid, kid, access_jti, issued_at, "
              "expires_at) VALUES (?, ?, ?, 'k1', ?, 1000, ?)", (jti, sid, user, "a-" + jti, exp))


def session_ends(con):
    return con.rows("SELECT sid, ended_at FROM session_ends ORDER BY seq")


# --------------------------------------------------------------------------
# the migration files


def test_every_sqlite_migration_has_a_postgres_twin():
    lite = [f.name for f in SQLITE_MIGRATIONS]
    pgs = [f.name for f in PG_MIGRATIONS]
    assert pgs, "no sql/postgres/NNN_*.sql"
    missing = [n for n in lite if n not in pgs]
    assert not missing, f"SQLite migrations without a sql/postgres twin: {missing}"
    numbers = [int(n[:3]) for n in pgs]
    assert numbers == list(range(1, len(numbers) + 1)), f"sql/postgres is not numbered 001, 002, ...: {pgs}"


@pytest.mark.parametrize("path", PG_MIGRATIONS, ids=lambda p: p.name)
def test_migration_has_no_transaction_control_and_no_sqlite_syntax(path):
    text = re.sub(r"--[^\n]*", "", path.read_text())
    assert not re.search(r"^\s*(BEGIN|COMMIT|ROLLBACK|END)\s+(TRANSACTION\s*)?;|^\s*(BEGIN|COMMIT)\s*;",
                         text, re.I | re.M), f"{path.name}: the runner owns the transaction"
    for bad in ("WITHOUT ROWID", "AUTOINCREMENT", "INSERT OR ", "PRAGMA", "rowid", "BLOB",
                "strftime", "datetime("):
        assert bad.lower() not in text.lower(), f"{path.name}: SQLite-only {bad!r}"


def test_migrations_apply_in_order_each_in_one_transaction(pg):
    name = f"m{next(_names)}"
    url = pg.create_database(name)
    con = psycopg2.connect(url)
    try:
        for f in PG_MIGRATIONS:
            with con:  # one transaction: COMMIT, or ROLLBACK on an error
                with con.cursor() as cur:
                    cur.execute(f.read_text())
        # a migration applied twice fails and leaves nothing of itself behind
        with pytest.raises(psycopg2.Error):
            with con:
                with con.cursor() as cur:
                    cur.execute("CREATE TABLE half_done (x int);" + PG_MIGRATIONS[0].read_text())
        with con.cursor() as cur:
            cur.execute("SELECT to_regclass('half_done')")
            assert cur.fetchone()[0] is None, "a failed migration left a table behind"
        con.rollback()
    finally:
        con.close()
        pg.drop_database(name)


# --------------------------------------------------------------------------
# the shape: tables, columns, indexes, triggers


PG_TYPES = {"INTEGER": {"integer", "bigint"}, "TEXT": {"text"}, "BLOB": {"bytea"}}


def test_tables_columns_indexes_and_triggers_match_sqlite(tmp_path, pgdb):
    lite = sqlite_store(tmp_path / "s.db")
    pgc = dbsql.connect(pgdb)
    try:
        tables = [r["name"] for r in lite.rows(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        for table in tables:
            lcols = {r["name"]: r for r in lite.rows(f"PRAGMA table_info({table})")}
            pcols = {r["column_name"]: r for r in pgc.rows(
                "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name = ?", (table,))}
            assert pcols, f"no table {table} in PostgreSQL"
            extra = set(pcols) - set(lcols)
            assert extra <= {"seq"}, f"{table}: columns only in PostgreSQL: {extra}"
            for col, lc in lcols.items():
                assert col in pcols, f"{table}.{col} missing in PostgreSQL"
                pc = pcols[col]
                assert pc["data_type"] in PG_TYPES[lc["type"]], (
                    f"{table}.{col}: SQLite {lc['type']} became {pc['data_type']}")
                lite_null = not (lc["notnull"] or lc["pk"])
                assert (pc["is_nullable"] == "YES") == lite_null, f"{table}.{col}: NULL-ness differs"
        lidx = {r["name"] for r in lite.rows(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
        pidx = {r["indexname"] for r in pgc.rows("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}
        assert lidx <= pidx, f"indexes missing in PostgreSQL: {lidx - pidx}"
        ltrg = {r["name"] for r in lite.rows("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        ptrg = {r["tgname"] for r in pgc.rows("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")}
        assert ltrg <= ptrg, f"triggers missing in PostgreSQL: {ltrg - ptrg}"
    finally:
        lite.close()
        pgc.close()


# --------------------------------------------------------------------------
# api_token_versions, side by side


def test_versions_insert_update_delete(twin):
    add_token(twin, "t1")
    assert twin.versions() == {(U1, T1): 1}
    add_token(twin, "t2")
    assert twin.versions() == {(U1, T1): 2}
    twin.run("UPDATE api_tokens SET name = 'renamed', updated_at = 1001 WHERE jti = 't1'")
    twin.run("UPDATE api_tokens SET team_uuid = ? WHERE jti = 't1'", (T2,))
    twin.run("UPDATE api_tokens SET user_uuid = ? WHERE jti = 't2'", (U2,))
    twin.run("DELETE FROM api_tokens WHERE jti = 't2'")
    twin.run("DELETE FROM api_tokens WHERE jti = 'nothing'")
    twin.run("UPDATE api_tokens SET name = 'x' WHERE jti = 'nothing'")
    twin.same_state()


def test_versions_multi_row_statements(twin):
    for i in range(5):
        add_token(twin, f"m{i}", user=(U1, U2)[i % 2], team=(T1, T2)[i // 3], exp=2000 + i)
    twin.run("UPDATE api_tokens SET expires_at = expires_at + 1 WHERE user_uuid = ?", (U1,))
    twin.run("UPDATE api_tokens SET team_uuid = ?", (T1,))
    twin.run("DELETE FROM api_tokens WHERE expires_at <= ?", (2002,))
    twin.run("DELETE FROM api_tokens")
    twin.same_state()


def test_versions_collisions_and_upserts(twin):
    add_token(twin, "a", digest=b"A" * 32)
    add_token(twin, "b", user=U2, digest=b"B" * 32)
    add_token(twin, "c", user=U1, team=T2, digest=b"C" * 32)
    before = twin.same_state()
    # plain collisions fail on both and leave nothing (the BEFORE bumps too)
    add_token(twin, "a", digest=b"Z" * 32)
    add_token(twin, "z", digest=b"A" * 32)
    twin.run("UPDATE api_tokens SET jti = 'a' WHERE jti = 'b'")
    twin.run("UPDATE api_tokens SET digest = ? WHERE jti = 'b'", (b"C" * 32,))
    assert twin.same_state() == before
    # upserts: BEFORE INSERT, then (DO UPDATE) the UPDATE triggers
    twin.run("INSERT INTO api_tokens (jti, digest, user_uuid, team_uuid, kid, name, issued_at, "
             "updated_at, expires_at) VALUES ('a', ?, ?, ?, 'k2', 'up', 1, 1, 9) "
             "ON CONFLICT (jti) DO UPDATE SET name = excluded.name, kid = excluded.kid",
             (b"Q" * 32, U1, T1))
    twin.run("INSERT INTO api_tokens (jti, digest, user_uuid, team_uuid, kid, name, issued_at, "
             "updated_at, expires_at) VALUES ('new', ?, ?, ?, 'k2', NULL, 1, 1, 9) "
             "ON CONFLICT DO NOTHING", (b"B" * 32, U1, T1))
    twin.run("INSERT INTO api_tokens (jti, digest, user_uuid, team_uuid, kid, name, issued_at, "
             "updated_at, expires_at) VALUES ('fresh', ?, ?, ?, 'k2', NULL, 1, 1, 9) "
             "ON CONFLICT DO NOTHING", (b"F" * 32, U2, T2))
    twin.same_state()


def test_versions_one_insert_meeting_two_rows_of_one_pair(twin):
    """jti collides with one row and digest with another, both of (U1, T1):
    SQLite bumps that pair twice; PostgreSQL must too (one bump at a time)."""
    add_token(twin, "a", digest=b"A" * 32)
    add_token(twin, "b", digest=b"B" * 32)
    twin.run("INSERT INTO api_tokens (jti, digest, user_uuid, team_uuid, kid, name, issued_at, "
             "updated_at, expires_at) VALUES ('a', ?, ?, ?, 'k', NULL, 1, 1, 9) "
             "ON CONFLICT DO NOTHING", (b"B" * 32, U2, T2))
    twin.same_state()


def test_versions_bumped_by_cascades(twin):
    add_token(twin, "a")
    add_token(twin, "b", team=T2)
    add_token(twin, "c", user=U2)
    add_token(twin, "d", user=U2, team=T2)
    twin.run("DELETE FROM teams WHERE uuid = ?", (T2,))
    twin.same_state()
    twin.run("DELETE FROM users WHERE uuid = ?", (U1,))
    state = twin.same_state()
    assert [t["jti"] for t in state["tokens"]] == ["c"]
    assert state["members"] == [{"team_uuid": T1, "user_uuid": U2, "role": "member"}]


def test_listing_order_seq_is_the_rowid(twin):
    """api_tokens.seq orders a listing as SQLite's rowid does: newest first,
    ties in one second by insertion order."""
    for jti in ("m", "z", "a", "q"):
        add_token(twin, jti)
    twin.run("DELETE FROM api_tokens WHERE jti IN ('z', 'q')")
    for jti in ("b", "y"):
        add_token(twin, jti)
    twin.run("UPDATE api_tokens SET issued_at = 999 WHERE jti = 'y'")
    lite = [r[0] for r in twin.lite.execute(
        "SELECT jti FROM api_tokens ORDER BY issued_at DESC, rowid DESC").fetchall()]
    pgs = [r[0] for r in twin.pg.execute(
        "SELECT jti FROM api_tokens ORDER BY issued_at DESC, seq DESC").fetchall()]
    assert lite == pgs == ["b", "a", "m", "y"]


def test_versions_are_never_deleted(twin):
    add_token(twin, "a")
    twin.run("DELETE FROM users WHERE uuid = ?", (U1,))
    twin.run("DELETE FROM teams WHERE uuid = ?", (T1,))
    assert twin.versions() == {(U1, T1): 2}


# --------------------------------------------------------------------------
# sessions (004), side by side


def test_session_deleted_with_its_last_refresh_row(twin):
    add_session(twin, "s1", refresh=("r1", "r2"))
    add_session(twin, "s2", refresh=("r3",))
    add_session(twin, "s3")  # no refresh rows: left alone by deletes of others
    twin.run("DELETE FROM refresh_tokens WHERE jti = 'r1'")
    assert [s["id"] for s in twin.same_state()["sessions"]] == ["s1", "s2", "s3"]
    twin.run("DELETE FROM refresh_tokens WHERE jti = 'r2'")
    assert [s["id"] for s in twin.same_state()["sessions"]] == ["s2", "s3"]
    twin.run("DELETE FROM refresh_tokens WHERE jti = 'nothing'")
    assert [s["id"] for s in twin.same_state()["sessions"]] == ["s2", "s3"]


def test_session_deleted_by_one_statement_deleting_its_whole_family(twin):
    add_session(twin, "s1", refresh=("r1", "r2", "r3"), exp=2000)
    add_session(twin, "s2", refresh=("r4",), exp=2000)
    add_session(twin, "s3", refresh=("r5", "r6"), exp=9000)
    twin.run("UPDATE refresh_tokens SET expires_at = 9000 WHERE jti = 'r3'")
    twin.run("DELETE FROM refresh_tokens WHERE expires_at <= ?", (2000,))  # the sweep
    assert [s["id"] for s in twin.same_state()["sessions"]] == ["s1", "s3"]
    twin.run("DELETE FROM refresh_tokens WHERE family = 's1'")
    assert [s["id"] for s in twin.same_state()["sessions"]] == ["s3"]


def test_refresh_row_without_a_session(twin):
    twin.run("INSERT INTO refresh_tokens (jti, family, user_uuid, kid, access_jti, issued_at, "
             "expires_at) VALUES ('orphan', 'nosession', ?, 'k', 'a', 1, 2)", (U1,))
    twin.run("DELETE FROM refresh_tokens WHERE jti = 'orphan'")
    twin.same_state()


def test_deleting_a_user_removes_memberships_sessions_tokens(twin):
    add_session(twin, "s1", refresh=("r1", "r2"))
    add_session(twin, "s2", refresh=("r3",), revoked_at=1500)
    add_session(twin, "s9", user=U2, refresh=("r9",))
    add_token(twin, "a")
    add_token(twin, "b", team=T2)
    twin.run("DELETE FROM users WHERE username = 'alice'")
    state = twin.same_state()
    assert [u["username"] for u in state["users"]] == ["bob"]
    assert {m["user_uuid"] for m in state["members"]} == {U2}
    assert [s["id"] for s in state["sessions"]] == ["s9"]
    assert [r["jti"] for r in state["refresh"]] == ["r9"]
    assert state["tokens"] == []


def test_constraints_refuse_alike(twin):
    twin.run("INSERT INTO users (uuid, username, password, is_active, created_at) "
             "VALUES ('u3', 'carol', 'x', 2, 1)")                       # flag not 0/1
    twin.run("INSERT INTO users (uuid, username, password, created_at) VALUES ('u4', 'alice', 'x', 1)")
    twin.run("INSERT INTO team_members (team_uuid, user_uuid, role) VALUES (?, ?, 'owner')", (T1, U1))
    twin.run("INSERT INTO team_members (team_uuid, user_uuid) VALUES ('noteam', ?)", (U1,))
    twin.run("INSERT INTO sessions (id, user_uuid, created_at) VALUES ('s', 'nouser', 1)")
    twin.run("INSERT INTO refresh_tokens (jti, family, user_uuid, kid, access_jti, issued_at, "
             "expires_at, revoked) VALUES ('r', 'f', ?, 'k', 'a', 1, 2, 5)", (U1,))
    twin.run("UPDATE users SET is_active = 0 WHERE username = 'bob'")
    twin.run("INSERT INTO users (uuid, username, password, created_at) VALUES ('u5', 'dave', 'x', 7)")
    state = twin.same_state()
    assert [u["username"] for u in state["users"]] == ["alice", "bob", "dave"]
    assert [u["is_active"] for u in state["users"]] == [1, 0, 1], "DEFAULT 1 and the 0/1 flags"


def test_listing_order_of_usernames_is_bytewise(twin):
    for i, name in enumerate(["Zed", "alice2", "Émile", "_x", "a b"]):
        twin.run("INSERT INTO users (uuid, username, password, created_at) VALUES (?, ?, 'x', 1)",
                 (f"u{i}", name))
        twin.run("INSERT INTO teams (uuid, name, created_at) VALUES (?, ?, 1)", (f"t{i}", name))
    twin.same("SELECT username FROM users ORDER BY username")
    twin.same("SELECT name FROM teams ORDER BY name")


# --------------------------------------------------------------------------
# session_ends (005): PostgreSQL, and side by side once sql/005 exists


def ends_both(twin):
    pg_rows = session_ends(twin.pg)
    if twin.has_session_ends:
        lite_rows = session_ends(twin.lite)
        assert [r["sid"] for r in lite_rows] == [r["sid"] for r in pg_rows], (
            f"session_ends: sqlite {lite_rows}, postgres {pg_rows}")
    return pg_rows


def test_session_ends_on_revocation(twin):
    add_session(twin, "s1", refresh=("r1",))
    add_session(twin, "s2", refresh=("r2",))
    twin.run("UPDATE sessions SET revoked_at = 1234 WHERE id = 's1'")
    assert ends_both(twin) == [{"sid": "s1", "ended_at": 1234}]
    twin.run("UPDATE sessions SET revoked_at = 2000 WHERE id = 's1'")  # ended already
    twin.run("UPDATE sessions SET created_at = 5 WHERE id = 's2'")     # not an end
    twin.run("UPDATE sessions SET revoked_at = NULL WHERE id = 's2'")
    assert ends_both(twin) == [{"sid": "s1", "ended_at": 1234}]


def test_session_ends_on_deletion_of_a_live_session_only(twin):
    add_session(twin, "live", refresh=("r1",))
    add_session(twin, "dead", refresh=("r2",), revoked_at=1500)
    t0 = int(time.time())
    twin.run("DELETE FROM refresh_tokens")  # both sessions go with their last row
    t1 = int(time.time())
    rows = ends_both(twin)
    assert [r["sid"] for r in rows] == ["live"], "a revoked session has its row already"
    assert t0 - 1 <= rows[0]["ended_at"] <= t1 + 1, f"ended_at is not now: {rows}"
    twin.same_state()


def test_session_ends_when_a_user_is_deleted(twin):
    add_session(twin, "s1", refresh=("r1",))
    add_session(twin, "s2", revoked_at=1500)
    add_session(twin, "s3")
    add_session(twin, "other", user=U2)
    twin.run("DELETE FROM users WHERE uuid = ?", (U1,))
    assert sorted(r["sid"] for r in ends_both(twin)) == ["s1", "s3"]
    assert [s["id"] for s in twin.same_state()["sessions"]] == ["other"]


def test_disabling_a_user_ends_their_live_sessions(twin):
    add_session(twin, "s1", refresh=("r1",))
    add_session(twin, "s2")
    add_session(twin, "old", revoked_at=1500)
    add_session(twin, "other", user=U2)
    t0 = int(time.time())
    twin.run("UPDATE users SET is_active = 0 WHERE uuid = ?", (U1,))
    t1 = int(time.time())
    sessions = {r["id"]: r["revoked_at"] for r in twin.pg.rows("SELECT id, revoked_at FROM sessions")}
    assert sessions["old"] == 1500 and sessions["other"] is None
    for sid in ("s1", "s2"):
        assert sessions[sid] is not None and t0 - 1 <= sessions[sid] <= t1 + 1, sessions
    ends = ends_both(twin)
    assert sorted(r["sid"] for r in ends) == ["s1", "s2"]
    assert all(r["ended_at"] == sessions[r["sid"]] for r in ends)
    # already disabled, enabled again, another column: nothing more ends
    twin.run("UPDATE users SET is_active = 0 WHERE uuid = ?", (U1,))
    twin.run("UPDATE users SET is_active = 1 WHERE uuid = ?", (U1,))
    add_session(twin, "s4")
    twin.run("UPDATE users SET last_login = 77 WHERE uuid = ?", (U1,))
    twin.run("UPDATE users SET password = 'y'")
    assert sorted(r["sid"] for r in ends_both(twin)) == ["s1", "s2"]
    if twin.has_session_ends:
        twin.same_state()


def test_session_ends_seq_increases(pgdb):
    with dbsql.connect(pgdb) as con:
        con.execute("INSERT INTO users (uuid, username, password, created_at) VALUES ('u', 'u', 'x', 1)")
        for i in range(5):
            con.execute("INSERT INTO sessions (id, user_uuid, created_at) VALUES (?, 'u', 1)", (f"s{i}",))
        con.execute("UPDATE sessions SET revoked_at = 10")
        seqs = [r[0] for r in con.execute("SELECT seq FROM session_ends ORDER BY seq").fetchall()]
        assert len(seqs) == 5 and len(set(seqs)) == 5


# --------------------------------------------------------------------------
# several instances: concurrent transactions


def _wait_blocked(url, pid):
    """Poll until backend `pid` waits on a lock (bounded by DEADLINE)."""
    deadline = time.monotonic() + DEADLINE
    with dbsql.connect(url) as mon:
        while time.monotonic() < deadline:
            r = mon.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = ?", (pid,)).fetchone()
            if r and r[0] == "Lock":
                return
            time.sleep(0.01)
    raise AssertionError(f"backend {pid} never blocked on a lock within {DEADLINE}s")


def _in_thread(fn):
    box = {}

    def run():
        try:
            box["result"] = fn()
        except BaseException as e:  # noqa: BLE001 -- handed to the test
            box["error"] = e
    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th, box


def _finish(th, box):
    th.join(DEADLINE)
    assert not th.is_alive(), f"a transaction hung for {DEADLINE}s"
    if "error" in box:
        raise box["error"]
    return box.get("result")


def test_two_transactions_deleting_a_familys_last_rows_leave_no_session(pgdb):
    setup = dbsql.connect(pgdb)
    setup.execute("INSERT INTO users (uuid, username, password, created_at) VALUES ('u', 'u', 'x', 1)")
    setup.execute("INSERT INTO sessions (id, user_uuid, created_at) VALUES ('s', 'u', 1)")
    for jti in ("r1", "r2"):
        setup.execute("INSERT INTO refresh_tokens (jti, family, user_uuid, kid, access_jti, "
                      "issued_at, expires_at) VALUES (?, 's', 'u', 'k', 'a', 1, 2)", (jti,))
    a, b = psycopg2.connect(pgdb), psycopg2.connect(pgdb)
    try:
        ca, cb = a.cursor(), b.cursor()
        ca.execute("DELETE FROM refresh_tokens WHERE jti = 'r1'")  # sees r2: keeps the session
        th, box = _in_thread(lambda: cb.execute("DELETE FROM refresh_tokens WHERE jti = 'r2'"))
        _wait_blocked(pgdb, b.get_backend_pid())
        a.commit()
        _finish(th, box)
        b.commit()
        assert setup.rows("SELECT id FROM sessions") == [], "a session outlived its last refresh row"
        assert [r["sid"] for r in setup.rows("SELECT sid FROM session_ends")] == ["s"]
    finally:
        a.close()
        b.close()
        setup.close()


def test_concurrent_bumps_of_one_pair_are_not_lost(pgdb):
    setup = dbsql.connect(pgdb)
    setup.execute("INSERT INTO users (uuid, username, password, created_at) VALUES ('u', 'u', 'x', 1)")
    setup.execute("INSERT INTO teams (uuid, name, created_at) VALUES ('t', 't', 1)")
    a, b = psycopg2.connect(pgdb), psycopg2.connect(pgdb)
    ins = ("INSERT INTO api_tokens (jti, digest, user_uuid, team_uuid, kid, issued_at, updated_at, "
           "expires_at) VALUES (%s, %s, 'u', 't', 'k', 1, 1, 2)")
    try:
        a.cursor().execute(ins, ("j1", b"1" * 32))
        th, box = _in_thread(lambda: b.cursor().execute(ins, ("j2", b"2" * 32)))
        _wait_blocked(pgdb, b.get_backend_pid())
        a.commit()
        _finish(th, box)
        b.commit()
        assert setup.rows("SELECT version, tokens FROM api_token_versions") == [
            {"version": 2, "tokens": 2}]
    finally:
        a.close()
        b.close()
        setup.close()


# --------------------------------------------------------------------------
# 006: token counts of a store that had tokens before it


def test_006_counts_the_rows_already_there(pg):
    """A database at 005 with tokens of three pairs (one without a version
    row, as tokens from before 003) migrates to 006 with their row counts,
    expired rows included, and the triggers keep them from then on."""
    name = f"m{next(_names)}"
    url = pg.create_database(name)
    con = psycopg2.connect(url)
    try:
        with con, con.cursor() as cur:
            for f in PG_MIGRATIONS[:5]:
                cur.execute(f.read_text())
            cur.execute("INSERT INTO users (uuid, username, password, created_at) VALUES "
                        "('u1', 'a', 'x', 1), ('u2', 'b', 'x', 1);"
                        "INSERT INTO teams (uuid, name, created_at) VALUES ('t1', 'r', 1), "
                        "('t2', 'b', 1);")
            for i, (u, t, exp) in enumerate([("u1", "t1", 5), ("u1", "t1", 9e9), ("u1", "t1", 9e9),
                                             ("u2", "t1", 9e9), ("u1", "t2", 9e9)]):
                cur.execute("INSERT INTO api_tokens (jti, digest, user_uuid, team_uuid, kid, "
                            "issued_at, updated_at, expires_at) VALUES (%s, %s, %s, %s, 'k', 1, 1, "
                            "%s)", (f"j{i}", bytes([i]) * 32, u, t, int(exp)))
            cur.execute("DELETE FROM api_token_versions WHERE team_uuid = 't2'")
        with con, con.cursor() as cur:
            cur.execute(PG_MIGRATIONS[5].read_text())
        with con, con.cursor() as cur:
            cur.execute("SELECT user_uuid, team_uuid, tokens, version > 0 FROM api_token_versions "
                        "ORDER BY 1, 2")
            assert cur.fetchall() == [("u1", "t1", 3, True), ("u1", "t2", 1, True),
                                      ("u2", "t1", 1, True)]
            cur.execute("DELETE FROM api_tokens WHERE expires_at <= 5")
            cur.execute("DELETE FROM users WHERE uuid = 'u2'")
            cur.execute(WRONG_COUNTS)
            assert cur.fetchone()[0] == 0
            cur.execute("SELECT tokens FROM api_token_versions ORDER BY user_uuid, team_uuid")
            assert [r[0] for r in cur.fetchall()] == [2, 1, 0]
    finally:
        con.close()
        pg.drop_database(name)
