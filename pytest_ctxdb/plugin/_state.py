"""The run's database state, kept on ``config.stash``: settings, test databases, engines."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Connection, Engine

from .._errors import CtxdbError
from .._settings import DatabaseSettings
from ..adapters import Adapter, load_adapters
from ..binding import ReusedConnection
from ..provision import SchemaHook, TestDatabase, load_metadata

__all__ = ("STATE_KEY", "RunState")


@dataclass
class RunState:
    """Everything pytest-ctxdb keeps for one pytest run (one per xdist worker).

    :ivar settings: alias -> resolved settings (frozen, decided in ``pytest_configure``).
    :ivar databases: alias -> its :class:`TestDatabase` (built lazily, no server contacted).
    """

    settings: dict[str, DatabaseSettings]
    sqlite_directory: Path
    schema_hook: SchemaHook | None = None
    #: appended to every test database name (``"_gw0"`` on a pytest-xdist worker).
    name_suffix: str = ""
    databases: dict[str, TestDatabase] = field(default_factory=dict)
    provisioned: set[str] = field(default_factory=set)
    #: ini ``db_sessionmakers`` / ``db_engines`` import strings, loaded by :meth:`adapters`.
    sessionmaker_specs: tuple[str, ...] = ()
    engine_specs: tuple[str, ...] = ()
    _adapters: list[Adapter] | None = None
    _engines: dict[str, Engine] = field(default_factory=dict)
    _connections: dict[str, ReusedConnection] = field(default_factory=dict)

    def database(self, alias: str) -> TestDatabase:
        """Return the :class:`TestDatabase` of ``alias``, without creating it on the server."""
        database = self.databases.get(alias)
        if database is None:
            database = self.databases[alias] = TestDatabase(
                self.settings[alias], self.sqlite_directory, self.name_suffix
            )
        return database

    def provision(self, aliases: Iterable[str], *, sync: bool = True, async_: bool = False) -> None:
        """Create each alias's test database and schema, once per run.

        :param sync: check that the sync driver is installed.
        :param async_: check that the async driver is installed.
        :raises CtxdbError: a driver is missing, a schema import string fails, the server is
            unreachable; nothing is created for later aliases then.
        """
        for alias in aliases:
            database = self.database(alias)
            if sync:
                database.check_driver(is_async=False)
            if async_:
                database.check_driver(is_async=True)
            if alias in self.provisioned:
                continue
            metadata = load_metadata(self.settings[alias].metadata)
            database.create(metadata, self.schema_hook)
            self.provisioned.add(alias)

    def adapters(self) -> list[Adapter]:
        """The run's adapters, imported on first use.

        :raises CtxdbError: an import string fails or names the wrong kind of object.
        """
        if self._adapters is None:
            self._adapters = load_adapters(self.sessionmaker_specs, self.engine_specs)
        return self._adapters

    def engine(self, alias: str) -> Engine:
        """The run's sync ``Engine`` on the test database of ``alias`` (created on first use)."""
        engine = self._engines.get(alias)
        if engine is None:
            self.provision([alias])
            engine = self._engines[alias] = self.database(alias).create_engine()
        return engine

    def connection(self, alias: str) -> Connection:
        """The reused sync connection of ``alias``, with no transaction begun."""
        reused = self._connections.get(alias)
        if reused is None:
            reused = self._connections[alias] = ReusedConnection(self.engine(alias))
        return reused.get()

    def close(self, report: Callable[[str], Any]) -> None:
        """Dispose engines and drop every test database this run created.

        :param report: called with a message for each failure; clean-up goes on regardless.
        """
        for reused in self._connections.values():
            try:
                reused.close()
            except Exception as exc:  # noqa: BLE001 - teardown must reach the drops
                report(f"closing a connection failed: {exc}")
        self._connections.clear()
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()
        for database in self.databases.values():
            try:
                database.drop()
            except CtxdbError as exc:
                report(str(exc))
        self.provisioned.clear()
        shutil.rmtree(self.sqlite_directory, ignore_errors=True)


#: where the plugin keeps the run's :class:`RunState`.
STATE_KEY = pytest.StashKey[RunState]()
