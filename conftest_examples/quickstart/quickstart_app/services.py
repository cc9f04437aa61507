"""The app's service functions, written the way real application code is written.

They take a session from the caller, and they *commit*: in production that makes the data
permanent. In a test, the session is pytest-ctxdb's ``db_session``, whose ``commit()`` only
releases a SAVEPOINT inside the test's outer transaction, so the same code runs unchanged and
its data is still rolled back after the test.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from .models import Author, Book


class CatalogueError(Exception):
    """Base class of the app's domain errors."""


class DuplicateAuthorError(CatalogueError):
    """An author of that name exists already."""


class UnknownAuthorError(CatalogueError):
    """No author has that id."""


class DuplicateBookError(CatalogueError):
    """The author has a book of that title already."""


def create_author(session: Session, name: str) -> Author:
    """Add an author and commit.

    :raises DuplicateAuthorError: the name is taken (the session is rolled back and usable).
    """
    author = Author(name=name)
    session.add(author)
    try:
        session.commit()
    except IntegrityError as exc:
        # The failed flush left the transaction unusable until it is rolled back.
        session.rollback()
        raise DuplicateAuthorError(name) from exc
    return author


def add_book(session: Session, author_id: int, title: str) -> Book:
    """Add a book to an existing author and commit.

    :raises UnknownAuthorError: no author has ``author_id``.
    :raises DuplicateBookError: the author has that title already.
    """
    if session.get(Author, author_id) is None:
        raise UnknownAuthorError(author_id)
    book = Book(author_id=author_id, title=title)
    session.add(book)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise DuplicateBookError(title) from exc
    return book


def import_books(session: Session, author_id: int, titles: Iterable[str]) -> list[str]:
    """Add many books in one commit, skipping titles the author has already.

    Each book goes into its own SAVEPOINT (``begin_nested()``): a duplicate rolls back
    only that savepoint, and the import goes on.

    :returns: the skipped titles.
    """
    skipped: list[str] = []
    for title in titles:
        try:
            with session.begin_nested():  # flushed and RELEASEd at the end of the block
                session.add(Book(author_id=author_id, title=title))
        except IntegrityError:  # the block rolled back to its savepoint
            skipped.append(title)
    session.commit()
    return skipped


def titles_by(session: Session, author_name: str) -> list[str]:
    """The titles of an author, sorted."""
    query = select(Book.title).join(Book.author).where(Author.name == author_name)
    return list(session.scalars(query.order_by(Book.title)))


async def create_author_async(session: AsyncSession, name: str) -> Author:
    """The async twin of :func:`create_author`.

    :raises DuplicateAuthorError: the name is taken (the session is rolled back and usable).
    """
    author = Author(name=name)
    session.add(author)
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise DuplicateAuthorError(name) from exc
    # commit() expired the object; an AsyncSession cannot reload attributes implicitly
    # (no I/O on attribute access), so reload it here, explicitly.
    await session.refresh(author)
    return author
