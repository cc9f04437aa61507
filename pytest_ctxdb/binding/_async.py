"""The async face of :class:`OuterTransaction`: the same policy, driven through greenlets.

Every database step runs the sync policy with ``AsyncConnection.run_sync`` (SQLAlchemy's
own pattern in ``ext/asyncio``); nothing here decides anything on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from ._commit import CommitTransaction
from ._layers import LayerCursor
from ._outer import JOIN_MODE, OuterTransaction, check_loop, prepare_connection

__all__ = ("AsyncOuterTransaction", "AsyncReusedConnection")


class AsyncReusedConnection:
    """Keeps one ``AsyncConnection`` of ``engine`` checked out across tests of one loop.

    An async connection belongs to the event loop it was made in: keep one of these per
    loop, and :meth:`close` it (and dispose the engine) in that loop.

    :param cursor: the run's layer cursor (see :class:`~pytest_ctxdb.binding.ReusedConnection`).
    """

    def __init__(self, engine: AsyncEngine, cursor: LayerCursor | None = None) -> None:
        self.engine = engine
        self.cursor = cursor
        self._connection: AsyncConnection | None = None

    @property
    def current(self) -> AsyncConnection | None:
        """The connection handed out last, if it is still open."""
        connection = self._connection
        if connection is None or connection.closed or connection.invalidated:
            return None
        return connection

    async def get(self) -> AsyncConnection:
        """Return the live connection, connecting if there is none."""
        connection = self._connection
        if connection is None or connection.closed or connection.invalidated:
            connection = self._connection = await self.engine.connect()
            sync_connection = connection.sync_connection
            assert sync_connection is not None  # set once the connection is started
            prepare_connection(sync_connection, self.cursor)
        return connection

    async def close(self) -> None:
        """Return the connection to the engine's pool."""
        if self._connection is not None:
            await self._connection.close()
            self._connection = None


class AsyncOuterTransaction:
    """One test's outer transaction on an ``AsyncConnection``.

    Build it with ``await AsyncOuterTransaction.begin(connection)``.
    """

    __slots__ = ("connection", "sync")

    def __init__(
        self, connection: AsyncConnection, sync: OuterTransaction | CommitTransaction
    ) -> None:
        self.connection = connection
        #: the sync policy object doing the work.
        self.sync = sync

    @classmethod
    async def begin(
        cls,
        connection: AsyncConnection,
        policy: Callable[[Connection], OuterTransaction | CommitTransaction] = OuterTransaction,
    ) -> AsyncOuterTransaction:
        """Begin the test's transaction on ``connection`` with the sync ``policy`` and return it."""
        return cls(connection, await connection.run_sync(policy))

    def session(self, class_: type[AsyncSession] = AsyncSession, **options: Any) -> AsyncSession:
        """Return a new ``AsyncSession`` joined to the outer transaction.

        :param class_: the session class (an app's ``async_sessionmaker(class_=...)``).
        :returns: an ``AsyncSession`` with ``join_transaction_mode="create_savepoint"``
            (in commit mode: a plain one on the engine), closed by :meth:`rollback`.
        :raises ContextError: called from an event loop other than the test's (see
            :class:`~pytest_ctxdb.binding._arbiter.LoopGuard`).
        """
        if isinstance(self.sync, CommitTransaction):
            session = class_(bind=self.connection.engine, **options)
        else:
            check_loop(self.sync.connection, f"an {class_.__name__} was made")
            session = class_(bind=self.connection, join_transaction_mode=JOIN_MODE, **options)
        self.sync.adopt(session.sync_session)
        return session

    @property
    def is_active(self) -> bool:
        """See :attr:`OuterTransaction.is_active`."""
        return self.sync.is_active

    async def rollback(self) -> None:
        """Roll back the outer transaction and close every session; see
        :meth:`OuterTransaction.rollback`."""
        if self.connection.closed or self.connection.invalidated:
            self.sync.rollback()
            return
        await self.connection.run_sync(lambda _: self.sync.rollback())
