"""Savepoint order on the one test connection, for concurrent contexts.

In a test every session shares one connection, so their savepoints share one stack: when
``asyncio.gather`` runs two contexts, one may ``RELEASE`` its savepoint while the other's,
opened after it, is still in use, and PostgreSQL then reports ``savepoint "sa_savepoint_5"
does not exist`` (a *lost savepoint*). The arbiter keeps the stack in order:

* a task (or thread) may open a savepoint when the stack is empty or its top was opened by
  itself or by an *ancestor*: a task that opened a savepoint and then started this one
  (``asyncio.gather``, ``run_in_new_context``, ``asyncio.to_thread``, context-async-sqlalchemy's
  ``run_in_new_ctx``); otherwise it waits until the top is released, so concurrent siblings
  are serialized transaction by transaction. Ancestry is a ``ContextVar`` lineage extended
  each time a task opens a savepoint, which child tasks and threads inherit with the context.
  The thread that began the test's outer transaction (the test itself) counts as everyone's
  ancestor, so worker threads that inherit no context (``ThreadPoolExecutor``) may work
  inside a savepoint the test holds while it waits for them;
* a savepoint is released or rolled back only once it is the top, waiting for younger ones;
* a wait that could never end (the holder is the waiting task or thread itself) or that
  lasts longer than ``timeout`` seconds raises :class:`ContextError` instead of hanging.

Async connections wait with ``await_only`` inside SQLAlchemy's greenlet (the task yields to
the event loop); sync ones with a condition variable (threads).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.util import await_only
from .._sqla import in_greenlet

from .._errors import ContextError

__all__ = ("LoopGuard", "SavepointArbiter")

#: seconds a task waits for a savepoint whose opener (and its ancestors) have all finished.
_ORPHAN_GRACE = 1.0

#: the tasks/threads that opened savepoints in the contexts this one descends from.
_lineage: ContextVar[tuple[Any, ...]] = ContextVar("pytest_ctxdb_lineage", default=())


#: task -> the task that was running when it was created (see :func:`track_tasks`).
_parents: weakref.WeakKeyDictionary[asyncio.Task[Any], asyncio.Task[Any]] = (
    weakref.WeakKeyDictionary()
)
_tracked_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def track_tasks() -> None:
    """Record, for every task the running loop creates from now on, the task that created it.

    Installed once per loop by the async test binding (chaining any task factory already
    set): it lets the arbiter see that a ``gather``-ed task descends from the request that
    holds a savepoint even when no context variable says so.
    """
    loop = asyncio.get_running_loop()
    if loop in _tracked_loops:
        return
    previous = loop.get_task_factory()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        if previous is not None:
            task = previous(loop, coro, **kwargs)
        else:
            task = asyncio.Task(coro, loop=loop, **kwargs)
        parent = asyncio.current_task(loop)
        if parent is not None and isinstance(task, asyncio.Task):
            _parents[task] = parent
        return task

    loop.set_task_factory(factory)
    _tracked_loops.add(loop)


def _actor() -> Any:
    loop = asyncio._get_running_loop()  # no exception raised in plain threads, unlike current_task
    task = asyncio.current_task(loop) if loop is not None else None
    return task if task is not None else threading.current_thread()


def _finished(actor: Any) -> bool:
    if isinstance(actor, asyncio.Task):
        return actor.done()
    if isinstance(actor, threading.Thread):
        return not actor.is_alive()
    return False


def _ancestors(actor: Any, lineage: tuple[Any, ...]) -> set[Any]:
    """Every task/thread ``actor`` descends from: its creators, and the context lineage."""
    found = set(lineage)
    parent = _parents.get(actor) if isinstance(actor, asyncio.Task) else None
    while parent is not None and parent not in found:
        found.add(parent)
        parent = _parents.get(parent)
    return found


#: (module prefix, what it is) of code that runs an ASGI app in another thread's event loop,
#: looked for in the stacks of the test's thread and of the thread that used the connection.
_PORTALS = (
    ("starlette.testclient", "Starlette's / FastAPI's sync TestClient"),
    ("litestar.testing", "Litestar's TestClient / AsyncTestClient"),
    ("anyio.from_thread", "an anyio blocking portal"),
)

#: how to drive an async app inside the test's own event loop.
LOOP_FIX = (
    "Drive the app in the test's own event loop: an async test with "
    "`httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=\"http://test\")`, "
    "running the app's lifespan in that loop too (`async with app.router.lifespan_context(app):`"
    ", or asgi-lifespan's `LifespanManager(app)`); see the README section \"Test clients\"."
)


def _portal(threads: tuple[int, ...]) -> str | None:
    """What runs the app in another thread's loop, read from the stacks of ``threads``."""
    frames = sys._current_frames()
    modules: set[str] = set()
    for ident in threads:
        frame = frames.get(ident)
        while frame is not None:
            modules.add(str(frame.f_globals.get("__name__", "")))
            frame = frame.f_back
    for prefix, name in _PORTALS:
        if any(module == prefix or module.startswith(prefix + ".") for module in modules):
            return name
    return None


