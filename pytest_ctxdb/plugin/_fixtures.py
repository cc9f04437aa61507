"""The public fixtures (and their private machinery)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from .._errors import CtxdbError
from .._settings import DEFAULT_ALIAS
from ..binding import AsyncReusedConnection, AsyncTestBinding, TestBinding, TestSessionSource
from ._state import STATE_KEY, RunState

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

__all__ = (
    "ASYNC_FIXTURES",
    "CALL_FAILED_KEY",
    "SYNC_FIXTURES",
    "AsyncHandles",
    "_ctxdb_async",
    "_ctxdb_binding",
    "_ctxdb_source",
    "_ctxdb_state",
    "async_db_connection",
    "async_db_engine",
    "async_db_session",
    "db_connection",
    "db_engine",
    "db_session",
    "fail_on_error",
)

#: fixtures that need the sync driver / the async driver (used to provision before the run).
SYNC_FIXTURES = frozenset({"db_engine", "db_connection", "db_session"})
ASYNC_FIXTURES = frozenset({"async_db_engine", "async_db_connection", "async_db_session"})
_LOOP_SCOPES = ("function", "class", "module", "package", "session")


def fail_on_error(error: CtxdbError) -> None:
    """Fail the current test with ``error``'s message and no traceback."""
    __tracebackhide__ = True
    pytest.fail(f"pytest-ctxdb: {error}", pytrace=False)


@pytest.fixture(scope="session")
def _ctxdb_state(request: pytest.FixtureRequest) -> RunState:
    return request.config.stash[STATE_KEY]


@pytest.fixture(scope="session")
def db_engine(_ctxdb_state: RunState) -> Engine:
    """The sync ``Engine`` of the test database (session scope).

    The test database is created by pytest-ctxdb (``test_<name>`` beside the ``--db-url``
    database, or an embedded SQLite file) with its schema; it is dropped at the end of the run.
    Connections taken from this engine directly are *not* isolated: what they commit stays
    until the end of the run. Use ``db_connection`` / ``db_session`` for isolated work.
    """
    try:
        return _ctxdb_state.engine(DEFAULT_ALIAS)
    except CtxdbError as exc:
        fail_on_error(exc)
        raise  # unreachable


#: set on an item whose call phase failed (so teardown does not report an escape twice).
CALL_FAILED_KEY = pytest.StashKey[bool]()


@pytest.fixture
def _ctxdb_source(
    request: pytest.FixtureRequest, _ctxdb_state: RunState
) -> Iterator[TestSessionSource]:
    """Install the test's session source into the context runtime for one test."""
    from ..context import _scope, _seam

    try:
        adapters = _ctxdb_state.adapters()
    except CtxdbError as exc:
        fail_on_error(exc)
    source = TestSessionSource(adapters)
    source.root_scope = root = _scope.SessionScope()
    token = _scope._current.set(root)
    _seam.install_source(source)
    for adapter in adapters:
        for engine in adapter.engines():
            _seam.watch_engine(engine, f"the engine behind {adapter.label}")
    try:
        yield source
    finally:
        source.detach()
        _seam.uninstall_source(source)
        try:
            _scope._current.reset(token)
        except ValueError:  # set in another context (should not happen): clear it
            _scope._current.set(None)
    if source.escapes and not request.node.stash.get(CALL_FAILED_KEY, False):
        # The app swallowed the error raised at checkout: fail the test anyway.
        pytest.fail("pytest-ctxdb: " + "\n".join(source.escapes), pytrace=False)


@pytest.fixture
def _ctxdb_binding(
    _ctxdb_state: RunState, _ctxdb_source: TestSessionSource
) -> Iterator[TestBinding]:
    binding = TestBinding(_ctxdb_state.connection)
    try:
        binding.outer(DEFAULT_ALIAS)
        _ctxdb_source.attach_sync(binding)
    except CtxdbError as exc:
        binding.close()
        fail_on_error(exc)
    yield binding
    binding.close()


@pytest.fixture
def db_connection(_ctxdb_binding: TestBinding) -> Connection:
    """A sync ``Connection`` to the test database inside an outer transaction (function scope).

    The outer transaction is rolled back after the test, so everything the test wrote through
    this connection, ``db_session`` or any session joined to it is gone. The connection is
    reused from test to test. ``db_connection.commit()`` is refused (it would make the data
    permanent); use ``begin_nested()``, or a ``Session(bind=db_connection,
    join_transaction_mode="create_savepoint")`` whose commits release savepoints.
    """
    return _ctxdb_binding.outer(DEFAULT_ALIAS).connection


