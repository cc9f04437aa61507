"""The test's session source: what the context runtime gets while a test runs.

The rule a user can rely on (documented in the README):

* in the test's own context, the context session of an alias *is* the fixture session
  (``db_session`` / ``async_db_session``) when the alias's kind (sync/async) matches: the same
  object, so the test and the code it calls share pending objects and the identity map; it
  takes the alias's ``expire_on_commit`` and ``autoflush`` options from then on;
* in any context the app opens itself (a request through the middleware, a job,
  ``run_in_new_context``, ``new_session``), a new session is made on the *same* test
  connection with ``join_transaction_mode="create_savepoint"``: it sees everything flushed
  on that connection, and its commits release savepoints inside the test's outer transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from .._errors import ConfigurationError, ContextError
from .._importing import import_object
from .._settings import DEFAULT_ALIAS, split_optional_alias
from ._binding import AsyncTestBinding, TestBinding
from ._layers import LayerCursor, layers_of

__all__ = ("EngineSessionSource", "TestSessionSource", "load_session_classes")

_FIXED = frozenset({"bind", "binds", "join_transaction_mode"})
#: session options that can be set on an existing Session.
_SETTABLE = frozenset({"expire_on_commit", "autoflush"})


def load_session_classes(specs: Iterable[str]) -> dict[tuple[str | None, bool], type]:
    """Import ini ``db_session_class`` lines (``[ALIAS=]module:Class``).

    :returns: ``(alias, is_async)`` -> class; alias ``None`` for a line without ``ALIAS=``,
        which applies to every alias without a line of its own. A ``Session`` subclass is for
        ``db_session`` (sync), an ``AsyncSession`` subclass for ``async_db_session``.
    :raises ConfigurationError: a line does not import (see :func:`import_object`), names no
        ``Session`` / ``AsyncSession`` subclass, or gives one alias two classes of one kind.
    """
    classes: dict[tuple[str | None, bool], type] = {}
    for entry in specs:
        if not entry.strip():
            continue
        alias, entry = split_optional_alias(entry)
        cls = import_object(entry, "db_session_class")[0]
        if isinstance(cls, type) and issubclass(cls, AsyncSession):
            is_async = True
        elif isinstance(cls, type) and issubclass(cls, Session):
            is_async = False
        else:
            raise ConfigurationError(
                f"db_session_class: {entry!r} is not a subclass of sqlalchemy.orm.Session or "
                "sqlalchemy.ext.asyncio.AsyncSession (e.g. sqlmodel:Session, "
                "sqlmodel.ext.asyncio.session:AsyncSession)."
            )
        key = (alias, is_async)
        if key in classes:
            raise ConfigurationError(
                f"db_session_class: two {'async' if is_async else 'sync'} session classes for "
                f"{'alias ' + repr(alias) if alias else 'every alias'}; give one per alias and "
                "kind (write ALIAS=module:Class for one alias)."
            )
        classes[key] = cls
    return classes


class TestSessionSource:
    """Makes the context runtime's sessions on one test's connections.

    :ivar root_scope: the context scope of the test itself (set by the plugin).
    :ivar escapes: messages of connections checked out of an app engine during the test.
    """

    __test__ = False

    def __init__(
        self,
        adapters: Sequence[Any] = (),
        session_class: Callable[[str, bool], type | None] | None = None,
    ) -> None:
        #: ``session_class(alias, is_async)``: the class of the test's own session of ``alias``
        #: (ini ``db_session_class``), or ``None`` for SQLAlchemy's.
        self.session_class = session_class or (lambda alias, is_async: None)
        self.sync_binding: TestBinding | None = None
        self.async_binding: AsyncTestBinding | None = None
        self.root_scope: Any = None
        self.root_sessions: dict[tuple[str, bool], Any] = {}
        self.escapes: list[str] = []
        #: adapters (``pytest_ctxdb.adapters``) applied when a binding of their kind attaches.
        self.adapters = list(adapters)
        for adapter in self.adapters:
            refuse = getattr(adapter, "refuse", None)
            if refuse is not None:
                refuse()

    def root_session(self, alias: str, is_async: bool, make: Callable[..., Any]) -> Any:
        """The test's own session of ``alias`` (what the fixtures return, and the app's context
        session in the test's context), made on first request, by either side, with
        ``make(class_=...)`` when ini ``db_session_class`` names a class for it, else
        ``make()``."""
        key = (alias, is_async)
        session = self.root_sessions.get(key)
        if session is None:
            class_ = self.session_class(alias, is_async)
            session = make() if class_ is None else make(class_=class_)
            self.root_sessions[key] = session
        return session

    def attach_sync(self, binding: TestBinding, alias: str = DEFAULT_ALIAS) -> None:
        """Use ``binding`` for sync sessions and apply the sync adapters to its connection.

        Adapters serve the app's main database, ``alias``; a test that did not declare it
        leaves them unapplied (their engines stay guarded). Adapters that bind several aliases
        (``binds_aliases``: Flask-SQLAlchemy's bind keys) are given every declared alias's
        connection, opened on first use.
        """
        self.sync_binding = binding
        declared = binding.plan.declares(alias)
        for adapter in self.adapters:
            if adapter.is_async:
                continue
            if getattr(adapter, "binds_aliases", False):
                # Adapters of apps with several databases (Flask-SQLAlchemy's bind keys) bind
                # each alias's engines themselves; undeclared aliases refuse with the plan's
                # access-control error.
                adapter.apply_aliases(lambda name: binding.outer(name).connection, self.refused)
            elif declared:
                outer = binding.outer(alias)
                adapter.apply(outer.connection, outer.session)

    def attach_async(self, binding: AsyncTestBinding, alias: str = DEFAULT_ALIAS) -> None:
        """Use ``binding`` for async sessions and apply the async adapters to its connection.

        A use of its connections from another event loop is recorded like an escape.
        """
        self.async_binding = binding
        if binding.loop_guard is not None:
            binding.loop_guard.report = self.escapes.append
        if not binding.plan.declares(alias):
            return
        outer = binding.outer(alias)
        for adapter in self.adapters:
            if adapter.is_async:
                adapter.apply(outer.connection, outer.session)

    def detach(self) -> None:
        """Restore every adapter (at the end of the test)."""
        for adapter in self.adapters:
            adapter.restore()

    def make_session(self, database: Any, scope: Any) -> Any:
        alias, is_async = database.alias, database.is_async
        options = {k: v for k, v in database.session_options.items() if k not in _FIXED}
        if scope is None or scope is not self.root_scope:
            return self._new_session(alias, is_async, options)
        # In the test's own context the app's session of an alias *is* the test's session of
        # that alias, whoever asks first (db_session / db_sessions[alias] return it too). It
        # takes the alias's options that a live Session can take.
        session = self.root_session(
            alias, is_async, lambda **kw: self._new_session(alias, is_async, {**options, **kw})
        )
        sync_session = getattr(session, "sync_session", session)
        for key in _SETTABLE.intersection(options):
            setattr(sync_session, key, options[key])
        return session

    def _new_session(self, alias: str, is_async: bool, options: dict[str, Any]) -> Any:
        if is_async:
            if self.async_binding is None:
                raise ContextError(
                    f"the app's alias {alias!r} is async but this test has no async binding; "
                    "request the async_db_session (or async_db_connection) fixture."
                )
            try:
                outer = self.async_binding.outer(alias)
            except KeyError:
                raise ContextError(
                    f"alias {alias!r} is not open in this test; give it a test database with "
                    f"--db-url {alias}=URL."
                ) from None
            return outer.session(**options)
        if self.sync_binding is None:
            raise ContextError(
                f"the app's alias {alias!r} is sync but this test has no sync binding; "
                "request the db_session (or db_connection) fixture."
            )
        return self.sync_binding.outer(alias).session(**options)

    def refused(self, error: ContextError) -> ContextError:
        """Record ``error`` (an adapter refused a connection: e.g. an engine of an alias the
        test did not declare), so that the test fails even if the app swallows it."""
        message = str(error)
        if message not in self.escapes:
            self.escapes.append(message)
        return error

    def escaped(self, label: str, url: str, hint: str | None = None) -> ContextError:
        advice = hint or (
            "Make sessions through pytest_ctxdb.context (db_session(), new_session(), atomic) "
            "or list the engine in ini db_engines."
        )
        message = (
            f"{label} ({url}) was asked for a connection during the test: it would bypass "
            f"the test's outer transaction and commit for real. {advice}"
        )
        self.escapes.append(message)
        return ContextError(message)


class EngineSessionSource:
    """The ambient source of a run's tests outside their bindings: what the context runtime
    gets while a fixture is set up or torn down.

    * While a class-, module-, package- or session-scoped fixture runs (``cursor`` says
      which), a sync alias's sessions are made on the alias's test connection, joined with
      ``create_savepoint``: what they commit goes into that scope's layer (see
      :mod:`pytest_ctxdb.binding._layers`), seen by the scope's tests and rolled back when
      the scope ends. They are kept by the layer (rolled back after each test, closed at the
      end of the scope).
      An async alias's sessions go on the test connection of the running event loop (the
      async fixture's loop scope), into the same layer.
    * Otherwise (a function-scoped fixture outside the test's binding), sessions are made
      on the *test database* engine and commit for real there, never on the app's own
      engine.

    :param engine: ``engine(alias, is_async)`` returns the test database's ``Engine`` or
        ``AsyncEngine`` for ``alias``.
    :param connect: ``connect(alias)`` returns the alias's rollback-mode test connection,
        its outer transaction begun.
    :param cursor: the run's :class:`~pytest_ctxdb.binding._layers.LayerCursor`.
    :param async_session: ``async_session(alias, options)`` returns an ``AsyncSession`` in the
        running async fixture's layer, on its loop's test connection.
    """

    __test__ = False

    def __init__(
        self,
        engine: Any,
        connect: Callable[[str], Connection] | None = None,
        cursor: LayerCursor | None = None,
        async_session: Callable[[str, dict[str, Any]], Any] | None = None,
    ) -> None:
        self._engine = engine
        self._connect = connect
        self._cursor = cursor
        self._async_session = async_session

    def make_session(self, database: Any, scope: Any) -> Any:
        options = {k: v for k, v in database.session_options.items() if k not in _FIXED}
        cursor = self._cursor
        layered = cursor is not None and cursor.current is not None
        if database.is_async:
            if layered and self._async_session is not None:
                return self._async_session(database.alias, options)
            return AsyncSession(bind=self._engine(database.alias, True), **options)
        if layered and self._connect is not None:
            layers = layers_of(self._connect(database.alias))
            assert layers is not None, "a rollback-mode test connection has layers"
            return layers.session(**options)
        return Session(bind=self._engine(database.alias, False), **options)

    def escaped(self, label: str, url: str, hint: str | None = None) -> ContextError:
        advice = hint or (
            "List the engine in ini db_engines (bound in class-, module-, package- and "
            "session-scoped fixtures too), or make sessions through pytest_ctxdb.context."
        )
        return ContextError(
            f"{label} ({url}) was asked for a connection while a fixture ran: it would bypass "
            f"the test database. {advice} A function-scoped fixture that runs before the "
            "test's binding opens must request db_session (or async_db_session) first."
        )
