"""Adapters: bind other session-keeping styles to the test connection.

* ``db_sessionmakers`` (ini): ``sessionmaker`` / ``async_sessionmaker`` objects, rebound per test;
* ``db_engines`` (ini): ``Engine`` / ``AsyncEngine`` objects, left where the app keeps them;
  per test their ``connect()`` returns a :class:`BranchConnection` on the test connection,
  whose transactions are savepoints there;
* ``db_flask_sqlalchemy`` (ini): Flask-SQLAlchemy ``SQLAlchemy()`` objects; every engine of
  every app they are initialised on is bound to the test connection of the alias named after
  its bind key;
* ``db_advanced_alchemy`` (ini): advanced-alchemy ``SQLAlchemyAsyncConfig`` /
  ``SQLAlchemySyncConfig`` objects, whose engines are bound in place like ``db_engines``; configs
  the app makes are detected too once it imports the library;
* context-async-sqlalchemy: ``DBConnect.session_maker`` patched, when the app imports it.
"""

from __future__ import annotations

from ._advanced_alchemy import AdvancedAlchemyAdapter
from ._engines import BranchConnection, EngineBinding
from ._flask import FlaskSQLAlchemyAdapter
from ._patches import (
    Adapter,
    ContextAsyncSQLAlchemyAdapter,
    EngineAdapter,
    SessionmakerAdapter,
    load_adapters,
)

__all__ = (
    "Adapter",
    "AdvancedAlchemyAdapter",
    "BranchConnection",
    "ContextAsyncSQLAlchemyAdapter",
    "EngineAdapter",
    "EngineBinding",
    "FlaskSQLAlchemyAdapter",
    "SessionmakerAdapter",
    "load_adapters",
)
