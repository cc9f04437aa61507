"""Every test starts with empty tables, whatever the app committed in the one before.

The two runs are the same on purpose: whichever runs second would fail on its first assertion
(and on the unique team name) if the other's writes had leaked.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlmodel import Session, SQLModel, select

from heroes_app.models import AuditEntry, Hero, Team


def count(session: Session, model: type[SQLModel]) -> int:
    return session.exec(select(func.count()).select_from(model)).one()


@pytest.mark.parametrize("run", ["first", "second"])
def test_each_test_starts_empty(client: TestClient, db_session: Session, run: str) -> None:
    assert [count(db_session, model) for model in (Team, Hero, AuditEntry)] == [0, 0, 0]

    team = client.post("/teams/", json={"name": "Preventers", "headquarters": "Tower"})
    team_id = team.json()["id"]
    response = client.post(
        "/heroes/", json={"name": "Rusty-Man", "secret_name": "Tommy", "team_id": team_id}
    )

    assert response.status_code == 200
    assert [count(db_session, model) for model in (Team, Hero)] == [1, 1]
