"""Routes written in Core with ``with engine.begin() as connection:``."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlmodel import Session, select

from heroes_app.models import Hero, Team


def test_disband_a_team(client: TestClient, db_session: Session) -> None:
    team = Team(name="Preventers", headquarters="Sharp Tower")
    db_session.add_all(
        [
            Hero(name="Rusty-Man", secret_name="Tommy Sharp", team=team),
            Hero(name="Spider-Boy", secret_name="Pedro Parqueador", team=team),
            Hero(name="Deadpond", secret_name="Dive Wilson"),
        ]
    )
    db_session.commit()

    response = client.post(f"/teams/{team.id}/disband")

    assert response.json() == {"released_heroes": 2}
    # Core wrote behind the session's back: query columns, not the loaded objects.
    assert db_session.exec(select(func.count()).select_from(Team)).one() == 0
    assert db_session.exec(select(Hero.team_id)).all() == [None, None, None]
    assert client.post(f"/teams/{team.id}/disband").status_code == 404


def test_import_is_all_or_nothing(client: TestClient, db_session: Session) -> None:
    team_id = client.post("/teams/", json={"name": "Z-Force", "headquarters": "Bar"}).json()["id"]
    heroes = [
        {"name": "Black Lion", "secret_name": "Trevor Challa", "team_id": team_id},
        {"name": "Princess Sure-E", "secret_name": "Sure-E"},
    ]

    assert client.post("/heroes/import", json=heroes).json() == {"imported": 2}
    bad = [{"name": "Captain North", "secret_name": "Esteban"}, {**heroes[0], "team_id": 999_999}]
    assert client.post("/heroes/import", json=bad).status_code == 409  # whole batch rolled back

    names = db_session.exec(select(Hero.name).order_by(Hero.name)).all()
    assert names == ["Black Lion", "Princess Sure-E"]
