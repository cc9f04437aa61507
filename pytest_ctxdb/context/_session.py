"""The context session of an alias and the helpers around it."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from .._settings import DEFAULT_ALIAS
from ._registry import get_database
from ._scope import _current, current_scope, make_session

__all__ = (
    "close_db_session",
    "commit_db_session",
    "db_session",
    "new_session",
    "rollback_db_session",
)


async def _nothing() -> None:
    return None


def db_session(using: str = DEFAULT_ALIAS) -> Any:
    """Return the session of the current context for alias ``using``.

    :param using: the alias of a registered :class:`Database`.
    :returns: a ``Session`` (sync alias) or an ``AsyncSession`` (async alias), made lazily: no
        connection is taken until its first statement. The same object is returned for the
        rest of the context, including in child tasks and threads that share the context.
        Under pytest-ctxdb it is bound to the test's connection (see the README's rule).
    :raises ContextError: no ``Database`` is registered for ``using``.
    """
    scope = current_scope()
    session = scope.sessions.get(using)
    if session is None:
        session = scope.sessions[using] = make_session(get_database(using), scope)
    return session


def _existing(using: str) -> Any:
    scope = _current.get()
    return None if scope is None else scope.sessions.get(using)


def commit_db_session(using: str = DEFAULT_ALIAS) -> Awaitable[None] | None:
    """Commit the context session of ``using`` if it has a transaction in progress.

    :returns: ``None`` for a sync alias; an awaitable to ``await`` for an async alias.
    """
    session = _existing(using)
    is_async = get_database(using).is_async
    if session is None or not session.in_transaction():
        return _nothing() if is_async else None
    return session.commit()  # type: ignore[no-any-return]


def rollback_db_session(using: str = DEFAULT_ALIAS) -> Awaitable[None] | None:
    """Roll back the context session of ``using`` if it has a transaction in progress.

    :returns: ``None`` for a sync alias; an awaitable to ``await`` for an async alias.
    """
    session = _existing(using)
    is_async = get_database(using).is_async
    if session is None or not session.in_transaction():
        return _nothing() if is_async else None
    return session.rollback()  # type: ignore[no-any-return]


def close_db_session(using: str = DEFAULT_ALIAS) -> Awaitable[None] | None:
    """Close the context session of ``using`` and forget it: its connection goes back to the
    pool (uncommitted work is rolled back), and the next :func:`db_session` makes a new one.

    :returns: ``None`` for a sync alias; an awaitable to ``await`` for an async alias.
    """
    scope = _current.get()
    session = None if scope is None else scope.sessions.pop(using, None)
    is_async = get_database(using).is_async
    if session is None:
        return _nothing() if is_async else None
    return session.close()  # type: ignore[no-any-return]


def new_session(using: str = DEFAULT_ALIAS) -> Any:
    """Return a new session of alias ``using`` that belongs to no context.

    The caller owns it: commit and close it yourself (``with new_session() as s, s.begin():``
    or ``async with new_session() as s:``). Under pytest-ctxdb it is bound to the test's
    connection, so its commits release savepoints.

    :returns: a ``Session`` or ``AsyncSession``.
    """
    return make_session(get_database(using), None)
