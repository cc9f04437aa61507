"""The app's service functions, called with ``db_session`` exactly as the app calls them.

The services commit, catch ``IntegrityError``, roll back and raise domain errors; none of
that needs changing for tests.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from quickstart_app.models import Author, Book
from quickstart_app.services import (
    DuplicateAuthorError,
    DuplicateBookError,
    UnknownAuthorError,
    add_book,
    create_author,
    import_books,
    titles_by,
)


def test_create_author_and_add_books(db_session: Session) -> None:
    author = create_author(db_session, "Octavia E. Butler")
    add_book(db_session, author.id, "Kindred")
    add_book(db_session, author.id, "Dawn")

    assert titles_by(db_session, "Octavia E. Butler") == ["Dawn", "Kindred"]


def test_duplicate_author_is_a_domain_error_and_the_session_goes_on(db_session: Session) -> None:
    create_author(db_session, "Stanisław Lem")

    # The service's commit() fails with IntegrityError; it rolls back and re-raises.
    with pytest.raises(DuplicateAuthorError):
        create_author(db_session, "Stanisław Lem")

    # rollback() went back to the last SAVEPOINT: the first author is still there, and the
    # session (and the test's transaction; PostgreSQL would otherwise refuse every further
    # statement) is usable again.
    create_author(db_session, "Iain M. Banks")
    names = db_session.scalars(select(Author.name).order_by(Author.name)).all()
    assert names == ["Iain M. Banks", "Stanisław Lem"]


def test_duplicate_book_and_unknown_author(db_session: Session) -> None:
    author = create_author(db_session, "N. K. Jemisin")
    add_book(db_session, author.id, "The Fifth Season")

    with pytest.raises(DuplicateBookError):
        add_book(db_session, author.id, "The Fifth Season")
    with pytest.raises(UnknownAuthorError):
        add_book(db_session, author.id + 1000, "Nobody's Book")

    assert titles_by(db_session, "N. K. Jemisin") == ["The Fifth Season"]


def test_integrity_error_by_hand(db_session: Session) -> None:
    """The same as the services do, spelled out: catch, roll back, carry on."""
    db_session.add(Author(name="Ted Chiang"))
    db_session.commit()

    db_session.add(Author(name="Ted Chiang"))
    with pytest.raises(IntegrityError):
        db_session.flush()
    db_session.rollback()  # required before the session can be used again

    db_session.add(Author(name="Ken Liu"))
    db_session.commit()
    assert len(db_session.scalars(select(Author)).all()) == 2


def test_begin_nested_with_an_inner_rollback(db_session: Session) -> None:
    """``begin_nested()`` opens a SAVEPOINT of your own; rolling it back keeps the rest."""
    author = create_author(db_session, "Ann Leckie")
    db_session.add(Book(author=author, title="Ancillary Justice"))

    savepoint = db_session.begin_nested()  # flushes the pending book first
    db_session.add(Book(author=author, title="A draft nobody should see"))
    db_session.flush()
    savepoint.rollback()  # undoes only the draft

    db_session.commit()
    assert titles_by(db_session, "Ann Leckie") == ["Ancillary Justice"]


def test_import_skips_duplicates_with_savepoints(db_session: Session) -> None:
    author = create_author(db_session, "Terry Pratchett")
    add_book(db_session, author.id, "Mort")

    skipped = import_books(db_session, author.id, ["Guards! Guards!", "Mort", "Small Gods", "Mort"])

    assert skipped == ["Mort", "Mort"]
    assert titles_by(db_session, "Terry Pratchett") == ["Guards! Guards!", "Mort", "Small Gods"]
