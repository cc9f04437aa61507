"""The routes, called with FastAPI's TestClient and checked with the ``db_session`` fixture
(SQLModel's ``Session``, from ``db_session_class``), and the other way round."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from heroes_app import services
from heroes_app.main import app
from heroes_app.models import AuditEntry, Hero, Team


def test_create_via_the_api_read_via_db_session(client: TestClient, db_session: Session) -> None:
    response = client.post("/heroes/", json={"name": "Deadpond", "secret_name": "Dive Wilson"})

    assert response.status_code == 200
    data = response.json()
    assert data["name"] == "Deadpond" and data["age"] is None and data["id"] is not None
    hero = db_session.get(Hero, data["id"])
    assert hero is not None and hero.secret_name == "Dive Wilson"


def test_create_via_db_session_read_via_the_api(client: TestClient, db_session: Session) -> None:
    team = Team(name="Preventers", headquarters="Sharp Tower")
    db_session.add(team)
    db_session.add(Hero(name="Rusty-Man", secret_name="Tommy Sharp", age=48, team=team))
    db_session.commit()  # releases a savepoint; the outer transaction stays open

    heroes = client.get("/heroes/").json()
    assert [hero["name"] for hero in heroes] == ["Rusty-Man"]
    detail = client.get(f"/heroes/{heroes[0]['id']}").json()
    assert detail["team"]["name"] == "Preventers"
    assert [h["name"] for h in client.get(f"/teams/{team.id}").json()["heroes"]] == ["Rusty-Man"]


def test_update_and_delete(client: TestClient, db_session: Session) -> None:
    created = client.post("/heroes/", json={"name": "Spider-Boy", "secret_name": "Pedro"})
    hero_id = created.json()["id"]

    response = client.patch(f"/heroes/{hero_id}", json={"age": 16})
    assert response.status_code == 200 and response.json()["age"] == 16
    assert db_session.exec(select(Hero.age).where(Hero.id == hero_id)).one() == 16

    assert client.delete(f"/heroes/{hero_id}").json() == {"ok": True}
    assert client.get(f"/heroes/{hero_id}").status_code == 404
    assert db_session.exec(select(Hero)).all() == []


def test_a_validation_error_writes_nothing(client: TestClient, db_session: Session) -> None:
    response = client.post("/heroes/", json={"name": "Deadpond"})  # no secret_name

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "secret_name"]
    negative_age = {"name": "X", "secret_name": "Y", "age": -1}
    assert client.post("/heroes/", json=negative_age).status_code == 422
    assert db_session.exec(select(func.count()).select_from(Hero)).one() == 0


def test_commit_then_an_error_rolls_back_only_the_failed_part(
    client: TestClient, db_session: Session
) -> None:
    team = {"name": "Z-Force", "headquarters": "Sister Margaret's Bar"}
    assert client.post("/teams/", json=team).status_code == 200  # committed

    response = client.post("/teams/", json=team)  # unique name: IntegrityError, rollback()

    assert response.status_code == 409
    assert db_session.exec(select(Team.name)).all() == ["Z-Force"]
    # The connection is fine after the failed statement: the app and the test go on.
    other = {"name": "Avengers", "headquarters": "NY"}
    assert client.post("/teams/", json=other).status_code == 200
    assert db_session.exec(select(func.count()).select_from(Team)).one() == 2


def test_an_unhandled_error_leaves_nothing(db_session: Session) -> None:
    """The tutorial's create route does not check team_id: an unknown team fails the commit
    (foreign key) with a 500. The request's session is rolled back when it closes."""
    hero = {"name": "Lone", "secret_name": "L", "team_id": 999_999}
    # By default TestClient re-raises the server's exception.
    with TestClient(app) as client, pytest.raises(IntegrityError):
        client.post("/heroes/", json=hero)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/heroes/", json=hero).status_code == 500
        assert client.post("/heroes/", json={**hero, "team_id": None}).status_code == 200

    assert db_session.exec(select(Hero.name)).all() == ["Lone"]


def test_a_background_task_uses_the_sessionmaker_made_at_import(
    client: TestClient, db_session: Session
) -> None:
    hero = Hero(name="Tarantula", secret_name="Natalia")
    db_session.add(hero)
    db_session.commit()
    hero_id = hero.id

    client.delete(f"/heroes/{hero_id}")

    # Written after the response by services.record, in a SessionLocal() session of its own.
    assert db_session.exec(select(AuditEntry.action)).all() == ["deleted"]
    assert client.get(f"/heroes/{hero_id}/history").json() == ["deleted"]


def test_a_background_task_after_commit_and_refresh_keeps_its_commit(
    client: TestClient, db_session: Session
) -> None:
    created = client.post("/heroes/", json={"name": "Tarantula", "secret_name": "Natalia"})
    hero_id = created.json()["id"]

    assert db_session.exec(select(AuditEntry.action)).all() == ["created"]
    assert services.history(hero_id) == ["created"]


def test_the_service_called_directly(db_session: Session) -> None:
    services.record("inspected", 7)  # SessionLocal() outside any request

    assert db_session.exec(select(AuditEntry.action)).all() == ["inspected"]
    assert services.history(7) == ["inspected"]
