"""The public fixtures (and their private machinery)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from .._errors import ContextError, CtxdbError
from .._settings import DEFAULT_ALIAS
from ..binding import AsyncTestBinding, BindingPlan, TestBinding, TestSessionSource
from ..context import _scope, _seam
from ._layers import item_problem
from ._marker import MarkerError, read_marker
from ._state import RunState, active_state

from sqlalchemy.ext.asyncio import AsyncSession

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = (
    "ASYNC_FIXTURES",
    "ASYNC_REQUEST_KEY",
    "SYNC_FIXTURES",
    "AsyncHandles",
    "TestHandles",
    "_ctxdb_anyio_binding",
    "_ctxdb_async",
    "_ctxdb_binding",
    "_ctxdb_state",
    "async_db_connection",
    "async_db_engine",
    "async_db_session",
    "async_db_sessions",
    "async_db_setup_session",
    "async_handles",
    "db_connection",
    "db_engine",
    "db_session",
    "db_sessions",
    "db_setup_session",
    "fail_on_error",
    "make_plan",
    "sync_handles",
    "test_handles",
)

#: fixtures that need the sync driver / the async driver (used to provision before the run).
SYNC_FIXTURES = frozenset(
    {"db_engine", "db_connection", "db_session", "db_sessions", "db_setup_session"}
)
ASYNC_FIXTURES = frozenset(
    {
        "async_db_engine",
        "async_db_connection",
        "async_db_session",
        "async_db_sessions",
        "async_db_setup_session",
    }
)
_LOOP_SCOPES = ("function", "class", "module", "package", "session")


def fail_on_error(error: CtxdbError) -> None:
    """Fail the current test with ``error``'s message and no traceback (and no chained
    exception: the context of the ``except`` block it is called from is dropped)."""
    __tracebackhide__ = True
    failure = pytest.fail.Exception(f"pytest-ctxdb: {error}", pytrace=False)
    failure.__suppress_context__ = True
    raise failure


@pytest.fixture(scope="session")
def _ctxdb_state() -> RunState:
    state = active_state()
    if state.skip_reason is not None:  # db_container_missing = skip
        pytest.skip(f"pytest-ctxdb: {state.skip_reason}")
    return state


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


@pytest.fixture(scope="session")
def db_setup_session(_ctxdb_state: RunState) -> Iterator[Session]:
    """A sync ORM ``Session`` for fixtures of any scope (session scope; default alias).

    What it commits goes into the layer of the fixture using it: used in a class-, module-,
    package- or session-scoped fixture, into a SAVEPOINT of that scope on the test
    connection, which every test of the scope sees, which each test's own changes are rolled
    back over, and which is rolled back when the scope ends; used in a test or a
    function-scoped fixture, into the test's transaction. ``commit()`` releases a SAVEPOINT
    (``join_transaction_mode="create_savepoint"``); after each test and scope it is rolled
    back, so objects it loaded are reloaded on next access. Ini ``db_session_class`` sets its
    class. For an async alias use ``async_db_setup_session``.
    """
    try:
        session = _ctxdb_state.scoped.setup_session(DEFAULT_ALIAS)
    except CtxdbError as exc:
        fail_on_error(exc)
    yield session
    session.close()


class LoopSetupSession:
    """``async_db_setup_session``'s value: stands for the ``AsyncSession`` of the running
    event loop (an async connection belongs to its loop), made on first use in each loop
    scope on that loop's test connection of the default alias. Attribute access and method
    calls go to that session (``add``, ``await commit()``, ``await execute(...)``, ...);
    :meth:`session` returns it (for ``isinstance`` checks or ``async with``).
    """

    __slots__ = ("_state",)

    def __init__(self, state: RunState) -> None:
        self._state = state

    def session(self) -> AsyncSession:
        """The running loop's ``AsyncSession``.

        :raises ContextError: no event loop runs, or pytest-ctxdb has no test connection in
            it (use it in async fixtures and async tests).
        """
        connections = self._state.running_loop_connections()
        if connections is None:
            raise ContextError(
                "async_db_setup_session was used outside the event loop of an async fixture "
                "or test (an async connection belongs to its loop): use it in "
                "@pytest_asyncio.fixture fixtures and async tests."
            )
        session: AsyncSession = connections.setup_session(
            self._state.session_class(DEFAULT_ALIAS, True)
        )
        return session

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session(), name)


@pytest.fixture(scope="session")
def async_db_setup_session(_ctxdb_state: RunState) -> LoopSetupSession:
    """The async twin of ``db_setup_session`` (session scope; default alias): an
    ``AsyncSession`` on the test connection of the event loop it is used in.

    In an async class-, module-, package- or session-scoped fixture, what it commits goes into
    that scope's layer on the connection of the fixture's loop scope (pytest-asyncio
    ``loop_scope``): the tests running in that loop scope see it; tests of other loop scopes,
    and sync tests, have connections of their own and do not. In a test, or a function-scoped
    fixture, it writes into the test's transaction. Returns a stand-in forwarding to the
    running loop's session (``.session()`` returns the session itself).
    """
    return LoopSetupSession(_ctxdb_state)


def make_plan(item: pytest.Item, state: RunState) -> BindingPlan:
    """The test's :class:`BindingPlan` from its ``db`` marker (default alias without one).

    An alias the marker names that is not configured gets a test database of its own (a
    marker added after collection names it here first).

    :raises MarkerError: the marker's arguments are invalid (message names the marker), or
        such an alias cannot get a test database.
    """
    marker = read_marker(item, state.aliases)
    if marker is None:
        return state.default_plan
    for alias in marker.using:
        try:
            state.add_alias(alias, f"@pytest.mark.db in {item.nodeid}")
        except CtxdbError as exc:
            raise MarkerError(f"@pytest.mark.db(using={alias!r}): {exc}") from None
    return BindingPlan(
        marker.using,
        transaction=marker.transaction,
        reset_sequences=marker.reset_sequences,
        mirrors=state.mirrors,
    )


class TestHandles:
    """What one test has open: its plan, the session source installed for it and its sync
    binding (made by the first sync database fixture).

    Made once per test by whichever database fixture comes first (sync or async), kept in
    the item's stash, and closed by one item finalizer after every fixture's teardown: the
    sync binding is rolled back, then the source is uninstalled.
    """

    __test__ = False
    __slots__ = ("_failed_before", "_item", "_token", "plan", "source", "state", "sync")

    def __init__(self, item: pytest.Item, state: RunState, plan: BindingPlan) -> None:
        self.state = state
        self.plan = plan
        self.sync: TestBinding | None = None
        self._item = item
        try:
            adapters = state.adapters()
        except CtxdbError as exc:
            fail_on_error(exc)
        self.source = source = TestSessionSource(adapters, state.session_class)
        source.root_scope = root = _scope.SessionScope()
        self._token = _scope._current.set(root)
        _seam.install_source(source)
        state.guard_adapters()
        self._failed_before = item.session.testsfailed

    def close(self) -> None:
        """Roll back the sync binding (if any), restore adapters, uninstall the source."""
        source = self.source
        try:
            if self.sync is not None:
                self.sync.close()
        finally:
            source.detach()
            _seam.uninstall_source(source)
            try:
                _scope._current.reset(self._token)
            except ValueError:  # set in another context (should not happen): clear it
                _scope._current.set(None)
            # Let the test's sessions, bindings and their objects go now: pytest keeps every
            # item (and its stash) to the end of the run, and a heap growing by a few dozen
            # objects per test makes every full garbage collection, and the exit, slower.
            stash = self._item.stash
            if _TEST_KEY in stash:
                del stash[_TEST_KEY]
            if _ASYNC_KEY in stash:
                del stash[_ASYNC_KEY]
            if ASYNC_REQUEST_KEY in stash:
                del stash[ASYNC_REQUEST_KEY]
            self.sync = None
        if source.escapes and self._item.session.testsfailed == self._failed_before:
            # The test passed: the app swallowed the error raised at checkout. Fail it anyway
            # (a test that already failed, likely on that error, is not reported twice).
            pytest.fail("pytest-ctxdb: " + "\n".join(source.escapes), pytrace=False)


_TEST_KEY = pytest.StashKey[TestHandles]()


def _plan_or_fail(item: pytest.Item, state: RunState) -> BindingPlan:
    problem: str | None = None
    try:
        plan = make_plan(item, state)
    except MarkerError as exc:
        problem = f"In {item.nodeid}: {exc}"
    if problem is not None:  # outside the except block: one line, no chained exception
        pytest.fail(problem, pytrace=False)
    problem = item_problem(item, state)
    if problem is not None:
        pytest.fail(f"pytest-ctxdb: {problem}.", pytrace=False)
    if plan.transaction:
        for alias in plan.physical_aliases():
            labels = state.scoped.labels(alias)
            if labels:
                pytest.fail(
                    f"pytest-ctxdb: {item.nodeid} is @pytest.mark.db(transaction=True), but "
                    f"the test connection of alias {alias!r} holds the data of wider-scoped "
                    f"fixtures of {', '.join(labels)} in savepoints: real commits run on "
                    "another connection, which cannot see that data, and emptying the tables "
                    "afterwards would wait for its locks. Move the test out of that scope, "
                    "or give it function-scoped fixtures.",
                    pytrace=False,
                )
    if not plan.transaction and state.nontransactional:
        for alias in plan.physical_aliases():
            tables = state.nontransactional.get(alias)
            if tables:
                pytest.fail(
                    f"pytest-ctxdb: alias {alias!r}: tables {', '.join(sorted(tables))} use a "
                    "storage engine that cannot roll back (MyISAM/Aria), so this test's data "
                    "would stay. Use ENGINE=InnoDB, or @pytest.mark.db(transaction=True).",
                    pytrace=False,
                )
    return plan


def test_handles(item: pytest.Item, state: RunState) -> TestHandles:
    """The test's :class:`TestHandles`, opened on first use: validates the ``db`` marker and
    installs the test's session source into the context runtime."""
    handles: TestHandles | None = item.stash.get(_TEST_KEY, None)
    if handles is not None:
        return handles
    if state.skip_reason is not None:  # db_container_missing = skip
        pytest.skip(f"pytest-ctxdb: {state.skip_reason}")
    handles = TestHandles(item, state, _plan_or_fail(item, state))
    # Registered before the calling fixture's own finalizer, so it runs after it (LIFO).
    item.addfinalizer(handles.close)
    item.stash[_TEST_KEY] = handles
    return handles


