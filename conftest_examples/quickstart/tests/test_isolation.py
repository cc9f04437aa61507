"""Every test starts with empty tables, even after another test committed.

``db_session`` lives inside an outer transaction that pytest-ctxdb rolls back after each
test. ``db_session.commit()`` releases a SAVEPOINT inside it, so "committed" data is real for
the rest of the test (other queries, other sessions on the test connection see it) and gone
afterwards.

The two tests below are the same on purpose: whichever runs second would fail on the unique
author name, and on its first assertion, if the first one's data leaked.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from quickstart_app.models import Author


def count_authors(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Author)) or 0


def test_commit_in_one_test(db_session: Session) -> None:
    assert count_authors(db_session) == 0

    db_session.add(Author(name="Ursula K. Le Guin"))
    db_session.commit()  # releases a SAVEPOINT; the outer transaction stays open

    assert count_authors(db_session) == 1


def test_is_gone_in_the_next(db_session: Session) -> None:
    assert count_authors(db_session) == 0

    db_session.add(Author(name="Ursula K. Le Guin"))
    db_session.commit()

    assert count_authors(db_session) == 1


def test_rollback_undoes_only_what_was_not_committed(db_session: Session) -> None:
    """Inside a test, commit() and rollback() behave as they do on a real database."""
    assert count_authors(db_session) == 0
    db_session.add(Author(name="Committed"))
    db_session.commit()

    db_session.add(Author(name="Rolled back"))
    db_session.flush()  # sent to the database, not committed
    db_session.rollback()  # back to the state of the last commit()

    assert db_session.scalars(select(Author.name)).all() == ["Committed"]
