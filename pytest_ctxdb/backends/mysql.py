"""MySQL / MariaDB: pymysql (sync) and asyncmy (async).

Test databases carry the ownership mark as their schema comment
(``CREATE DATABASE ... COMMENT '...'``, MariaDB >= 10.5).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import text

from ._base import Backend, DriverPair

if TYPE_CHECKING:
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
