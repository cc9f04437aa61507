"""Every test starts with empty tables, whatever the app committed in the one before.

The two tests are the same on purpose: whichever runs second would fail on its first
assertion (and the request on the unique SKU) if the other's request had leaked.
"""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shop.models import Product


async def count_products(session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(Product)) or 0


@pytest.mark.asyncio
async def test_a_request_commits(client: httpx.AsyncClient, async_db_session: AsyncSession) -> None:
    assert await count_products(async_db_session) == 0

    response = await client.post("/products", json={"sku": "TEA-1", "name": "Green tea"})

    assert response.status_code == 201
    assert await count_products(async_db_session) == 1  # committed by the middleware


@pytest.mark.asyncio
async def test_and_the_next_test_does_not_see_it(
    client: httpx.AsyncClient, async_db_session: AsyncSession
) -> None:
    assert await count_products(async_db_session) == 0

    response = await client.post("/products", json={"sku": "TEA-1", "name": "Green tea"})

    assert response.status_code == 201
    assert await count_products(async_db_session) == 1
