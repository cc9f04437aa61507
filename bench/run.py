"""Per-test overhead of pytest-ctxdb against SQLAlchemy's hand-written recipe.

What is compared
----------------
For every backend (``sqlite``, ``sqlite-async``, ``postgresql``, ``postgresql-async``) and
every test body (``orm``, ``select1``) this script generates, in a temporary directory, one
test suite per *variant* and runs each suite with pytest in a subprocess:

``floor``
    The same test functions with a do-nothing fixture of the same name and bodies that do no
    database work; run with ``-p no:ctxdb``. It is what pytest itself costs per test.
``recipe``
    The fixture users write by hand from SQLAlchemy's documentation, "Joining a Session into
    an External Transaction (such as for test suites)": a session-scoped engine fixture that
    creates its own database (``bench_recipe_<pid>`` on PostgreSQL, a temporary file on
    SQLite) and ``create_all``s the schema, and a function fixture::

        with engine.connect() as conn:
            trans = conn.begin()
            session = Session(bind=conn, join_transaction_mode="create_savepoint")
            yield session
            session.close()
            trans.rollback()

    (the ``async with`` twin with ``AsyncSession`` for the async backends). On SQLite it
    carries SQLAlchemy's documented pysqlite SAVEPOINT fix (``isolation_level = None`` on
    connect, ``BEGIN`` from the ``begin`` event; on ``AsyncEngine.sync_engine`` for aiosqlite)
    and ``PRAGMA foreign_keys = ON``: without them the recipe does not isolate tests on SQLite.
    Run with ``-p no:ctxdb``.
``ctxdb``
    The same tests using pytest-ctxdb's ``db_session`` / ``async_db_session``; the schema comes
    from ini ``db_metadata = bench_models:Base.metadata`` and, for PostgreSQL, ``--db-url``.
    Run with ``-p ctxdb`` and ``--db-test-name bench_ctxdb_<pid>`` (no clash with other runs
    on the same machine or server). At the end the script removes the template databases and
    files pytest-ctxdb keeps across runs for that name, and the recipe's database.

Every suite uses the same generated models module: ``--tables`` tables (default 20), a
``users`` -> ``orders`` -> ``items`` chain with foreign keys plus filler tables. The ``orm``
body creates a user, an order and two items through the session, commits (as application
code would: with ``create_savepoint`` that releases a SAVEPOINT), then queries them back and
asserts. Every test uses the same (unique) user name, so a fixture that let one test's rows
leak into the next would fail the run: the benchmark also checks isolation. The
``select1`` body only runs ``session.execute(text("SELECT 1"))``, so what is left over the
floor is the fixture's own cost plus one statement.

Async suites run under pytest-asyncio (strict mode) with ``asyncio_default_test_loop_scope``
and ``asyncio_default_fixture_loop_scope`` both ``session`` for floor, recipe and ctxdb alike:
one event loop, so both fixtures may keep connections across tests.

How it is timed
---------------
Start-up (interpreter, imports, collection, creating databases and schemas) is excluded.
The generated ``conftest.py`` carries a tiny timing plugin that records
``time.perf_counter()`` at ``pytest_runtest_logfinish`` of every test, i.e. after the test's
setup, call, teardown and report. The per-test time of one run is::

    (stamp[N-2] - stamp[0]) / (N-2)     # microseconds

The first stamp comes after the first test, so one-time session set-up is left out. The
last test is left out too: its teardown also finalizes the session-scoped fixtures (engine
disposal, and the recipe's ``DROP DATABASE``), a one-time cost that would otherwise be spread
over every test. What remains is N-2 whole steady-state test cycles.

Each suite is run once as a warm-up (bytecode caches, assertion-rewrite caches, OS caches),
then ``--repeat`` times, interleaving the variants (floor, recipe, ctxdb, floor, recipe,
ctxdb, ...) so that slow drifts of the machine hit every variant alike. From the medians::

    overhead(variant) = median(variant) - median(floor)        # us per test
    ratio             = overhead(ctxdb) / overhead(recipe)

A ratio of at most 1.00 means pytest-ctxdb costs no more per test than the hand-written
recipe. ``PYTHONDONTWRITEBYTECODE`` is removed from the environment of the pytest
subprocesses: with it set, pytest cannot cache its rewritten test modules and rewrites their
assertions again on every run.

Wall-clock time on a shared machine moves with whatever else runs on it, so a second table
repeats the computation with ``time.process_time()`` read at the same stamps: the pytest
process's own CPU time per test. It does not see other processes' load, nor the time spent
waiting for the database server (round trips, server-side work), so it isolates the
client-side Python cost of the fixtures. The JSON output also keeps, per run, the median
test-to-test wall-clock gap, which shrugs off short bursts of load.

db_engines (``--db-engines``)
----------------------------
Adds two variants on pytest-ctxdb, with ini ``db_engines`` naming the module-level engines of
a generated app module ``bench_app``: ``engine = create_engine(...)`` and
``SessionLocal = sessionmaker(engine)`` made at import, plus ``async_engine`` /
``AsyncSessionLocal`` on the async backends, on URLs of the app's own database that must
never be connected (a SQLite file in the suite's directory, never created; PostgreSQL
database ``bench_app_never_connected``). The module first imports what a FastAPI app
typically loads (:data:`APP_IMPORTS`), so that the run has ~900 modules in ``sys.modules``.

``engines``
    The ``ctxdb`` tests, unchanged (db_session / async_db_session), with ``db_engines``.
``app``
    The same bodies written through the app's own sessionmaker made at import
    (``with SessionLocal() as session: ...; session.commit()``); the test still requests
    db_session / async_db_session, as its database binding.

In the paired design (the default under ``--db-engines``) all five variants run in one
process; ``bench_app`` is imported by every run. The ini line applies to the whole run, so the
conftest carries a hook that, before each test, hands pytest-ctxdb the adapter list it would
have loaded without ``db_engines`` for the ``ctxdb`` tests (the loaded list minus its
``EngineAdapter``\ s), and the full list for the engines and app tests (the
:data:`ADAPTER_SWITCH` hook, shared with ``--integrations``). It reads pytest-ctxdb's run state
(``pytest_ctxdb.plugin._state.STATE_KEY``), a private name, and fails loudly if the list is
not what the ini line should have made. The separate design (``--design separate``) runs each
variant in its own process; there every suite imports ``bench_app`` and only ``engines`` and
``app`` have the ini line. Reported: ``ratio = overhead(engines) / overhead(ctxdb)``, what
``db_engines`` adds to the same tests, and ``overhead(app) / overhead(engines)``, what
writing through the app's sessionmaker costs against db_session; each also run by run.

Integration adapters (``--integrations``) and the cross-loop check (``--cross-loop``)
------------------------------------------------------------------------------------------
Paired design only. ``--integrations flask,advanced-alchemy,casa`` writes a generated module
``bench_integrations`` into each paired suite, made once at import on URLs of the app's own
database that must never be connected (as for ``bench_app``): a Flask app with
Flask-SQLAlchemy (``db = SQLAlchemy()``, ``db.init_app(flask_app)``; ini
``db_flask_sqlalchemy``) on the sync backends, an advanced-alchemy ``SQLAlchemySyncConfig``
(sync backends) or ``SQLAlchemyAsyncConfig`` (async backends) ``alchemy_config`` (ini
``db_advanced_alchemy``), and a context-async-sqlalchemy ``DBConnect`` ``connect`` on the
async backends (no ini line: its adapter acts once the app imports the library; the conftest
imports ``bench_integrations``). Per integration that runs on the backend, two variants:

``flask`` / ``aa`` / ``casa``
    The ``ctxdb`` tests, unchanged (db_session / async_db_session bodies), with the
    integration's adapter applied.
``flaskown`` / ``aaown`` / ``casaown`` (left out with ``--no-own-session``)
    The same bodies through the integration's own session, adapter applied: ``with
    flask_app.app_context(): session = db.session``; ``with alchemy_config.get_session() as
    session`` (``async with`` on the async backends); ``async with
    new_non_ctx_session(connect) as session``. The test still requests the fixture.

The conftest's :data:`ADAPTER_SWITCH` (the ``--db-engines`` hook, generalized) hands
pytest-ctxdb, before each test, the loaded adapter list without the adapters of every
switched class but the test variant's own: the ``ctxdb`` tests run with none of the
integrations' adapters, each integration's tests with its own only. (In a run without the
integrations the advanced-alchemy and context-async-sqlalchemy adapters are still loaded,
idle; here the ``ctxdb`` tests do not carry them at all, a difference of a few dictionary
look-ups.) Reported: ``overhead(<integration>) / overhead(ctxdb)`` (target at most 1.10) and
``overhead(<integration>own) / overhead(<integration>)``, each also run by run.

``--cross-loop`` adds ``noloop`` on the async backends: the ``ctxdb`` tests with
pytest-ctxdb's event-loop check switched off. The conftest's :data:`LOOP_SWITCH` wraps
``AsyncTestBinding.open_all`` (for every test alike) and, for the ``noloop`` tests, removes the
``LoopGuard`` it installs on the binding and on each connection's savepoint arbiter, so no
check runs. Reported: ``overhead(ctxdb) / overhead(noloop)``, what the check costs.

Usage::

    python bench/run.py                                  # 500 tests, 20 tables, 5 repeats
    python bench/run.py --db-engines --tests 300 --repeat 3   # db_engines against ctxdb
    python bench/run.py --integrations flask,advanced-alchemy,casa --cross-loop \\
        --tests 300 --repeat 3                           # adapters, the event-loop check
    PYTHONPATH=/tmp/rev python bench/run.py              # a pytest_ctxdb copied to /tmp/rev
    python bench/run.py --tests 50 --repeat 1            # smoke run
    python bench/run.py --backends sqlite,postgresql --body select1 --json results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

BACKENDS = ("sqlite", "sqlite-async", "postgresql", "postgresql-async")
BODIES = ("orm", "select1")
VARIANTS = ("floor", "recipe", "ctxdb")
#: added by ``--db-engines``: ``engines`` is ``ctxdb`` with ini ``db_engines`` naming the app's
#: module-level engines (same bodies, on db_session / async_db_session); ``app`` runs with the
#: same ini line but its bodies write through the app's own sessionmaker made at import.
ENGINE_VARIANTS = ("engines", "app")
#: ``--integrations``: the integrations, the kinds of backend each runs on (sync
#: integrations on the sync backends, async ones on the async backends), and their variants
#: (no ``_`` in a variant name: the paired timing plugin splits test names on it):
#: ``<variant>`` is the ``ctxdb`` tests (same db_session / async_db_session bodies) with the
#: integration's adapter applied; ``<variant>own`` the same bodies through the integration's
#: own session (``db.session`` in an app context, ``config.get_session()``,
#: ``new_non_ctx_session(connect)``), with the adapter too.
INTEGRATIONS = {
    # name: (variant, runs on sync backends, runs on async backends, adapter class)
    "flask": ("flask", True, False, "FlaskSQLAlchemyAdapter"),
    "advanced-alchemy": ("aa", True, True, "AdvancedAlchemyAdapter"),
    "casa": ("casa", False, True, "ContextAsyncSQLAlchemyAdapter"),
}
#: how many adapters of each class the paired run must have loaded (checked by its conftest).
ADAPTER_COUNTS = {
    "FlaskSQLAlchemyAdapter": 1,
    "AdvancedAlchemyAdapter": 2,  # one for sync configs, one for async ones (always loaded)
    "ContextAsyncSQLAlchemyAdapter": 1,  # always loaded; a no-op unless the app imports it
}
#: ``--cross-loop``: the ``ctxdb`` tests with pytest-ctxdb's event-loop check switched off
#: (async backends); see :data:`LOOP_SWITCH`.
NOLOOP_VARIANT = "noloop"
#: ``--layers``: the ``ctxdb`` tests with an autouse module-scoped fixture that writes a row
#: through ``db_setup_session`` / ``async_db_setup_session``: every test runs inside its
#: module's layer (separate design only: a layer stays under every test of its module).
LAYER_VARIANT = "layer"
#: the ctxdb-like variants: run on pytest-ctxdb's fixtures (the others run with -p no:ctxdb).
CTXDB_VARIANTS = ("ctxdb", *ENGINE_VARIANTS, LAYER_VARIANT)
#: what the app module imports before making its engines (a FastAPI app's usual load: web
#: framework, validation, settings, stdlib); a module that is not installed is skipped.
APP_IMPORTS = (
    "asyncio",
    "decimal",
    "email.mime.multipart",
    "email.mime.text",
    "email.utils",
    "http.client",
    "json",
    "logging.config",
    "unittest",
    "unittest.mock",
    "uuid",
    "pydantic",
    "pydantic_settings",
    "fastapi",
    "fastapi.security",
    "fastapi.testclient",
    "starlette.middleware.cors",
    "httpx",
    "sqlalchemy.ext.asyncio",
    "sqlalchemy.orm",
)
MEASURES = ("per_test_us", "cpu_us", "median_gap_us")
TESTS_PER_MODULE = 50
# Database names unique to this run, so that two benchmarks (or a benchmark and a test run)
# on one server never drop or reuse each other's databases.
RECIPE_DATABASE = f"bench_recipe_{os.getpid()}"
CTXDB_DATABASE = f"bench_ctxdb_{os.getpid()}"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


# -- the generated suite ---------------------------------------------------------------------


def models_source(tables: int) -> str:
    """The models module: users -> orders -> items, plus filler tables up to ``tables``."""
    if tables < 3:
        raise SystemExit("--tables must be at least 3 (users, orders, items)")
    fillers = []
    for number in range(1, tables - 3 + 1):
        fillers.append(
            textwrap.dedent(
                f"""
                class Filler{number:02d}(Base):
                    __tablename__ = "filler_{number:02d}"
                    id: Mapped[int] = mapped_column(primary_key=True)
                    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
                    label: Mapped[str] = mapped_column(String(100))
                    amount: Mapped[int] = mapped_column(default=0)
                    note: Mapped[str | None] = mapped_column(String(200))
                """
            )
        )
    return textwrap.dedent(
        '''\
        """Benchmark models: a users -> orders -> items chain plus filler tables."""

        from __future__ import annotations

        from sqlalchemy import ForeignKey, String
        from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


        class Base(DeclarativeBase):
            pass


        class User(Base):
            __tablename__ = "users"
            id: Mapped[int] = mapped_column(primary_key=True)
            name: Mapped[str] = mapped_column(String(100), unique=True)
            email: Mapped[str] = mapped_column(String(200))
            orders: Mapped[list[Order]] = relationship(back_populates="user")


        class Order(Base):
            __tablename__ = "orders"
            id: Mapped[int] = mapped_column(primary_key=True)
            user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
            number: Mapped[int]
            user: Mapped[User] = relationship(back_populates="orders")
            items: Mapped[list[Item]] = relationship(back_populates="order")


        class Item(Base):
            __tablename__ = "items"
            id: Mapped[int] = mapped_column(primary_key=True)
            order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
            sku: Mapped[str] = mapped_column(String(50))
            quantity: Mapped[int]
            price_cents: Mapped[int]
            order: Mapped[Order] = relationship(back_populates="items")
        '''
    ) + "".join(fillers)


#: bodies written through an app's own session instead of the fixture's: kind -> (sync
#: opener, async opener, imports); an opener's first line opens the block, the others start
#: its body. ``app``: the sessionmaker of ``bench_app`` (``--db-engines``); the others: the
#: integrations of ``bench_integrations`` (``--integrations``).
OWN_SESSIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "app": (
        ("with SessionLocal() as session:",),
        ("async with AsyncSessionLocal() as session:",),
        ("from bench_app import {maker}",),
    ),
    "flask": (
        ("with flask_app.app_context():", "session = db.session"),
        (),
        ("from bench_integrations import db, flask_app",),
    ),
    "aa": (
        ("with alchemy_config.get_session() as session:",),
        ("async with alchemy_config.get_session() as session:",),
        ("from bench_integrations import alchemy_config",),
    ),
    "casa": (
        (),
        ("async with new_non_ctx_session(connect) as session:",),
        (
            "from context_async_sqlalchemy import new_non_ctx_session",
            "from bench_integrations import connect",
        ),
    ),
}


def own_session_kind(variant: str) -> str:
    """The :data:`OWN_SESSIONS` kind a variant's bodies write through (``""``: the fixture's
    session): ``app`` for ``app``, ``flask`` for ``flaskown``, ..."""
    if variant == "app":
        return "app"
    kind = variant[: -len("own")] if variant.endswith("own") else ""
    return kind if kind in OWN_SESSIONS else ""


def test_source(
    index: int,
    body: str,
    is_async: bool,
    floor: bool,
    fixture: str = "",
    suffix: str = "",
    app: bool | str = False,
) -> str:
    """One test function. Every variant requests a fixture of the same name (in the paired
    design each variant has its own ``fixture`` and the test name its ``suffix``). With
    ``app`` (``True`` or ``"app"``) the body runs on a session of the app's own sessionmaker
    (``SessionLocal`` / ``AsyncSessionLocal`` from ``bench_app``) instead of the fixture's
    session, with another :data:`OWN_SESSIONS` kind on that integration's own session; the
    fixture is still requested, as the test's database binding."""
    fixture = fixture or ("async_db_session" if is_async else "db_session")
    a_def = "async def" if is_async else "def"
    aw = "await " if is_async else ""
    own = "app" if app is True else (app or "")
    session = "session" if own else fixture
    if floor:
        lines = [f"assert {fixture} is None"]
    elif body == "select1":
        lines = [f'assert ({aw}{session}.execute(text("SELECT 1"))).scalar_one() == 1']
    else:
        lines = [
            # The same unique user name in every test: if one test's rows leaked into the
            # next, its INSERT would fail, so every run also checks the fixture isolates.
            'user = User(name="bench-user", email="bench-user@example.com")',
            f"order = Order(user=user, number={index})",
            "order.items = [",
            f'    Item(sku="sku-{index}-a", quantity=1, price_cents=100),',
            f'    Item(sku="sku-{index}-b", quantity=2, price_cents=250),',
            "]",
            f"{session}.add(user)",
            f"{aw}{session}.commit()",
            f"found = ({aw}{session}.scalars(",
            "    select(Order)",
            "    .join(Order.user)",
            '    .where(User.name == "bench-user")',
            "    .options(selectinload(Order.items))",
            ")).one()",
            f"assert found.number == {index}",
            "skus = sorted(item.sku for item in found.items)",
            f'assert skus == ["sku-{index}-a", "sku-{index}-b"]',
        ]
    if own:
        opener = OWN_SESSIONS[own][1 if is_async else 0]
        if not opener:
            raise ValueError(f"no {'async' if is_async else 'sync'} {own!r} session")
        lines = [opener[0], *(f"    {line}" for line in (*opener[1:], *lines))]
    body_text = "".join(f"    {line}\n" for line in lines)
    return f"\n\n{a_def} test_{index:04d}{suffix}({fixture}):\n{body_text}"


