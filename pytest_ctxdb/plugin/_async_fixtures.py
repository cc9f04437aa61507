"""Per-loop-scope async fixtures; imported only when pytest-asyncio is installed.

For each loop scope S there is a connection source (fixture scope S, loop scope S) and a
test binding (function scope, loop scope S); the public ``async_db_*`` fixtures dispatch to
the pair matching the requesting test's loop scope.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import NullPool

from ..binding import AsyncReusedConnection, AsyncTestBinding
from ._fixtures import ASYNC_REQUEST_KEY
from ._state import RunState, active_state, guard_own_engine


class AsyncConnections:
    """The async engines and reused connections of one loop, per alias, made on demand.

    An async connection belongs to the event loop it was made in, so each loop scope keeps
    its own, and disposes them in that loop.
    """

    def __init__(self, state: RunState, scope: str) -> None:
        self._state = state
        self._options: dict[str, Any] = {"poolclass": NullPool} if scope == "function" else {}
        self._reused: dict[str, AsyncReusedConnection] = {}

    def _for(self, alias: str) -> AsyncReusedConnection:
        alias = self._state.physical(alias)
        reused = self._reused.get(alias)
        if reused is None:
            engine = self._state.database(alias).create_async_engine(**self._options)
            guard_own_engine(engine.sync_engine, alias)
            reused = self._reused[alias] = AsyncReusedConnection(engine)
        return reused

    def engine(self, alias: str) -> AsyncEngine:
        return self._for(alias).engine

    async def connect(self, alias: str, fresh: bool) -> AsyncConnection:
        reused = self._for(alias)
        return await (reused.engine.connect() if fresh else reused.get())

    async def close(self) -> None:
        for reused in self._reused.values():
            try:
                await reused.close()
            finally:
                # Dispose in this loop: aiosqlite >= 0.22 otherwise keeps a thread alive at exit.
                await reused.engine.dispose()
        self._reused.clear()


def _define(scope: Any) -> tuple[Any, Any]:
    @pytest_asyncio.fixture(scope=scope, loop_scope=scope, name=f"_ctxdb_async_connection_{scope}")
    async def source(_ctxdb_state: RunState) -> AsyncIterator[AsyncConnections]:
        connections = AsyncConnections(_ctxdb_state, scope)
        try:
            yield connections
        finally:
            await connections.close()

    @pytest_asyncio.fixture(loop_scope=scope, name=f"_ctxdb_async_binding_{scope}")
    async def binding() -> AsyncIterator[AsyncTestBinding]:
        # Handed over by the dispatcher (already set up; no fixture lookups here).
        item = active_state().current_item
        assert item is not None
        connections, handles = item.stash[ASYNC_REQUEST_KEY]
        test_binding = AsyncTestBinding(connections.connect, handles.plan, handles.state.cleanup)
        try:
            await test_binding.open_all()
        except BaseException:
            await test_binding.close()
            raise
        yield test_binding
        await test_binding.close()

    return source, binding


_ctxdb_async_connection_function, _ctxdb_async_binding_function = _define("function")
_ctxdb_async_connection_class, _ctxdb_async_binding_class = _define("class")
_ctxdb_async_connection_module, _ctxdb_async_binding_module = _define("module")
_ctxdb_async_connection_package, _ctxdb_async_binding_package = _define("package")
_ctxdb_async_connection_session, _ctxdb_async_binding_session = _define("session")

__all__ = (
    "AsyncConnections",
    "_ctxdb_async_binding_class",
    "_ctxdb_async_binding_function",
    "_ctxdb_async_binding_module",
    "_ctxdb_async_binding_package",
    "_ctxdb_async_binding_session",
    "_ctxdb_async_connection_class",
    "_ctxdb_async_connection_function",
    "_ctxdb_async_connection_module",
    "_ctxdb_async_connection_package",
    "_ctxdb_async_connection_session",
)
