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


@pytest.hookspec
def pytest_ctxdb_fingerprint(alias: str) -> str | list[str] | None:
    """Add settings the schema depends on to the template's fingerprint.

    The template database is named after a fingerprint of what builds it (the ``db_metadata``
    DDL, the source of the ``pytest_ctxdb_setup_schema`` implementations, the Alembic
    scripts); it does not see what that code reads at run time, such as the settings that seed
    data is built from. Return those values here: when one changes, the next run builds a new
    template by itself (no ``--db-create`` needed); while none changes, the kept template is
    cloned.

    Called once per alias and run (on each pytest-xdist worker), when the alias's test
    database is provisioned, before the first test that uses it: never in a run whose
    selected tests use no database. Every implementation's result counts, in the order pytest
    calls them.

    :param alias: the alias whose template is looked up, e.g. ``"default"``.
    :returns: a string, a list of strings, or ``None`` (nothing to add).
    """
