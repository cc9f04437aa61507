"""The app's tables, as SQLAlchemy 2.x typed declarative models.

pytest-ctxdb creates these tables in the test database because ``pytest.ini`` says
``db_metadata = quickstart_app.models:Base.metadata``.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "author"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)

    books: Mapped[list[Book]] = relationship(back_populates="author", order_by="Book.title")

    def __repr__(self) -> str:
        return f"Author(id={self.id!r}, name={self.name!r})"


class Book(Base):
    __tablename__ = "book"
    # An author has each title once; the same title by two authors is fine.
    __table_args__ = (UniqueConstraint("author_id", "title", name="uq_book_author_title"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    author_id: Mapped[int] = mapped_column(ForeignKey("author.id"))

    author: Mapped[Author] = relationship(back_populates="books")

    def __repr__(self) -> str:
        return f"Book(id={self.id!r}, title={self.title!r}, author_id={self.author_id!r})"
