"""FastAPI dependency: ``Depends(get_db())`` yields the context session of an alias."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from .._settings import DEFAULT_ALIAS
from ._registry import get_database
from ._scope import SessionContext, _current
from ._session import db_session

__all__ = ("get_db",)


def get_db(using: str = DEFAULT_ALIAS) -> Callable[..., Any]:
    """Return a FastAPI dependency that yields the context session of ``using``.

    ``def route(session = Depends(get_db())): ...`` or ``Depends(get_db("replica"))``. Behind
    :class:`DBSessionMiddleware` it yields the request's session and the middleware commits;
    without the middleware it opens a context of its own around the request handler and
    commits it (rolls back on error) afterwards.

    :returns: a generator dependency: sync for a sync alias, async for an async alias (the
        alias is looked up when the dependency runs, so ``Database`` may be created later).
    """

    def sync_dependency() -> Iterator[Any]:
        if _current.get() is not None:
            yield db_session(using)
            return
        with SessionContext():
            yield db_session(using)

    async def async_dependency() -> AsyncIterator[Any]:
        if _current.get() is not None:
            yield db_session(using)
            return
        async with SessionContext():
            yield db_session(using)

    def dependency_for_alias() -> Callable[..., Any]:
        return async_dependency if get_database(using).is_async else sync_dependency

    # FastAPI inspects the callable once, at route definition: choose by the alias if it is
    # already registered, else assume async (FastAPI apps mostly are).
    try:
        return dependency_for_alias()
    except Exception:  # noqa: BLE001 - alias not registered yet
        return async_dependency