def sync_handles(state: RunState) -> TestHandles:
    """The running test's handles with its sync binding open, made on first use by any sync
    database fixture (so a test pays for one fixture, not a chain); the binding is rolled
    back by the handles' item finalizer after the test.

    The test is ``state.current_item`` (set by ``pytest_runtest_setup``): the fixtures take
    no ``request`` (see :func:`~pytest_ctxdb.plugin._state.active_state`).
    """
    item = state.current_item
    assert item is not None, "pytest-ctxdb: a database fixture outside a test"
    handles = test_handles(item, state)
    if handles.sync is not None:
        return handles
    binding = TestBinding(state.connect, handles.plan, state.cleanup)
    try:
        binding.outer(handles.plan.primary)
        handles.source.attach_sync(binding)
    except CtxdbError as exc:
        binding.close()
        fail_on_error(exc)
    handles.sync = binding
    return handles


@pytest.fixture
def _ctxdb_binding() -> TestHandles:
    """The sync binding (for a test that has only the ``db`` marker)."""
    return sync_handles(active_state())


class SessionMap(Mapping[str, Any]):
    """alias -> the test's session of that alias, made on first access (``db_sessions``)."""

    def __init__(self, make: Any, aliases: tuple[str, ...]) -> None:
        self._make = make
        self._aliases = aliases
        self._sessions: dict[str, Any] = {}

    def __getitem__(self, alias: str) -> Any:
        session = self._sessions.get(alias)
        if session is None:
            session = self._sessions[alias] = self._make(alias)
        return session

    def __iter__(self) -> Iterator[str]:
        return iter(self._aliases)

    def __len__(self) -> int:
        return len(self._aliases)


