"""A test's binding: one outer transaction per alias, all rolled back at the end."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from .._errors import TransactionError
from ._async import AsyncOuterTransaction
from ._outer import OuterTransaction

__all__ = ("AsyncTestBinding", "TestBinding")


def _raise_collected(errors: list[tuple[str, BaseException]]) -> None:
    if len(errors) == 1:
        raise errors[0][1]
    if errors:
        lines = "; ".join(f"alias {alias!r}: {type(exc).__name__}: {exc}" for alias, exc in errors)
        raise TransactionError(
            f"rolling back the test's outer transactions failed: {lines}"
        ) from errors[0][1]


class TestBinding:
    """The outer transactions of one test, per alias (sync).

    :param connect: returns the connection to use for an alias (no transaction begun).

    :meth:`outer` opens an alias's outer transaction on first use; :meth:`close` rolls
    back every one of them, even when one rollback fails, then raises what failed.
    """

    __test__ = False
    __slots__ = ("_connect", "_outer")

    def __init__(self, connect: Callable[[str], Connection]) -> None:
        self._connect = connect
        self._outer: dict[str, OuterTransaction] = {}

    def outer(self, alias: str) -> OuterTransaction:
        """Return the outer transaction of ``alias``, beginning it on first use."""
        outer = self._outer.get(alias)
        if outer is None:
            outer = self._outer[alias] = OuterTransaction(self._connect(alias))
        return outer

    def close(self) -> None:
        """Roll back every outer transaction.

        :raises Exception: the one error, or a :class:`TransactionError` naming each alias
            whose rollback failed.
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
    """The async twin of :class:`TestBinding`; rollbacks run the same sync policy."""

    __test__ = False
    __slots__ = ("_connect", "_outer")

    def __init__(self, connect: Callable[[str], Awaitable[AsyncConnection]]) -> None:
        self._connect = connect
        self._outer: dict[str, AsyncOuterTransaction] = {}

    async def open(self, alias: str) -> AsyncOuterTransaction:
        """Begin (once) and return the outer transaction of ``alias``."""
        outer = self._outer.get(alias)
        if outer is None:
            outer = self._outer[alias] = await AsyncOuterTransaction.begin(
                await self._connect(alias)
            )
        return outer

    def outer(self, alias: str) -> AsyncOuterTransaction:
        """Return the already opened outer transaction of ``alias``.

        :raises KeyError: :meth:`open` was not awaited for ``alias``.
        """
        return self._outer[alias]

    async def close(self) -> None:
        """Roll back every outer transaction; see :meth:`TestBinding.close`."""
        errors: list[tuple[str, BaseException]] = []
        outers, self._outer = self._outer, {}
        for alias, outer in outers.items():
            try:
                await outer.rollback()
            except Exception as exc:  # noqa: BLE001 - collected and re-raised below
                errors.append((alias, exc))
        _raise_collected(errors)