@pytest.fixture
def db_session(_ctxdb_binding: TestBinding, _ctxdb_source: TestSessionSource) -> Session:
    """A sync ORM ``Session`` on ``db_connection``, rolled back after the test (function scope).

    Made with ``join_transaction_mode="create_savepoint"``, as in SQLAlchemy's recipe
    "Joining a Session into an External Transaction": ``commit()`` releases a SAVEPOINT (the
    data is visible to everything on the test connection), ``rollback()`` rolls back to it,
    ``close()`` is harmless. A test may request it with ``db_connection``: both share the one
    outer transaction, which is rolled back at the end whatever the test did.
    """
    session = _ctxdb_binding.outer(DEFAULT_ALIAS).session()
    _ctxdb_source.root_sessions[(DEFAULT_ALIAS, False)] = session
    return session


# -- async: sync dispatchers to the fixtures of the requesting test's loop scope -------------


@dataclass(frozen=True)
class AsyncHandles:
    """The async connection source of a loop scope and the test's binding on it."""

    source: AsyncReusedConnection
    binding: AsyncTestBinding


def _loop_scope(request: pytest.FixtureRequest) -> str:
    """The loop scope of the requesting test, read as pytest-asyncio does: the closest
    ``asyncio`` marker's ``loop_scope``, else ini ``asyncio_default_test_loop_scope``."""
    marker = request.node.get_closest_marker("asyncio")
    scope: Any = None
    if marker is not None:
        scope = marker.kwargs.get("loop_scope") or marker.kwargs.get("scope")
    if not scope:
        try:
            scope = request.config.getini("asyncio_default_test_loop_scope")
        except ValueError:  # pytest-asyncio < 0.24 has no such ini key
            scope = None
    return str(scope or "function")


@pytest.fixture
def _ctxdb_async(
    request: pytest.FixtureRequest, _ctxdb_state: RunState, _ctxdb_source: TestSessionSource
) -> AsyncHandles:
    try:
        import pytest_asyncio  # noqa: F401
    except ImportError:
        pytest.fail(
            "pytest-ctxdb: async fixtures need pytest-asyncio; "
            "install it with: pip install 'pytest-ctxdb[async]'",
            pytrace=False,
        )
    scope = _loop_scope(request)
    if scope not in _LOOP_SCOPES:
        pytest.fail(f"pytest-ctxdb: unknown asyncio loop scope {scope!r}", pytrace=False)
    try:
        # Provision here, outside any event loop (provisioning may run its own loop).
        _ctxdb_state.provision([DEFAULT_ALIAS], sync=False, async_=True)
    except CtxdbError as exc:
        fail_on_error(exc)
    source: AsyncReusedConnection = request.getfixturevalue(f"_ctxdb_async_connection_{scope}")
    binding: AsyncTestBinding = request.getfixturevalue(f"_ctxdb_async_binding_{scope}")
    try:
        _ctxdb_source.attach_async(binding)
    except CtxdbError as exc:
        fail_on_error(exc)
    return AsyncHandles(source, binding)


@pytest.fixture
def async_db_engine(_ctxdb_async: AsyncHandles) -> AsyncEngine:
    """The ``AsyncEngine`` of the test database for the requesting test's event loop.

    One engine per asyncio loop scope (function, class, module, package, session), made and
    disposed in that loop: async connections belong to the loop they were made in. Its driver
    is the async twin of the URL's (asyncpg for PostgreSQL, aiosqlite for SQLite). Like
    ``db_engine``, connections taken from it directly are not isolated.
    """
    return _ctxdb_async.source.engine


@pytest.fixture
def async_db_connection(_ctxdb_async: AsyncHandles) -> AsyncConnection:
    """An ``AsyncConnection`` inside an outer transaction rolled back after the test.

    The async twin of ``db_connection`` (function scope); it belongs to the requesting test's
    event loop (its ``asyncio`` marker ``loop_scope``, or ``asyncio_default_test_loop_scope``).
    """
    return _ctxdb_async.binding.outer(DEFAULT_ALIAS).connection


@pytest.fixture
def async_db_session(_ctxdb_async: AsyncHandles, _ctxdb_source: TestSessionSource) -> AsyncSession:
    """An ``AsyncSession`` on ``async_db_connection``, rolled back after the test.

    The async twin of ``db_session`` (function scope), with
    ``join_transaction_mode="create_savepoint"``: ``await session.commit()`` releases a
    SAVEPOINT, ``await session.rollback()`` rolls back to it. Works under pytest-asyncio strict
    and auto modes and every loop scope; the connection and engine are made and disposed in
    the test's own loop.
    """
    session = _ctxdb_async.binding.outer(DEFAULT_ALIAS).session()
    _ctxdb_source.root_sessions[(DEFAULT_ALIAS, True)] = session
    return session
