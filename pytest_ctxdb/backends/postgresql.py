"""PostgreSQL: psycopg (sync) and asyncpg (async).

Test databases are created with ``CREATE DATABASE`` from an AUTOCOMMIT connection to the
database named in the URL (only its catalog is read) and marked with
``COMMENT ON DATABASE ... IS 'created by pytest-ctxdb'``; only marked databases are dropped.
"""

from __future__ import annotations

import time
import urllib.parse
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


#: every sequence of the database (temporary ones left out) with its start and its state,
#: read in one round trip: ``last_value`` and ``is_called`` only exist in the sequence itself.
_SEQUENCES = (
    "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), s.seqstart, "
    "(xpath('/row/last_value/text()', x))[1]::text, (xpath('/row/is_called/text()', x))[1]::text "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "JOIN pg_sequence s ON s.seqrelid = c.oid, "
    "LATERAL query_to_xml('SELECT last_value, is_called FROM ' || c.oid::regclass::text, "
    "false, true, '') AS x "
    "WHERE c.relkind = 'S' AND c.relpersistence <> 't' ORDER BY 1"
)

#: every sequence back to the state a template's mark gives (``setval`` is not transactional).
_RESTORE_SEQUENCES = (
    "SELECT count(setval(c.oid, coalesce(t.last, s.seqstart), coalesce(t.called, false))) "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "JOIN pg_sequence s ON s.seqrelid = c.oid "
    "LEFT JOIN unnest(CAST(:names AS text[]), CAST(:lasts AS bigint[]), "
    "CAST(:called AS boolean[])) AS t(name, last, called) "
    "ON t.name = quote_ident(n.nspname) || '.' || quote_ident(c.relname) "
    "WHERE c.relkind = 'S' AND c.relpersistence <> 't'"
)


def _decode_sequences(state: str) -> tuple[list[str], list[int], list[bool]]:
    names: list[str] = []
    lasts: list[int] = []
    called: list[bool] = []
    for item in filter(None, state.split(",")):
        name, last, is_called = item.split(":")
        names.append(urllib.parse.unquote(name))
        lasts.append(int(last))
        called.append(is_called == "1")
    return names, lasts, called


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

    def sequence_state(self, connection: Connection) -> str | None:
        # "name:last_value:is_called" of each sequence not in its start state (seed data, a
        # RESTART WITH), names quoted so that the text has no ";", "," or ":" of its own.
        items = []
        for name, start, last, called in connection.exec_driver_sql(_SEQUENCES):
            if last is None or called is None:
                return None  # unreadable (permissions): never reuse
            if called == "true" or int(last) != int(start):
                quoted = urllib.parse.quote(str(name), safe="")
                items.append(f"{quoted}:{int(last)}:{1 if called == 'true' else 0}")
        return ",".join(items)

    def restore_sequences(self, connection: Connection, state: str) -> None:
        names, lasts, called = _decode_sequences(state)
        connection.execute(
            text(_RESTORE_SEQUENCES), {"names": names, "lasts": lasts, "called": called}
        )

    def write_witness(self, admin: Connection, name: str) -> str | None:
        # Every session commits once as it starts (reading the catalogs); a test's rolled
        # back work commits nothing, so xact_commit - sessions moves only when something
        # else commits there. pg_stat_database.sessions exists from PostgreSQL 14 on; with
        # track_counts off the counters stand still and prove nothing.
        if (admin.dialect.server_version_info or (0,)) < (14,):
            return None
        row = admin.execute(
            text(
                "SELECT current_setting('track_counts'), "
                "(SELECT xact_commit - sessions FROM pg_stat_database WHERE datname = :name), "
                "(SELECT stats_reset FROM pg_stat_database WHERE datname = :name), "
                "(SELECT count(*) FROM pg_prepared_xacts WHERE database = :name)"
            ),
            {"name": name},
        ).one()
        if row[0] != "on" or row[3]:
            return None  # a prepared transaction may still commit
        return f"{row[1] or 0}|{row[2]}"

    def recycle(self, admin: Connection, name: str, spare: str, comment: str) -> None:
        # Renamed first: until the comment says "spare", no run takes it.
        admin.exec_driver_sql(
            f"ALTER DATABASE {_quote(admin, name)} RENAME TO {_quote(admin, spare)}"
        )
        self.set_comment(admin, spare, comment)

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