@pytest.fixture
def db_connection() -> Connection:
    """A sync ``Connection`` to the test database inside an outer transaction (function scope).

    The outer transaction is rolled back after the test, so everything the test wrote through
    this connection, ``db_session`` or any session joined to it is gone. The connection is
    reused from test to test. ``db_connection.commit()`` is refused (it would make the data
    permanent); use ``begin_nested()``, or a ``Session(bind=db_connection,
    join_transaction_mode="create_savepoint")`` whose commits release savepoints.
    """
    handles = sync_handles(active_state())
    return handles.sync.outer(handles.plan.primary).connection  # type: ignore[union-attr]


@pytest.fixture
def db_sessions() -> Mapping[str, Session]:
    """alias -> a sync ``Session`` of that alias, for tests that declare several databases.

    ``@pytest.mark.db(using=["default", "replica"])`` then ``db_sessions["replica"]``. Each
    alias has its own outer transaction (a mirror shares its target's), rolled back after the
    test; ``db_sessions[first declared alias]`` is ``db_session``. The app's context session of
    each alias is the same object in the test's own context. Function scope.
    """

    handles = sync_handles(active_state())
    binding, source = handles.sync, handles.source
    assert binding is not None

    def make(alias: str) -> Session:
        return source.root_session(alias, False, binding.outer(alias).session)  # type: ignore[no-any-return]

    return SessionMap(make, binding.plan.aliases)