def module_header(
    body: str, is_async: bool, floor: bool, app: bool = False, own: tuple[str, ...] = ()
) -> str:
    """The imports (and pytest-asyncio marker) every generated test module starts with;
    ``app``: also the app's sessionmaker, for the ``app`` variant's bodies; ``own``: also what
    the bodies of those :data:`OWN_SESSIONS` kinds use."""
    header = ["from __future__ import annotations", ""]
    if is_async:
        header += ["import pytest", ""]
    if not floor:
        if body == "select1":
            header += ["from sqlalchemy import text"]
        else:
            header += [
                "from sqlalchemy import select",
                "from sqlalchemy.orm import selectinload",
                "",
                "from bench_models import Item, Order, User",
            ]
        maker = "AsyncSessionLocal" if is_async else "SessionLocal"
        for kind in dict.fromkeys((*(("app",) if app else ()), *own)):
            header += [line.format(maker=maker) for line in OWN_SESSIONS[kind][2]]
    if is_async:
        header += ["", "pytestmark = pytest.mark.asyncio  # loop scope: ini default (session)"]
    return "\n".join(header) + "\n"


def test_modules(tests: int, body: str, is_async: bool, variant: str) -> dict[str, str]:
    """The separate design's tests for one variant, ``TESTS_PER_MODULE`` to a module."""
    floor, app = variant == "floor", variant == "app"
    modules: dict[str, str] = {}
    for start in range(0, tests, TESTS_PER_MODULE):
        stop = min(start + TESTS_PER_MODULE, tests)
        text = module_header(body, is_async, floor, app)
        text += "".join(
            test_source(i, body, is_async, floor, app=app) for i in range(start, stop)
        )
        modules[f"test_bench_{start // TESTS_PER_MODULE:03d}.py"] = text
    return modules


