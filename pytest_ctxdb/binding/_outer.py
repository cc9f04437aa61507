"""The transaction policy of one test on one connection, written once (sync).

This is SQLAlchemy's recipe "Joining a Session into an External Transaction (such as for
test suites)": the test's connection is inside an *outer transaction*; every session made
here joins it with ``join_transaction_mode="create_savepoint"``, so a session's
``commit()`` releases a SAVEPOINT, its ``rollback()`` rolls back to one, and ``close()``
leaves the outer transaction alone. At the end the outer transaction is rolled back.

Two refinements over the hand-written recipe:

* the connection is reused from test to test (:class:`ReusedConnection`): no pool
  checkout, no reset-on-return per test;
* the outer transaction is rolled back *before* the sessions are closed, which cancels
  their savepoints without the redundant ``ROLLBACK TO SAVEPOINT`` round trip.

and one guard: ``Connection.commit()`` of the outer transaction by the test is refused
with :class:`~pytest_ctxdb.TransactionError` (it would make the test's data permanent).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, RootTransaction
from sqlalchemy.orm import Session

from .._errors import TransactionError
from ._arbiter import LoopGuard, SavepointArbiter
from ._layers import JOIN_MODE, LayerCursor, layers_of, prepare_layers

__all__ = (
    "JOIN_MODE",
    "OuterTransaction",
    "ReusedConnection",
    "arbiter_of",
    "check_loop",
    "guard_branch",
    "prepare_connection",
    "yield_when_covered",
)



def _refuse_commit(connection: Connection) -> None:
    raise TransactionError(
        "pytest-ctxdb refused to COMMIT the test's outer transaction: that would make the "
        "test's data permanent. Commit through db_session / async_db_session (it releases a "
        "SAVEPOINT), or use db_connection.begin_nested() for a savepoint of your own."
    )


_ARBITER = "pytest_ctxdb.arbiter"

#: statements that make MySQL / MariaDB commit the current transaction implicitly
#: ("Statements That Cause an Implicit Commit"); temporary tables are exempt.
_IMPLICIT_COMMIT = re.compile(
    r"^\s*(?:(?:CREATE|ALTER|DROP|RENAME|TRUNCATE)\b(?!\s+TEMPORARY\b)"
    r"|LOCK\s+TABLES?\b|UNLOCK\s+TABLES?\b|START\s+TRANSACTION\b|BEGIN\s*(?:WORK\s*)?;?\s*$"
    r"|SET\s+(?:@@(?:SESSION\.)?)?AUTOCOMMIT\s*=\s*(?:1|ON)\b|GRANT\b|REVOKE\b"
    r"|(?:ANALYZE|OPTIMIZE|REPAIR)\s+(?:NO_WRITE_TO_BINLOG\s+|LOCAL\s+)?TABLE\b"
    r"|FLUSH\b|RESET\b|LOAD\s+INDEX\b|CACHE\s+INDEX\b)",
    re.IGNORECASE,
)


def _refuse_implicit_commit(
    connection: Connection, cursor: Any, statement: str, *args: Any
) -> None:
    if _IMPLICIT_COMMIT.match(statement):
        first = " ".join(statement.split()[:3])
        raise TransactionError(
            f"pytest-ctxdb refused {first!r}...: on MySQL/MariaDB this statement commits the "
            "current transaction implicitly, which would make the test's data permanent. Run "
            "DDL in the pytest_ctxdb_setup_schema hook, or mark the test "
            "@pytest.mark.db(transaction=True) (real commits, tables emptied afterwards)."
        )


def prepare_connection(connection: Connection, cursor: LayerCursor | None = None) -> None:
    """Install the guards and the savepoint arbiter on a new rollback-mode test connection:
    the outer COMMIT is refused, and on MySQL/MariaDB so are implicitly committing statements.
    With the run's ``cursor``, the connection also gets its :class:`~pytest_ctxdb.binding.LayerStack` (the data of
    wider-scoped fixtures; see :mod:`pytest_ctxdb.binding._layers`).

    The COMMIT guard shadows ``Connection._commit_impl`` (where SQLAlchemy would dispatch the
    ``commit`` event) rather than listening to that event: see
    :meth:`SavepointArbiter._hook` for why the test connection carries no event listener.
    """

    def refuse_commit() -> None:
        _refuse_commit(connection)

    connection._commit_impl = refuse_commit  # type: ignore[method-assign]
    if connection.dialect.name in ("mysql", "mariadb"):
        event.listen(connection, "before_cursor_execute", _refuse_implicit_commit)
    connection.info[_ARBITER] = SavepointArbiter(connection)
    if cursor is not None:
        prepare_layers(connection, cursor, lambda: _reset_arbiter(connection))


def guard_branch(connection: Connection) -> None:
    """Install the statement guards of :func:`prepare_connection` on a connection that shares
    a test connection's DBAPI connection (an app engine's ``BranchConnection``): on
    MySQL/MariaDB, implicitly committing statements are refused there too."""
    if connection.dialect.name in ("mysql", "mariadb"):
        event.listen(connection, "before_cursor_execute", _refuse_implicit_commit)


def yield_when_covered(
    connection: Connection, name: str, release_if_idle: Callable[[], bool] | None
) -> None:
    """See :meth:`SavepointArbiter.yield_when_covered` (no-op on a connection without one)."""
    arbiter = connection.info.get(_ARBITER)
    if arbiter is not None:
        arbiter.yield_when_covered(name, release_if_idle)


def arbiter_of(connection: Connection) -> SavepointArbiter | None:
    """The savepoint arbiter of a rollback-mode test connection (``None`` on any other)."""
    arbiter: SavepointArbiter | None = connection.info.get(_ARBITER)
    return arbiter


def check_loop(connection: Connection, what: str) -> None:
    """Refuse to use an async test connection from an event loop other than the test's (see
    :class:`~pytest_ctxdb.binding._arbiter.LoopGuard`); no-op on other connections.

    :param connection: the test connection (an ``AsyncConnection``'s ``sync_connection``).
    :param what: what was about to use it, for the message.
    :raises ContextError: the running event loop is not the test's.
    """
    arbiter: SavepointArbiter | None = connection.info.get(_ARBITER)
    guard: LoopGuard | None = None if arbiter is None else arbiter.loop_guard
    if guard is not None:
        __tracebackhide__ = True
        guard.check(what)


def _reset_arbiter(connection: Connection) -> None:
    if connection.closed or connection.invalidated:
        return  # its info is gone with it; a new connection gets a new arbiter
    arbiter = connection.info.get(_ARBITER)
    if arbiter is not None:
        arbiter.reset()


class ReusedConnection:
    """Keeps one ``Connection`` of ``engine`` checked out across tests.

    :param engine: the session-scoped engine of the test database.
    :param cursor: the run's :class:`LayerCursor` (layers of wider-scoped fixtures' data).

    A connection that was closed or invalidated by a test is replaced on the next
    :meth:`get`. The commit guard is installed once per connection.
    """

    def __init__(self, engine: Engine, cursor: LayerCursor | None = None) -> None:
        self.engine = engine
        self.cursor = cursor
        self._connection: Connection | None = None

    @property
    def current(self) -> Connection | None:
        """The connection handed out last, if it is still open (neither closed nor
        invalidated); no new one is made."""
        connection = self._connection
        if connection is None or connection.closed or connection.invalidated:
            return None
        return connection

    def get(self) -> Connection:
        """Return the live connection, connecting if there is none (no transaction begun)."""
        connection = self._connection
        if connection is None or connection.closed or connection.invalidated:
            connection = self._connection = self.engine.connect()
            prepare_connection(connection, self.cursor)
        return connection

    def close(self) -> None:
        """Return the connection to the engine's pool."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class OuterTransaction:
    """One test's outer transaction on ``connection`` and the sessions joined to it.

    :param connection: a connection with no transaction in progress, or one whose
        :class:`~pytest_ctxdb.binding.LayerStack` holds the outer transaction (wider-scoped fixtures' data).
    :raises sqlalchemy.exc.InvalidRequestError: the connection is already in a transaction.

    On a connection with layers, the test's transaction is the test savepoint above them
    (see :mod:`pytest_ctxdb.binding._layers`) instead of the outer transaction.

    Sync only; :class:`~pytest_ctxdb.binding.AsyncOuterTransaction` drives this same object
    through ``AsyncConnection.run_sync``.
    """

    __slots__ = ("_layered", "_layers", "_sessions", "_transaction", "connection")

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        _reset_arbiter(connection)
        # Number savepoints from 1 again in every test: the same SAVEPOINT / RELEASE text each
        # time lets drivers reuse prepared statements (asyncpg prepares every new text).
        if hasattr(connection, "_Connection__savepoint_seq"):
            connection._Connection__savepoint_seq = 0
        self._sessions: list[Session] = []
        self._transaction: RootTransaction | None = None
        layers = self._layers = layers_of(connection)
        self._layered = layers is not None and layers.begin_test()
        if not self._layered:
            root = None if layers is None else layers.adopt_root()
            self._transaction = root if root is not None else connection.begin()

    def session(self, class_: type[Session] = Session, **options: Any) -> Session:
        """Return a new ``Session`` joined to the outer transaction.

        :param class_: the session class (ini ``db_session_class``, e.g. SQLModel's, or an
            app's ``sessionmaker(class_=...)``); a subclass of ``sqlalchemy.orm.Session``.
        :param options: further ``Session`` arguments (``expire_on_commit``, ``autoflush``,
            ...); ``bind`` and ``join_transaction_mode`` are fixed.
        :returns: a ``class_`` instance with ``join_transaction_mode="create_savepoint"``,
            closed by :meth:`rollback`.
        """
        session = class_(bind=self.connection, join_transaction_mode=JOIN_MODE, **options)
        self._sessions.append(session)
        return session

    def adopt(self, session: Session) -> None:
        """Close ``session`` (e.g. an ``AsyncSession.sync_session``) at :meth:`rollback`."""
        self._sessions.append(session)

    @property
    def is_active(self) -> bool:
        """``True`` while the outer transaction has neither been rolled back nor ended."""
        if self._transaction is None:
            return self._layered and self.connection.in_transaction()
        return self._transaction.is_active

    def rollback(self) -> None:
        """Roll back the outer transaction, then close every session made here.

        If the outer transaction was ended by someone else (a session in a join mode
        other than ``create_savepoint``, a refused commit), the connection is invalidated
        so that the server discards whatever is left; :class:`ReusedConnection` reconnects.
        On a connection with layers, rolls back to the test savepoint instead; if the test
        ended the outer transaction, the layers are lost (see :meth:`~pytest_ctxdb.binding.LayerStack.end_test`)
        and the connection is invalidated likewise. Idempotent.
        """
        layers, layered, self._layered = self._layers, self._layered, False
        transaction, self._transaction = self._transaction, None
        try:
            if layered:
                assert layers is not None
                if layers.end_test() is not None and not self.connection.invalidated:
                    self.connection.invalidate()
            # (the arbiter forgets its savepoints when the connection rolls back)
            elif transaction is not None and transaction.is_active:
                transaction.rollback()
            elif transaction is not None and not (
                self.connection.closed or self.connection.invalidated
            ):
                self.connection.invalidate()
        finally:
            sessions, self._sessions = self._sessions, []
            for session in sessions:
                session.close()
            if layers is not None and not layered:
                layers.settle_sessions()
