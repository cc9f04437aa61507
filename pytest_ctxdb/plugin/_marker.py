"""The ``db`` marker: which databases a test uses, and how."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from .._settings import DEFAULT_ALIAS, is_alias_name

__all__ = ("MARKER_HELP", "DbMarker", "MarkerError", "read_marker")

ALL_ALIASES = "__all__"

MARKER_HELP = (
    "db(using='default', transaction=False, reset_sequences=False): give the test the "
    "databases of these aliases (a name, a list of names, or '__all__'), each in an outer "
    "transaction rolled back afterwards; the first one is db_session's; an alias without a URL "
    "gets a test database on the default alias's server. transaction=True: real "
    "commits, every table emptied afterwards; reset_sequences=True also restarts sequences."
)


class MarkerError(ValueError):
    """A ``db`` marker argument is invalid; the message names the marker and the fix."""


@dataclass(frozen=True)
class DbMarker:
    """The validated arguments of ``@pytest.mark.db``.

    :ivar using: the aliases, the first one being the test's primary.
    """

    using: tuple[str, ...]
    transaction: bool = False
    reset_sequences: bool = False


def _signature(
    using: str | Sequence[str] | None = None,
    *,
    transaction: bool = False,
    reset_sequences: bool = False,
) -> tuple[Any, bool, bool]:
    return using, transaction, reset_sequences


def read_marker(item: pytest.Item, aliases: Sequence[str]) -> DbMarker | None:
    """Validate the closest ``db`` marker of ``item``.

    :param aliases: every alias known so far (URLs, mirrors, derived), default first: what
        ``using="__all__"`` means. A name not among them is accepted if it can be an alias
        (the run then gives it a test database of its own).
    :returns: the marker's arguments, or ``None`` when the test has no ``db`` marker.
    :raises MarkerError: a bad argument; the message names the marker and how to fix it.
    """
    marker = item.get_closest_marker("db")
    if marker is None:
        return None
    try:
        using, transaction, reset_sequences = _signature(*marker.args, **marker.kwargs)
    except TypeError as exc:
        raise MarkerError(
            f"@pytest.mark.db: {exc}".replace("_signature()", "db()")
            + "; valid: db(using=..., transaction=False, reset_sequences=False)"
        ) from None
    for name, value in (("transaction", transaction), ("reset_sequences", reset_sequences)):
        if not isinstance(value, bool):
            raise MarkerError(f"@pytest.mark.db({name}={value!r}): {name} must be True or False")
    if reset_sequences and not transaction:
        raise MarkerError(
            "@pytest.mark.db(reset_sequences=True) needs transaction=True: in rollback mode "
            "sequences are not rolled back by the database"
        )
    if using is None:
        names: tuple[str, ...] = (DEFAULT_ALIAS,)
    elif using == ALL_ALIASES:
        names = tuple(aliases)
    elif isinstance(using, str):
        names = (using,)
    elif isinstance(using, (list, tuple)) and using and all(isinstance(n, str) for n in using):
        names = tuple(dict.fromkeys(using))
    else:
        raise MarkerError(
            f"@pytest.mark.db(using={using!r}): using must be an alias name, a non-empty list "
            f"of names, or {ALL_ALIASES!r}"
        )
    for name in names:
        if name not in aliases and not is_alias_name(name):
            raise MarkerError(
                f"@pytest.mark.db(using={using!r}): {name!r} is not an alias name (letters, "
                f"digits and _, not starting with a digit); known aliases: {', '.join(aliases)}"
            )
    return DbMarker(names, transaction, reset_sequences)
