"""PostgreSQL: psycopg (sync) and asyncpg (async).

Test databases are created with ``CREATE DATABASE`` from an AUTOCOMMIT connection to the
database named in the URL (only its catalog is read) and marked with
``COMMENT ON DATABASE ... IS 'created by pytest-ctxdb'``; only marked databases are dropped.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

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
        # One round trip for every sequence of the schema (measured: an ALTER SEQUENCE per
        # sequence costs 2-3x the DELETEs themselves; see bench/flush).
        connection.execute(  # text(): SQLAlchemy escapes the % signs for each driver
            text(
                "SELECT setval(format('%I.%I', schemaname, sequencename)::regclass, 1, false) "
                "FROM pg_sequences WHERE schemaname = current_schema()"
            )
        )

    def comment(self, admin: Connection, name: str) -> str | None:
        row = admin.execute(
            text(
                "SELECT coalesce(shobj_description(oid, 'pg_database'), '') "
                "FROM pg_database WHERE datname = :name"
            ),
            {"name": name},
        ).first()
        return None if row is None else str(row[0])

    def set_comment(self, admin: Connection, name: str, comment: str) -> None:
        literal = comment.replace("'", "''")
        admin.exec_driver_sql(f"COMMENT ON DATABASE {_quote(admin, name)} IS '{literal}'")

    def owned_databases(self, admin: Connection) -> list[tuple[str, str]]:
        rows = admin.execute(
            text(
                "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database "
                "WHERE shobj_description(oid, 'pg_database') LIKE :mark"
            ),
            {"mark": f"{self.OWNER_MARK}%"},
        )
        return [(str(name), str(comment)) for name, comment in rows]

    def in_use(self, admin: Connection, name: str) -> bool:
        count = admin.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = :name "
                "AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        ).scalar()
        return bool(count)

    def create_database(self, admin: Connection, name: str, comment: str | None = None) -> None:
        admin.exec_driver_sql(f"CREATE DATABASE {_quote(admin, name)}")
        self.set_comment(admin, name, comment or self.OWNER_MARK)

    def clone_database(self, admin: Connection, template: str, name: str, comment: str) -> None:
        # CREATE DATABASE ... TEMPLATE fails while anyone is connected to the template (a
        # worker still building it, autovacuum): retry for a few seconds.
        deadline = time.monotonic() + 10
        while True:
            try:
                admin.exec_driver_sql(
                    f"CREATE DATABASE {_quote(admin, name)} TEMPLATE {_quote(admin, template)}"
                )
                break
            except DBAPIError as exc:
                if "being accessed by other users" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.set_comment(admin, name, comment)

    keeps_spares = True

    def take_spare(
        self, admin: Connection, spare: str, name: str, comment: str, *, keep_name: bool
    ) -> str | None:
        # Renamed even with keep_name: a catalog update, milliseconds whatever the size.
        # Fails while anyone is connected, or when another run renamed it first.
        admin.exec_driver_sql(
            f"ALTER DATABASE {_quote(admin, spare)} RENAME TO {_quote(admin, name)}"
        )
        self.set_comment(admin, name, comment)
        return name

    def abort_on_disconnect(self, admin: Connection) -> None:
        # PostgreSQL >= 14 checks the client socket every interval during long statements
        # (CREATE DATABASE copying a template) and cancels them once the client is gone.
        if (admin.dialect.server_version_info or (0,)) >= (14,):
            admin.exec_driver_sql("SET client_connection_check_interval = 200")

    def drop_database(self, admin: Connection, name: str, *, force: bool = False) -> None:
        # WITH (FORCE) (PostgreSQL >= 13) ends connections a test leaked on its own database.
        version = admin.dialect.server_version_info or (0,)
        suffix = " WITH (FORCE)" if force and version >= (13,) else ""
        admin.exec_driver_sql(f"DROP DATABASE IF EXISTS {_quote(admin, name)}{suffix}")
