"""The HTTP client the tests talk to the app with."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession

from shop.main import app


@pytest_asyncio.fixture
async def client(async_db_session: AsyncSession) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client calling the app in-process.

    It requests ``async_db_session`` so that the test's async connection and outer transaction
    are open: every request the app serves gets a new session on that connection (its
    commits release savepoints), and all of it is rolled back after the test.
    """
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client
    app.dependency_overrides.clear()
