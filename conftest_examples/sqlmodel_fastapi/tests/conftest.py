"""The HTTP client, and a watch on the app's own database."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, make_url
from sqlmodel import Session

from heroes_app.db import engine
from heroes_app.main import app


@pytest.fixture
def client(db_session: Session) -> Iterator[TestClient]:
    """FastAPI's ``TestClient`` for the app, its lifespan run (``create_db_and_tables``).

    It requests ``db_session`` so that the test's connection and outer transaction are open
    before the app runs: every ``Session(engine)`` of a request, the background tasks'
    ``SessionLocal()`` and ``engine.begin()`` then run on that connection, and their commits
    release savepoints. All of it is rolled back after the test.
    """
    with TestClient(app) as client:
        yield client


@dataclass
class AppDatabaseWatch:
    """What the app's own database looked like before the first test, and every DBAPI
    connection the app's engine opened since."""

    path: Path | None  # the SQLite file the app's URL names, if it names one
    before: tuple[int, int] | None  # its (size, mtime) then; None if it did not exist
    connections: list[str] = field(default_factory=list)

    def file_state(self) -> tuple[int, int] | None:
        if self.path is None or not self.path.exists():
            return None
        stat = self.path.stat()
        return stat.st_size, stat.st_mtime_ns


@pytest.fixture(scope="session", autouse=True)
def app_database_watch() -> Iterator[AppDatabaseWatch]:
    """Set up before the first test: records the state of the app's SQLite file (the default
    ``./heroes.db``) and listens for any real connection of the app's engine."""
    url = engine.url
    path = None
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(make_url(str(url)).database or "").resolve()
    watch = AppDatabaseWatch(path, None)
    watch.before = watch.file_state()

    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        watch.connections.append(repr(dbapi_connection))

    event.listen(engine, "connect", on_connect)
    yield watch
    event.remove(engine, "connect", on_connect)
