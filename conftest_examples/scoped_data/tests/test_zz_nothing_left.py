"""Runs last: from a connection of its own (outside every layer), the test database is empty."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.pool import NullPool

from shop.models import Order, Product, Token, User


def test_nothing_was_committed(db_engine: Engine) -> None:
    engine = create_engine(db_engine.url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            for model in (User, Token, Product, Order):
                count = connection.scalar(select(func.count()).select_from(model))
                assert count == 0, f"{model.__tablename__}: {count} rows left"
    finally:
        engine.dispose()
