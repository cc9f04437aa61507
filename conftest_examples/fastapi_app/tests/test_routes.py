"""Each route through HTTP; its effect checked with ``async_db_session``.

A request runs in a context of its own (the middleware's), so it gets a new session on the
test's connection. What it commits is visible to ``async_db_session`` at once; what it rolls
back is gone, as in production. The checks read columns with ``select()`` rather than loading
ORM objects, so they always show what is in the database right now.
"""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shop.main import Warehouse, WarehouseError, app, get_warehouse
from shop.models import Delivery, Product, PurchaseOrder
from shop.services import UnknownProductError, receive_delivery

pytestmark = pytest.mark.asyncio


async def stock_of(session: AsyncSession, sku: str) -> int | None:
    return await session.scalar(select(Product.stock).where(Product.sku == sku))


async def count(session: AsyncSession, model: type) -> int:
    return await session.scalar(select(func.count()).select_from(model)) or 0


async def add_product(client: httpx.AsyncClient, sku: str, stock: int) -> None:
    response = await client.post(
        "/products", json={"sku": sku, "name": sku.title(), "stock": stock}
    )
    assert response.status_code == 201


async def test_create_and_read(client: httpx.AsyncClient, async_db_session: AsyncSession) -> None:
    await add_product(client, "COFFEE", stock=5)

    response = await client.get("/products/COFFEE")

    assert response.status_code == 200
    assert response.json() == {"sku": "COFFEE", "name": "Coffee", "stock": 5, "archived": False}
    assert await stock_of(async_db_session, "COFFEE") == 5


async def test_the_test_can_prepare_data_the_app_then_reads(
    client: httpx.AsyncClient, async_db_session: AsyncSession
) -> None:
    """Data the test flushed is on the same connection, so the request sees it."""
    async_db_session.add(Product(sku="COCOA", name="Cocoa", stock=2))
    await async_db_session.flush()  # no commit needed

    response = await client.get("/products/COCOA")

    assert response.json()["stock"] == 2


async def test_order_takes_stock(client: httpx.AsyncClient, async_db_session: AsyncSession) -> None:
    await add_product(client, "COFFEE", stock=5)

    response = await client.post("/orders", json={"sku": "COFFEE", "quantity": 3})

    assert response.status_code == 201
    assert response.json()["stock_left"] == 2
    assert await stock_of(async_db_session, "COFFEE") == 2
    assert await count(async_db_session, PurchaseOrder) == 1


async def test_409_rolls_back_what_the_request_wrote(
    client: httpx.AsyncClient, async_db_session: AsyncSession
) -> None:
    await add_product(client, "COFFEE", stock=1)

    # The route takes the stock and writes the order, then answers 409.
    response = await client.post("/orders", json={"sku": "COFFEE", "quantity": 2})

    assert response.status_code == 409
    assert await stock_of(async_db_session, "COFFEE") == 1
    assert await count(async_db_session, PurchaseOrder) == 0


async def test_atomic_commits_each_delivery_on_its_own(
    client: httpx.AsyncClient, async_db_session: AsyncSession
) -> None:
    await add_product(client, "COFFEE", stock=0)

    response = await client.post(
        "/deliveries",
        json=[{"sku": "COFFEE", "quantity": 10}, {"sku": "NOPE", "quantity": 1}],
    )

    assert response.json() == {"accepted": ["COFFEE"], "rejected": ["NOPE"]}
    assert await stock_of(async_db_session, "COFFEE") == 10
    # The rejected delivery's row was flushed, then rolled back with its @atomic block.
    assert (await async_db_session.scalars(select(Delivery.sku))).all() == ["COFFEE"]


async def test_atomic_service_called_by_the_test(async_db_session: AsyncSession) -> None:
    """Called from the test itself, the service's db_session() *is* async_db_session: it sees
    the test's pending product, and @atomic commits it first (as Django's atomic does)."""
    async_db_session.add(Product(sku="TEA", name="Tea", stock=1))

    assert await receive_delivery("TEA", 4) == 5

    with pytest.raises(UnknownProductError):
        await receive_delivery("NOPE", 4)
    assert (await async_db_session.scalars(select(Delivery.sku))).all() == ["TEA"]


async def test_archive(client: httpx.AsyncClient, async_db_session: AsyncSession) -> None:
    await add_product(client, "COFFEE", stock=0)

    response = await client.post("/products/COFFEE/archive")

    assert response.status_code == 200
    assert await async_db_session.scalar(select(Product.archived)) is True


class UnreachableWarehouse(Warehouse):
    async def discontinue(self, sku: str) -> None:
        raise WarehouseError("timeout")


async def test_500_leaves_nothing(
    client: httpx.AsyncClient, async_db_session: AsyncSession
) -> None:
    await add_product(client, "COFFEE", stock=0)
    app.dependency_overrides[get_warehouse] = UnreachableWarehouse  # the client fixture clears it

    response = await client.post("/products/COFFEE/archive")

    assert response.status_code == 500
    # The route had flushed archived=True; the middleware rolled it back because of the 500.
    assert await async_db_session.scalar(select(Product.archived)) is False


class BrokenWarehouse(Warehouse):
    async def discontinue(self, sku: str) -> None:
        raise RuntimeError("bug in the warehouse client")


async def test_an_exception_rolls_back_too(
    client: httpx.AsyncClient, async_db_session: AsyncSession
) -> None:
    await add_product(client, "COFFEE", stock=0)
    app.dependency_overrides[get_warehouse] = BrokenWarehouse

    # httpx.ASGITransport re-raises the app's unhandled exception (the server would answer 500).
    with pytest.raises(RuntimeError, match="bug in the warehouse client"):
        await client.post("/products/COFFEE/archive")

    assert await async_db_session.scalar(select(Product.archived)) is False
