"""How to give each run a copy of a MariaDB template: measured, not guessed.

MariaDB has no ``CREATE DATABASE ... TEMPLATE``. The candidates for a run's clone are:

* ``create_all``: build the schema again from the ``MetaData`` (what a template saves);
* ``replay``: what pytest-ctxdb does, ``MySQLBackend.clone_database``: replay the template's
  ``SHOW CREATE TABLE`` statements and copy its rows (works for Alembic-built schemas and
  seed data too, which ``create_all`` cannot reproduce).

Usage: ``python bench/clone/mariadb.py [--url mysql+pymysql://root@127.0.0.1:3306/test]
[--tables 20 200] [--repeat 7]``. Creates and drops databases ``bench_clone_*`` only.
"""

from __future__ import annotations

import argparse
import statistics
import time

from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from pytest_ctxdb.backends import MySQLBackend


def schema(tables: int) -> MetaData:
    metadata = MetaData()
    Table("users", metadata, Column("id", Integer, primary_key=True), Column("name", String(50)))
    for n in range(1, tables):
        Table(
            f"t{n}",
            metadata,
            Column("id", Integer, primary_key=True),
            Column("user_id", ForeignKey("users.id")),
            Column("note", String(100)),
        )
    return metadata


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="mysql+pymysql://root@127.0.0.1:3306/test")
    parser.add_argument("--tables", type=int, nargs="+", default=[20, 200])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    backend = MySQLBackend()
    admin_engine = create_engine(make_url(args.url), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    print("| tables | create_all median ms | replay (pytest-ctxdb) median ms |")
    print("|---:|---:|---:|")
    with admin_engine.connect() as admin:
        for tables in args.tables:
            metadata = schema(tables)
            template = f"bench_clone_tpl_{tables}"
            backend.drop_database(admin, template)
            backend.create_database(admin, template)
            build = create_engine(make_url(args.url).set(database=template), poolclass=NullPool)
            metadata.create_all(build)
            build.dispose()
            timings: dict[str, list[float]] = {"create_all": [], "replay": []}
            for i in range(args.repeat):
                name = f"bench_clone_{tables}_{i}"
                start = time.perf_counter()
                backend.create_database(admin, name)
                engine = create_engine(make_url(args.url).set(database=name), poolclass=NullPool)
                metadata.create_all(engine)
                engine.dispose()
                timings["create_all"].append(time.perf_counter() - start)
                backend.drop_database(admin, name)
                start = time.perf_counter()
                backend.clone_database(admin, template, name, backend.mark(kind="bench"))
                timings["replay"].append(time.perf_counter() - start)
                backend.drop_database(admin, name)
            backend.drop_database(admin, template)
            print(
                f"| {tables} | {statistics.median(timings['create_all']) * 1000:.0f} "
                f"| {statistics.median(timings['replay']) * 1000:.0f} |"
            )
    admin_engine.dispose()


if __name__ == "__main__":
    main()
