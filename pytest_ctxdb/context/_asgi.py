"""ASGI middleware (FastAPI, Starlette, any ASGI app): one context per request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._scope import SessionContext, SessionScope

__all__ = ("DBSessionMiddleware",)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _settle(scope: SessionScope, commit: bool) -> None:
    """Commit or roll back every session of ``scope`` (they stay open for later work)."""
    for session in list(scope.sessions.values()):
        run_sync = getattr(session, "run_sync", None)
        if run_sync is None:
            _settle_sync(session, commit)
        else:
            await run_sync(_settle_sync, commit)


def _settle_sync(session: Any, commit: bool) -> None:
    if session.in_transaction():
        if commit:
            session.commit()
        else:
            session.rollback()


class DBSessionMiddleware:
    """Open a context per HTTP request; commit it, or roll it back, when the response starts.

    :param app: the ASGI application to wrap.
    :param rollback_on_status: roll back instead of committing when the response status is
        at least this (default ``400``: client and server errors); ``None`` commits whatever
        the status.

    The decision is taken when the response starts, before its status reaches the client,
    so a failing commit becomes a server error rather than a lost write. Work after that
    (background tasks) is committed when the request ends; an exception anywhere rolls back.
    Every session is closed at the end. Usage: ``app.add_middleware(DBSessionMiddleware)``.
    """

    def __init__(self, app: ASGIApp, *, rollback_on_status: int | None = 400) -> None:
        self.app = app
        self.rollback_on_status = rollback_on_status

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        async with SessionContext() as session_scope:

            async def send_settled(message: Message) -> None:
                if message["type"] == "http.response.start":
                    limit = self.rollback_on_status
                    if limit is not None and int(message["status"]) >= limit:
                        session_scope.rollback_only = True
                    await _settle(session_scope, commit=not session_scope.rollback_only)
                await send(message)

            await self.app(scope, receive, send_settled)
