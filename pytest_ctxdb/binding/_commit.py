"""``transaction=True``: the test commits for real; afterwards its tables are emptied.

For code that needs real commits: several connections, threads that do not share the test
connection, LISTEN/NOTIFY, ``CREATE INDEX CONCURRENTLY``, DDL on MySQL/MariaDB. Nothing is
wrapped; sessions are plain ``Session(bind=engine)``. When the test ends, every table of the
test database is emptied with ``DELETE`` (measured faster than ``TRUNCATE`` here: see the
README), and with ``reset_sequences=True`` sequences / AUTO_INCREMENT counters restart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

__all__ = ("CommitTransaction",)


class CommitTransaction:
    """One test's committing work on ``connection`` (same interface as ``OuterTransaction``).

    :param connection: a connection of its own (not the reused rollback-mode connection).
    :param cleanup: empties the tables, given a connection inside a transaction.
    :param prepare: run first, in a transaction of its own (``reset_sequences``: the test
        starts with fresh sequences, as Django's ``reset_sequences`` does).
    """

    __slots__ = ("_cleanup", "_ended", "_sessions", "connection")

    def __init__(
        self,
        connection: Connection,
        cleanup: Callable[[Connection], None],
        prepare: Callable[[Connection], None] | None = None,
    ) -> None:
        self.connection = connection
        self._cleanup = cleanup
        self._sessions: list[Session] = []
        self._ended = False
        if prepare is not None:
            with connection.begin():
                prepare(connection)

    def session(self, class_: type[Session] = Session, **options: Any) -> Session:
        """Return a plain ``class_`` session on the engine: its commits are real."""
        session = class_(bind=self.connection.engine, **options)
        self._sessions.append(session)
        return session

    def adopt(self, session: Session) -> None:
        self._sessions.append(session)

    @property
    def is_active(self) -> bool:
        return not self._ended

    def rollback(self) -> None:
        """End the test: close its sessions, discard uncommitted work, empty the tables."""
        if self._ended:
            return
        self._ended = True
        sessions, self._sessions = self._sessions, []
        try:
            for session in sessions:
                session.close()
        finally:
            connection = self.connection
            try:
                if connection.in_transaction():
                    connection.rollback()
                with connection.begin():
                    self._cleanup(connection)
            finally:
                connection.close()