@pytest.fixture
def db_session() -> Session:
    """A sync ORM ``Session`` on ``db_connection``, rolled back after the test (function scope).

    Made with ``join_transaction_mode="create_savepoint"``, as in SQLAlchemy's recipe
    "Joining a Session into an External Transaction": ``commit()`` releases a SAVEPOINT (the
    data is visible to everything on the test connection), ``rollback()`` rolls back to it,
    ``close()`` is harmless. A test may request it with ``db_connection``: both share the one
    outer transaction, which is rolled back at the end whatever the test did.
    """
    handles = sync_handles(active_state())
    primary = handles.plan.primary
    return handles.source.root_session(  # type: ignore[no-any-return]
        primary, False, handles.sync.outer(primary).session  # type: ignore[union-attr]
    )


# -- async: sync dispatchers to the fixtures of the requesting test's loop scope -------------


@dataclass(frozen=True)
class AsyncHandles:
    """The async connections of a loop scope and the test's binding on them."""

    connections: Any  # _async_fixtures.AsyncConnections
    binding: AsyncTestBinding
    source: TestSessionSource


def _loop_scope(item: pytest.Item) -> str:
    """The loop scope of the test ``item``, read as pytest-asyncio does: the closest
    ``asyncio`` marker's ``loop_scope``, else ini ``asyncio_default_test_loop_scope``."""
    marker = item.get_closest_marker("asyncio")
    scope: Any = None
    if marker is not None:
        scope = marker.kwargs.get("loop_scope") or marker.kwargs.get("scope")
    if not scope:
        try:
            scope = item.config.getini("asyncio_default_test_loop_scope")
        except ValueError:  # pytest-asyncio < 0.24 has no such ini key
            scope = None
    return str(scope or "function")


#: what the dispatcher hands the per-loop-scope async binding fixture (no fixture lookups).
ASYNC_REQUEST_KEY = pytest.StashKey[tuple[Any, TestHandles]]()


_ASYNC_KEY = pytest.StashKey[AsyncHandles]()


