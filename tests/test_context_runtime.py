"""The context runtime (``pytest_ctxdb.context``) on its own, outside pytest, as production runs it.

Each test writes a plain Python script (no plugin, no pytest) and runs it in a fresh interpreter
against a database the test creates and drops itself: a SQLite file, or a PostgreSQL database
beside the server's. The script registers a sync alias (``default``) and an async one (``aio``),
exercises the runtime, and checks every commit or rollback from a connection of its own.

The models defined here are shared with ``test_context_patching.py``.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

if TYPE_CHECKING:
    from conftest import Backend

#: the models of every script and inner suite: one table whose ``name`` is unique.
MODELS = """
from sqlalchemy import String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "item"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


NAMES = select(Item.name).order_by(Item.name)
COUNT = select(func.count()).select_from(Item)
"""

#: the start of every runtime script: the schema, a checker outside the runtime, two aliases.
RUNTIME_PRELUDE = '''
import asyncio
import inspect
import sys

from sqlalchemy import create_engine, delete, event, select, text
from sqlalchemy.pool import NullPool

from models import NAMES, Base, Item
from pytest_ctxdb._errors import ContextError
from pytest_ctxdb.context import (
    Database,
    atomic,
    close_db_session,
    commit_db_session,
    db_session,
    get_database,
    new_session,
    registered_databases,
    rollback_db_session,
    run_in_new_context,
    session_context,
)

SYNC_URL, ASYNC_URL = sys.argv[1:3]


def sqlite_savepoints(engine):
    """SQLAlchemy's documented pysqlite/aiosqlite fix: let SQLAlchemy emit BEGIN itself."""
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", lambda dbapi, record: setattr(dbapi, "isolation_level", None))
        event.listen(engine, "begin", lambda connection: connection.exec_driver_sql("BEGIN"))


checker = create_engine(SYNC_URL, poolclass=NullPool)
Base.metadata.create_all(checker)


def committed():
    """Names committed to the database, read on a connection of the checker's own."""
    with checker.connect() as connection:
        return list(connection.scalars(NAMES))


def reset():
    with checker.begin() as connection:
        connection.execute(delete(Item))


def add(name, using="default"):
    db_session(using).add(Item(name=name))


async def add_async(name):
    db_session("aio").add(Item(name=name))
    await db_session("aio").flush()


def fail(*args):
    raise LookupError("the app failed")


async def fail_async(*args):
    raise LookupError("the app failed")


def raises(error, call, *args):
    """Run ``call(*args)``; return the error it raised, which must be an ``error``."""
    try:
        call(*args)
    except error as exc:
        return exc
    raise AssertionError(f"{call} did not raise {error.__name__}")


async def raises_async(error, awaitable):
    try:
        await awaitable
    except error as exc:
        return exc
    raise AssertionError(f"{awaitable} did not raise {error.__name__}")


sync_db = Database(SYNC_URL)
async_db = Database(ASYNC_URL, alias="aio", expire_on_commit=False)
sqlite_savepoints(sync_db.sync_engine)
sqlite_savepoints(async_db.sync_engine)
'''

#: the end of every runtime script: the outer test looks for this line.
RUNTIME_DONE = """
print("RUNTIME CHECKS PASSED")
"""

REGISTRY_AND_LOOKUP = '''
# Database(url) registers; a sync URL makes a sync alias, an async driver an async one.
assert get_database() is sync_db and get_database("aio") is async_db
assert registered_databases() == {"default": sync_db, "aio": async_db}
assert (sync_db.is_async, async_db.is_async) == (False, True)
error = raises(ContextError, get_database, "nope")
assert "'nope'" in str(error), error
raises(ContextError, db_session, "nope")

# sync: one session per context, another in a nested context, the first one again after it.
with session_context():
    first = db_session()
    assert db_session() is first
    with session_context():
        assert db_session() is not first
    assert db_session() is first


async def lookups():
    """Sessions seen by child tasks and a thread after the parent's first lookup."""
    async def child():
        await asyncio.sleep(0)
        return db_session("aio")

    async with session_context():
        parent = db_session("aio")
        children = await asyncio.gather(*(child() for _ in range(5)))
        threaded = await asyncio.to_thread(db_session, "aio")
        assert all(session is parent for session in children), children
        assert threaded is parent and db_session("aio") is parent


