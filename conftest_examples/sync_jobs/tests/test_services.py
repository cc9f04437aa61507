"""The services, called from the test itself.

In the test's own context, the services' ``db_session()`` *is* the ``db_session`` fixture: the
test and the code share one session (pending objects, identity map), and ``atomic`` blocks are
transactions of it, which in tests are SAVEPOINTs inside the test's outer transaction.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.models import ClosedPeriod, Customer, Invoice
from billing.services import (
    PeriodClosedError,
    add_customer,
    close_period,
    invoice_all,
    invoice_customer,
)
from pytest_ctxdb import CtxdbError
from pytest_ctxdb.context import atomic
from pytest_ctxdb.context import db_session as context_session


def invoiced(session: Session) -> list[tuple[str, str, int]]:
    rows = session.execute(
        select(Customer.email, Invoice.period, Invoice.amount)
        .join(Invoice, Invoice.customer_id == Customer.id)
        .order_by(Customer.email)
    )
    return [(email, period, amount) for email, period, amount in rows]


def test_the_context_session_is_the_fixture(db_session: Session) -> None:
    assert context_session() is db_session


def test_nested_block_rolls_back_only_its_part(db_session: Session) -> None:
    add_customer("ada@example.com", 900)
    add_customer("free@example.com", 0)  # invoicing 0 fails after the invoice was flushed
    add_customer("bob@example.com", 1500)

    skipped = invoice_all("2024-05")

    assert skipped == ["free@example.com"]
    assert invoiced(db_session) == [
        ("ada@example.com", "2024-05", 900),
        ("bob@example.com", "2024-05", 1500),
    ]


def test_the_outermost_block_rolls_back_everything(db_session: Session) -> None:
    with pytest.raises(ZeroDivisionError), atomic():
        add_customer("ada@example.com", 900)  # nested @atomic: its SAVEPOINT is released...
        1 / 0  # noqa: B018 - ...and the outer block's rollback undoes it anyway

    assert db_session.scalars(select(Customer)).all() == []


def test_durable_is_refused_when_nested(db_session: Session) -> None:
    with atomic():
        # ContextError, a CtxdbError
        with pytest.raises(CtxdbError, match="durable=True\\) cannot be nested"):
            close_period("2024-05")
        add_customer("ada@example.com", 900)  # the refusal did not break the outer block

    assert db_session.scalars(select(ClosedPeriod)).all() == []
    assert db_session.scalars(select(Customer.email)).all() == ["ada@example.com"]


def test_durable_runs_on_its_own(db_session: Session) -> None:
    close_period("2024-05")

    assert db_session.scalars(select(ClosedPeriod.period)).all() == ["2024-05"]
    customer_id = add_customer("ada@example.com", 900)
    with pytest.raises(PeriodClosedError):
        invoice_customer(customer_id, "2024-05")