def paired_test_modules(
    tests: int, body: str, is_async: bool, variants: tuple[str, ...] = VARIANTS
) -> dict[str, str]:
    """The paired design's tests: for each index one test per variant (a floor, a recipe and
    a ctxdb test, plus an engines and an app test with ``--db-engines``, and the
    ``--integrations`` / ``--cross-loop`` variants), in an order rotated
    from index to index (no variant always runs first or after the same one)."""
    fixtures = {"floor": "floor_session", "recipe": "recipe_session"}
    count = len(variants)
    per_module = TESTS_PER_MODULE // count  # indices per module, one test per variant each
    own = tuple(kind for kind in map(own_session_kind, variants) if kind)
    modules: dict[str, str] = {}
    for start in range(0, tests, per_module):
        text = module_header(body, is_async, False, own=own)
        for i in range(start, min(start + per_module, tests)):
            for variant in variants[i % count :] + variants[: i % count]:
                text += test_source(
                    i,
                    body,
                    is_async,
                    variant == "floor",
                    fixtures.get(variant, ""),
                    f"_{variant}",
                    app=own_session_kind(variant),
                )
        modules[f"test_bench_{start // per_module:03d}.py"] = text
    return modules


TIMING_PLUGIN = """\
# -- timing plugin: clocks read after each test's setup+call+teardown+report ---------------
import json as _json
import os as _os
import sys as _sys
import time as _time

_wall = []  # perf_counter(): the measure
_cpu = []  # process_time(): this process's CPU time, a cross-check


def pytest_runtest_logfinish(nodeid, location):
    _wall.append(_time.perf_counter())
    _cpu.append(_time.process_time())


def pytest_sessionfinish(session, exitstatus):
    # The first stamp follows the first test (one-time set-up excluded); the last test is
    # dropped because its teardown also finalizes the session-scoped fixtures.
    n = len(_wall)
    result = {"tests": n, "failed": session.testsfailed, "modules": len(_sys.modules)}
    if n > 2:
        result["per_test_us"] = (_wall[-2] - _wall[0]) / (n - 2) * 1e6
        result["cpu_us"] = (_cpu[-2] - _cpu[0]) / (n - 2) * 1e6
        gaps = sorted(b - a for a, b in zip(_wall[:-2], _wall[1:-1]))
        result["median_gap_us"] = gaps[len(gaps) // 2] * 1e6
    with open(_os.environ["BENCH_TIMING_FILE"], "w") as f:
        _json.dump(result, f)
"""

PAIRED_TIMING_PLUGIN = """\
# -- timing plugin (paired design): per test, the wall and CPU time from the end of the
# previous test to the end of this one (its setup, call, teardown and report) ---------------
import json as _json
import os as _os
import statistics as _statistics
import sys as _sys
import time as _time

_FIRST = 3  # the number of variants: tests of the first index, left out
_stamps = []  # (nodeid, perf_counter(), process_time())


def pytest_runtest_logfinish(nodeid, location):
    _stamps.append((nodeid, _time.perf_counter(), _time.process_time()))


def pytest_sessionfinish(session, exitstatus):
    # The first index's tests (one of each variant: their session fixtures are set up there)
    # and the last one (its teardown finalizes them) are left out.
    gaps = {}
    for (_, wall0, cpu0), (nodeid, wall, cpu) in zip(
        _stamps[_FIRST - 1 : -2], _stamps[_FIRST:-1]
    ):
        variant = nodeid.rsplit("_", 1)[-1]
        gaps.setdefault(variant, ([], []))
        gaps[variant][0].append((wall - wall0) * 1e6)
        gaps[variant][1].append((cpu - cpu0) * 1e6)
    result = {"tests": len(_stamps), "failed": session.testsfailed, "modules": len(_sys.modules)}
    for variant, (wall, cpu) in gaps.items():
        result[variant] = {
            "median_us": _statistics.median(wall),
            "cpu_median_us": _statistics.median(cpu),
            "mean_us": _statistics.fmean(wall),
        }
    with open(_os.environ["BENCH_TIMING_FILE"], "w") as f:
        _json.dump(result, f)
"""

RECIPE_SYNC_SQLITE = """\
# -- the recipe: SQLAlchemy docs, "Joining a Session into an External Transaction" ---------
import shutil
import tempfile

import pytest
from sqlalchemy import create_engine, event
from sqlalchemy.orm import Session

from bench_models import Base


@pytest.fixture(scope="session")
def engine():
    directory = tempfile.mkdtemp(prefix="bench-recipe-")
    engine = create_engine(f"sqlite:///{directory}/recipe.db")

    # pysqlite SAVEPOINT fix (SQLAlchemy docs, "Serializable isolation / Savepoints /
    # Transactional DDL"), plus foreign keys: without these the recipe does not isolate.
    @event.listens_for(engine, "connect")
    def do_connect(dbapi_connection, connection_record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def do_begin(conn):
        conn.exec_driver_sql("BEGIN")

    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def db_session(engine):
    with engine.connect() as connection:
        trans = connection.begin()
        session = Session(bind=connection, join_transaction_mode="create_savepoint")
        yield session
        session.close()
        trans.rollback()
"""

RECIPE_SYNC_POSTGRESQL = """\
# -- the recipe: SQLAlchemy docs, "Joining a Session into an External Transaction" ---------
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from bench_models import Base

SERVER_URL = make_url(__SERVER_URL__)
DATABASE = __DATABASE__


@pytest.fixture(scope="session")
def engine():
    admin = create_engine(SERVER_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {DATABASE}")
        conn.exec_driver_sql(f"CREATE DATABASE {DATABASE}")
    engine = create_engine(SERVER_URL.set(database=DATABASE))
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {DATABASE}")
    admin.dispose()


@pytest.fixture
def db_session(engine):
    with engine.connect() as connection:
        trans = connection.begin()
        session = Session(bind=connection, join_transaction_mode="create_savepoint")
        yield session
        session.close()
        trans.rollback()
"""

RECIPE_ASYNC_SQLITE = """\
# -- the recipe, async: SQLAlchemy docs, "Joining a Session into an External Transaction" --
import shutil
import tempfile

import pytest_asyncio
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from bench_models import Base


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def engine():
    directory = tempfile.mkdtemp(prefix="bench-recipe-")
    engine = create_async_engine(f"sqlite+aiosqlite:///{directory}/recipe.db")

    # pysqlite SAVEPOINT fix, on the sync engine as the docs show for aiosqlite, plus
    # foreign keys: without these the recipe does not isolate.
    @event.listens_for(engine.sync_engine, "connect")
    def do_connect(dbapi_connection, connection_record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def do_begin(conn):
        conn.exec_driver_sql("BEGIN")

    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield engine
    await engine.dispose()
    shutil.rmtree(directory, ignore_errors=True)


@pytest_asyncio.fixture(loop_scope="session")
async def async_db_session(engine):
    async with engine.connect() as connection:
        trans = await connection.begin()
        session = AsyncSession(bind=connection, join_transaction_mode="create_savepoint")
        yield session
        await session.close()
        await trans.rollback()
"""

RECIPE_ASYNC_POSTGRESQL = """\
# -- the recipe, async: SQLAlchemy docs, "Joining a Session into an External Transaction" --
import pytest_asyncio
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from bench_models import Base

SERVER_URL = make_url(__SERVER_URL__).set(drivername="postgresql+asyncpg")
DATABASE = __DATABASE__


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def engine():
    admin = create_async_engine(SERVER_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {DATABASE}")
        await conn.exec_driver_sql(f"CREATE DATABASE {DATABASE}")
    engine = create_async_engine(SERVER_URL.set(database=DATABASE))
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield engine
    await engine.dispose()
    async with admin.connect() as conn:
        await conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {DATABASE}")
    await admin.dispose()


@pytest_asyncio.fixture(loop_scope="session")
async def async_db_session(engine):
    async with engine.connect() as connection:
        trans = await connection.begin()
        session = AsyncSession(bind=connection, join_transaction_mode="create_savepoint")
        yield session
        await session.close()
        await trans.rollback()
"""

