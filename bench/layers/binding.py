"""The binding's own per-test cost in one process: a test's transaction on a connection with
no layer against one above a module layer, interleaved rounds, medians.

    python bench/layers/binding.py                       # SQLite in memory
    python bench/layers/binding.py postgresql+psycopg://postgres@127.0.0.1/test

One "test" is what the plugin does per test around a ``SELECT 1`` body: an
``OuterTransaction`` (the outer transaction, or the test savepoint above the layers), a
session joined with ``create_savepoint``, the statement, and the rollback. No pytest: what
is left is the binding's cost and the database round trips.
"""

from __future__ import annotations

import statistics
import sys
import time

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from pytest_ctxdb.binding import (
    LayerCursor,
    LayerScope,
    OuterTransaction,
    ReusedConnection,
    layers_of,
)

ROUNDS = 7
TESTS_PER_ROUND = 500


def make_engine(url: str) -> Engine:
    engine = create_engine(url)
    if url.startswith("sqlite"):  # SQLAlchemy's documented pysqlite SAVEPOINT fix

        @event.listens_for(engine, "connect")
        def connect(dbapi_connection, record):  # type: ignore[no-untyped-def]
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def begin(connection):  # type: ignore[no-untyped-def]
            connection.exec_driver_sql("BEGIN")

    return engine


def one_test(connection: Connection) -> None:
    outer = OuterTransaction(connection)
    session = outer.session()
    session.execute(text("SELECT 1"))
    outer.rollback()


def main(url: str) -> None:
    cursor = LayerCursor()
    plain = ReusedConnection(make_engine(url), cursor).get()
    layered = ReusedConnection(make_engine(url), cursor).get()
    scope = LayerScope("module", "module", "module m", frozenset({"", "module"}))
    cursor.enter(scope, "module_data")
    layers = layers_of(layered)
    assert layers is not None
    layers.begin()
    with Session(bind=layered, join_transaction_mode="create_savepoint") as session:
        session.execute(text("SELECT 1"))  # opens the module's layer
        session.commit()
    cursor.leave()
    assert [layer.scope for layer in layers.layers] == [scope]
    for connection in (plain, layered):  # warm-up
        for _ in range(200):
            one_test(connection)
    samples: dict[str, list[tuple[float, float]]] = {"no layer": [], "in a layer": []}
    for _ in range(ROUNDS):
        for name, connection in (("no layer", plain), ("in a layer", layered)):
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(TESTS_PER_ROUND):
                one_test(connection)
            samples[name].append(
                (
                    (time.process_time() - cpu) / TESTS_PER_ROUND * 1e6,
                    (time.perf_counter() - wall) / TESTS_PER_ROUND * 1e6,
                )
            )
    for name, values in samples.items():
        cpu_us = statistics.median(v[0] for v in values)
        wall_us = statistics.median(v[1] for v in values)
        print(f"{name:>10}: {cpu_us:6.0f} us CPU, {wall_us:6.0f} us wall per test (medians)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "sqlite://")
