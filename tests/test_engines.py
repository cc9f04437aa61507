"""Apps as people write them: a module-level engine used every way SQLAlchemy allows, bound
with one ini line (``db_engines``), and nothing reaching the app's own database.

Each test writes an inner suite with ``pytester``: an app whose ``engine`` / ``async_engine``
point at a *real* database of its own (a SQLite file, or a database on the server, holding the
same tables), code using them the way SQLAlchemy's, FastAPI's and SQLModel's docs do, and tests
calling it. After the run a separate connection counts the rows in the app's own database
(there must be none), and the inner suite's last test counts the rows in the test database
outside every test's transaction (none either).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool
from test_context_patching import NOTHING_LEFT
from test_context_runtime import MODELS

from conftest import Backend, make_backend

#: the app: a module-level engine (and async engine), a sessionmaker made at import from each,
#: an app Session subclass, and one function per way of using them.
APP = '''
from sqlalchemy import create_engine, event, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from models import NAMES, Item
from settings import ASYNC_URL, SYNC_URL

engine = create_engine(SYNC_URL)
SessionLocal = sessionmaker(engine)  # made at import, not listed in any ini key
reporting = engine.execution_options(logging_token="reports")  # a copy made at import
STATEMENTS = []


@event.listens_for(engine, "before_cursor_execute")
def log_statement(connection, cursor, statement, *args):  # the app's own statement log
    STATEMENTS.append(statement)
async_engine = create_async_engine(ASYNC_URL)
AsyncSessionLocal = async_sessionmaker(async_engine, expire_on_commit=False)


class AppSession(Session):
    def names(self):
        return self.scalars(NAMES).all()


AppSessionLocal = sessionmaker(engine, class_=AppSession)


def with_session(name):
    with Session(engine) as session:
        session.add(Item(name=name))
        session.commit()


def with_bind_and_begin(name):
    with Session(bind=engine) as session, session.begin():
        session.add(Item(name=name))


def with_sessionmaker(name):
    with SessionLocal() as session:
        session.add(Item(name=name))
        session.commit()


def with_connect(name):
    with engine.connect() as connection:
        connection.execute(insert(Item).values(name=f"{name} committed"))
        connection.commit()
        connection.execute(insert(Item).values(name=f"{name} rolled back"))
        connection.rollback()
        with connection.begin_nested():
            connection.execute(insert(Item).values(name=f"{name} nested"))
        savepoint = connection.begin_nested()
        connection.execute(insert(Item).values(name=f"{name} nested rolled back"))
        savepoint.rollback()
        connection.commit()
        connection.execute(insert(Item).values(name=f"{name} never committed"))


def with_begin(name):
    with engine.begin() as connection:
        connection.execute(insert(Item).values(name=name))


def with_copy_made_at_import(name):
    with Session(reporting) as session:
        session.add(Item(name=name))
        session.commit()
    with engine.execution_options(isolation_level="AUTOCOMMIT").begin() as connection:
        connection.execute(insert(Item).values(name=f"{name} autocommit"))


def with_begin_then_error(name):
    with engine.begin() as connection:
        connection.execute(insert(Item).values(name=name))
        raise ValueError("the app's own error")


def with_app_session(name):
    with AppSessionLocal() as session:
        session.add(Item(name=name))
        session.commit()
        return type(session), session.names()


async def with_async_everything(name):
    async with AsyncSession(async_engine) as session:
        session.add(Item(name=f"{name} AsyncSession"))
        await session.commit()
    async with AsyncSessionLocal() as session, session.begin():
        session.add(Item(name=f"{name} async_sessionmaker"))
    async with async_engine.begin() as connection:
        await connection.execute(insert(Item).values(name=f"{name} begin"))
    async with async_engine.connect() as connection:
        await connection.execute(insert(Item).values(name=f"{name} connect"))
        await connection.commit()
        await connection.execute(insert(Item).values(name=f"{name} rolled back"))
'''

APP_INI = ("db_engines =\n    app:engine\n    app:async_engine",)

APP_TESTS = '''
import pytest
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

import app
from models import NAMES


@pytest.mark.parametrize("prefix", ["A", "B"])
def test_every_sync_shape_runs_in_the_test_transaction(db_session, prefix):
    assert db_session.scalars(NAMES).all() == []
    app.STATEMENTS.clear()
    assert isinstance(app.engine, Engine) and isinstance(app.async_engine, AsyncEngine)
    app.with_session(f"{prefix} session")
    app.with_bind_and_begin(f"{prefix} bind")
    app.with_sessionmaker(f"{prefix} sessionmaker")
    app.with_connect(f"{prefix} connect")
    app.with_begin(f"{prefix} begin")
    with pytest.raises(ValueError, match="the app's own error"):
        app.with_begin_then_error(f"{prefix} failed")
    app.with_copy_made_at_import(f"{prefix} copy")
    cls, names = app.with_app_session(f"{prefix} subclass")
    assert issubclass(cls, app.AppSession)  # sessionmaker subclasses class_
    expected = sorted(
        f"{prefix} {suffix}"
        for suffix in (
            "session", "bind", "sessionmaker", "connect committed", "connect nested",
            "begin", "copy", "copy autocommit", "subclass",
        )
    )
    assert names == expected
    assert db_session.scalars(NAMES).all() == expected
    # The app's own statement events ran, on the test connection.
    assert any(statement.startswith("INSERT") for statement in app.STATEMENTS)


def test_connections_are_real_connections_on_the_test_connection(db_session, db_connection):
    with app.engine.connect() as connection:
        assert isinstance(connection, Connection)
        assert connection.connection.dbapi_connection is db_connection.connection.dbapi_connection


def test_a_connection_kept_past_its_test_fails_clearly(db_session):
    app.KEPT = app.engine.connect()


def test_then_used_in_the_next_test(db_session):
    from sqlalchemy import text
    from sqlalchemy.exc import StatementError

    with pytest.raises(StatementError, match="was used after the test ended"):
        app.KEPT.execute(text("SELECT 1"))


@pytest.mark.asyncio
@pytest.mark.parametrize("prefix", ["A", "B"])
async def test_every_async_shape_runs_in_the_test_transaction(async_db_session, prefix):
    assert (await async_db_session.scalars(NAMES)).all() == []
    await app.with_async_everything(prefix)
    names = (await async_db_session.scalars(NAMES)).all()
    suffixes = ("AsyncSession", "async_sessionmaker", "begin", "connect")
    assert names == sorted(f"{prefix} {suffix}" for suffix in suffixes)
'''

#: a FastAPI + SQLModel app written as SQLModel's tutorial writes it.
SQLMODEL_APP = '''
from fastapi import Depends, FastAPI
from sqlmodel import Field, Session, SQLModel, create_engine, select

from settings import SYNC_URL


class Hero(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True)


engine = create_engine(SYNC_URL)


def get_session():
    with Session(engine) as session:
        yield session


app = FastAPI()


@app.post("/heroes/")
def create_hero(hero: Hero, session: Session = Depends(get_session)) -> Hero:
    session.add(hero)
    session.commit()
    session.refresh(hero)
    return hero


@app.get("/heroes/")
def read_heroes(session: Session = Depends(get_session)) -> list[Hero]:
    return list(session.exec(select(Hero).order_by(Hero.name)).all())
'''

SQLMODEL_INI = (
    "db_metadata = heroes:SQLModel.metadata",
    "db_engines = heroes:engine",
    "db_session_class = sqlmodel:Session",
)

SQLMODEL_TESTS = '''
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from heroes import Hero, app


@pytest.mark.parametrize("name", ["Deadpond", "Rusty-Man"])
def test_route_commits_inside_the_test(db_session, name):
    assert type(db_session) is Session
    assert db_session.exec(select(Hero)).all() == []
    with TestClient(app) as client:
        assert client.post("/heroes/", json={"name": name}).status_code == 200
        assert [h["name"] for h in client.get("/heroes/").json()] == [name]
    assert [hero.name for hero in db_session.exec(select(Hero)).all()] == [name]


def test_zz_nothing_left(db_engine):
    from sqlalchemy import create_engine, func
    from sqlalchemy.pool import NullPool

    engine = create_engine(db_engine.url, poolclass=NullPool)
    try:
        with Session(engine) as session:
            assert session.exec(select(func.count()).select_from(Hero)).one() == 0
    finally:
        engine.dispose()
'''


@dataclass
class AppDatabase:
    """The app's own database: real, holding the app's tables, never to be written."""

    sync_url: str
    async_url: str
    check_url: URL | str

    def count(self, table: str) -> int:
        engine = create_engine(self.check_url, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                return int(connection.scalar(text(f"SELECT count(*) FROM {table}")))
        finally:
            engine.dispose()


#: (backend, the --db-url driver): every driver the plugin supports for app engines.
DRIVERS = [
    ("sqlite", None),
    ("postgresql", "postgresql+psycopg"),
    ("postgresql", "postgresql+psycopg2"),
    ("mariadb", "mysql+pymysql"),
]


@pytest.fixture(params=DRIVERS, ids=["sqlite", "psycopg", "psycopg2", "mariadb"])
def driver(request: pytest.FixtureRequest) -> Backend:
    name, drivername = request.param
    backend = make_backend(name)
    if drivername is None or backend.url is None:
        return backend
    url = backend.url.set(drivername=drivername)
    return Backend(name, url, ("--db-url", url.render_as_string(hide_password=False)))


@pytest.fixture
def app_database(
    driver: Backend, pytester: pytest.Pytester, request: pytest.FixtureRequest
) -> Iterator[AppDatabase]:
    """A real database for the app, with an ``item`` and a ``hero`` table; dropped afterwards."""
    ddl = (
        "CREATE TABLE item (id INTEGER PRIMARY KEY, name VARCHAR(50))",
        "CREATE TABLE hero (id INTEGER PRIMARY KEY, name VARCHAR(50))",
    )
    if driver.url is None:
        path = pytester.path / "app_own.db"
        url = f"sqlite:///{path}"
        database = AppDatabase(url, f"sqlite+aiosqlite:///{path}", url)
        engine = create_engine(url, poolclass=NullPool)
        with engine.begin() as connection:
            for statement in ddl:
                connection.exec_driver_sql(statement)
        engine.dispose()
        yield database
        return
    name = f"t_ctxdb_app_{zlib.crc32(request.node.nodeid.encode()):08x}"
    admin = create_engine(driver.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    quoted = name if driver.name == "postgresql" else f"`{name}`"
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted}")
        connection.exec_driver_sql(f"CREATE DATABASE {quoted}")
    own = driver.url.set(database=name)
    engine = create_engine(own, poolclass=NullPool)
    with engine.begin() as connection:
        for statement in ddl:
            connection.exec_driver_sql(statement)
    engine.dispose()
    if driver.name == "postgresql":
        drivers = ("postgresql+psycopg", "postgresql+asyncpg")
    else:
        drivers = ("mysql+pymysql", "mysql+asyncmy")
    sync, async_ = (own.set(drivername=name) for name in drivers)
    try:
        yield AppDatabase(
            sync.render_as_string(hide_password=False),
            async_.render_as_string(hide_password=False),
            own,
        )
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted}")
        admin.dispose()


@dataclass
class Suite:
    """One inner suite: its app database, files, ini lines, and the run checking its end."""

    driver: Backend
    app_database: AppDatabase
    pytester: pytest.Pytester
    ini: Callable[..., None]
    name: str

    def run(self, *ini_lines: str, url: str | None = None, **files: str) -> pytest.RunResult:
        """Write the app's settings, ``files`` and the ini, run the suite with the driver's URL
        (or ``url``), and check that its test database was dropped."""
        database = self.app_database
        settings = f"SYNC_URL = {database.sync_url!r}\nASYNC_URL = {database.async_url!r}\n"
        self.ini(*ini_lines, "filterwarnings = error")
        self.pytester.makepyfile(settings=settings, **files)
        backend = self.driver
        if url is not None:  # the same server, another URL
            backend = Backend(backend.name, backend.url, ("--db-url", url))
        return backend.run_named(self.pytester, self.name)


@pytest.fixture
def suite(
    driver: Backend,
    app_database: AppDatabase,
    pytester: pytest.Pytester,
    ini: Callable[..., None],
    request: pytest.FixtureRequest,
) -> Suite:
    name = f"test_ctxdb_engines_{zlib.crc32(request.node.nodeid.encode()):08x}"
    return Suite(driver, app_database, pytester, ini, name)


def test_every_engine_shape_runs_in_the_test_transaction(suite: Suite) -> None:
    """Session(engine), sessionmakers made at import, connect()/begin(), async twins, an app
    Session subclass: all commit inside the test; neither database keeps a row."""
    result = suite.run(
        "db_metadata = models:Base.metadata",
        *APP_INI,
        models=MODELS,
        app=APP,
        test_app=APP_TESTS,
        test_zz_nothing_left=NOTHING_LEFT,
    )
    result.assert_outcomes(passed=8)
    assert suite.app_database.count("item") == 0, "the app's own database got rows"


def test_sqlmodel_fastapi_app_from_ini_lines_only(suite: Suite) -> None:
    """SQLModel's tutorial app (module-level engine, Session(engine) in a dependency) driven by
    FastAPI's TestClient; db_session is SQLModel's Session (it has .exec())."""
    result = suite.run(
        *SQLMODEL_INI,
        heroes=SQLMODEL_APP,
        test_heroes=SQLMODEL_TESTS,
    )
    result.assert_outcomes(passed=3)
    assert suite.app_database.count("hero") == 0, "the app's own database got rows"


#: paths db_engines cannot bind: the error says so, and does not advise listing the engine.
UNBOUND_APP = '''
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from settings import SYNC_URL

engine = create_engine(SYNC_URL)


class RoutingSession(Session):
    """Picks its engine itself, ignoring session.bind (as Flask-SQLAlchemy's does)."""

    def get_bind(self, mapper=None, **kwargs):
        return engine


RoutedLocal = sessionmaker(class_=RoutingSession)
'''

UNBOUND_TESTS = '''
import pytest
from sqlalchemy import text

import app


def test_raw_connection(db_session):
    connection = app.engine.raw_connection()
    connection.close()


@pytest.mark.asyncio
async def test_sync_engine_in_an_async_only_test(async_db_session):
    with app.engine.connect() as connection:
        connection.execute(text("SELECT 1"))
'''


def test_unbound_paths_fail_naming_the_cause(suite: Suite) -> None:
    """An engine listed in db_engines used by a path it cannot bind fails the test with a
    message saying what is bound, never advising to list it; the app's database gets nothing."""
    result = suite.run(
        "db_engines = app:engine", app=UNBOUND_APP,
        test_unbound=UNBOUND_TESTS,
    )
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*ContextError: the engine behind db_engines app:engine (*) was asked for a "
            "connection during the test*is listed in db_engines*with a sync database binding*"
            "engine.raw_connection() and engine.pool*",
        ]
    )
    assert "list the engine in ini db_engines" not in result.stdout.str()
    assert suite.app_database.count("item") == 0


def test_sessionmaker_whose_sessions_ignore_the_bind_is_refused(suite: Suite) -> None:
    """db_sessionmakers is checked by what its sessions' get_bind() returns: a Session class
    that picks the app engine itself is refused before anything runs, not committed for real."""
    result = suite.run(
        "db_sessionmakers = app:RoutedLocal", app=UNBOUND_APP,
        test_routed=(
            "import app\n\n\ndef test_one(db_session):\n"
            "    with app.RoutedLocal() as session:\n"
            "        session.execute(__import__('sqlalchemy').text('SELECT 1'))\n"
        ),
    )
    result.assert_outcomes(errors=1)  # at db_session's set-up, before the test body
    result.stdout.fnmatch_lines(
        [
            "*db_sessionmakers app:RoutedLocal: rebinding the sessionmaker had no effect: its "
            "get_bind() returns *, the app's own engine. Its sessions (RoutingSession) would "
            "commit for real. List the engine they use in ini db_engines*",
        ]
    )
    assert suite.app_database.count("item") == 0


LAZY_APP = '''
engine = None  # made at start-up, as Litestar's and many apps' plugins do


class Extension:
    @property
    def engine(self):
        raise RuntimeError("Working outside of application context.")


db = Extension()
'''


@pytest.mark.parametrize(
    ("line", "pattern"),
    [
        ("db_engines = lazy:engine", "*db_engines: 'lazy:engine' is None at import: the value "
         "is made lazily*"),
        ("db_engines = lazy:db.engine", "*db_engines: 'lazy:db.engine': reading 'engine' raised "
         "RuntimeError: Working outside of application context.*made lazily*"),
        ("db_engines = lazy_broken:engine", "*db_engines: cannot import module 'lazy_broken'*"
         "KeyError: 'APP_SECRET_KEY'*"),
        ("db_session_class = lazy:Extension", "*db_session_class: 'lazy:Extension' is not a "
         "subclass of sqlalchemy.orm.Session*sqlmodel:Session*"),
    ],
    ids=["none", "raising-property", "raising-import", "not-a-session-class"],
)
def test_bad_import_strings_are_usage_errors(
    pytester: pytest.Pytester, ini: Callable[..., None], line: str, pattern: str
) -> None:
    """An import string that names None, raises on import or on reading, or names the wrong
    kind of class stops the run with one usage error naming the ini key: no INTERNALERROR."""
    ini(line)
    pytester.makepyfile(
        lazy=LAZY_APP,
        lazy_broken="import os\n\nengine = os.environ['APP_SECRET_KEY']\n",
        test_one="def test_one(db_session):\n    pass\n",
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {pattern}"])
    result.stderr.no_fnmatch_line("*INTERNALERROR*")


ORPHAN_TESTS = '''
import asyncio

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession

import app
from models import Item


@pytest_asyncio.fixture
async def committed_at_teardown(async_db_session):
    yield async_db_session
    await async_db_session.commit()


@pytest.mark.asyncio
async def test_a_task_leaves_its_session_open(committed_at_teardown):
    committed_at_teardown.add(Item(name="test's own"))
    await committed_at_teardown.flush()

    async def job():
        session = AsyncSession(app.async_engine)  # never closed: its savepoint stays open
        session.add(Item(name="job's"))
        await session.flush()
        app.LEFT_OPEN = session

    await asyncio.create_task(job())
'''


@pytest.mark.parametrize("driver", [("sqlite", None)], indirect=True, ids=["sqlite"])
def test_a_savepoint_left_by_a_finished_task_fails_at_once(suite: Suite) -> None:
    """Ending a savepoint under one that a finished task left open fails within about a
    second, naming the cause, instead of waiting 30 s; nothing reaches either database. (The
    savepoint arbiter is backend-independent: SQLite only.)"""
    started = time.monotonic()
    result = suite.run(
        "db_metadata = models:Base.metadata",
        "db_engines = app:async_engine", models=MODELS, app=APP, test_orphan=ORPHAN_TESTS,
        test_zz_nothing_left=NOTHING_LEFT,
    )
    elapsed = time.monotonic() - started
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*ContextError: cannot end savepoint sa_savepoint_1 on the test connection: savepoint "
         "sa_savepoint_2 was opened by a task or thread that has finished without ending it*"]
    )
    assert elapsed < 15, f"the run took {elapsed:.1f} s: it waited instead of failing"
    assert suite.app_database.count("item") == 0


#: two sessions of the app apart in production: a read-only transaction left open by one
#: must not undo the other's commit when it ends (FastAPI: commit, refresh, then a
#: background task's own session commits, then the request's session closes).
INTERLEAVED_TESTS = '''
import pytest
from sqlalchemy import select, text

import app
from models import NAMES, Item


def test_a_read_only_transaction_does_not_undo_a_commit_made_meanwhile(db_session):
    with app.SessionLocal() as request_session:
        item = Item(name="created")
        request_session.add(item)
        request_session.commit()
        request_session.refresh(item)  # autobegins: a transaction that only reads
        with app.SessionLocal() as task_session:
            task_session.add(Item(name="audited"))
            task_session.commit()
    assert db_session.scalars(NAMES).all() == ["audited", "created"]


def test_a_writing_transaction_still_rolls_back_its_own_writes(db_session):
    with app.SessionLocal() as request_session:
        request_session.add(Item(name="kept"))
        request_session.commit()
        request_session.scalars(NAMES).all()
        request_session.add(Item(name="rolled back"))
        request_session.flush()
        with app.engine.begin() as connection:
            connection.execute(text("SELECT 1"))
        request_session.rollback()
    assert db_session.scalars(NAMES).all() == ["kept"]


def test_reads_after_giving_way_run_in_a_new_savepoint(db_session):
    with app.SessionLocal() as first:
        assert first.scalars(NAMES).all() == []
        with app.SessionLocal() as second:
            second.add(Item(name="second's"))
            second.commit()
        assert first.scalars(NAMES).all() == ["second's"]
        first.add(Item(name="first's, rolled back"))
        first.flush()
        first.rollback()
    assert db_session.scalars(NAMES).all() == ["second's"]
'''


def test_sessions_apart_in_production_stay_apart(suite: Suite) -> None:
    """A session that only read since its last commit gives its savepoint way to another
    session's, so its rollback cannot undo that session's commit (as in production)."""
    result = suite.run(
        "db_metadata = models:Base.metadata", *APP_INI,
        models=MODELS, app=APP, test_interleaved=INTERLEAVED_TESTS,
        test_zz_nothing_left=NOTHING_LEFT,
    )
    result.assert_outcomes(passed=4)
    assert suite.app_database.count("item") == 0


UNLISTED_TESTS = '''
import app
from models import NAMES


def test_the_app_engine_is_not_listed(db_session):
    app.with_session("would leak")


def test_nor_in_a_test_without_a_database():
    app.with_begin("would leak too")
'''


def test_an_unlisted_engine_on_the_urls_database_is_refused(suite: Suite) -> None:
    """The URL names the app's own database (as when PYTEST_CTXDB_URL comes from the app's
    settings) and the app's engine is not in db_engines: its connections there are refused
    during tests, naming db_engines, and the app's database gets nothing."""
    result = suite.run(
        "db_metadata = models:Base.metadata",
        url=suite.app_database.sync_url,
        models=MODELS,
        app=APP,
        test_unlisted=UNLISTED_TESTS,
    )
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*ContextError: an engine pytest-ctxdb does not bind (*) was asked for a connection "
            "during the test*is the database --db-url names, the app's own*List the app's "
            "engine in ini db_engines*",
            "*ContextError: Database access not allowed*is the database --db-url names*",
        ]
    )
    assert suite.app_database.count("item") == 0, "the app's own database got rows"


#: polyfactory's SQLAlchemyFactory on the app's own session makers, made at import from the
#: engines listed in db_engines: an owner factory that is the default for its type (so the pet
#: factory builds each pet's owner with it), sync and async persistence, both committing.
POLYFACTORY_APP = '''
import itertools

from polyfactory import Use
from polyfactory.factories.sqlalchemy_factory import SQLAlchemyFactory
from sqlalchemy import ForeignKey, String, create_engine, func, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

from settings import ASYNC_URL, SYNC_URL

engine = create_engine(SYNC_URL)
async_engine = create_async_engine(ASYNC_URL)
SessionLocal = sessionmaker(engine)  # made at import, listed nowhere
AsyncSessionLocal = async_sessionmaker(async_engine, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


class Owner(Base):
    __tablename__ = "owner"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


class Pet(Base):
    __tablename__ = "pet"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    owner_id: Mapped[int] = mapped_column(ForeignKey("owner.id"))
    owner: Mapped[Owner] = relationship()


_numbers = itertools.count()


class OwnerFactory(SQLAlchemyFactory[Owner]):
    __session__ = SessionLocal
    __async_session__ = AsyncSessionLocal
    __set_as_default_factory_for_type__ = True
    __set_primary_key__ = False
    name = Use(lambda: f"owner {next(_numbers)}")


class PetFactory(SQLAlchemyFactory[Pet]):
    __session__ = SessionLocal
    __async_session__ = AsyncSessionLocal
    __set_primary_key__ = False
    __set_foreign_keys__ = False  # the owner comes from OwnerFactory, through the relationship
    name = Use(lambda: f"pet {next(_numbers)}")


OWNER_OF_THE_PET = select(Owner.name).join(Pet, Pet.owner_id == Owner.id)


def counts(session):
    return tuple(session.scalar(select(func.count()).select_from(t)) for t in (Owner, Pet))


async def async_counts(session):
    return tuple(
        [await session.scalar(select(func.count()).select_from(t)) for t in (Owner, Pet)]
    )
'''

POLYFACTORY_TESTS = '''
import pytest

from factories import OWNER_OF_THE_PET, OwnerFactory, PetFactory, async_counts, counts


@pytest.mark.parametrize("run", [1, 2])
def test_create_sync_commits_in_the_test_transaction(db_session, run):
    assert counts(db_session) == (0, 0)
    PetFactory.create_sync()
    OwnerFactory.create_batch_sync(2)
    assert counts(db_session) == (3, 1)
    assert db_session.scalar(OWNER_OF_THE_PET).startswith("owner ")  # the default factory's


@pytest.mark.asyncio
@pytest.mark.parametrize("run", [1, 2])
async def test_create_async_commits_in_the_test_transaction(async_db_session, run):
    assert await async_counts(async_db_session) == (0, 0)
    await PetFactory.create_async()
    await OwnerFactory.create_batch_async(2)
    assert await async_counts(async_db_session) == (3, 1)
    assert (await async_db_session.scalar(OWNER_OF_THE_PET)).startswith("owner ")


def test_zz_nothing_left(db_engine):
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session
    from sqlalchemy.pool import NullPool

    engine = create_engine(db_engine.url, poolclass=NullPool)
    try:
        with Session(engine) as session:
            assert counts(session) == (0, 0)
    finally:
        engine.dispose()
'''

POLYFACTORY_DDL = (
    "CREATE TABLE owner (id INTEGER PRIMARY KEY, name VARCHAR(50) UNIQUE)",
    "CREATE TABLE pet (id INTEGER PRIMARY KEY, name VARCHAR(50), "
    "owner_id INTEGER REFERENCES owner (id))",
)


@pytest.mark.parametrize(
    "driver",
    [("sqlite", None), ("postgresql", "postgresql+psycopg")],
    indirect=True,
    ids=["sqlite", "postgresql"],
)
def test_polyfactory_on_session_makers_of_listed_engines(suite: Suite) -> None:
    """polyfactory's SQLAlchemyFactory with __session__ / __async_session__ set to the app's
    sessionmaker / async_sessionmaker made at import from engines listed in db_engines:
    create_sync and create_async (single, batch, a related model built by the factory set as
    default for its type) commit inside the test's transaction; the app's own database,
    which has the same tables, gets nothing."""
    engine = create_engine(suite.app_database.check_url, poolclass=NullPool)
    with engine.begin() as connection:
        for statement in POLYFACTORY_DDL:
            connection.exec_driver_sql(statement)
    engine.dispose()
    result = suite.run(
        "db_metadata = factories:Base.metadata",
        "db_engines =\n    factories:engine\n    factories:async_engine",
        factories=POLYFACTORY_APP,
        test_factories=POLYFACTORY_TESTS,
    )
    result.assert_outcomes(passed=5)
    assert suite.app_database.count("owner") == 0, "the app's own database got owners"
    assert suite.app_database.count("pet") == 0, "the app's own database got pets"
