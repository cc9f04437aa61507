"""Hooks pytest-ctxdb calls; implement them in a ``conftest.py`` or plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


@pytest.hookspec
def pytest_ctxdb_setup_schema(connection: Connection, alias: str) -> None:
    """Create schema objects in a fresh test database (raw DDL, extensions, seed data).

    Called once per alias and run, after the ``MetaData`` of ini ``db_metadata`` were created,
    inside the same transaction, which is committed afterwards (PostgreSQL DDL is
    transactional; MySQL commits DDL implicitly).

    :param connection: a sync ``Connection`` on the test database (never the database of the URL).
    :param alias: the alias being built, e.g. ``"default"``.
    """
