"""How long does emptying a test database take after a test that really committed?

This is a benchmark, not a test. It compares the ways of emptying every table of a test
database (what ``transaction=True`` has to do after each test) on SQLite, PostgreSQL and
MariaDB / MySQL, for a schema of ``--tables`` tables (default: 20 and 100), and prints a
markdown table of the median and 90th percentile in milliseconds. See README.md next to it.

Every measurement:

1. seeds a few rows into 5 of the tables (``users``, ``orders``, ``items`` and two filler
   tables), the way a test would, and commits (not timed);
2. times, with ``time.perf_counter``, one strategy: from ``BEGIN`` to ``COMMIT`` included,
   on a connection that stays open for the whole run (as a test session's would);
3. checks (not timed) that every table is empty, then that the next insert into *every*
   table gets id 1 for the strategies that claim to reset ids, and that the next id into
   ``users`` is *not* 1 for the ones that do not (which shows that the reset strategies do
   real work); the rows of that check are removed with the same strategy, and the tables
   checked empty again. A failed check raises ``AssertionError``: a broken strategy
   cannot be measured silently.

Strategies are interleaved (one round = every strategy once, the order rotating from
round to round) so that a slow drift of the server does not favour one of them; the first
``--warmup`` rounds are not recorded.

Usage::

    /work/venv/bin/python bench/flush/run.py                    # everything
    /work/venv/bin/python bench/flush/run.py --backends postgresql --tables 20 --reps 50

The PostgreSQL and MariaDB databases (``bench_flush`` by default) are created from an
AUTOCOMMIT connection to the admin URL and dropped at the end; the script refuses to
start if the database already exists unless ``--replace`` is given. SQLite uses a file in
a temporary directory.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url

DEFAULT_PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_MYSQL_ADMIN = "mysql+pymysql://root@127.0.0.1:3306/"
DEFAULT_DBNAME = "bench_flush"

SEEDED = ("users", "orders", "items", "filler_000", "filler_001")


# --------------------------------------------------------------------------------------
# schema
# --------------------------------------------------------------------------------------


def build_metadata(n_tables: int) -> sa.MetaData:
    """``users`` <- ``orders`` <- ``items`` plus ``n_tables - 3`` filler tables.

    Fillers reference ``users`` (most of them), ``orders``, or an earlier filler (which
    makes a tree a few levels deep). Every table has an autoincrement integer primary key
    (SERIAL on PostgreSQL, AUTO_INCREMENT on MariaDB, AUTOINCREMENT on SQLite so that the
    counter survives a DELETE there too and resetting it means something).
    """
    if n_tables < 5:
        raise SystemExit("--tables must be at least 5")
    md = sa.MetaData()
    kw: dict[str, Any] = {"sqlite_autoincrement": True, "mysql_engine": "InnoDB"}

    def common() -> list[sa.Column[Any]]:
        return [
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("name", sa.String(100), nullable=False),
            sa.Column("amount", sa.Integer, nullable=False, server_default="0"),
            sa.Column("note", sa.Text, nullable=True),
        ]

    def fk(parent: str) -> sa.Column[Any]:
        return sa.Column(
            f"{parent}_id", sa.Integer, sa.ForeignKey(f"{parent}.id"), nullable=False, index=True
        )

    sa.Table("users", md, *common(), **kw)
    sa.Table("orders", md, *common(), fk("users"), **kw)
    sa.Table("items", md, *common(), fk("orders"), **kw)
    for i in range(n_tables - 3):
        if i == 0:
            parent = "users"
        elif i == 1:
            parent = "orders"
        elif i % 5 == 2:
            parent = f"filler_{i - 2:03d}"
        elif i % 5 == 3:
            parent = "orders"
        else:
            parent = "users"
        sa.Table(f"filler_{i:03d}", md, *common(), fk(parent), **kw)
    assert len(md.tables) == n_tables
    return md


def parent_of(table: sa.Table) -> str | None:
    fks = list(table.foreign_keys)
    return fks[0].column.table.name if fks else None


def seed(conn: Connection, md: sa.MetaData) -> None:
    """What a test would leave behind: a handful of rows in 5 tables, committed."""
    t = md.tables
    with conn.begin():
        uids = [
            conn.execute(t["users"].insert().values(name=f"user{k}")).inserted_primary_key[0]
            for k in range(3)
        ]
        oids = [
            conn.execute(
                t["orders"].insert().values(name=f"order{k}", users_id=uids[k % 3])
            ).inserted_primary_key[0]
            for k in range(4)
        ]
        conn.execute(
            t["items"].insert(), [{"name": f"item{k}", "orders_id": oids[k % 4]} for k in range(6)]
        )
        conn.execute(
            t["filler_000"].insert(), [{"name": f"f{k}", "users_id": uids[k]} for k in range(2)]
        )
        conn.execute(
            t["filler_001"].insert(), [{"name": f"f{k}", "orders_id": oids[k]} for k in range(2)]
        )


# --------------------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------------------


@dataclass
class Ctx:
    tables: list[str]  # quoted names, parents first (metadata.sorted_tables)


@dataclass
class Strategy:
    name: str
    resets_ids: bool
    run: Callable[[Connection, Ctx], None]  # runs inside conn.begin()


def _delete_reverse(conn: Connection, ctx: Ctx) -> None:
    for name in reversed(ctx.tables):
        conn.exec_driver_sql(f"DELETE FROM {name}")


# -- PostgreSQL ------------------------------------------------------------------------

_PG_SEQUENCES = (
    "SELECT schemaname, sequencename FROM pg_sequences WHERE schemaname = current_schema()"
)


def _pg_alter_sequences(conn: Connection, ctx: Ctx) -> None:
    # What pytest_ctxdb.backends.postgresql.reset_sequences does: list, then one ALTER each.
    quote = conn.dialect.identifier_preparer.quote_identifier
    for schema, name in conn.exec_driver_sql(_PG_SEQUENCES).all():
        conn.exec_driver_sql(f"ALTER SEQUENCE {quote(schema)}.{quote(name)} RESTART")


def _pg_setval_sequences(conn: Connection, ctx: Ctx) -> None:
    # One round trip for every sequence of the schema.
    conn.execute(
        sa.text(
            "SELECT count(setval(format('%I.%I', schemaname, sequencename)::regclass, 1, false)) "
            "FROM pg_sequences WHERE schemaname = current_schema()"
        )
    )


def pg_strategies() -> list[Strategy]:
    def truncate(suffix: str) -> Callable[[Connection, Ctx], None]:
        def run(conn: Connection, ctx: Ctx) -> None:
            conn.exec_driver_sql(f"TRUNCATE {', '.join(ctx.tables)}{suffix}")

        return run

    def delete_alter(conn: Connection, ctx: Ctx) -> None:
        _delete_reverse(conn, ctx)
        _pg_alter_sequences(conn, ctx)

    def delete_setval(conn: Connection, ctx: Ctx) -> None:
        _delete_reverse(conn, ctx)
        _pg_setval_sequences(conn, ctx)

    return [
        Strategy("DELETE each (reverse FK order)", False, _delete_reverse),
        Strategy("DELETE each + ALTER SEQUENCE RESTART each", True, delete_alter),
        Strategy("DELETE each + one SELECT setval(...) for all", True, delete_setval),
        Strategy("TRUNCATE all CASCADE", False, truncate(" CASCADE")),
        Strategy(
            "TRUNCATE all RESTART IDENTITY CASCADE", True, truncate(" RESTART IDENTITY CASCADE")
        ),
    ]


# -- MariaDB / MySQL -------------------------------------------------------------------


def _fk_off(body: Callable[[Connection, Ctx], None]) -> Callable[[Connection, Ctx], None]:
    def run(conn: Connection, ctx: Ctx) -> None:
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 0")
        try:
            body(conn, ctx)
        finally:
            conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 1")

    return run


def mysql_strategies() -> list[Strategy]:
    def delete_any_order(conn: Connection, ctx: Ctx) -> None:
        for name in ctx.tables:  # parents first: only possible with the checks off
            conn.exec_driver_sql(f"DELETE FROM {name}")

    def alter_auto_increment(conn: Connection, ctx: Ctx) -> None:
        for name in ctx.tables:
            conn.exec_driver_sql(f"ALTER TABLE {name} AUTO_INCREMENT = 1")

    def delete_reset(conn: Connection, ctx: Ctx) -> None:
        delete_any_order(conn, ctx)
        alter_auto_increment(conn, ctx)

    def delete_reset_used(conn: Connection, ctx: Ctx) -> None:
        # Not in the brief: only the tables whose counter moved (information_schema reads
        # the live InnoDB counter on MariaDB; the id check below would catch a stale one).
        delete_any_order(conn, ctx)
        quote = conn.dialect.identifier_preparer.quote_identifier
        used = (
            conn.exec_driver_sql(
                "SELECT TABLE_NAME FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = DATABASE() AND AUTO_INCREMENT > 1"
            )
            .scalars()
            .all()
        )
        for name in used:
            conn.exec_driver_sql(f"ALTER TABLE {quote(name)} AUTO_INCREMENT = 1")

    def truncate_each(conn: Connection, ctx: Ctx) -> None:
        for name in ctx.tables:
            conn.exec_driver_sql(f"TRUNCATE TABLE {name}")

    return [
        Strategy("DELETE each, FOREIGN_KEY_CHECKS=0", False, _fk_off(delete_any_order)),
        Strategy(
            "DELETE each + ALTER TABLE AUTO_INCREMENT=1 each, FOREIGN_KEY_CHECKS=0",
            True,
            _fk_off(delete_reset),
        ),
        Strategy(
            "DELETE each + ALTER TABLE AUTO_INCREMENT=1 only where > 1, FOREIGN_KEY_CHECKS=0",
            True,
            _fk_off(delete_reset_used),
        ),
        Strategy("TRUNCATE TABLE each, FOREIGN_KEY_CHECKS=0", True, _fk_off(truncate_each)),
    ]


# -- SQLite ------------------------------------------------------------------------------


def sqlite_strategies() -> list[Strategy]:
    def delete_reset(conn: Connection, ctx: Ctx) -> None:
        _delete_reverse(conn, ctx)
        conn.exec_driver_sql("DELETE FROM sqlite_sequence")

    return [
        Strategy("DELETE each (reverse FK order)", False, _delete_reverse),
        Strategy("DELETE each + DELETE FROM sqlite_sequence", True, delete_reset),
    ]


def sqlite_engine(path: Path) -> Engine:
    """pytest-ctxdb's SQLite setup: driver transactions off, BEGIN from SQLAlchemy, FKs on."""
    engine = sa.create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


