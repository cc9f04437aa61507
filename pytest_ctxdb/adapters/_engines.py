"""An application's own ``Engine`` / ``AsyncEngine`` bound to the test connection.

During a test, ``engine.connect()`` of an engine listed in ini ``db_engines`` returns a
:class:`BranchConnection`: a real :class:`sqlalchemy.engine.Connection` (so ``isinstance``
checks, ``Session(engine)``, ``sessionmaker(engine)`` made at import, ``engine.begin()``,
``AsyncSession(async_engine)`` and ``AsyncEngine.connect()`` all work unchanged) that runs on the
test's DBAPI connection, and whose transactions are savepoints of the test connection:

* ``begin()`` (or autobegin) opens a SAVEPOINT on the test connection;
* ``commit()`` releases it, ``rollback()`` rolls back to it;
* ``begin_nested()`` opens a further SAVEPOINT, also on the test connection;
* ``close()`` rolls back what is still open and leaves the test connection open.

Every savepoint is a ``NestedTransaction`` of the test connection itself, so the savepoint
arbiter (:mod:`pytest_ctxdb.binding._arbiter`) orders them with the test's own sessions' ones.
The engine object is never replaced: the adapter shadows its ``connect`` for the test only
(and ``OptionEngine.connect``, for ``engine.execution_options(...)`` copies), so every
reference the app holds, however it was taken, reaches the test connection. ``AsyncEngine``
follows: its ``connect()`` and sessions call ``sync_engine.connect()``.
"""

from __future__ import annotations

import weakref
from typing import Any

from sqlalchemy.engine import Connection, Engine, NestedTransaction, RootTransaction
from sqlalchemy.engine.base import OptionEngine
from sqlalchemy.util import immutabledict

from .._errors import ContextError
from ..binding import check_loop, guard_branch, yield_when_covered

__all__ = ("BranchConnection", "EngineBinding", "bound_engine", "connects_to")

#: execution options a branch ignores: they would change the shared test connection itself
#: (``isolation_level="AUTOCOMMIT"`` would end the test's outer transaction).
_CONNECTION_WIDE = frozenset({"isolation_level", "postgresql_readonly", "postgresql_deferrable"})


#: statements that only read, by their first word (for textual SQL).
_READS = frozenset({"select", "show", "explain", "values"})


def _writes(context: Any) -> bool:
    """``False`` when the statement run in ``context`` (an ``ExecutionContext``) only read."""
    if context.isinsert or context.isupdate or context.isdelete or context.isddl:
        return True
    if context.is_text:
        words = str(context.statement).lstrip(" \t\r\n(").split(None, 1)
        return not words or words[0].lower() not in _READS
    return False


