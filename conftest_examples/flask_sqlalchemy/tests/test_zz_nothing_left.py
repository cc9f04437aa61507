"""Runs last: outside every test's transaction both test databases are empty."""

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.pool import NullPool

from shop.models import AuditEntry, Product


@pytest.mark.db(using=["default", "audit"])
def test_nothing_left(db_sessions):
    for alias, model in (("default", Product), ("audit", AuditEntry)):
        engine = create_engine(db_sessions[alias].get_bind().engine.url, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                assert connection.scalar(select(func.count()).select_from(model)) == 0
        finally:
            engine.dispose()