FLOOR_SYNC = """\
# -- floor: a do-nothing fixture of the same name --------------------------------------------
import pytest


@pytest.fixture
def db_session():
    yield None
"""

FLOOR_ASYNC = """\
# -- floor: a do-nothing async fixture of the same name --------------------------------------
import pytest_asyncio


@pytest_asyncio.fixture(loop_scope="session")
async def async_db_session():
    yield None
"""


APP_MODULE = """\
\"\"\"Generated by bench/run.py: the application whose module-level engines ini db_engines binds.

Its engines point at the app's own database, which no test may reach: pytest-ctxdb binds
their connect() to the test connection, so it is never connected (on SQLite the file is
never created). Before them, the import load of a typical FastAPI app.
\"\"\"

import importlib

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

for _name in __IMPORTS__:
    try:
        importlib.import_module(_name)
    except ImportError:  # not installed here: the load is a little lighter
        pass

engine = create_engine(__URL__)
SessionLocal = sessionmaker(engine)
"""

APP_MODULE_ASYNC = """
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

async_engine = create_async_engine(__ASYNC_URL__)
AsyncSessionLocal = async_sessionmaker(async_engine)
"""

ADAPTER_SWITCH = """\
# -- adapters on and off in one process (bench/run.py --db-engines / --integrations, paired) --
# The ini lines (db_engines, db_flask_sqlalchemy, db_advanced_alchemy) and the app's imports
# (context-async-sqlalchemy) apply to the whole run. Before each test, the run's adapter list
# is swapped for the one that test's variant measures: the loaded list minus the adapters of
# every switched class but the variant's own (the ctxdb tests: minus all of them), so each
# variant runs with its own adapter only. Every test pays for this hook alike.
import pytest as _pytest

import pytest_ctxdb.adapters as _adapters
from pytest_ctxdb.plugin._state import STATE_KEY as _STATE_KEY

_SWITCHED = __SWITCHED__  # adapter class -> how many the run must have loaded
_KEEPS = __KEEPS__  # variant -> the switched adapter classes its tests keep
_CLASSES = {name: getattr(_adapters, name) for name in _SWITCHED}
_adapter_lists = {}
_loaded = []


@_pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    state = item.config.stash[_STATE_KEY]
    if not _loaded:
        _loaded.extend(state.adapters())
        counts = {
            name: sum(isinstance(a, cls) for a in _loaded) for name, cls in _CLASSES.items()
        }
        if counts != _SWITCHED:
            raise RuntimeError(f"expected adapters {_SWITCHED}, loaded {counts}: {_loaded}")
    variant = item.name.rsplit("_", 1)[-1]
    adapters = _adapter_lists.get(variant)
    if adapters is None:
        dropped = tuple(
            cls for name, cls in _CLASSES.items() if name not in _KEEPS.get(variant, ())
        )
        adapters = _adapter_lists[variant] = [a for a in _loaded if not isinstance(a, dropped)]
    state._adapters = adapters
"""

LOOP_SWITCH = """\
# -- the event-loop check on and off in one process (bench/run.py --cross-loop, paired) -------
# pytest-ctxdb checks, on an async test connection, that each session and savepoint is used
# from the test's own event loop (binding._arbiter.LoopGuard, installed by
# AsyncTestBinding.open_all on the binding and on each connection's SavepointArbiter). For the
# noloop tests the guard is taken off again right after open_all, so no check runs; every test
# goes through this wrapper alike.
import pytest as _pytest
from pytest_ctxdb.binding._binding import AsyncTestBinding as _AsyncTestBinding
from pytest_ctxdb.binding._outer import arbiter_of as _arbiter_of

_open_all = _AsyncTestBinding.open_all
_loop_guard_off = [False]


async def _open_all_switched(self):
    await _open_all(self)
    if _loop_guard_off[0]:
        self.loop_guard = None
        for alias in self.plan.physical_aliases():
            sync = self.outer(alias).connection.sync_connection
            arbiter = None if sync is None else _arbiter_of(sync)
            if arbiter is None or arbiter.loop_guard is None:
                raise RuntimeError("no loop guard to switch off: pytest-ctxdb changed")
            arbiter.loop_guard = None


_AsyncTestBinding.open_all = _open_all_switched


@_pytest.hookimpl(tryfirst=True)
def pytest_runtest_logstart(nodeid, location):
    _loop_guard_off[0] = nodeid.endswith("_noloop")
"""

INTEGRATIONS_MODULE = """\
\"\"\"Generated by bench/run.py --integrations: an app on the integrations pytest-ctxdb binds.

Every object is made once at import, on URLs of the app's own database, which no test may
reach: pytest-ctxdb binds their engines to the test connection, so it is never connected (on
SQLite the file is never created).
\"\"\"
"""

INTEGRATION_SOURCES = {
    "flask": """
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

flask_app = Flask("bench_integrations")
flask_app.config["SQLALCHEMY_DATABASE_URI"] = __URL__
db = SQLAlchemy()
db.init_app(flask_app)
""",
    "advanced-alchemy": """
from advanced_alchemy.config import __CONFIG__

alchemy_config = __CONFIG__(connection_string=__URL__)
""",
    "casa": """
from context_async_sqlalchemy import DBConnect
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

connect = DBConnect(
    engine_creator=create_async_engine,
    session_maker_creator=lambda engine: async_sessionmaker(engine, expire_on_commit=False),
    host=__URL__,
)
""",
}


def app_urls(backend: str, directory: Path, pg_url: str) -> tuple[str, str]:
    """The URLs (sync, async) of an app's own database, which must never be connected: a
    SQLite file in ``directory`` (never created), or PostgreSQL database
    ``bench_app_never_connected``."""
    from sqlalchemy.engine import make_url

    if backend.startswith("sqlite"):
        return (
            f"sqlite:///{directory / 'bench_app.db'}",
            f"sqlite+aiosqlite:///{directory / 'bench_app.db'}",
        )
    server = make_url(pg_url).set(database="bench_app_never_connected")
    return (
        server.render_as_string(hide_password=False),
        server.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False),
    )


def backend_integrations(backend: str, integrations: list[str]) -> list[str]:
    """The ``integrations`` that run on ``backend`` (sync ones on the sync backends, async ones
    on the async backends)."""
    is_async = backend.endswith("-async")
    return [name for name in integrations if INTEGRATIONS[name][2 if is_async else 1]]


def integrations_source(
    backend: str, directory: Path, pg_url: str, integrations: list[str]
) -> str:
    """The ``bench_integrations`` module for ``backend``: a Flask app with Flask-SQLAlchemy
    (``db = SQLAlchemy()``, ``db.init_app(flask_app)``), an advanced-alchemy
    ``SQLAlchemySyncConfig`` (sync backends) or ``SQLAlchemyAsyncConfig`` (async backends)
    ``alchemy_config``, a context-async-sqlalchemy ``DBConnect`` ``connect``: those of
    ``integrations`` that run on ``backend``."""
    is_async = backend.endswith("-async")
    url = repr(app_urls(backend, directory, pg_url)[1 if is_async else 0])
    config = "SQLAlchemyAsyncConfig" if is_async else "SQLAlchemySyncConfig"
    text = INTEGRATIONS_MODULE
    for name in backend_integrations(backend, integrations):
        text += INTEGRATION_SOURCES[name].replace("__URL__", url).replace("__CONFIG__", config)
    return text


def app_source(backend: str, directory: Path, pg_url: str) -> str:
    """The ``bench_app`` module for ``backend``: a sync engine and ``SessionLocal``, plus an
    ``AsyncEngine`` and ``AsyncSessionLocal`` on the async backends, all made at import, on
    URLs of the app's own database (a SQLite file in ``directory``, a PostgreSQL database
    that need not exist) that pytest-ctxdb must keep them from ever connecting to."""
    url, async_url = app_urls(backend, directory, pg_url)
    text = APP_MODULE.replace("__IMPORTS__", repr(APP_IMPORTS)).replace("__URL__", repr(url))
    if backend.endswith("-async"):
        text += APP_MODULE_ASYNC.replace("__ASYNC_URL__", repr(async_url))
    return text


def app_engine_specs(backend: str) -> list[str]:
    """What ini ``db_engines`` lists for ``backend``: the app's sync engine, and its
    ``AsyncEngine`` on the async backends."""
    specs = ["bench_app:engine"]
    if backend.endswith("-async"):
        specs.append("bench_app:async_engine")
    return specs


def write_app(directory: Path, backend: str, pg_url: str) -> None:
    """Write ``bench_app.py`` into a suite's ``directory``."""
    (directory / "bench_app.py").write_text(app_source(backend, directory, pg_url))


@dataclass(frozen=True)
class Suite:
    backend: str
    body: str
    variant: str
    directory: Path
    args: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.backend}/{self.body}/{self.variant}"


#: the ``layer`` variant's module data (a user no test body uses: the bodies' own user name
#: stays unique).
LAYER_SYNC = """
import pytest

from bench_models import User


@pytest.fixture(scope="module", autouse=True)
def module_layer(db_setup_session):
    db_setup_session.add(User(name="layer-user", email="layer-user@example.com"))
    db_setup_session.commit()
"""