class BranchConnection(Connection):
    """A ``Connection`` sharing the test connection's DBAPI connection; its transactions are
    savepoints of the test connection (see the module docstring).

    :param trunk: the test connection (inside the test's outer transaction).
    :param engine: the app engine it stands for: ``connection.engine`` (so that a ``Session``
        bound to that engine finds its connection again), its logging and its connection events.
    :param label: how errors name the app engine, e.g. ``"db_engines myapp.db:engine"``.

    The ``dialect`` is the test database's (it drives the test's DBAPI connection); the app
    engine's own pool is never touched. Made by the patched ``engine.connect()``; not meant to be
    made directly.
    """

    def __init__(self, trunk: Connection, engine: Engine, label: str) -> None:
        # Shares the trunk's pooled DBAPI connection. The trunk's guards (outer COMMIT refused,
        # the savepoint arbiter) wrap the trunk's own methods, which every transaction step
        # below goes through; statement-level guards are added by guard_branch.
        # _has_events=False: the engine's "engine_connect" listeners are not run. They set up a
        # new DBAPI connection, and this one is the test's: an execution_options copy with
        # isolation_level="AUTOCOMMIT" registers one that would switch the test connection to
        # autocommit. The engine's statement events are joined afterwards, so an app's own
        # before_cursor_execute (logging, timing) still runs.
        super().__init__(
            engine, connection=trunk.connection, _has_events=False, _allow_revalidate=False
        )
        self.dispatch = self.dispatch._join(engine.dispatch)
        self.dialect = trunk.dialect
        if not _CONNECTION_WIDE.isdisjoint(self._execution_options):
            self._execution_options = immutabledict(
                {k: v for k, v in self._execution_options.items() if k not in _CONNECTION_WIDE}
            )
        self._trunk = trunk
        self._label = label
        self._outer_savepoint: NestedTransaction | None = None
        self._savepoints: dict[str, NestedTransaction] = {}
        self._ended_by_test = False
        #: the outer savepoint was released while it held no writes (see _release_if_idle);
        #: a new one is opened before the next statement.
        self._reopen = False
        #: the outer savepoint holds writes (or a statement is running, or one failed).
        self._writes = False
        guard_branch(self)

    # -- transaction steps, mapped onto savepoints of the test connection --------------------

    def _begin_impl(self, transaction: RootTransaction) -> None:
        self._open_outer()

    def _open_outer(self) -> None:
        self._reopen = False
        self._writes = False
        savepoint = self._outer_savepoint = self._trunk.begin_nested()
        yield_when_covered(self._trunk, savepoint._savepoint, self._release_if_idle)

    def _release_if_idle(self) -> bool:
        """Release the outer savepoint if it holds no writes and none of this connection's
        own savepoints is open (called by the arbiter just before another savepoint would be
        opened on top of it); the next statement opens a new one. In production this
        connection's transaction and the other one are apart: a rollback here must not undo
        what the other commits."""
        outer = self._outer_savepoint
        if self._writes or self._savepoints or outer is None or not outer.is_active:
            return False
        self._outer_savepoint = None
        self._reopen = True
        outer.commit()
        return True

    def _execute_context(self, *args: Any, **kw: Any) -> Any:
        if self._reopen and self._transaction is not None and self._transaction.is_active:
            self._open_outer()
        idle, self._writes = not self._writes, True  # not idle while it runs, nor if it fails
        result = super()._execute_context(*args, **kw)
        if idle and not _writes(result.context):
            self._writes = False
        return result

    def _end_savepoints(self, commit: bool) -> None:
        # Newest first: the arbiter ends savepoints in stack order.
        savepoints, self._savepoints = self._savepoints, {}
        for savepoint in reversed(list(savepoints.values())):
            if savepoint.is_active and commit:
                savepoint.commit()
            elif savepoint.is_active:
                savepoint.rollback()

    def _commit_impl(self) -> None:
        self._reopen = False
        outer, self._outer_savepoint = self._outer_savepoint, None
        self._end_savepoints(commit=True)
        if outer is not None and outer.is_active:
            outer.commit()

    def _rollback_impl(self) -> None:
        self._reopen = False
        outer, self._outer_savepoint = self._outer_savepoint, None
        self._end_savepoints(commit=False)
        if outer is not None and outer.is_active:
            outer.rollback()

    def _savepoint_impl(self, name: str | None = None) -> str:
        self._writes = True  # its own savepoint goes inside the outer one: never give way to it
        savepoint = self._trunk.begin_nested()
        self._savepoints[savepoint._savepoint] = savepoint
        return savepoint._savepoint

    def _release_savepoint_impl(self, name: str) -> None:
        savepoint = self._savepoints.pop(name, None)
        if savepoint is not None and savepoint.is_active:
            savepoint.commit()

    def _rollback_to_savepoint_impl(self, name: str) -> None:
        savepoint = self._savepoints.pop(name, None)
        if savepoint is not None and savepoint.is_active:
            savepoint.rollback()

    # -- the connection's life -----------------------------------------------------------------

    def execution_options(self, **opt: Any) -> Connection:
        """Apply ``opt`` except those that would change the shared test connection itself
        (``isolation_level``, ...): those are ignored in tests."""
        kept = {key: value for key, value in opt.items() if key not in _CONNECTION_WIDE}
        return super().execution_options(**kept) if kept else self

    def close(self) -> None:
        """Roll back what this connection left open; the test connection stays open."""
        try:
            if self._transaction is not None:
                self._transaction.close()
        finally:
            self._dbapi_connection = None
            self._Connection__can_reconnect = False

    def invalidate(self, exception: BaseException | None = None) -> None:
        """Close this connection only: the test connection is pytest-ctxdb's to invalidate."""
        self.close()

    def begin_twophase(self, xid: Any = None) -> Any:
        raise ContextError(
            f"{self._label}: two-phase transactions cannot run inside the test's transaction; "
            "mark the test @pytest.mark.db(transaction=True)."
        )

    def detach(self) -> None:
        raise ContextError(
            f"{self._label}: a connection detached from its pool would leave the test's "
            "transaction; detach() is not available in tests."
        )

    def _revalidate_connection(self) -> Any:
        if self._ended_by_test:
            raise ContextError(
                f"{self._label}: a connection taken during a test was used after the test "
                "ended (a Session or Connection kept open at module level?). Close sessions "
                "at the end of each request or job, e.g. `with Session(engine) as session:`."
            )
        return super()._revalidate_connection()

    def end_with_test(self) -> None:
        """Close this connection at the end of the test it was made in (the outer transaction
        is already rolled back: nothing is sent); a later use raises :class:`ContextError`."""
        self._ended_by_test = True
        savepoints = [self._outer_savepoint, *self._savepoints.values()]
        self._outer_savepoint, self._savepoints = None, {}
        for savepoint in savepoints:
            if savepoint is not None and savepoint.is_active and self._trunk.in_transaction():
                savepoint.rollback()
        if self._transaction is not None:
            self._transaction._deactivate_from_connection()
            self._transaction = None
        self._nested_transaction = None
        self._dbapi_connection = None
        self._Connection__can_reconnect = False


