"""Layers: the data of class-, module-, package- and session-scoped fixtures, each scope in a
SAVEPOINT of its own under the tests of that scope, rolled back when the scope ends.

On one rollback-mode test connection the stack reads, bottom to top::

    BEGIN                         the outer transaction (kept open while a layer exists)
      SAVEPOINT ctxdb_layer_1     e.g. the session's seed data
        SAVEPOINT ctxdb_layer_2   e.g. a module's logins
          SAVEPOINT ctxdb_test    each test of the module, rolled back to after it
            sa_savepoint_N ...    the test's sessions (create_savepoint), as without layers

* A layer is opened lazily: when database work runs while a fixture of that scope is set
  up or torn down (:class:`LayerCursor` says which), just before its first SAVEPOINT on the
  connection (every session and app connection there opens one). Scopes whose fixtures
  never touch the connection cost nothing.
* The test savepoint is opened by the first test above the innermost layer and kept: after
  each test the connection rolls back to it (one round trip, as the ``ROLLBACK`` of a test
  without layers), so the next test starts from the layers' data.
* When the scope ends (after its fixtures' finalizers), its layer is rolled back and
  released; the outer transaction is rolled back with the last layer.

These savepoints are plain SQL that SQLAlchemy's ``Connection`` does not track, so its
savepoint bookkeeping and the savepoint arbiter see only the tests' and the app's own.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, RootTransaction
from sqlalchemy.orm import Session

from .._errors import ContextError

__all__ = ("LayerCursor", "LayerError", "LayerScope", "LayerStack", "layers_of")

#: the ``join_transaction_mode`` of every session bound to a test connection.
JOIN_MODE: Final = "create_savepoint"

_LAYERS = "pytest_ctxdb.layers"
#: the name of the savepoint each test above a layer runs in.
TEST_SAVEPOINT = "ctxdb_test"


class LayerError(ContextError):
    """Scoped data cannot be kept as asked: a wider scope's fixture wrote after a narrower
    scope's data (or a test's transaction) was already on the connection, or a layer was
    lost or left broken."""


@dataclass(frozen=True, eq=False)
class LayerScope:
    """One pytest scope instance that may hold data: the session, a package, a module or a
    class.

    :ivar key: what identifies it (the node id; ``""`` for the session).
    :ivar kind: ``"session"``, ``"package"``, ``"module"`` or ``"class"``.
    :ivar label: how messages name it, e.g. ``"module tests/test_users.py"``.
    :ivar enclosing: the keys of the scopes it lies in, itself included.
    """

    key: str
    kind: str
    label: str
    enclosing: frozenset[str]


@dataclass
class _Running:
    scope: LayerScope
    fixture: str
    #: connections whose layer of ``scope`` was opened while this fixture ran.
    opened: list[LayerStack] = field(default_factory=list)


class LayerCursor:
    """Which scope's layer the database work running now belongs to: the scope of the
    innermost wider-scoped fixture being set up or torn down, or ``None`` (a test, or a
    function-scoped fixture). One per run; the plugin moves it."""

    def __init__(self) -> None:
        self._running: list[_Running] = []
        #: scope key -> why its data was lost; tests of that scope fail with it.
        self.broken: dict[str, str] = {}

    @property
    def current(self) -> _Running | None:
        return self._running[-1] if self._running else None

    def enter(self, scope: LayerScope, fixture: str) -> None:
        """A fixture of ``scope`` starts its set-up or teardown."""
        self._running.append(_Running(scope, fixture))

    def leave(self) -> list[LayerStack]:
        """The innermost running fixture is done; returns the connections whose layer it
        opened (its scope's, on each)."""
        return self._running.pop().opened

    def problem(self, enclosing: frozenset[str]) -> str | None:
        """Why a test lying in the scopes ``enclosing`` cannot run: a layer of one of them
        was lost (``None`` if none was)."""
        if not self.broken:
            return None
        for key, message in self.broken.items():
            if key in enclosing:
                return message
        return None


@dataclass
class _Layer:
    scope: LayerScope
    savepoint: str


#: what SQLAlchemy says when a session whose savepoint is gone is rolled back.
_EXPECTED_WARNINGS = (
    "nested transaction already deassociated",
    "Session's state has been changed on a non-active transaction",
)


def _quiet_rollback(session: Session) -> None:
    """Roll back ``session`` whose savepoint the connection already discarded: nothing is
    sent; its objects are expired (reloaded on next access) and stay in the session.
    SQLAlchemy warns that the savepoint was already deassociated; here that is expected."""
    if not session.in_transaction():
        return
    with warnings.catch_warnings():
        for message in _EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message, sa_exc.SAWarning)
        session.rollback()


