"""Per-loop-scope async fixtures; imported only when pytest-asyncio is installed.

For each loop scope S there is a connection source (fixture scope S, loop scope S) and a
test binding (function scope, loop scope S); the public ``async_db_*`` fixtures dispatch to
the pair matching the requesting test's loop scope.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from ..binding import AsyncTestBinding
from ._async_connections import AsyncConnections
from ._fixtures import ASYNC_REQUEST_KEY
from ._state import RunState, active_state


def _define(scope: Any) -> tuple[Any, Any]:
    @pytest_asyncio.fixture(scope=scope, loop_scope=scope, name=f"_ctxdb_async_connection_{scope}")
    async def source(_ctxdb_state: RunState) -> AsyncIterator[AsyncConnections]:
        connections = AsyncConnections(_ctxdb_state, scope, asyncio.get_running_loop())
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