class LoopGuard:
    """The event loop an async test connection belongs to (the test's), and what to do when
    the connection is about to be used from another loop.

    An asyncpg connection works only in the loop it was made in ("attached to a different
    loop"); aiosqlite's answers are delivered to the loop that made the connection's futures.
    An app driven from another thread's loop (a sync ``TestClient``'s blocking portal) would
    turn that error into a bare 500. :meth:`check` raises :class:`ContextError` before anything
    is sent and reports it (the plugin records it like an escape, so the test fails even if the
    app swallows it).

    :param loop: the test's event loop (where the connection was made and its transaction began).
    :param report: called with the message of every refused use.
    """

    __slots__ = ("loop", "report", "thread")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, report: Callable[[str], None] | None = None
    ) -> None:
        self.loop = loop
        self.thread = threading.current_thread()
        self.report = report

    def check(self, what: str) -> None:
        """Raise :class:`ContextError` if the running loop is not the test's.

        :param what: what was about to use the connection, e.g. ``"an AsyncSession was made"``.
        """
        running = asyncio._get_running_loop()
        if running is None or running is self.loop:
            return
        __tracebackhide__ = True
        current = threading.current_thread()
        portal = _portal((self.thread.ident or 0, current.ident or 0))
        cause = (
            f"{portal} runs the app in a thread of its own, with its own event loop."
            if portal is not None
            else "The app runs in another thread or event loop (a test client's blocking "
            "portal, asyncio.run(), a thread with a loop of its own)."
        )
        message = (
            f"{what} on the test's async connection from the event loop of thread "
            f"{current.name!r}, but that connection belongs to the test's event loop (thread "
            f"{self.thread.name!r}): an async driver connection works only in the loop it was "
            f"made in. {cause} {LOOP_FIX}"
        )
        if self.report is not None:
            self.report(message)
        raise ContextError(message)


@dataclass
class _Entry:
    name: str
    actor: Any
    lineage: tuple[Any, ...]
    #: set while the savepoint holds no writes of its owner: releasing it loses nothing (see
    #: :meth:`SavepointArbiter.yield_when_covered`); returns ``True`` if it released it.
    release_if_idle: Callable[[], bool] | None = None

    def holder(self) -> Any:
        """Who holds the savepoint now: its opener, or, once that task or thread has
        finished, the nearest ancestor still running (``None`` if all have finished).

        A task started by ``gather`` that opened the request's session savepoint and
        returned leaves that savepoint to the request, which is its parent.
        """
        chain = [self.actor]
        parent = _parents.get(self.actor) if isinstance(self.actor, asyncio.Task) else None
        while parent is not None and parent not in chain:
            chain.append(parent)
            parent = _parents.get(parent)
        chain.extend(reversed(self.lineage))
        for actor in chain:
            if not _finished(actor):
                return actor
        return None


