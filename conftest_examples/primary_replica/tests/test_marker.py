"""``@pytest.mark.db``: which aliases a test uses.

A test with the ``db_session`` fixture (or a bare ``@pytest.mark.db``) declares the alias
``default``, and with it its mirror ``replica``. ``using=["default", "replica"]`` declares both
explicitly; ``db_sessions[alias]`` is then the test's session of each one, the same object as
the app's context session of that alias in the test's own context.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from blog.models import Post
from blog.services import post_count, publish, titles
from pytest_ctxdb import context

TITLES = select(Post.title).order_by(Post.title)


@pytest.mark.db(using=["default", "replica"])
def test_write_primary_read_replica_with_the_fixtures(db_sessions: Mapping[str, Session]) -> None:
    db_sessions["default"].add(Post(title="Through the fixture"))
    db_sessions["default"].commit()
    assert db_sessions["replica"].scalars(TITLES).all() == ["Through the fixture"]


@pytest.mark.db
def test_the_marker_alone_binds_the_app() -> None:
    """No fixture at all: the marker gives the test its transaction, and the app its sessions."""
    publish("Marker only")
    assert titles() == ["Marker only"]


@pytest.mark.db(using=["default", "replica"])
class TestBothAliases:
    def test_the_apps_sessions_are_the_fixtures(self, db_sessions: Mapping[str, Session]) -> None:
        primary, replica = db_sessions["default"], db_sessions["replica"]
        assert context.db_session() is primary
        assert context.db_session("replica") is replica

    def test_each_test_starts_empty(self, db_sessions: Mapping[str, Session]) -> None:
        assert post_count() == 0
        assert db_sessions["default"].scalars(TITLES).all() == []
