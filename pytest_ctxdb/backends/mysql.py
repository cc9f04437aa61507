"""MySQL / MariaDB: pymysql (sync) and asyncmy (async).

Test databases carry the ownership mark as their schema comment
(``CREATE DATABASE ... COMMENT '...'``, MariaDB >= 10.5).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from ._base import Backend, DriverPair

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import Table
    from sqlalchemy.engine import Connection

__all__ = ("MySQLBackend",)


class MySQLBackend(Backend):
    name = "mysql"
    max_name_length = 64
    drivers = DriverPair(
        sync="pymysql",
        async_="asyncmy",
        sync_drivers=frozenset({"pymysql", "mysqldb", "mysqlconnector", "mariadbconnector"}),
        async_drivers=frozenset({"asyncmy", "aiomysql"}),
        extras={"pymysql": "mysql", "asyncmy": "mysql"},
    )

    def empty_tables(
        self, connection: Connection, tables: Sequence[Table], reset_sequences: bool
    ) -> None:
        connection.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 0")
        try:
            for table in tables:
                connection.execute(table.delete())
        finally:
            connection.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 1")
        if reset_sequences:
            self.reset_sequences(connection, tables)

    def reset_sequences(self, connection: Connection, tables: Sequence[Table]) -> None:
        # Only counters that moved: each ALTER TABLE costs tens of ms (see bench/flush).
        quote = connection.dialect.identifier_preparer.quote_identifier
        moved = connection.execute(
            text(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                "AND AUTO_INCREMENT > 1"
            )
        ).scalars()
        for name in list(moved):
            connection.exec_driver_sql(f"ALTER TABLE {quote(name)} AUTO_INCREMENT = 1")

    def non_transactional_tables(self, admin: Connection, name: str) -> list[str]:
        """Tables of database ``name`` whose engine cannot roll back (MyISAM, Aria, ...)."""
        rows = admin.execute(
            text(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = :name "
                "AND TABLE_TYPE = 'BASE TABLE' AND ENGINE NOT IN ('InnoDB')"
            ),
            {"name": name},
        )
        return [row[0] for row in rows]

    def comment(self, admin: Connection, name: str) -> str | None:
        row = admin.execute(
            text(
                "SELECT SCHEMA_COMMENT FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :name"
            ),
            {"name": name},
        ).first()
        return None if row is None else str(row[0] or "")

    def set_comment(self, admin: Connection, name: str, comment: str) -> None:
        quoted = admin.dialect.identifier_preparer.quote_identifier(name)
        literal = comment.replace("'", "''")
        admin.exec_driver_sql(f"ALTER DATABASE {quoted} COMMENT '{literal}'")

    def owned_databases(self, admin: Connection) -> list[tuple[str, str]]:
        rows = admin.execute(
            text(
                "SELECT SCHEMA_NAME, SCHEMA_COMMENT FROM information_schema.SCHEMATA "
                "WHERE SCHEMA_COMMENT LIKE :mark"
            ),
            {"mark": f"{self.OWNER_MARK}%"},
        )
        return [(str(name), str(comment)) for name, comment in rows]

    def in_use(self, admin: Connection, name: str) -> bool:
        count = admin.execute(
            text(
                "SELECT count(*) FROM information_schema.PROCESSLIST WHERE DB = :name "
                "AND ID <> CONNECTION_ID()"
            ),
            {"name": name},
        ).scalar()
        return bool(count)

    def create_database(self, admin: Connection, name: str, comment: str | None = None) -> None:
        quoted = admin.dialect.identifier_preparer.quote_identifier(name)
        literal = (comment or self.OWNER_MARK).replace("'", "''")
        admin.exec_driver_sql(f"CREATE DATABASE {quoted} COMMENT '{literal}'")

    def clone_database(self, admin: Connection, template: str, name: str, comment: str) -> None:
        """MySQL has no CREATE DATABASE ... TEMPLATE: replay the template's ``SHOW CREATE
        TABLE`` statements into the new database, copy any rows (seed data; generated columns
        are computed again), then replay its
        views (``SHOW CREATE VIEW`` in the template names its objects without the database,
        so the copies use the clone's) and triggers. Stored routines and events are not
        copied."""
        quote = admin.dialect.identifier_preparer.quote_identifier
        self.create_database(admin, name, comment)
        objects = admin.execute(
            text(
                "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = :schema ORDER BY TABLE_NAME"
            ),
            {"schema": template},
        ).all()
        # MariaDB's system-versioned tables and sequences are tables of other types.
        tables = [table for table, kind in objects if kind in ("BASE TABLE", "SYSTEM VERSIONED")]
        sequences = [table for table, kind in objects if kind == "SEQUENCE"]
        triggers = admin.execute(
            text("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = :s"),
            {"s": template},
        ).scalars().all()
        admin.exec_driver_sql(f"USE {quote(template)}")
        ddl = [
            admin.exec_driver_sql(f"SHOW CREATE {kind} {quote(table)}").one()[1]
            for kind, names in (("SEQUENCE", sequences), ("TABLE", tables))
            for table in names
        ]
        views = [
            admin.exec_driver_sql(f"SHOW CREATE VIEW {quote(view)}").one()[1]
            for view, kind in objects
            if kind == "VIEW"
        ]
        trigger_ddl = [
            admin.exec_driver_sql(f"SHOW CREATE TRIGGER {quote(t)}").one()[2] for t in triggers
        ]
        # Rows are copied column by column: generated columns cannot be written (and
        # SELECT * would leave out invisible ones).
        columns: dict[str, list[str]] = {}
        for table, column in admin.execute(
            text(
                "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = :s AND IS_GENERATED = 'NEVER' "
                "ORDER BY TABLE_NAME, ORDINAL_POSITION"
            ),
            {"s": template},
        ):
            columns.setdefault(table, []).append(quote(column))
        admin.exec_driver_sql(f"USE {quote(name)}")
        admin.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 0")
        try:
            for statement in ddl:
                admin.exec_driver_sql(statement)
            for table in tables:
                listed = ", ".join(columns[table])
                admin.exec_driver_sql(
                    f"INSERT INTO {quote(name)}.{quote(table)} ({listed}) "
                    f"SELECT {listed} FROM {quote(template)}.{quote(table)}"
                )
        finally:
            admin.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 1")
        # SHOW CREATE SEQUENCE gives the start, not the state: carry the next value over.
        for sequence in sequences:
            next_value = admin.exec_driver_sql(
                f"SELECT next_not_cached_value FROM {quote(template)}.{quote(sequence)}"
            ).scalar()
            admin.execute(
                text(f"SELECT SETVAL({quote(name)}.{quote(sequence)}, :value, 0)"),
                {"value": next_value},
            )
        _replay_in_dependency_order(admin, views)
        for statement in trigger_ddl:
            admin.exec_driver_sql(statement)

    def spares_usable(self, admin: Connection, template: str, *, keep_name: bool) -> bool:
        if keep_name:
            return True
        # RENAME TABLE cannot move a view, nor a table with triggers, to another database.
        count = admin.execute(
            text(
                "SELECT (SELECT count(*) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = :s)"
                " + (SELECT count(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = :s)"
            ),
            {"s": template},
        ).scalar()
        return not count

    keeps_spares = True

    def take_spare(
        self, admin: Connection, spare: str, name: str, comment: str, *, keep_name: bool
    ) -> str | None:
        """MariaDB cannot rename a database. The claim is made under the server-wide lock
        ``GET_LOCK('pytest-ctxdb:<spare>')``, once the spare's comment still says it is a
        spare, so two runs on any machines cannot both take it. With ``keep_name`` the run
        uses the spare under its own name: the claim is a comment change, whatever the table
        count. Otherwise (the user chose the test database's exact name) ``name`` is made and
        every table of the spare moves into it with one ``RENAME TABLE`` (atomic, a metadata
        change: ~1 ms per table, foreign keys follow); such runs make spares only of
        templates without views and triggers (see :meth:`spares_usable`), and decline a spare
        that has some, so every object moves."""
        lock = {"lock": f"pytest-ctxdb:{spare}"}
        if not admin.execute(text("SELECT GET_LOCK(:lock, 0)"), lock).scalar():
            return None  # another run is taking it right now
        try:
            if (self.parse_mark(self.comment(admin, spare)) or {}).get("kind") != "spare":
                return None  # another run took it
            if keep_name:
                self.set_comment(admin, spare, comment)
                return spare
            if not self.spares_usable(admin, spare, keep_name=False):
                return None  # made for runs that keep its name: its views would stay behind
            quote = admin.dialect.identifier_preparer.quote_identifier
            tables = admin.execute(
                text(
                    "SELECT TABLE_NAME FROM information_schema.TABLES "
                    "WHERE TABLE_SCHEMA = :schema AND TABLE_TYPE <> 'VIEW'"
                ),
                {"schema": spare},
            ).scalars()
            moves = ", ".join(
                f"{quote(spare)}.{quote(t)} TO {quote(name)}.{quote(t)}" for t in tables
            )
            self.create_database(admin, name, comment)
            if moves:
                try:
                    admin.exec_driver_sql(f"RENAME TABLE {moves}")
                except Exception:
                    self.drop_database(admin, name)
                    raise
            admin.exec_driver_sql(f"DROP DATABASE IF EXISTS {quote(spare)}")
            return name
        finally:
            admin.execute(text("SELECT RELEASE_LOCK(:lock)"), lock)

    def drop_database(self, admin: Connection, name: str, *, force: bool = False) -> None:
        if force:  # a connection left open in a transaction would block the drop for hours
            sessions = admin.execute(
                text(
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = :name "
                    "AND ID <> CONNECTION_ID()"
                ),
                {"name": name},
            ).scalars()
            for session in list(sessions):
                with contextlib.suppress(DBAPIError):  # it may have ended meanwhile
                    admin.exec_driver_sql(f"KILL CONNECTION {int(session)}")
        quoted = admin.dialect.identifier_preparer.quote_identifier(name)
        admin.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted}")


def _replay_in_dependency_order(admin: Connection, statements: Sequence[str]) -> None:
    """Run ``CREATE VIEW`` statements whose views may use each other, in any given order:
    a view whose dependency is missing is retried after the others.

    :raises sqlalchemy.exc.DBAPIError: a statement fails even after every other one ran.
    """
    pending = list(statements)
    while pending:
        failed: list[str] = []
        error: DBAPIError | None = None
        for statement in pending:
            try:
                admin.exec_driver_sql(statement)
            except DBAPIError as exc:
                failed.append(statement)
                error = exc
        if len(failed) == len(pending):
            assert error is not None
            raise error
        pending = failed
