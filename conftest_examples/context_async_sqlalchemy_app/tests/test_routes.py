"""Each route through HTTP; its effect on the database checked with ``async_db_session``.

The checks select columns rather than load ORM objects, so they always show what is in the
database now, not what the test's session loaded earlier.
"""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.main import Mailer, MailerError, Pager, app, get_mailer, get_pager
from helpdesk.models import Event, Ticket

pytestmark = pytest.mark.asyncio


async def tickets(session: AsyncSession) -> list[tuple[str, str, str]]:
    rows = await session.execute(
        select(Ticket.title, Ticket.status, Ticket.priority).order_by(Ticket.id)
    )
    return [(title, status, priority) for title, status, priority in rows]


async def events(session: AsyncSession) -> list[str]:
    return list((await session.scalars(select(Event.kind).order_by(Event.id))).all())


async def open_ticket(client: httpx.AsyncClient, title: str) -> int:
    response = await client.post("/tickets", json={"title": title})
    assert response.status_code == 201
    ticket_id: int = response.json()["id"]
    return ticket_id


async def test_create(client: httpx.AsyncClient, async_db_session: AsyncSession) -> None:
    response = await client.post("/tickets", json={"title": "Printer jam"})

    assert response.status_code == 201
    assert response.json()["status"] == "open"
    assert await tickets(async_db_session) == [("Printer jam", "open", "normal")]
    assert await events(async_db_session) == ["opened"]


async def test_dry_run_rolls_back(
    client: httpx.AsyncClient, async_db_session: AsyncSession
) -> None:
    response = await client.post("/tickets?dry_run=true", json={"title": "Printer jam"})

    assert response.status_code == 201
    assert response.json()["title"] == "Printer jam"
    assert await tickets(async_db_session) == []  # rollback_db_session() undid it all
    assert await events(async_db_session) == []


async def test_list(client: httpx.AsyncClient, async_db_session: AsyncSession) -> None:
    async_db_session.add(Ticket(title="Set up by the test"))
    await async_db_session.flush()  # on the test's connection: the request sees it

    response = await client.get("/tickets")

    assert [ticket["title"] for ticket in response.json()] == ["Set up by the test"]


async def test_read_records_a_view_in_its_own_session(
    client: httpx.AsyncClient, async_db_session: AsyncSession
) -> None:
    ticket_id = await open_ticket(client, "Printer jam")

    response = await client.get(f"/tickets/{ticket_id}")

    assert response.json()["title"] == "Printer jam"
    assert await events(async_db_session) == ["opened", "viewed"]  # new_non_ctx_atomic_session
    assert (await client.get("/tickets/999")).status_code == 404


async def test_close(client: httpx.AsyncClient, async_db_session: AsyncSession) -> None:
    ticket_id = await open_ticket(client, "Printer jam")

    response = await client.post(f"/tickets/{ticket_id}/close")

    assert response.json()["status"] == "closed"
    assert await tickets(async_db_session) == [("Printer jam", "closed", "normal")]
    assert await events(async_db_session) == ["opened", "closed", "notified"]


class BrokenMailer(Mailer):
    async def send(self, subject: str) -> None:
        raise MailerError("connection refused")


async def test_atomic_block_stays_committed_when_the_request_fails(
    client: httpx.AsyncClient, async_db_session: AsyncSession
) -> None:
    ticket_id = await open_ticket(client, "Printer jam")
    app.dependency_overrides[get_mailer] = BrokenMailer  # the client fixture clears it

    response = await client.post(f"/tickets/{ticket_id}/close")

    assert response.status_code == 502
    # atomic_db_session committed the closing; the middleware rolled back the rest (502).
    assert await tickets(async_db_session) == [("Printer jam", "closed", "normal")]
    assert await events(async_db_session) == ["opened", "closed"]


class DownPager(Pager):
    async def page(self, message: str) -> None:
        raise ConnectionError("pager API unreachable")


async def test_500_leaves_nothing(
    client: httpx.AsyncClient, async_db_session: AsyncSession
) -> None:
    ticket_id = await open_ticket(client, "Printer jam")
    app.dependency_overrides[get_pager] = DownPager

    response = await client.post(f"/tickets/{ticket_id}/escalate")

    assert response.status_code == 500
    # The priority change and the "escalated" event were flushed, then rolled back.
    assert await tickets(async_db_session) == [("Printer jam", "open", "normal")]
    assert await events(async_db_session) == ["opened"]


async def test_escalate(client: httpx.AsyncClient, async_db_session: AsyncSession) -> None:
    ticket_id = await open_ticket(client, "Printer jam")

    response = await client.post(f"/tickets/{ticket_id}/escalate")

    assert response.status_code == 200
    assert await tickets(async_db_session) == [("Printer jam", "open", "urgent")]
    assert await events(async_db_session) == ["opened", "escalated"]


async def test_import_commits_early_and_goes_on_with_a_new_session(
    client: httpx.AsyncClient, async_db_session: AsyncSession
) -> None:
    response = await client.post("/tickets/import", json=["Printer jam", "VPN down"])

    assert response.json() == {"imported": 2}
    assert [title for title, _, _ in await tickets(async_db_session)] == ["Printer jam", "VPN down"]
    assert await events(async_db_session) == ["imported"]


async def test_bulk_failures_roll_back_alone(
    client: httpx.AsyncClient, async_db_session: AsyncSession
) -> None:
    await open_ticket(client, "VPN down")

    response = await client.post("/tickets/bulk", json=["Printer jam", "VPN down", "No coffee"])

    # "VPN down" is taken: that context's insert failed and was rolled back; the others committed.
    assert response.json() == {"opened": ["Printer jam", "No coffee"], "failed": ["VPN down"]}
    assert sorted(title for title, _, _ in await tickets(async_db_session)) == [
        "No coffee",
        "Printer jam",
        "VPN down",
    ]
    assert await events(async_db_session) == ["opened", "opened", "opened"]


async def test_many_contexts_at_once(
    client: httpx.AsyncClient, async_db_session: AsyncSession
) -> None:
    titles = [f"Ticket {i:02}" for i in range(20)]

    response = await client.post("/tickets/bulk", json=titles)

    assert response.json() == {"opened": titles, "failed": []}
    assert len(await tickets(async_db_session)) == 20


async def test_purge_closed(client: httpx.AsyncClient, async_db_session: AsyncSession) -> None:
    keep = await open_ticket(client, "VPN down")
    done = await open_ticket(client, "Printer jam")
    assert (await client.post(f"/tickets/{done}/close")).status_code == 200

    response = await client.post("/maintenance/purge-closed")

    assert response.json() == {"purged": 1}
    assert await tickets(async_db_session) == [("VPN down", "open", "normal")]
    assert (await client.get(f"/tickets/{keep}")).status_code == 200
