# SPDX-License-Identifier: MIT
"""Measures tests/pgtmp.py: initdb, start, stop, and the ways to make a
database with the schema (the black-box suite makes one per test server).

    /usr/bin/python3 tests/pg/bench_pgtmp.py [N]

Prints the median and the worst of N (default 20) of each; not a test.
"""

import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from pgtmp import PgTmp  # noqa: E402

MIGRATIONS = sorted((HERE.parents[1] / "sql" / "postgres").glob("[0-9][0-9][0-9]_*.sql"))


def timed(fn):
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def report(name, samples):
    ms = [s * 1000 for s in samples]
    print(f"{name:44s} median {statistics.median(ms):7.1f} ms   max {max(ms):7.1f} ms   (n={len(ms)})")


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    import psycopg2
    lives = {"initdb": [], "start": [], "stop": []}
    for _ in range(max(3, n // 5)):
        pg = PgTmp()
        pg.start()
        pg.stop()
        for k in lives:
            lives[k].append(pg.timings[k])
    for k, v in lives.items():
        report(f"server {k}", v)

    with PgTmp() as pg:
        pg.create_template("tokend_tpl", MIGRATIONS)
        con = psycopg2.connect(pg.url)
        con.autocommit = True
        cur = con.cursor()
        bodies = [m.read_text() for m in MIGRATIONS]

        def migrate(name):
            c = psycopg2.connect(pg.url_of(name))
            try:
                for b in bodies:  # one transaction per file
                    with c, c.cursor() as k:
                        k.execute(b)
            finally:
                c.close()

        variants = {
            "template0 (WAL_LOG) + 5 migrations":
                lambda i: (cur.execute(f"CREATE DATABASE a{i} TEMPLATE template0"), migrate(f"a{i}")),
            "template0 FILE_COPY + 5 migrations":
                lambda i: (cur.execute(f"CREATE DATABASE b{i} TEMPLATE template0 STRATEGY FILE_COPY"),
                           migrate(f"b{i}")),
            "schema template (WAL_LOG)":
                lambda i: cur.execute(f"CREATE DATABASE c{i} TEMPLATE tokend_tpl"),
            "schema template FILE_COPY":
                lambda i: cur.execute(f"CREATE DATABASE d{i} TEMPLATE tokend_tpl STRATEGY FILE_COPY"),
            "one schema per server in one database":
                lambda i: (cur.execute(f"CREATE SCHEMA e{i}"),),
        }
        for name, fn in variants.items():
            report(name, [timed(lambda: fn(i)) for i in range(n)])
        report("DROP DATABASE (schema template copy)",
               [timed(lambda: cur.execute(f"DROP DATABASE c{i}")) for i in range(n)])
        con.close()


if __name__ == "__main__":
    main()
