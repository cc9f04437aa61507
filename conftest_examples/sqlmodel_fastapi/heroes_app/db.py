"""The engine, made once at import, and the ways the app gets sessions from it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, SQLModel, create_engine

from .config import get_settings

settings = get_settings()

# SQLite objects may only be used in the thread that made them unless told otherwise; FastAPI
# runs sync routes and dependencies in a thread pool (SQLModel's tutorial sets the same).
connect_args = {"check_same_thread": False} if settings.database_url.startswith("sqlite") else {}
engine = create_engine(settings.database_url, echo=settings.echo_sql, connect_args=connect_args)

# For code outside a request (background tasks, scripts): sessions of SQLModel's class.
SessionLocal = sessionmaker(engine, class_=Session, expire_on_commit=False)


def create_db_and_tables() -> None:
    SQLModel.metadata.create_all(engine)


def get_session() -> Iterator[Session]:
    """The request's session (a FastAPI dependency with ``yield``)."""
    with Session(engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