class LayerStack:
    """The layers and the kept test savepoint of one rollback-mode test connection.

    :param connection: the test connection (an ``AsyncConnection``'s ``sync_connection``).
    :param cursor: the run's :class:`LayerCursor`.
    :param run: ``run(sql)`` executes one statement on the connection outside SQLAlchemy's
        savepoint bookkeeping and the arbiter (see :func:`prepare_layers`).
    :param forget: makes the savepoint arbiter forget the savepoints a rollback discarded.
    """

    def __init__(
        self,
        connection: Connection,
        cursor: LayerCursor,
        run: Callable[[str], None],
        forget: Callable[[], None],
    ) -> None:
        self.connection = connection
        self.cursor = cursor
        self._run = run
        self._forget = forget
        self._root: RootTransaction | None = None
        self.layers: list[_Layer] = []
        #: ``True`` while the test savepoint is open above the innermost layer.
        self.test_open = False
        #: ``True`` while a test's transaction is in progress on top of the layers.
        self.in_test = False
        #: sessions kept across tests on this connection (``db_setup_session``): rolled back
        #: after every test and layer, never closed here.
        self.kept: list[Session] = []
        #: scope key -> sessions made for that scope's fixtures (the context runtime's),
        #: rolled back after every test and closed when the scope ends.
        self._sessions: dict[str, list[Session]] = {}

    # -- the outer transaction ---------------------------------------------------------

    def begin(self) -> None:
        """Begin the outer transaction if the connection has none (a wider-scoped fixture
        starts, or a session is made for one): sessions joined later then open savepoints
        in it instead of owning it. Sends nothing on drivers that begin implicitly."""
        connection = self.connection
        if not connection.in_transaction():
            self._root = connection.begin()

    def adopt_root(self) -> RootTransaction | None:
        """The outer transaction a layer-less test takes over (begun by :meth:`begin`), or
        ``None`` (the test begins its own)."""
        root, self._root = self._root, None
        if root is not None and root.is_active and not self.layers:
            return root
        return None

    # -- layers --------------------------------------------------------------------------

    def ensure(self) -> None:
        """Open the layer of the scope whose fixture is running (if it is not open yet on
        this connection): called just before any savepoint is opened on the connection.

        :raises LayerError: a test's transaction is in progress, or a narrower scope's
            layer is already open (a wider-scoped fixture set up late, e.g. through
            ``request.getfixturevalue``): its data would end with the narrower scope.
        """
        running = self.cursor.current
        if running is None:
            return
        scope = running.scope
        if self.in_test:
            raise LayerError(
                f"fixture {running.fixture!r} ({scope.label}) wrote to the database during a "
                "test: its data would be rolled back with the test's. Request it as an "
                "argument of the test (or of an autouse fixture) instead of through "
                "request.getfixturevalue()."
            )
        if self.layers and self.layers[-1].scope is scope:
            return
        for layer in self.layers:
            if layer.scope.key not in scope.enclosing:
                raise LayerError(
                    f"fixture {running.fixture!r} ({scope.label}) wrote to the database after "
                    f"data of the narrower {layer.scope.label} was set up on this connection: "
                    f"its data would be rolled back at the end of the {layer.scope.kind}. "
                    f"Make the {layer.scope.kind}'s fixtures request {running.fixture!r} "
                    "(pytest sets up wider-scoped fixtures first), or make it autouse."
                )
        if self.test_open:
            self._run(f"RELEASE SAVEPOINT {TEST_SAVEPOINT}")
            self.test_open = False
        self.begin()
        name = f"ctxdb_layer_{len(self.layers) + 1}"
        self._run(f"SAVEPOINT {name}")
        self.layers.append(_Layer(scope, name))
        running.opened.append(self)

    def session(self, class_: type[Session] = Session, **options: Any) -> Session:
        """A new ``class_`` session on the connection, joined with ``create_savepoint`` (in
        the outer transaction, which :meth:`begin` opened), kept by the running fixture's
        scope (see :meth:`adopt`)."""
        session = class_(bind=self.connection, join_transaction_mode=JOIN_MODE, **options)
        self.adopt(session)
        return session

    def adopt(self, session: Session) -> None:
        """Close ``session`` (made for the running fixture's scope) when that scope ends, and
        roll it back after each test. Without a running wider-scoped fixture: no-op."""
        running = self.cursor.current
        if running is not None:
            self._sessions.setdefault(running.scope.key, []).append(session)

    def close(self, key: str) -> None:
        """End the layer of scope ``key`` (and any above it): roll back to its savepoint
        and release it; with the last layer, roll back the outer transaction.
        No-op if this connection has no layer of that scope."""
        index = next((i for i, l in enumerate(self.layers) if l.scope.key == key), None)
        if index is None:
            self._settle([], key)
            return
        ended, self.layers = self.layers[index:], self.layers[:index]
        self.test_open = False
        try:
            if not self.connection.in_transaction():
                return  # lost (reported by end_test); nothing left on the server
            if self.layers:
                self._cancel_nested()
                self._run(f"ROLLBACK TO SAVEPOINT {ended[0].savepoint}")
                self._run(f"RELEASE SAVEPOINT {ended[0].savepoint}")
            else:
                transaction = self.connection.get_transaction()
                if transaction is not None:
                    transaction.rollback()
                self._root = None
        finally:
            self._settle(ended, key)

    def _settle(self, ended: list[_Layer], key: str | None = None) -> None:
        """After a rollback: roll back the sessions left on the connection; close those made
        for the scopes that ended (``ended``, and scope ``key``)."""
        keys = {layer.scope.key for layer in ended}
        if key is not None:
            keys.add(key)
        for scope_key in keys:
            for session in self._sessions.pop(scope_key, ()):
                _quiet_rollback(session)
                session.close()
        self.settle_sessions()

    def settle_sessions(self) -> None:
        """Roll back the sessions kept on the connection (their savepoints were discarded
        by a rollback of the connection): their objects are reloaded on next access."""
        for session in self.kept:
            _quiet_rollback(session)
        for sessions in self._sessions.values():
            for session in sessions:
                _quiet_rollback(session)

    def _cancel_nested(self) -> None:
        """Mark every savepoint SQLAlchemy tracks on the connection as ended (the server
        discards them with the rollback that follows), as ``RootTransaction`` does for a
        ``ROLLBACK``: no ``ROLLBACK TO`` per session savepoint."""
        nested = self.connection._nested_transaction
        if nested is not None:
            nested._cancel()
        self._forget()

    def _lose(self, cause: str) -> str:
        """The server discarded every layer (``cause`` says how): forget them and mark their
        scopes broken in the cursor. Returns the message their later tests fail with."""
        ended, self.layers = self.layers, []
        self.test_open = False
        self._root = None
        self.settle_sessions()
        labels = ", ".join(layer.scope.label for layer in ended)
        message = (
            f"the data of the wider-scoped fixtures of {labels} was lost: {cause}, so the "
            "rest of that scope cannot run on it"
        )
        for layer in ended:
            self.cursor.broken.setdefault(layer.scope.key, message)
        return message

    def check(self, fixture: str, scope: LayerScope, probe: bool) -> str | None:
        """After a wider-scoped fixture ran: find a layer it left broken.

        :param probe: the fixture failed after opening a layer here: check by a savepoint
            round trip that the transaction still accepts statements (an error inside the
            layer aborts a PostgreSQL transaction). If not, the innermost layer is rolled
            back (the connection works again) and its scope marked broken.
        :returns: ``None``, or why every layer was lost (the fixture ended the outer
            transaction, e.g. a refused commit): the caller invalidates the connection.
        """
        if not self.layers:
            return None
        connection = self.connection
        if not connection.in_transaction() or connection.invalidated:
            return self._lose(f"fixture {fixture!r} ({scope.label}) ended the outer transaction")
        if not probe:
            return None
        try:
            self._run("SAVEPOINT ctxdb_probe")
            self._run("RELEASE SAVEPOINT ctxdb_probe")
        except Exception as exc:  # noqa: BLE001 - any failure means the layer is broken
            top = self.layers[-1]
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            try:
                self._cancel_nested()
                self._run(f"ROLLBACK TO SAVEPOINT {top.savepoint}")
            except Exception:  # noqa: BLE001 - then nothing of the transaction is usable
                return self._lose(f"fixture {fixture!r} ({scope.label}) broke the transaction")
            self.test_open = False
            self.cursor.broken.setdefault(
                top.scope.key,
                f"fixture {fixture!r} failed and left the data of the {top.scope.label} in a "
                f"broken transaction ({type(exc).__name__}: {first}); that data was rolled "
                "back, so the scope's tests cannot run on it",
            )
        return None

    def end_leftovers(self, grace: float = 0.2) -> None:
        """End the savepoints app connections left open on the connection after a
        wider-scoped fixture (a request's session that another thread closes a moment after
        the response, or never): wait up to ``grace`` seconds for their owners, then roll
        back to the oldest one and release it (their work was not committed), so the next
        test's savepoint is not opened inside them."""
        connection = self.connection
        deadline = time.monotonic() + grace
        while connection._nested_transaction is not None and time.monotonic() < deadline:
            time.sleep(0.002)
        nested = connection._nested_transaction
        if nested is None:
            return
        while nested._previous_nested is not None:
            nested = nested._previous_nested
        oldest = nested._savepoint
        self._cancel_nested()
        self._run(f"ROLLBACK TO SAVEPOINT {oldest}")
        self._run(f"RELEASE SAVEPOINT {oldest}")

    # -- tests above the layers --------------------------------------------------------

    def begin_test(self) -> bool:
        """Start a test's transaction above the layers.

        :returns: ``False`` if the connection has no layer (the test takes the outer
            transaction as usual), ``True`` if the test runs in the test savepoint.
        """
        if not self.layers:
            return False
        if self.connection._nested_transaction is not None:
            self.end_leftovers()
        if not self.test_open:
            self._run(f"SAVEPOINT {TEST_SAVEPOINT}")
            self.test_open = True
        self.in_test = True
        return True

    def end_test(self) -> str | None:
        """Undo the test's work: roll back to the test savepoint (kept for the next test).

        :returns: ``None``, or why the layers were lost (the test ended the connection's
            whole transaction): their scopes are marked broken in the cursor, and their
            later tests fail with that message.
        """
        self.in_test = False
        connection = self.connection
        if not connection.in_transaction() or connection.invalidated:
            return self._lose(
                "a test ended the test connection's outer transaction (a rollback or commit "
                "of the connection itself, or a session in another join_transaction_mode)"
            )
        self._cancel_nested()
        self._run(f"ROLLBACK TO SAVEPOINT {TEST_SAVEPOINT}")
        self.settle_sessions()
        return None


