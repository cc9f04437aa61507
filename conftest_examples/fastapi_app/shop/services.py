"""Service functions: they take no session argument, they use the context session.

``db_session()`` returns the session of the current context: the request's (behind the
middleware), a job's, or, when a test calls the function directly, the test's own
``async_db_session``.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pytest_ctxdb.context import atomic, db_session

from .models import Delivery, Product


class UnknownProductError(LookupError):
    """No product has this SKU."""


@atomic
async def receive_delivery(sku: str, quantity: int) -> int:
    """Record a delivery and add it to the product's stock: both or neither.

    ``@atomic`` runs the function in a transaction of the context session that is committed
    when it returns and rolled back when it raises, even in the middle of a request.
    Returns the new stock.
    """
    session: AsyncSession = db_session()  # typed Any: Session or AsyncSession by the alias
    session.add(Delivery(sku=sku, quantity=quantity))
    await session.flush()  # the delivery row is written...
    product = await session.scalar(select(Product).where(Product.sku == sku))
    if product is None:
        raise UnknownProductError(sku)  # ...and rolled back with the block
    product.stock += quantity
    return product.stock


async def add_products(rows: list[dict[str, object]]) -> int:
    """Insert products in the current context; the caller decides when it commits."""
    session: AsyncSession = db_session()
    session.add_all(Product(**row) for row in rows)
    await session.flush()  # IntegrityError here on a duplicate SKU
    return len(rows)
