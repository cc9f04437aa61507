"""The blog's services: writes through the primary, reads through the replica.

``db_session()`` is the context session of the primary (alias ``default``) and
``db_session("replica")`` the one of the replica. In production the replica may lag behind
the primary for a moment; code that must read its own writes reads the primary.
"""

from __future__ import annotations

from sqlalchemy import delete, func, select

from pytest_ctxdb.context import atomic, db_session

from . import db  # noqa: F401  (registers the two databases)
from .models import Post

REPLICA = "replica"


class DuplicateTitleError(Exception):
    """A post of that title exists already."""


@atomic
def publish(title: str, body: str = "") -> int:
    """Write a post to the primary; committed when the function returns.

    The title check reads the primary: it must see this context's own writes, which the
    replica may not have yet.

    :returns: the new post's id.
    :raises DuplicateTitleError: the title is taken (nothing is written).
    """
    session = db_session()
    if session.scalar(select(Post.id).where(Post.title == title)) is not None:
        raise DuplicateTitleError(title)
    post = Post(title=title, body=body)
    session.add(post)
    session.flush()
    return post.id


@atomic
def publish_series(titles: list[str]) -> None:
    """Publish several posts, all or none: one taken title rolls back the whole series."""
    for title in titles:
        publish(title)  # a nested atomic block: a SAVEPOINT


@atomic
def retract(title: str) -> None:
    """Delete a post from the primary; committed when the function returns."""
    db_session().execute(delete(Post).where(Post.title == title))


def titles() -> list[str]:
    """Every title, sorted, read from the replica."""
    return list(db_session(REPLICA).scalars(select(Post.title).order_by(Post.title)))


def post_count() -> int:
    """The number of posts, read from the replica."""
    return db_session(REPLICA).scalar(select(func.count()).select_from(Post)) or 0
