"""Shared helpers for pytest-ctxdb's own tests.

Every backend test runs the plugin the way users meet it: ``pytester`` writes a test suite,
runs it with ``--db-url`` pointing at a real server (or none, for embedded SQLite), and the
outcome is checked; then a *separate* connection checks that nothing was left behind.

Servers come from the environment, defaulting to this machine's services:
``CTXDB_TEST_POSTGRESQL_URL`` (``embedded``: the embedded PostgreSQL server of
``--db-embedded``) and ``CTXDB_TEST_MARIADB_URL``. A backend whose server is not
reachable is skipped with the reason; under ``CI=true`` that is a failure instead.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache

import pytest

# Import every dialect module the outer tests use before any test runs: the pytester fixture
# restores sys.modules after each test, so a dialect first imported inside a test would be
# imported again by the next one, and SQLAlchemy warns (an error here) that its functions
# are "already registered".
import sqlalchemy.dialects.mysql.pymysql  # noqa: F401
import sqlalchemy.dialects.postgresql.psycopg  # noqa: F401
import sqlalchemy.dialects.postgresql.psycopg2  # noqa: F401
import sqlalchemy.dialects.sqlite.pysqlite  # noqa: F401
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

pytest_plugins = ["pytester"]



def embedded_server_url() -> str:
    """``CTXDB_TEST_POSTGRESQL_URL=embedded``: the PostgreSQL tests run on the embedded server
    (``--db-embedded postgresql``'s, in ``CTXDB_TEST_EMBEDDED_DIR`` or the user's cache
    directory), started now; this process holds a lease on it until it exits."""
    import atexit
    from pathlib import Path

    from pytest_ctxdb.provision import EmbeddedServer

    directory = os.environ.get("CTXDB_TEST_EMBEDDED_DIR")
    server = EmbeddedServer("postgresql", Path(directory) if directory else None)
    url = server.url()
    atexit.register(server.release)
    return url.render_as_string(hide_password=False)


SERVER_URLS = {
    "postgresql": os.environ.get(
        "CTXDB_TEST_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get("CTXDB_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
if SERVER_URLS["postgresql"] == "embedded":
    SERVER_URLS["postgresql"] = embedded_server_url()


@dataclass(frozen=True)
class Backend:
    """One database backend as the tests drive it.

    :ivar name: ``"sqlite"``, ``"postgresql"`` or ``"mariadb"``.
    :ivar url: the server URL passed as ``--db-url``, or ``None`` for embedded SQLite.
    """

    name: str
    url: URL | None
    args: tuple[str, ...] = field(default=())

    def runpytest(self, pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
        """Run pytest in a subprocess against this backend."""
        return pytester.runpytest_subprocess(*self.args, *args)

    def run_named(self, pytester: pytest.Pytester, name: str, *args: str) -> pytest.RunResult:
        """Run the inner suite with test database ``name`` (``--db-test-name``), ``-ra`` and no
        cache; the run's test database must be gone afterwards."""
        result = self.runpytest(
            pytester, *args, "-ra", "-p", "no:cacheprovider", "--db-test-name", name
        )
        assert name not in self.leftover_test_databases(), f"{name} was left on the server"
        return result

    def leftover_test_databases(self) -> list[str]:
        """Names of databases carrying pytest-ctxdb's ownership mark still on the server."""
        if self.url is None:
            return []
        engine = create_engine(self.url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                if self.name == "postgresql":
                    rows = conn.execute(
                        text(
                            "SELECT datname FROM pg_database "
                            "WHERE shobj_description(oid, 'pg_database') LIKE 'created by pytest-ctxdb%'"
                        )
                    )
                else:
                    rows = conn.execute(
                        text(
                            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA "
                            "WHERE SCHEMA_COMMENT LIKE 'created by pytest-ctxdb%'"
                        )
                    )
                return [row[0] for row in rows]
        finally:
            engine.dispose()


#: backends the ``backend`` fixture runs on; ``CTXDB_TEST_BACKENDS=sqlite`` narrows it (tox envs).
SELECTED_BACKENDS = [
    name
    for name in os.environ.get("CTXDB_TEST_BACKENDS", "sqlite,postgresql").split(",")
    if name.strip()
]


@cache
def server_problem(name: str) -> str | None:
    """Why the server of backend ``name`` cannot be used, or ``None`` if it can."""
    url = make_url(SERVER_URLS[name])
    try:
        engine = create_engine(url, poolclass=NullPool)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        return f"{name} server at {url.host}:{url.port} not reachable: {type(exc).__name__}"
    return None


def require_server(name: str) -> None:
    """Skip (or, under CI=true, fail) when backend ``name``'s server is unavailable."""
    problem = server_problem(name)
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {problem}")
        pytest.skip(problem)


def make_backend(name: str) -> Backend:
    if name not in SELECTED_BACKENDS:
        pytest.skip(f"backend {name} not selected by CTXDB_TEST_BACKENDS")
    if name == "sqlite":
        return Backend("sqlite", None)
    require_server(name)
    url = make_url(SERVER_URLS[name])
    return Backend(name, url, ("--db-url", url.render_as_string(hide_password=False)))


@pytest.fixture(params=[name for name in SELECTED_BACKENDS if name in ("sqlite", "postgresql")])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Embedded SQLite (pysqlite / aiosqlite) and PostgreSQL (psycopg / asyncpg).

    MariaDB has its own tests (``mariadb`` fixture): DDL commits implicitly there.
    """
    return make_backend(request.param)


@pytest.fixture
def postgresql() -> Backend:
    return make_backend("postgresql")


@pytest.fixture
def mariadb() -> Backend:
    return make_backend("mariadb")


@pytest.fixture
def ini(pytester: pytest.Pytester):
    """Write the test suite's ``pytest.ini``; pass extra lines (``db_metadata = ...``)."""

    def write(*lines: str, asyncio_mode: str = "strict") -> None:
        pytester.makeini(
            "\n".join(
                [
                    "[pytest]",
                    f"asyncio_mode = {asyncio_mode}",
                    "asyncio_default_fixture_loop_scope = function",
                    *lines,
                ]
            )
        )

    write()
    return write


#: the name prefixes this suite's inner runs give their test databases.
INNER_PREFIXES = ("test_ctxdb_", "t_al")


@pytest.fixture(scope="session", autouse=True)
def _drop_inner_test_databases() -> Iterator[None]:
    """After the suite, drop the templates and databases its inner runs created (templates are
    kept across runs by design): only databases named like this suite's inner runs name them,
    carrying pytest-ctxdb's mark, created during this session and not in use."""
    started = time.time() - 1
    yield
    for name in ("postgresql", "mariadb"):
        if name not in SELECTED_BACKENDS or server_problem(name) is not None:
            continue
        engine = create_engine(
            make_url(SERVER_URLS[name]), poolclass=NullPool, isolation_level="AUTOCOMMIT"
        )
        try:
            with engine.connect() as conn:
                for database, comment in marked_databases(conn, name):
                    created = re.search(r"created=(\d+)", comment or "")
                    ours = database.startswith(INNER_PREFIXES)
                    if ours and created and int(created.group(1)) >= started:
                        quoted = conn.dialect.identifier_preparer.quote_identifier(database)
                        with contextlib.suppress(DBAPIError):  # in use elsewhere: leave it
                            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted}")
        finally:
            engine.dispose()


def marked_databases(conn: Connection, name: str) -> list[tuple[str, str]]:
    """``(database, comment)`` of every database carrying pytest-ctxdb's mark."""
    if name == "postgresql":
        query = (
            "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database "
            "WHERE shobj_description(oid, 'pg_database') LIKE 'created by pytest-ctxdb%'"
        )
    else:
        query = (
            "SELECT SCHEMA_NAME, SCHEMA_COMMENT FROM information_schema.SCHEMATA "
            "WHERE SCHEMA_COMMENT LIKE 'created by pytest-ctxdb%'"
        )
    return [(row[0], row[1]) for row in conn.execute(text(query))]
