"""Contexts: which sessions the current request, job or script run owns.

A :class:`SessionScope` holds one session per alias. It lives in a ``ContextVar``; child
tasks and threads started with a copied context see the *same* scope object, so a session
made lazily in a child is the parent's too. :func:`session_context` and
:func:`run_in_new_context` open a new scope and, at its end, commit (or, on error, roll back)
and close every session it holds.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from ._decorate import decorate
from ._registry import Database, get_database
from ._seam import current_source

__all__ = (
    "SessionContext",
    "SessionScope",
    "current_scope",
    "end_session",
    "make_session",
    "run_in_new_context",
    "session_context",
)

T = TypeVar("T")


@dataclass(eq=False)
class SessionScope:
    """The sessions of one context, per alias, and its ``atomic`` blocks.

    :ivar parent: the scope that was current when this one was opened (``None`` at the top).
    """

    parent: SessionScope | None = None
    sessions: dict[str, Any] = field(default_factory=dict)
    atomic: dict[str, list[Any]] = field(default_factory=dict)
    #: set when a response status or an error decided the scope must roll back.
    rollback_only: bool = False


_current: ContextVar[SessionScope | None] = ContextVar("pytest_ctxdb_scope", default=None)


def current_scope() -> SessionScope:
    """Return the scope of the current context, opening one if there is none.

    A scope opened here is never ended automatically: its sessions live until closed.
    Open scopes with :func:`session_context` (or the ASGI middleware) to get commit/close.
    """
    scope = _current.get()
    if scope is None:
        scope = SessionScope()
        _current.set(scope)
    return scope


def make_session(database: Database, scope: SessionScope | None) -> Any:
    """Make a new session for ``database``: on the test connection if a test binding is
    installed, else from the alias's sessionmaker. The single place sessions are made."""
    source = current_source()
    if source is not None:
        return source.make_session(database, scope)
    return database.sessionmaker()


def end_session(session: Session, commit: bool) -> None:
    """Commit (or roll back) ``session``'s transaction if one is in progress, then close it.

    The one policy for ending sessions; async callers run it through
    ``AsyncSession.run_sync``.
    """
    try:
        if session.in_transaction():
            if commit:
                session.commit()
            else:
                session.rollback()
    finally:
        session.close()


def _end_all(scope: SessionScope, commit: bool) -> list[tuple[Any, Database]]:
    """End the scope's sync sessions; return the async ones for the caller to await."""
    pending: list[tuple[Any, Database]] = []
    errors: list[BaseException] = []
    sessions, scope.sessions = scope.sessions, {}
    for alias, session in sessions.items():
        database = get_database(alias)
        if database.is_async:
            pending.append((session, database))
            continue
        try:
            end_session(session, commit and not errors)
        except Exception as exc:  # noqa: BLE001 - every session is ended; first error re-raised
            errors.append(exc)
    if errors:
        raise errors[0]
    return pending


class SessionContext:
    """A context of its own for a script, a job or a request (see :func:`session_context`)."""

    def __init__(self) -> None:
        self._tokens: list[tuple[Token[SessionScope | None], SessionScope]] = []

    # -- as a context manager --------------------------------------------------------------

    def _open(self) -> SessionScope:
        scope = SessionScope(parent=_current.get())
        self._tokens.append((_current.set(scope), scope))
        return scope

    def _close(self) -> SessionScope:
        token, scope = self._tokens.pop()
        try:
            _current.reset(token)
        except ValueError:  # reset from another context: leave the parent in place
            _current.set(scope.parent)
        return scope

    def __enter__(self) -> SessionScope:
        return self._open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        scope = self._close()
        pending = _end_all(scope, commit=exc is None and not scope.rollback_only)
        if pending:
            raise RuntimeError(
                "session_context() was used with `with` but opened AsyncSessions; "
                "use `async with session_context():`"
            )

    async def __aenter__(self) -> SessionScope:
        return self._open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        scope = self._close()
        commit = exc is None and not scope.rollback_only
        pending = _end_all(scope, commit)
        first_error: BaseException | None = None
        for session, _database in pending:
            try:
                await session.run_sync(end_session, commit and first_error is None)
            except Exception as error:  # noqa: BLE001 - end every session, then re-raise
                first_error = first_error or error
        if first_error is not None:
            raise first_error

    # -- as a decorator --------------------------------------------------------------------

    def __call__(self, func: Callable[..., T]) -> Callable[..., T]:
        return decorate(SessionContext, func)


def session_context() -> SessionContext:
    """Open a context with sessions of its own, for scripts, jobs and requests.

    Usable as ``with session_context():``, ``async with session_context():`` and as a
    decorator of sync or async functions. Inside it :func:`db_session` returns sessions
    owned by this context; at its end each one is committed (rolled back if the block
    raised) and closed, returning its connection to the pool.

    :returns: a :class:`SessionContext`; entering it yields the new :class:`SessionScope`.
    :raises RuntimeError: a sync ``with`` block opened ``AsyncSession``\\ s (they cannot be
        ended without ``await``).
    """
    return SessionContext()


def run_in_new_context(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``func(*args, **kwargs)`` in a fresh context with sessions of its own.

    The sessions ``func`` uses are committed if it returns and rolled back if it raises,
    then closed. For a coroutine function this returns an awaitable that runs it as its own
    task (so several can run under ``asyncio.gather``); for a plain function it runs now.

    :returns: what ``func`` returns (awaitable for a coroutine function).
    """
    context = contextvars.copy_context()
    if inspect.iscoroutinefunction(func):

        async def run_async() -> Any:
            async with SessionContext():
                return await func(*args, **kwargs)

        task: Awaitable[Any] = context.run(asyncio.ensure_future, run_async())
        return task

    def run() -> Any:
        with SessionContext():
            return func(*args, **kwargs)

    return context.run(run)