LAYER_ASYNC = """
import pytest_asyncio

from bench_models import User


@pytest_asyncio.fixture(scope="module", autouse=True)
async def module_layer(async_db_setup_session):
    async_db_setup_session.add(User(name="layer-user", email="layer-user@example.com"))
    await async_db_setup_session.commit()
"""


def conftest_source(backend: str, variant: str, pg_url: str, db_engines: bool = False) -> str:
    """The separate design's ``conftest.py`` for one variant; with ``db_engines`` it also
    imports the app module, so that every variant carries the same import load."""
    is_async = backend.endswith("-async")
    if variant in CTXDB_VARIANTS:
        fixtures = "# -- ctxdb: the plugin's own db_session / async_db_session are used\n"
    elif variant == "floor":
        fixtures = FLOOR_ASYNC if is_async else FLOOR_SYNC
    else:
        fixtures = {
            "sqlite": RECIPE_SYNC_SQLITE,
            "sqlite-async": RECIPE_ASYNC_SQLITE,
            "postgresql": RECIPE_SYNC_POSTGRESQL,
            "postgresql-async": RECIPE_ASYNC_POSTGRESQL,
        }[backend]
        fixtures = fixtures.replace("__SERVER_URL__", repr(pg_url))
        fixtures = fixtures.replace("__DATABASE__", repr(RECIPE_DATABASE))
    if variant == LAYER_VARIANT:
        fixtures += LAYER_ASYNC if is_async else LAYER_SYNC
    if db_engines:
        fixtures += "\n\nimport bench_app  # noqa: E402,F401 - the app's imports, in all variants\n"
    return (
        f'"""Generated by bench/run.py ({backend}, {variant})."""\n\n{TIMING_PLUGIN}\n\n{fixtures}'
    )


def integration_of(variant: str) -> str | None:
    """The ``--integrations`` name whose adapter a variant measures (``aa`` and ``aaown``:
    ``advanced-alchemy``), or ``None``."""
    base = variant[: -len("own")] if variant.endswith("own") else variant
    for name, (integration_variant, *_rest) in INTEGRATIONS.items():
        if integration_variant == base:
            return name
    return None


def adapter_switch(backend: str, variants: tuple[str, ...]) -> str:
    """The :data:`ADAPTER_SWITCH` of a paired suite: which adapter classes are switched, and
    which variant keeps which (engines and app: the EngineAdapters; an integration's
    variants: its adapter); ``""`` if no variant needs one."""
    switched: dict[str, int] = {}
    keeps: dict[str, tuple[str, ...]] = {}
    for variant in variants:
        if variant in ENGINE_VARIANTS:
            switched["EngineAdapter"] = len(app_engine_specs(backend))
            keeps[variant] = ("EngineAdapter",)
        integration = integration_of(variant)
        if integration is not None:
            adapter = INTEGRATIONS[integration][3]
            switched[adapter] = ADAPTER_COUNTS[adapter]
            keeps[variant] = (adapter,)
    if not switched:
        return ""
    return ADAPTER_SWITCH.replace("__SWITCHED__", repr(switched)).replace(
        "__KEEPS__", repr(keeps)
    )


def paired_conftest_source(
    backend: str, pg_url: str, variants: tuple[str, ...] = VARIANTS
) -> str:
    """One conftest with the recipe's fixture as ``recipe_session`` (engine
    ``recipe_engine``) and the floor's as ``floor_session``; ctxdb's are the plugin's. With
    the ``--db-engines`` or ``--integrations`` variants, also :data:`ADAPTER_SWITCH` (and the
    import of ``bench_integrations``); with ``--cross-loop``, :data:`LOOP_SWITCH`."""
    is_async = backend.endswith("-async")
    recipe = conftest_source(backend, "recipe", pg_url).split(TIMING_PLUGIN, 1)[1]
    floor = FLOOR_ASYNC if is_async else FLOOR_SYNC
    fixture = "async_db_session" if is_async else "db_session"
    recipe = recipe.replace("def engine():", "def recipe_engine():")
    recipe = recipe.replace(f"def {fixture}(engine):", "def recipe_session(recipe_engine):")
    recipe = recipe.replace("with engine.connect() as connection:", "with recipe_engine.connect() as connection:")
    floor = floor.replace(f"def {fixture}():", "def floor_session():")
    timing = PAIRED_TIMING_PLUGIN.replace("_FIRST = 3", f"_FIRST = {len(variants)}")
    switch = adapter_switch(backend, variants)
    if switch:
        switch = "\n" + switch
    if any(integration_of(v) for v in variants):
        # context-async-sqlalchemy is named by no ini line: the app's import makes its adapter
        # act (the other integrations' objects are imported by their ini lines anyway).
        switch += "\nimport bench_integrations  # noqa: E402,F401 - the app's integrations\n"
    if NOLOOP_VARIANT in variants:
        switch += "\n" + LOOP_SWITCH
    return (
        f'"""Generated by bench/run.py ({backend}, paired)."""\n\n{timing}\n{recipe}\n{floor}'
        f"{switch}"
    )


def write_paired_suite(root: Path, backend: str, body: str, options: argparse.Namespace) -> Suite:
    directory = root / f"{backend}-{body}-paired"
    directory.mkdir(parents=True)
    variants = variants_of(options, backend)
    engines = "engines" in variants
    integrations = backend_integrations(backend, options.integrations)
    # The floor and recipe tests share the process and touch databases without pytest-ctxdb's
    # fixtures (the recipe's admin connection goes to the --db-url database): not blocked.
    ini = ini_source(backend, "engines" if engines else "ctxdb", integrations)
    (directory / "pytest.ini").write_text(ini + "db_block_access = false\n")
    (directory / "conftest.py").write_text(
        paired_conftest_source(backend, options.pg_url, variants)
    )
    (directory / "bench_models.py").write_text(models_source(options.tables))
    if engines:
        write_app(directory, backend, options.pg_url)
    if integrations:
        (directory / "bench_integrations.py").write_text(
            integrations_source(backend, directory, options.pg_url, integrations)
        )
    is_async = backend.endswith("-async")
    for name, text in paired_test_modules(options.tests, body, is_async, variants).items():
        (directory / name).write_text(text)
    args = ["-q", "-p", "no:cacheprovider", "-p", "ctxdb", "--db-test-name", CTXDB_DATABASE]
    if backend.startswith("postgresql"):
        args += ["--db-url", options.pg_url]
    return Suite(backend, body, "paired", directory, tuple(args))


def ini_source(
    backend: str, variant: str, integrations: list[str] | tuple[str, ...] = ()
) -> str:
    """``pytest.ini`` of a suite; the ``engines`` and ``app`` variants list the app's engines
    in ``db_engines``; ``integrations`` (paired design) adds ``db_flask_sqlalchemy`` /
    ``db_advanced_alchemy`` lines naming ``bench_integrations``' objects."""
    lines = ["[pytest]", "pythonpath = .", "asyncio_mode = strict"]
    if backend.endswith("-async"):
        lines += [
            "asyncio_default_test_loop_scope = session",
            "asyncio_default_fixture_loop_scope = session",
        ]
    else:
        lines += ["asyncio_default_fixture_loop_scope = function"]
    if variant in CTXDB_VARIANTS:
        lines += ["db_metadata = bench_models:Base.metadata"]
    if variant in ENGINE_VARIANTS:
        lines += ["db_engines ="] + [f"    {spec}" for spec in app_engine_specs(backend)]
    if "flask" in integrations:
        lines += ["db_flask_sqlalchemy = bench_integrations:db"]
    if "advanced-alchemy" in integrations:
        lines += ["db_advanced_alchemy = bench_integrations:alchemy_config"]
    return "\n".join(lines) + "\n"


def write_suite(
    root: Path, backend: str, body: str, variant: str, options: argparse.Namespace
) -> Suite:
    directory = root / f"{backend}-{body}-{variant}"
    directory.mkdir(parents=True)
    (directory / "pytest.ini").write_text(ini_source(backend, variant))
    (directory / "conftest.py").write_text(
        conftest_source(backend, variant, options.pg_url, options.db_engines)
    )
    (directory / "bench_models.py").write_text(models_source(options.tables))
    if options.db_engines:
        write_app(directory, backend, options.pg_url)
    is_async = backend.endswith("-async")
    for name, text in test_modules(options.tests, body, is_async, variant).items():
        (directory / name).write_text(text)
    args = ["-q", "-p", "no:cacheprovider"]
    if variant in CTXDB_VARIANTS:
        args += ["-p", "ctxdb"]
        # Own test database name: no clash with other pytest runs on this machine or server,
        # and the template databases pytest-ctxdb keeps across runs are known (see cleanup()).
        args += ["--db-test-name", CTXDB_DATABASE]
        if backend.startswith("postgresql"):
            args += ["--db-url", options.pg_url]
    else:
        args += ["-p", "no:ctxdb"]
    return Suite(backend, body, variant, directory, tuple(args))


# -- running -----------------------------------------------------------------------------------


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # let pytest cache its rewritten test modules
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_CTXDB_URL", None)
    env.pop("PYTEST_PLUGINS", None)
    return env


def run_timed(suite: Suite, tests: int, timeout: float) -> dict[str, Any]:
    """Run ``suite`` once with pytest and return what its timing plugin wrote.

    :raises SystemExit: pytest failed, or did not run exactly ``tests`` tests.
    """
    timing = suite.directory / "timing.json"
    timing.unlink(missing_ok=True)
    env = subprocess_env()
    env["BENCH_TIMING_FILE"] = str(timing)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *suite.args],
        check=False,
        cwd=suite.directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    result = json.loads(timing.read_text()) if timing.exists() else None
    if proc.returncode != 0 or result is None or result["tests"] != tests or result["failed"]:
        sys.stderr.write(proc.stdout[-6000:] + proc.stderr[-3000:])
        raise SystemExit(f"{suite.label}: pytest failed (exit {proc.returncode}, timing {result})")
    return result


