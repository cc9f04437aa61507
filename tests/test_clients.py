"""Test clients and event loops: which clients run an async app where, and what that means for
the test's transaction (README "Test clients"); anyio's pytest plugin.

An async test connection belongs to the event loop it was made in (the test's). FastAPI's /
Starlette's sync ``TestClient`` runs the app in a thread of its own with its own loop (an anyio
blocking portal), so the app's async sessions cannot run on the test's connection: that fails
at once, naming the client and the fix, also when the app turns the error into a 500. The same
app driven by ``httpx.AsyncClient(transport=httpx.ASGITransport(app))`` in the test's loop
(pytest-asyncio or anyio) runs inside the test's transaction; a sync app under ``TestClient``
too. Each inner suite's app has a real database of its own, counted from a separate connection
afterwards (nothing may reach it), and its last test counts the test database's rows outside
every test's transaction.
"""

from __future__ import annotations

import time

import pytest
from test_context_patching import CASA_APP, NOTHING_LEFT
from test_context_runtime import MODELS
from test_engines import Suite, app_database, driver, suite  # noqa: F401 - fixtures

#: sqlite (pysqlite / aiosqlite) and PostgreSQL (psycopg / asyncpg).
BACKENDS = pytest.mark.parametrize(
    "driver",
    [("sqlite", None), ("postgresql", "postgresql+psycopg")],
    indirect=True,
    ids=["sqlite", "postgresql"],
)

#: a FastAPI app: async routes on the context runtime (an async alias of the app's own
#: database) and on an AsyncEngine listed in db_engines, a lifespan reading through the
#: runtime; and a sync app, ``sync_app``, on a sync Engine listed in db_engines.
APP = '''
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from sqlalchemy import create_engine, insert
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from models import COUNT, NAMES, Item
from pytest_ctxdb.context import Database, DBSessionMiddleware, db_session, get_db, session_context
from settings import ASYNC_URL, SYNC_URL

Database(ASYNC_URL)
engine = create_engine(SYNC_URL)
async_engine = create_async_engine(ASYNC_URL)
STARTED = []


@asynccontextmanager
async def lifespan(app):
    async with session_context():
        STARTED.append(await db_session().scalar(COUNT))
    yield


app = FastAPI(lifespan=lifespan)
app.add_middleware(DBSessionMiddleware)


@app.post("/ctx/{name}")
async def ctx_create(name: str, session=Depends(get_db())):
    session.add(Item(name=name))  # committed by the middleware when the response starts
    return {"name": name}


@app.post("/engine/{name}")
async def engine_create(name: str):
    async with AsyncSession(async_engine) as session:
        session.add(Item(name=name))
        await session.commit()
    return {"name": name}


@app.get("/names")
async def names(session=Depends(get_db())):
    return (await session.scalars(NAMES)).all()


sync_app = FastAPI()  # a sync app: sync routes, a sync engine


@sync_app.post("/sync/{name}")
def sync_create(name: str):  # FastAPI runs sync routes in worker threads
    with Session(engine) as session:
        session.add(Item(name=name))
        session.commit()
    with engine.begin() as connection:
        connection.execute(insert(Item).values(name=f"{name} begin"))
    return {"name": name}


@sync_app.get("/sync")
def sync_names():
    with Session(engine) as session:
        return session.scalars(NAMES).all()
'''

INI = ("db_metadata = models:Base.metadata", "db_engines =\n    app:engine\n    app:async_engine")

CONFTEST = '''
import pytest


@pytest.fixture
def anyio_backend():
    return "asyncio"
'''

SYNC_CLIENT_TESTS = '''
import pytest
from fastapi.testclient import TestClient

import app


@pytest.mark.asyncio
async def test_async_test_sync_client_context_runtime(async_db_session):
    client = TestClient(app.app)
    client.post("/ctx/would fail")


def test_sync_test_sync_client_swallowed_500_db_engines(async_db_session):
    client = TestClient(app.app, raise_server_exceptions=False)
    assert client.post("/engine/would fail").status_code == 500  # a bare 500


@pytest.mark.asyncio
async def test_with_block_runs_the_lifespan_in_the_portal(async_db_session):
    with TestClient(app.app):
        pass
'''

