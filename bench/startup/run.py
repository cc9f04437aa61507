"""Start-up cost of pytest-ctxdb, template clone time, and pytest-xdist speed-up.

This is a benchmark script, not a test. It generates small projects in a temporary directory,
runs pytest on them in subprocesses and prints Markdown tables (``--json`` also saves the raw
numbers). Three parts, chosen with ``--parts``:

``startup``
    For every backend (``postgresql``, ``sqlite``; ``mariadb`` with ``--backends``), schema builder (``create_all`` through ini
    ``db_metadata = models:Base.metadata``; ``alembic`` through ini ``db_alembic_ini =
    alembic.ini`` with a generated ``env.py`` and one revision that creates every table with
    ``op.create_table`` / ``op.create_index``), table count (``--tables``, default 20 and 200)
    and mode (``cold``: ``--db-create``, the template is rebuilt; ``warm``: the template of an
    earlier run is cloned), two one-test suites are run as a *pair*:

    * ``db``: ``def test_db(db_session)`` runs ``SELECT 1`` through the session;
    * ``nodb``: the same module with a test that asks for no database fixture.

    Both test modules ``import models`` (as an application's tests do), so the models import is
    in both and cancels out; the plugin is loaded in both (a run whose tests use no database
    fixture contacts no server). A tiny timing plugin in the generated ``conftest.py`` writes,
    at ``pytest_runtest_logfinish`` of the first test, ``time.perf_counter() - T0`` into a JSON
    file, where ``T0`` is the parent's ``time.perf_counter()`` just before it started the
    subprocess (``perf_counter`` is ``CLOCK_MONOTONIC`` on Linux, one clock for all
    processes). Per pair::

        start-up added = first_logfinish(db) - first_logfinish(nodb)
        wall added     = wall(db) - wall(nodb)
        teardown added = (wall - first_logfinish)(db) - (wall - first_logfinish)(nodb)

    and, free of the machine's start-up noise (the time both variants spend importing and
    collecting differs by up to a few hundred ms between runs on a busy machine; the table shows
    that difference as ``collection delta``, which should be 0)::

        in-process added = RunState.provision(db)                  # provisioning, instrumented
                           + first test logstart->logfinish (db - nodb)   # engine, 1st connect

    ``first_logfinish`` stops after the first test's setup, call, teardown and report, so it
    leaves out the end of the run, where the plugin drops the run's database (``DROP
    DATABASE``); that shows up in ``teardown added``. Pairs alternate their order (nodb first,
    then db first) and every round runs all configurations once, so a slow drift of the
    (shared) machine hits all of them alike. Medians over ``--repeat`` rounds (>= 7) are
    reported with the 25th-75th percentiles and the range.

    The same ``conftest.py`` also wraps a few of the plugin's methods (``RunState.provision``,
    ``TestDatabase.create`` / ``_run`` / ``_create_on_server`` / ``_take_spare`` / ``drop``, ``SchemaBuilder``
    ``fingerprint`` / ``build``, ``load_metadata``, the backend's ``clone_database`` /
    ``clone_file``, the file lock) with ``perf_counter`` stamps, from the outside (the plugin is
    not changed), so each run also reports where its provisioning time went; a wrapper costs
    about a microsecond.

``clone``
    The bare cost of ``CREATE DATABASE x TEMPLATE tpl`` on PostgreSQL for each template the
    start-up part built: through SQLAlchemy (one AUTOCOMMIT connection kept open; the statement
    alone is timed) and through ``psql -c '\\timing on'`` (the server-side time psql prints,
    plus psql's whole wall time), ``--clone-repeat`` times each, with the ``DROP DATABASE``
    after each clone timed too; on PostgreSQL >= 15 also with ``STRATEGY FILE_COPY`` (the
    pre-15 behaviour; the default since 15 is ``WAL_LOG``). Compare with the plugin's own split from the instrumented warm
    runs (``TestDatabase.create`` = lock + fingerprint + server check/sweep + clone).

``xdist``
    A generated suite of ``--xdist-tests`` tests (default 2,000, in 20 modules) on 20 tables
    where each test adds a user, an order and two items through ``db_session`` and commits (as
    application code would; the plugin turns the commit into a SAVEPOINT release), run with
    ``-n 0`` and ``-n 2`` against a warm template; and the same tests with bodies that do no
    database work, run with ``-p no:ctxdb`` (``floor``: pytest's and pytest-xdist's own
    speed-up on this machine); and, on PostgreSQL, the same tests with the hand-written
    recipe (``recipe``, ``-p no:ctxdb``): a template database built once under a file lock and
    kept across runs, ``CREATE DATABASE <base>_<worker_id> TEMPLATE`` per xdist worker, and
    SQLAlchemy's "join a Session into an external transaction" fixture
    (``join_transaction_mode="create_savepoint"``), so that the plugin's speed-up can be
    compared with the recipe's under the same load. The plugin's ``-n 0`` and ``-n 2`` runs
    have a base each (``bench_startup_pg_xd0``, ``..._xd2``): each finds the template and
    spare clones the previous run of the same command left, as when a user repeats one
    command (with one base, a ``-n 2`` run found the one spare a ``-n 0`` run leaves and
    copied the template for its second worker, while a ``-n 0`` run found two and made
    none). One warm-up run of each, then
    ``--xdist-repeat`` rounds (>= 3) interleaving the variants; medians of the wall time and ``speed-up = wall(-n 0)
    / wall(-n 2)``. Each xdist worker's ``TestDatabase.create`` (lock wait included) and clone
    are reported as well.

The generated ``pytest.ini`` files set ``db_sweep_age`` to 30 years: the server is shared
with other test suites, whose deliberately stale clones a benchmark run would otherwise drop
(a ``DROP DATABASE`` of 0.1-2 s landing at random in some runs). The sweep's catalog queries
still run and are measured; only its drops of foreign clones are avoided.

``PYTHONDONTWRITEBYTECODE`` (set on this machine) is removed from the environment of every
pytest subprocess: with it, pytest cannot cache its rewritten test modules and rewrites their
assertions on every run, which would inflate every number here. ``PYTEST_ADDOPTS`` and
``PYTEST_CTXDB_URL`` are removed too. Every database gets a unique ``--db-test-name
bench_startup_<x>`` base; at the end the script drops every database named
``bench_startup_*`` (templates ``bench_startup_*_tpl_*``, clones, and the bare-clone database)
and deletes the SQLite template files ``/tmp/pytest-ctxdb/bench_startup_*`` and the lock files
of those bases.

Usage::

    python bench/startup/run.py                          # everything (about 15-25 minutes)
    python bench/startup/run.py --parts startup --repeat 3 --tables 20   # quick look
    python bench/startup/run.py --parts xdist --xdist-tests 500 --xdist-repeat 1
    python bench/startup/run.py --json bench/startup/results.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PREFIX = "bench_startup_"
TEMPLATE_DIR = Path(tempfile.gettempdir()) / "pytest-ctxdb"
#: ini db_sweep_age of the generated projects: 30 years, so no run drops another suite's clone.
SWEEP_AGE = 10**9

# --------------------------------------------------------------------------------------------
# Generated project files
# --------------------------------------------------------------------------------------------


def _filler_names(tables: int) -> list[str]:
    return [f"t{i:03d}" for i in range(3, tables)]


def models_source(tables: int) -> str:
    """A declarative models module: users -> orders -> items, plus filler tables."""
    if tables < 3:
        raise SystemExit("--tables: at least 3")
    out = [
        '"""Generated by bench/startup/run.py."""',
        "from __future__ import annotations",
        "",
        "import datetime",
        "",
        "from sqlalchemy import ForeignKey, String, Text",
        "from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship",
        "",
        "",
        "class Base(DeclarativeBase):",
        "    pass",
        "",
        "",
        "class User(Base):",
        '    __tablename__ = "users"',
        "    id: Mapped[int] = mapped_column(primary_key=True)",
        "    name: Mapped[str] = mapped_column(String(100), unique=True)",
        "    email: Mapped[str | None] = mapped_column(String(200))",
        "    created: Mapped[datetime.datetime | None]",
        '    orders: Mapped[list[Order]] = relationship(back_populates="user")',
        "",
        "",
        "class Order(Base):",
        '    __tablename__ = "orders"',
        "    id: Mapped[int] = mapped_column(primary_key=True)",
        '    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)',
        "    total: Mapped[int] = mapped_column(default=0)",
        "    note: Mapped[str | None] = mapped_column(Text)",
        '    user: Mapped[User] = relationship(back_populates="orders")',
        '    items: Mapped[list[Item]] = relationship(back_populates="order")',
        "",
        "",
        "class Item(Base):",
        '    __tablename__ = "items"',
        "    id: Mapped[int] = mapped_column(primary_key=True)",
        '    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)',
        "    sku: Mapped[str] = mapped_column(String(40))",
        "    qty: Mapped[int] = mapped_column(default=1)",
        '    order: Mapped[Order] = relationship(back_populates="items")',
    ]
    for name in _filler_names(tables):
        out += [
            "",
            "",
            f"class {name.upper()}(Base):",
            f'    __tablename__ = "{name}"',
            "    id: Mapped[int] = mapped_column(primary_key=True)",
            '    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)',
            "    name: Mapped[str] = mapped_column(String(100))",
            "    value: Mapped[int] = mapped_column(default=0)",
            "    flag: Mapped[bool] = mapped_column(default=False)",
            "    created: Mapped[datetime.datetime | None]",
            "    note: Mapped[str | None] = mapped_column(Text)",
        ]
    return "\n".join(out) + "\n"


def revision_source(tables: int) -> str:
    """One Alembic revision creating every table of :func:`models_source` (autogenerate style)."""
    up = [
        "    op.create_table(",
        '        "users",',
        '        sa.Column("id", sa.Integer(), nullable=False),',
        '        sa.Column("name", sa.String(length=100), nullable=False),',
        '        sa.Column("email", sa.String(length=200), nullable=True),',
        '        sa.Column("created", sa.DateTime(), nullable=True),',
        '        sa.PrimaryKeyConstraint("id"),',
        '        sa.UniqueConstraint("name"),',
        "    )",
        "    op.create_table(",
        '        "orders",',
        '        sa.Column("id", sa.Integer(), nullable=False),',
        '        sa.Column("user_id", sa.Integer(), nullable=False),',
        '        sa.Column("total", sa.Integer(), nullable=False),',
        '        sa.Column("note", sa.Text(), nullable=True),',
        '        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),',
        '        sa.PrimaryKeyConstraint("id"),',
        "    )",
        '    op.create_index("ix_orders_user_id", "orders", ["user_id"])',
        "    op.create_table(",
        '        "items",',
        '        sa.Column("id", sa.Integer(), nullable=False),',
        '        sa.Column("order_id", sa.Integer(), nullable=False),',
        '        sa.Column("sku", sa.String(length=40), nullable=False),',
        '        sa.Column("qty", sa.Integer(), nullable=False),',
        '        sa.ForeignKeyConstraint(["order_id"], ["orders.id"]),',
        '        sa.PrimaryKeyConstraint("id"),',
        "    )",
        '    op.create_index("ix_items_order_id", "items", ["order_id"])',
    ]
    down = []
    for name in _filler_names(tables):
        up += [
            "    op.create_table(",
            f'        "{name}",',
            '        sa.Column("id", sa.Integer(), nullable=False),',
            '        sa.Column("user_id", sa.Integer(), nullable=True),',
            '        sa.Column("name", sa.String(length=100), nullable=False),',
            '        sa.Column("value", sa.Integer(), nullable=False),',
            '        sa.Column("flag", sa.Boolean(), nullable=False),',
            '        sa.Column("created", sa.DateTime(), nullable=True),',
            '        sa.Column("note", sa.Text(), nullable=True),',
            '        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),',
            '        sa.PrimaryKeyConstraint("id"),',
            "    )",
            f'    op.create_index("ix_{name}_user_id", "{name}", ["user_id"])',
        ]
        down.append(f'    op.drop_table("{name}")')
    down += [
        '    op.drop_table("items")',
        '    op.drop_table("orders")',
        '    op.drop_table("users")',
    ]
    head = textwrap.dedent(
        '''\
        """create all tables

        Revision ID: 0001
        Revises:
        Create Date: 2025-01-01 00:00:00
        """
        import sqlalchemy as sa
        from alembic import op

        revision = "0001"
        down_revision = None
        branch_labels = None
        depends_on = None


        def upgrade() -> None:
        '''
    )
    return head + "\n".join(up) + "\n\n\ndef downgrade() -> None:\n" + "\n".join(down) + "\n"


ALEMBIC_INI = textwrap.dedent(
    """\
    [alembic]
    script_location = %(here)s/migrations
    prepend_sys_path = .
    path_separator = os
    sqlalchemy.url = sqlite://
    """
)

ENV_PY = textwrap.dedent(
    '''\
    """Alembic env.py following the cookbook: use a connection handed over in
    config.attributes when there is one (pytest-ctxdb does), else connect."""
    from alembic import context
    from sqlalchemy import engine_from_config, pool

    import models

    config = context.config
    target_metadata = models.Base.metadata


    def run_migrations_online() -> None:
        connection = config.attributes.get("connection")
        if connection is not None:
            context.configure(connection=connection, target_metadata=target_metadata)
            with context.begin_transaction():
                context.run_migrations()
            return
        connectable = engine_from_config(
            config.get_section(config.config_ini_section, {}),
            prefix="sqlalchemy.",
            poolclass=pool.NullPool,
        )
        with connectable.connect() as connection:
            context.configure(connection=connection, target_metadata=target_metadata)
            with context.begin_transaction():
                context.run_migrations()


    if context.is_offline_mode():
        raise SystemExit("offline mode is not used by this benchmark")
    run_migrations_online()
    '''
)

#: The timing plugin (conftest.py of every generated project).
CONFTEST = textwrap.dedent(
    '''\
    """Timing plugin generated by bench/startup/run.py (see its docstring).

    Stamps are ``time.perf_counter() - T0`` where ``T0`` (env ``BENCH_T0``) is the parent's
    ``perf_counter()`` just before it started this pytest process.
    """
    import functools
    import gc
    import json
    import os
    import time

    import pytest

    _T0 = float(os.environ.get("BENCH_T0", "0") or 0)
    _OUT = os.environ.get("BENCH_OUT")
    _DATA = {"stamps": {"conftest_import": time.perf_counter() - _T0}, "spans": [], "phases": {}}
    _STATE = {"first": None, "written_first": False}


    def _now():
        return time.perf_counter() - _T0


    def _write(config=None):
        if not _OUT:
            return
        worker = getattr(config, "workerinput", {}).get("workerid", "main") if config else "main"
        with open(f"{_OUT}.{worker}.json", "w") as f:
            json.dump(_DATA, f)


    def _wrap(owner, attr, label=None):
        original = getattr(owner, attr)
        name = label or f"{getattr(owner, '__name__', owner)}.{attr}"

        @functools.wraps(original)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                end = time.perf_counter()
                _DATA["spans"].append([name, start - _T0, end - start])

        setattr(owner, attr, timed)


    def _wrap_run(owner):
        """TestDatabase._run(url, fn, ...): one span per call, named after fn."""
        original = owner._run

        @functools.wraps(original)
        def timed(self, url, fn, *args, **kwargs):
            start = time.perf_counter()
            try:
                return original(self, url, fn, *args, **kwargs)
            finally:
                end = time.perf_counter()
                label = getattr(fn, "__name__", "fn")
                _DATA["spans"].append([f"_run:{label}", start - _T0, end - start])

        owner._run = timed


    def _instrument():
        from pytest_ctxdb.backends import mysql, postgresql, sqlite
        from pytest_ctxdb.plugin import _state
        from pytest_ctxdb.provision import _database, _schema

        _wrap(_state.RunState, "provision", "RunState.provision")
        _wrap(_state.RunState, "engine", "RunState.engine")
        _wrap(_state, "load_metadata", "load_metadata")
        _wrap(_database.TestDatabase, "create", "TestDatabase.create")
        _wrap(_database.TestDatabase, "_ensure_template_on_server", "ensure_template")
        _wrap(_database.TestDatabase, "_ensure_template_file", "ensure_template")
        _wrap(_database.TestDatabase, "_sweep", "sweep")
        _wrap(_database.TestDatabase, "_create_on_server", "create_on_server")
        _wrap(_database.TestDatabase, "_take_spare", "take_spare")
        _wrap(_database.TestDatabase, "start_spares", "start_spares")
        _wrap(_database.TestDatabase, "wait_for_spares", "wait_for_spares")
        _wrap(_database.TestDatabase, "drop", "TestDatabase.drop")
        if hasattr(_database.TestDatabase, "_recycle"):  # kept as a spare (issue #14)
            _wrap(_database.TestDatabase, "_recycle", "recycle")
        _wrap(_database.TestDatabase, "check_driver", "check_driver")
        _wrap_run(_database.TestDatabase)
        _wrap(_schema.SchemaBuilder, "fingerprint", "fingerprint")
        _wrap(_schema.SchemaBuilder, "build", "schema_build")
        _wrap(postgresql.PostgreSQLBackend, "clone_database", "clone_database")
        _wrap(mysql.MySQLBackend, "clone_database", "clone_database")
        _wrap(sqlite.SQLiteBackend, "clone_file", "clone_database")

        lock_class = _database.FileLock

        class TimedLock:
            def __init__(self, *args, **kwargs):
                self._lock = lock_class(*args, **kwargs)

            def __enter__(self):
                start = time.perf_counter()
                result = self._lock.__enter__()
                _DATA["spans"].append(["lock_wait", start - _T0, time.perf_counter() - start])
                return result

            def __exit__(self, *exc):
                return self._lock.__exit__(*exc)

        _database.FileLock = TimedLock


    _GC = {}


    def _gc_callback(phase, info):
        """Record collections of the oldest generation (they can take tens of ms)."""
        if info.get("generation") != 2:
            return
        if phase == "start":
            _GC["start"] = time.perf_counter()
        elif "start" in _GC:
            start = _GC.pop("start")
            _DATA["spans"].append(["gc_gen2", start - _T0, time.perf_counter() - start])


    def pytest_configure(config):
        if not _OUT:
            return  # a whole-process run: measured from outside only
        _DATA["stamps"]["configure"] = _now()
        gc.callbacks.append(_gc_callback)
        if config.pluginmanager.has_plugin("ctxdb") and os.environ.get("BENCH_INSTRUMENT") == "1":
            _instrument()


    def pytest_collection_finish(session):
        _DATA["stamps"]["collection_finish"] = _now()


    def pytest_runtest_logstart(nodeid, location):
        if _STATE["first"] is None:
            _STATE["first"] = nodeid
            _DATA["stamps"]["first_logstart"] = _now()


    def pytest_runtest_logreport(report):
        if report.nodeid == _STATE["first"]:
            _DATA["phases"][report.when] = report.duration
        if report.failed:
            _DATA.setdefault("failed", []).append(report.nodeid)


    def pytest_runtest_logfinish(nodeid, location):
        now = _now()
        _DATA["stamps"]["last_logfinish"] = now
        if nodeid == _STATE["first"] and not _STATE["written_first"]:
            _STATE["written_first"] = True
            _DATA["stamps"]["first_logfinish"] = now
            _write()


    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(session):
        _DATA["stamps"]["sessionfinish_start"] = _now()
        try:
            return (yield)
        finally:
            _DATA["stamps"]["sessionfinish_end"] = _now()


    def pytest_unconfigure(config):
        _DATA["stamps"]["unconfigure"] = _now()
        _write(config)
    '''
)

STARTUP_TEST_DB = textwrap.dedent(
    """\
    from sqlalchemy import text

    import models


    def test_db(db_session):
        assert models.Base.metadata.tables
        assert db_session.execute(text("SELECT 1")).scalar() == 1
    """
)

STARTUP_TEST_NODB = textwrap.dedent(
    """\
    import models


    def test_nodb():
        assert models.Base.metadata.tables
    """
)


#: ini db_spare_clones_detach of the generated start-up projects (--detach): "true" measures
#: what a developer at a terminal gets ("auto" detaches there; these runs write to a pipe).
DETACH = {"value": "true"}


def pytest_ini(schema: str, extra: str = "") -> str:
    lines = ["[pytest]", "pythonpath = .", "asyncio_default_fixture_loop_scope = function"]
    lines.append(f"db_spare_clones_detach = {DETACH['value']}")
    # Do not drop other suites' stale clones on the shared server (see the module docstring);
    # the sweep's catalog queries still run.
    lines.append(f"db_sweep_age = {SWEEP_AGE}")
    if schema == "create_all":
        lines.append("db_metadata = models:Base.metadata")
    else:
        lines.append("db_alembic_ini = alembic.ini")
    return "\n".join(lines) + "\n" + extra


def write_project(root: Path, schema: str, tables: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "models.py").write_text(models_source(tables))
    (root / "conftest.py").write_text(CONFTEST)
    (root / "pytest.ini").write_text(pytest_ini(schema))
    (root / "test_db.py").write_text(STARTUP_TEST_DB)
    (root / "test_nodb.py").write_text(STARTUP_TEST_NODB)
    if schema == "alembic":
        (root / "alembic.ini").write_text(ALEMBIC_INI)
        versions = root / "migrations" / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        (root / "migrations" / "env.py").write_text(ENV_PY)
        (root / "migrations" / "script.py.mako").write_text("")
        (versions / "0001_initial.py").write_text(revision_source(tables))
    return root


#: The hand-written recipe for the xdist part (``recipe/conftest.py``, run with -p no:ctxdb):
#: a template built once under a file lock and kept across runs, one clone per xdist worker,
#: and SQLAlchemy's "join a Session into an external transaction" fixture.
RECIPE_CONFTEST = textwrap.dedent(
    """\
    import os
    from pathlib import Path

    import pytest
    from filelock import FileLock
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.orm import Session
    from sqlalchemy.pool import NullPool

    import models

    URL = make_url(os.environ["BENCH_PG_URL"])
    BASE = os.environ["BENCH_RECIPE_BASE"]


    @pytest.fixture(scope="session")
    def engine(worker_id):
        admin = create_engine(URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        template, name = f"{BASE}_tpl", f"{BASE}_{worker_id}"
        with FileLock(str(Path(__file__).with_name("recipe.lock"))):
            with admin.connect() as conn:
                found = conn.exec_driver_sql(
                    "SELECT 1 FROM pg_database WHERE datname = %(n)s", {"n": template}
                ).first()
                if found is None:
                    conn.exec_driver_sql(f'CREATE DATABASE "{template}"')
                    built = create_engine(URL.set(database=template), poolclass=NullPool)
                    with built.begin() as schema:
                        models.Base.metadata.create_all(schema)
                    built.dispose()
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
                conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        engine = create_engine(URL.set(database=name))
        yield engine
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


    @pytest.fixture
    def db_session(engine):
        with engine.connect() as conn:
            trans = conn.begin()
            session = Session(bind=conn, join_transaction_mode="create_savepoint")
            yield session
            session.close()
            trans.rollback()
    """
)


def write_xdist_project(root: Path, tests: int, tables: int, modules: int = 20) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "models.py").write_text(models_source(tables))
    (root / "conftest.py").write_text(CONFTEST)
    (root / "pytest.ini").write_text(pytest_ini("create_all"))
    for kind in ("db", "floor", "recipe"):
        (root / kind).mkdir(exist_ok=True)
    (root / "recipe" / "conftest.py").write_text(RECIPE_CONFTEST)
    per = [tests // modules + (1 if i < tests % modules else 0) for i in range(modules)]
    number = 0
    for m, count in enumerate(per):
        db = ["from models import Item, Order, User", ""]
        floor = ["import models", ""]
        for _ in range(count):
            db += [
                "",
                f"def test_{number:05d}(db_session):",
                f'    user = User(name="user-{number}", email="u{number}@example.com")',
                '    order = Order(user=user, total=3, items=[Item(sku="a", qty=1), Item(sku="b", qty=2)])',
                "    db_session.add(order)",
                "    db_session.commit()",
                "    assert order.id is not None and len(order.items) == 2",
                "",
            ]
            floor += [
                "",
                f"def test_{number:05d}():",
                f"    assert {number} >= 0",
                "",
            ]
            number += 1
        (root / "db" / f"test_m{m:02d}.py").write_text("\n".join(db))
        (root / "recipe" / f"test_m{m:02d}.py").write_text("\n".join(db))
        (root / "floor" / f"test_m{m:02d}.py").write_text("\n".join(floor))
    return root


# --------------------------------------------------------------------------------------------
# Running pytest
# --------------------------------------------------------------------------------------------


def child_env(instrument: bool = True) -> dict[str, str]:
    env = dict(os.environ)
    # Set on this machine; it stops pytest from caching rewritten test modules (see docstring).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_CTXDB_URL", None)
    env["BENCH_INSTRUMENT"] = "1" if instrument else "0"
    return env


@dataclass
class RunResult:
    wall: float
    data: dict[str, Any]
    workers: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: 1-minute load average when the run started (other work on the shared machine).
    load: float = 0.0
    #: user + system CPU seconds of the pytest process and its (xdist worker) children.
    cpu: float = 0.0

    @property
    def stamps(self) -> dict[str, float]:
        return self.data.get("stamps", {})

    def span_total(self, name: str, data: dict[str, Any] | None = None) -> float | None:
        spans = [s for s in (data or self.data).get("spans", []) if s[0] == name]
        return sum(s[2] for s in spans) if spans else None


def run_pytest(
    cwd: Path, args: Sequence[str], out_dir: Path, *, instrument: bool = True, label: str = ""
) -> RunResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("out.*.json"):
        old.unlink()
    env = child_env(instrument)
    env["BENCH_OUT"] = str(out_dir / "out")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env["BENCH_T0"] = repr(time.perf_counter())
    start = float(env["BENCH_T0"])
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        sys.stderr.write(f"\n--- {label} failed: {' '.join(cmd)} (in {cwd})\n")
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"pytest exited with {proc.returncode}")
    files = {p.name.split(".")[1]: json.loads(p.read_text()) for p in out_dir.glob("out.*.json")}
    main = files.pop("main", {})
    if main.get("failed"):
        raise SystemExit(f"{label}: tests failed: {main['failed'][:5]}")
    return RunResult(wall, main, files, load=load, cpu=cpu)


# --------------------------------------------------------------------------------------------
# Statistics and output
# --------------------------------------------------------------------------------------------


def summary(values: Iterable[float | None]) -> dict[str, float] | None:
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    if len(vals) >= 2:
        q1, _, q3 = statistics.quantiles(vals, n=4, method="inclusive")
    else:
        q1 = q3 = vals[0]
    return {
        "median": statistics.median(vals),
        "p25": q1,
        "p75": q3,
        "min": vals[0],
        "max": vals[-1],
        "n": len(vals),
    }


def ms(s: dict[str, float] | None, spread: bool = True) -> str:
    if s is None:
        return "-"
    text = f"{s['median'] * 1000:.0f}"
    if spread:
        text += f" ({s['p25'] * 1000:.0f}-{s['p75'] * 1000:.0f}; {s['min'] * 1000:.0f}..{s['max'] * 1000:.0f})"
    return text


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Part 1: start-up
# --------------------------------------------------------------------------------------------


@dataclass
class StartupConfig:
    backend: str
    schema: str
    tables: int
    mode: str
    project: Path
    base: str
    pairs: list[tuple[RunResult, RunResult]] = field(default_factory=list)
    #: (db, nodb) wall seconds of uninstrumented runs, start to exit, run back to back.
    whole: list[tuple[float, float]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.backend}/{self.schema}/{self.tables}/{self.mode}"

    def args(self, pg_url: str, variant: str) -> list[str]:
        out = [f"test_{variant}.py"]
        if self.backend == "sqlite":
            out += ["--db-test-name", self.base]
        else:
            # The URL names the (empty) database <base>, so the run names its databases as
            # users' runs do: test_<base>_<run id>, template test_<base>_tpl_<fingerprint>.
            out += ["--db-url", self.server_url(pg_url)]
        if self.mode == "cold":
            out.append("--db-create")
        return out


    def server(self, pg_url: str) -> str:
        """The server URL given to the benchmark (its database is only connected to)."""
        return pg_url if self.backend == "postgresql" else os.environ["BENCH_MY_URL"]

    def server_url(self, pg_url: str) -> str:
        """The URL the runs get: the server's, naming the database ``<base>``."""
        from sqlalchemy.engine import make_url

        url = make_url(self.server(pg_url)).set(database=self.base)
        return url.render_as_string(hide_password=False)

    def create_url_database(self, pg_url: str) -> None:
        """Create the empty database ``<base>`` the runs' URL names (servers), if missing."""
        if self.backend == "sqlite":
            return
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        if self.backend == "postgresql":
            query = "SELECT 1 FROM pg_database WHERE datname = %(n)s"
        else:
            query = "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %(n)s"
        engine = create_engine(
            self.server(pg_url), poolclass=NullPool, isolation_level="AUTOCOMMIT"
        )
        try:
            with engine.connect() as conn:
                if conn.exec_driver_sql(query, {"n": self.base}).first() is None:
                    quoted = conn.dialect.identifier_preparer.quote(self.base)
                    conn.exec_driver_sql(f"CREATE DATABASE {quoted}")
        finally:
            engine.dispose()


SPAN_COLUMNS = (
    ("RunState.provision", "provision"),
    ("check_driver", "check_driver"),
    ("load_metadata", "load_metadata"),
    ("fingerprint", "fingerprint"),
    ("lock_wait", "lock"),
    ("_run:<lambda>", "admin connection (_run)"),
    ("sweep", "sweep"),
    ("schema_build", "build"),
    ("take_spare", "take spare"),
    ("clone_database", "CREATE..TEMPLATE+COMMENT"),
    ("TestDatabase.create", "create total"),
    ("TestDatabase.drop", "drop"),
    ("recycle", "end: kept as spare"),
    ("wait_for_spares", "end: wait for spare"),
    ("gc_gen2", "gen-2 GC (anywhere)"),
)


#: whole-process targets of issue #14 (one-test run minus a no-database run, warm), in ms.
WHOLE_TARGETS_MS = {"postgresql": 150.0, "mariadb": 250.0, "sqlite": 50.0}


def run_whole(cwd: Path, args: Sequence[str], label: str) -> float:
    """Wall seconds of one uninstrumented pytest process, from its start to its exit (the
    timing plugin writes nothing; the plugin's own end of run, its drop or reuse of the
    run's database and any wait for a spare clone, included)."""
    env = child_env(instrument=False)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(f"\n--- {label} failed: {' '.join(cmd)} (in {cwd})\n")
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"pytest exited with {proc.returncode}")
    return wall


