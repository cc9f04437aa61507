"""The life of one alias's test database: create, build the schema, drop.

Rules kept here, whatever the backend:

* the database named in the user's URL is only connected to (to run ``CREATE DATABASE``),
  never written to and never dropped;
* a database is dropped only if the plugin created it in this run, or it carries the
  plugin's ownership mark (a stale test database of a killed run);
* errors name the alias, the setting and host:port, never the password.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from filelock import FileLock
from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from .._errors import ConfigurationError, ProvisioningError
from .._settings import DatabaseSettings, hide_password, mask_url
from ..backends import Backend, SQLiteBackend, backend_for
from ..context import _seam
from ._embedded_idle import alive as _alive
from ._names import BaseNames
from ._schema import SchemaBuilder

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = (
    "SchemaHook",
    "TestDatabase",
    "default_template_directory",
    "make_sqlite_directory",
    "project_key",
)

T = TypeVar("T")
#: seconds after which any SQLite template file in the project's folder is swept (one week);
#: the next run that needs it rebuilds it.
TEMPLATE_MAX_AGE = 7 * 24 * 3600.0
#: seconds a run waits for another machine's run to finish building a template.
BUILD_WAIT = 600.0
#: called with (connection, alias) inside the schema transaction, after ``create_all``.
SchemaHook = Callable[[Connection, str], None]
#: seconds the end of a run waits for its own connections to leave the database it may reuse.
RECYCLE_WAIT = 3.0


def _host(url: URL) -> str:
    """The server ``url`` names: its host, else its Unix socket folder (``?host=/path``, as
    the embedded server's URL has it), else ``localhost``."""
    query_host = url.query.get("host")
    return url.host or (str(query_host) if isinstance(query_host, str) else "") or "localhost"


def _lock_key(url: URL, base: str) -> str:
    where = f"{url.get_backend_name()}://{url.host}:{url.port}/{base}"
    return hashlib.sha256(where.encode()).hexdigest()[:16]


def default_template_directory() -> Path:
    """Where provisioning locks, container state and (in one folder per project, see
    :func:`project_key`) SQLite template files are kept across runs."""
    return Path(tempfile.gettempdir()) / "pytest-ctxdb"


def project_key(root: Path) -> str:
    """A name for the project at ``root`` (pytest's ``config.rootpath``): its folder's name
    (letters, digits and ``_`` kept, at most 32) and a hash of its absolute path, e.g.
    ``myapp_3fa2c91b04de``. SQLite templates and run folders carry it, so that projects on one
    machine never sweep (or evict) each other's."""
    digest = hashlib.sha256(os.fsencode(Path(root).absolute())).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9_]", "_", Path(root).name)[:32]
    return f"{name}_{digest}" if name else digest


_RUN_DIRECTORY = "pytest-ctxdb-"


def make_sqlite_directory(project: str | None = None) -> Path:
    """Return a unique path for this run's SQLite test database files:
    ``<temp>/pytest-ctxdb-[<project>-]<pid>-<random>``.

    :param project: the :func:`project_key` of the run's project (then only runs of that
        project sweep the folder when the run is killed).

    The directory is not created here (a run that uses no database makes nothing); the SQLite
    backend creates it with the first test database.
    """
    owner = f"{project}-" if project else ""
    unique = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return Path(tempfile.gettempdir()) / f"{_RUN_DIRECTORY}{owner}{unique}"


def _run_directory_pid(path: Path, project: str | None) -> int | None:
    """The pid in the name of a run folder of ``project`` (made by
    :func:`make_sqlite_directory`), or ``None`` if ``path`` is not one."""
    parts = path.name.removeprefix(_RUN_DIRECTORY).split("-")
    expected = 3 if project else 2
    if len(parts) != expected or (project and parts[0] != project) or not parts[-2].isdigit():
        return None
    return int(parts[-2])


