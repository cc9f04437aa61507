"""The jobs, each in a context of its own: a new ``Session`` on the test's connection.

``@session_context()`` and ``run_in_new_context`` open contexts the app owns. Under
pytest-ctxdb their sessions are made on the test's connection with
``join_transaction_mode="create_savepoint"``: what they commit is visible to ``db_session``
at once, what they roll back is gone, and everything is rolled back after the test.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing.jobs import BadRowError, import_customers, invoice_in_parallel, month_end
from billing.models import ClosedPeriod, Customer, Invoice
from billing.services import BillingError, add_customer, invoice_customer
from pytest_ctxdb.context import run_in_new_context


def emails(session: Session) -> list[str]:
    return list(session.scalars(select(Customer.email).order_by(Customer.email)).all())


def invoiced_customers(session: Session) -> list[int]:
    return list(session.scalars(select(Invoice.customer_id).order_by(Invoice.customer_id)).all())


def test_job_commits_when_it_returns(db_session: Session) -> None:
    assert import_customers([("ada@example.com", 900), ("bob@example.com", 0)]) == 2

    assert emails(db_session) == ["ada@example.com", "bob@example.com"]


def test_job_rolls_back_when_it_raises(db_session: Session) -> None:
    with pytest.raises(BadRowError):
        import_customers([("ada@example.com", 900), ("bad@example.com", -1)])

    assert emails(db_session) == []


def test_job_sees_what_the_test_flushed(db_session: Session) -> None:
    db_session.add_all(
        [
            Customer(email="ada@example.com", monthly_fee=900),
            Customer(email="free@example.com", monthly_fee=0),
        ]
    )
    db_session.flush()  # on the test's connection: the job's new session sees it

    assert month_end("2024-05") == ["free@example.com"]

    assert db_session.scalar(select(func.count()).select_from(Invoice)) == 1
    assert db_session.scalars(select(ClosedPeriod.period)).all() == ["2024-05"]


def test_run_in_new_context(db_session: Session) -> None:
    ada = add_customer("ada@example.com", 900)
    free = add_customer("free@example.com", 0)

    run_in_new_context(invoice_customer, ada, "2024-05")  # committed when it returns
    with pytest.raises(BillingError):
        run_in_new_context(invoice_customer, free, "2024-05")  # rolled back: it raised

    assert invoiced_customers(db_session) == [ada]


def test_thread_pool(db_session: Session) -> None:
    ids = [
        add_customer(f"customer{i}@example.com", 0 if i % 5 == 0 else 100 * i) for i in range(20)
    ]

    outcome = invoice_in_parallel("2024-05", ids, workers=4)

    free = [ids[i] for i in range(0, 20, 5)]
    assert sorted(customer for customer, result in outcome.items() if result != "ok") == free
    assert invoiced_customers(db_session) == sorted(set(ids) - set(free))
