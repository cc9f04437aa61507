"""The one seam between the runtime and tests: where a session for an alias is made.

Outside tests nothing is installed and sessions come from the alias's ``sessionmaker``.
While a test runs, the pytest plugin installs a :class:`SessionSource` that makes every
session on the test's connection instead, and guards the registered engines against use.
Process-wide on purpose: app code also runs in threads and in fresh contexts.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import event
from sqlalchemy.engine import Engine

from .._errors import ContextError
from . import _registry

if TYPE_CHECKING:
    from ._registry import Database
    from ._scope import SessionScope

__all__ = (
    "SessionSource",
    "block",
    "building",
    "current_source",
    "install_source",
    "own_engine",
    "protect_databases",
    "set_ambient",
    "uninstall_source",
    "watch_database",
)


class SessionSource(Protocol):
    """What a test binding offers the runtime (implemented by the pytest plugin)."""

    def make_session(self, database: Database, scope: SessionScope | None) -> Any:
        """Return a new ``Session`` / ``AsyncSession`` for ``database`` on the test connection.

        :param scope: the context the session is for (``None`` for :func:`new_session`).
        """

    def escaped(self, label: str, url: str, hint: str | None = None) -> ContextError:
        """Record, and return the error for, a connection checked out of an app engine
        (described by ``label`` and its password-masked ``url``) during the test; ``hint``
        replaces the general advice (for an engine the user already listed)."""


_lock = threading.Lock()
#: the test's own source (its binding), while a test with a database runs.
_source: SessionSource | None = None
#: the source for a test's setup and teardown outside its binding (wider-scoped fixtures and
#: their finalizers), set per test by the plugin: sessions on the test database engine.
_ambient: SessionSource | None = None
#: set while a test that asked for no database runs: the error every access raises.
_blocked: str | None = None
_watched: weakref.WeakSet[Any] = weakref.WeakSet()
#: (dialect family, database) -> (masked URL, setting): the databases the URL settings name,
#: the app's own, which no connection may reach while tests run (see protect_databases).
_protected: dict[tuple[str, str], tuple[str, str]] = {}
#: the dialects of pytest-ctxdb's own engines (admin connections), which may reach them.
_own_dialects: weakref.WeakSet[Any] = weakref.WeakSet()
#: set while a template is built by Alembic: why a connection to a protected database fails.
_building: str | None = None
_protect_installed = False


def current_source() -> SessionSource | None:
    """The test's source, else the ambient one; ``None`` outside tests.

    :raises ContextError: database access is blocked for the running test.
    """
    if _source is not None:
        return _source
    if _blocked is not None:
        raise ContextError(_blocked)
    return _ambient


_guarded_generation = -1


def _guard_registered() -> None:
    global _guarded_generation
    if _registry.generation == _guarded_generation:
        return  # no Database registered since the last time
    for database in _registry.registered_databases().values():
        watch_database(database)
    _guarded_generation = _registry.generation


def block(message: str | None) -> None:
    """Block (``message``) or allow (``None``) database access for the running test.

    While blocked, making a session through the runtime and taking a connection from any
    guarded engine raise :class:`ContextError` with ``message``.
    """
    global _blocked
    _blocked = message
    if message is not None:
        _guard_registered()


def set_ambient(source: SessionSource | None) -> None:
    """Set the source used while no test source is installed (see ``_ambient``)."""
    global _ambient
    _ambient = source
    if source is not None:
        _guard_registered()


def install_source(source: SessionSource) -> None:
    """Install ``source`` for the duration of one test and guard every registered engine.

    :raises ContextError: another source is installed (tests do not overlap in one process).
    """
    global _source
    with _lock:
        if _source is not None and _source is not source:
            raise ContextError("a test binding is already installed; tests cannot overlap")
        _source = source
    _guard_registered()


def uninstall_source(source: SessionSource) -> None:
    """Remove ``source``; engine guards stay attached but do nothing without a source."""
    global _source
    with _lock:
        if _source is source:
            _source = None


def _guarding_source() -> SessionSource | None:
    """The source a guarded connection is reported to: the test's, else (unless access is
    blocked) the ambient one of a wider fixture; ``None`` outside tests or while blocked."""
    if _source is not None:
        return _source
    return None if _blocked else _ambient


def _family(name: str) -> str:
    return "mysql" if name == "mariadb" else name


def _database_of(dialect: Any, cargs: Any, cparams: Any) -> str | None:
    """The database a DBAPI ``connect(*cargs, **cparams)`` of ``dialect`` opens, if known:
    the name given to the driver (``dbname`` / ``database`` / ``db``) or, for SQLite, the
    absolute path of the file."""
    if dialect.name == "sqlite":
        path = cargs[0] if cargs else cparams.get("database")
        if not isinstance(path, str) or not path or path == ":memory:":
            return None
        return os.path.abspath(path[5:] if path.startswith("file:") else path).split("?")[0]
    for key in ("dbname", "database", "db"):
        value = cparams.get(key)
        if value:
            return str(value)
    return None


def protect_databases(databases: Iterable[tuple[str, str, str, str]]) -> None:
    """Refuse any connection to these databases while tests run, but pytest-ctxdb's own.

    They are the databases the URL settings name: the app's own, never a test database. An
    app engine pytest-ctxdb does not bind (not listed in ini ``db_engines``) would otherwise
    connect there during a test and commit for real; an Alembic ``env.py`` that ignores the
    connection it is given would migrate it. Checked in the ``do_connect`` event of every
    engine (a class-level listener installed once), while a test source, the ambient source,
    access blocking or an Alembic build is active, by the database name the driver is given
    (the host is not compared: a Unix socket and 127.0.0.1 reach the same server).

    :param databases: ``(dialect name, database name or SQLite path, masked URL, setting)``.
    """
    global _protect_installed
    _protected.clear()
    for name, database, url, setting in databases:
        if name == "sqlite":
            database = os.path.abspath(database)
        _protected[(_family(name), database)] = (url, setting)
    if _protected and not _protect_installed:
        event.listen(Engine, "do_connect", _refuse_protected)
        _protect_installed = True


def own_engine(engine: Any) -> None:
    """Let ``engine`` (pytest-ctxdb's own: provisioning) reach protected databases."""
    _own_dialects.add(engine.dialect)


@contextlib.contextmanager
def building(message: str) -> Iterator[None]:
    """Refuse connections to protected databases while a template is built by Alembic
    (``message`` says why, e.g. that ``env.py`` ignored the connection it was given)."""
    global _building
    previous, _building = _building, message
    try:
        yield
    finally:
        _building = previous


def _refuse_protected(dialect: Any, conn_rec: Any, cargs: Any, cparams: Any) -> None:
    __tracebackhide__ = True  # its arguments hold the connect parameters (password)
    if not _protected or dialect in _own_dialects:
        return
    installed = _guarding_source()
    if installed is None and _blocked is None and _building is None:
        return  # no test is running: the app may use its database
    database = _database_of(dialect, cargs, cparams)
    found = _protected.get((_family(dialect.name), database)) if database else None
    if found is None:
        return
    url, setting = found
    if _building is not None:
        raise ContextError(f"{_building} It opened a connection to {url} ({setting}).")
    hint = (
        f"{url} is the database {setting} names, the app's own: the tests run in a test "
        "database beside it. List the app's engine in ini db_engines (module:attribute) so "
        "that its connections run on the test connection."
    )
    if installed is not None:
        raise installed.escaped(f"an engine pytest-ctxdb does not bind ({dialect.name})", url, hint)
    raise ContextError(f"{_blocked} ({hint})")


def watch_database(database: Database) -> None:
    """Guard ``database``'s own engine (see :func:`watch_engine`)."""
    watch_engine(database.sync_engine, f"the engine of alias {database.alias!r}")


def watch_engine(engine: Any, label: str, *, own: bool = False, hint: str | None = None) -> None:
    """While a source is installed, fail any connection taken from ``engine``.

    Escape detection: such a connection would bypass the test's outer transaction and
    commit for real. The checkout raises :class:`ContextError` (so nothing runs on it) and
    the source records it, so the test fails even if the app swallows the error. Nothing is
    attached until a test installs a source, so production engines never carry the guard.

    :param engine: a sync ``Engine`` (an ``AsyncEngine``'s ``sync_engine``).
    :param label: how the error names it, e.g. ``"the engine of alias 'default'"``.
    :param own: the engine is the plugin's own (a test database engine): only blocking
        applies to it, never escape detection.
    :param hint: what the escape error advises instead of the general advice.
    """
    if _source is None and _ambient is None and _blocked is None and not own:
        return
    if engine in _watched:  # the usual case, every test: before any work
        return
    url = engine.url.render_as_string(hide_password=True)

    def guard(*args: Any) -> None:
        # Hidden from tracebacks: its arguments hold the DBAPI connect parameters (password).
        __tracebackhide__ = True
        installed = _guarding_source()
        if installed is not None:
            if not own:
                raise installed.escaped(label, url, hint)
        elif _blocked is not None:
            raise ContextError(_blocked)

    with _lock:
        if engine in _watched:
            return
        _watched.add(engine)
    # Attached once and kept: it costs one global read per checkout when no test runs.
    # "do_connect" stops a new connection before it is made (the app's server may not even
    # exist in tests); "checkout" stops one already pooled.
    event.listen(engine, "do_connect", guard)
    event.listen(engine, "checkout", guard)
