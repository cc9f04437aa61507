"""The API: heroes and teams (create, read, update, delete), a bulk import and a team's
disbanding in Core with ``engine.begin()``, audit entries written by background tasks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import BackgroundTasks, FastAPI, HTTPException, Query
from sqlalchemy import delete, insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from . import services
from .db import SessionDep, create_db_and_tables, engine
from .models import (
    Hero,
    HeroCreate,
    HeroPublic,
    HeroPublicWithTeam,
    HeroUpdate,
    Team,
    TeamCreate,
    TeamPublic,
    TeamPublicWithHeroes,
    TeamUpdate,
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    create_db_and_tables()
    yield


app = FastAPI(lifespan=lifespan)


# -- heroes ----------------------------------------------------------------------------------


@app.post("/heroes/", response_model=HeroPublic)
def create_hero(hero: HeroCreate, session: SessionDep, background_tasks: BackgroundTasks) -> Hero:
    db_hero = Hero.model_validate(hero)
    session.add(db_hero)
    session.commit()
    session.refresh(db_hero)
    assert db_hero.id is not None
    background_tasks.add_task(services.record, "created", db_hero.id)
    return db_hero


@app.get("/heroes/", response_model=list[HeroPublic])
def read_heroes(
    session: SessionDep, offset: int = 0, limit: Annotated[int, Query(le=100)] = 100
) -> list[Hero]:
    return list(session.exec(select(Hero).order_by(Hero.id).offset(offset).limit(limit)).all())


@app.get("/heroes/{hero_id}", response_model=HeroPublicWithTeam)
def read_hero(hero_id: int, session: SessionDep) -> Hero:
    hero = session.get(Hero, hero_id)
    if not hero:
        raise HTTPException(status_code=404, detail="Hero not found")
    return hero


@app.patch("/heroes/{hero_id}", response_model=HeroPublic)
def update_hero(hero_id: int, hero: HeroUpdate, session: SessionDep) -> Hero:
    db_hero = session.get(Hero, hero_id)
    if not db_hero:
        raise HTTPException(status_code=404, detail="Hero not found")
    db_hero.sqlmodel_update(hero.model_dump(exclude_unset=True))
    session.add(db_hero)
    session.commit()
    session.refresh(db_hero)
    return db_hero


@app.delete("/heroes/{hero_id}")
def delete_hero(
    hero_id: int, session: SessionDep, background_tasks: BackgroundTasks
) -> dict[str, bool]:
    hero = session.get(Hero, hero_id)
    if not hero:
        raise HTTPException(status_code=404, detail="Hero not found")
    session.delete(hero)
    session.commit()
    background_tasks.add_task(services.record, "deleted", hero_id)
    return {"ok": True}


@app.get("/heroes/{hero_id}/history")
def read_hero_history(hero_id: int) -> list[str]:
    return services.history(hero_id)


@app.post("/heroes/import")
def import_heroes(heroes: list[HeroCreate]) -> dict[str, int]:
    """All or nothing, in Core: one INSERT of every row in one transaction."""
    try:
        with engine.begin() as connection:
            connection.execute(insert(Hero), [hero.model_dump() for hero in heroes])
    except IntegrityError:
        raise HTTPException(status_code=409, detail="Unknown team in the batch") from None
    return {"imported": len(heroes)}


# -- teams -----------------------------------------------------------------------------------


@app.post("/teams/", response_model=TeamPublic)
def create_team(team: TeamCreate, session: SessionDep) -> Team:
    db_team = Team.model_validate(team)
    session.add(db_team)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise HTTPException(status_code=409, detail="Team name already taken") from None
    session.refresh(db_team)
    return db_team


@app.get("/teams/", response_model=list[TeamPublic])
def read_teams(
    session: SessionDep, offset: int = 0, limit: Annotated[int, Query(le=100)] = 100
) -> list[Team]:
    return list(session.exec(select(Team).order_by(Team.id).offset(offset).limit(limit)).all())


@app.get("/teams/{team_id}", response_model=TeamPublicWithHeroes)
def read_team(team_id: int, session: SessionDep) -> Team:
    team = session.get(Team, team_id)
    if not team:
        raise HTTPException(status_code=404, detail="Team not found")
    return team


@app.patch("/teams/{team_id}", response_model=TeamPublic)
def update_team(team_id: int, team: TeamUpdate, session: SessionDep) -> Team:
    db_team = session.get(Team, team_id)
    if not db_team:
        raise HTTPException(status_code=404, detail="Team not found")
    db_team.sqlmodel_update(team.model_dump(exclude_unset=True))
    session.add(db_team)
    session.commit()
    session.refresh(db_team)
    return db_team


@app.delete("/teams/{team_id}")
def delete_team(team_id: int, session: SessionDep) -> dict[str, bool]:
    team = session.get(Team, team_id)
    if not team:
        raise HTTPException(status_code=404, detail="Team not found")
    session.delete(team)
    session.commit()
    return {"ok": True}


@app.post("/teams/{team_id}/disband")
def disband_team(team_id: int) -> dict[str, int]:
    """Release the team's heroes and delete the team, in Core, in one transaction."""
    with engine.begin() as connection:
        released = connection.execute(
            update(Hero).where(Hero.team_id == team_id).values(team_id=None)
        ).rowcount
        if not connection.execute(delete(Team).where(Team.id == team_id)).rowcount:
            raise HTTPException(status_code=404, detail="Team not found")  # rolls back
    return {"released_heroes": released}
