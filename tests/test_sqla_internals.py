"""The private SQLAlchemy internals pytest-ctxdb relies on (``pytest_ctxdb._sqla``), checked
against the installed release: a release that moves one fails here, by name."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import create_async_engine

from pytest_ctxdb._sqla import in_greenlet


def test_in_greenlet_tells_sqlalchemy_greenlets_apart() -> None:
    seen: list[bool] = []

    async def main() -> None:
        engine = create_async_engine("sqlite+aiosqlite://")
        async with engine.connect() as connection:
            await connection.run_sync(lambda _: seen.append(in_greenlet()))
        await engine.dispose()

    assert in_greenlet() is False
    asyncio.run(main())
    assert seen == [True]
