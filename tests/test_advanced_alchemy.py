"""advanced-alchemy configs (Litestar's default) bound with one ini line, or detected.

Each test writes an inner suite with ``pytester``: a Litestar app with
``SQLAlchemyPlugin(config=SQLAlchemyAsyncConfig(..., before_send_handler="autocommit"))`` and a
repository-based service, a plain async service on ``config.get_session()`` and the session
maker, and a sync config with a sync service; both configs point at a *real* database of the
app's own (a SQLite file, or a database on the PostgreSQL server) that holds the table. The
app is driven in the test's event loop with ``httpx.AsyncClient`` + ``ASGITransport`` inside
``app.lifespan()`` (Litestar 2's ``AsyncTestClient`` runs it in a portal's loop, which
pytest-ctxdb refuses). After the run a separate connection counts the rows in the app's own
database (there must be none); the inner suite's last test counts the rows in the test
database outside every test's transaction (none either).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from conftest import Backend

pytest.importorskip("advanced_alchemy")
pytest.importorskip("litestar")
pytest.importorskip("httpx")

APP = '''
from litestar import Litestar, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar.exceptions import ClientException
from sqlalchemy import String
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from advanced_alchemy.config import SQLAlchemySyncConfig
from advanced_alchemy.extensions.litestar import (
    AsyncSessionConfig,
    SQLAlchemyAsyncConfig,
    SQLAlchemyPlugin,
)
from advanced_alchemy.repository import SQLAlchemyAsyncRepository, SQLAlchemySyncRepository
from advanced_alchemy.service import (
    SQLAlchemyAsyncRepositoryService,
    SQLAlchemySyncRepositoryService,
)

import settings


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "author"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


class AuthorRepository(SQLAlchemyAsyncRepository[Author]):
    model_type = Author


class AuthorService(SQLAlchemyAsyncRepositoryService[Author, AuthorRepository]):
    repository_type = AuthorRepository


class SyncAuthorRepository(SQLAlchemySyncRepository[Author]):
    model_type = Author


class SyncAuthorService(SQLAlchemySyncRepositoryService[Author, SyncAuthorRepository]):
    repository_type = SyncAuthorRepository


def make_config():
    return SQLAlchemyAsyncConfig(
        connection_string=settings.ASYNC_URI,
        before_send_handler="autocommit",
        session_config=AsyncSessionConfig(expire_on_commit=False),
    )


alchemy_config = make_config()
sync_config = SQLAlchemySyncConfig(connection_string=settings.SYNC_URI)


@post("/authors")
async def create_author(data: JSONBody[dict[str, str]], db_session: NamedDependency[AsyncSession]) -> dict[str, str]:
    author = await AuthorService(session=db_session).create({"name": data["name"]})
    return {"name": author.name}


@post("/authors/rejected")
async def create_rejected(data: JSONBody[dict[str, str]], db_session: NamedDependency[AsyncSession]) -> None:
    await AuthorService(session=db_session).create({"name": data["name"]})
    raise ClientException("rejected after the insert")  # 400: the handler rolls back


@get("/authors")
async def list_authors(db_session: NamedDependency[AsyncSession]) -> list[str]:
    return sorted(author.name for author in await AuthorService(session=db_session).get_many())


def create_app():
    return Litestar(
        [create_author, create_rejected, list_authors],
        plugins=[SQLAlchemyPlugin(config=alchemy_config)],
    )


async def add_author(name, config=alchemy_config):
    async with config.get_session() as session:
        await AuthorService(session=session).create({"name": name}, auto_commit=True)


async def count_authors(config=alchemy_config):
    async with config.get_session() as session:
        return await AuthorService(session=session).count()


def add_author_sync(name):
    with sync_config.get_session() as session:
        SyncAuthorService(session=session).create({"name": name}, auto_commit=True)
'''

#: the app in the test's event loop, its lifespan (the plugin's) included. Not a fixture:
#: Litestar's lifespan enters an anyio cancel scope, which must be left in the task that
#: entered it (pytest-asyncio runs a fixture's set-up and teardown in different tasks).
CLIENT = '''
import contextlib

import httpx

from myapp import create_app


@contextlib.asynccontextmanager
async def running():
    app = create_app()
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
'''

TESTS = '''
import asyncio

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.pool import NullPool

from client import running
from myapp import Author, add_author, add_author_sync, alchemy_config, count_authors, make_config



def count(_session):
    return select(func.count()).select_from(Author)


@pytest.mark.asyncio
@pytest.mark.parametrize("name", ["ada", "grace"])
async def test_request_commits_through_the_plugin_session(async_db_session, name):
    assert await async_db_session.scalar(count(async_db_session)) == 0
    async with running() as client:
        response = await client.post("/authors", json={"name": name})
        assert response.status_code == 201, response.text
        assert (await client.get("/authors")).json() == [name]
    assert (await async_db_session.scalars(select(Author.name))).all() == [name]


@pytest.mark.asyncio
async def test_rejected_request_rolls_back(async_db_session):
    async with running() as client:
        response = await client.post("/authors/rejected", json={"name": "nope"})
        assert response.status_code == 400, response.text
        assert (await client.get("/authors")).json() == []
    assert await async_db_session.scalar(count(async_db_session)) == 0


@pytest.mark.asyncio
async def test_plain_service_on_get_session(async_db_session):
    await add_author("plain")
    assert await count_authors() == 1
    assert (await async_db_session.scalars(select(Author.name))).all() == ["plain"]


@pytest.mark.asyncio
async def test_session_maker_directly(async_db_session):
    maker = alchemy_config.create_session_maker()
    async with maker() as session:
        session.add(Author(name="made"))
        await session.commit()
    assert (await async_db_session.scalars(select(Author.name))).all() == ["made"]


@pytest.mark.asyncio
async def test_config_made_during_the_test(async_db_session):
    config = make_config()  # a new config, its engine made during the test
    await add_author("late", config)
    assert await count_authors(config) == 1
    assert (await async_db_session.scalars(select(Author.name))).all() == ["late"]


def test_sync_config_with_a_sync_service(db_session):
    add_author_sync("sync")
    assert db_session.scalars(select(Author.name)).all() == ["sync"]


def test_async_config_without_async_binding_is_caught(db_session):
    asyncio.run(count_authors())


@pytest.mark.asyncio
async def test_zz_nothing_left(async_db_session):
    url = async_db_session.bind.engine.url
    sync_url = url.set(drivername=url.get_backend_name())
    engine = create_engine(sync_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            assert connection.scalar(select(func.count()).select_from(Author.__table__)) == 0
    finally:
        engine.dispose()
'''


@dataclass
class AppDatabase:
    """The app's own database: real, never to be written."""

    sync_uri: str
    async_uri: str

    def rows(self) -> int:
        engine = create_engine(self.sync_uri, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                return int(connection.scalar(text("SELECT count(*) FROM author")))
        finally:
            engine.dispose()


def _create_table(uri: str) -> None:
    engine = create_engine(uri, poolclass=NullPool)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE author (id INTEGER PRIMARY KEY, name VARCHAR(50) UNIQUE)"
        )
    engine.dispose()


