"""Read-after-write through the mirror: the app writes to the primary and reads the replica.

``pytest.ini`` says ``db_mirrors = replica=default``: in tests the replica alias uses the
primary's test connection and transaction. What a test (or the code it calls) writes through
the primary is read through the replica at once, and is gone after the test, like everything
else the test wrote.
"""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from blog.services import (
    DuplicateTitleError,
    post_count,
    publish,
    publish_series,
    retract,
    titles,
)
from pytest_ctxdb import context


def test_published_post_is_read_from_the_replica(db_session: Session) -> None:
    publish("Hello, replica")
    assert titles() == ["Hello, replica"]


def test_the_next_test_starts_empty(db_session: Session) -> None:
    """Nothing of the previous test is left, on either alias."""
    assert titles() == []
    publish("Hello, replica")  # the same title again: no unique violation
    assert post_count() == 1


def test_what_the_primary_rolls_back_is_not_read(db_session: Session) -> None:
    publish("Kept")
    with pytest.raises(DuplicateTitleError):
        publish_series(["Rolled back with its series", "Kept"])
    publish("Retracted")
    retract("Retracted")
    assert titles() == ["Kept"]


def test_the_replica_has_its_own_session_on_the_same_connection(db_session: Session) -> None:
    """In the test's own context the primary's context session is the db_session fixture;
    the replica's is another session, on the same test connection."""
    primary, replica = context.db_session(), context.db_session("replica")
    assert primary is db_session
    assert replica is not db_session
    assert replica.connection() is db_session.connection()
