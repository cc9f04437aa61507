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


#: every sequence of the database (temporary ones left out): its quoted name, its start, and
#: whether this session may read it (``last_value`` and ``is_called`` are read from each
#: sequence itself, see :meth:`PostgreSQLBackend.sequence_state`).
_SEQUENCES = (
    "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), s.seqstart, "
    "has_sequence_privilege(c.oid, 'SELECT') "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "JOIN pg_sequence s ON s.seqrelid = c.oid "
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
        # Two round trips: the catalog, then every sequence's own row in one UNION ALL (the
        # state lives only there; query_to_xml would need a server built with libxml, which
        # the embedded server is not).
        sequences = connection.exec_driver_sql(_SEQUENCES).all()
        if not all(readable for _, _, readable in sequences):
            return None  # unreadable (permissions): never reuse
        if not sequences:
            return ""
        union = " UNION ALL ".join(
            f"SELECT {index}, last_value, is_called FROM {name}"
            for index, (name, _, _) in enumerate(sequences)
        )
        items = []
        for index, last, called in connection.exec_driver_sql(union):
            name, start, _ = sequences[index]
            if called or int(last) != int(start):
                quoted = urllib.parse.quote(str(name), safe="")
                items.append(f"{quoted}:{int(last)}:{1 if called else 0}")
        return ",".join(sorted(items))

    def restore_sequences(self, connection: Connection, state: str) -> None:
        names, lasts, called = _decode_sequences(state)
        connection.execute(
            text(_RESTORE_SEQUENCES), {"names": names, "lasts": lasts, "called": called}
        )

    def reuse_supported(self, admin: Connection) -> bool:
        # From 15 on, statistics live in shared memory and a session writes its counts before
        # it leaves pg_stat_activity; before, they reached a collector process some time later.
        return (admin.dialect.server_version_info or (0,)) >= (15,)

    def untouched(self, connection: Connection) -> bool:
        # n_mod_since_analyze counts the rows that committed transactions inserted, updated
        # or deleted (a rolled back transaction adds nothing), per table, the catalogs
        # included (DDL, COMMENT, GRANT change catalog rows), but not the catalogs shared by
        # every database (pg_database, roles: the server's); only ANALYZE sets it back, and
        # ANALYZE is counted. Autovacuum's visits change neither, nor a test's rolled back
        # work; a pg_stat_reset*() would set stats_reset. With track_counts off nothing counts.
        row = connection.exec_driver_sql(
            "SELECT current_setting('track_counts'), "
            "(SELECT coalesce(sum(n_mod_since_analyze + analyze_count + autoanalyze_count), 0) "
            "FROM pg_stat_all_tables s JOIN pg_class c ON c.oid = s.relid "
            "WHERE NOT c.relisshared), "
            "(SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()), "
            "(SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()), "
            "(SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid())"
        ).one()
        return row[0] == "on" and row[1] == 0 and row[2] is None and not row[3] and not row[4]

    def rename_database(self, admin: Connection, name: str, new_name: str) -> None:
        admin.exec_driver_sql(
            f"ALTER DATABASE {_quote(admin, name)} RENAME TO {_quote(admin, new_name)}"
        )

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