def run_suite(suite: Suite, tests: int) -> dict[str, float]:
    """Run ``suite`` once; return its per-test times in microseconds: ``per_test_us`` (wall
    clock, the measure), ``cpu_us`` (the pytest process's CPU time) and ``median_gap_us``
    (median test-to-test wall time, robust to bursts of load from other processes); and
    ``modules``, ``len(sys.modules)`` at the end of the run."""
    result = run_timed(suite, tests, timeout=1800)
    return {key: float(result[key]) for key in (*MEASURES, "modules")}


def run_paired_suite(
    suite: Suite, tests: int, variants: tuple[str, ...] = VARIANTS
) -> dict[str, dict[str, float]]:
    """Run a paired suite once; return variant -> median per-test wall and CPU time (us),
    and ``"modules"`` -> ``{"count": len(sys.modules)}`` at the end of the run."""
    result = run_timed(suite, len(variants) * tests, timeout=3600)
    measured = {variant: result[variant] for variant in variants}
    measured["modules"] = {"count": float(result["modules"])}
    return measured


def variants_of(options: argparse.Namespace, backend: str | None = None) -> tuple[str, ...]:
    """The variants measured on ``backend``: floor, recipe and ctxdb, plus engines and app
    with ``--db-engines``, noloop with ``--cross-loop`` (async backends), and each integration
    of ``--integrations`` that runs on ``backend`` (with its ``own`` variant unless
    ``--no-own-session``). Without ``backend``: those of every backend, in order."""
    if backend is None:
        found: dict[str, None] = {}
        for each in options.backends:
            found.update(dict.fromkeys(variants_of(options, each)))
        return tuple(found)
    variants = VARIANTS + (ENGINE_VARIANTS if options.db_engines else ())
    if options.layers:
        variants += (LAYER_VARIANT,)
    if options.cross_loop and backend.endswith("-async"):
        variants += (NOLOOP_VARIANT,)
    for name in backend_integrations(backend, options.integrations):
        variants += (INTEGRATIONS[name][0],)
        if options.own_session:
            variants += (f"{INTEGRATIONS[name][0]}own",)
    return variants


