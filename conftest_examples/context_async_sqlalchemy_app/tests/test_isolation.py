"""Writes made by ``run_in_new_ctx`` are visible in the test, and gone in the next one.

``POST /tickets/bulk`` opens each ticket in a new context with ``run_in_new_ctx``: in
production each has its own connection and commits for real. In the test each gets a new
session on the test's connection; its commit releases a savepoint inside the test's outer
transaction, so the test sees the tickets, and the rollback at the end removes them.

The two tests are the same on purpose: whichever runs second would fail on its first
assertion (and the unique titles) if the other's tickets had leaked.
"""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.models import Ticket

pytestmark = pytest.mark.asyncio


async def titles(session: AsyncSession) -> list[str]:
    return list((await session.scalars(select(Ticket.title).order_by(Ticket.title))).all())


async def test_new_contexts_commit(
    client: httpx.AsyncClient, async_db_session: AsyncSession
) -> None:
    assert await titles(async_db_session) == []

    response = await client.post("/tickets/bulk", json=["Printer jam", "VPN down", "No coffee"])

    assert response.json() == {"opened": ["Printer jam", "VPN down", "No coffee"], "failed": []}
    assert await titles(async_db_session) == ["No coffee", "Printer jam", "VPN down"]


async def test_and_the_next_test_does_not_see_it(
    client: httpx.AsyncClient, async_db_session: AsyncSession
) -> None:
    assert await titles(async_db_session) == []

    response = await client.post("/tickets/bulk", json=["Printer jam", "VPN down", "No coffee"])

    assert response.json() == {"opened": ["Printer jam", "VPN down", "No coffee"], "failed": []}
    assert await titles(async_db_session) == ["No coffee", "Printer jam", "VPN down"]