class TestDatabase:
    """One alias's test database on its server (or SQLite file).

    :param settings: the alias's resolved settings.
    :param sqlite_directory: where SQLite test database files go (plugin-owned).
    :param suffix: appended to the test database name, e.g. ``"_gw0"`` for a pytest-xdist
        worker (pytest-django's convention), so that workers never share a database.
    :param run_id: the run's unique part of generated names (shared by its xdist workers).
    :param template_directory: where provisioning locks are kept (default
        :func:`default_template_directory`); SQLite templates too, in a folder per ``project``.
    :param project: the :func:`project_key` of the run's project: SQLite templates are kept
        in ``template_directory / project``, and only this project's killed runs' folders
        are swept. ``None``: templates directly in ``template_directory``.

    The object is cheap to build and contacts no server; :meth:`create` does the work.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(
        self,
        settings: DatabaseSettings,
        sqlite_directory: Path,
        suffix: str = "",
        *,
        run_id: str | None = None,
        template_directory: Path | None = None,
        project: str | None = None,
    ) -> None:
        self.settings = settings
        self.alias = settings.alias
        server_url = settings.url or make_url("sqlite://")
        self.setting = settings.source.name or "embedded SQLite"
        if settings.derived:  # no URL of its own: name what named it, and whose server
            where = "embedded SQLite" if settings.url is None else "on the default alias's server"
            self.setting += f", {where}"
        self.template_directory = template_directory or default_template_directory()
        self.project = project
        sqlite_templates = self.template_directory / project if project else None
        self.backend: Backend = backend_for(
            server_url,
            sqlite_directory=sqlite_directory,
            setting=self.setting,
            template_directory=sqlite_templates or self.template_directory,
        )
        self.server_url = server_url
        self.backend.check_dialect(server_url, self.setting)
        #: the name templates are derived from: ``test_<name>`` or ``--db-test-name``.
        self.base = settings.test_database or self.backend.default_test_name(server_url)
        #: this run's unique part (``None`` when the user chose the name).
        self.run_id = None if settings.test_database else run_id
        #: the run's id, also when the user chose the name (for the ownership marks).
        self.run_token = run_id or "-"
        #: the test database's name, ``<base>_<run id><suffix>``; on MariaDB the name of the
        #: spare clone :meth:`create` took, unless the user chose the name.
        self.name = self._test_name(suffix)
        #: the template database this run cloned (set by :meth:`create`).
        self.template: str | None = None
        #: ``True`` when :meth:`create` built the template (``False``: it reused one).
        self.template_built = False
        if (
            settings.url is not None
            and self.name == settings.url.database
            and not isinstance(self.backend, SQLiteBackend)
        ):
            raise ConfigurationError(
                f"--db-test-name / db_test_name: the test database of alias {self.alias!r} would be "
                f"{self.name!r}, the database of the URL itself; pytest-ctxdb never writes to "
                "that one. Choose another name."
            )
        #: the test database's URL as given (driver unchanged).
        self.url: URL = self.backend.test_url(server_url, self.name)
        #: ``True`` once this run created the database (then it drops it at the end).
        self.created = False
        #: ``True`` when :meth:`create` took a spare clone instead of cloning the template.
        self.took_spare = False
        #: tables whose storage engine cannot roll back (MySQL MyISAM/Aria), found by create.
        self.nontransactional: list[str] = []
        self._needs_server = not isinstance(self.backend, SQLiteBackend)
        self._spare_maker: threading.Thread | None = None
        self._missing_spares = 0
        #: why making a spare clone failed (shown at the end of the run), or ``None``.
        self.spare_error: str | None = None
        #: ``True`` once :meth:`drop` made the run's database a spare instead of dropping it.
        self.recycled = False
        #: ``True`` once :meth:`drop` handed the drop and the spare clones to a process.
        self.detached = False
        #: the template's sequence state (its mark's ``seqs``) when the run's database may
        #: become a spare at the end (see :meth:`_recycle`), else ``None``; ``False`` once
        #: the run's own engines were used for more than the test connections.
        self._template_sequences: str | None = None
        self._untouched = True

    @property
    def names(self) -> BaseNames:
        """The names derived from :attr:`base` (template, spares, run databases)."""
        return BaseNames(self.base, self.backend.max_name_length)

    @property
    def _may_keep_name(self) -> bool:
        """``True`` unless the user chose the test database's name: then a spare clone may
        be used under its own name."""
        return self.run_id is not None

    def use_server(self, server_url: URL) -> None:
        """Use the server at ``server_url`` (a container started after configuration)."""
        self.server_url = server_url
        self.url = self.backend.test_url(server_url, self.name)

    def rename(self, base: str, suffix: str = "") -> None:
        """Use ``base`` for this alias's template and database names (before :meth:`create`)."""
        self.base = base
        self.name = self._test_name(suffix)
        self.url = self.backend.test_url(self.server_url, self.name)

    def _test_name(self, suffix: str) -> str:
        """``<base>_<run id><suffix>``, or ``<base><suffix>`` when the user chose the name.

        A generated name too long for the server keeps its start and gets a hash of the
        whole (servers cut long names silently: two workers would share one database).

        :raises ConfigurationError: the chosen name is too long.
        """
        name = self.names.clone(self.run_id, suffix)
        if self.run_id is None and len(name.encode()) > self.backend.max_name_length:
            raise ConfigurationError(
                f"--db-test-name / db_test_name: the test database name {name!r} of alias "
                f"{self.alias!r} is longer than the {self.backend.max_name_length} bytes the "
                "server keeps. Choose a shorter name."
            )
        return name

    # -- URLs and engines ---------------------------------------------------------------------

    def driver_url(self, *, is_async: bool) -> URL:
        """The test database URL with the sync or async driver of its dialect."""
        return self.backend.driver_url(self.url, is_async=is_async)

    def check_driver(self, *, is_async: bool) -> None:
        """:raises MissingDriverError: the needed driver is not installed (names the extra)."""
        self.backend.check_driver(self.driver_url(is_async=is_async), self.setting)

    def create_engine(self, **kwargs: Any) -> Engine:
        """Return a new sync ``Engine`` on the test database, with the backend's fixes."""
        engine = create_engine(self.driver_url(is_async=False), **kwargs)
        self.backend.prepare_engine(engine)
        self._watch(engine)
        return engine

    def create_async_engine(self, **kwargs: Any) -> AsyncEngine:
        """Return a new ``AsyncEngine`` on the test database, with the backend's fixes."""
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(self.driver_url(is_async=True), **kwargs)
        self.backend.prepare_engine(engine.sync_engine)
        self._watch(engine.sync_engine)
        return engine

    def _watch(self, engine: Engine) -> None:
        """Note when ``engine`` hands out a second connection: each engine of the run keeps
        one test connection, so a second one is a ``transaction=True`` test, a connection
        taken from ``db_engine`` / ``async_db_engine``, or a test connection replaced after
        it was invalidated (a refused COMMIT); the database is then not reused. A pool event,
        dispatched at checkout only: no statement of a test pays for it."""
        if self._template_sequences is None and self.created:
            return  # nothing to reuse
        checkouts = 0

        def checkout(*_: Any) -> None:
            nonlocal checkouts
            checkouts += 1
            if checkouts > 1:
                self._untouched = False

        event.listen(engine, "checkout", checkout)

    def describe(self) -> str:
        """A one-line, password-free description for the pytest header."""
        sync_driver = self.backend.driver_url(self.url, is_async=False).get_driver_name()
        async_driver = self.backend.driver_url(self.url, is_async=True).get_driver_name()
        where = "embedded SQLite" if self.settings.embedded else str(self.settings.source)
        if self.settings.derived:  # no URL of its own: say where it went and what named it
            server = "on the default alias's server" if self.settings.url else "embedded SQLite"
            where = f"{server}, {self.settings.source}"
        return (
            f"{self.alias}: {mask_url(self.driver_url(is_async=False))} ({where}; "
            f"sync driver {sync_driver}, async driver {async_driver})"
        )

    # -- server work ----------------------------------------------------------------------------

    def _run(self, url: URL, fn: Callable[[Connection], T], *, autocommit: bool) -> T:
        """Run ``fn(connection)`` on a fresh connection to ``url`` (sync driver if installed)."""
        options: dict[str, Any] = {"poolclass": NullPool}
        if autocommit:
            options["isolation_level"] = "AUTOCOMMIT"
        sync_url = self.backend.driver_url(url, is_async=False)
        try:
            self.backend.check_driver(sync_url, self.setting)
        except ConfigurationError:
            async_url = self.backend.driver_url(url, is_async=True)
            self.backend.check_driver(async_url, self.setting)
            return asyncio.run(self._run_async(async_url, fn, options))
        engine = create_engine(sync_url, **options)
        _seam.own_engine(engine)
        self.backend.prepare_engine(engine)
        try:
            try:
                connection = engine.connect()
            except (DBAPIError, OSError) as exc:
                raise self._server_error(exc, url) from None
            with connection:
                return fn(connection)
        except DBAPIError as exc:
            raise self._statement_error(exc) from None
        finally:
            engine.dispose()

    async def _run_async(
        self, url: URL, fn: Callable[[Connection], T], options: dict[str, Any]
    ) -> T:
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(url, **options)
        _seam.own_engine(engine.sync_engine)
        self.backend.prepare_engine(engine.sync_engine)
        try:
            try:
                connection = await engine.connect()
            except (DBAPIError, OSError) as exc:
                raise self._server_error(exc, url) from None
            async with connection:
                return await connection.run_sync(fn)
        except DBAPIError as exc:
            raise self._statement_error(exc) from None
        finally:
            await engine.dispose()

    def _statement_error(self, exc: DBAPIError) -> ProvisioningError:
        # The server's message and its detail lines (PostgreSQL's DETAIL, HINT), in one line.
        reason = [line.strip() for line in str(exc.orig).strip().splitlines() if line.strip()]
        text = hide_password("; ".join(reason[:3]) or type(exc).__name__, self.server_url)
        hint = (
            " If another pytest run uses the same server at the same time, give each run its "
            f"own name with --db-test-name {self.alias}=NAME."
            if self.run_id is None  # a chosen name; generated ones carry the run id
            else ""
        )
        stage = getattr(exc, "ctxdb_stage", None)  # set by SchemaBuilder.build
        if stage:
            where = f"a statement of {stage} failed (template of test database {self.name!r})"
        else:
            where = f"a statement on the server failed (test database {self.name!r})"
        return ProvisioningError(f"alias {self.alias!r}: {where}: {text}.{hint}")

    def _server_error(self, exc: BaseException, url: URL) -> ProvisioningError:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        text = hide_password(reason[0] if reason else type(exc).__name__, url)
        host = _host(url)
        port = url.port or {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}.get(
            url.get_backend_name()
        )
        return ProvisioningError(
            f"alias {self.alias!r} ({self.setting}): cannot use the server at {host}:{port} "
            f"as {mask_url(url)}: {text}. Check that the server is running and the URL is right."
        )

    def create(
        self,
        schema: SchemaBuilder,
        *,
        rebuild: bool = False,
        sweep_age: float | None = 3600.0,
        spares: int = 1,
        workers: int = 1,
    ) -> None:
        """Create this run's test database from the schema's template database.

        The template is named after the schema fingerprint (``<base>_tpl_<fingerprint>``) and
        kept across runs: built when missing, half-built or when ``rebuild`` is set; cloned
        otherwise. All of it runs under a file lock per server and base name, shared by xdist
        workers and concurrent runs on this machine; a half-built template that someone is
        connected to (a run on another machine building it) is waited for, up to
        :data:`BUILD_WAIT` seconds. Before
        cloning, databases of killed runs older than ``sweep_age`` seconds that carry the
        plugin's mark, and templates of the same base with another fingerprint, are dropped
        when nobody uses them; nothing without the mark is ever touched.

        *Spare clones* (PostgreSQL, MariaDB): a clone made ahead of time, at the end of an
        earlier run, is claimed instead of waiting for a copy of the template (see
        ``Backend.take_spare``): PostgreSQL renames it to this run's name (``ALTER DATABASE
        ... RENAME``, milliseconds, instead of ``CREATE DATABASE ... TEMPLATE``); MariaDB,
        which replays the template's DDL and rows to copy it, uses it under its own name
        (:attr:`name` changes; a comment change under a server lock), or, when the user chose
        the exact name, moves its tables into the run's database with one ``RENAME TABLE``
        (~1 ms per table). :meth:`start_spares` then clones new
        ones at the end of this run, so that ``spares`` of them are ready; each of the run's
        ``workers`` (xdist processes, each calling this) makes its share of the missing ones.
        With ``spares=0`` no new spare is made (one left by an earlier run is still used).

        :raises ProvisioningError: the server is unreachable, a name is taken by a database
            the plugin did not create, or a statement failed.
        """
        dialect = self.backend.driver_url(self.server_url, is_async=False).get_dialect()()
        fingerprint = schema.fingerprint(dialect)
        self.template = self.names.template(fingerprint)
        # One lock per server and base name: the template check, the sweep of stale
        # databases and the clone never interleave with another worker's or run's.
        lock = self.template_directory / f"{_lock_key(self.server_url, self.base)}.lock"
        self.template_directory.mkdir(parents=True, exist_ok=True)
        missing_spares = 0
        with FileLock(str(lock)):
            if self._needs_server:
                missing_spares = self._run(
                    self.server_url,
                    lambda admin: self._create_on_server(
                        admin, schema, fingerprint, rebuild, sweep_age, spares, workers
                    ),
                    autocommit=True,
                )
            else:
                assert isinstance(self.backend, SQLiteBackend)
                self._ensure_template_file(schema, rebuild, sweep_age)
                self.backend.drop_database(None, self.name)
                self.backend.clone_file(self.backend.template_path(self.template), self.name)
        self.created = True
        self._missing_spares = missing_spares

    def _create_on_server(
        self,
        admin: Connection,
        schema: SchemaBuilder,
        fingerprint: str,
        rebuild: bool,
        sweep_age: float | None,
        spares: int,
        workers: int,
    ) -> int:
        """Everything :meth:`create` does on a server, on one admin connection.

        :returns: how many spare clones to make for later runs.
        """
        backend, template = self.backend, self.template
        assert template is not None
        owned = dict(backend.owned_databases(admin))
        if sweep_age is not None:
            self._sweep(admin, owned, sweep_age)
        built = self._ensure_template_on_server(admin, owned, schema, fingerprint, rebuild)
        if built:  # spares of an earlier build of this template are stale
            self._drop_spares(admin, owned)
        self._clear_name(admin, owned)
        # A spare left by an earlier run is taken even with spares=0 (it is used up).
        self.took_spare = backend.keeps_spares and self._take_spare(admin, owned)
        if not self.took_spare:
            try:
                backend.clone_database(admin, template, self.name, self._clone_mark())
            except Exception:
                # MariaDB creates the (marked) database first and then copies into it:
                # nothing half-made is left behind.
                with contextlib.suppress(DBAPIError):
                    if backend.is_owned(admin, self.name):
                        backend.drop_database(admin, self.name, force=True)
                raise
        # Reuse at the end needs the template's sequence state and a server that can tell.
        sequences = (backend.parse_mark(owned.get(template)) or {}).get("seqs")
        if sequences is not None and spares > 0 and backend.reuse_supported(admin):
            self._template_sequences = sequences
        # On this connection rather than one more (a MariaDB connection costs ~50 ms with
        # PyMySQL >= 1.2, which loads the system's CA certificates for each).
        self.nontransactional = backend.non_transactional_tables(admin, self.name)
        if spares <= 0 or not backend.keeps_spares:
            return 0
        ready = sum(1 for comment in owned.values() if self._is_spare(comment))
        missing = max(0, spares - ready)
        return -(-missing // max(1, workers))  # this worker's share, rounded up

    def _clone_mark(self) -> str:
        return self.backend.mark(kind="clone", run=self.run_token, created=int(time.time()))

    def _spare_mark(self) -> str:
        """The mark of a finished spare clone of the template."""
        return self.backend.mark(kind="spare", template=self.template, created=int(time.time()))

    def _this_run(self, fields: dict[str, str]) -> bool:
        """``True`` if a mark's fields name this run (its xdist workers share the run id)."""
        return self.run_token != "-" and fields.get("run") == self.run_token

    def _is_spare(self, comment: str | None) -> bool:
        fields = self.backend.parse_mark(comment) or {}
        return fields.get("kind") == "spare" and fields.get("template") == self.template

    def _ensure_template_on_server(
        self,
        admin: Connection,
        owned: dict[str, str],
        schema: SchemaBuilder,
        fingerprint: str,
        rebuild: bool,
    ) -> bool:
        """Build the template unless a complete one exists; ``True`` if it was built."""
        backend, template = self.backend, self.template
        assert template is not None
        comment = owned.get(template)
        if comment is None:  # not ours, or missing: look (a foreign one is an error)
            comment = backend.comment(admin, template)
        fields = backend.parse_mark(comment)
        if fields is not None and fields.get("ready") != "1" and backend.in_use(admin, template):
            # Half-built and connected to: a run on another machine (the file lock covers
            # this one) is building it. Wait for that build rather than drop it under it.
            comment = self._wait_for_build(admin, template)
            fields = backend.parse_mark(comment)
        if comment is not None and fields is None:
            raise ProvisioningError(
                f"alias {self.alias!r}: database {template!r} exists on {_host(self.server_url)} "
                "and was not created by pytest-ctxdb; it is never dropped or reused. Drop it "
                f"yourself or choose another base name with --db-test-name {self.alias}=NAME."
            )
        if fields is not None and fields.get("ready") == "1":
            # --db-create rebuilds once per run: the run's other xdist workers take that build.
            if not rebuild or self._this_run(fields):
                self.template_built = False
                if comment is not None:  # (a mark was parsed from it)
                    owned[template] = comment
                return False
        if comment is not None:
            backend.drop_database(admin, template, force=True)
        backend.create_database(
            admin,
            template,
            backend.mark(
                kind="template", fingerprint=fingerprint, ready=0, created=int(time.time())
            ),
        )
        template_url = self.backend.test_url(self.server_url, template)

        def build(connection: Connection) -> str | None:
            if not schema.empty:
                schema.build(connection, template_url)
            return backend.sequence_state(connection)

        try:
            sequences = self._run(template_url, build, autocommit=False)
        except BaseException:
            with contextlib.suppress(DBAPIError):  # this run's half-built template
                backend.drop_database(admin, template, force=True)
            raise
        mark: dict[str, object] = {
            "kind": "template",
            "fingerprint": fingerprint,
            "ready": 1,
            "created": int(time.time()),
            "run": self.run_token,
        }
        if sequences is not None:  # what a reused run database is put back to
            mark["seqs"] = sequences
        ready = backend.mark(**mark)
        backend.set_comment(admin, template, ready)
        owned[template] = ready
        self.template_built = True
        return True

    def _wait_for_build(self, admin: Connection, template: str) -> str | None:
        """Wait (at most :data:`BUILD_WAIT` seconds) while someone is connected to the
        half-built ``template``; return its comment then (``None`` if it is gone)."""
        deadline = time.monotonic() + BUILD_WAIT
        while True:
            comment = self.backend.comment(admin, template)
            fields = self.backend.parse_mark(comment) or {}
            if comment is None or fields.get("ready") == "1" or time.monotonic() > deadline:
                return comment
            if not self.backend.in_use(admin, template):
                return self.backend.comment(admin, template)  # finished, or its builder died
            time.sleep(0.2)

    def _take_spare(self, admin: Connection, owned: dict[str, str]) -> bool:
        """Claim a ready spare clone of the template for this run (see
        ``Backend.take_spare``); ``False`` if none could be taken (none left, or each in
        use or taken by a run on another machine). Unless the user chose the exact name, the
        run may keep the spare's name (MariaDB then claims it without moving its tables)."""
        for name, comment in list(owned.items()):
            if not self._is_spare(comment):
                continue
            del owned[name]
            try:
                taken = self.backend.take_spare(
                    admin, name, self.name, self._clone_mark(), keep_name=self._may_keep_name
                )
            except DBAPIError:
                continue
            if taken is not None:
                self.name, self.url = taken, self.backend.test_url(self.server_url, taken)
                return True
        return False

    def _drop_spares(self, admin: Connection, owned: dict[str, str]) -> None:
        for name, comment in list(owned.items()):
            if self._is_spare(comment) and not self.backend.in_use(admin, name):
                with contextlib.suppress(DBAPIError):
                    self.backend.drop_database(admin, name)
                del owned[name]

    def _make_spares(self, count: int) -> None:
        """Clone ``count`` spares of the template for later runs (background thread).

        A failure only means no spare next time: it is kept in :attr:`spare_error`.
        """
        backend, template = self.backend, self.template
        assert template is not None

        def make(admin: Connection) -> None:
            # Checked here, at the end of the run, not on the start-up path.
            if not backend.spares_usable(admin, template, keep_name=self._may_keep_name):
                return
            backend.abort_on_disconnect(admin)  # a killed run leaves no half-made clone
            for _ in range(count):
                name = self.names.new_spare()
                # Marked a spare only once complete (MariaDB copies table by table): one
                # left half-made by a killed run is a stale clone to the sweep.
                backend.clone_database(admin, template, name, self._clone_mark())
                backend.set_comment(admin, name, self._spare_mark())

        try:
            self._run(self.server_url, make, autocommit=True)
        except Exception as exc:  # noqa: BLE001 - reported at the end, never fatal
            self.spare_error = f"alias {self.alias!r}: making a spare clone failed: {exc}"

    def start_spares(self) -> None:
        """Start cloning the spares :meth:`create` found missing, in a background thread.

        Called at the end of the run, after :meth:`drop`, so that the copy (server I/O on the
        machine's cores) does not slow the tests down, nor the drop (which would wait for the
        WAL the copy writes); the clones of several aliases run side by side, and
        :meth:`wait_for_spares` waits for them.
        """
        count, self._missing_spares = self._missing_spares, 0
        if count > 0 and self._spare_maker is None:
            self._spare_maker = threading.Thread(
                target=self._make_spares,
                args=(count,),
                name=f"pytest-ctxdb spare clones of {self.template}",
                daemon=True,
            )
            self._spare_maker.start()

    def wait_for_spares(self, timeout: float | None = 60.0) -> None:
        """Wait for the background spare clones of :meth:`start_spares`."""
        maker, self._spare_maker = self._spare_maker, None
        if maker is not None:
            maker.join(timeout)

    def _ensure_template_file(
        self, schema: SchemaBuilder, rebuild: bool, sweep_age: float | None = None
    ) -> None:
        assert isinstance(self.backend, SQLiteBackend) and self.template is not None
        path = self.backend.template_path(self.template)
        path.parent.mkdir(parents=True, exist_ok=True)
        if sweep_age is not None:
            self._sweep_files(path, sweep_age)
        if path.exists() and not rebuild:
            self.template_built = False
            return
        building = path.with_name(f"{path.name}.{os.getpid()}.building")
        building.unlink(missing_ok=True)
        url = self.server_url.set(database=os.fspath(building))
        try:
            self._run(url, lambda c: schema.build(c, url), autocommit=False)
        except BaseException:
            building.unlink(missing_ok=True)  # the sweep does not look for these
            raise
        os.replace(building, path)  # a template file that exists is complete
        self.template_built = True

    def _sweep_files(self, template: Path, age: float) -> None:
        """SQLite's sweep: template files of this base with another fingerprint; with a
        ``project``, any template file in the project's folder older than
        :data:`TEMPLATE_MAX_AGE`, and the project's folders of killed runs older than ``age``
        (without one, folders of killed runs that named no project)."""
        now, names = time.time(), self.names
        directory = template.parent
        for other in directory.glob("*.sqlite3"):
            if other == template:
                continue
            with contextlib.suppress(OSError):
                stem = other.name.removesuffix(".sqlite3")
                old = self.project is not None and "_tpl_" in stem
                if names.is_template(stem) or (
                    old and now - other.stat().st_mtime > TEMPLATE_MAX_AGE
                ):
                    other.unlink()
        for run_directory in Path(tempfile.gettempdir()).glob(f"{_RUN_DIRECTORY}*"):
            pid = _run_directory_pid(run_directory, self.project)
            if pid is None:
                continue
            with contextlib.suppress(OSError):
                if now - run_directory.stat().st_mtime > age and not _alive(pid):
                    shutil.rmtree(run_directory, ignore_errors=True)

    def _sweep(self, admin: Connection, owned: dict[str, str], age: float) -> None:
        """Drop the plugin's stale databases of this base (and forget them in ``owned``), when
        nobody is connected: clones of killed runs older than ``age`` seconds, templates with
        another fingerprint, and spare clones whose template is one of those or gone.

        Only names derived from :attr:`base` are considered (see :class:`BaseNames`): another
        project's databases on a shared server, and another alias's, are never dropped."""
        backend, now, names = self.backend, time.time(), self.names
        dropped: set[str] = set()
        derived = {}
        for name, comment in owned.items():
            fields = backend.parse_mark(comment) or {}
            if names.derives(name, fields):
                derived[name] = fields
        for name, fields in derived.items():
            kind = fields.get("kind")
            try:
                created = float(fields.get("created", "0"))
            except ValueError:
                created = 0.0
            stale_clone = (
                kind == "clone"
                and now - created > age
                and name != self.name
                and not self._this_run(fields)  # another xdist worker's of this run
            )
            old_template = kind == "template" and name != self.template
            if (stale_clone or old_template) and not backend.in_use(admin, name):
                with contextlib.suppress(DBAPIError):  # raced by another run: leave it
                    backend.drop_database(admin, name)
                    dropped.add(name)
        for name, fields in derived.items():
            if fields.get("kind") != "spare" or name in dropped:
                continue
            template = fields.get("template")
            orphan = template in dropped or (template not in owned and template != self.template)
            if orphan and not backend.in_use(admin, name):
                with contextlib.suppress(DBAPIError):
                    backend.drop_database(admin, name)
                    dropped.add(name)
        for name in dropped:
            del owned[name]

    def _clear_name(self, admin: Connection, owned: dict[str, str]) -> None:
        """Make way for this run's database name: drop an earlier one of the plugin's
        (``--db-test-name`` reuses names); refuse if the name belongs to someone else.

        :param owned: the plugin's databases, as :meth:`_create_on_server` listed them (a
            name not among them is looked up once: missing, or someone else's).
        """
        backend, name = self.backend, self.name
        comment = owned.get(name)
        if comment is None:
            comment = backend.comment(admin, name)
        if comment is not None:
            if backend.parse_mark(comment) is None:
                raise ProvisioningError(
                    f"alias {self.alias!r}: database {name!r} already exists on "
                    f"{_host(self.server_url)} and was not created by pytest-ctxdb, so it is not "
                    "dropped or reused. Drop it yourself, or pick another name with "
                    f"--db-test-name {self.alias}=NAME."
                )
            try:
                backend.drop_database(admin, name)
            except DBAPIError as exc:
                raise ProvisioningError(
                    f"alias {self.alias!r}: the test database {name!r} from an earlier run is "
                    f"still in use (another pytest run on this server?): {str(exc.orig).strip()}. "
                    "Wait for it, or pick another name with --db-test-name."
                ) from None

    def _recycle(self) -> bool:
        """Make the run's database a spare clone of its template, if it provably is one again;
        ``True`` if it was made one (``False``: it is to be dropped).

        The proof, on a server that keeps its statistics in shared memory (PostgreSQL >= 15:
        a session's counts are written before it leaves ``pg_stat_activity``):

        * the run's engines handed out no connection but the test connections (see
          :meth:`_watch`): no ``transaction=True`` test, no connection taken from
          ``db_engine``, no test connection replaced after a refused COMMIT;
        * once every session has left, it is renamed to a new spare name (unknown to anyone
          else, and not yet marked a spare), then ``Backend.untouched`` reads on a
          connection to it that no transaction that changed a row of any table, the
          catalogs included, was committed since the template was copied, through the
          plugin or around it (an engine of the test's own, another process);
        * sequences, which a rolled back ``nextval`` moves, are put back to the template's
          state recorded in its mark.

        Only then is it marked a spare; anything else (a failure included) drops it.
        """
        sequences = self._template_sequences
        self._template_sequences = None
        if sequences is None or not self._untouched:
            return False
        backend, name, spare = self.backend, self.name, self.names.new_spare()

        def wait_unused(admin: Connection, database: str) -> bool:
            deadline = time.monotonic() + RECYCLE_WAIT
            while backend.in_use(admin, database):  # sessions leaving (counts written first)
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.002)
            return True

        def check(connection: Connection) -> bool:
            backend.restore_sequences(connection, sequences)
            connection.rollback()  # commits nothing: setval() is not transactional
            return backend.untouched(connection)

        def recycle(admin: Connection) -> bool:
            if not wait_unused(admin, name):
                return False
            backend.rename_database(admin, name, spare)
            self.name, self.url = spare, backend.test_url(self.server_url, spare)
            clean = self._run(self.url, check, autocommit=False)
            if clean:  # (a run that tries it while the check's session leaves takes another)
                backend.set_comment(admin, spare, self._spare_mark())
            return clean

        try:
            return self._run(self.server_url, recycle, autocommit=True)
        except ProvisioningError:
            return False

    def drop(self, *, detach: bool = False) -> None:
        """Drop the test database if this run created it; dispose engines on it first.

        On PostgreSQL >= 15 the database is instead kept as the spare clone the next run
        takes, when it is provably the template again (see :meth:`_recycle`) and a spare is
        missing: no copy of the template at the end of the run, nor a drop.

        :param detach: hand the drop, and the spare clones :meth:`start_spares` would make,
            to a process of its own that outlives the run (see :mod:`._detached`); done here
            when that process cannot be started.
        :raises ProvisioningError: the drop failed (the database is then left behind).
        """
        if not self.created:
            return
        if self._needs_server and self._missing_spares > 0 and self._recycle():
            self._missing_spares -= 1
            self.created, self.recycled = False, True
            return
        if detach and self._needs_server:
            from . import _detached

            self._template_sequences = None  # the copy drops it, never reuses it
            if _detached.spawn(self, self._missing_spares):
                self.created, self.detached, self._missing_spares = False, True, 0
                return
        if self._needs_server:

            def drop(admin: Connection) -> None:
                if self.backend.is_owned(admin, self.name):
                    self.backend.drop_database(admin, self.name, force=True)

            self._run(self.server_url, drop, autocommit=True)
        else:
            self.backend.drop_database(None, self.name)  # type: ignore[arg-type]
        self.created = False
