"""Async code with ``async_db_session`` (pytest-asyncio, strict mode).

``async_db_session`` is the async twin of ``db_session``: an ``AsyncSession`` inside an outer
transaction rolled back after the test; ``await session.commit()`` releases a SAVEPOINT. The
driver is the async twin of the URL's: aiosqlite for SQLite, asyncpg for PostgreSQL.

pytest.ini sets the loop scope to "session": every async test runs in one event loop, and
pytest-ctxdb reuses one async connection for all of them.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from quickstart_app.models import Author
from quickstart_app.services import DuplicateAuthorError, create_author_async


async def count_authors(session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(Author)) or 0


@pytest.mark.asyncio
async def test_async_service(async_db_session: AsyncSession) -> None:
    assert await count_authors(async_db_session) == 0

    author = await create_author_async(async_db_session, "Liu Cixin")

    assert author.id is not None
    assert await count_authors(async_db_session) == 1


@pytest.mark.asyncio
async def test_async_commit_is_gone_in_the_next_test(async_db_session: AsyncSession) -> None:
    # Same name as above: would fail here if the other test's commit had leaked.
    assert await count_authors(async_db_session) == 0
    await create_author_async(async_db_session, "Liu Cixin")
    assert await count_authors(async_db_session) == 1


@pytest.mark.asyncio
async def test_async_duplicate_and_the_session_goes_on(async_db_session: AsyncSession) -> None:
    await create_author_async(async_db_session, "Becky Chambers")
    with pytest.raises(DuplicateAuthorError):
        await create_author_async(async_db_session, "Becky Chambers")

    await create_author_async(async_db_session, "Martha Wells")
    names = (await async_db_session.scalars(select(Author.name).order_by(Author.name))).all()
    assert names == ["Becky Chambers", "Martha Wells"]


@pytest.mark.asyncio
async def test_async_connection_sees_the_session(
    async_db_connection: AsyncConnection, async_db_session: AsyncSession
) -> None:
    await create_author_async(async_db_session, "Ann Leckie")
    assert await async_db_connection.scalar(select(Author.name)) == "Ann Leckie"