asyncio.run(lookups())

# helpers on a sync alias return None and act on the context session.
with session_context():
    add("kept")
    assert commit_db_session() is None
    add("dropped")
    db_session().flush()
    assert rollback_db_session() is None
    assert committed() == ["kept"]
    db_session().execute(text("SELECT 1"))
    assert sync_db.engine.pool.checkedout() == 1
    session = db_session()
    assert close_db_session() is None
    assert sync_db.engine.pool.checkedout() == 0
    assert db_session() is not session
    assert close_db_session() is None
assert sync_db.engine.pool.checkedout() == 0
reset()


async def async_helpers():
    """On an async alias every helper returns an awaitable, with or without a session."""
    async with session_context():
        nothing = commit_db_session("aio")
        assert inspect.isawaitable(nothing)
        await nothing
        await add_async("kept")
        committing = commit_db_session("aio")
        assert inspect.isawaitable(committing)
        await committing
        await add_async("dropped")
        rolling_back = rollback_db_session("aio")
        assert inspect.isawaitable(rolling_back)
        await rolling_back
        assert committed() == ["kept"]
        await db_session("aio").execute(text("SELECT 1"))
        assert async_db.sync_engine.pool.checkedout() == 1
        session = db_session("aio")
        closing = close_db_session("aio")
        assert inspect.isawaitable(closing)
        await closing
        assert async_db.sync_engine.pool.checkedout() == 0
        assert db_session("aio") is not session
        await close_db_session("aio")
    await async_db.engine.dispose()