def run_startup(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    configs: list[StartupConfig] = []
    for backend in args.backends:
        for schema in args.schemas:
            for tables in args.tables:
                tag = {"create_all": "ca", "alembic": "al"}[schema]
                short = {"postgresql": "pg", "sqlite": "sl", "mariadb": "my"}[backend]
                project = work / f"startup_{schema}_{tables}"
                if not project.exists():
                    write_project(project, schema, tables)
                base = f"{PREFIX}{short}_{tag}{tables}"
                for mode in args.modes:
                    configs.append(StartupConfig(backend, schema, tables, mode, project, base))
                configs[-1].create_url_database(args.pg_url)
    print(f"start-up: {len(configs)} configurations x {args.repeat} pairs", flush=True)
    out_dir = work / "out"
    # Warm-up: fill bytecode / assertion-rewrite caches and build every template once.
    for cfg in configs:
        for variant in ("nodb", "db"):
            run_pytest(cfg.project, cfg.args(args.pg_url, variant), out_dir, label=cfg.key)
    for r in range(args.repeat):
        order = configs if r % 2 == 0 else list(reversed(configs))
        for cfg in order:
            variants = ("nodb", "db") if r % 2 == 0 else ("db", "nodb")
            got = {
                v: run_pytest(cfg.project, cfg.args(args.pg_url, v), out_dir, label=cfg.key)
                for v in variants
            }
            cfg.pairs.append((got["db"], got["nodb"]))
            # The same pair again, uninstrumented and timed from outside, back to back.
            walls = {
                v: run_whole(cfg.project, cfg.args(args.pg_url, v), cfg.key) for v in variants
            }
            cfg.whole.append((walls["db"], walls["nodb"]))
        print(f"  round {r + 1}/{args.repeat} done", flush=True)

    results: dict[str, Any] = {}
    for cfg in configs:
        db_first = [d.stamps["first_logfinish"] for d, _ in cfg.pairs]
        nodb_first = [n.stamps["first_logfinish"] for _, n in cfg.pairs]
        entry: dict[str, Any] = {
            "backend": cfg.backend,
            "schema": cfg.schema,
            "tables": cfg.tables,
            "mode": cfg.mode,
            "base": cfg.base,
            "startup_added": summary(
                d.stamps["first_logfinish"] - n.stamps["first_logfinish"] for d, n in cfg.pairs
            ),
            "wall_added": summary(d.wall - n.wall for d, n in cfg.pairs),
            # Whole process, uninstrumented: start to exit, db - nodb, paired.
            "whole_added": summary(d - n for d, n in cfg.whole),
            "whole_db": summary(d for d, _ in cfg.whole),
            "whole_nodb": summary(n for _, n in cfg.whole),
            "teardown_added": summary(
                (d.wall - d.stamps["first_logfinish"]) - (n.wall - n.stamps["first_logfinish"])
                for d, n in cfg.pairs
            ),
            # What the plugin adds inside the process, free of the machine's start-up noise:
            # provisioning plus the first test's own extra time (engine, first connection).
            "inprocess_added": summary(
                (d.span_total("RunState.provision") or 0.0)
                + (d.stamps["first_logfinish"] - d.stamps["first_logstart"])
                - (n.stamps["first_logfinish"] - n.stamps["first_logstart"])
                for d, n in cfg.pairs
            ),
            # Should be 0: both variants import and collect the same; its spread is the noise.
            "collection_delta": summary(
                d.stamps["collection_finish"] - n.stamps["collection_finish"] for d, n in cfg.pairs
            ),
            "startup_db": summary(db_first),
            "startup_nodb": summary(nodb_first),
            "load": summary(d.load for d, _ in cfg.pairs),
            "wall_db": summary(d.wall for d, _ in cfg.pairs),
            "wall_nodb": summary(n.wall for _, n in cfg.pairs),
            "first_setup_db": summary(d.data["phases"].get("setup") for d, _ in cfg.pairs),
            "first_setup_nodb": summary(n.data["phases"].get("setup") for _, n in cfg.pairs),
            "spans": {
                name: summary(d.span_total(name) for d, _ in cfg.pairs) for name, _ in SPAN_COLUMNS
            },
            "raw": [
                {
                    "db": {"wall": d.wall, "load": d.load, **d.data},
                    "nodb": {"wall": n.wall, "load": n.load, **n.data},
                }
                for d, n in cfg.pairs
            ],
        }
        results[cfg.key] = entry
    return results


def print_startup(results: dict[str, Any], target_ms: float) -> None:
    print("\n### Whole process: a one-test run minus a no-database run (paired; ms)\n")
    print(
        "uninstrumented runs timed from outside, start to exit, the two of a pair back to "
        "back; median (p25-p75; min..max) over the pairs\n"
    )
    rows = []
    for e in results.values():
        target = WHOLE_TARGETS_MS.get(e["backend"], target_ms)
        verdict = ""
        if e["mode"] == "warm" and e.get("whole_added"):
            ok = e["whole_added"]["median"] * 1000 <= target
            verdict = f"{'yes' if ok else '**no**'} (<= {target:.0f})"
        rows.append(
            [
                e["backend"],
                e["schema"],
                e["tables"],
                e["mode"],
                ms(e.get("whole_added")),
                ms(e.get("whole_nodb"), False),
                ms(e.get("whole_db"), False),
                ms(e["inprocess_added"]),
                verdict,
            ]
        )
    print(
        table(
            [
                "backend",
                "schema",
                "tables",
                "mode",
                "whole process added",
                "nodb run",
                "db run",
                "in-process added",
                "warm target met",
            ],
            rows,
        )
    )
    print("\n### Start-up added by a database test (db - nodb, paired; ms)\n")
    print("median (p25-p75; min..max) over the pairs\n")
    rows = []
    for e in results.values():
        med = e["startup_added"]["median"] * 1000
        inproc = e["inprocess_added"]["median"] * 1000
        verdict = ""
        if e["mode"] == "warm":
            verdict = " / ".join("yes" if v <= target_ms else "**no**" for v in (med, inproc))
        rows.append(
            [
                e["backend"],
                e["schema"],
                e["tables"],
                e["mode"],
                ms(e["startup_added"]),
                ms(e["inprocess_added"]),
                ms(e["collection_delta"]),
                ms(e["wall_added"]),
                ms(e["teardown_added"]),
                ms(e["startup_nodb"], False),
                ms(e["startup_db"], False),
                verdict,
            ]
        )
    print(
        table(
            [
                "backend",
                "schema",
                "tables",
                "mode",
                "start-up added",
                "in-process added",
                "collection delta (noise)",
                "wall added",
                "teardown added",
                "start-up nodb",
                "start-up db",
                f"warm <= {target_ms:.0f} ms (start-up / in-process)",
            ],
            rows,
        )
    )
    print("\n### Where the db run's provisioning went (instrumented spans, medians, ms)\n")
    rows = []
    for e in results.values():
        row = [e["backend"], e["schema"], e["tables"], e["mode"]]
        for name, _ in SPAN_COLUMNS:
            s = e["spans"].get(name)
            row.append("-" if s is None else f"{s['median'] * 1000:.1f}")
        row.append(ms(e["first_setup_db"], False) + " / " + ms(e["first_setup_nodb"], False))
        rows.append(row)
    print(
        table(
            ["backend", "schema", "tables", "mode"]
            + [label for _, label in SPAN_COLUMNS]
            + ["1st test setup db / nodb"],
            rows,
        )
    )


# --------------------------------------------------------------------------------------------
# Part 2: bare clone time on PostgreSQL
# --------------------------------------------------------------------------------------------


def pg_admin(pg_url: str) -> tuple[Any, Any]:
    """An AUTOCOMMIT engine on ``pg_url`` and one open connection of it."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(pg_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    return engine, engine.connect()


def pg_templates(conn: Any) -> list[str]:
    rows = conn.exec_driver_sql(
        "SELECT datname FROM pg_database WHERE shobj_description(oid, 'pg_database') "
        "LIKE 'created by pytest-ctxdb%%' ORDER BY datname"
    ).all()
    return [r[0] for r in rows if PREFIX in r[0] and "_tpl_" in r[0]]


def psql_base(pg_url: str) -> list[str]:
    from sqlalchemy.engine import make_url

    url = make_url(pg_url)
    cmd = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", url.host or "localhost"]
    cmd += [
        "-p",
        str(url.port or 5432),
        "-U",
        url.username or "postgres",
        "-d",
        url.database or "postgres",
    ]
    return cmd


def ensure_templates(args: argparse.Namespace, work: Path) -> None:
    """Build the PostgreSQL templates of the start-up part (one db run each) if missing."""
    for schema in args.schemas:
        for tables in args.tables:
            tag = {"create_all": "ca", "alembic": "al"}[schema]
            project = work / f"startup_{schema}_{tables}"
            if not project.exists():
                write_project(project, schema, tables)
            cfg = StartupConfig(
                "postgresql", schema, tables, "warm", project, f"{PREFIX}pg_{tag}{tables}"
            )
            cfg.create_url_database(args.pg_url)
            run_pytest(project, cfg.args(args.pg_url, "db"), work / "out", label=cfg.key)


def run_clone(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from sqlalchemy.engine import make_url

    engine, conn = pg_admin(args.pg_url)
    results: dict[str, Any] = {}
    target = f"{PREFIX}clone"
    env = dict(os.environ)
    if make_url(args.pg_url).password:
        env["PGPASSWORD"] = str(make_url(args.pg_url).password)
    version = conn.dialect.server_version_info or (0,)
    try:
        templates = pg_templates(conn)
        if not templates:
            ensure_templates(args, work)
            templates = pg_templates(conn)
        for tpl in templates:
            size = conn.exec_driver_sql(f"SELECT pg_database_size('{tpl}')").scalar()
            timings: dict[str, list[float | None]] = {
                k: []
                for k in (
                    "create_sqlalchemy",
                    "drop_sqlalchemy",
                    "create_file_copy",
                    "drop_file_copy",
                    "create_psql_server",
                    "create_psql_wall",
                    "drop_after_psql",
                )
            }
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{target}"')

            def timed(sql: str, key: str, timings: dict[str, list[float | None]] = timings) -> None:
                t = time.perf_counter()
                conn.exec_driver_sql(sql)
                timings[key].append(time.perf_counter() - t)

            for _ in range(args.clone_repeat):
                # One clone per run is what a test run does: let the server settle between
                # iterations (each DROP DATABASE requests a checkpoint).
                time.sleep(args.clone_pause)
                # The default strategy (WAL_LOG since PostgreSQL 15), as the plugin runs it.
                timed(f'CREATE DATABASE "{target}" TEMPLATE "{tpl}"', "create_sqlalchemy")
                timed(f'DROP DATABASE "{target}"', "drop_sqlalchemy")
                time.sleep(args.clone_pause)
                if version >= (15,):  # the pre-15 way: copy the files, two checkpoints
                    timed(
                        f'CREATE DATABASE "{target}" TEMPLATE "{tpl}" STRATEGY FILE_COPY',
                        "create_file_copy",
                    )
                    timed(f'DROP DATABASE "{target}"', "drop_file_copy")
                    time.sleep(args.clone_pause)
                cmd = psql_base(args.pg_url) + [
                    "-c",
                    "\\timing on",
                    "-c",
                    f'CREATE DATABASE "{target}" TEMPLATE "{tpl}"',
                ]
                t = time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
                timings["create_psql_wall"].append(time.perf_counter() - t)
                if proc.returncode != 0:
                    raise SystemExit(f"psql failed: {proc.stderr}")
                found = re.findall(r"Time: ([0-9.]+) ms", proc.stdout)
                timings["create_psql_server"].append(float(found[-1]) / 1000 if found else None)
                timed(f'DROP DATABASE "{target}"', "drop_after_psql")
            results[tpl] = {"size_mb": size / 1e6, **{k: summary(v) for k, v in timings.items()}}
            print(f"  clone {tpl}: done", flush=True)
    finally:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{target}"')
        conn.close()
        engine.dispose()
    return results


def print_clone(results: dict[str, Any], startup: dict[str, Any] | None, target_ms: float) -> None:
    print("\n### Bare `CREATE DATABASE x TEMPLATE tpl` on PostgreSQL (ms)\n")
    rows = [
        [
            tpl,
            f"{r['size_mb']:.1f}",
            ms(r["create_sqlalchemy"]),
            ms(r["create_psql_server"]),
            ms(r["create_psql_wall"]),
            ms(r["drop_sqlalchemy"]),
            ms(r["create_file_copy"]),
            ms(r["drop_file_copy"]),
        ]
        for tpl, r in results.items()
    ]
    print(
        table(
            [
                "template",
                "size MB",
                "CREATE (SQLAlchemy)",
                "CREATE (psql \\timing)",
                "psql process wall",
                "DROP",
                "CREATE .. STRATEGY FILE_COPY",
                "DROP after it",
            ],
            rows,
        )
    )
    if startup:
        print(
            f"\n### The plugin's own clone in warm runs (instrumented, ms; target <= {target_ms:.0f})\n"
        )
        rows = []
        for e in startup.values():
            if e["backend"] != "postgresql" or e["mode"] != "warm":
                continue
            sp = e["spans"]
            total = sp.get("TestDatabase.create")
            rows.append(
                [
                    f"{e['schema']}/{e['tables']}",
                    ms(sp.get("take_spare")),
                    ms(sp.get("clone_database")),
                    ms(sp.get("_run:<lambda>")),
                    ms(sp.get("fingerprint")),
                    ms(total),
                    "yes" if total and total["median"] * 1000 <= target_ms else "**no**",
                ]
            )
        print(
            table(
                [
                    "schema/tables",
                    "take spare (RENAME + COMMENT)",
                    "CREATE..TEMPLATE + COMMENT (no spare)",
                    "admin connection: check, sweep, spare or clone",
                    "fingerprint",
                    "TestDatabase.create",
                    "create <= target",
                ],
                rows,
            )
        )


# --------------------------------------------------------------------------------------------
# Part 3: pytest-xdist
# --------------------------------------------------------------------------------------------


def run_xdist(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    project = work / "xdist"
    if not project.exists():
        write_xdist_project(project, args.xdist_tests, args.xdist_tables)
    out_dir = work / "out_xdist"
    results: dict[str, Any] = {}
    for backend in args.xdist_backends:
        short = {"postgresql": "pg", "sqlite": "sl"}[backend]
        url_args = ["--db-url", args.pg_url] if backend == "postgresql" else []

        def db_args(workers: int) -> list[str]:
            # One base (template and spare clones) per variant: each run finds what the
            # previous run of the same command left, as when a user repeats one command.
            return ["-n", str(workers), "--db-test-name", f"{PREFIX}{short}_xd{workers}"]

        variants = {
            "db -n 0": ["db", *db_args(0), *url_args],
            "db -n 2": ["db", *db_args(2), *url_args],
            "floor -n 0": ["floor", "-n", "0", "-p", "no:ctxdb"],
            "floor -n 2": ["floor", "-n", "2", "-p", "no:ctxdb"],
        }
        if backend == "postgresql" and args.recipe:
            variants["recipe -n 0"] = ["recipe", "-n", "0", "-p", "no:ctxdb"]
            variants["recipe -n 2"] = ["recipe", "-n", "2", "-p", "no:ctxdb"]
        runs: dict[str, list[RunResult]] = {v: [] for v in variants}
        print(f"xdist ({backend}): warm-up", flush=True)
        for name, a in variants.items():
            run_pytest(project, a, out_dir, label=name)
        for r in range(args.xdist_repeat):
            names = list(variants) if r % 2 == 0 else list(reversed(variants))
            for name in names:
                runs[name].append(run_pytest(project, variants[name], out_dir, label=name))
            print(f"  round {r + 1}/{args.xdist_repeat} done", flush=True)
        entry: dict[str, Any] = {}
        for name, got in runs.items():
            workers_create = [
                w_res.span_total("TestDatabase.create", w)
                for w_res in got
                for w in w_res.workers.values()
            ]
            workers_lock = [
                w_res.span_total("lock_wait", w) for w_res in got for w in w_res.workers.values()
            ]
            workers_clone = [
                w_res.span_total("clone_database", w)
                for w_res in got
                for w in w_res.workers.values()
            ]
            entry[name] = {
                "wall": summary(g.wall for g in got),
                "first_test": summary(g.stamps.get("first_logfinish") for g in got),
                "last_test": summary(g.stamps.get("last_logfinish") for g in got),
                "main_create": summary(g.span_total("TestDatabase.create") for g in got),
                "worker_create": summary(workers_create),
                "worker_lock_wait": summary(workers_lock),
                "worker_clone_database": summary(workers_clone),
                "raw_wall": [g.wall for g in got],
                "load": summary(g.load for g in got),
                "cpu": summary(g.cpu for g in got),
            }
        for kind in ("db", "floor", "recipe"):
            if f"{kind} -n 0" not in entry:
                continue
            n0, n2 = entry[f"{kind} -n 0"]["wall"], entry[f"{kind} -n 2"]["wall"]
            paired = [
                a / b
                for a, b in zip(
                    entry[f"{kind} -n 0"]["raw_wall"], entry[f"{kind} -n 2"]["raw_wall"]
                )
            ]
            entry[f"{kind} speed-up"] = {
                "of_medians": n0["median"] / n2["median"],
                "per_round": summary(paired),
            }
        results[backend] = entry
    return results


def print_xdist(results: dict[str, Any], tests: int, target: float) -> None:
    for backend, e in results.items():
        print(f"\n### pytest-xdist on {backend}: {tests} tests (s; median (p25-p75; min..max))\n")
        rows = []
        for name in (
            "db -n 0",
            "db -n 2",
            "recipe -n 0",
            "recipe -n 2",
            "floor -n 0",
            "floor -n 2",
        ):
            if name not in e:
                continue
            r = e[name]

            def sec(s: dict[str, float] | None) -> str:
                if s is None:
                    return "-"
                return (
                    f"{s['median']:.2f} ({s['p25']:.2f}-{s['p75']:.2f}; "
                    f"{s['min']:.2f}..{s['max']:.2f})"
                )

            create = r["worker_create"] or r["main_create"]

            def med_max(s: dict[str, float] | None) -> str:
                return "-" if not s else f"{s['median'] * 1000:.0f} (max {s['max'] * 1000:.0f})"

            rows.append(
                [
                    name,
                    sec(r["wall"]),
                    sec(r["first_test"]),
                    sec(r["last_test"]),
                    med_max(create),
                    med_max(r["worker_lock_wait"]),
                    med_max(r["worker_clone_database"]),
                    sec(r["cpu"]),
                    f"{r['load']['median']:.1f} ({r['load']['min']:.1f}..{r['load']['max']:.1f})",
                ]
            )
        print(
            table(
                [
                    "variant",
                    "wall",
                    "1st test done",
                    "last test done",
                    "TestDatabase.create (ms; per worker under -n 2)",
                    "lock wait (ms)",
                    "CREATE..TEMPLATE+COMMENT (ms)",
                    "client CPU s",
                    "load avg at start",
                ],
                rows,
            )
        )
        print()
        for kind in ("db", "recipe", "floor"):
            if f"{kind} speed-up" not in e:
                continue
            s = e[f"{kind} speed-up"]
            verdict = ""
            if kind == "db":
                verdict = (
                    f" (target >= {target:.2f}: {'met' if s['of_medians'] >= target else 'MISSED'})"
                )
            pr = s["per_round"]
            print(
                f"- {kind}: -n 2 speed-up = {s['of_medians']:.2f}x from the medians; per round "
                f"{pr['median']:.2f}x ({pr['min']:.2f}..{pr['max']:.2f}){verdict}"
            )


# --------------------------------------------------------------------------------------------
# Clean-up
# --------------------------------------------------------------------------------------------


def lock_key(url_text: str | None, base: str) -> str:
    """The plugin's lock file name for ``base`` (mirrors ``_database._lock_key``)."""
    from sqlalchemy.engine import make_url

    url = make_url(url_text or "sqlite://")
    where = f"{url.get_backend_name()}://{url.host}:{url.port}/{base}"
    return hashlib.sha256(where.encode()).hexdigest()[:16]


def cleanup(args: argparse.Namespace, bases: Iterable[str]) -> list[str]:
    removed: list[str] = []
    if "postgresql" in args.backends or "postgresql" in args.xdist_backends:
        engine, conn = pg_admin(args.pg_url)
        try:
            names = [
                r[0]
                for r in conn.exec_driver_sql("SELECT datname FROM pg_database").all()
                if r[0].startswith((PREFIX, f"test_{PREFIX}"))
            ]
            for name in names:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                removed.append(f"database {name}")
        finally:
            conn.close()
            engine.dispose()
    if "mariadb" in args.backends:
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        engine = create_engine(args.my_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                for (name,) in conn.exec_driver_sql("SHOW DATABASES").all():
                    if name.startswith((PREFIX, f"test_{PREFIX}")):
                        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
                        removed.append(f"database {name}")
        finally:
            engine.dispose()
    if TEMPLATE_DIR.is_dir():
        for path in TEMPLATE_DIR.glob(f"{PREFIX}*"):
            path.unlink(missing_ok=True)
            removed.append(str(path))
        for base in bases:
            for url in (args.pg_url, args.my_url, None):
                lock = TEMPLATE_DIR / f"{lock_key(url, base)}.lock"
                if lock.exists():
                    lock.unlink(missing_ok=True)
                    removed.append(str(lock))
    return removed


# --------------------------------------------------------------------------------------------


def csv(kind: type) -> Any:
    def parse(text: str) -> list[Any]:
        return [kind(x) for x in text.split(",") if x.strip()]

    return parse


def plugin_version() -> str:
    """The plugin's git commit, and whether its working tree differs (it is installed editable)."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "pytest_ctxdb"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    changed = [line for line in dirty if line.strip()]
    return head + (f" + {len(changed)} uncommitted file(s) in pytest_ctxdb/" if changed else "")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--my-url", default="mysql+pymysql://root@127.0.0.1:3306/test")
    parser.add_argument("--parts", type=csv(str), default=["startup", "clone", "xdist"])
    parser.add_argument(
        "--backends", type=csv(str), default=["postgresql", "mariadb", "sqlite"]
    )
    parser.add_argument("--schemas", type=csv(str), default=["create_all", "alembic"])
    parser.add_argument("--tables", type=csv(int), default=[20, 200])
    parser.add_argument("--modes", type=csv(str), default=["cold", "warm"])
    parser.add_argument("--repeat", type=int, default=9, help="start-up pairs per config (>= 7)")
    parser.add_argument("--clone-repeat", type=int, default=15)
    parser.add_argument(
        "--clone-pause", type=float, default=1.0, help="seconds between bare clones"
    )
    parser.add_argument("--xdist-tests", type=int, default=2000)
    parser.add_argument("--xdist-tables", type=int, default=20)
    parser.add_argument("--xdist-repeat", type=int, default=5, help=">= 3")
    parser.add_argument("--xdist-backends", type=csv(str), default=["postgresql"])
    parser.add_argument(
        "--no-recipe",
        dest="recipe",
        action="store_false",
        help="xdist part: leave out the hand-written recipe (PostgreSQL only)",
    )
    parser.add_argument(
        "--detach",
        choices=("auto", "true", "false"),
        default="true",
        help="ini db_spare_clones_detach of the start-up projects (true: as at a terminal)",
    )
    parser.add_argument("--startup-target-ms", type=float, default=150.0)
    parser.add_argument("--clone-target-ms", type=float, default=300.0)
    parser.add_argument("--xdist-target", type=float, default=1.5)
    parser.add_argument("--workdir", type=Path, default=None, help="keep generated projects here")
    parser.add_argument("--keep", action="store_true", help="keep databases and templates")
    parser.add_argument("--json", type=Path, default=None, help="write raw results here")
    args = parser.parse_args(argv)
    DETACH["value"] = args.detach

    # Read by the recipe's conftest (xdist part); copied into every child's environment.
    os.environ["BENCH_PG_URL"] = args.pg_url
    os.environ["BENCH_MY_URL"] = args.my_url
    os.environ["BENCH_RECIPE_BASE"] = f"{PREFIX}pg_rc"
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-startup-"))
    work.mkdir(parents=True, exist_ok=True)
    bases = [
        f"{prefix}{s}_{t}{n}"
        for prefix in (PREFIX, f"test_{PREFIX}")
        for s in ("pg", "sl", "my")
        for t in ("ca", "al")
        for n in args.tables
    ] + [f"{PREFIX}{s}_xd{n}" for s in ("pg", "sl") for n in (0, 2)] + [f"{PREFIX}pg_rc"]
    print(
        f"python {sys.version.split()[0]}; work dir {work}; PYTHONDONTWRITEBYTECODE unset in children"
    )
    version = plugin_version()
    print(f"pytest-ctxdb at {version}; load average {os.getloadavg()[0]:.1f}")
    results: dict[str, Any] = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "plugin": version,
    }
    t0 = time.perf_counter()
    try:
        if "startup" in args.parts:
            results["startup"] = run_startup(args, work)
        if "clone" in args.parts:
            results["clone"] = run_clone(args, work)
        if "xdist" in args.parts:
            results["xdist"] = run_xdist(args, work)
    finally:
        if not args.keep:
            removed = cleanup(args, bases)
            print(f"clean-up: removed {len(removed)} databases/files")
        if args.workdir is None and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if "startup" in results:
        print_startup(results["startup"], args.startup_target_ms)
    if "clone" in results:
        print_clone(results["clone"], results.get("startup"), args.clone_target_ms)
    if "xdist" in results:
        print_xdist(results["xdist"], args.xdist_tests, args.xdist_target)
    after = plugin_version()
    changed = "" if after == version else f" (changed during the run: now {after})"
    print(f"\n(total {time.perf_counter() - t0:.0f} s; pytest-ctxdb at {version}{changed})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
