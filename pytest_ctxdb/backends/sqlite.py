"""SQLite: pysqlite (sync) and aiosqlite (async).

pysqlite's legacy transaction control emits no ``BEGIN`` before a ``SAVEPOINT``, so
``SAVEPOINT``/``RELEASE`` run in autocommit and data survives the outer rollback. The fix
is SQLAlchemy's documented one ("Serializable isolation / Savepoints / Transactional DDL"):
turn off the driver's own transaction handling (``isolation_level = None``) and emit
``BEGIN`` from the engine's ``begin`` event; for aiosqlite the same events go on
``AsyncEngine.sync_engine``. Foreign keys are enforced with ``PRAGMA foreign_keys = ON``.

A "test database" is a file in a temporary directory the plugin owns; the file named in
a ``sqlite:///`` URL is never opened.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import URL

from ._base import Backend, DriverPair

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import Table
    from sqlalchemy.engine import Connection, Engine

__all__ = ("SQLiteBackend",)


def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _on_begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN")


class SQLiteBackend(Backend):
    name = "sqlite"
    max_name_length = 200  # a file name (most file systems allow 255 bytes)
    drivers = DriverPair(
        sync="pysqlite",
        async_="aiosqlite",
        sync_drivers=frozenset({"pysqlite"}),
        async_drivers=frozenset({"aiosqlite"}),
        extras={"aiosqlite": "async"},
    )

    def __init__(self, directory: Path, template_directory: Path | None = None) -> None:
        #: the directory that holds every test database file of this run.
        self.directory = directory
        #: where template files are kept across runs.
        self.template_directory = template_directory or directory

    def default_test_name(self, url: URL) -> str:
        stem = Path(url.database).name if url.database and url.database != ":memory:" else "ctxdb"
        return stem if stem.startswith("test_") else f"test_{stem}"

    def test_url(self, url: URL, name: str) -> URL:
        return url.set(database=os.fspath(self.directory / name))

    def prepare_engine(self, engine: Engine) -> None:
        if not event.contains(engine, "connect", _on_connect):
            event.listen(engine, "connect", _on_connect)
            event.listen(engine, "begin", _on_begin)

    def reset_sequences(self, connection: Connection, tables: Sequence[Table]) -> None:
        # Only AUTOINCREMENT tables keep a counter; plain rowid tables restart when empty.
        if connection.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'"
        ).first():
            connection.exec_driver_sql("DELETE FROM sqlite_sequence")

    # SQLite has no server: a "database" is a file. Clones live in the run's private
    # directory; templates in a directory kept across runs, named by fingerprint, written
    # to a temporary name and renamed into place (so a template that exists is complete).

    def path(self, name: str) -> Path:
        return self.directory / name

    def template_path(self, name: str) -> Path:
        return self.template_directory / f"{name}.sqlite3"

    def database_exists(self, admin: Connection | None, name: str) -> bool:
        return self.path(name).exists()

    def is_owned(self, admin: Connection | None, name: str) -> bool:
        # Every file in the run's own temporary directory was made by the plugin.
        return self.path(name).parent == self.directory

    def create_database(
        self, admin: Connection | None, name: str, comment: str | None = None
    ) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path(name).touch()

    def clone_file(self, template: Path, name: str) -> None:
        """Copy the template file to the run's database ``name``."""
        self.directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, self.path(name))

    def drop_database(self, admin: Connection | None, name: str, *, force: bool = False) -> None:
        for suffix in ("", "-journal", "-wal", "-shm"):
            (self.directory / f"{name}{suffix}").unlink(missing_ok=True)