# --------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------


def assert_empty(conn: Connection, ctx: Ctx, strategy: Strategy) -> None:
    sql = " UNION ALL ".join(
        f"SELECT '{i}', COUNT(*) FROM {name}" for i, name in enumerate(ctx.tables)
    )
    with conn.begin():
        rows = conn.exec_driver_sql(sql).all()
    left = {ctx.tables[int(i)]: n for i, n in rows if n}
    assert not left, f"{strategy.name}: rows left behind: {left}"


def check_ids(conn: Connection, md: sa.MetaData, ctx: Ctx, strategy: Strategy) -> None:
    """Insert once and look at the ids; then empty again with the same strategy."""
    with conn.begin():
        if strategy.resets_ids:
            ids: dict[str, int] = {}
            for table in md.sorted_tables:  # parents first; every parent row has id 1
                parent = parent_of(table)
                values: dict[str, Any] = {"name": "check"}
                if parent is not None:
                    values[f"{parent}_id"] = ids[parent]
                result = conn.execute(table.insert().values(values))
                ids[table.name] = result.inserted_primary_key[0]
            wrong = {name: i for name, i in ids.items() if i != 1}
            assert not wrong, f"{strategy.name}: next id is not 1 for {wrong}"
        else:
            new_id = conn.execute(
                md.tables["users"].insert().values(name="check")
            ).inserted_primary_key[0]
            assert new_id != 1, (
                f"{strategy.name}: claims not to reset ids but users restarted at 1 "
                "(the reset variants would then prove nothing)"
            )
    with conn.begin():
        strategy.run(conn, ctx)
    assert_empty(conn, ctx, strategy)


