"""Service functions on the context session, with Django-style ``atomic`` blocks.

* ``@atomic`` / ``with atomic():`` outermost: a transaction, committed at the end of the block
  and rolled back if it raises.
* nested: a SAVEPOINT, so an error rolls back only the inner block's work.
* ``durable=True``: the block must be the outermost one, or it refuses to run.
"""

from __future__ import annotations

from sqlalchemy import exists, select

from pytest_ctxdb.context import atomic, db_session

from .models import ClosedPeriod, Customer, Invoice


class BillingError(Exception):
    """A customer could not be invoiced."""


class PeriodClosedError(BillingError):
    """The period is closed: no more invoices for it."""


@atomic
def add_customer(email: str, monthly_fee: int) -> int:
    session = db_session()
    customer = Customer(email=email, monthly_fee=monthly_fee)
    session.add(customer)
    session.flush()
    return customer.id


def invoice_customer(customer_id: int, period: str) -> Invoice:
    """Write the customer's invoice for ``period`` in the current context (no commit).

    The invoice row is flushed before the fee is checked, so a failure leaves a write that
    somebody has to roll back: the caller's ``atomic`` block or context.
    """
    session = db_session()
    if session.scalar(select(exists().where(ClosedPeriod.period == period))):
        raise PeriodClosedError(period)
    customer = session.get_one(Customer, customer_id)
    invoice = Invoice(customer_id=customer_id, period=period, amount=customer.monthly_fee)
    session.add(invoice)
    session.flush()
    if invoice.amount <= 0:
        raise BillingError(f"{customer.email}: nothing to invoice")
    return invoice


@atomic
def invoice_all(period: str) -> list[str]:
    """Invoice every customer for ``period``; return the e-mails that could not be invoiced.

    One transaction for the whole run, with a SAVEPOINT per customer: a customer that fails
    is skipped, and only its own invoice is rolled back.
    """
    session = db_session()
    skipped = []
    for customer in session.scalars(select(Customer).order_by(Customer.id)).all():
        try:
            with atomic():  # nested: a SAVEPOINT
                invoice_customer(customer.id, period)
        except BillingError:
            skipped.append(customer.email)
    return skipped


@atomic(durable=True)
def close_period(period: str) -> None:
    """Close ``period``. Durable: it must commit as soon as it returns, so it refuses to run
    inside another atomic block (whose rollback could still undo it)."""
    db_session().add(ClosedPeriod(period=period))
