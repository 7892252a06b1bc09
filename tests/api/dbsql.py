# SPDX-License-Identifier: MIT
"""One DB-API face for the black-box tests' look into the store, SQLite or
PostgreSQL, so a test reads and writes rows the same way on both backends.

    con = dbsql.connect(db)          # db: a SQLite path, or a postgresql:// URL
    con.execute("SELECT * FROM users WHERE username = ?", ("alice",)).fetchall()
    con.rows("SELECT ...", params)   # [{column: value}, ...]
    with con.transaction():          # BEGIN ... COMMIT (ROLLBACK on an exception)
        con.execute(...)
    con.close()                      # or: with dbsql.connect(db) as con: ...
    dbsql.rows(db, sql, params)      # connect, read, close (conftest.db_rows)

The SQL is SQLite's placeholder style on both: `?` (positional) or `?N`
(numbered, as in src/store). For psycopg2 they become `%s` / `%(pN)s`
(outside string literals, quoted identifiers, comments and dollar quotes),
and a literal `%` becomes `%%`. The statements themselves must be valid on
the backend used; this module does not translate dialects.

Autocommit on both backends: each statement commits by itself unless it
runs inside transaction(). commit() commits such a transaction, else does
nothing (code written for sqlite3 keeps working). Values come back the same
on both: bytes for BLOB/BYTEA (psycopg2 gives memoryview), int for a
boolean (SQLite has no booleans: a comparison or EXISTS is 0/1). SQLite
connections enforce foreign keys, as the server's do; `readonly=True` opens
the database read-only (SQLite mode=ro; PostgreSQL read-only transactions).
`timeout` (seconds) bounds a wait for a lock (SQLite's busy timeout,
PostgreSQL's lock_timeout) and, six times over, a PostgreSQL statement: a
hang fails the test instead of stalling the run.
"""

import contextlib
import sqlite3

PG_PREFIXES = ("postgresql://", "postgres://")


def is_postgres(db):
    """A postgresql:// URL or a keyword conninfo ("host=/tmp/x dbname=t");
    anything else is a SQLite path."""
    s = str(db)
    return s.startswith(PG_PREFIXES) or any(
        w.startswith(("host=", "dbname=", "user=")) for w in s.split())


def translate(sql):
    """SQLite-style placeholders to psycopg2's pyformat: returns (sql, style)
    where style is None (no placeholder), "qmark" (`?`) or "numeric" (`?N`).
    A statement that mixes the two is refused (ValueError)."""
    out = []
    style = None
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in ("'", '"'):
            j = i + 1
            while j < n:
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:  # '' or "" inside
                        j += 2
                        continue
                    break
                j += 1
            out.append(sql[i:j + 1].replace("%", "%%"))
            i = j + 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(sql[i:j].replace("%", "%%"))
            i = j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(sql[i:j].replace("%", "%%"))
            i = j
        elif c == "$" and (i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] == "_")):
            # $tag$ ... $tag$ (PostgreSQL dollar quoting); $1 is not one
            j = i + 1
            while j < n and (sql[j].isalnum() or sql[j] == "_"):
                j += 1
            if j < n and sql[j] == "$" and not sql[i + 1:j].isdigit():
                tag = sql[i:j + 1]
                end = sql.find(tag, j + 1)
                end = n if end < 0 else end + len(tag)
                out.append(sql[i:end].replace("%", "%%"))
                i = end
            else:
                out.append(c)
                i += 1
        elif c == "?":
            j = i + 1
            while j < n and sql[j].isdigit():
                j += 1
            kind = "numeric" if j > i + 1 else "qmark"
            if style not in (None, kind):
                raise ValueError(f"dbsql: both ? and ?N placeholders in {sql!r}")
            style = kind
            out.append(f"%(p{sql[i + 1:j]})s" if kind == "numeric" else "%s")
            i = j
        elif c == "%":
            out.append("%%")
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out), style


def _norm(v):
    if isinstance(v, memoryview):
        return v.tobytes()
    if isinstance(v, bool):
        return int(v)
    return v