# --------------------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------------------


@dataclass
class Row:
    backend: str
    tables: int
    strategy: str
    median_ms: float
    p90_ms: float


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]  # nearest rank


def measure(
    backend: str,
    engine: Engine,
    n_tables: int,
    strategies: list[Strategy],
    reps: int,
    warmup: int,
) -> list[Row]:
    md = build_metadata(n_tables)
    md.drop_all(engine)
    md.create_all(engine)
    times: dict[str, list[float]] = {s.name: [] for s in strategies}
    with engine.connect() as conn:
        quote = conn.dialect.identifier_preparer.quote_identifier
        ctx = Ctx(tables=[quote(t.name) for t in md.sorted_tables])
        for rnd in range(warmup + reps):
            k = rnd % len(strategies)
            for strategy in strategies[k:] + strategies[:k]:
                seed(conn, md)
                t0 = time.perf_counter()
                with conn.begin():
                    strategy.run(conn, ctx)
                elapsed = time.perf_counter() - t0
                assert_empty(conn, ctx, strategy)
                check_ids(conn, md, ctx, strategy)
                if rnd >= warmup:
                    times[strategy.name].append(elapsed * 1000.0)
    md.drop_all(engine)
    return [
        Row(backend, n_tables, s.name, statistics.median(times[s.name]), p90(times[s.name]))
        for s in strategies
    ]


