"""The HTTP client the tests talk to the app with."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.main import app


@pytest_asyncio.fixture
async def client(async_db_session: AsyncSession) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client calling the app in-process.

    Requesting ``async_db_session`` opens the test's async connection and outer transaction;
    every session context-async-sqlalchemy makes during the test is a new ``AsyncSession`` on
    that connection whose commits release savepoints.

    ``raise_app_exceptions=False``: an exception that escapes the app becomes the 500 response
    a real server would send, instead of being raised in the test.
    """
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client
    app.dependency_overrides.clear()
