"""Scoped data: class-, module-, package- and session-scoped fixtures write into layers.

The pytest side of :mod:`pytest_ctxdb.binding._layers`. Each set-up and teardown of a
wider-scoped fixture runs "in" its scope (:class:`ScopedFixture`): the run's layer cursor
names the scope, the app's adapters are bound to the test connections (an async fixture's:
those of its loop scope), the context runtime makes its sessions there, and database access
is allowed. The scope's layer is
rolled back by a finalizer of the scope's node, registered before the node's fixtures'
own finalizers, so it runs after them.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from .._errors import CtxdbError
from ..binding import LayerScope
from ..context import _scope, _seam
from ._state import RunState

__all__ = (
    "SETUP_SESSIONS",
    "WIDER_SCOPES",
    "ScopedFixture",
    "item_problem",
    "layer_scope",
    "open_binding_for",
    "run_scoped",
    "wants_layer",
)

#: fixture scopes whose data goes into a layer.
WIDER_SCOPES = frozenset({"class", "module", "package", "session"})
#: the sessions for fixtures of any scope.
SETUP_SESSIONS = frozenset({"db_setup_session", "async_db_setup_session"})
#: pytest-ctxdb's own wider-scoped fixtures that write nothing themselves.
_OWN = frozenset({"db_engine", *SETUP_SESSIONS})


def wants_layer(fixture: str) -> bool:
    """``False`` for pytest-ctxdb's own wider-scoped fixtures (the others run in a layer)."""
    return fixture not in _OWN and not fixture.startswith("_ctxdb_")


def open_binding_for(state: RunState, argnames: tuple[str, ...]) -> None:
    """Open the running test's binding before a function-scoped fixture that uses a setup
    session runs: what it writes goes into the test's transaction, which must be open
    before the session begins (or the session would own the outer transaction)."""
    if state.current_item is None:
        return
    from ._fixtures import async_handles, sync_handles

    if "db_setup_session" in argnames:
        sync_handles(state)
    if "async_db_setup_session" in argnames:
        async_handles(state)

_SCOPE_KEY = pytest.StashKey[LayerScope]()


def layer_scope(node: pytest.Item | pytest.Collector | pytest.Session, kind: str) -> LayerScope:
    """The :class:`LayerScope` of the node a ``kind``-scoped fixture belongs to (its
    ``request.node``: the session, a package, a module, a class, or the test itself for a
    class-scoped fixture of a test outside any class), made once per node."""
    scope = node.stash.get(_SCOPE_KEY, None)
    if scope is None:
        enclosing = frozenset(each.nodeid for each in node.listchain())
        label = f"{kind} {node.nodeid}" if node.nodeid else "the session"
        scope = node.stash[_SCOPE_KEY] = LayerScope(node.nodeid, kind, label, enclosing)
    return scope


def item_problem(item: pytest.Item, state: RunState) -> str | None:
    """Why ``item`` cannot run: the data of a scope it lies in was lost, else ``None``."""
    broken = state.layer_cursor.broken
    if not broken:
        return None
    return state.layer_cursor.problem(frozenset(each.nodeid for each in item.listchain()))


