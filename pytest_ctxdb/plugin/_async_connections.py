"""The async engines and reused connections of one event loop (pytest-asyncio's loop scopes
and anyio's test runner share them); imports neither plugin."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import NullPool

from ..binding import AsyncReusedConnection
from ._state import RunState, guard_own_engine

__all__ = ("AsyncConnections",)


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
