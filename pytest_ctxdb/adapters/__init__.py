"""Adapters: bind other session-keeping styles to the test connection.

* ``db_sessionmakers`` (ini): ``sessionmaker`` / ``async_sessionmaker`` objects, rebound per test;
* ``db_engines`` (ini): ``Engine`` / ``AsyncEngine`` objects, left where the app keeps them;
  per test their ``connect()`` returns a :class:`BranchConnection` on the test connection,
  whose transactions are savepoints there;
* context-async-sqlalchemy: ``DBConnect.session_maker`` patched, when the app imports it.
"""

from __future__ import annotations

from ._engines import BranchConnection, EngineBinding
from ._patches import (
    Adapter,
    ContextAsyncSQLAlchemyAdapter,
    EngineAdapter,
    SessionmakerAdapter,
    load_adapters,
)

__all__ = (
    "Adapter",
    "BranchConnection",
    "ContextAsyncSQLAlchemyAdapter",
    "EngineAdapter",
    "EngineBinding",
    "SessionmakerAdapter",
    "load_adapters",
)