ASGI_TESTS = '''
import httpx
import pytest

import app
from models import NAMES


async def drive(prefix, async_db_session):
    assert (await async_db_session.scalars(NAMES)).all() == []
    transport = httpx.ASGITransport(app=app.app)
    async with app.app.router.lifespan_context(app.app):  # the lifespan, in the test's loop
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.post(f"/ctx/{prefix} ctx")).status_code == 200
            assert (await client.post(f"/engine/{prefix} engine")).status_code == 200
            assert (await client.get("/names")).json() == [f"{prefix} ctx", f"{prefix} engine"]
    assert app.STARTED[-1] == 0
    assert (await async_db_session.scalars(NAMES)).all() == [f"{prefix} ctx", f"{prefix} engine"]


@pytest.mark.asyncio
@pytest.mark.parametrize("prefix", ["A", "B"])
async def test_pytest_asyncio(async_db_session, prefix):
    await drive(prefix, async_db_session)


@pytest.mark.anyio
@pytest.mark.parametrize("prefix", ["C", "D"])
async def test_anyio(async_db_session, prefix):
    await drive(prefix, async_db_session)
'''

SYNC_APP_TESTS = '''
import pytest
from fastapi.testclient import TestClient

import app
from models import NAMES


@pytest.mark.parametrize("prefix", ["A", "B"])
def test_sync_routes_in_worker_threads(db_session, prefix):
    assert db_session.scalars(NAMES).all() == []
    with TestClient(app.sync_app) as client:
        for name in ("one", "two"):
            assert client.post(f"/sync/{prefix} {name}").status_code == 200
        expected = sorted(f"{prefix} {n}{s}" for n in ("one", "two") for s in ("", " begin"))
        assert client.get("/sync").json() == expected
    assert db_session.scalars(NAMES).all() == expected


def test_without_the_with_block(db_session):
    client = TestClient(app.sync_app)
    assert client.post("/sync/E").status_code == 200
    assert db_session.scalars(NAMES).all() == ["E", "E begin"]
'''

ANYIO_TESTS = '''
import asyncio

import pytest
from sqlalchemy.exc import IntegrityError

from models import NAMES, Item

LOOPS = []


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["first", "second"])
async def test_commit_rolled_back_after(async_db_session, async_db_connection, name):
    LOOPS.append(asyncio.get_running_loop())
    assert (await async_db_session.scalars(NAMES)).all() == []
    async_db_session.add(Item(name=name))
    await async_db_session.commit()
    assert (await async_db_connection.scalars(NAMES)).all() == [name]
    async_db_session.add(Item(name=name))
    with pytest.raises(IntegrityError):
        await async_db_session.commit()
    await async_db_session.rollback()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_backend(async_db_session, anyio_backend):
    pass


def test_each_test_ran_in_its_own_loop():
    assert len(set(map(id, LOOPS))) == 2
'''


@BACKENDS
def test_sync_testclient_with_an_async_app_fails_at_once_naming_the_fix(suite: Suite) -> None:
    """An async app under FastAPI's sync TestClient (async or sync test, context runtime or
    db_engines, with or without the `with` block) fails at once with the message naming the
    client and the fix; a 500 the app returned instead still fails the test."""
    started = time.monotonic()
    result = suite.run(
        *INI, models=MODELS, app=APP, conftest=CONFTEST,
        test_sync_client=SYNC_CLIENT_TESTS, test_zz_nothing_left=NOTHING_LEFT,
    )
    elapsed = time.monotonic() - started
    result.assert_outcomes(passed=2, failed=2, errors=1)
    fix = "*Drive the app in the test's own event loop*httpx.AsyncClient(transport=httpx.ASGITransport(app=app)*lifespan*"
    client = "*Starlette's / FastAPI's sync TestClient runs the app in a thread of its own, with its own event loop.*"
    result.stdout.fnmatch_lines(
        [
            "*ContextError: an AsyncSession was made on the test's async connection from the "
            "event loop of thread 'asyncio-portal-*', but that connection belongs to the test's "
            "event loop (thread 'MainThread')" + client + fix,
        ]
    )
    result.stdout.fnmatch_lines(
        ["*ERROR at teardown of test_sync_test_sync_client_swallowed_500_db_engines*",
         "*pytest-ctxdb: db_engines app:async_engine: connect() was called on the test's async "
         "connection from the event loop of thread 'asyncio-portal-*'" + client + fix]
    )
    result.stdout.fnmatch_lines(["*FAILED*test_with_block_runs_the_lifespan_in_the_portal*"])
    assert "attached to a different loop" not in result.stdout.str()
    assert elapsed < 20, f"the run took {elapsed:.1f} s: it waited instead of failing"
    assert suite.app_database.count("item") == 0, "the app's own database got rows"


