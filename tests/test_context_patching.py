"""App code using a context-session runtime, run under the plugin, lands in the test transaction.

Each test writes an inner suite with ``pytester``: an app (models, modules using
``pytest_ctxdb.context``, legacy engines and sessionmakers, context-async-sqlalchemy, FastAPI)
whose own database URL points nowhere, and tests calling it. The inner suite runs in a
subprocess on every backend; its last test (its file sorts last) counts the rows with an engine
of its own on ``db_engine.url``, outside every test's outer transaction: there must be none.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from test_context_runtime import MODELS

if TYPE_CHECKING:
    from conftest import Backend

#: ini lines of every inner suite; warnings (unclosed sessions, unawaited coroutines) fail it.
INI_LINES = ("db_metadata = models:Base.metadata", "filterwarnings = error")

#: the last inner test: a new engine on the test database sees no row at all.
NOTHING_LEFT = """
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool
from models import COUNT


def test_nothing_left(db_engine):
    engine = create_engine(db_engine.url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            assert connection.scalar(COUNT) == 0
    finally:
        engine.dispose()
"""

#: FastAPI routes on the context runtime; ``ASYNC_`` / ``AWAIT_`` make them async or sync.
FASTAPI_ROUTES = """
from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from pytest_ctxdb.context import DBSessionMiddleware, get_db

api = FastAPI()
api.add_middleware(DBSessionMiddleware)


@api.post("/items/{name}")
ASYNC_def create(name: str, session=Depends(get_db())):
    session.add(Item(name=name))
    AWAIT_session.flush()
    return {"name": name}


@api.post("/items/{name}/then-500")
ASYNC_def create_then_500(name: str, session=Depends(get_db())):
    session.add(Item(name=name))
    AWAIT_session.flush()
    return JSONResponse({"error": "failed after writing"}, status_code=500)


@api.post("/items/{name}/then-raise")
ASYNC_def create_then_raise(name: str, session=Depends(get_db())):
    session.add(Item(name=name))
    AWAIT_session.flush()
    raise RuntimeError("the route failed after writing")
"""


def fastapi_routes(is_async: bool) -> str:
    """The FastAPI routes, with ``async def`` and ``await`` or as plain functions."""
    prefix = "async " if is_async else ""
    return FASTAPI_ROUTES.replace("ASYNC_", prefix).replace("AWAIT_", "await " if is_async else "")


#: a sync app on the context runtime; its alias ``default`` is sync.
SYNC_APP = '''
from pytest_ctxdb.context import Database, atomic, db_session
from models import Item
from settings import SYNC_URL

database = Database(SYNC_URL)


def write(name):
    """Add an item to the context session; return the connection that session is bound to."""
    db_session().add(Item(name=name))
    return db_session().get_bind()


@atomic
def register(name):
    return write(name)
''' + fastapi_routes(is_async=False)

#: FastAPI routes called after the test flushed ``seed``: ``(path, status, names then seen)``.
ROUTE_CASES = '''
import httpx

ROUTES = [
    ("/items/ok", 200, ["ok", "seed"]),
    ("/items/bad/then-500", 500, ["seed"]),
    ("/items/boom/then-raise", 500, ["seed"]),
]


async def post(api, path):
    """POST ``path`` to the ASGI app ``api`` in the test's own task; return the status."""
    transport = httpx.ASGITransport(app=api, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        return (await client.post(path)).status_code
'''

#: tests of the sync app: every kind of context it opens runs on the test connection.
SYNC_APP_TESTS = (
    """
import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from pytest_ctxdb import context
from models import COUNT, NAMES, Item
import app
"""
    + ROUTE_CASES
    + """


@pytest.mark.parametrize("name", ["A", "B", "A"])
def test_app_commit_is_visible_then_gone(db_session, name):
    assert db_session.scalars(NAMES).all() == []
    app.register(name)
    assert db_session.scalars(NAMES).all() == [name]


def test_context_session_is_the_fixture_session(db_session):
    assert context.db_session() is db_session
    app.write("pending")
    assert [item.name for item in db_session.new] == ["pending"]


def test_every_context_runs_on_the_test_connection(db_session, db_connection):
    binds = [app.register("atomic"), context.run_in_new_context(app.write, "job")]
    with context.session_context():
        binds.append(app.write("session context"))
        assert context.db_session() is not db_session
    with context.new_session() as own, own.begin():
        own.add(Item(name="new session"))
        binds.append(own.get_bind())
    assert all(bind is db_connection for bind in binds), binds
    assert db_session.scalars(NAMES).all() == ["atomic", "job", "new session", "session context"]


def test_threads_run_new_contexts(db_session):
    async def five_threads(round):
        await asyncio.gather(
            *(asyncio.to_thread(context.run_in_new_context, app.write, f"t{round}-{n}")
              for n in range(5))
        )

    for round in range(5):
        asyncio.run(five_threads(round))
    with ThreadPoolExecutor(5) as pool:
        list(pool.map(lambda n: context.run_in_new_context(app.write, f"pool-{n}"), range(25)))
    assert db_session.scalar(COUNT) == 50


@pytest.mark.parametrize(("path", "status", "names"), ROUTES)
def test_sync_fastapi_route(db_session, path, status, names):
    db_session.add(Item(name="seed"))
    db_session.flush()
    assert asyncio.run(post(app.api, path)) == status
    assert db_session.scalars(NAMES).all() == names
"""
)

#: an async app: the runtime, a FastAPI app with DBSessionMiddleware; alias ``default`` is async.
ASYNC_APP = '''
from pytest_ctxdb.context import Database, atomic, db_session
from models import Item
from settings import ASYNC_URL

#: async apps usually keep objects readable after a commit (no implicit I/O on access).
database = Database(ASYNC_URL, expire_on_commit=False)


async def write(name):
    """Add and flush an item in the context session; return the connection it is bound to."""
    db_session().add(Item(name=name))
    await db_session().flush()
    return db_session().get_bind()


@atomic
async def register(name):
    return await write(name)


@atomic
async def register_item(name):
    """Add an item and return it; callers read it after the commit."""
    item = Item(name=name)
    db_session().add(item)
    return item
''' + fastapi_routes(is_async=True)

ASYNC_APP_TESTS = (
    """
import asyncio

import pytest
from pytest_ctxdb import context
from models import COUNT, NAMES, Item
import app
"""
    + ROUTE_CASES
    + """

@pytest.mark.asyncio
@pytest.mark.parametrize("name", ["A", "B", "A"])
async def test_app_commit_is_visible_then_gone(async_db_session, name):
    assert (await async_db_session.scalars(NAMES)).all() == []
    await app.register(name)
    assert (await async_db_session.scalars(NAMES)).all() == [name]


@pytest.mark.asyncio
async def test_context_session_is_the_fixture_session(async_db_session):
    assert context.db_session() is async_db_session
    item = Item(name="pending")
    context.db_session().add(item)
    assert list(async_db_session.new) == [item]


@pytest.mark.asyncio
async def test_every_context_runs_on_the_test_connection(async_db_session, async_db_connection):
    binds = [await app.register("atomic"), await context.run_in_new_context(app.write, "job")]
    async with context.session_context():
        binds.append(await app.write("session context"))
        assert context.db_session() is not async_db_session
    async with context.new_session() as own:
        own.add(Item(name="new session"))
        await own.commit()
        binds.append(own.get_bind())
    assert all(bind is async_db_connection.sync_connection for bind in binds), binds
    names = (await async_db_session.scalars(NAMES)).all()
    assert names == ["atomic", "job", "new session", "session context"]


@pytest.mark.asyncio
async def test_gather_new_contexts(async_db_session, async_db_connection):
    for round in range(5):
        binds = await asyncio.gather(
            *(context.run_in_new_context(app.write, f"g{round}-{n}") for n in range(5))
        )
        assert all(bind is async_db_connection.sync_connection for bind in binds), binds
    assert await async_db_session.scalar(COUNT) == 25


@pytest.mark.asyncio
@pytest.mark.parametrize(("path", "status", "names"), ROUTES)
async def test_fastapi_route(async_db_session, path, status, names):
    async_db_session.add(Item(name="seed"))
    await async_db_session.flush()
    assert await post(app.api, path) == status
    assert (await async_db_session.scalars(NAMES)).all() == names
"""
)

#: the app's object, read after its commit, in the test's own context and in a new one.
SESSION_OPTIONS_TESTS = """
import pytest
from pytest_ctxdb import context
import app


@pytest.mark.asyncio
async def test_in_the_tests_own_context(async_db_session):
    item = await app.register_item("own")
    assert item.name == "own"


@pytest.mark.asyncio
async def test_in_a_new_context(async_db_session):
    item = await context.run_in_new_context(app.register_item, "new")
    assert item.name == "new"
"""

#: a sync app whose engine a test uses directly, bypassing the runtime.
ESCAPE_TESTS = """
from sqlalchemy import text
from pytest_ctxdb.context import Database
from settings import SYNC_URL
import app


def test_app_engine_connect(db_session):
    with app.database.engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def test_own_database_sessionmaker(db_session):
    with Database(SYNC_URL, alias="reports").sessionmaker() as session:
        session.execute(text("SELECT 1"))


def test_app_swallows_the_error(db_session):
    try:
        with app.database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:
        pass
"""

#: a legacy app: a module-level engine and sessionmaker, and a module that copied the engine.
LEGACY = """
from sqlalchemy import create_engine, insert
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker
from models import Item
from settings import ASYNC_URL, SYNC_URL

engine = create_engine(SYNC_URL)
ENGINE_AT_IMPORT = engine
SessionLocal = sessionmaker(bind=engine)
async_engine = create_async_engine(ASYNC_URL)
AsyncSessionLocal = async_sessionmaker(async_engine)
#: the sessionmakers' settings at import, to compare after the tests.
ORIGINAL_KW = (dict(SessionLocal.kw), dict(AsyncSessionLocal.kw))


def add_with_session(name):
    with SessionLocal() as session, session.begin():
        session.add(Item(name=name))


def add_with_engine(name):
    with engine.begin() as connection:
        connection.execute(insert(Item).values(name=name))


def add_with_options(name):
    with engine.execution_options(logging_token="legacy").begin() as connection:
        connection.execute(insert(Item).values(name=name))


async def add_async(name):
    async with AsyncSessionLocal() as session, session.begin():
        session.add(Item(name=f"{name} session"))
    async with async_engine.begin() as connection:
        await connection.execute(insert(Item).values(name=f"{name} engine"))
"""

LEGACY_REPORTS = """
from sqlalchemy import insert
from legacy import engine
from models import Item


def add_report(name):
    with engine.connect() as connection:
        connection.execute(insert(Item).values(name=name))
        connection.commit()
"""

LEGACY_INI = (
    "db_sessionmakers =\n    legacy:SessionLocal\n    legacy:AsyncSessionLocal",
    "db_engines =\n    legacy:engine\n    legacy:async_engine",
)

LEGACY_TESTS = """
import pytest
from sqlalchemy.engine import Engine
from models import NAMES
import legacy
import reports


@pytest.mark.parametrize("prefix", ["A", "B", "A"])
def test_legacy_code_runs_on_the_test_connection(db_session, prefix):
    assert db_session.scalars(NAMES).all() == []
    # The engine object stays in place (isinstance checks pass); its connections are bound.
    assert isinstance(legacy.engine, Engine) and reports.engine is legacy.engine
    assert legacy.ENGINE_AT_IMPORT is legacy.engine
    legacy.add_with_session(f"{prefix} session")
    legacy.add_with_engine(f"{prefix} engine")
    reports.add_report(f"{prefix} report")
    names = [f"{prefix} engine", f"{prefix} report", f"{prefix} session"]
    assert db_session.scalars(NAMES).all() == names


@pytest.mark.asyncio
@pytest.mark.parametrize("prefix", ["A", "B"])
async def test_async_legacy_code_runs_on_the_test_connection(async_db_session, prefix):
    assert (await async_db_session.scalars(NAMES)).all() == []
    await legacy.add_async(prefix)
    names = (await async_db_session.scalars(NAMES)).all()
    assert names == [f"{prefix} engine", f"{prefix} session"]
"""

#: legacy code that derives an engine with ``execution_options`` before connecting.
LEGACY_OPTIONS_TESTS = """
from models import NAMES
import legacy


def test_engine_with_execution_options(db_session):
    legacy.add_with_options("options")
    assert db_session.scalars(NAMES).all() == ["options"]
"""

#: runs after the legacy tests, with no database fixture: the originals are back.
LEGACY_RESTORED = """
import pytest
from sqlalchemy.engine import Engine
from pytest_ctxdb import ContextError
from sqlalchemy.ext.asyncio import AsyncEngine
import legacy
import reports


def test_originals_restored():
    assert isinstance(legacy.engine, Engine) and reports.engine is legacy.engine
    assert isinstance(legacy.async_engine, AsyncEngine)
    assert (legacy.SessionLocal.kw, legacy.AsyncSessionLocal.kw) == legacy.ORIGINAL_KW
    assert legacy.SessionLocal.kw["bind"] is legacy.engine
    # By effect: the engines reach their own pools again (blocked: this test has no database).
    for engine in (legacy.engine, legacy.async_engine.sync_engine):
        with pytest.raises(ContextError, match="Database access not allowed"):
            engine.connect()
"""

#: an app on context-async-sqlalchemy: its own DBConnect, helpers and ASGI middleware.
CASA_APP = """
from context_async_sqlalchemy import ASGIHTTPDBSessionMiddleware, DBConnect, db_session
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from models import Item
from settings import ASYNC_URL

connect = DBConnect(
    engine_creator=create_async_engine,
    session_maker_creator=lambda engine: async_sessionmaker(engine, expire_on_commit=False),
    host=ASYNC_URL,
)


async def write(name):
    session = await db_session(connect)
    session.add(Item(name=name))
    await session.flush()


api = FastAPI()
api.add_middleware(ASGIHTTPDBSessionMiddleware)


@api.post("/items/{name}")
async def create(name: str):
    await write(name)
    return {"name": name}


@api.post("/items/{name}/then-500")
async def create_then_500(name: str):
    await write(name)
    return JSONResponse({"error": "failed after writing"}, status_code=500)


@api.post("/items/{name}/then-raise")
async def create_then_raise(name: str):
    await write(name)
    raise RuntimeError("the route failed after writing")
"""

CASA_TESTS = (
    """
import asyncio

import pytest
from context_async_sqlalchemy import (
    atomic_db_session,
    close_db_session,
    commit_db_session,
    db_session,
    init_db_session_ctx,
    new_non_ctx_session,
    reset_db_session_ctx,
    rollback_db_session,
    run_in_new_ctx,
)
from models import COUNT, NAMES, Item
import app
from app import connect
"""
    + ROUTE_CASES
    + """

@pytest.mark.asyncio
async def test_library_helpers_run_in_the_test_transaction(async_db_session):
    token = init_db_session_ctx()
    try:
        await app.write("committed")
        await commit_db_session(connect)
        await app.write("rolled back")
        await rollback_db_session(connect)
        async with atomic_db_session(connect):
            await app.write("atomic")
        first = await db_session(connect)
        await close_db_session(connect)
        assert await db_session(connect) is not first
        async with new_non_ctx_session(connect) as own:
            own.add(Item(name="non-ctx"))
            await own.commit()
    finally:
        await reset_db_session_ctx(token)
    names = (await async_db_session.scalars(NAMES)).all()
    assert names == ["atomic", "committed", "non-ctx"]


@pytest.mark.asyncio
async def test_run_in_new_ctx_under_gather(async_db_session):
    token = init_db_session_ctx()
    try:
        for round in range(5):
            await asyncio.gather(*(run_in_new_ctx(app.write, f"g{round}-{n}") for n in range(5)))
    finally:
        await reset_db_session_ctx(token)
    assert await async_db_session.scalar(COUNT) == 25


@pytest.mark.asyncio
@pytest.mark.parametrize(("path", "status", "names"), ROUTES)
async def test_middleware_route(async_db_session, path, status, names):
    async_db_session.add(Item(name="seed"))
    await async_db_session.flush()
    assert await post(app.api, path) == status
    assert (await async_db_session.scalars(NAMES)).all() == names
"""
)


#: the password of the app's own server URL: no output may ever show it.
APP_SECRET = "s3cret"


@pytest.fixture(autouse=True)
def _no_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inner runs see only the URL a test passes, never one from this process's env."""
    monkeypatch.delenv("PYTEST_CTXDB_URL", raising=False)


@dataclass
class Suite:
    """The inner suite of one test: its files, its ini, its run on one backend.

    :ivar db_name: the base name of its test database: stable across runs (the plugin keeps a
        schema template per base name) and its own, so that parallel runs never share one.
    """

    backend: Backend
    pytester: pytest.Pytester
    ini: Callable[..., None]
    db_name: str

    def write(self, *ini_lines: str, **files: str) -> None:
        """Write the models, the app's settings, the ini file and the suite's ``files``."""
        if self.backend.url is None:
            path = self.pytester.path / "never-opened.db"
            urls = (f"sqlite:///{path}", f"sqlite+aiosqlite:///{path}")
        else:  # a server nothing listens on
            urls = (
                f"postgresql+psycopg://app:{APP_SECRET}@127.0.0.1:1/app",
                f"postgresql+asyncpg://app:{APP_SECRET}@127.0.0.1:1/app",
            )
        settings = f"SYNC_URL = {urls[0]!r}\nASYNC_URL = {urls[1]!r}\n"
        self.ini(*INI_LINES, *ini_lines)
        self.pytester.makepyfile(models=MODELS, settings=settings, **files)

    def run(self) -> pytest.RunResult:
        """Run the suite; its test database and the app's own SQLite file must not remain."""
        result = self.backend.runpytest(self.pytester, "-ra", "--db-test-name", self.db_name)
        assert self.db_name not in self.backend.leftover_test_databases()
        assert not (self.pytester.path / "never-opened.db").exists()
        return result


@pytest.fixture
def suite(
    backend: Backend,
    pytester: pytest.Pytester,
    ini: Callable[..., None],
    request: pytest.FixtureRequest,
) -> Suite:
    """The test's inner suite, on the ``backend`` it is parametrized with."""
    digest = zlib.crc32(request.node.nodeid.encode())
    return Suite(backend, pytester, ini, f"test_ctxdb_patching_{digest:08x}")


def test_sync_app_runs_in_the_test_transaction(
    suite: Suite,
) -> None:
    """A sync app's atomic, contexts, threads and FastAPI routes all commit inside the test."""
    suite.write(
        app=SYNC_APP,
        test_sync_app=SYNC_APP_TESTS,
        test_zz_nothing_left=NOTHING_LEFT,
    )
    suite.run().assert_outcomes(passed=10)


def test_async_app_and_fastapi_run_in_the_test_transaction(
    suite: Suite,
) -> None:
    """An async app's contexts, gathered new contexts and FastAPI routes stay in the test."""
    suite.write(
        app=ASYNC_APP,
        test_async_app=ASYNC_APP_TESTS,
        test_zz_nothing_left=NOTHING_LEFT,
    )
    suite.run().assert_outcomes(passed=10)


def test_alias_session_options_hold_in_the_tests_own_context(
    suite: Suite,
) -> None:
    """Database(..., expire_on_commit=False) holds in the test's context too, as in production."""
    suite.write(
        app=ASYNC_APP,
        test_session_options=SESSION_OPTIONS_TESTS,
        test_zz_nothing_left=NOTHING_LEFT,
    )
    suite.run().assert_outcomes(passed=3)


def test_app_engine_used_directly_fails_the_test(
    suite: Suite,
) -> None:
    """Taking a connection from an app engine fails the test once, naming it, password hidden."""
    suite.write(
        app=SYNC_APP,
        test_escape=ESCAPE_TESTS,
        test_zz_nothing_left=NOTHING_LEFT,
    )
    result = suite.run()
    result.assert_outcomes(passed=2, failed=2, errors=1)
    masked = (
        "sqlite:///*never-opened.db" if suite.backend.url is None else "*app:***@127.0.0.1:1/app"
    )
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_app_swallows_the_error*",
            "*pytest-ctxdb: the engine of alias 'default'*was asked for a connection*",
            "*_ test_app_engine_connect _*",
            (
                f"E   *ContextError: the engine of alias 'default' ({masked}) was asked for a "
                "connection during the test*db_session(), new_session(), atomic*"
            ),
            "*_ test_own_database_sessionmaker _*",
            "E   *ContextError: the engine of alias 'reports'*was asked for a connection*",
            "ERROR test_escape.py::test_app_swallows_the_error*",
            "FAILED test_escape.py::test_app_engine_connect*",
            "FAILED test_escape.py::test_own_database_sessionmaker*",
        ]
    )
    assert result.stdout.str().count("ERROR at teardown") == 1
    assert APP_SECRET not in "\n".join(result.outlines + result.errlines)


def test_legacy_engine_and_sessionmaker_are_rebound_then_restored(
    suite: Suite,
) -> None:
    """ini db_sessionmakers / db_engines: legacy commits stay in the test; originals come back."""
    suite.write(
        *LEGACY_INI,
        legacy=LEGACY,
        reports=LEGACY_REPORTS,
        test_legacy=LEGACY_TESTS,
        test_zy_restored=LEGACY_RESTORED,
        test_zz_nothing_left=NOTHING_LEFT,
    )
    suite.run().assert_outcomes(passed=7)


def test_legacy_engine_execution_options_stay_in_the_test(
    suite: Suite,
) -> None:
    """engine.execution_options(...) of a db_engines engine runs on the test connection too."""
    suite.write(
        *LEGACY_INI,
        legacy=LEGACY,
        test_legacy_options=LEGACY_OPTIONS_TESTS,
        test_zz_nothing_left=NOTHING_LEFT,
    )
    suite.run().assert_outcomes(passed=2)


@pytest.mark.parametrize(
    ("setting", "pattern"),
    [
        ("no_such_module:SessionLocal", "*db_sessionmakers*cannot import module 'no_such_module'*"),
        ("legacy:engine", "*db_sessionmakers*'legacy:engine' is a Engine, not a*sessionmaker*"),
    ],
    ids=["unimportable", "not-a-sessionmaker"],
)
def test_bad_db_sessionmakers_is_a_usage_error(suite: Suite, setting: str, pattern: str) -> None:
    """A db_sessionmakers string that does not name a sessionmaker stops the run, naming it."""
    suite.write(
        f"db_sessionmakers = {setting}",
        legacy=LEGACY,
        test_legacy="def test_one(db_session):\n    pass\n",
    )
    result = suite.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {pattern}"])


def test_context_async_sqlalchemy_app_runs_in_the_test_transaction(
    suite: Suite,
) -> None:
    """context-async-sqlalchemy's helpers, run_in_new_ctx and middleware stay in the test."""
    suite.write(
        app=CASA_APP,
        test_casa=CASA_TESTS,
        test_zz_nothing_left=NOTHING_LEFT,
    )
    suite.run().assert_outcomes(passed=6)
