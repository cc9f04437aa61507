"""The FastAPI app: one context (and so one session) per request, via the middleware.

``DBSessionMiddleware`` opens a context for each request and, when the response starts,
commits it if the status is below 400 and rolls it back otherwise (or if the handler
raised). Handlers get the request's session with ``Depends(get_db())``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pytest_ctxdb.context import DBSessionMiddleware, get_db, run_in_new_context

from .models import Product, PurchaseOrder
from .services import UnknownProductError, add_products, receive_delivery

app = FastAPI()
app.add_middleware(DBSessionMiddleware)

# The request's session: Depends(get_db()) yields the context session of alias "default".
DBSession = Annotated[AsyncSession, Depends(get_db())]


class ProductIn(BaseModel):
    sku: str
    name: str
    stock: int = 0


class ProductOut(ProductIn):
    archived: bool


class OrderIn(BaseModel):
    sku: str
    quantity: int


class OrderOut(BaseModel):
    id: int
    stock_left: int


class DeliveryIn(BaseModel):
    sku: str
    quantity: int


class DeliveryReport(BaseModel):
    accepted: list[str]
    rejected: list[str]


class ImportReport(BaseModel):
    imported: int
    failed_batches: list[int]


class WarehouseError(Exception):
    """The warehouse service did not answer."""


class Warehouse:
    """Client of the warehouse service (an HTTP API in real life)."""

    async def discontinue(self, sku: str) -> None:
        """Tell the warehouse to stop restocking ``sku``."""


def get_warehouse() -> Warehouse:
    return Warehouse()


@app.post("/products", status_code=201)
async def create_product(body: ProductIn, session: DBSession) -> ProductIn:
    session.add(Product(**body.model_dump()))
    return body  # the middleware commits: the status is 201


@app.get("/products/{sku}")
async def read_product(sku: str, session: DBSession) -> ProductOut:
    product = await session.scalar(select(Product).where(Product.sku == sku))
    if product is None:
        raise HTTPException(404, "unknown product")
    return ProductOut(
        sku=product.sku, name=product.name, stock=product.stock, archived=product.archived
    )


@app.post("/orders", status_code=201)
async def place_order(body: OrderIn, session: DBSession) -> OrderOut:
    # Take the stock first, in one statement, then check: the usual way to avoid a race.
    row = (
        await session.execute(
            update(Product)
            .where(Product.sku == body.sku)
            .values(stock=Product.stock - body.quantity)
            .returning(Product.id, Product.stock)
        )
    ).one_or_none()
    if row is None:
        raise HTTPException(404, "unknown product")
    product_id, stock_left = row
    order_id = await session.scalar(
        insert(PurchaseOrder)
        .values(product_id=product_id, quantity=body.quantity)
        .returning(PurchaseOrder.id)
    )
    if stock_left < 0:
        # Both writes above are undone: the middleware rolls back on a status >= 400.
        raise HTTPException(409, "not enough stock")
    assert order_id is not None
    return OrderOut(id=order_id, stock_left=stock_left)


@app.post("/deliveries")
async def book_deliveries(deliveries: list[DeliveryIn]) -> DeliveryReport:
    report = DeliveryReport(accepted=[], rejected=[])
    for delivery in deliveries:
        try:
            # @atomic: each delivery commits (or rolls back) on its own, before the response.
            await receive_delivery(delivery.sku, delivery.quantity)
        except UnknownProductError:
            report.rejected.append(delivery.sku)
        else:
            report.accepted.append(delivery.sku)
    return report


@app.post("/imports")
async def import_catalogue(batches: list[list[ProductIn]]) -> ImportReport:
    # Each batch runs in a context of its own (its own session and transaction), all of them
    # at once; a batch that fails is rolled back alone, the others are committed.
    results = await asyncio.gather(
        *(
            run_in_new_context(add_products, [product.model_dump() for product in batch])
            for batch in batches
        ),
        return_exceptions=True,
    )
    return ImportReport(
        imported=sum(result for result in results if isinstance(result, int)),
        failed_batches=[i for i, result in enumerate(results) if isinstance(result, BaseException)],
    )


@app.post("/products/{sku}/archive", response_model=None)
async def archive_product(
    sku: str,
    session: DBSession,
    warehouse: Annotated[Warehouse, Depends(get_warehouse)],
) -> ProductOut | JSONResponse:
    product = await session.scalar(select(Product).where(Product.sku == sku))
    if product is None:
        raise HTTPException(404, "unknown product")
    product.archived = True
    await session.flush()  # written, not yet committed
    try:
        await warehouse.discontinue(sku)
    except WarehouseError:
        # A plain response with status 500: the middleware rolls the flushed change back.
        return JSONResponse({"detail": "the warehouse did not answer"}, status_code=500)
    return ProductOut(sku=product.sku, name=product.name, stock=product.stock, archived=True)
