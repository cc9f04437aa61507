"""The context session: a small runtime API for application code (no pytest imported).

Applications keep one session per context (request, job, script run) in a ``ContextVar``::

    from pytest_ctxdb.context import Database, atomic, db_session

    Database("postgresql+asyncpg://app@db/app")            # at start-up, alias "default"

    @atomic
    async def register(name: str) -> None:
        db_session().add(User(name=name))

Under pytest-ctxdb every session made here is bound to the test's connection (see
:mod:`pytest_ctxdb.context._seam`), so the same code commits "for real" inside the test's
outer transaction and leaves nothing behind.
"""

from __future__ import annotations

from .._errors import ContextError
from ._asgi import DBSessionMiddleware
from ._atomic import Atomic, atomic
from ._fastapi import get_db
from ._registry import Database, get_database, registered_databases
from ._scope import SessionContext, SessionScope, current_scope, run_in_new_context, session_context
from ._session import (
    close_db_session,
    commit_db_session,
    db_session,
    new_session,
    rollback_db_session,
)

__all__ = (
    "Atomic",
    "ContextError",
    "DBSessionMiddleware",
    "Database",
    "SessionContext",
    "SessionScope",
    "atomic",
    "close_db_session",
    "commit_db_session",
    "current_scope",
    "db_session",
    "get_database",
    "get_db",
    "new_session",
    "registered_databases",
    "rollback_db_session",
    "run_in_new_context",
    "session_context",
)