def prepare_layers(
    connection: Connection, cursor: LayerCursor, forget: Callable[[], None]
) -> LayerStack:
    """Give a rollback-mode test connection its :class:`LayerStack` and open a pending layer
    just before each savepoint: wraps ``Connection._savepoint_impl`` (already wrapped by the
    savepoint arbiter, whose order of savepoints is then kept).

    :param forget: see :class:`LayerStack`.
    """
    savepoint = connection._savepoint_impl

    def run(sql: str) -> None:
        # On the DBAPI connection itself: no statement compilation, events or result
        # objects for these few fixed statements (a test above a layer sends one per test).
        cursor = connection.connection.cursor()
        try:
            cursor.execute(sql)
        finally:
            cursor.close()

    stack = LayerStack(connection, cursor, run, forget)

    def savepoint_impl(name: str | None = None) -> str:
        if cursor._running:
            stack.ensure()
        return savepoint(name)

    connection._savepoint_impl = savepoint_impl  # type: ignore[method-assign]
    connection.info[_LAYERS] = stack
    return stack


def layers_of(connection: Connection) -> LayerStack | None:
    """The :class:`LayerStack` of a rollback-mode test connection (``None`` on others)."""
    stack: LayerStack | None = connection.info.get(_LAYERS)
    return stack