@pytest.fixture
def app_database(
    backend: Backend, pytester: pytest.Pytester, request: pytest.FixtureRequest
) -> Iterator[AppDatabase]:
    if backend.url is None:
        path = pytester.path / "app_own.db"
        database = AppDatabase(f"sqlite:///{path}", f"sqlite+aiosqlite:///{path}")
        _create_table(database.sync_uri)
        yield database
        return
    name = f"t_ctxdb_aa_{zlib.crc32(request.node.nodeid.encode()):08x}"
    admin = create_engine(backend.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    url = backend.url.set(database=name)
    database = AppDatabase(
        url.render_as_string(hide_password=False),
        url.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False),
    )
    _create_table(database.sync_uri)
    try:
        yield database
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.dispose()


@dataclass
class Suite:
    backend: Backend
    database: AppDatabase
    pytester: pytest.Pytester
    ini: Callable[..., None]
    name: str

    def run(
        self, *ini_lines: str, metadata: str = "myapp:Base.metadata", **files: str
    ) -> pytest.RunResult:
        self.ini(
            f"db_metadata = {metadata}",
            *ini_lines,
            # advanced-alchemy 1.x on SQLAlchemy 2.1: its mixins still use declarative_mixin.
            "filterwarnings =\n    error\n    ignore:The declarative_mixin decorator",
        )
        self.pytester.makepyfile(
            settings=(
                f"SYNC_URI = {self.database.sync_uri!r}\n"
                f"ASYNC_URI = {self.database.async_uri!r}\n"
            ),
            myapp=APP,
            **files,
        )
        return self.backend.run_named(self.pytester, self.name)


