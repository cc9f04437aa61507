"""The helpdesk API: FastAPI and context-async-sqlalchemy's ASGI middleware.

The middleware opens a context per request; ``db_session(connection)`` returns the request's
session (made on first use); at the end of the request the middleware commits it if the
status is below 400 and rolls it back otherwise, or if the handler raised.

Nothing here knows about tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from context_async_sqlalchemy import (
    ASGIHTTPDBSessionMiddleware,
    atomic_db_session,
    close_db_session,
    commit_db_session,
    db_session,
    new_non_ctx_atomic_session,
    new_non_ctx_session,
    rollback_db_session,
    run_in_new_ctx,
)
from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, func, select

from .database import connection
from .models import Event, Ticket


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await connection.close()  # dispose the engine, if one was made


app = FastAPI(lifespan=lifespan)
app.add_middleware(ASGIHTTPDBSessionMiddleware)


class TicketIn(BaseModel):
    title: str


class TicketOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    status: str
    priority: str


class BulkReport(BaseModel):
    opened: list[str]
    failed: list[str]


class MailerError(Exception):
    """The mail server did not accept the message."""


class Mailer:
    """Sends notifications (SMTP in real life)."""

    async def send(self, subject: str) -> None: ...


class Pager:
    """Pages the engineer on call (a third-party API in real life)."""

    async def page(self, message: str) -> None: ...


def get_mailer() -> Mailer:
    return Mailer()


def get_pager() -> Pager:
    return Pager()


async def open_ticket(title: str) -> Ticket:
    """Create a ticket and its "opened" event in the current context's session."""
    session = await db_session(connection)
    ticket = Ticket(title=title)
    session.add(ticket)
    await session.flush()  # IntegrityError here if the title is taken
    session.add(Event(ticket_id=ticket.id, kind="opened"))
    return ticket


async def fetch_attachments(titles: list[str]) -> None:
    """Slow work that needs no database (downloads, in real life)."""
    await asyncio.sleep(0)


@app.post("/tickets", status_code=201)
async def create_ticket(body: TicketIn, dry_run: bool = False) -> TicketOut:
    ticket = await open_ticket(body.title)
    answer = TicketOut.model_validate(ticket)
    if dry_run:
        # Show what would be created and keep nothing.
        await rollback_db_session(connection)
    return answer  # otherwise the middleware commits (status 201)


@app.get("/tickets")
async def list_tickets() -> list[TicketOut]:
    session = await db_session(connection)
    tickets = await session.scalars(select(Ticket).order_by(Ticket.id))
    return [TicketOut.model_validate(ticket) for ticket in tickets]


@app.get("/tickets/{ticket_id}")
async def read_ticket(ticket_id: int) -> TicketOut:
    session = await db_session(connection)
    ticket = await session.get(Ticket, ticket_id)
    if ticket is None:
        raise HTTPException(404, "no such ticket")
    # Recorded in a session and transaction of its own, committed at the end of the block.
    async with new_non_ctx_atomic_session(connection) as audit:
        audit.add(Event(ticket_id=ticket_id, kind="viewed"))
    return TicketOut.model_validate(ticket)


@app.post("/tickets/{ticket_id}/close")
async def close_ticket(ticket_id: int, mailer: Annotated[Mailer, Depends(get_mailer)]) -> TicketOut:
    # Committed at the end of the block, whatever happens to the rest of the request.
    async with atomic_db_session(connection) as session:
        ticket = await session.get(Ticket, ticket_id)
        if ticket is None:
            raise HTTPException(404, "no such ticket")
        ticket.status = "closed"
        session.add(Event(ticket_id=ticket_id, kind="closed"))
        answer = TicketOut.model_validate(ticket)

    # Back in the request's transaction, which the middleware commits or rolls back.
    session = await db_session(connection)
    session.add(Event(ticket_id=ticket_id, kind="notified"))
    try:
        await mailer.send(f"Ticket {ticket_id} closed")
    except MailerError:
        raise HTTPException(502, "mail server unavailable") from None  # "notified" is undone
    return answer


@app.post("/tickets/{ticket_id}/escalate")
async def escalate_ticket(ticket_id: int, pager: Annotated[Pager, Depends(get_pager)]) -> TicketOut:
    session = await db_session(connection)
    ticket = await session.get(Ticket, ticket_id)
    if ticket is None:
        raise HTTPException(404, "no such ticket")
    ticket.priority = "urgent"
    session.add(Event(ticket_id=ticket_id, kind="escalated"))
    await session.flush()
    # If paging fails the error escapes: the server answers 500 and the middleware rolls
    # back the priority and the event.
    await pager.page(f"Ticket {ticket_id} is urgent")
    return TicketOut.model_validate(ticket)


@app.post("/tickets/import")
async def import_tickets(titles: list[str]) -> dict[str, int]:
    session = await db_session(connection)
    session.add_all(Ticket(title=title) for title in titles)
    await commit_db_session(connection)  # saved now...
    await close_db_session(connection)  # ...and the connection goes back to the pool

    await fetch_attachments(titles)

    session = await db_session(connection)  # a new session for the rest of the request
    session.add(Event(ticket_id=None, kind="imported"))
    return {"imported": len(titles)}  # the middleware commits the event


@app.post("/tickets/bulk")
async def bulk_open(titles: list[str]) -> BulkReport:
    # One context per ticket, all at once. run_in_new_ctx commits each context's session when
    # open_ticket returns and rolls it back when it raises: one bad title fails alone.
    results = await asyncio.gather(
        *(run_in_new_ctx(open_ticket, title) for title in titles), return_exceptions=True
    )
    report = BulkReport(opened=[], failed=[])
    for title, result in zip(titles, results, strict=True):
        (report.failed if isinstance(result, BaseException) else report.opened).append(title)
    return report


@app.post("/maintenance/purge-closed")
async def purge_closed() -> dict[str, int]:
    # Maintenance outside the request's context: a session of its own, committed by hand.
    async with new_non_ctx_session(connection) as session:
        closed = select(Ticket.id).where(Ticket.status == "closed")
        await session.execute(delete(Event).where(Event.ticket_id.in_(closed)))
        purged = await session.scalar(select(func.count()).select_from(closed.subquery()))
        await session.execute(delete(Ticket).where(Ticket.status == "closed"))
        await session.commit()
    return {"purged": purged or 0}
