"""Stand-ins for an application's own ``Engine`` / ``AsyncEngine`` during a test.

App code that does ``with engine.begin() as conn:`` or ``async with engine.connect() as conn:``
gets a connection object that runs on the test connection, where a transaction is a
SAVEPOINT: ``commit()`` releases it, ``rollback()`` and ``close()`` roll back to it. ORM
sessions should come from a sessionmaker (ini ``db_sessionmakers``) instead of
``Session(engine)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from types import TracebackType
from typing import Any

from sqlalchemy.engine import Connection, NestedTransaction
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncTransaction

__all__ = ("AsyncSavepointConnection", "AsyncTestEngine", "SavepointConnection", "TestEngine")


class SavepointConnection:
    """A ``Connection`` look-alike on the test connection whose transactions are savepoints."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._nested: NestedTransaction | None = None

    def _begin(self) -> None:
        if self._nested is None or not self._nested.is_active:
            self._nested = self._connection.begin_nested()

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        self._begin()
        return self._connection.execute(*args, **kwargs)

    def exec_driver_sql(self, *args: Any, **kwargs: Any) -> Any:
        self._begin()
        return self._connection.exec_driver_sql(*args, **kwargs)

    def scalar(self, *args: Any, **kwargs: Any) -> Any:
        self._begin()
        return self._connection.scalar(*args, **kwargs)

    def scalars(self, *args: Any, **kwargs: Any) -> Any:
        self._begin()
        return self._connection.scalars(*args, **kwargs)

    @contextmanager
    def begin(self) -> Iterator[SavepointConnection]:
        """A block that commits (releases its savepoint) on success, rolls back on error."""
        self._begin()
        try:
            yield self
        except BaseException:
            self.rollback()
            raise
        self.commit()

    def in_transaction(self) -> bool:
        return self._nested is not None and self._nested.is_active

    def commit(self) -> None:
        nested, self._nested = self._nested, None
        if nested is not None and nested.is_active:
            nested.commit()

    def rollback(self) -> None:
        nested, self._nested = self._nested, None
        if nested is not None and nested.is_active:
            nested.rollback()

    def close(self) -> None:
        """Roll back what was not committed; the test connection itself stays open."""
        self.rollback()

    def __enter__(self) -> SavepointConnection:  # noqa: PYI034
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


#: engine attributes a stand-in exposes (from the test database's engine); anything else
#: (``raw_connection``, ``pool``, ...) would reach past the test's transaction.
_SAFE_ATTRIBUTES = frozenset({"url", "dialect", "name", "driver", "echo", "logging_name"})


def _safe_attribute(stand_in: object, engine: Any, name: str) -> Any:
    if name in _SAFE_ATTRIBUTES:
        return getattr(engine, name)
    raise AttributeError(
        f"{type(stand_in).__name__} (pytest-ctxdb's stand-in for an app engine during a test) "
        f"has no {name!r}: it would reach past the test's transaction. Use connect() or begin()."
    )


class TestEngine:
    """Replaces an app ``Engine`` for one test; see the module docstring.

    :param original: the app's engine (for ``repr`` and attributes such as ``url``).
    :param connection: the test connection of the alias.
    """

    __test__ = False

    def __init__(self, original: Any, connection: Connection) -> None:
        self.original = original
        self._connection = connection

    def connect(self) -> SavepointConnection:
        return SavepointConnection(self._connection)

    @contextmanager
    def begin(self) -> Iterator[SavepointConnection]:
        with self.connect() as connection, connection.begin():
            yield connection

    def dispose(self, close: bool = True) -> None:
        """Nothing to dispose: the test connection belongs to pytest-ctxdb."""

    def execution_options(self, **options: Any) -> TestEngine:
        """Return the stand-in itself: options are not applied to the shared test connection."""
        return self

    def __getattr__(self, name: str) -> Any:
        return _safe_attribute(self, self._connection.engine, name)

    def __repr__(self) -> str:
        return f"<TestEngine standing in for {self.original!r}>"


class AsyncSavepointConnection:
    """The async twin of :class:`SavepointConnection`, on an ``AsyncConnection``."""

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection
        self._nested: AsyncTransaction | None = None

    async def _begin(self) -> None:
        if self._nested is None or not self._nested.is_active:
            self._nested = await self._connection.begin_nested()

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        await self._begin()
        return await self._connection.execute(*args, **kwargs)

    async def exec_driver_sql(self, *args: Any, **kwargs: Any) -> Any:
        await self._begin()
        return await self._connection.exec_driver_sql(*args, **kwargs)

    async def scalar(self, *args: Any, **kwargs: Any) -> Any:
        await self._begin()
        return await self._connection.scalar(*args, **kwargs)

    async def scalars(self, *args: Any, **kwargs: Any) -> Any:
        await self._begin()
        return await self._connection.scalars(*args, **kwargs)

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSavepointConnection]:
        await self._begin()
        try:
            yield self
        except BaseException:
            await self.rollback()
            raise
        await self.commit()

    def in_transaction(self) -> bool:
        return self._nested is not None and self._nested.is_active

    async def commit(self) -> None:
        nested, self._nested = self._nested, None
        if nested is not None and nested.is_active:
            await nested.commit()

    async def rollback(self) -> None:
        nested, self._nested = self._nested, None
        if nested is not None and nested.is_active:
            await nested.rollback()

    async def close(self) -> None:
        await self.rollback()

    async def __aenter__(self) -> AsyncSavepointConnection:  # noqa: PYI034
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


class AsyncTestEngine:
    """Replaces an app ``AsyncEngine`` for one test."""

    __test__ = False

    def __init__(self, original: Any, connection: AsyncConnection) -> None:
        self.original = original
        self._connection = connection

    def connect(self) -> AsyncSavepointConnection:
        return AsyncSavepointConnection(self._connection)

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSavepointConnection]:
        async with self.connect() as connection, connection.begin():
            yield connection

    async def dispose(self, close: bool = True) -> None:
        """Nothing to dispose: the test connection belongs to pytest-ctxdb."""

    def execution_options(self, **options: Any) -> AsyncTestEngine:
        """Return the stand-in itself: options are not applied to the shared test connection."""
        return self

    def __getattr__(self, name: str) -> Any:
        return _safe_attribute(self, self._connection.engine, name)

    def __repr__(self) -> str:
        return f"<AsyncTestEngine standing in for {self.original!r}>"