CASA_TESTS = """
from fastapi.testclient import TestClient

import casa


def test_context_async_sqlalchemy_app_under_the_sync_client(async_db_session):
    client = TestClient(casa.api, raise_server_exceptions=False)
    assert client.post("/items/would fail").status_code == 500
"""


@BACKENDS
def test_context_async_sqlalchemy_under_the_sync_testclient_fails(suite: Suite) -> None:
    """context-async-sqlalchemy's session maker is refused from the TestClient's loop too; the
    500 its middleware makes of it still fails the test."""
    result = suite.run(
        "db_metadata = models:Base.metadata", models=MODELS, casa=CASA_APP,
        test_casa=CASA_TESTS, test_zz_nothing_left=NOTHING_LEFT,
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*pytest-ctxdb: an AsyncSession was made on the test's async connection from the event "
         "loop of thread 'asyncio-portal-*'*sync TestClient*httpx.ASGITransport*"]
    )
    assert suite.app_database.count("item") == 0, "the app's own database got rows"


@BACKENDS
def test_the_same_app_in_the_tests_loop_runs_in_its_transaction(suite: Suite) -> None:
    """The same app driven by httpx.AsyncClient(transport=ASGITransport(app)) with its
    lifespan, in the test's loop (pytest-asyncio and anyio): its routes' commits, on the
    context runtime and on db_engines, are inside the test's transaction, rolled back after."""
    result = suite.run(
        *INI, models=MODELS, app=APP, conftest=CONFTEST,
        test_asgi=ASGI_TESTS, test_zz_nothing_left=NOTHING_LEFT,
    )
    result.assert_outcomes(passed=5)
    assert suite.app_database.count("item") == 0, "the app's own database got rows"


@BACKENDS
def test_a_sync_app_under_the_sync_testclient_runs_in_the_test_transaction(suite: Suite) -> None:
    """Sync routes run in TestClient's worker threads on the sync test connection (serialized
    by the savepoint arbiter), with or without the `with` block; nothing is left."""
    result = suite.run(
        *INI, models=MODELS, app=APP, conftest=CONFTEST,
        test_sync_app=SYNC_APP_TESTS, test_zz_nothing_left=NOTHING_LEFT,
    )
    result.assert_outcomes(passed=4)
    assert suite.app_database.count("item") == 0, "the app's own database got rows"


@BACKENDS
def test_anyio_tests_get_connections_in_anyio_loop(suite: Suite) -> None:
    """@pytest.mark.anyio tests: async fixtures are made in anyio's runner (the loop the test
    runs in), committed data is rolled back after each test; the trio backend fails naming
    the fix."""
    result = suite.run(
        *INI, models=MODELS, app=APP, conftest=CONFTEST,
        test_anyio=ANYIO_TESTS, test_zz_nothing_left=NOTHING_LEFT,
    )
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(
        ["*pytest-ctxdb: test_anyio.py::test_trio_backend[[]trio[]] runs on anyio backend "
         "'trio'; SQLAlchemy's asyncio extension*needs asyncio*anyio_backend = 'asyncio' only*"]
    )
    output = result.stdout.str() + result.stderr.str()
    for trouble in ("attached to a different loop", "Event loop is closed", "was never awaited"):
        assert trouble not in output
    assert suite.app_database.count("item") == 0, "the app's own database got rows"
