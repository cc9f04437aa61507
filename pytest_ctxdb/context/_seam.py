"""The one seam between the runtime and tests: where a session for an alias is made.

Outside tests nothing is installed and sessions come from the alias's ``sessionmaker``.
While a test runs, the pytest plugin installs a :class:`SessionSource` that makes every
session on the test's connection instead, and guards the registered engines against use.
Process-wide on purpose: app code also runs in threads and in fresh contexts.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import event

from .._errors import ContextError
from . import _registry

if TYPE_CHECKING:
    from ._registry import Database
    from ._scope import SessionScope

__all__ = (
    "SessionSource",
    "block",
    "current_source",
    "install_source",
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
    url = engine.url.render_as_string(hide_password=True)

    def guard(*args: Any) -> None:
        # Hidden from tracebacks: its arguments hold the DBAPI connect parameters (password).
        __tracebackhide__ = True
        installed = _source if _source is not None else (None if _blocked else _ambient)
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