def async_handles(state: RunState) -> AsyncHandles:
    """The running test's async binding, opened on first use by any async database fixture:
    the per-loop-scope fixtures matching the test's loop scope are set up through it.

    The fixtures are requested through the test's own ``FixtureRequest`` (``item._request``,
    as pytest-asyncio does), not a ``request`` argument, which pytest rebuilds per test.
    """
    item = state.current_item
    assert item is not None, "pytest-ctxdb: a database fixture outside a test"
    existing: AsyncHandles | None = item.stash.get(_ASYNC_KEY, None)
    if existing is not None:
        return existing
    request: pytest.FixtureRequest | None = getattr(item, "_request", None)
    if request is None:
        pytest.fail(f"pytest-ctxdb: {item.nodeid} is not a test function", pytrace=False)
    if "anyio_backend" in getattr(item, "fixturenames", ()):
        # anyio's pytest plugin runs this test (@pytest.mark.anyio, or anyio_backend
        # requested): the connection is made in anyio's runner, the loop the test runs in.
        return _anyio_handles(item, state, request)
    try:
        import pytest_asyncio  # noqa: F401
    except ImportError:
        pytest.fail(
            "pytest-ctxdb: async fixtures need pytest-asyncio (or anyio's pytest plugin with "
            "@pytest.mark.anyio); install it with: pip install 'pytest-ctxdb[async]'",
            pytrace=False,
        )
    scope = _loop_scope(item)
    if scope not in _LOOP_SCOPES:
        pytest.fail(f"pytest-ctxdb: unknown asyncio loop scope {scope!r}", pytrace=False)
    handles = _provisioned(item, state, async_=True)
    connections = request.getfixturevalue(f"_ctxdb_async_connection_{scope}")
    item.stash[ASYNC_REQUEST_KEY] = (connections, handles)
    binding: AsyncTestBinding = request.getfixturevalue(f"_ctxdb_async_binding_{scope}")
    return _attach_async(item, handles, connections, binding)


def _provisioned(item: pytest.Item, state: RunState, *, async_: bool) -> TestHandles:
    handles = test_handles(item, state)
    try:
        # Provision here, outside any event loop (provisioning may run its own loop).
        state.provision(handles.plan.physical_aliases(), sync=False, async_=async_)
    except CtxdbError as exc:
        fail_on_error(exc)
    return handles


def _attach_async(
    item: pytest.Item, handles: TestHandles, connections: Any, binding: AsyncTestBinding
) -> AsyncHandles:
    try:
        handles.source.attach_async(binding)
    except CtxdbError as exc:
        fail_on_error(exc)
    result = item.stash[_ASYNC_KEY] = AsyncHandles(connections, binding, handles.source)
    return result


def _anyio_backend_name(backend: Any) -> str:
    """The backend name of an ``anyio_backend`` value (``"asyncio"`` or ``("asyncio", {...})``)."""
    name = backend[0] if isinstance(backend, tuple) and backend else backend
    return str(name)


def _anyio_handles(
    item: pytest.Item, state: RunState, request: pytest.FixtureRequest
) -> AsyncHandles:
    """:func:`async_handles` for a test that anyio's pytest plugin runs."""
    backend = request.getfixturevalue("anyio_backend")
    name = _anyio_backend_name(backend)
    if name != "asyncio":
        pytest.fail(
            f"pytest-ctxdb: {item.nodeid} runs on anyio backend {name!r}; SQLAlchemy's "
            "asyncio extension (AsyncSession, asyncpg, aiosqlite) needs asyncio, so "
            "pytest-ctxdb's async fixtures support anyio_backend = 'asyncio' only. Define "
            "the fixture `anyio_backend` returning 'asyncio' (conftest.py, or "
            "@pytest.mark.parametrize('anyio_backend', ['asyncio'])).",
            pytrace=False,
        )
    handles = _provisioned(item, state, async_=True)
    item.stash[ASYNC_REQUEST_KEY] = (None, handles)
    connections, binding = request.getfixturevalue("_ctxdb_anyio_binding")
    return _attach_async(item, handles, connections, binding)


