"""For apps that want the test's own session in their routes: ``app.dependency_overrides``
(FastAPI's "Testing Dependencies with Overrides"; SQLModel's tutorial does the same).

Not needed with ``db_engines``: the app's ``get_session`` already runs inside the test's
transaction. With the override the route gets the very ``db_session`` object, so the test and
the route share pending objects and the identity map.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from heroes_app.db import get_session
from heroes_app.main import app
from heroes_app.models import Hero, Team


@pytest.fixture
def client_on_db_session(db_session: Session) -> Iterator[TestClient]:
    app.dependency_overrides[get_session] = lambda: db_session
    try:
        with TestClient(app) as client:
            yield client
    finally:
        app.dependency_overrides.clear()


def test_the_route_gets_the_test_session(
    client_on_db_session: TestClient, db_session: Session
) -> None:
    team = Team(name="Preventers", headquarters="Sharp Tower")
    db_session.add(team)
    db_session.flush()  # an id, no commit

    response = client_on_db_session.post(
        "/heroes/", json={"name": "Rusty-Man", "secret_name": "Tommy Sharp", "team_id": team.id}
    )

    hero = db_session.get(Hero, response.json()["id"])
    assert hero is not None and hero.team is team  # the same session, the same objects
    assert [h.name for h in team.heroes] == ["Rusty-Man"]
