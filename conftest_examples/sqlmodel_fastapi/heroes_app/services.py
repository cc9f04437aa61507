"""Work done outside a request's session, with the sessionmaker made at import."""

from __future__ import annotations

from sqlmodel import select

from .db import SessionLocal
from .models import AuditEntry


def record(action: str, hero_id: int) -> None:
    """Add an audit entry in a session of its own (run as a FastAPI background task)."""
    with SessionLocal() as session:
        session.add(AuditEntry(action=action, hero_id=hero_id))
        session.commit()


def history(hero_id: int) -> list[str]:
    with SessionLocal() as session:
        entries = session.exec(
            select(AuditEntry).where(AuditEntry.hero_id == hero_id).order_by(AuditEntry.id)
        )
        return [entry.action for entry in entries]
