"""PostgreSQL: psycopg (sync) and asyncpg (async).

Test databases are created with ``CREATE DATABASE`` from an AUTOCOMMIT connection to the
database named in the URL (only its catalog is read) and marked with
``COMMENT ON DATABASE ... IS 'created by pytest-ctxdb'``; only marked databases are dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import text

from ._base import Backend, DriverPair

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import Table
    from sqlalchemy.engine import Connection

__all__ = ("PostgreSQLBackend",)


def _quote(admin: Connection, name: str) -> str:
    return admin.dialect.identifier_preparer.quote_identifier(name)


class PostgreSQLBackend(Backend):
    name = "postgresql"
    drivers = DriverPair(
        sync="psycopg",
        async_="asyncpg",
        sync_drivers=frozenset({"psycopg", "psycopg2", "pg8000"}),
        async_drivers=frozenset({"asyncpg", "psycopg_async"}),
        extras={"psycopg": "postgres", "asyncpg": "async", "psycopg2": "postgres"},
    )

    def reset_sequences(self, connection: Connection, tables: Sequence[Table]) -> None:
        names = connection.execute(
            text(
                "SELECT schemaname, sequencename FROM pg_sequences WHERE schemaname = current_schema()"
            )
        ).all()
        quote = connection.dialect.identifier_preparer.quote_identifier
        for schema, name in names:
            connection.exec_driver_sql(f"ALTER SEQUENCE {quote(schema)}.{quote(name)} RESTART")

    def database_exists(self, admin: Connection, name: str) -> bool:
        found = admin.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
        ).first()
        return found is not None

    def is_owned(self, admin: Connection, name: str) -> bool:
        comment = admin.execute(
            text(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = :name"
            ),
            {"name": name},
        ).scalar()
        return bool(comment) and str(comment).startswith(self.OWNER_MARK)

    def create_database(self, admin: Connection, name: str) -> None:
        quoted = _quote(admin, name)
        admin.exec_driver_sql(f"CREATE DATABASE {quoted}")
        admin.exec_driver_sql(f"COMMENT ON DATABASE {quoted} IS '{self.OWNER_MARK}'")

    def drop_database(self, admin: Connection, name: str, *, force: bool = False) -> None:
        # WITH (FORCE) (PostgreSQL >= 13) ends connections a test leaked on its own database.
        version = admin.dialect.server_version_info or (0,)
        suffix = " WITH (FORCE)" if force and version >= (13,) else ""
        admin.exec_driver_sql(f"DROP DATABASE IF EXISTS {_quote(admin, name)}{suffix}")