#: app engine -> the test connection its binding was checked on (see EngineBinding.verify).
_verified: weakref.WeakKeyDictionary[Engine, Connection] = weakref.WeakKeyDictionary()


def connects_to(engine: Engine, trunk: Connection) -> bool:
    """By effect: ``engine.connect()`` hands out a connection on ``trunk``'s DBAPI connection
    (no I/O: the probe is closed before it begins anything)."""
    probe = engine.connect()
    try:
        return probe.connection.dbapi_connection is trunk.connection.dbapi_connection
    finally:
        probe.close()


#: app engine -> its binding, while a test runs (read by the patched ``OptionEngine.connect``).
_bindings: weakref.WeakKeyDictionary[Engine, EngineBinding] = weakref.WeakKeyDictionary()


def _option_engine_connect(self: OptionEngine) -> Connection:
    """``OptionEngine.connect`` while any engine is bound: a copy made with
    ``engine.execution_options(...)`` (at import or during the test) of a bound engine hands out
    branches too, with its own options; any other copy connects as usual."""
    root: Engine = self
    while isinstance(root, OptionEngine):
        root = root._proxied
    binding = _bindings.get(root)
    if binding is None:
        return Engine.connect(self)
    return binding.connect(self)


class EngineBinding:
    """Binds one app ``Engine`` (an ``AsyncEngine``'s ``sync_engine``) to a test connection.

    :param engine: the app's engine object, left in place.
    :param trunk: the test connection (the ``sync_connection`` of an ``AsyncConnection``).
    :param label: how errors name the engine.

    :meth:`install` shadows ``engine.connect`` with an instance attribute, and, while any
    engine is bound, ``OptionEngine.connect`` (the class of ``engine.execution_options(...)``
    copies, which share nothing else one could patch); :meth:`remove` undoes both and closes
    every connection handed out during the test.
    """

    __slots__ = ("__weakref__", "_branches", "engine", "label", "trunk")

    def __init__(self, engine: Engine, trunk: Connection, label: str) -> None:
        self.engine = engine
        self.trunk = trunk
        self.label = label
        self._branches: weakref.WeakSet[BranchConnection] = weakref.WeakSet()

    def connect(self, engine: Engine | None = None) -> BranchConnection:
        """A new :class:`BranchConnection` on the test connection (no I/O until used).

        :param engine: the engine asked (the app engine, or an ``execution_options`` copy of
            it, whose options the branch takes, connection-wide ones excepted).
        :raises ContextError: an async test connection asked from another event loop than
            the test's (an app driven by a sync ``TestClient``; see ``LoopGuard``).
        """
        check_loop(self.trunk, f"{self.label}: connect() was called")
        branch = BranchConnection(self.trunk, engine or self.engine, self.label)
        self._branches.add(branch)
        return branch

    def install(self) -> None:
        self.engine.connect = self.connect  # type: ignore[method-assign]
        _bindings[self.engine] = self
        if OptionEngine.__dict__.get("connect") is not _option_engine_connect:
            OptionEngine.connect = _option_engine_connect  # type: ignore[method-assign,assignment]

    def verify(self) -> bool:
        """Check by its effect that ``engine.connect()`` now runs on the test connection, once
        per engine and test connection (the test connection is reused from test to test, and
        the same binding of the same engine to it has the same effect).

        :returns: ``True`` if checked now, ``False`` if checked on this connection before.
        :raises ContextError: it does not (the engine's class defines ``__slots__`` or
            ``connect`` is resolved elsewhere).
        """
        if _verified.get(self.engine) is self.trunk:
            return False
        if not connects_to(self.engine, self.trunk):
            self.remove()
            raise ContextError(
                f"{self.label}: binding the engine had no effect: engine.connect() still "
                "returns its own connections. Report this with the engine's class "
                f"({type(self.engine).__module__}.{type(self.engine).__qualname__})."
            )
        _verified[self.engine] = self.trunk
        return True

    def remove(self) -> None:
        vars(self.engine).pop("connect", None)
        if _bindings.get(self.engine) is self:
            del _bindings[self.engine]
        if not _bindings and OptionEngine.__dict__.get("connect") is _option_engine_connect:
            del OptionEngine.connect
        branches = list(self._branches)
        self._branches = weakref.WeakSet()
        for branch in branches:
            if not branch._ended_by_test:
                branch.end_with_test()


def bound_engine(engine: Engine) -> bool:
    """``True`` while ``engine`` (or the engine an ``execution_options`` copy was made from)
    is bound to a test connection by :class:`EngineBinding`."""
    while isinstance(engine, OptionEngine):
        engine = engine._proxied
    return engine in _bindings
