"""The async engines and reused connections of one event loop (pytest-asyncio's loop scopes
and anyio's test runner share them); imports neither plugin."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.pool import NullPool

from .._errors import ContextError
from .._settings import DEFAULT_ALIAS
from ..binding import JOIN_MODE, AsyncReusedConnection, layers_of
from ._state import RunState, guard_own_engine

__all__ = ("AsyncConnections",)


class AsyncConnections:
    """The async engines and reused connections of one loop, per alias, made on demand.

    An async connection belongs to the event loop it was made in, so each loop scope keeps
    its own, and disposes them in that loop. Made in its loop by a loop scope's fixture, it
    registers itself with the run (``RunState.loop_connections``), so that async
    wider-scoped fixtures running in that loop write into layers on its connections (see
    :mod:`pytest_ctxdb.binding._layers`): the tests of that loop scope see them.

    :param state: the run's state.
    :param scope: the loop scope (``"function"``: a new connection per test, no layers).
    :param loop: the event loop it belongs to (``None``: not registered, e.g. anyio's runner).
    """

    def __init__(
        self, state: RunState, scope: str, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self._state = state
        self._options: dict[str, Any] = {"poolclass": NullPool} if scope == "function" else {}
        self._reused: dict[str, AsyncReusedConnection] = {}
        self._setup_session: AsyncSession | None = None
        self.loop = loop
        if loop is not None:
            state.loop_connections[loop] = self

    def _for(self, alias: str) -> AsyncReusedConnection:
        alias = self._state.physical(alias)
        reused = self._reused.get(alias)
        if reused is None:
            engine = self._state.database(alias).create_async_engine(**self._options)
            guard_own_engine(engine.sync_engine, alias)
            reused = self._reused[alias] = AsyncReusedConnection(
                engine, self._state.layer_cursor
            )
        return reused

    def engine(self, alias: str) -> AsyncEngine:
        return self._for(alias).engine

    async def connect(self, alias: str, fresh: bool) -> AsyncConnection:
        reused = self._for(alias)
        return await (reused.engine.connect() if fresh else reused.get())

    # -- layers ------------------------------------------------------------------------------

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coroutine`` in this loop from sync code (between fixtures and tests, when
        the loop is idle); returns its result. A closed loop runs nothing."""
        loop = self.loop
        if loop is None or loop.is_closed():
            coroutine.close()
            return None
        return loop.run_until_complete(coroutine)

    async def begin_layers(self, aliases: Iterable[str]) -> None:
        """Connect ``aliases`` and begin their outer transactions (an async wider-scoped
        fixture is about to run): sessions made on them then open savepoints in them."""
        for alias in aliases:
            connection = await self._for(alias).get()
            await connection.run_sync(lambda sync: _layers(sync).begin())

    def connection(self, alias: str) -> AsyncConnection:
        """The open test connection of ``alias`` in this loop (begun by :meth:`begin_layers`).

        :raises ContextError: it is not open (the alias has no async test connection here).
        """
        reused = self._reused.get(self._state.physical(alias))
        connection = None if reused is None else reused.current
        if connection is None:
            raise ContextError(
                f"alias {alias!r} has no async test connection in this event loop; an async "
                "class-, module-, package- or session-scoped fixture can write to the aliases "
                "the run's async tests use."
            )
        return connection

    def layer_session(
        self, alias: str, class_: type[AsyncSession] = AsyncSession, **options: Any
    ) -> AsyncSession:
        """A new ``AsyncSession`` on ``alias``'s connection in this loop, joined with
        ``create_savepoint``: what it commits goes into the running fixture's layer; closed
        when that fixture's scope ends."""
        connection = self.connection(alias)
        session = class_(bind=connection, join_transaction_mode=JOIN_MODE, **options)
        sync = connection.sync_connection
        assert sync is not None
        _layers(sync).adopt(session.sync_session)
        return session

    def setup_session(self, class_: type[AsyncSession] | None = None) -> AsyncSession:
        """``async_db_setup_session`` in this loop: one ``AsyncSession`` on the default
        alias's connection, kept across tests (rolled back after each) until the loop's
        connections close."""
        session = self._setup_session
        connection = self.connection(DEFAULT_ALIAS)
        if session is None or session.bind is not connection:
            session = self._setup_session = (class_ or AsyncSession)(
                bind=connection, join_transaction_mode=JOIN_MODE
            )
            sync = connection.sync_connection
            assert sync is not None
            _layers(sync).kept.append(session.sync_session)
        return session

    def end_setup_session(self) -> None:
        """Commit what ``async_db_setup_session`` holds in this loop (see
        ``RunState.end_setup_sessions``), from sync code."""
        session = self._setup_session
        if session is not None and session.in_transaction():
            self.run(session.commit())

    def close_scope(self, key: str) -> None:
        """Roll back the layers of scope ``key`` on this loop's connections (from sync code,
        at the end of the scope)."""
        for reused in self._reused.values():
            connection = reused.current
            if connection is not None:
                self.run(connection.run_sync(lambda sync: _layers(sync).close(key)))

    async def close(self) -> None:
        if self.loop is not None and self._state.loop_connections.get(self.loop) is self:
            del self._state.loop_connections[self.loop]
        session, self._setup_session = self._setup_session, None
        if session is not None:
            await session.close()
        for reused in self._reused.values():
            try:
                await reused.close()
            finally:
                # Dispose in this loop: aiosqlite >= 0.22 otherwise keeps a thread alive at exit.
                await reused.engine.dispose()
        self._reused.clear()


def _layers(connection: Any) -> Any:
    layers = layers_of(connection)
    assert layers is not None, "a rollback-mode test connection has layers"
    return layers
