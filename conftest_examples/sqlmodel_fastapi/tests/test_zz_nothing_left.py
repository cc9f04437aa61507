"""Runs last (file order): nothing stayed in the test database, and the app's own database
was never opened."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, func
from sqlalchemy.pool import NullPool
from sqlmodel import Session, select

from heroes_app.models import AuditEntry, Hero, Team

if TYPE_CHECKING:  # two conftest.py files: import neither at run time
    from tests.conftest import AppDatabaseWatch


def test_nothing_is_left_in_the_test_database(db_engine: Engine) -> None:
    """A separate engine on the test database, outside every test's transaction."""
    engine = create_engine(db_engine.url, poolclass=NullPool)
    try:
        with Session(engine) as session:
            for model in (Team, Hero, AuditEntry):
                assert session.exec(select(func.count()).select_from(model)).one() == 0, model
    finally:
        engine.dispose()


def test_the_apps_own_database_is_never_touched(app_database_watch: AppDatabaseWatch) -> None:
    """The app's engine opened no connection during the run, and its SQLite file (the default
    ./heroes.db) was neither created nor written."""
    assert app_database_watch.connections == []
    assert app_database_watch.file_state() == app_database_watch.before
