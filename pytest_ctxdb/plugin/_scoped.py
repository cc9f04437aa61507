"""The run's scoped data: what class-, module-, package- and session-scoped fixtures write,
kept in layers on the test connections (see :mod:`pytest_ctxdb.binding._layers`).

One :class:`ScopedData` per run (``RunState.scoped``); the plugin's ``ScopedFixture`` drives
it around each wider-scoped fixture, and the scope's node closes its layers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from .._errors import ContextError, CtxdbError
from .._settings import DEFAULT_ALIAS
from ..adapters import Adapter
from ..binding import JOIN_MODE, LayerScope, LayerStack, layers_of

if TYPE_CHECKING:
    from ._state import RunState

__all__ = ("ScopedData",)


def _layers(connection: Connection) -> LayerStack:
    layers = layers_of(connection)
    assert layers is not None, "a rollback-mode test connection has layers"
    return layers


class ScopedData:
    """The layers of one run's test connections, the setup sessions (``db_setup_session``)
    and the adapters bound while wider-scoped fixtures run.

    :param state: the run's state (its connections, adapters, settings).
    """

    def __init__(self, state: RunState) -> None:
        self._state = state
        #: keys of the scopes whose layers a finalizer of their node closes.
        self._open_scopes: set[str] = set()
        #: alias -> ``db_setup_session``'s session of that alias.
        self._setup_sessions: dict[str, Session] = {}
        #: the adapters bound for the wider-scoped fixtures running now.
        self._bound: list[Adapter] = []

    # -- connections ---------------------------------------------------------------------

    def connection(self, alias: str) -> Connection:
        """The rollback-mode test connection of ``alias`` inside its outer transaction (begun
        here if need be), for a wider-scoped fixture's work."""
        connection = self._state.connect(alias)
        _layers(connection).begin()
        return connection

    def async_aliases(self) -> list[str]:
        """The provisioned aliases whose async driver is installed (an async wider-scoped
        fixture gets their loop's test connections ready)."""
        found = []
        for alias in self._state.provisioned:
            try:
                self._state.databases[alias].check_driver(is_async=True)
            except CtxdbError:
                continue
            found.append(alias)
        return found

    def async_session(self, alias: str, options: dict[str, Any]) -> Any:
        """An ``AsyncSession`` of ``alias`` for an async wider-scoped fixture: on the test
        connection of the running event loop (its loop scope's), in the fixture's layer.

        :raises ContextError: no loop is running, or pytest-ctxdb has no connections in it.
        """
        connections = self._state.running_loop_connections()
        if connections is None:
            raise ContextError(
                f"an async session of alias {alias!r} was asked for outside the event loop of "
                "an async fixture's loop scope: make it in an async fixture "
                "(@pytest_asyncio.fixture(scope=..., loop_scope=...))."
            )
        return connections.layer_session(alias, **options)

    # -- scopes --------------------------------------------------------------------------

    def open_scope(self, key: str) -> bool:
        """Note that scope ``key`` may get a layer; ``True`` the first time (the caller then
        schedules :meth:`close_scope` at the end of the scope)."""
        if key in self._open_scopes:
            return False
        self._open_scopes.add(key)
        return True

    def close_scope(self, key: str) -> None:
        """The scope ``key`` ended (its fixtures are torn down): roll back its layer on every
        test connection, async ones in their loops, and forget that it was broken."""
        self._open_scopes.discard(key)
        self._state.layer_cursor.broken.pop(key, None)
        for connection in self._state.trunks():
            _layers(connection).close(key)
        for connections in list(self._state.loop_connections.values()):
            connections.close_scope(key)

    def begin(self) -> None:
        """A wider-scoped fixture starts: begin the outer transaction of every open test
        connection (nothing is sent on most drivers), so that sessions already bound to it
        (``db_setup_session``, the app's) open savepoints in it instead of owning it."""
        for connection in self._state.trunks():
            _layers(connection).begin()

    def check(
        self, fixture: str, scope: LayerScope, opened: list[LayerStack], failed: bool
    ) -> None:
        """After a wider-scoped fixture ran: a layer it left broken (an aborted transaction
        after it failed, or the outer transaction ended) marks its scope broken, so that the
        scope's tests fail with one message, and is rolled back. After a failure the sessions
        kept on the connections are rolled back too, so the next fixture starts clean; a
        savepoint an app connection left open is ended before the next test's."""
        for connection in self._state.trunks():
            layers = _layers(connection)
            problem = layers.check(fixture, scope, probe=failed and layers in opened)
            if failed:
                layers.settle_sessions()  # e.g. db_setup_session, left mid-flush
            if problem is None and layers.layers and connection._nested_transaction is not None:
                layers.end_leftovers(grace=0.0 if failed else 0.2)
            if problem is not None and not connection.invalidated:
                connection.invalidate()

    def labels(self, alias: str) -> list[str]:
        """The labels of the scopes whose data the test connection of ``alias`` holds."""
        connection = self._state.trunk(alias)
        if connection is None:
            return []
        return [layer.scope.label for layer in _layers(connection).layers]

    # -- adapters --------------------------------------------------------------------------

    def bind_adapters(self, connections: Any = None) -> list[Adapter]:
        """Bind the app's sync adapters (ini ``db_engines``, ``db_sessionmakers``,
        ``db_flask_sqlalchemy``, ``db_advanced_alchemy``) to the test connections while a
        wider-scoped fixture runs. With an async fixture's loop ``connections``
        (``AsyncConnections``), the async adapters (async engines and sessionmakers, async
        configs, context-async-sqlalchemy) too, to the default alias's connection in that
        loop. Adapters an enclosing fixture bound stay as they are.

        :returns: the adapters bound now, for :meth:`unbind_adapters`.
        :raises CtxdbError: an import string fails, or a binding had no effect.
        """
        state = self._state
        if DEFAULT_ALIAS not in state.provisioned:
            return []
        bound: list[Adapter] = []
        try:
            if connections is not None:
                self._bind_async(connections, bound)
            if not (
                state.engine_specs
                or state.sessionmaker_specs
                or state.flask_specs
                or state.advanced_alchemy_specs
            ):
                return bound
            state.guard_adapters()
            for adapter in state.adapters():
                if adapter.is_async or adapter in self._bound:
                    continue
                self._bound.append(adapter)
                bound.append(adapter)
                if adapter.binds_aliases:
                    adapter.apply_aliases(self.connection, lambda error: error)
                else:
                    connection = self.connection(DEFAULT_ALIAS)
                    adapter.apply(connection, _layers(connection).session)
        except BaseException:
            self.unbind_adapters(bound)
            raise
        return bound

    def _bind_async(self, connections: Any, bound: list[Adapter]) -> None:
        try:
            connection = connections.connection(DEFAULT_ALIAS)
        except ContextError:  # the default alias has no async connection in this loop
            return
        for adapter in self._state.adapters():
            if adapter.is_async and adapter not in self._bound:
                self._bound.append(adapter)
                bound.append(adapter)
                adapter.apply(
                    connection, lambda **kw: connections.layer_session(DEFAULT_ALIAS, **kw)
                )

    def unbind_adapters(self, adapters: list[Adapter]) -> None:
        """Undo :meth:`bind_adapters` for ``adapters`` (what it returned)."""
        for adapter in adapters:
            if adapter in self._bound:
                self._bound.remove(adapter)
            adapter.restore()

    # -- setup sessions --------------------------------------------------------------------

    def setup_session(self, alias: str) -> Session:
        """``db_setup_session``'s session of ``alias`` on its test connection, made once
        and moved to a new test connection when the old one was replaced (:meth:`follow`)."""
        state = self._state
        alias = state.physical(alias)
        session = self._setup_sessions.get(alias)
        if session is None:
            class_ = state.session_class(alias, False) or Session
            session = class_(join_transaction_mode=JOIN_MODE)
            self._setup_sessions[alias] = session
            connection = state.connect(alias)  # binds it (follow)
            if state.layer_cursor.current is not None:
                # Made while a wider-scoped fixture runs (as its dependency): the outer
                # transaction must be open before the session begins, or it would own it.
                _layers(connection).begin()
        return session

    def follow(self, alias: str, connection: Connection) -> None:
        """Bind the setup session of ``alias`` to its test connection ``connection`` (a new
        one when the last was invalidated)."""
        session = self._setup_sessions.get(alias)
        if session is not None and session.bind is not connection:
            session.close()
            session.bind = connection
            _layers(connection).kept.append(session)

    def end_setup_sessions(self, connections: Any = None) -> None:
        """Commit what ``db_setup_session`` (and, with an async fixture's loop
        ``connections``, ``async_db_setup_session``) still holds at the end of a wider-scoped
        fixture: pending objects are flushed into the layer, and a transaction opened only to
        reload objects (after a commit) is ended instead of staying open under the tests."""
        for session in self._setup_sessions.values():
            if session.in_transaction():
                session.commit()
        if connections is not None:
            connections.end_setup_session()

    def close(self) -> None:
        """Close the setup sessions (at the end of the run)."""
        for session in self._setup_sessions.values():
            session.close()
        self._setup_sessions.clear()