@pytest.fixture
def _ctxdb_anyio_binding(anyio_backend: Any) -> Iterator[tuple[Any, AsyncTestBinding]]:
    """The connections and binding of a test run by anyio's pytest plugin.

    A plain fixture, so neither pytest-asyncio nor anyio wraps it: it runs its set-up and
    teardown itself in anyio's test runner (``anyio.pytest_plugin.get_runner``, as anyio runs
    async fixtures), holding a lease on it, so the test's coroutine runs in the same event
    loop. anyio closes the runner when its last lease ends (after each test unless a wider
    fixture holds one), so the engine and connection are made and disposed per test.
    """
    try:
        from anyio.pytest_plugin import extract_backend_and_options, get_runner
    except ImportError as exc:  # an anyio without them (they exist in anyio 4)
        pytest.fail(f"pytest-ctxdb: anyio's pytest plugin cannot be used: {exc}", pytrace=False)
    from ._async_connections import AsyncConnections

    state = active_state()
    item = state.current_item
    assert item is not None
    handles = item.stash[ASYNC_REQUEST_KEY][1]
    connections = AsyncConnections(state, "function")
    binding = AsyncTestBinding(connections.connect, handles.plan, state.cleanup)

    async def close() -> None:
        try:
            await binding.close()
        finally:
            await connections.close()

    async def open_() -> None:
        try:
            await binding.open_all()
        except BaseException:
            await close()
            raise

    backend_name, options = extract_backend_and_options(anyio_backend)
    with get_runner(backend_name, options) as runner:
        runner.run_fixture(open_, {})
        try:
            yield connections, binding
        finally:
            runner.run_fixture(close, {})


@pytest.fixture
def _ctxdb_async() -> AsyncHandles:
    """The async binding (for a coroutine test that has only the ``db`` marker)."""
    return async_handles(active_state())


@pytest.fixture
def async_db_engine() -> AsyncEngine:
    """The ``AsyncEngine`` of the test database for the requesting test's event loop.

    One engine per asyncio loop scope (function, class, module, package, session), made and
    disposed in that loop: async connections belong to the loop they were made in. Its driver
    is the async twin of the URL's (asyncpg for PostgreSQL, aiosqlite for SQLite). Like
    ``db_engine``, connections taken from it directly are not isolated.
    """
    handles = async_handles(active_state())
    return handles.connections.engine(handles.binding.plan.primary)  # type: ignore[no-any-return]


@pytest.fixture
def async_db_connection() -> AsyncConnection:
    """An ``AsyncConnection`` inside an outer transaction rolled back after the test.

    The async twin of ``db_connection`` (function scope); it belongs to the requesting test's
    event loop (its ``asyncio`` marker ``loop_scope``, or ``asyncio_default_test_loop_scope``).
    """
    binding = async_handles(active_state()).binding
    return binding.outer(binding.plan.primary).connection


@pytest.fixture
def async_db_sessions() -> Mapping[str, AsyncSession]:
    """alias -> an ``AsyncSession`` of that alias; the async twin of ``db_sessions``."""
    handles = async_handles(active_state())
    binding, source = handles.binding, handles.source

    def make(alias: str) -> AsyncSession:
        return source.root_session(alias, True, binding.outer(alias).session)  # type: ignore[no-any-return]

    return SessionMap(make, binding.plan.aliases)


@pytest.fixture
def async_db_session() -> AsyncSession:
    """An ``AsyncSession`` on ``async_db_connection``, rolled back after the test.

    The async twin of ``db_session`` (function scope), with
    ``join_transaction_mode="create_savepoint"``: ``await session.commit()`` releases a
    SAVEPOINT, ``await session.rollback()`` rolls back to it. Works under pytest-asyncio strict
    and auto modes and every loop scope; the connection and engine are made and disposed in
    the test's own loop.
    """
    handles = async_handles(active_state())
    primary = handles.binding.plan.primary
    return handles.source.root_session(  # type: ignore[no-any-return]
        primary, True, handles.binding.outer(primary).session
    )
