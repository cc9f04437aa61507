"""Tickets opened once for the module, over HTTP, by a module-scoped fixture.

The fixture's requests run through context-async-sqlalchemy like the tests' do; what they
commit goes into the module's layer on the session loop's connection (the loop scope of this
suite), so every test here starts from those tickets and the next module sees none of them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.main import app
from helpdesk.models import Event, Ticket

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture(scope="module")
async def backlog() -> AsyncIterator[list[int]]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        ids = []
        for title in ("VPN down", "Printer jam"):
            response = await client.post("/tickets", json={"title": title})
            assert response.status_code == 201
            ids.append(response.json()["id"])
        yield ids


async def titles(session: AsyncSession) -> list[str]:
    return list((await session.scalars(select(Ticket.title).order_by(Ticket.id))).all())


async def test_the_backlog_is_there(backlog: list[int], async_db_session: AsyncSession) -> None:
    assert await titles(async_db_session) == ["VPN down", "Printer jam"]
    await async_db_session.execute(delete(Event))
    await async_db_session.execute(delete(Ticket))
    await async_db_session.commit()
    assert await titles(async_db_session) == []


async def test_and_back_for_the_next_test(
    backlog: list[int], client: httpx.AsyncClient, async_db_session: AsyncSession
) -> None:
    assert await titles(async_db_session) == ["VPN down", "Printer jam"]
    response = await client.get(f"/tickets/{backlog[0]}")
    assert response.json()["title"] == "VPN down"
