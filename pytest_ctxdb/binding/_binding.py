"""A test's binding: per declared alias, an outer transaction (or, with
``transaction=True``, committing work), all ended together at the end of the test."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from .._errors import ContextError, TransactionError
from .._settings import DEFAULT_ALIAS
from ._arbiter import LoopGuard, track_tasks
from ._async import AsyncOuterTransaction
from ._commit import CommitTransaction
from ._outer import OuterTransaction, arbiter_of

__all__ = ("AsyncTestBinding", "BindingPlan", "Cleanup", "TestBinding")

#: ``cleanup(alias, reset_sequences)`` -> (empty the tables, prepare or ``None``): how a
#: commit-mode test of ``alias`` is cleaned up after, and prepared before.
Cleanup = Callable[
    [str, bool], tuple[Callable[[Connection], None], Callable[[Connection], None] | None]
]


class BindingPlan:
    """What one test asked for: which aliases, and rollback or commit mode.

    :param aliases: the declared aliases, the first one being the test's primary
        (``db_session`` is its session); ``@pytest.mark.db(using=...)`` or ``("default",)``.
    :param transaction: ``True`` for real commits and emptied tables afterwards.
    :param reset_sequences: with ``transaction``, also restart sequences / AUTO_INCREMENT.
    :param mirrors: alias -> alias whose test connection and transaction it shares.
    """

    __slots__ = ("aliases", "mirrors", "reset_sequences", "transaction")

    def __init__(
        self,
        aliases: Sequence[str] = (DEFAULT_ALIAS,),
        *,
        transaction: bool = False,
        reset_sequences: bool = False,
        mirrors: Mapping[str, str] | None = None,
    ) -> None:
        self.aliases = tuple(aliases)
        self.transaction = transaction
        self.reset_sequences = reset_sequences
        self.mirrors = dict(mirrors or {})

    @property
    def primary(self) -> str:
        return self.aliases[0]

    def declares(self, alias: str) -> bool:
        """``True`` if the test may use ``alias`` (declared, or a mirror of a declared one)."""
        return alias in self.aliases or self.mirrors.get(alias) in self.aliases

    def physical(self, alias: str) -> str:
        """The alias whose connection ``alias`` uses (itself unless mirrored).

        A mirror may be used whenever its target is declared.

        :raises ContextError: ``alias`` is neither declared nor a mirror of a declared alias.
        """
        if not self.declares(alias):
            raise ContextError(
                f"this test touched database alias {alias!r}, which it did not declare; "
                f"declared: {', '.join(self.aliases)}. Add it: "
                f"@pytest.mark.db(using=[{', '.join(repr(a) for a in (*self.aliases, alias))}])."
            )
        return self.mirrors.get(alias, alias)

    def physical_aliases(self) -> list[str]:
        seen: list[str] = []
        for alias in self.aliases:
            target = self.mirrors.get(alias, alias)
            if target not in seen:
                seen.append(target)
        return seen


def _raise_collected(errors: list[tuple[str, BaseException]]) -> None:
    if len(errors) == 1 and isinstance(errors[0][1], TransactionError):
        raise errors[0][1]
    if errors:
        lines = "; ".join(f"alias {alias!r}: {type(exc).__name__}: {exc}" for alias, exc in errors)
        raise TransactionError(f"ending the test's transactions failed: {lines}") from errors[0][1]


class TestBinding:
    """The transactions of one test, per declared alias (sync).

    :param connect: ``connect(alias, fresh)`` returns a connection of ``alias`` with no
        transaction begun: the reused one (``fresh=False``, rollback mode) or a new one.
    :param plan: what the test declared.
    :param cleanup: see :data:`Cleanup`; used in commit mode.

    :meth:`outer` opens an alias on first use; :meth:`close` ends every one of them, even
    when one fails, then raises what failed (naming each alias).
    """

    __test__ = False

    def __init__(
        self,
        connect: Callable[[str, bool], Connection],
        plan: BindingPlan | None = None,
        cleanup: Cleanup | None = None,
    ) -> None:
        self._connect = connect
        self.plan = plan or BindingPlan()
        self._cleanup = cleanup
        self._outer: dict[str, OuterTransaction | CommitTransaction] = {}

    def outer(self, alias: str) -> OuterTransaction | CommitTransaction:
        """Return the transaction ``alias`` uses, beginning it on first use.

        :raises ContextError: ``alias`` was not declared by the test.
        """
        physical = self.plan.physical(alias)
        outer = self._outer.get(physical)
        if outer is None:
            if self.plan.transaction:
                assert self._cleanup is not None, "commit mode needs a cleanup"
                cleanup, prepare = self._cleanup(physical, self.plan.reset_sequences)
                outer = CommitTransaction(self._connect(physical, True), cleanup, prepare)
            else:
                outer = OuterTransaction(self._connect(physical, False))
            self._outer[physical] = outer
        return outer

    def close(self) -> None:
        """End every transaction: roll back (or empty the tables in commit mode).

        :raises Exception: the one error, or a :class:`TransactionError` naming each alias
            whose end failed; every alias is ended regardless.
        """
        errors: list[tuple[str, BaseException]] = []
        outers, self._outer = self._outer, {}
        for alias, outer in outers.items():
            try:
                outer.rollback()
            except Exception as exc:  # noqa: BLE001 - collected and re-raised below
                errors.append((alias, exc))
        _raise_collected(errors)


class AsyncTestBinding:
    """The async twin of :class:`TestBinding`; every step runs the same sync policy."""

    __test__ = False

    def __init__(
        self,
        connect: Callable[[str, bool], Awaitable[AsyncConnection]],
        plan: BindingPlan | None = None,
        cleanup: Cleanup | None = None,
    ) -> None:
        self._connect = connect
        self.plan = plan or BindingPlan()
        self._cleanup = cleanup
        self._outer: dict[str, AsyncOuterTransaction] = {}
        #: the test's event loop, set by :meth:`open_all`; its connections refuse other loops.
        self.loop_guard: LoopGuard | None = None

    async def open(self, alias: str) -> AsyncOuterTransaction:
        """Begin (once) and return the transaction of ``alias``."""
        physical = self.plan.physical(alias)
        outer = self._outer.get(physical)
        if outer is None:
            if self.plan.transaction:
                assert self._cleanup is not None, "commit mode needs a cleanup"
                cleanup, prepare = self._cleanup(physical, self.plan.reset_sequences)
                connection = await self._connect(physical, True)
                outer = await AsyncOuterTransaction.begin(
                    connection, lambda sync: CommitTransaction(sync, cleanup, prepare)
                )
            else:
                outer = await AsyncOuterTransaction.begin(await self._connect(physical, False))
            self._outer[physical] = outer
        return outer

    async def open_all(self) -> None:
        """Open every declared alias (async work cannot begin lazily from sync code), in the
        running loop: the test's. From now on their connections refuse use from another event
        loop (:class:`~pytest_ctxdb.binding._arbiter.LoopGuard`)."""
        track_tasks()
        guard = self.loop_guard = LoopGuard(asyncio.get_running_loop())
        for alias in self.plan.physical_aliases():
            outer = await self.open(alias)
            sync_connection = outer.connection.sync_connection
            arbiter = None if sync_connection is None else arbiter_of(sync_connection)
            if arbiter is not None:
                arbiter.loop_guard = guard

    def outer(self, alias: str) -> AsyncOuterTransaction:
        """Return the opened transaction of ``alias``.

        :raises ContextError: ``alias`` was not declared by the test.
        """
        return self._outer[self.plan.physical(alias)]

    async def close(self) -> None:
        """End every transaction; see :meth:`TestBinding.close`."""
        errors: list[tuple[str, BaseException]] = []
        outers, self._outer = self._outer, {}
        for alias, outer in outers.items():
            sync_connection = outer.connection.sync_connection
            arbiter = None if sync_connection is None else arbiter_of(sync_connection)
            if arbiter is not None:
                arbiter.loop_guard = None
            try:
                await outer.rollback()
            except Exception as exc:  # noqa: BLE001 - collected and re-raised below
                errors.append((alias, exc))
        _raise_collected(errors)
