"""Load the ``MetaData`` objects named by ini ``db_metadata`` and create their tables."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from sqlalchemy import MetaData

from .._errors import ConfigurationError
from .._importing import import_object

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

__all__ = ("create_schema", "load_metadata")


def _import_one(spec: str, setting: str) -> MetaData:
    obj, _owner, _name = import_object(spec, setting)
    if not isinstance(obj, MetaData):
        candidate = getattr(obj, "metadata", None)
        if isinstance(candidate, MetaData):
            return candidate
        raise ConfigurationError(
            f"{setting}: {spec!r} is a {type(obj).__name__}, not a sqlalchemy.MetaData "
            "(nor a declarative base with .metadata)."
        )
    return obj


def load_metadata(specs: Iterable[str], setting: str = "db_metadata") -> tuple[MetaData, ...]:
    """Import every ``module:attribute`` string and return its ``MetaData``.

    :param specs: import strings such as ``"myapp.models:Base.metadata"``; a declarative base
        (``"myapp.models:Base"``) is accepted and its ``.metadata`` used.
    :param setting: the setting name for error messages.
    :returns: the ``MetaData`` objects, in order, without duplicates.
    :raises ConfigurationError: a string does not import or names something else.
    """
    found: list[MetaData] = []
    for spec in specs:
        metadata = _import_one(spec.strip(), setting)
        if not any(metadata is seen for seen in found):
            found.append(metadata)
    return tuple(found)


def create_schema(connection: Connection, metadata: Sequence[MetaData]) -> None:
    """Create every table of ``metadata`` on ``connection`` (``MetaData.create_all``)."""
    for each in metadata:
        each.create_all(connection)