class ScopedFixture:
    """One wider-scoped fixture of a run with test databases, around its set-up and its
    teardown (see the module docstring).

    :param state: the run's state.
    :param request: the fixture's request (its ``node`` is the scope's node).
    :param fixturedef: the fixture.
    """

    def __init__(
        self, state: RunState, request: pytest.FixtureRequest, fixturedef: Any
    ) -> None:
        self.state = state
        self.fixture = fixturedef.argname
        self.scope = layer_scope(request.node, fixturedef.scope)
        if state.scoped.open_scope(self.scope.key):
            request.node.addfinalizer(lambda: state.scoped.close_scope(self.scope.key))
        self._entered = False
        self._saved: tuple[Any, ...] = ()
        #: the adapters this fixture bound (those not bound already by an enclosing one).
        self._applied: list[Any] = []
        #: an async fixture's loop connections (its loop scope's), set at its set-up, and
        #: the aliases it readies there.
        self.connections: Any = None
        self._aliases: list[str] = []
        loop_scope = _loop_scope(request, fixturedef)
        if loop_scope is not None:
            self._aliases = state.scoped.async_aliases()
            if self._aliases:
                # Outside the loop: pytest-asyncio sets the fixture up in the scope's runner.
                self.connections = request.getfixturevalue(
                    f"_ctxdb_async_connection_{loop_scope}"
                )

    def enter(self) -> None:
        """The fixture's set-up or teardown starts."""
        if self._entered:
            return
        self._entered = True
        state = self.state
        state.layer_cursor.enter(self.scope, self.fixture)
        self._saved = (_seam._blocked, _seam._ambient, _scope._current.set(_scope.SessionScope()))
        _seam.block(None)
        _seam.set_ambient(state.ambient_source)
        state.scoped.begin()
        if self.connections is not None:
            self.connections.run(self.connections.begin_layers(self._aliases))
        if _seam._source is not None:
            return  # set up inside a test (getfixturevalue): the test's binding is in effect
        try:
            self._applied = state.scoped.bind_adapters(self.connections)
        except CtxdbError:
            self.leave(failed=True)
            raise

    def leave(self, failed: bool = False) -> None:
        """The fixture's set-up or teardown ended (``failed``: by raising)."""
        if not self._entered:
            return
        self._entered = False
        state = self.state
        blocked, ambient, token = self._saved
        try:
            _end_context_sessions(commit=not failed, connections=self.connections)
            if not failed:
                state.scoped.end_setup_sessions(self.connections)
        finally:
            applied, self._applied = self._applied, []
            state.scoped.unbind_adapters(applied)
            try:
                _scope._current.reset(token)
            except ValueError:  # set in another context (should not happen): clear it
                _scope._current.set(None)
            _seam.set_ambient(ambient)
            _seam.block(blocked)
            opened = state.layer_cursor.leave()
            state.scoped.check(self.fixture, self.scope, opened, failed)


def _end_context_sessions(commit: bool, connections: Any) -> None:
    """Commit (or roll back) the sessions the fixture's own context made through the context
    runtime, as a request's are at its end (an async fixture's in its loop); they stay open
    (kept by the layer), so the objects the fixture returns stay attached."""
    scope = _scope._current.get()
    if scope is None:
        return
    for session in list(scope.sessions.values()):
        if isinstance(session, Session) and session.in_transaction():
            if commit:
                session.commit()
            else:
                session.rollback()
        elif isinstance(session, AsyncSession) and session.in_transaction():
            if connections is not None:
                connections.run(session.commit() if commit else session.rollback())


def _loop_scope(request: pytest.FixtureRequest, fixturedef: Any) -> str | None:
    """The loop scope an async fixture runs in, read as pytest-asyncio reads it (its
    ``loop_scope``, else ini ``asyncio_default_fixture_loop_scope``, else its own scope);
    ``None`` for a sync fixture."""
    func = fixturedef.func
    declared = getattr(func, "_loop_scope", None)
    if declared is None and not (
        inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func)
    ):
        return None
    if declared is not None:
        return str(declared)
    try:
        default = request.config.getini("asyncio_default_fixture_loop_scope")
    except ValueError:  # no pytest-asyncio
        return None
    if not default or default == "fixture-scope":
        return str(fixturedef.scope)
    return str(default)


def run_scoped(
    state: RunState, request: pytest.FixtureRequest, fixturedef: Any
) -> ScopedFixture:
    """Make the :class:`ScopedFixture` of a wider-scoped fixture about to be set up and
    schedule its teardown phase: ``fixturedef`` finalizers run last-in first-out, so one
    added now runs after the fixture's own teardown, one added after the set-up before it."""
    scoped = ScopedFixture(state, request, fixturedef)
    fixturedef.addfinalizer(scoped.leave)
    return scoped

