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
from sqlalchemy.pool import NullPool

from .._settings import DEFAULT_ALIAS
from ..binding import AsyncReusedConnection, AsyncTestBinding
from ._state import RunState


def _define(scope: Any) -> tuple[Any, Any]:
    @pytest_asyncio.fixture(scope=scope, loop_scope=scope, name=f"_ctxdb_async_connection_{scope}")
    async def source(_ctxdb_state: RunState) -> AsyncIterator[AsyncReusedConnection]:
        options: dict[str, Any] = {"poolclass": NullPool} if scope == "function" else {}
        engine = _ctxdb_state.database(DEFAULT_ALIAS).create_async_engine(**options)
        reused = AsyncReusedConnection(engine)
        try:
            yield reused
        finally:
            try:
                await reused.close()
            finally:
                # Dispose in this loop: aiosqlite >= 0.22 otherwise keeps a thread alive at exit.
                await engine.dispose()

    @pytest_asyncio.fixture(loop_scope=scope, name=f"_ctxdb_async_binding_{scope}")
    async def binding(request: pytest.FixtureRequest) -> AsyncIterator[AsyncTestBinding]:
        # Already set up by the dispatcher, so this returns the cached value, no loop work.
        reused: AsyncReusedConnection = request.getfixturevalue(f"_ctxdb_async_connection_{scope}")

        async def connect(alias: str) -> Any:
            return await reused.get()

        test_binding = AsyncTestBinding(connect)
        await test_binding.open(DEFAULT_ALIAS)
        yield test_binding
        await test_binding.close()

    return source, binding


_ctxdb_async_connection_function, _ctxdb_async_binding_function = _define("function")
_ctxdb_async_connection_class, _ctxdb_async_binding_class = _define("class")
_ctxdb_async_connection_module, _ctxdb_async_binding_module = _define("module")
_ctxdb_async_connection_package, _ctxdb_async_binding_package = _define("package")
_ctxdb_async_connection_session, _ctxdb_async_binding_session = _define("session")

__all__ = (
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
