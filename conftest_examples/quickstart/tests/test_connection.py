"""``db_connection``: the test's Connection, for Core statements and raw SQL.

It is the connection ``db_session`` is bound to, inside the same outer transaction: what one
writes, the other reads, and all of it is rolled back after the test.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from pytest_ctxdb import TransactionError
from quickstart_app.models import Author, Book
from quickstart_app.services import create_author, titles_by


def test_core_statements(db_connection: Connection) -> None:
    assert db_connection.scalar(select(func.count()).select_from(Author)) == 0

    db_connection.execute(
        insert(Author), [{"name": "Jorge Luis Borges"}, {"name": "Italo Calvino"}]
    )
    rows = db_connection.execute(text("SELECT name FROM author ORDER BY name")).scalars().all()

    assert rows == ["Italo Calvino", "Jorge Luis Borges"]


def test_connection_and_session_share_one_transaction(
    db_connection: Connection, db_session: Session
) -> None:
    db_connection.execute(insert(Author).values(name="Written with Core"))
    assert db_session.scalars(select(Author.name)).all() == ["Written with Core"]

    create_author(db_session, "Written with the ORM")  # commits: releases a SAVEPOINT
    assert db_connection.scalar(select(func.count()).select_from(Author)) == 2


def test_begin_nested_on_the_connection(db_connection: Connection) -> None:
    author_id = db_connection.scalar(insert(Author).values(name="Borges").returning(Author.id))

    savepoint = db_connection.begin_nested()
    db_connection.execute(insert(Book).values(author_id=author_id, title="Unfinished"))
    savepoint.rollback()

    with db_connection.begin_nested():  # released at the end of the block
        db_connection.execute(insert(Book).values(author_id=author_id, title="Ficciones"))

    with Session(bind=db_connection, join_transaction_mode="create_savepoint") as session:
        # A Session of your own on the test connection (e.g. an app's sessionmaker bound to
        # it) must use join_transaction_mode="create_savepoint", as db_session does.
        assert titles_by(session, "Borges") == ["Ficciones"]


def test_committing_the_connection_is_refused(db_connection: Connection) -> None:
    """Committing the outer transaction would make the test's data permanent."""
    with pytest.raises(TransactionError):
        db_connection.commit()
