"""Adapters: bind other session-keeping styles to the test connection.

* ``db_sessionmakers`` (ini): ``sessionmaker`` / ``async_sessionmaker`` objects, rebound per test;
* ``db_engines`` (ini): ``Engine`` / ``AsyncEngine`` objects, replaced per test by stand-ins
  whose transactions are savepoints on the test connection;
* context-async-sqlalchemy: ``DBConnect.session_maker`` patched, when the app imports it.
"""

from __future__ import annotations

from ._engines import AsyncSavepointConnection, AsyncTestEngine, SavepointConnection, TestEngine
from ._patches import (
    Adapter,
    ContextAsyncSQLAlchemyAdapter,
    EngineAdapter,
    SessionmakerAdapter,
    load_adapters,
)

__all__ = (
    "Adapter",
    "AsyncSavepointConnection",
    "AsyncTestEngine",
    "ContextAsyncSQLAlchemyAdapter",
    "EngineAdapter",
    "SavepointConnection",
    "SessionmakerAdapter",
    "TestEngine",
    "load_adapters",
)
