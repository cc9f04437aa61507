"""Every test starts with empty tables, even though the code it calls commits.

The two tests are the same on purpose: whichever runs second would fail on its first
assertion (and on the unique e-mail) if the other's commit had leaked.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing.models import Customer
from billing.services import add_customer


def count_customers(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Customer)) or 0


def test_atomic_commits(db_session: Session) -> None:
    assert count_customers(db_session) == 0

    add_customer("ada@example.com", 900)  # @atomic: commits (releases a SAVEPOINT in tests)

    assert count_customers(db_session) == 1


def test_and_the_next_test_does_not_see_it(db_session: Session) -> None:
    assert count_customers(db_session) == 0

    add_customer("ada@example.com", 900)

    assert count_customers(db_session) == 1
