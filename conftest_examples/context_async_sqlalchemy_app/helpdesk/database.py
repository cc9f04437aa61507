"""The connection settings, as context-async-sqlalchemy wants them.

``DBConnect`` is lazy: the engine is created on the first session. In tests pytest-ctxdb
replaces ``DBConnect.session_maker`` for the duration of each test, so no engine is ever made
for this host; every session the library hands out is on the test's connection instead.
"""

from __future__ import annotations

from context_async_sqlalchemy import DBConnect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def create_engine(host: str) -> AsyncEngine:
    # In production the credentials would come from the environment.
    return create_async_engine(
        f"postgresql+asyncpg://helpdesk:secret@{host}:5432/helpdesk", pool_pre_ping=True
    )


def create_session_maker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


connection = DBConnect(
    engine_creator=create_engine,
    session_maker_creator=create_session_maker,
    host="db.internal",
)
