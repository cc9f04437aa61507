"""The run's database state, kept on ``config.stash``: settings, test databases, engines."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import shutil
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, Table, inspect
from sqlalchemy.engine import Connection, Engine

from .._errors import CtxdbError, ProvisioningError
from .._settings import DEFAULT_ALIAS, DatabaseSettings, SchemaLines, derive_settings
from ..adapters import Adapter, load_adapters
from ..binding import (
    BindingPlan,
    EngineSessionSource,
    LayerCursor,
    ReusedConnection,
    load_session_classes,
)
from ..provision import (
    ContainerServer,
    EmbeddedServer,
    SchemaBuilder,
    SchemaHook,
    TestDatabase,
    load_metadata,
)
from ._scoped import ScopedData

__all__ = ("STATE_KEY", "RunState", "activate", "active_state", "deactivate")


@dataclass
class RunState:
    """Everything pytest-ctxdb keeps for one pytest run (one per xdist worker).

    :ivar settings: alias -> resolved settings (frozen, decided in ``pytest_configure``);
        mirrors included. :meth:`add_alias` adds the aliases ``db`` markers name.
    :ivar databases: alias -> its :class:`TestDatabase` (mirrors have none); built in
        ``pytest_configure`` (or :meth:`add_alias`) without contacting any server.
    """

    settings: dict[str, DatabaseSettings]
    sqlite_directory: Path
    schema_hook: SchemaHook | None = None
    #: appended to every test database name (``"_gw0"`` on a pytest-xdist worker).
    name_suffix: str = ""
    #: ini ``db_sessionmakers`` / ``db_engines`` import strings, loaded by :meth:`adapters`.
    sessionmaker_specs: tuple[str, ...] = ()
    engine_specs: tuple[str, ...] = ()
    #: ini ``db_flask_sqlalchemy`` import strings of Flask-SQLAlchemy ``SQLAlchemy()`` objects.
    flask_specs: tuple[str, ...] = ()
    #: ini ``db_advanced_alchemy`` import strings of advanced-alchemy config objects.
    advanced_alchemy_specs: tuple[str, ...] = ()
    #: ini ``db_session_class`` lines (``[ALIAS=]module:Class``), loaded by :meth:`session_class`.
    session_class_specs: tuple[str, ...] = ()
    #: ``False`` when ini ``db_block_access`` turns access blocking off.
    block_access: bool = True
    #: unique per run (shared by its xdist workers): part of every clone's name.
    run_id: str | None = None
    #: ``--db-create``: rebuild templates even when their fingerprint matches.
    rebuild: bool = False
    #: ``--db-reuse``: keep this run's databases at the end, for inspection.
    reuse: bool = False
    #: ini ``db_sweep_age``: seconds after which a killed run's databases are dropped;
    #: ``None`` (ini ``db_sweep = false``): nothing is swept.
    sweep_age: float | None = 3600.0
    #: the project's key (``project_key(config.rootpath)``): SQLite templates are kept per project.
    project: str | None = None
    #: alias -> the values of the ``pytest_ctxdb_fingerprint`` hook (added to the fingerprint).
    fingerprint_inputs: Callable[[str], tuple[str, ...]] | None = None
    #: ini ``db_spare_clones``: spare clones of each template kept for later runs.
    spares: int = 1
    #: the run's pytest-xdist workers (1 without xdist): each makes its share of the spares.
    workers: int = 1
    #: ini ``db_spare_clones_detach``: the end-of-run drop and copy run in a process of
    #: their own, so that the run's process exits at once.
    detach_spares: bool = False
    #: ini ``db_metadata`` / ``db_alembic_ini`` as written: the schema of an added alias.
    schema_lines: SchemaLines = field(default_factory=SchemaLines)
    #: the aliases :meth:`add_alias` added (named by a ``db`` marker only), in order.
    added_aliases: list[str] = field(default_factory=list)
    #: the ``pytest_ctxdb_setup_schema`` implementations (their source is fingerprinted).
    hook_sources: tuple[Any, ...] = ()
    #: the throwaway server of ``--db-container``, or the ``--db-embedded`` server (default
    #: alias), started on first use.
    container: ContainerServer | EmbeddedServer | None = None
    #: ``db_container_missing = skip``: skip database tests when the container cannot start.
    skip_without_container: bool = False
    #: why database tests are skipped (set when the container could not start), or ``None``.
    skip_reason: str | None = None
    databases: dict[str, TestDatabase] = field(default_factory=dict)
    provisioned: set[str] = field(default_factory=set)
    #: alias -> tables that cannot roll back (MySQL MyISAM/Aria), found at provisioning.
    nontransactional: dict[str, list[str]] = field(default_factory=dict)
    _adapters: list[Adapter] | None = None
    _session_classes: dict[tuple[str | None, bool], type] | None = None
    _engines: dict[str, Engine] = field(default_factory=dict)
    _connections: dict[str, ReusedConnection] = field(default_factory=dict)
    _tables: dict[str, list[Table]] = field(default_factory=dict)
    _ambient_async: dict[str, Any] = field(default_factory=dict)
    _adapters_guarded: bool = False
    #: (dialect, host, port, database name) -> alias, to keep two aliases' databases apart.
    _locations: dict[tuple[Any, ...], str] = field(default_factory=dict)
    #: the test being run (set by ``pytest_runtest_setup``), for the sync fixtures.
    current_item: pytest.Item | None = None
    #: which scope's layer the database work running now belongs to (wider-scoped fixtures).
    layer_cursor: LayerCursor = field(default_factory=LayerCursor)
    #: event loop -> its ``AsyncConnections`` (made by the loop scopes' fixtures).
    loop_connections: weakref.WeakKeyDictionary[Any, Any] = field(
        default_factory=weakref.WeakKeyDictionary
    )

    def __post_init__(self) -> None:
        for alias, settings in list(self.settings.items()):
            if settings.mirror_of is None:
                self._add_database(alias)

    def _add_database(self, alias: str) -> None:
        """Build the :class:`TestDatabase` of ``alias`` (contacts no server).

        A derived alias (no URL of its own) is pointed at the default alias's server, which
        may be a container, and named ``<default's base>_<alias>`` unless the user chose a
        name; two aliases whose databases would share a server and name are kept apart by
        renaming the later one ``<base>_<alias>``.

        :raises ConfigurationError: a dialect, driver or name the alias cannot use.
        """
        settings = self.settings[alias]
        default = self.settings[DEFAULT_ALIAS]
        if settings.derived and settings.url != default.url:
            settings = self.settings[alias] = dataclasses.replace(settings, url=default.url)
        database = self.databases[alias] = TestDatabase(
            settings,
            self.sqlite_directory,
            self.name_suffix,
            run_id=self.run_id,
            project=self.project,
        )
        if settings.derived and settings.test_database is None:
            database.rename(f"{self.databases[DEFAULT_ALIAS].base}_{alias}", self.name_suffix)

        def location() -> tuple[Any, ...]:
            url = database.url
            return (url.get_backend_name(), url.host, url.port, database.name)

        while location() in self._locations:  # two aliases on one server and database
            database.rename(f"{database.base}_{alias}", self.name_suffix)
        self._locations[location()] = alias

    def add_alias(self, alias: str, named_by: str) -> bool:
        """Give ``alias``, named by a ``db`` marker but not configured, a test database of its
        own: on the default alias's server, or embedded SQLite when the default has none, with
        the schema of the ``db_metadata`` / ``db_alembic_ini`` lines without ``ALIAS=``.

        Called at collection (before :meth:`provision`), or by the first test naming it.

        :param named_by: what named it, for the report (``"@pytest.mark.db in <test>"``).
        :returns: ``True`` if the alias was added, ``False`` if it was known already.
        :raises ConfigurationError: the alias cannot get a database (e.g. a name too long).
        """
        if alias in self.settings:
            return False
        default = self.settings[DEFAULT_ALIAS]
        self.settings[alias] = derive_settings(alias, named_by, default.url, self.schema_lines)
        try:
            self._add_database(alias)
        except CtxdbError:
            del self.settings[alias]
            raise
        self.added_aliases.append(alias)
        return True

    @functools.cached_property
    def mirrors(self) -> dict[str, str]:
        """mirror alias -> the alias whose test connection it shares."""
        return {a: s.mirror_of for a, s in self.settings.items() if s.mirror_of is not None}

    @functools.cached_property
    def default_plan(self) -> BindingPlan:
        """The plan of a test with no ``db`` marker (shared: plans are not modified)."""
        return BindingPlan(mirrors=self.mirrors)

    @property
    def aliases(self) -> list[str]:
        """Every alias known so far, default first (mirrors and derived aliases included)."""
        return list(self.settings)

    def physical(self, alias: str) -> str:
        """The alias that owns the database ``alias`` uses (its mirror target, or itself)."""
        return self.settings[alias].mirror_of or alias

    def database(self, alias: str) -> TestDatabase:
        """Return the :class:`TestDatabase` behind ``alias`` (a mirror's target's)."""
        return self.databases[self.physical(alias)]

    def provision(self, aliases: Iterable[str], *, sync: bool = True, async_: bool = False) -> None:
        """Create each alias's test database and schema, once per run.

        :param sync: check that the sync driver is installed.
        :param async_: check that the async driver is installed.
        :raises CtxdbError: a driver is missing, a schema import string fails, the server is
            unreachable; nothing is created for later aliases then.
        """
        for alias in dict.fromkeys(self.physical(a) for a in aliases):
            database = self.databases[alias]
            if self.skip_reason is not None:
                return
            if self.container is not None and (
                self.settings[alias].url == self.container.placeholder_url
            ):  # the default alias, and the derived aliases on its server
                try:
                    database.use_server(self.container.url())
                except ProvisioningError as exc:
                    if not self.skip_without_container:
                        raise
                    self.skip_reason = str(exc)
                    return
            if sync:
                database.check_driver(is_async=False)
            if async_:
                database.check_driver(is_async=True)
            if alias in self.provisioned:
                continue
            metadata, alembic_ini = self._schema_of(alias)
            schema = SchemaBuilder(
                alias,
                metadata,
                self.schema_hook if self.hook_sources else None,
                self.hook_sources,
                alembic_ini,
                self.fingerprint_inputs(alias) if self.fingerprint_inputs else (),
            )
            database.create(
                schema,
                rebuild=self.rebuild,
                sweep_age=self.sweep_age,
                spares=self.spares,
                workers=self.workers,
            )
            self.provisioned.add(alias)
            if database.nontransactional:
                self.nontransactional[alias] = database.nontransactional

    def _schema_of(self, alias: str) -> tuple[tuple[MetaData, ...], str | None]:
        """``(metadata, alembic_ini)`` that build ``alias``'s schema: its ``db_metadata`` /
        ``db_alembic_ini`` lines, unless none names it and an adapter knows its tables
        (Flask-SQLAlchemy's ``db.metadatas[bind key]``). A line names the default alias if it
        applies to it at all; another alias only with ``ALIAS=``.

        :raises CtxdbError: an import string fails.
        """
        settings = self.settings[alias]
        if alias == DEFAULT_ALIAS:
            named = bool(settings.metadata) or settings.alembic_ini is not None
        else:
            lines = self.schema_lines
            named = alias in lines.metadata or alias in lines.alembic
        if not named and self.flask_specs:
            for adapter in self.adapters():
                found = adapter.schema(alias)
                if found is not None:
                    return found, None
        return load_metadata(settings.metadata), settings.alembic_ini

    def adapters(self) -> list[Adapter]:
        """The run's adapters, imported on first use.

        :raises CtxdbError: an import string fails or names the wrong kind of object.
        """
        if self._adapters is None:
            self._adapters = load_adapters(
                self.sessionmaker_specs,
                self.engine_specs,
                self.flask_specs,
                self.advanced_alchemy_specs,
            )
        return self._adapters

    def guard_adapters(self) -> None:
        """Guard the adapters' engines against escapes, once per run: the guards stay
        attached; engines an adapter meets later (a Flask app or an advanced-alchemy config
        made during the run) are guarded when made.

        :raises CtxdbError: an import string fails.
        """
        if not self._adapters_guarded:
            self._adapters_guarded = True  # tried once: a bad import string fails elsewhere
            for adapter in self.adapters():
                adapter.guard_engines()

    def add_adapter_aliases(self) -> None:
        """Give each alias an adapter names (a Flask-SQLAlchemy bind key) a test database when
        it has none (see :meth:`add_alias`); called after collection, before provisioning.

        :raises CtxdbError: an import string fails, or an alias cannot get a test database.
        """
        if not self.flask_specs:
            return
        for adapter in self.adapters():
            for alias, named_by in adapter.aliases().items():
                self.add_alias(alias, named_by)

    def session_classes(self) -> dict[tuple[str | None, bool], type]:
        """ini ``db_session_class``, imported on first use: ``(alias, is_async)`` -> class;
        alias ``None`` for a line without ``ALIAS=`` (every alias without a line of its own).

        :raises CtxdbError: a line does not import, or names no ``Session`` / ``AsyncSession``
            subclass, or gives one alias two sync (or two async) classes.
        """
        if self._session_classes is None:
            self._session_classes = load_session_classes(self.session_class_specs)
        return self._session_classes

    def session_class(self, alias: str, is_async: bool) -> type | None:
        """The class of the test's own ``alias`` session (``db_session`` and its kin), or
        ``None`` for SQLAlchemy's ``Session`` / ``AsyncSession``."""
        classes = self.session_classes()
        if not classes:
            return None
        found = classes.get((alias, is_async))
        return classes.get((None, is_async)) if found is None else found

    def engine(self, alias: str) -> Engine:
        """The run's sync ``Engine`` on the test database of ``alias`` (created on first use)."""
        alias = self.physical(alias)
        engine = self._engines.get(alias)
        if engine is None:
            self.provision([alias])
            engine = self._engines[alias] = self.database(alias).create_engine()
            guard_own_engine(
                engine.sync_engine if hasattr(engine, "sync_engine") else engine, alias
            )
        return engine

    @functools.cached_property
    def ambient_source(self) -> EngineSessionSource:
        """The source for fixtures of database tests outside the tests' bindings (one per
        run): wider-scoped fixtures' sessions go into their scope's layer."""
        scoped = self.scoped
        return EngineSessionSource(
            self.ambient_engine, scoped.connection, self.layer_cursor, scoped.async_session
        )

    @functools.cached_property
    def scoped(self) -> ScopedData:
        """The run's scoped data: layers, setup sessions, adapters bound for wider fixtures."""
        return ScopedData(self)

    def ambient_engine(self, alias: str, is_async: bool) -> Any:
        """The engine wider-scoped fixtures' sessions use (see ``EngineSessionSource``): the
        run's sync engine, or a ``NullPool`` async engine usable from any event loop."""
        if not is_async:
            return self.engine(alias)
        alias = self.physical(alias)
        engine = self._ambient_async.get(alias)
        if engine is None:
            from sqlalchemy.pool import NullPool

            self.provision([alias], sync=False, async_=True)
            engine = self.database(alias).create_async_engine(poolclass=NullPool)
            guard_own_engine(engine.sync_engine, alias)
            self._ambient_async[alias] = engine
        return engine

    def connect(self, alias: str, fresh: bool = False) -> Connection:
        """A connection of ``alias`` with no transaction begun.

        :param fresh: a new connection from the engine (commit mode) instead of the one
            reused from test to test (rollback mode).
        """
        alias = self.physical(alias)
        if fresh:
            return self.engine(alias).connect()
        reused = self._connections.get(alias)
        if reused is None:
            reused = self._connections[alias] = ReusedConnection(
                self.engine(alias), self.layer_cursor
            )
        connection = reused.get()
        if "scoped" in self.__dict__:  # made once a wider-scoped fixture ran
            self.scoped.follow(alias, connection)
        return connection

    def running_loop_connections(self) -> Any:
        """The ``AsyncConnections`` of the running event loop (a loop scope's), or ``None``
        when no loop runs or pytest-ctxdb has no connections in it."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        return self.loop_connections.get(loop)

    def trunks(self) -> list[Connection]:
        """The rollback-mode (sync) test connections open now."""
        return [c for reused in self._connections.values() if (c := reused.current) is not None]

    def trunk(self, alias: str) -> Connection | None:
        """The open rollback-mode test connection of ``alias``, if it has one."""
        reused = self._connections.get(self.physical(alias))
        return None if reused is None else reused.current

    def cleanup(
        self, alias: str, reset_sequences: bool
    ) -> tuple[Callable[[Connection], None], Callable[[Connection], None] | None]:
        """How a ``transaction=True`` test of ``alias`` is cleaned up (every table emptied)
        and, with ``reset_sequences``, prepared (sequences restarted before it runs)."""
        alias = self.physical(alias)
        backend = self.database(alias).backend

        def tables(connection: Connection) -> list[Table]:
            # One catalog query per test; reflect again only when a test added or dropped
            # a table (DDL is what transaction=True tests are for).
            names = sorted(inspect(connection).get_table_names())
            known = self._tables.get(alias)
            if known is None or sorted(t.name for t in known) != names:
                reflected = MetaData()
                reflected.reflect(connection)
                known = self._tables[alias] = list(reflected.sorted_tables)
            return known

        def empty(connection: Connection) -> None:
            backend.empty_tables(connection, tables(connection), reset_sequences=False)

        def prepare(connection: Connection) -> None:
            backend.reset_sequences(connection, tables(connection))

        return empty, (prepare if reset_sequences else None)

    def close(self, report: Callable[[str], Any]) -> None:
        """Dispose engines and drop every test database this run created.

        :param report: called with a message for each failure; clean-up goes on regardless.
        """
        if "scoped" in self.__dict__:
            self.scoped.close()
        for adapter in self._adapters or ():
            try:
                adapter.close()
            except Exception as exc:  # noqa: BLE001 - teardown must reach the drops
                report(f"{adapter.label}: undoing its patches failed: {exc}")
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
            if self.reuse and database.created:
                report(f"--db-reuse: kept {database.alias!r} test database {database.name!r}")
                continue
            try:
                database.drop(detach=self.detach_spares)
            except CtxdbError as exc:
                report(str(exc))
        # After the drops: a DROP DATABASE waits for the WAL a running clone writes (measured
        # on PostgreSQL 15: ~8 ms alone, 180-260 ms behind two clones).
        for database in self.databases.values():
            database.start_spares()
        for database in self.databases.values():
            database.wait_for_spares()
            if database.spare_error:
                report(database.spare_error)
        self.provisioned.clear()
        if not self.reuse:
            shutil.rmtree(self.sqlite_directory, ignore_errors=True)


def guard_own_engine(engine: Engine, alias: str) -> None:
    """Let a test database engine refuse connections while database access is blocked."""
    from ..context import _seam

    _seam.watch_engine(engine, f"the test database engine of alias {alias!r}", own=True)


#: where the plugin keeps the run's :class:`RunState`.
STATE_KEY = pytest.StashKey[RunState]()

#: the states of the configured pytest runs, innermost last (pytester's in-process runs nest).
_active: list[RunState] = []


def activate(state: RunState) -> None:
    """Make ``state`` the one :func:`active_state` returns (``pytest_configure``)."""
    _active.append(state)


def deactivate(state: RunState) -> None:
    """Forget ``state`` (``pytest_unconfigure``)."""
    if any(each is state for each in _active):
        _active[:] = [each for each in _active if each is not state]


def active_state() -> RunState:
    """The state of the innermost configured run.

    The fixtures read it here rather than through ``request`` (or a fixture depending on it):
    pytest builds a new ``request`` fixture definition, with ``inspect.signature``, each time
    one is looked up, which costs more per test than everything else the fixture does.

    :raises RuntimeError: pytest-ctxdb is not configured in this process.
    """
    if not _active:
        raise RuntimeError("pytest-ctxdb is not configured (no pytest run with the plugin)")
    return _active[-1]
