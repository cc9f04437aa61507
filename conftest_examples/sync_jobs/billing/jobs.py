"""Job entry points, as a scheduler (cron, a CLI, a queue worker) calls them.

A job is not a request: nothing opens a context for it, so the entry point does, with
``@session_context()``. Its sessions are committed when it returns, rolled back if it
raises, and closed either way.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from pytest_ctxdb.context import db_session, run_in_new_context, session_context

from .models import Customer
from .services import close_period, invoice_all, invoice_customer


class BadRowError(ValueError):
    """An input row of the import is invalid."""


@session_context()
def import_customers(rows: list[tuple[str, int]]) -> int:
    """Import customers: all of them or, if one row is bad, none."""
    session = db_session()
    for email, monthly_fee in rows:
        if monthly_fee < 0:
            raise BadRowError(email)  # the context rolls back the rows added before
        session.add(Customer(email=email, monthly_fee=monthly_fee))
    return len(rows)  # the context commits


@session_context()
def month_end(period: str) -> list[str]:
    """Invoice everybody for ``period``, then close it; return the customers skipped."""
    skipped = invoice_all(period)  # @atomic: commits on its own
    close_period(period)  # atomic(durable=True): allowed, it is not nested
    return skipped


def invoice_in_parallel(period: str, customer_ids: list[int], workers: int = 4) -> dict[int, str]:
    """Invoice customers on a thread pool, each in a context of its own.

    ``run_in_new_context`` gives each call its own session and transaction, committed when
    ``invoice_customer`` returns and rolled back if it raises, so one failure does not undo
    the others. Returns ``"ok"`` or the error, per customer.
    """
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {
            customer_id: pool.submit(run_in_new_context, invoice_customer, customer_id, period)
            for customer_id in customer_ids
        }
    outcome = {}
    for customer_id, future in futures.items():
        error = future.exception()
        outcome[customer_id] = "ok" if error is None else f"{type(error).__name__}: {error}"
    return outcome
