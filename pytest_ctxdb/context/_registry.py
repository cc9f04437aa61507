"""The alias registry: which engine and sessionmaker serve each database alias."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from .._errors import ContextError
from .._settings import DEFAULT_ALIAS

__all__ = ("Database", "get_database", "registered_databases")

_lock = threading.Lock()
_databases: dict[str, Database] = {}
#: bumped whenever a Database registers (lets the test seam skip re-guarding engines).
generation = 0


class Database:
    """A database alias of the application: its engine and how its sessions are made.

    :param url_or_engine: a URL (string or :class:`~sqlalchemy.engine.URL`), an ``Engine`` or
        an ``AsyncEngine``. A URL with an async driver (``postgresql+asyncpg``,
        ``sqlite+aiosqlite``, ...) makes an ``AsyncEngine``, any other an ``Engine``.
    :param alias: the name code passes as ``using=``; ``"default"`` unless given.
    :param engine_options: keyword arguments for ``create_engine`` when a URL is given.
    :param session_options: keyword arguments for every ``Session`` / ``AsyncSession`` made for
        this alias (``expire_on_commit``, ``autoflush``, ...), in production and in tests.

    Creating a ``Database`` registers it (a later one with the same alias replaces it) and
    contacts no server: the engine connects on first use.
    """

    def __init__(
        self,
        url_or_engine: str | URL | Engine | Any,
        *,
        alias: str = DEFAULT_ALIAS,
        engine_options: dict[str, Any] | None = None,
        **session_options: Any,
    ) -> None:
        from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

        self.alias = alias
        self.session_options = dict(session_options)
        if isinstance(url_or_engine, (str, URL)):
            url = make_url(url_or_engine)
            if url.get_dialect().is_async:
                from sqlalchemy.ext.asyncio import create_async_engine

                url_or_engine = create_async_engine(url, **(engine_options or {}))
            else:
                url_or_engine = create_engine(url, **(engine_options or {}))
        if isinstance(url_or_engine, AsyncEngine):
            #: ``True`` when sessions of this alias are ``AsyncSession``.
            self.is_async = True
            self.engine: Engine | AsyncEngine = url_or_engine
            self.sessionmaker: sessionmaker[Session] | async_sessionmaker[AsyncSession] = (
                async_sessionmaker(bind=url_or_engine, **self.session_options)
            )
        elif isinstance(url_or_engine, Engine):
            self.is_async = False
            self.engine = url_or_engine
            self.sessionmaker = sessionmaker(bind=url_or_engine, **self.session_options)
        else:
            raise TypeError(
                f"Database(alias={alias!r}) takes a URL, an Engine or an AsyncEngine, "
                f"not {type(url_or_engine).__name__}"
            )
        global generation
        with _lock:
            _databases[alias] = self
            generation += 1
        from ._seam import watch_database

        watch_database(self)  # registered during a test: guard its engine at once

    @property
    def sync_engine(self) -> Engine:
        """The sync ``Engine`` (an ``AsyncEngine``'s ``sync_engine``); events go there."""
        engine = self.engine
        return engine if isinstance(engine, Engine) else engine.sync_engine

    def __repr__(self) -> str:
        url = self.sync_engine.url.render_as_string(hide_password=True)
        kind = "async" if self.is_async else "sync"
        return f"<Database alias={self.alias!r} {kind} {url}>"


def get_database(alias: str = DEFAULT_ALIAS) -> Database:
    """Return the :class:`Database` registered for ``alias``.

    :raises ContextError: no ``Database`` was created for that alias.
    """
    try:
        return _databases[alias]
    except KeyError:
        known = ", ".join(repr(a) for a in sorted(_databases)) or "none"
        raise ContextError(
            f"no Database is registered for alias {alias!r} (registered: {known}); create one "
            f"at start-up: Database(url, alias={alias!r})."
        ) from None


def registered_databases() -> dict[str, Database]:
    """A snapshot of every registered alias -> :class:`Database`."""
    with _lock:
        return dict(_databases)
