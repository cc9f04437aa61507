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

from collections.abc import Callable, Sequence
from typing import Any

from .._errors import ContextError
from .._settings import DEFAULT_ALIAS
from ._binding import AsyncTestBinding, TestBinding

__all__ = ("EngineSessionSource", "TestSessionSource")

_FIXED = frozenset({"bind", "binds", "join_transaction_mode"})
#: session options that can be set on an existing Session.
_SETTABLE = frozenset({"expire_on_commit", "autoflush"})


class TestSessionSource:
    """Makes the context runtime's sessions on one test's connections.

    :ivar root_scope: the context scope of the test itself (set by the plugin).
    :ivar escapes: messages of connections checked out of an app engine during the test.
    """

    __test__ = False

    def __init__(self, adapters: Sequence[Any] = ()) -> None:
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

    def root_session(self, alias: str, is_async: bool, make: Callable[[], Any]) -> Any:
        """The test's own session of ``alias`` (what the fixtures return, and the app's context
        session in the test's context), made with ``make`` on first request, by either side."""
        key = (alias, is_async)
        session = self.root_sessions.get(key)
        if session is None:
            session = self.root_sessions[key] = make()
        return session

    def attach_sync(self, binding: TestBinding, alias: str = DEFAULT_ALIAS) -> None:
        """Use ``binding`` for sync sessions and apply the sync adapters to its connection.

        Adapters serve the app's main database, ``alias``; a test that did not declare it
        leaves them unapplied (their engines stay guarded).
        """
        self.sync_binding = binding
        if not binding.plan.declares(alias):
            return
        outer = binding.outer(alias)
        for adapter in self.adapters:
            if not adapter.is_async:
                adapter.apply(outer.connection, outer.session)

    def attach_async(self, binding: AsyncTestBinding, alias: str = DEFAULT_ALIAS) -> None:
        """Use ``binding`` for async sessions and apply the async adapters to its connection."""
        self.async_binding = binding
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
            alias, is_async, lambda: self._new_session(alias, is_async, options)
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

    def escaped(self, label: str, url: str) -> ContextError:
        message = (
            f"{label} ({url}) was asked for a connection during the test: it would bypass "
            "the test's outer transaction and commit for real. "
            "Make sessions through pytest_ctxdb.context (db_session(), new_session(), atomic) "
            "or list the engine / sessionmaker in ini db_engines / db_sessionmakers."
        )
        self.escapes.append(message)
        return ContextError(message)


class EngineSessionSource:
    """The ambient source of a test that uses a database, outside its binding.

    Fixtures of wider scopes (module, session) and their finalizers run before the test's
    binding opens or after it ends; the app code they call gets sessions on the *test
    database* engine, committing for real there (data a module fixture sets up for several
    tests), never on the app's own engine.

    :param engine: ``engine(alias, is_async)`` returns the test database's ``Engine`` or
        ``AsyncEngine`` for ``alias``.
    """

    __test__ = False

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    def make_session(self, database: Any, scope: Any) -> Any:
        options = {k: v for k, v in database.session_options.items() if k not in _FIXED}
        if database.is_async:
            from sqlalchemy.ext.asyncio import AsyncSession

            return AsyncSession(bind=self._engine(database.alias, True), **options)
        from sqlalchemy.orm import Session

        return Session(bind=self._engine(database.alias, False), **options)

    def escaped(self, label: str, url: str) -> ContextError:
        return ContextError(
            f"{label} ({url}) was asked for a connection while a fixture ran: it would bypass "
            "the test database. Make sessions through pytest_ctxdb.context or list the engine / "
            "sessionmaker in ini db_engines / db_sessionmakers."
        )
