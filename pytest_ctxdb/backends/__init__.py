"""One backend module per dialect, behind the small :class:`Backend` protocol."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL

from .._errors import ConfigurationError
from .._settings import mask_url
from ._base import Backend, DriverPair
from .mysql import MySQLBackend
from .postgresql import PostgreSQLBackend
from .sqlite import SQLiteBackend

__all__ = (
    "Backend",
    "DriverPair",
    "MySQLBackend",
    "PostgreSQLBackend",
    "SQLiteBackend",
    "backend_for",
)


def backend_for(
    url: URL, *, sqlite_directory: Path, setting: str, template_directory: Path | None = None
) -> Backend:
    """Return the backend of ``url``'s dialect.

    :param sqlite_directory: where SQLite test database files are made.
    :param template_directory: where SQLite template files are kept across runs.
    :param setting: the option that gave ``url``, for the error message.
    :raises ConfigurationError: the dialect is not one pytest-ctxdb supports.
    """
    name = url.get_backend_name()
    if name == "sqlite":
        return SQLiteBackend(sqlite_directory, template_directory)
    if name == "postgresql":
        return PostgreSQLBackend()
    if name in ("mysql", "mariadb"):
        return MySQLBackend()
    raise ConfigurationError(
        f"{setting}: dialect {name!r} of {mask_url(url)} is not supported; "
        "pytest-ctxdb supports sqlite, postgresql, mysql and mariadb."
    )