@pytest.fixture
def suite(
    backend: Backend,
    app_database: AppDatabase,
    pytester: pytest.Pytester,
    ini: Callable[..., None],
    request: pytest.FixtureRequest,
) -> Suite:
    name = f"test_ctxdb_aa_{zlib.crc32(request.node.nodeid.encode()):08x}"
    return Suite(backend, app_database, pytester, ini, name)


@pytest.mark.parametrize(
    "ini_lines",
    [("db_advanced_alchemy =\n    myapp:alchemy_config\n    myapp:sync_config",), ()],
    ids=["ini", "detected"],
)
def test_advanced_alchemy_app_runs_in_the_test_transaction(
    suite: Suite, ini_lines: tuple[str, ...]
) -> None:
    """Litestar's per-request sessions with the autocommit handler, a repository service on
    config.get_session() and on the session maker, a config made during the test and a sync
    config with a sync service all commit inside the test's transaction; an async config used
    in a test with only a sync binding fails the test naming it; the app's own database gets
    nothing, with the configs named in ini or only detected."""
    result = suite.run(*ini_lines, client=CLIENT, test_app=TESTS)
    result.assert_outcomes(passed=8, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*ContextError: the engine of *advanced?alchemy* (*) was asked for a connection "
            "during the test*request async_db_session*",
            "FAILED test_app.py::test_async_config_without_async_binding_is_caught*",
        ]
    )
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    assert suite.database.rows() == 0


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "myapp:Base",
            "*db_advanced_alchemy: 'myapp:Base' is a DeclarativeAttributeIntercept, not an "
            "advanced-alchemy SQLAlchemyAsyncConfig or SQLAlchemySyncConfig*",
        ),
        ("myapp:missing", "*db_advanced_alchemy: 'myapp:missing': module 'myapp' has no*"),
    ],
    ids=["not-a-config", "missing"],
)
def test_bad_ini_value_is_a_usage_error(suite: Suite, line: str, message: str) -> None:
    result = suite.run(
        f"db_advanced_alchemy = {line}",
        test_app="def test_one(db_session):\n    pass\n",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


#: polyfactory's SQLAlchemyFactory on the app's own sessions: the async and sync configs'
#: session makers (``create_session_maker()``, made at import), or session makers the app
#: makes at import from the configs' engines (listed in db_engines too: bound once).
FACTORIES = '''
import itertools

from polyfactory import Use
from polyfactory.factories.sqlalchemy_factory import SQLAlchemyFactory
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import sessionmaker

from myapp import Author, alchemy_config, sync_config

async_engine = alchemy_config.get_engine()
sync_engine = sync_config.get_engine()
if FROM_ENGINES:
    SESSION = sessionmaker(sync_engine)
    ASYNC_SESSION = async_sessionmaker(async_engine, expire_on_commit=False)
else:
    SESSION = sync_config.create_session_maker()
    ASYNC_SESSION = alchemy_config.create_session_maker()

_numbers = itertools.count()


class AuthorFactory(SQLAlchemyFactory[Author]):
    __session__ = SESSION
    __async_session__ = ASYNC_SESSION
    __set_as_default_factory_for_type__ = True
    __set_primary_key__ = False
    name = Use(lambda: f"author {next(_numbers)}")
'''

FACTORY_TESTS = '''
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.pool import NullPool

from myapp import Author, count_authors
from myfactories import AuthorFactory

COUNT = select(func.count()).select_from(Author)


@pytest.mark.asyncio
@pytest.mark.parametrize("run", [1, 2])
async def test_create_async(async_db_session, run):
    assert await async_db_session.scalar(COUNT) == 0
    author = await AuthorFactory.create_async()
    await AuthorFactory.create_batch_async(2)
    assert await async_db_session.scalar(COUNT) == 3
    assert await count_authors() == 3  # the app's own service sees them
    assert author.name.startswith("author ")


@pytest.mark.parametrize("run", [1, 2])
def test_create_sync(db_session, run):
    assert db_session.scalar(COUNT) == 0
    AuthorFactory.create_sync()
    AuthorFactory.create_batch_sync(2)
    assert db_session.scalar(COUNT) == 3


def test_zz_nothing_left(db_engine):
    engine = create_engine(db_engine.url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            assert connection.scalar(COUNT) == 0
    finally:
        engine.dispose()
'''


@pytest.mark.parametrize(
    ("from_engines", "ini_lines"),
    [
        (False, ("db_advanced_alchemy =\n    myapp:alchemy_config\n    myapp:sync_config",)),
        (False, ()),
        (True, ("db_engines =\n    myfactories:async_engine\n    myfactories:sync_engine",)),
    ],
    ids=["configs-ini", "configs-detected", "engines-listed"],
)
def test_polyfactory_on_the_apps_sessions(
    suite: Suite, from_engines: bool, ini_lines: tuple[str, ...]
) -> None:
    """polyfactory's SQLAlchemyFactory with __session__ / __async_session__ set to the sync and
    async configs' session makers, or to session makers made at import from the configs'
    engines listed in db_engines (each engine then bound once, by db_engines): create_sync and
    create_async commit inside the test's transaction; the app's own database gets nothing."""
    result = suite.run(
        *ini_lines,
        myfactories=f"FROM_ENGINES = {from_engines}\n{FACTORIES}",
        test_factories=FACTORY_TESTS,
    )
    result.assert_outcomes(passed=5)
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    assert suite.database.rows() == 0


#: the tables in a module of their own, and the app's configs in another one that the tests
#: import lazily, in fixtures that run after the test's binding opened: advanced-alchemy is
#: first imported during a test.
LAZY_MODELS = '''
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "author"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
'''

LAZY_APP = '''
from advanced_alchemy.config import SQLAlchemyAsyncConfig, SQLAlchemySyncConfig

import settings
from models import Author

config = SQLAlchemyAsyncConfig(connection_string=settings.ASYNC_URI)
sync_config = SQLAlchemySyncConfig(connection_string=settings.SYNC_URI)


async def add(name):
    async with config.get_session() as session:
        session.add(Author(name=name))
        await session.commit()


def add_sync(name):
    with sync_config.get_session() as session:
        session.add(Author(name=name))
        session.commit()
'''

LAZY_FIXTURE = '''
import sys

import pytest
from sqlalchemy import select

from models import Author


@pytest.fixture
def lazy_app(request):
    request.getfixturevalue(request.param)  # the test's binding opens first
    assert "advanced_alchemy" not in sys.modules
    import lazyapp

    return lazyapp
'''

#: one test per inner run: only the first test of a run imports the library.
LAZY_TESTS = {
    "async": '''

@pytest.mark.asyncio
@pytest.mark.parametrize("lazy_app", ["async_db_session"], indirect=True)
async def test_config_of_an_app_imported_during_the_test(lazy_app, async_db_session):
    await lazy_app.add("lazy")
    assert (await async_db_session.scalars(select(Author.name))).all() == ["lazy"]
''',
    "sync": '''

@pytest.mark.parametrize("lazy_app", ["db_session"], indirect=True)
def test_config_of_an_app_imported_during_the_test(lazy_app, db_session):
    lazy_app.add_sync("lazy sync")
    assert db_session.scalars(select(Author.name)).all() == ["lazy sync"]
''',
}


@pytest.mark.parametrize("which", ["async", "sync"])
def test_configs_of_an_app_first_imported_during_a_test_are_bound(
    suite: Suite, which: str
) -> None:
    """advanced-alchemy imported for the first time during a test (a fixture importing the
    app lazily, after the binding opened): the configs the app makes then are bound at once.
    They used to be neither bound nor guarded: the test passed and its commit stayed in the
    app's own database."""
    result = suite.run(
        metadata="models:Base.metadata",
        models=LAZY_MODELS,
        lazyapp=LAZY_APP,
        test_lazy=LAZY_FIXTURE + LAZY_TESTS[which],
    )
    result.assert_outcomes(passed=1)
    assert suite.database.rows() == 0, "the app's own database got rows"
