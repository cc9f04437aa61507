"""MySQL / MariaDB: pymysql (sync) and asyncmy (async).

Test databases carry the ownership mark as their schema comment
(``CREATE DATABASE ... COMMENT '...'``, MariaDB >= 10.5).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import text

from ._base import Backend, DriverPair

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import Table
    from sqlalchemy.engine import Connection

__all__ = ("MySQLBackend",)


class MySQLBackend(Backend):
    name = "mysql"
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
        quote = connection.dialect.identifier_preparer.quote_identifier
        for table in tables:
            if table.autoincrement_column is not None:
                connection.exec_driver_sql(f"ALTER TABLE {quote(table.name)} AUTO_INCREMENT = 1")

    def non_transactional_tables(self, connection: Connection) -> list[str]:
        """Tables of the current database whose engine cannot roll back (MyISAM, Aria, ...)."""
        rows = connection.execute(
            text(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                "AND TABLE_TYPE = 'BASE TABLE' AND ENGINE NOT IN ('InnoDB')"
            )
        )
        return [row[0] for row in rows]

    def database_exists(self, admin: Connection, name: str) -> bool:
        found = admin.execute(
            text("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :name"),
            {"name": name},
        ).first()
        return found is not None

    def is_owned(self, admin: Connection, name: str) -> bool:
        comment = admin.execute(
            text(
                "SELECT SCHEMA_COMMENT FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :name"
            ),
            {"name": name},
        ).scalar()
        return bool(comment) and str(comment).startswith(self.OWNER_MARK)

    def create_database(self, admin: Connection, name: str) -> None:
        quoted = admin.dialect.identifier_preparer.quote_identifier(name)
        admin.exec_driver_sql(f"CREATE DATABASE {quoted} COMMENT '{self.OWNER_MARK}'")

    def drop_database(self, admin: Connection, name: str, *, force: bool = False) -> None:
        quoted = admin.dialect.identifier_preparer.quote_identifier(name)
        admin.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted}")
