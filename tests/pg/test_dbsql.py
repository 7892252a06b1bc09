# SPDX-License-Identifier: MIT
"""tests/api/dbsql.py: the same calls give the same results on a SQLite
store and a PostgreSQL one.

Properties proved: `?` and `?N` placeholders become psycopg2's only outside
literals, quoted identifiers, comments and dollar quotes, and `%` is
escaped; on both backends execute() binds them, rows() gives dicts with the
same value types (bytes, int for booleans), transaction() commits or rolls
back, autocommit holds otherwise, readonly refuses writes, SQLite enforces
foreign keys as the server does, script() runs a migration file.
"""

import itertools
import sqlite3
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "api")]
import dbsql  # noqa: E402
import pgtmp  # noqa: E402

SQLITE_MIGRATIONS = sorted((REPO / "sql" / "sqlite").glob("[0-9][0-9][0-9]_*.sql"))
PG_MIGRATIONS = sorted((REPO / "sql" / "postgres").glob("[0-9][0-9][0-9]_*.sql"))
NO_PG = f"PostgreSQL 15 is not installed ({pgtmp.PG_BIN}/initdb is missing)"
_names = itertools.count()


# --------------------------------------------------------------------------
# the placeholder translation (no database)


@pytest.mark.parametrize("sql,want,style", [
    ("SELECT 1", "SELECT 1", None),
    ("SELECT * FROM t WHERE a = ? AND b = ?", "SELECT * FROM t WHERE a = %s AND b = %s", "qmark"),
    ("UPDATE t SET a = ?2 WHERE id = ?1 OR id = ?1",
     "UPDATE t SET a = %(p2)s WHERE id = %(p1)s OR id = %(p1)s", "numeric"),
    ("SELECT '?', 'it''s ?', \"col?\", ? -- why?\n", "SELECT '?', 'it''s ?', \"col?\", %s -- why?\n", "qmark"),
    ("SELECT /* ? */ ?", "SELECT /* ? */ %s", "qmark"),
    ("SELECT $$ ? $$, $t$ ?1 $t$, ?", "SELECT $$ ? $$, $t$ ?1 $t$, %s", "qmark"),
    ("SELECT $1, ?", "SELECT $1, %s", "qmark"),
    ("SELECT 10 % 3, '100%', ?", "SELECT 10 %% 3, '100%%', %s", "qmark"),
    ("SELECT 'open ?", "SELECT 'open ?", None),
])
def test_translate(sql, want, style):
    assert dbsql.translate(sql) == (want, style)


def test_translate_refuses_mixed_placeholders():
    with pytest.raises(ValueError):
        dbsql.translate("SELECT ?, ?1")


@pytest.mark.parametrize("db,pg", [
    ("postgresql://tokend@/x?host=/tmp/a", True), ("postgres://u@h/db", True),
    ("host=/tmp/a dbname=x", True), ("/tmp/tokend.db", False), ("tokend.db", False),
    (Path("/tmp/x.db"), False)])
def test_is_postgres(db, pg):
    assert dbsql.is_postgres(db) is pg


# --------------------------------------------------------------------------
# both backends


@pytest.fixture(scope="module")
def pg():
    if not pgtmp.available():
        pytest.skip(NO_PG)
    with pgtmp.PgTmp() as server:
        server.create_template("schema_tpl", PG_MIGRATIONS)
        yield server


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    """A store with the whole schema of the backend: a path or a URL."""
    if request.param == "sqlite":
        path = tmp_path / "tokend.db"
        con = sqlite3.connect(path)
        for f in SQLITE_MIGRATIONS:
            con.executescript(f.read_text())
        con.close()
        return str(path)
    server = request.getfixturevalue("pg")
    return server.create_database(f"d{next(_names)}", template="schema_tpl")


def add_user(con, uid, name, active=1):
    return con.execute("INSERT INTO users (uuid, username, password, is_active, created_at) "
                       "VALUES (?, ?, 'x', ?, 1000)", (uid, name, active))