asyncio.run(async_helpers())
assert committed() == ["kept"]
'''

CONTEXTS = """
# session_context commits at its end, not before; rolls back when the block raises.
with session_context():
    add("committed")
    db_session().flush()
    assert committed() == []
assert committed() == ["committed"]
error_in_block = False
try:
    with session_context():
        add("rolled back")
        db_session().flush()
        fail()
except LookupError:
    error_in_block = True
assert error_in_block and committed() == ["committed"]


@session_context()
def decorated(name):
    add(name)


decorated("decorated")
assert committed() == ["committed", "decorated"]
reset()

# run_in_new_context: sessions of its own, committed on return, rolled back on error.
with session_context():
    mine = db_session()

    def job(name):
        assert db_session() is not mine
        add(name)
        return name

    assert run_in_new_context(job, "job") == "job"
    raises(LookupError, run_in_new_context, lambda: (job("failed job"), fail()))
    assert db_session() is mine
assert committed() == ["job"]

# new_session belongs to no context: the caller commits and closes it.
with session_context():
    context_session = db_session()
    with new_session() as own, own.begin():
        assert own is not context_session and own is not new_session()
        own.add(Item(name="own"))
    assert db_session() is context_session
assert committed() == ["job", "own"]
reset()


async def async_contexts():
    async with session_context():
        await add_async("async committed")
    assert committed() == ["async committed"]
    await raises_async(LookupError, run_session_context_failing())

    async def job(name):
        await add_async(name)
        return name

    names = [await run_in_new_context(job, f"job {n}") for n in range(3)]
    assert names == ["job 0", "job 1", "job 2"]
    await raises_async(LookupError, run_in_new_context(failing_job))
    async with new_session("aio") as own:
        own.add(Item(name="async own"))
        await own.commit()
    await async_db.engine.dispose()


async def run_session_context_failing():
    async with session_context():
        await add_async("async rolled back")
        await fail_async()


async def failing_job():
    await add_async("failed job")
    await fail_async()


asyncio.run(async_contexts())
assert committed() == ["async committed", "async own", "job 0", "job 1", "job 2"]
"""

ATOMIC = """
@atomic
def bare(name):
    add(name)


@atomic(using="default", savepoint=True)
def with_arguments(name):
    add(name)
    fail()


# the outermost block commits at its end (before the context's end) and rolls back on error.
with session_context():
    bare("bare")
    assert committed() == ["bare"]
    raises(LookupError, with_arguments, "failed")
    with atomic():
        add("with")
    assert committed() == ["bare", "with"]
reset()

# nested: a savepoint; the inner failure rolls back only the inner work.
with session_context():
    with atomic():
        add("outer")
        raises(LookupError, with_arguments, "inner")
        add("after inner")
    assert committed() == ["after inner", "outer"]

# durable=True refuses to nest, and works as the outermost block.
with session_context():
    with atomic():
        add("around durable")
        error = raises(ContextError, atomic(durable=True).__enter__)
        assert "durable" in str(error), error
    with atomic(durable=True):
        add("durable")
assert committed() == ["after inner", "around durable", "durable", "outer"]
reset()

# savepoint=False: the inner failure dooms the whole outer block.
with session_context():
    with atomic():
        add("doomed outer")
        try:
            with atomic(savepoint=False):
                add("doomed inner")
                fail()
        except LookupError:
            pass
        add("doomed after")
    assert committed() == []

# a sync block on an async alias is refused.
raises(ContextError, atomic("aio").__enter__)


@atomic(using="aio")
async def async_decorated(name, failing=False):
    await add_async(name)
    if failing:
        await fail_async()


async def async_atomic():
    async with session_context():
        await async_decorated("async decorated")
        await raises_async(LookupError, async_decorated("async failed", failing=True))
        async with atomic("aio"):
            await add_async("async outer")
            await raises_async(LookupError, async_decorated("async inner", failing=True))
        assert committed() == ["async decorated", "async outer"]
    await async_db.engine.dispose()


asyncio.run(async_atomic())
assert committed() == ["async decorated", "async outer"]
"""

#: imports the context runtime, uses it on an in-memory SQLite database, lists pytest modules.
NO_PYTEST_SCRIPT = """
import sys
from sqlalchemy import text
from pytest_ctxdb.context import Database, db_session, session_context

Database("sqlite://")
with session_context():
    assert db_session().scalar(text("SELECT 1")) == 1
print(sorted(name for name in sys.modules if name.partition(".")[0] in ("pytest", "_pytest")))
"""


@pytest.fixture
def app_urls(backend: Backend, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A sync and an async URL of a database made for one test (and dropped after it)."""
    if backend.url is None:
        path = tmp_path / "app.db"
        yield f"sqlite:///{path}", f"sqlite+aiosqlite:///{path}"
        return
    name = f"ctxdb_runtime_{uuid.uuid4().hex[:12]}"
    admin = create_engine(backend.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = backend.url.set(database=name)
    try:
        yield (
            url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False),
            url.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False),
        )
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def run_script(tmp_path: Path, urls: tuple[str, str], body: str) -> None:
    """Run prelude + ``body`` in a fresh interpreter; it must reach its last line."""
    (tmp_path / "models.py").write_text(MODELS)
    script = tmp_path / "app_script.py"
    script.write_text(RUNTIME_PRELUDE + body + RUNTIME_DONE)
    completed = subprocess.run(
        [sys.executable, str(script), *urls],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert completed.stdout.splitlines()[-1:] == ["RUNTIME CHECKS PASSED"], output


def test_context_runtime_imports_and_runs_without_pytest(tmp_path: Path) -> None:
    """Importing and using pytest_ctxdb.context in a fresh interpreter loads no pytest module."""
    completed = subprocess.run(
        [sys.executable, "-c", NO_PYTEST_SCRIPT],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


def test_registry_lookups_and_helpers(tmp_path: Path, app_urls: tuple[str, str]) -> None:
    """Database registers; db_session is one object per context (child tasks too); helpers act."""
    run_script(tmp_path, app_urls, REGISTRY_AND_LOOKUP)


def test_session_context_run_in_new_context_and_new_session(
    tmp_path: Path, app_urls: tuple[str, str]
) -> None:
    """session_context / run_in_new_context commit or roll back; new_session is context-free."""
    run_script(tmp_path, app_urls, CONTEXTS)


def test_atomic_blocks(tmp_path: Path, app_urls: tuple[str, str]) -> None:
    """atomic in every form: commit, rollback, savepoints, durable, savepoint=False, async."""
    run_script(tmp_path, app_urls, ATOMIC)