# --------------------------------------------------------------------------------------
# backends
# --------------------------------------------------------------------------------------


def run_sqlite(args: argparse.Namespace, versions: dict[str, str]) -> list[Row]:
    import sqlite3

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench_flush_") as tmp:
        engine = sqlite_engine(Path(tmp) / "bench_flush.sqlite3")
        try:
            with engine.connect() as conn:
                mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
                sync = conn.exec_driver_sql("PRAGMA synchronous").scalar()
            versions["SQLite"] = (
                f"{sqlite3.sqlite_version} (file in {tempfile.gettempdir()}, "
                f"journal_mode={mode}, synchronous={sync})"
            )
            for n in args.tables:
                rows += measure("SQLite", engine, n, sqlite_strategies(), args.reps, args.warmup)
        finally:
            engine.dispose()
    return rows


def _server_run(
    label: str,
    admin_url: str,
    args: argparse.Namespace,
    versions: dict[str, str],
    strategies: list[Strategy],
    exists_sql: str,
    create_sql: str,
) -> list[Row]:
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = args.dbname
    try:
        with admin.connect() as conn:
            versions[label] = str(conn.exec_driver_sql("SELECT version()").scalar())
            quoted = conn.dialect.identifier_preparer.quote_identifier(name)
            if conn.execute(sa.text(exists_sql), {"name": name}).first():
                if not args.replace:
                    raise SystemExit(
                        f"{label}: database {name!r} already exists; "
                        "pass --replace to drop it, or --dbname"
                    )
                conn.exec_driver_sql(f"DROP DATABASE {quoted}")
            conn.exec_driver_sql(create_sql.format(quoted))
        engine = sa.create_engine(make_url(admin_url).set(database=name))
        try:
            rows: list[Row] = []
            for n in args.tables:
                rows += measure(label, engine, n, strategies, args.reps, args.warmup)
            return rows
        finally:
            engine.dispose()
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted}")
    finally:
        admin.dispose()


def run_postgresql(args: argparse.Namespace, versions: dict[str, str]) -> list[Row]:
    return _server_run(
        "PostgreSQL",
        args.pg_admin_url,
        args,
        versions,
        pg_strategies(),
        "SELECT 1 FROM pg_database WHERE datname = :name",
        "CREATE DATABASE {}",
    )


def run_mysql(args: argparse.Namespace, versions: dict[str, str]) -> list[Row]:
    return _server_run(
        "MariaDB",
        args.mysql_admin_url,
        args,
        versions,
        mysql_strategies(),
        "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :name",
        "CREATE DATABASE {}",
    )


RUNNERS = {"sqlite": run_sqlite, "postgresql": run_postgresql, "mysql": run_mysql}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backends", nargs="+", choices=sorted(RUNNERS), default=["sqlite", "postgresql", "mysql"]
    )
    parser.add_argument("--tables", nargs="+", type=int, default=[20, 100])
    parser.add_argument("--reps", type=int, default=30, help="recorded rounds (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="unrecorded rounds (default 5)")
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG_ADMIN)
    parser.add_argument("--mysql-admin-url", default=DEFAULT_MYSQL_ADMIN)
    parser.add_argument("--dbname", default=DEFAULT_DBNAME)
    parser.add_argument(
        "--replace", action="store_true", help="drop --dbname first if it already exists"
    )
    args = parser.parse_args(argv)

    import psycopg
    import pymysql

    versions: dict[str, str] = {
        "Python": sys.version.split()[0],
        "platform": platform.platform(),
        "SQLAlchemy": sa.__version__,
        "psycopg": psycopg.__version__,
        "PyMySQL": pymysql.__version__,
    }
    load_start = os.getloadavg()
    rows: list[Row] = []
    for backend in args.backends:
        print(f"running {backend} ...", file=sys.stderr, flush=True)
        rows += RUNNERS[backend](args, versions)

    print(
        f"\n{args.reps} recorded rounds after {args.warmup} warm-up rounds; "
        "time = BEGIN .. COMMIT of the strategy, one open connection.\n"
    )
    print("| backend | tables | strategy | median ms | p90 ms |")
    print("|---|---:|---|---:|---:|")
    for r in rows:
        print(f"| {r.backend} | {r.tables} | {r.strategy} | {r.median_ms:.2f} | {r.p90_ms:.2f} |")
    load_end = os.getloadavg()
    versions["load average (1, 5, 15 min) at start / end"] = (
        f"{load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f} / "
        f"{load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f} on {os.cpu_count()} CPUs"
    )
    print("\nVersions:\n")
    for key, value in versions.items():
        print(f"- {key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