def check_postgresql(url: str) -> str:
    """Return the server version, or raise SystemExit saying why the server cannot be used."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    try:
        engine = create_engine(url, poolclass=NullPool)
        with engine.connect() as conn:
            version = conn.exec_driver_sql("SHOW server_version").scalar_one()
        engine.dispose()
    except Exception as exc:  # noqa: BLE001
        raise SystemExit(
            f"PostgreSQL at {url} is not usable: {type(exc).__name__}: {exc}"
        ) from None
    return str(version)


def cleanup(pg_url: str | None) -> None:
    """Leave nothing behind: the recipe's database, and the test and template databases
    (PostgreSQL) and template files (SQLite) pytest-ctxdb made for this run's base name
    ``bench_ctxdb_<pid>``; only databases carrying pytest-ctxdb's mark are dropped."""
    templates = Path(tempfile.gettempdir()) / "pytest-ctxdb"
    for path in templates.glob(f"{CTXDB_DATABASE}_tpl_*"):
        path.unlink(missing_ok=True)
    if pg_url is None:
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(pg_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {RECIPE_DATABASE} WITH (FORCE)")
            # This run's test database and templates: bench_ctxdb_<pid>, bench_ctxdb_<pid>_...
            prefix = CTXDB_DATABASE.replace("_", r"\_") + r"\_%"
            owned = (
                conn.execute(
                    text(
                        "SELECT datname FROM pg_database "
                        "WHERE (datname = :name OR datname LIKE :prefix) "
                        "AND shobj_description(oid, 'pg_database') LIKE 'created by pytest-ctxdb%'"
                    ),
                    {"name": CTXDB_DATABASE, "prefix": prefix},
                )
                .scalars()
                .all()
            )
            for name in owned:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        engine.dispose()


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for dist in (
        "SQLAlchemy",
        "pytest",
        "pytest-asyncio",
        "pytest-ctxdb",
        "psycopg",
        "asyncpg",
        "aiosqlite",
    ):
        try:
            found[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            found[dist] = "-"
    import sqlite3

    found["sqlite"] = sqlite3.sqlite_version
    return found


# -- reporting ---------------------------------------------------------------------------------


def summarize(
    samples: dict[tuple[str, str, str], list[float]],
    backends: list[str],
    bodies: list[str],
    variants: tuple[str, ...] = VARIANTS,
) -> list[dict[str, Any]]:
    """One row per (backend, body): medians, overheads over the floor, and the ratio; with
    the ``--db-engines`` variants also theirs (see :func:`engines_figures`)."""
    rows = []
    for backend in backends:
        for body in bodies:
            present = [v for v in variants if (backend, body, v) in samples]
            med = {v: statistics.median(samples[(backend, body, v)]) for v in present}
            recipe = med["recipe"] - med["floor"]
            ctxdb = med["ctxdb"] - med["floor"]
            runs = {v: samples[(backend, body, v)] for v in present}
            row: dict[str, Any] = {
                "backend": backend,
                "body": body,
                "floor_us": med["floor"],
                "recipe_us": med["recipe"],
                "ctxdb_us": med["ctxdb"],
                "recipe_overhead_us": recipe,
                "ctxdb_overhead_us": ctxdb,
                "ratio": ctxdb / recipe if recipe > 0 else None,
                "samples_us": runs,
                "medians_us": med,
            }
            if "engines" in present:
                row.update(engines_figures(runs, med))
            if LAYER_VARIANT in present:
                layer = med[LAYER_VARIANT] - med["floor"]
                row["layer_overhead_us"] = layer
                row["layer_ratio"] = _ratio(layer, ctxdb)
                row["layer_run_ratios"] = [
                    _ratio(lay - floor, ctx - floor)
                    for lay, ctx, floor in zip(
                        runs[LAYER_VARIANT], runs["ctxdb"], runs["floor"], strict=True
                    )
                ]
            rows.append(row)
    return rows


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def engines_figures(samples: dict[str, list[float]], med: dict[str, float]) -> dict[str, Any]:
    """The ``--db-engines`` figures of one (backend, body) from its per-run ``samples`` and
    their medians ``med``: overheads over the floor of ``engines`` and ``app``, and

    * ``engines_ratio`` = overhead(engines) / overhead(ctxdb): what ini ``db_engines`` adds
      to the same db_session test (target: at most 1.10);
    * ``app_ratio`` = overhead(app) / overhead(engines): the same body written through the
      app's own sessionmaker instead of db_session, both with ``db_engines``;
    * ``*_run_ratios``: the same ratios run by run (each run pairs the variants in one
      process), a view of the noise.
    """
    floor = med["floor"]
    engines, app, ctxdb = med["engines"] - floor, med["app"] - floor, med["ctxdb"] - floor
    runs = range(len(samples["floor"]))

    def overhead(variant: str, run: int) -> float:
        return samples[variant][run] - samples["floor"][run]

    return {
        "engines_us": med["engines"],
        "app_us": med["app"],
        "engines_overhead_us": engines,
        "app_overhead_us": app,
        "engines_ratio": _ratio(engines, ctxdb),
        "app_ratio": _ratio(app, engines),
        "engines_run_ratios": [
            _ratio(overhead("engines", run), overhead("ctxdb", run)) for run in runs
        ],
        "app_run_ratios": [
            _ratio(overhead("app", run), overhead("engines", run)) for run in runs
        ],
    }


def markdown_table(rows: list[dict]) -> str:
    out = [
        "| backend | body | floor us/test | recipe overhead us | ctxdb overhead us | ratio |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        ratio = "n/a" if row["ratio"] is None else f"{row['ratio']:.2f}"
        out.append(
            f"| {row['backend']} | {row['body']} | {row['floor_us']:.0f} | "
            f"{row['recipe_overhead_us']:.0f} | {row['ctxdb_overhead_us']:.0f} | {ratio} |"
        )
    return "\n".join(out)


def layers_table(wall: list[dict[str, Any]], cpu: list[dict[str, Any]]) -> str:
    """The ``--layers`` table: a test inside a module layer against the same test without
    one (overheads over the floor; ratio = layer / ctxdb, target at most 1.00)."""
    out = [
        "layers: the ctxdb tests inside a module layer (separate design), wall / CPU:",
        "",
        "| backend | body | ctxdb (wall / CPU) | layer (wall / CPU) | ratio wall | ratio CPU "
        "| CPU ratio per run |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for row, cpu_row in zip(wall, cpu, strict=True):
        if "layer_ratio" not in row:
            continue
        runs = " ".join(_ratio_text(r) for r in cpu_row["layer_run_ratios"])
        out.append(
            f"| {row['backend']} | {row['body']} | {row['ctxdb_overhead_us']:.0f} / "
            f"{cpu_row['ctxdb_overhead_us']:.0f} | {row['layer_overhead_us']:.0f} / "
            f"{cpu_row['layer_overhead_us']:.0f} | {_ratio_text(row['layer_ratio'])} | "
            f"{_ratio_text(cpu_row['layer_ratio'])} | {runs} |"
        )
    return "\n".join(out)


def _ratio_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def engines_table(rows: list[dict[str, Any]]) -> str:
    """The ``--db-engines`` table: ctxdb's overhead with and without ini ``db_engines``."""
    out = [
        "| backend | body | floor us/test | ctxdb overhead us | ctxdb+engines overhead us "
        "| ratio | ratio per run |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        per_run = " ".join(_ratio_text(r) for r in row["engines_run_ratios"])
        out.append(
            f"| {row['backend']} | {row['body']} | {row['floor_us']:.0f} | "
            f"{row['ctxdb_overhead_us']:.0f} | {row['engines_overhead_us']:.0f} | "
            f"{_ratio_text(row['engines_ratio'])} | {per_run} |"
        )
    return "\n".join(out)


def app_table(rows: list[dict[str, Any]]) -> str:
    """The ``--db-engines`` table of the ``app`` variant: the body written through the app's
    sessionmaker against the same body on db_session, both with ini ``db_engines``."""
    out = [
        "| backend | body | db_session overhead us | app sessionmaker overhead us "
        "| ratio | ratio per run |",
        "|---|---|---:|---:|---:|---|",
    ]
    for row in rows:
        per_run = " ".join(_ratio_text(r) for r in row["app_run_ratios"])
        out.append(
            f"| {row['backend']} | {row['body']} | {row['engines_overhead_us']:.0f} | "
            f"{row['app_overhead_us']:.0f} | {_ratio_text(row['app_ratio'])} | {per_run} |"
        )
    return "\n".join(out)


def pair_figures(
    wall: dict[str, Any], cpu: dict[str, Any], variant: str, base: str
) -> dict[str, Any] | None:
    """One (backend, body) row's figures of ``variant`` against ``base`` (both paired in each
    run), from the summarized rows of both clocks: overheads over the floor (medians over the
    runs), ``ratio`` = overhead(variant) / overhead(base), and the ratio run by run; ``None``
    if the row has no ``variant``."""
    if variant not in wall["medians_us"] or base not in wall["medians_us"]:
        return None
    figures: dict[str, Any] = {"variant": variant, "base": base}
    for clock, row in (("wall", wall), ("cpu", cpu)):
        med, runs = row["medians_us"], row["samples_us"]
        over = med[variant] - med["floor"]
        over_base = med[base] - med["floor"]
        figures[f"{clock}_overhead_us"] = over
        figures[f"{clock}_base_overhead_us"] = over_base
        figures[f"{clock}_ratio"] = _ratio(over, over_base)
        figures[f"{clock}_run_ratios"] = [
            _ratio(v - f, b - f) for v, b, f in zip(runs[variant], runs[base], runs["floor"])
        ]
    return figures


def pairs_table(
    wall: list[dict[str, Any]],
    cpu: list[dict[str, Any]],
    pairs: list[tuple[str, str, str]],
    header: tuple[str, str],
    difference: bool = False,
) -> tuple[str, list[dict[str, Any]]]:
    """A markdown table of ``pairs`` (label, variant, base variant) for each (backend, body)
    row that has them: overheads over the floor of base and variant (wall / CPU, us per test),
    the ratio variant / base on both clocks and the CPU ratio run by run (with ``difference``:
    also variant - base, us per test, wall / CPU). ``header`` names the base and the variant
    columns. Returns the table and its figures (for the JSON output)."""
    out = [
        f"| backend | body | what | {header[0]} (wall / CPU) | {header[1]} (wall / CPU) | "
        + (f"{header[1]} - {header[0]} (wall / CPU) | " if difference else "")
        + "ratio wall | ratio CPU | CPU ratio per run | wall ratio per run |",
        "|---|---|---|---:|---:|" + ("---:|" if difference else "") + "---:|---:|---|---|",
    ]
    found = []
    for wall_row, cpu_row in zip(wall, cpu):
        for label, variant, base in pairs:
            fig = pair_figures(wall_row, cpu_row, variant, base)
            if fig is None:
                continue
            fig.update(backend=wall_row["backend"], body=wall_row["body"], what=label)
            found.append(fig)
            diff = (
                f"{fig['wall_overhead_us'] - fig['wall_base_overhead_us']:+.0f} / "
                f"{fig['cpu_overhead_us'] - fig['cpu_base_overhead_us']:+.0f} | "
                if difference
                else ""
            )
            out.append(
                f"| {fig['backend']} | {fig['body']} | {label} | "
                f"{fig['wall_base_overhead_us']:.0f} / {fig['cpu_base_overhead_us']:.0f} | "
                f"{fig['wall_overhead_us']:.0f} / {fig['cpu_overhead_us']:.0f} | {diff}"
                f"{_ratio_text(fig['wall_ratio'])} | {_ratio_text(fig['cpu_ratio'])} | "
                + " ".join(_ratio_text(r) for r in fig["cpu_run_ratios"])
                + " | "
                + " ".join(_ratio_text(r) for r in fig["wall_run_ratios"])
                + " |"
            )
    return "\n".join(out), found


def print_integration_tables(
    wall: list[dict[str, Any]], cpu: list[dict[str, Any]], options: argparse.Namespace
) -> dict[str, list[dict[str, Any]]]:
    """Print the ``--integrations`` and ``--cross-loop`` tables (paired design); return their
    figures."""
    figures: dict[str, list[dict[str, Any]]] = {}
    names = options.integrations
    if names:
        pairs = [(name, INTEGRATIONS[name][0], "ctxdb") for name in names]
        table, figures["integrations"] = pairs_table(
            wall, cpu, pairs, ("ctxdb", "ctxdb+adapter")
        )
        print(
            "integrations, paired design: ctxdb's overhead over the floor without and with the "
            "integration's adapter (same db_session / async_db_session bodies; us per test); "
            "ratio = ctxdb+adapter / ctxdb (target: <= 1.10):"
        )
        print()
        print(table)
        print()
    if names and options.own_session:
        pairs = [
            (name, f"{INTEGRATIONS[name][0]}own", INTEGRATIONS[name][0]) for name in names
        ]
        table, figures["own_sessions"] = pairs_table(
            wall, cpu, pairs, ("db_session+adapter", "own session")
        )
        print(
            "integrations, paired design: the same body through the integration's own session "
            "(db.session in an app context; config.get_session(); new_non_ctx_session(connect))"
            " against the body on db_session / async_db_session, both with the adapter; "
            "ratio = own session / db_session:"
        )
        print()
        print(table)
        print()
    if options.cross_loop:
        table, figures["cross_loop"] = pairs_table(
            wall,
            cpu,
            [("loop check", "ctxdb", NOLOOP_VARIANT)],
            ("check off", "check on"),
            difference=True,
        )
        print(
            "cross-loop check, paired design (async backends): ctxdb's overhead with "
            "pytest-ctxdb's event-loop check switched off (noloop) and on (ctxdb, as shipped); "
            "ratio = on / off:"
        )
        print()
        print(table)
        print()
    return figures


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Per-test overhead of pytest-ctxdb vs SQLAlchemy's hand-written recipe.",
    )
    parser.add_argument("--tests", type=int, default=500, help="tests per suite (default 500)")
    parser.add_argument("--tables", type=int, default=20, help="tables in the schema (default 20)")
    parser.add_argument("--repeat", type=int, default=5, help="measured runs per suite (default 5)")
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help=f"comma-separated subset of {','.join(BACKENDS)}",
    )
    parser.add_argument(
        "--body", default=",".join(BODIES), help=f"comma-separated subset of {','.join(BODIES)}"
    )
    parser.add_argument(
        "--pg-url",
        default=DEFAULT_PG_URL,
        help=f"PostgreSQL server URL, sync driver (default {DEFAULT_PG_URL})",
    )
    parser.add_argument(
        "--design",
        default=None,
        help="separate (one pytest process per variant), paired (the variants' tests "
        "interleaved in one process) or both (default; with --db-engines: paired)",
    )
    parser.add_argument(
        "--db-engines",
        action="store_true",
        help="add the variants engines (ctxdb with ini db_engines binding the module-level "
        "engines of a generated app module that imports a FastAPI app's load) and app (the "
        "same, bodies writing through the app's sessionmaker); report their overhead against "
        "ctxdb's",
    )
    parser.add_argument(
        "--integrations",
        default="",
        metavar="LIST",
        help=f"comma-separated subset of {','.join(INTEGRATIONS)} (casa: context-async-"
        "sqlalchemy): add, per integration, a variant of the ctxdb tests with its adapter "
        "applied (sync integrations on the sync backends, async ones on the async backends) "
        "and one writing the body through its own session; paired design only",
    )
    parser.add_argument(
        "--no-own-session",
        dest="own_session",
        action="store_false",
        help="with --integrations: leave out the bodies written through each integration's "
        "own session",
    )
    parser.add_argument(
        "--cross-loop",
        action="store_true",
        help="add the variant noloop on the async backends: the ctxdb tests with "
        "pytest-ctxdb's event-loop check (LoopGuard) switched off; paired design only",
    )
    parser.add_argument(
        "--layers",
        action="store_true",
        help="add the variant layer: the ctxdb tests inside a module layer (an autouse "
        "module-scoped fixture writing through db_setup_session); separate design only",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--keep", action="store_true", help="keep the generated suites")
    options = parser.parse_args(argv)
    options.backends = [b.strip() for b in options.backends.split(",") if b.strip()]
    options.bodies = [b.strip() for b in options.body.split(",") if b.strip()]
    options.integrations = [i.strip() for i in options.integrations.split(",") if i.strip()]
    paired_only = bool(options.integrations) or options.cross_loop
    if options.design is None:
        options.design = "paired" if options.db_engines or paired_only else "separate,paired"
        if options.layers:
            options.design = "separate"
    options.designs = [d.strip() for d in options.design.split(",") if d.strip()]
    for name, given, known in (
        ("--backends", options.backends, BACKENDS),
        ("--body", options.bodies, BODIES),
        ("--design", options.designs, ("separate", "paired")),
        ("--integrations", options.integrations or list(INTEGRATIONS), tuple(INTEGRATIONS)),
    ):
        unknown = sorted(set(given) - set(known))
        if unknown or not given:
            parser.error(f"{name}: unknown or empty {unknown}; choose from {', '.join(known)}")
    if paired_only and options.designs != ["paired"]:
        parser.error("--integrations and --cross-loop run in the paired design only")
    if options.layers and options.designs != ["separate"]:
        parser.error("--layers runs in the separate design only")
    if options.tests < 3:
        parser.error("--tests must be at least 3")
    if options.repeat < 1:
        parser.error("--repeat must be at least 1")
    return options


def plugin_origin() -> str:
    """Where the pytest subprocesses import pytest_ctxdb from (and its git state, if any)."""
    code = "import os, pytest_ctxdb; print(os.path.dirname(pytest_ctxdb.__file__))"
    with tempfile.TemporaryDirectory() as neutral:  # not the repository: its cwd would win
        proc = subprocess.run(
            [sys.executable, "-c", code],
            check=False,
            cwd=neutral,
            env=subprocess_env(),
            capture_output=True,
            text=True,
        )
    where = proc.stdout.strip() or f"<not importable: {proc.stderr.strip()[-200:]}>"
    git = ["git", "-C", where]
    head = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True
    )
    if head.returncode == 0:
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "."], check=False, capture_output=True, text=True
        )
        state = ", uncommitted changes" if dirty.stdout.strip() else ""
        where += f" (git {head.stdout.strip()}{state})"
    return where


def print_engines_tables(
    wall: list[dict[str, Any]], cpu: list[dict[str, Any]], design: str
) -> None:
    """Print the ``--db-engines`` tables of one design, wall clock then CPU time."""
    for rows, clock in ((wall, "wall clock"), (cpu, "CPU time of the pytest process")):
        print(
            f"db_engines, {design}, {clock}: ctxdb's overhead over the floor without and with "
            "ini db_engines (same db_session bodies); ratio = ctxdb+engines / ctxdb "
            "(target: <= 1.10):"
        )
        print()
        print(engines_table(rows))
        print()
    for rows, clock in ((wall, "wall clock"), (cpu, "CPU time of the pytest process")):
        print(
            f"db_engines, {design}, {clock}: the body through the app's sessionmaker made at "
            "import against the same body on db_session, both with ini db_engines; "
            "ratio = app / db_session:"
        )
        print()
        print(app_table(rows))
        print()


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    info = versions()
    uses_pg = any(b.startswith("postgresql") for b in options.backends)
    if uses_pg:
        info["postgresql-server"] = check_postgresql(options.pg_url)
    print("pytest-ctxdb benchmark: per-test overhead over a no-database floor")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    print(f"pytest_ctxdb imported from: {plugin_origin()}")
    print(
        f"suite: {options.tests} tests over {options.tables} tables; {options.repeat} measured "
        "runs per suite after one warm-up, variants interleaved; medians."
    )
    print(
        "note: PYTHONDONTWRITEBYTECODE is unset for the pytest subprocesses "
        f"(it is {'set' if os.environ.get('PYTHONDONTWRITEBYTECODE') else 'not set'} here), "
        "so pytest can cache rewritten test modules.",
    )
    variants = variants_of(options)
    if options.db_engines:
        print(
            "db_engines: the engines and app variants list bench_app's module-level engines "
            "in ini db_engines (bench_app:engine; also bench_app:async_engine on the async "
            "backends); bench_app imports a FastAPI app's load first (every variant)."
        )
    if options.integrations:
        print(
            "integrations: each variant runs the ctxdb tests with one integration's adapter "
            "(the others' adapters taken off), on bench_integrations made at import: "
            + "; ".join(
                f"{name} on the {'/'.join(k for k, on in zip(('sync', 'async'), spec[1:3]) if on)}"
                " backends"
                for name, spec in INTEGRATIONS.items()
                if name in options.integrations
            )
        )
    if options.cross_loop:
        print("cross-loop: the noloop variant runs the ctxdb tests with the event-loop check off")
    print(f"cpus: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.2f}", flush=True)

    root = Path(tempfile.mkdtemp(prefix="ctxdb-bench-"))
    samples: dict[str, dict[tuple[str, str, str], list[float]]] = {m: {} for m in MEASURES}
    paired: dict[str, dict[tuple[str, str, str], list[float]]] = {
        "median_us": {},
        "cpu_median_us": {},
    }
    modules: dict[str, int] = {}  # suite label -> len(sys.modules) at its end
    started = time.monotonic()
    try:
        suites = [
            write_suite(root, backend, body, variant, options)
            for backend in options.backends
            for body in options.bodies
            for variant in variants
            if "separate" in options.designs
        ]
        paired_suites = [
            write_paired_suite(root, backend, body, options)
            for backend in options.backends
            for body in options.bodies
            if "paired" in options.designs
        ]
        for round_ in range(options.repeat + 1):
            what = "warm-up" if round_ == 0 else f"run {round_}/{options.repeat}"
            for suite in paired_suites:
                suite_variants = variants_of(options, suite.backend)
                measured_paired = run_paired_suite(suite, options.tests, suite_variants)
                modules[suite.label] = int(measured_paired.pop("modules")["count"])
                if round_ > 0:
                    for variant, values in measured_paired.items():
                        for measure in paired:
                            key = (suite.backend, suite.body, variant)
                            paired[measure].setdefault(key, []).append(values[measure])
                print(
                    f"  [{what}] {suite.label}: "
                    + ", ".join(
                        f"{v} {measured_paired[v]['median_us']:.0f}" for v in suite_variants
                    )
                    + f" us/test (medians); {modules[suite.label]} modules",
                    file=sys.stderr,
                    flush=True,
                )
            what = "warm-up" if round_ == 0 else f"run {round_}/{options.repeat}"
            for suite in suites:
                measured = run_suite(suite, options.tests)
                modules[suite.label] = int(measured.pop("modules"))
                if round_ > 0:
                    key = (suite.backend, suite.body, suite.variant)
                    for measure, value in measured.items():
                        samples[measure].setdefault(key, []).append(value)
                print(
                    f"  [{what}] {suite.label}: {measured['per_test_us']:8.1f} us/test "
                    f"(cpu {measured['cpu_us']:8.1f}, median gap {measured['median_gap_us']:8.1f}"
                    f"; {modules[suite.label]} modules)",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        cleanup(options.pg_url if uses_pg else None)
        if options.keep:
            print(f"generated suites kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)

    results: dict[str, list[dict]] = {}
    integration_figures: dict[str, list[dict[str, Any]]] = {}
    if suites:
        results = {
            m: summarize(samples[m], options.backends, options.bodies, variants)
            for m in MEASURES
        }
        print()
        print("separate design (one pytest process per variant):")
        print()
        print(markdown_table(results["per_test_us"]))
        print()
        print(
            "us/test = (stamp[N-2] - stamp[0]) / (N-2), stamps at pytest_runtest_logfinish; "
            "overhead = median us/test of the variant - median us/test of the floor; "
            "ratio = ctxdb overhead / recipe overhead (target: <= 1.00)."
        )
        print()
        print(
            "cross-check, from the CPU time of the pytest process (process_time(), same "
            "stamps): insensitive to other load on the machine, but blind to time spent "
            "waiting for the database server (round trips, server work):"
        )
        print()
        print(markdown_table(results["cpu_us"]))
        print()
        if options.db_engines:
            print_engines_tables(results["per_test_us"], results["cpu_us"], "separate design")
        if options.layers:
            print(layers_table(results["per_test_us"], results["cpu_us"]))
            print()
    if paired_suites:
        for measure in paired:
            results[f"paired_{measure}"] = summarize(
                paired[measure], options.backends, options.bodies, variants
            )
        print(f"paired design ({', '.join(variants)} tests interleaved in one pytest process):")
        print()
        print(markdown_table(results["paired_median_us"]))
        print()
        print(
            "us/test = median over the variant's tests of the wall time from the end of the "
            "previous test to the end of this one, then the median over the runs; the same "
            "with the process's CPU time:"
        )
        print()
        print(markdown_table(results["paired_cpu_median_us"]))
        print()
        if options.db_engines:
            print_engines_tables(
                results["paired_median_us"], results["paired_cpu_median_us"], "paired design"
            )
        integration_figures = print_integration_tables(
            results["paired_median_us"], results["paired_cpu_median_us"], options
        )
    if modules:
        counts = sorted(set(modules.values()))
        print(f"modules loaded at the end of a suite (len(sys.modules)): {counts[0]}-{counts[-1]}")
    elapsed = time.monotonic() - started
    print(f"load average at end: {os.getloadavg()[0]:.2f}; total time: {elapsed:.0f} s")
    if options.json:
        path = Path(options.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(
                {
                    "versions": info,
                    "plugin": plugin_origin(),
                    "tests": options.tests,
                    "tables": options.tables,
                    "repeat": options.repeat,
                    "designs": options.designs,
                    "variants": variants,
                    "modules": modules,
                    "results": results.get("per_test_us"),
                    "cpu_results": results.get("cpu_us"),
                    "median_gap_results": results.get("median_gap_us"),
                    "paired_results": results.get("paired_median_us"),
                    "paired_cpu_results": results.get("paired_cpu_median_us"),
                    "paired_pairs": integration_figures,
                },
                indent=2,
            )
        )
        print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