class SavepointArbiter:
    """Keeps the savepoints of one test connection in stack order (see the module doc).

    :param connection: the test connection (an ``AsyncConnection``'s ``sync_connection``).
    :param timeout: seconds a task waits for another's savepoint before giving up.
    """

    def __init__(self, connection: Connection, *, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._is_async = connection.dialect.is_async
        self._stack: list[_Entry] = []
        self._condition = threading.Condition()
        self._waiters: list[asyncio.Future[None]] = []
        self._sleeping = 0
        self._root: Any = None
        self._connection = connection
        #: set by the async test binding: savepoints from another event loop are refused.
        self.loop_guard: LoopGuard | None = None
        self._hook(connection)

    def _hook(self, connection: Connection) -> None:
        """Wrap the connection's own savepoint and rollback steps (instance attributes that
        shadow ``Connection._savepoint_impl`` and its siblings, where SQLAlchemy dispatches
        the matching events).

        Not event listeners: any listener on a connection makes SQLAlchemy dispatch its
        (empty) per-statement events for every statement (``Connection._has_events``), about
        a dozen listener-collection walks per statement, measured at 3-4% of an ORM test's
        time on asyncpg. Wrapping also gives exact before/after points: a savepoint enters
        the stack before its ``SAVEPOINT`` runs (and leaves it if that fails) and leaves it
        once its ``RELEASE`` / ``ROLLBACK TO`` has run (if that fails the entry stays until
        the outer rollback resets the stack); a rollback of the whole transaction (by the
        test itself) ends every savepoint.
        """
        savepoint = connection._savepoint_impl
        release = connection._release_savepoint_impl
        rollback_to = connection._rollback_to_savepoint_impl
        rollback = connection._rollback_impl

        def savepoint_impl(name: str | None = None) -> str:
            if self.loop_guard is not None:  # every session's first statement opens one
                self.loop_guard.check("a transaction (SAVEPOINT) was about to begin")
            entry = self._on_savepoint(connection, name)
            try:
                return savepoint(name)
            except BaseException:
                self._discard(entry)
                raise

        def release_impl(name: str) -> None:
            self._on_end(name)
            release(name)
            self._pop(name)

        def rollback_to_impl(name: str) -> None:
            self._on_end(name)
            rollback_to(name)
            self._pop(name)

        def rollback_impl() -> None:
            try:
                rollback()
            finally:
                self._forget()

        connection._savepoint_impl = savepoint_impl  # type: ignore[method-assign]
        connection._release_savepoint_impl = release_impl  # type: ignore[method-assign]
        connection._rollback_to_savepoint_impl = rollback_to_impl  # type: ignore[method-assign]
        connection._rollback_impl = rollback_impl  # type: ignore[method-assign]

    def reset(self) -> None:
        """Forget every savepoint (an outer transaction begins or ended) and wake all waiters.

        The calling thread becomes the root: its savepoints are everyone's ancestors.
        """
        self._root = threading.current_thread()
        if self._stack or self._waiters:
            with self._condition:
                self._stack.clear()
            self._wake()

    # -- events ----------------------------------------------------------------------------

    def _forget(self) -> None:
        if self._stack:
            with self._condition:
                self._stack.clear()
            self._wake()

    def _on_savepoint(self, connection: Connection, name: str | None) -> _Entry:
        actor, lineage = _actor(), _lineage.get()
        if self._stack or (
            not self._is_async and getattr(connection, "_nested_transaction", None) is not None
        ):
            # Someone's savepoint is open (or SQLAlchemy's bookkeeping is mid-step): wait
            # until this actor may open one. An empty stack needs no wait (the usual case).
            ancestors: set[Any] | None = None

            def may_open() -> bool:
                nonlocal ancestors
                if not self._stack:
                    return True
                if ancestors is None:
                    ancestors = _ancestors(actor, lineage)
                holder = self._stack[-1].holder()
                return (
                    holder is None or holder is actor or holder is self._root or holder in ancestors
                )

            self._wait(may_open, actor, "open a savepoint", consistent=True)
        while self._stack:
            # The top savepoint holds no writes: release it rather than nest this one inside
            # it, so that its owner's later rollback cannot undo what this one commits.
            release = self._stack[-1].release_if_idle
            if release is None or not release():
                break
        if name is None:  # SQLAlchemy names it right after this event
            name = f"sa_savepoint_{getattr(connection, '_Connection__savepoint_seq', 0) + 1}"
        entry = _Entry(name, actor, lineage)
        with self._condition:
            self._stack.append(entry)
        if not lineage or lineage[-1] is not actor:
            # Tasks and threads this one starts from now on descend from it.
            _lineage.set((*lineage, actor))
        return entry

    def yield_when_covered(self, name: str, release_if_idle: Callable[[], bool] | None) -> None:
        """Let savepoint ``name`` give way when a savepoint is about to be opened on top of it.

        In production every session has a connection of its own: a session that only read
        and then rolls back cannot undo another session's commit. On the one test connection
        a savepoint opened on top of it would end up inside it, and its ``ROLLBACK TO`` would
        undo that commit. So an app connection's savepoint that holds no writes registers
        ``release_if_idle``: called, in the opener's task or thread, just before a savepoint is
        opened on top of it (by someone allowed to, see the module doc), it releases its
        savepoint (and re-opens one before its owner's next statement) and returns ``True``;
        ``False`` if it had written meanwhile. ``None`` withdraws the offer.
        """
        for entry in reversed(self._stack):
            if entry.name == name:
                entry.release_if_idle = release_if_idle
                return

    def _discard(self, entry: _Entry) -> None:
        """Remove ``entry`` (its ``SAVEPOINT`` failed) and wake the waiters."""
        with self._condition:
            if entry in self._stack:
                self._stack.remove(entry)
        self._wake()

    def _on_end(self, name: str) -> None:
        def is_top() -> bool:
            names = [entry.name for entry in self._stack]
            return name not in names or names[-1] == name

        self._wait(is_top, _actor(), f"end savepoint {name}")

    def _pop(self, name: str) -> None:
        with self._condition:
            if self._stack and self._stack[-1].name == name:
                self._stack.pop()
        self._wake()

    def _in_step(self) -> bool:
        """``True`` when SQLAlchemy's own innermost savepoint is the top of the stack, i.e. no
        other thread is between running RELEASE and updating the connection's bookkeeping."""
        nested = getattr(self._connection, "_nested_transaction", None)
        sa_top = getattr(nested, "_savepoint", None)
        return sa_top == (self._stack[-1].name if self._stack else None)

    # -- waiting ---------------------------------------------------------------------------

    def _wait(
        self, ready: Callable[[], bool], actor: Any, what: str, consistent: bool = False
    ) -> None:
        deadline = time.monotonic() + self.timeout
        while not ready() or (consistent and not self._is_async and not self._in_step()):
            if ready():  # another thread is finishing its RELEASE: poll briefly
                if time.monotonic() > deadline:
                    return  # bookkeeping never settled: let SQLAlchemy report what it sees
                time.sleep(0.001)
                continue
            holder = self._stack[-1]
            owner = holder.holder()
            if owner is None and deadline - time.monotonic() > _ORPHAN_GRACE:
                # Opened by a task/thread that has finished, as have all its ancestors: only
                # someone closing that session could end it. Give them a moment, not 30 s.
                deadline = time.monotonic() + _ORPHAN_GRACE
            if owner is None and time.monotonic() >= deadline:
                raise ContextError(
                    f"cannot {what} on the test connection: savepoint {holder.name} was opened "
                    "by a task or thread that has finished without ending it (a session or "
                    "connection it used was never closed or committed), so waiting would never "
                    "end. Close sessions where they are made: `with Session(engine) as "
                    "session:` / `async with AsyncSession(engine) as session:`."
                )
            if owner is actor:
                raise ContextError(
                    f"cannot {what} on the test connection: savepoint {holder.name} of another "
                    "context, opened by this same task/thread, is still open, so waiting would "
                    "never end. End (commit, roll back or close) that session first, or run the "
                    "two contexts as separate tasks."
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ContextError(
                    f"waited {self.timeout:.0f} s to {what} on the test connection while "
                    f"savepoint {holder.name} of another context stayed open. Contexts sharing "
                    "the test connection are serialized transaction by transaction; one of them "
                    "never ended its transaction."
                )
            if self._is_async and in_greenlet():
                # Woken by a release, or every 50 ms to notice a holder task that finished.
                future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._waiters.append(future)
                try:
                    await_only(asyncio.wait_for(future, min(remaining, 0.05)))
                except asyncio.TimeoutError:
                    pass
            else:
                with self._condition:
                    if not ready():
                        self._sleeping += 1
                        try:
                            self._condition.wait(min(remaining, 0.05))
                        finally:
                            self._sleeping -= 1

    def _wake(self) -> None:
        if self._sleeping:  # threads asleep on the condition (counted under its lock)
            with self._condition:
                self._condition.notify_all()
        if not self._waiters:
            return
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)
