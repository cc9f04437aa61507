"""The small protocol every dialect backend implements."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from sqlalchemy.engine import URL
from sqlalchemy.exc import NoSuchModuleError

from .._errors import ConfigurationError, MissingDriverError
from .._settings import mask_url

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import Table
    from sqlalchemy.engine import Connection, Engine

__all__ = ("Backend", "DriverPair")


@dataclass(frozen=True)
class DriverPair:
    """The sync and async DBAPI drivers used for one dialect.

    :ivar sync: driver name used for sync fixtures, e.g. ``"psycopg"``.
    :ivar async_: driver name used for async fixtures, e.g. ``"asyncpg"``.
    :ivar extras: driver name -> the ``pytest-ctxdb[extra]`` that installs it.
    """

    sync: str
    async_: str
    sync_drivers: frozenset[str] = field(default_factory=frozenset)
    async_drivers: frozenset[str] = field(default_factory=frozenset)
    extras: dict[str, str] = field(default_factory=dict)


class Backend:
    """Dialect-specific operations on test databases.

    Subclasses live one per module (:mod:`.sqlite`, :mod:`.postgresql`, :mod:`.mysql`).
    Every method that touches a server takes an already open *admin* ``Connection`` in
    AUTOCOMMIT mode on the database named in the user's URL; that database is only read
    (catalog queries), never written to or dropped.
    """

    name: ClassVar[str]
    drivers: ClassVar[DriverPair]
    #: text stored with every database the plugin creates, to recognise it later.
    OWNER_MARK: ClassVar[str] = "created by pytest-ctxdb"
    #: the longest database name the server keeps whole, in bytes (PostgreSQL cuts longer
    #: names to 63 bytes without an error).
    max_name_length: ClassVar[int] = 63

    # -- URLs -----------------------------------------------------------------------------

    def driver_url(self, url: URL, *, is_async: bool) -> URL:
        """Return ``url`` with the sync or async driver of its dialect.

        A URL that already names a driver of the wanted kind keeps it; otherwise the
        dialect's default twin is used (psycopg <-> asyncpg, pysqlite <-> aiosqlite,
        pymysql <-> asyncmy).
        """
        if "+" in url.drivername:
            driver = url.get_driver_name()
            kind = self.drivers.async_drivers if is_async else self.drivers.sync_drivers
            if driver in kind:
                return url
            other = self.drivers.sync_drivers if is_async else self.drivers.async_drivers
            if driver not in other and url.get_dialect().is_async == is_async:
                return url  # a driver SQLAlchemy knows and we do not: keep it
        driver = self.drivers.async_ if is_async else self.drivers.sync
        return url.set(drivername=f"{url.get_backend_name()}+{driver}")

    def check_dialect(self, url: URL, setting: str) -> None:
        """:raises ConfigurationError: SQLAlchemy knows no such dialect+driver (no DBAPI import)."""
        try:
            url.get_dialect()
        except NoSuchModuleError:
            raise ConfigurationError(
                f"{setting}: SQLAlchemy has no dialect or driver {url.drivername!r} "
                f"(in {mask_url(url)}); use e.g. postgresql+psycopg, postgresql+asyncpg, "
                "sqlite, sqlite+aiosqlite, mysql+pymysql."
            ) from None

    def check_driver(self, url: URL, setting: str) -> None:
        """Import the DBAPI module ``url`` needs.

        :raises MissingDriverError: the driver is not installed; names the extra to install.
        :raises ConfigurationError: SQLAlchemy knows no such dialect or driver.
        """
        try:
            dialect_cls = url.get_dialect()
        except NoSuchModuleError:
            raise ConfigurationError(
                f"{setting}: SQLAlchemy has no dialect or driver {url.drivername!r} "
                f"(in {mask_url(url)}); use e.g. postgresql+psycopg, postgresql+asyncpg, "
                "sqlite, sqlite+aiosqlite, mysql+pymysql."
            ) from None
        try:
            dialect_cls.import_dbapi()
            if dialect_cls.is_async:
                importlib.import_module("greenlet")
        except ImportError as exc:
            driver = url.get_driver_name()
            extra = self.drivers.extras.get(driver, "async" if dialect_cls.is_async else "test")
            raise MissingDriverError(
                f"{setting}: the {driver!r} driver for {mask_url(url)} is not installed "
                f"({exc.name or exc}); install it with: pip install 'pytest-ctxdb[{extra}]'"
            ) from None

    def test_url(self, url: URL, name: str) -> URL:
        """Return the URL of the test database ``name`` on the server of ``url``."""
        return url.set(database=name)

    def default_test_name(self, url: URL) -> str:
        """Django's convention: ``test_<name of the database in the URL>``."""
        return f"test_{url.database}"

    # -- engines --------------------------------------------------------------------------

    def prepare_engine(self, engine: Engine) -> None:
        """Install dialect fixes on a (sync, or an async engine's ``sync_engine``) engine."""

    # -- emptying tables (transaction=True) ---------------------------------------------------

    def empty_tables(
        self, connection: Connection, tables: Sequence[Table], reset_sequences: bool
    ) -> None:
        """Delete every row of ``tables`` (children first) inside the caller's transaction.

        ``DELETE`` rather than ``TRUNCATE``: on small test tables it is many times faster
        (PostgreSQL: ~4 ms against ~80 ms for 20 tables, see the README's figures).
        """
        for table in reversed(tables):
            connection.execute(table.delete())
        if reset_sequences:
            self.reset_sequences(connection, tables)

    def reset_sequences(self, connection: Connection, tables: Sequence[Table]) -> None:
        """Restart the sequences / AUTO_INCREMENT counters of ``tables``."""

    # -- databases (server backends; each takes an AUTOCOMMIT admin connection) ---------------

    @classmethod
    def mark(cls, **fields: object) -> str:
        """The ownership comment for a new database: the mark, then ``key=value`` fields."""
        return "; ".join([cls.OWNER_MARK, *(f"{k}={v}" for k, v in fields.items())])

    @classmethod
    def parse_mark(cls, comment: str | None) -> dict[str, str] | None:
        """The fields of an ownership comment, or ``None`` if it is not the plugin's."""
        if not comment or not comment.startswith(cls.OWNER_MARK):
            return None
        fields = {}
        for part in comment.split(";")[1:]:
            key, sep, value = part.strip().partition("=")
            if sep:
                fields[key] = value
        return fields

    def comment(self, admin: Connection, name: str) -> str | None:
        """The comment of database ``name``; ``None`` when it does not exist, ``""`` if unset."""
        raise NotImplementedError

    def set_comment(self, admin: Connection, name: str, comment: str) -> None:
        raise NotImplementedError

    def owned_databases(self, admin: Connection) -> list[tuple[str, str]]:
        """``(name, comment)`` of every database on the server carrying the plugin's mark."""
        raise NotImplementedError

    def in_use(self, admin: Connection, name: str) -> bool:
        """``True`` if a session other than ``admin`` is connected to database ``name``."""
        raise NotImplementedError

    def database_exists(self, admin: Connection, name: str) -> bool:
        return self.comment(admin, name) is not None

    def is_owned(self, admin: Connection, name: str) -> bool:
        """``True`` if database ``name`` carries the plugin's ownership mark."""
        return self.parse_mark(self.comment(admin, name)) is not None

    def create_database(self, admin: Connection, name: str, comment: str | None = None) -> None:
        """Create database ``name`` marked with ``comment`` (default: the bare mark)."""
        raise NotImplementedError

    def clone_database(self, admin: Connection, template: str, name: str, comment: str) -> None:
        """Create database ``name`` as a copy of ``template`` (schema and rows)."""
        raise NotImplementedError

    def non_transactional_tables(self, admin: Connection, name: str) -> list[str]:
        """Tables of database ``name`` whose storage engine cannot roll back (MySQL's MyISAM,
        Aria, ...): rollback-mode tests would leave their rows. None elsewhere."""
        return []

    #: ``True`` if :meth:`take_spare` is fast and atomic (then runs keep spare clones ready).
    keeps_spares = False

    def spares_usable(self, admin: Connection, template: str, *, keep_name: bool) -> bool:
        """``True`` if spare clones of ``template`` can be taken with :meth:`take_spare`
        (called with the same ``keep_name``)."""
        return self.keeps_spares

    def take_spare(
        self, admin: Connection, spare: str, name: str, comment: str, *, keep_name: bool
    ) -> str | None:
        """Claim the spare clone ``spare`` for a run and mark it with ``comment``; all or
        nothing, and at most one run (on any machine) gets it.

        :param name: the run's database name; the spare becomes ``name``.
        :param keep_name: the run may use the spare under the spare's name instead, where
            that is faster (MariaDB, which cannot rename a database).
        :returns: the claimed database's name (``name`` or ``spare``), or ``None`` if
            another run took it first; nothing is changed then.
        :raises sqlalchemy.exc.DBAPIError: ``spare`` is missing or in use; nothing is changed.
        """
        raise NotImplementedError

    # -- reusing a run's database (see ``TestDatabase.drop``) ----------------------------------

    def sequence_state(self, connection: Connection) -> str | None:
        """The state of the sequences of the database ``connection`` is on, as text kept in the
        template's mark (only sequences whose state is not that of a new sequence); ``None``
        where a run's database is never reused (then no state is needed)."""
        return None

    def restore_sequences(self, connection: Connection, state: str) -> None:
        """Put every sequence of the database ``connection`` is on back to ``state`` (a
        :meth:`sequence_state` text; the others to their start), inside the caller's
        transaction: sequence changes are not transactional, so they stay when it rolls back."""
        raise NotImplementedError

    def reuse_supported(self, admin: Connection) -> bool:
        """``True`` if :meth:`untouched` can prove a run's database unchanged on this server."""
        return False

    def untouched(self, connection: Connection) -> bool:
        """``True`` if no transaction that changed a row (of any table, the catalogs
        included) was committed in the database ``connection`` is on since it was copied
        from its template, and nobody else is connected to it. Called when every other
        session has left it; a database it says ``False`` of is dropped."""
        return False

    def rename_database(self, admin: Connection, name: str, new_name: str) -> None:
        """Rename database ``name`` (nobody may be connected to it)."""
        raise NotImplementedError

    def abort_on_disconnect(self, admin: Connection) -> None:
        """Make the server abort ``admin``'s running statement if the client goes away
        (so that a killed run leaves no half-made database); a no-op where unsupported."""

    def drop_database(self, admin: Connection, name: str, *, force: bool = False) -> None:
        """Drop database ``name``; callers check :meth:`is_owned` first.

        :param force: also end other sessions on it (used only for a database this run made).
        """
        raise NotImplementedError
