"""Several contexts at once: ``asyncio.gather`` over ``run_in_new_context``.

In production each context would take its own connection from the pool. In a test they all
share the test's one connection, and pytest-ctxdb runs their transactions one after the
other (a context waits while another's transaction is open), so the outcome is the same as
in production and does not depend on timing.
"""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shop.models import Product

pytestmark = pytest.mark.asyncio


def batch(*skus: str) -> list[dict[str, str]]:
    return [{"sku": sku, "name": sku.title()} for sku in skus]


async def skus(session: AsyncSession) -> list[str]:
    return list((await session.scalars(select(Product.sku).order_by(Product.sku))).all())


async def test_each_batch_commits_or_rolls_back_alone(
    client: httpx.AsyncClient, async_db_session: AsyncSession
) -> None:
    response = await client.post(
        "/imports", json=[batch("APPLE", "BREAD"), batch("CHEESE", "CHEESE"), batch("DATES")]
    )

    assert response.json() == {"imported": 3, "failed_batches": [1]}
    # Batch 1 failed on its duplicate SKU: CHEESE is not there, the other batches are.
    assert await skus(async_db_session) == ["APPLE", "BREAD", "DATES"]


async def test_many_contexts_at_once(
    client: httpx.AsyncClient, async_db_session: AsyncSession
) -> None:
    batches = [batch(f"P{i:02}-A", f"P{i:02}-B") for i in range(10)]

    response = await client.post("/imports", json=batches)

    assert response.json() == {"imported": 20, "failed_batches": []}
    assert len(await skus(async_db_session)) == 20


async def test_a_batch_clashing_with_existing_data(
    client: httpx.AsyncClient, async_db_session: AsyncSession
) -> None:
    """The new contexts see what the test flushed: they run on the same connection."""
    async_db_session.add(Product(sku="BREAD", name="Bread"))
    await async_db_session.flush()

    response = await client.post("/imports", json=[batch("APPLE"), batch("BREAD"), batch("CORN")])

    assert response.json() == {"imported": 2, "failed_batches": [1]}
    assert await skus(async_db_session) == ["APPLE", "BREAD", "CORN"]
