"""Every model of the app, table classes and API schemas (SQLModel's "multiple models").

Importing this module registers every table on ``SQLModel.metadata``: the tests' ``pytest.ini``
names ``heroes_app.models:SQLModel.metadata`` for that reason.
"""

from sqlmodel import Field, Relationship, SQLModel


class TeamBase(SQLModel):
    name: str = Field(index=True, unique=True, max_length=100)
    headquarters: str = Field(max_length=100)


class Team(TeamBase, table=True):
    id: int | None = Field(default=None, primary_key=True)

    heroes: list["Hero"] = Relationship(back_populates="team")


class TeamCreate(TeamBase):
    pass


class TeamPublic(TeamBase):
    id: int


class TeamUpdate(SQLModel):
    name: str | None = None
    headquarters: str | None = None


class HeroBase(SQLModel):
    name: str = Field(index=True, max_length=100)
    secret_name: str = Field(max_length=100)
    age: int | None = Field(default=None, index=True, ge=0)

    team_id: int | None = Field(default=None, foreign_key="team.id")


class Hero(HeroBase, table=True):
    id: int | None = Field(default=None, primary_key=True)

    team: Team | None = Relationship(back_populates="heroes")


class HeroCreate(HeroBase):
    pass


class HeroPublic(HeroBase):
    id: int


class HeroUpdate(SQLModel):
    name: str | None = None
    secret_name: str | None = None
    age: int | None = Field(default=None, ge=0)
    team_id: int | None = None


class HeroPublicWithTeam(HeroPublic):
    team: TeamPublic | None = None


class TeamPublicWithHeroes(TeamPublic):
    heroes: list[HeroPublic] = []


class AuditEntry(SQLModel, table=True):
    """Written after the response by a background task (``services.record``)."""

    id: int | None = Field(default=None, primary_key=True)
    action: str = Field(max_length=50)
    hero_id: int = Field(index=True)