class Cursor:
    """A DB-API cursor whose rows are tuples of normalised values."""

    def __init__(self, cur):
        self._cur = cur

    @property
    def rowcount(self):
        return self._cur.rowcount

    @property
    def description(self):
        return self._cur.description

    @property
    def columns(self):
        return [d[0] for d in self._cur.description or ()]

    def fetchone(self):
        r = self._cur.fetchone()
        return None if r is None else tuple(_norm(v) for v in r)

    def fetchall(self):
        return [tuple(_norm(v) for v in r) for r in self._cur.fetchall()]

    def __iter__(self):
        while True:
            r = self.fetchone()
            if r is None:
                return
            yield r

    def close(self):
        self._cur.close()


class Connection:
    def __init__(self, db, readonly=False, timeout=10):
        self.db = str(db)
        self.backend = "postgres" if is_postgres(db) else "sqlite"
        self._in_tx = False
        if self.backend == "postgres":
            import psycopg2
            opts = f"-c statement_timeout={int(timeout * 1000) * 6} -c lock_timeout={int(timeout * 1000)}"
            if readonly:
                opts += " -c default_transaction_read_only=on"
            self._con = psycopg2.connect(self.db, options=opts, connect_timeout=int(timeout))
            self._con.autocommit = True
        else:
            uri = f"file:{self.db}?mode=ro" if readonly else f"file:{self.db}"
            self._con = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
            self._con.execute("PRAGMA foreign_keys = ON")

    def execute(self, sql, params=()):
        """Run one statement with `?`/`?N` placeholders; returns a Cursor."""
        if self.backend == "sqlite":
            return Cursor(self._con.execute(sql, tuple(params)))
        text, style = translate(sql)
        if style == "numeric":
            args = {f"p{k + 1}": v for k, v in enumerate(params)}
        else:
            args = tuple(params)
        cur = self._con.cursor()
        cur.execute(text, args)
        return Cursor(cur)

    def rows(self, sql, params=()):
        """All rows of a query as dicts, column name -> value."""
        cur = self.execute(sql, params)
        cols = cur.columns
        return [dict(zip(cols, r)) for r in cur.fetchall()]

    def script(self, sql):
        """Run several statements without parameters (a migration file),
        in the current transaction if any."""
        if self.backend == "sqlite":
            # executescript would COMMIT first; split on complete statements
            buf = ""
            for line in sql.splitlines(keepends=True):
                buf += line
                if sqlite3.complete_statement(buf):
                    self._con.execute(buf)
                    buf = ""
            if any(ln.strip() and not ln.strip().startswith("--") for ln in buf.splitlines()):
                self._con.execute(buf)  # an incomplete last statement: SQLite says why
        else:
            with self._con.cursor() as cur:
                cur.execute(sql)

    @contextlib.contextmanager
    def transaction(self):
        """BEGIN; COMMIT at the end, ROLLBACK on an exception (unless the
        block already ended it with commit() or rollback())."""
        if self._in_tx:
            raise RuntimeError("dbsql: transactions do not nest")
        self._raw("BEGIN")
        self._in_tx = True
        try:
            yield self
        except BaseException:
            self.rollback()
            raise
        self.commit()

    def _raw(self, stmt):
        if self.backend == "sqlite":
            self._con.execute(stmt)
        else:
            with self._con.cursor() as cur:
                cur.execute(stmt)

    def commit(self):
        if self._in_tx:
            self._in_tx = False
            self._raw("COMMIT")

    def rollback(self):
        if self._in_tx:
            self._in_tx = False
            self._raw("ROLLBACK")

    def close(self):
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def connect(db, readonly=False, timeout=10):
    """A Connection to `db`: a SQLite file path, or a PostgreSQL URL
    (postgresql://...) or keyword conninfo (host=... dbname=...)."""
    return Connection(db, readonly=readonly, timeout=timeout)


def rows(db, sql, params=()):
    """connect, read every row as a dict, close: conftest.db_rows for both."""
    with connect(db, readonly=True) as con:
        return con.rows(sql, params)