def test_execute_rows_and_value_types(db):
    with dbsql.connect(db) as con:
        assert con.backend == ("postgres" if dbsql.is_postgres(db) else "sqlite")
        assert add_user(con, "u1", "alice").rowcount == 1
        add_user(con, "u2", "bob", 0)
        con.execute("INSERT INTO teams (uuid, name, created_at) VALUES (?1, ?2, ?3)", ("t1", "red", 5))
        con.execute("INSERT INTO api_tokens (jti, digest, user_uuid, team_uuid, kid, name, issued_at, "
                    "updated_at, expires_at) VALUES (?, ?, 'u1', 't1', 'k', NULL, 1, 1, 9)",
                    ("j1", b"\x00\xff" * 16))
        assert con.rows("SELECT username, is_active, last_login FROM users ORDER BY username") == [
            {"username": "alice", "is_active": 1, "last_login": None},
            {"username": "bob", "is_active": 0, "last_login": None}]
        digest = con.execute("SELECT digest FROM api_tokens WHERE jti = ?", ("j1",)).fetchone()[0]
        assert type(digest) is bytes and digest == b"\x00\xff" * 16
        assert con.execute("SELECT EXISTS (SELECT 1 FROM users WHERE username = ?)",
                           ("alice",)).fetchone() == (1,)
        assert con.execute("SELECT count(*) FROM users WHERE username LIKE '%o%' AND uuid <> ?",
                           ("zz",)).fetchone() == (1,)
        assert con.execute("SELECT uuid FROM users WHERE username = ?", ("nobody",)).fetchone() is None
        assert con.execute("SELECT '100%', 7 % 4").fetchone() == ("100%", 3), "% without parameters"
        assert [r for r in con.execute("SELECT uuid FROM users ORDER BY uuid")] == [("u1",), ("u2",)]
        assert con.execute("SELECT uuid AS id FROM users").columns == ["id"]
        assert con.execute("UPDATE users SET last_login = ?2 WHERE uuid = ?1", ("u1", 77)).rowcount == 1
    assert dbsql.rows(db, "SELECT last_login FROM users WHERE uuid = ?", ("u1",)) == [{"last_login": 77}]


def test_autocommit_and_transactions(db):
    writer, reader = dbsql.connect(db), dbsql.connect(db)
    try:
        add_user(writer, "u1", "alice")
        assert len(reader.rows("SELECT * FROM users")) == 1, "a statement outside transaction() commits"
        with pytest.raises(ZeroDivisionError):
            with writer.transaction():
                add_user(writer, "u2", "bob")
                1 / 0
        assert len(reader.rows("SELECT * FROM users")) == 1, "an exception rolls back"
        with writer.transaction():
            add_user(writer, "u3", "carol")
            assert len(reader.rows("SELECT * FROM users")) == 1, "not visible before COMMIT"
        assert len(reader.rows("SELECT * FROM users")) == 2
        with writer.transaction():
            add_user(writer, "u4", "dave")
            writer.commit()
        with writer.transaction():
            add_user(writer, "u5", "eve")
            writer.rollback()
        assert sorted(r["uuid"] for r in reader.rows("SELECT uuid FROM users")) == ["u1", "u3", "u4"]
        writer.commit()  # nothing open: a no-op, as code written for sqlite3 expects
        with writer.transaction():
            with pytest.raises(RuntimeError):
                with writer.transaction():
                    pass
    finally:
        writer.close()
        reader.close()


def test_readonly_refuses_writes(db):
    with dbsql.connect(db, readonly=True) as con:
        assert con.rows("SELECT count(*) AS n FROM users") == [{"n": 0}]
        with pytest.raises(Exception) as e:
            add_user(con, "u1", "alice")
        assert "read" in str(e.value).lower()


def test_foreign_keys_cascade_on_both(db):
    with dbsql.connect(db) as con:
        add_user(con, "u1", "alice")
        con.execute("INSERT INTO sessions (id, user_uuid, created_at) VALUES ('s', 'u1', 1)")
        con.execute("DELETE FROM users WHERE uuid = 'u1'")
        assert con.rows("SELECT * FROM sessions") == []
        with pytest.raises(Exception):
            con.execute("INSERT INTO sessions (id, user_uuid, created_at) VALUES ('s', 'nouser', 1)")


def test_script_runs_several_statements_in_a_transaction(db):
    with dbsql.connect(db) as con:
        with pytest.raises(Exception):
            with con.transaction():
                con.script("CREATE TABLE extra (x INTEGER);\n-- a comment; with a semicolon\n"
                           "INSERT INTO extra VALUES (1);\nINSERT INTO nosuch VALUES (1);\n")
        with pytest.raises(Exception):
            con.execute("SELECT * FROM extra")
        con.script("CREATE TABLE extra (x INTEGER);\nINSERT INTO extra VALUES (1);\n-- the end\n")
        assert con.rows("SELECT x FROM extra") == [{"x": 1}]


def test_keyword_conninfo(pg):
    name = f"k{next(_names)}"
    pg.create_database(name)
    with dbsql.connect(pg.dsn(name)) as con:
        assert con.backend == "postgres"
        assert con.execute("SELECT current_database()").fetchone() == (name,)
