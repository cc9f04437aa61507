"""``atomic``: Django's transaction blocks on the context session.

The policy (``_enter`` / ``_exit``) is written once for a sync ``Session``; ``async with``
runs the same functions through ``AsyncSession.run_sync``.

* The outermost block commits on success and rolls back on error. Work the context session
  had already begun is committed first, as Django's autocommit mode would have done.
* A nested block is a SAVEPOINT (``begin_nested``): its error rolls back only its own work.
  With ``savepoint=False`` it has none; an error inside it dooms the outermost block, which
  then rolls back.
* ``durable=True`` refuses to run inside another block (:class:`ContextError`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar, overload

from sqlalchemy.orm import Session, SessionTransaction

from .._errors import ContextError
from .._settings import DEFAULT_ALIAS
from ._decorate import decorate
from ._scope import current_scope
from ._session import db_session

__all__ = ("Atomic", "atomic")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class _Frame:
    transaction: SessionTransaction | None
    doomed: bool = False


class Atomic:
    """An ``atomic`` block for alias ``using``; see :func:`atomic`."""

    def __init__(self, using: str, savepoint: bool, durable: bool) -> None:
        self.using = using
        self.savepoint = savepoint
        self.durable = durable

    def _frames(self) -> list[_Frame]:
        return current_scope().atomic.setdefault(self.using, [])

    # -- the policy, once ------------------------------------------------------------------

    def _enter(self, session: Session, frames: list[_Frame]) -> None:
        if frames:
            if self.durable:
                raise ContextError(
                    f"atomic(using={self.using!r}, durable=True) cannot be nested in another "
                    "atomic block: a durable block must commit for real when it ends."
                )
            frames.append(_Frame(session.begin_nested() if self.savepoint else None))
            return
        if session.in_transaction():
            session.commit()
        frames.append(_Frame(session.begin()))

    def _exit(self, session: Session, frames: list[_Frame], failed: bool) -> None:
        frame = frames.pop()
        if frame.transaction is None:  # savepoint=False: an error dooms the enclosing block
            if failed and frames:
                frames[-1].doomed = True
            return
        if failed or frame.doomed:
            if frame.transaction.is_active:
                frame.transaction.rollback()
            return
        try:
            frame.transaction.commit()  # flushes first: an IntegrityError may surface here
        except BaseException:
            # Leave the session usable: roll back what the failed commit left behind.
            if frame.transaction.is_active:
                frame.transaction.rollback()
            elif not frames and session.in_transaction():
                session.rollback()
            raise

    # -- sync ----------------------------------------------------------------------------------

    def __enter__(self) -> Session:
        session = db_session(self.using)
        if not isinstance(session, Session):
            raise ContextError(
                f"alias {self.using!r} is async: use `async with atomic(...)` or decorate a "
                "coroutine function."
            )
        self._enter(session, self._frames())
        return session

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit(db_session(self.using), self._frames(), exc is not None)

    # -- async -----------------------------------------------------------------------------

    async def __aenter__(self) -> Any:
        session = db_session(self.using)
        if isinstance(session, Session):
            self._enter(session, self._frames())
        else:
            await session.run_sync(self._enter, self._frames())
        return session

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session = db_session(self.using)
        if isinstance(session, Session):
            self._exit(session, self._frames(), exc is not None)
        else:
            await session.run_sync(self._exit, self._frames(), exc is not None)

    # -- decorator -------------------------------------------------------------------------

    def __call__(self, func: F) -> F:
        return decorate(lambda: self, func)


@overload
def atomic(using: F) -> F: ...
@overload
def atomic(using: str = ..., savepoint: bool = ..., durable: bool = ...) -> Atomic: ...
def atomic(using: Any = DEFAULT_ALIAS, savepoint: bool = True, durable: bool = False) -> Any:
    """Run a block in a transaction of the context session of ``using`` (Django's ``atomic``).

    Forms: ``@atomic``, ``@atomic(using="replica")``, ``with atomic():``,
    ``async with atomic():``; sync and coroutine functions can be decorated.

    :param using: the alias (or, as a bare decorator, the function).
    :param savepoint: a nested block gets a SAVEPOINT (default) so that its error rolls back
        only its own work; with ``False`` it has none and an error dooms the outer block.
    :param durable: refuse to run nested in another block (:class:`ContextError`); the
        outermost block commits for real (in tests: releases a savepoint).
    :returns: the decorated function, or an :class:`Atomic` usable as context manager.
    :raises ContextError: ``durable=True`` inside another block; sync ``with`` on an async alias.
    """
    if callable(using):
        return Atomic(DEFAULT_ALIAS, savepoint, durable)(using)
    return Atomic(using, savepoint, durable)
