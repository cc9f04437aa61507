"""Sync isolation: whatever a test does through ``db_session`` / ``db_connection`` is gone after it.

Each test writes a small suite with ``pytester``, runs it in a subprocess against every
backend, and checks the outcome; then it checks from outside the run that nothing was left
behind: no test database on the server, no SQLite file, and (from inside the run, through a
separate connection in the suite's last test) no rows in any table.

The helpers and snippets defined here are shared with ``test_async.py``.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Backend

#: the inner suites' models: a parent table with a unique name and a child with a foreign key.
MODELS = '''
from sqlalchemy import ForeignKey, String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "item"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


class Note(Base):
    __tablename__ = "note"
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id"))


NAMES = select(Item.name).order_by(Item.name)


def row_counts(connection):
    """Rows per table of the metadata, as seen by ``connection``."""
    return {
        table.name: connection.scalar(select(func.count()).select_from(table))
        for table in Base.metadata.sorted_tables
    }
'''

#: the last test of every inner suite (its file sorts last): a connection of its own, outside
#: any test's outer transaction, must find every table empty.
NOTHING_LEFT = """
from models import row_counts


def test_nothing_left(db_engine):
    with db_engine.connect() as connection:
        assert row_counts(connection) == {"item": 0, "note": 0}
"""

#: ini lines of every inner suite; warnings (unclosed connections, unraisable errors) fail it.
INI_LINES = ("db_metadata = models:Base.metadata", "filterwarnings = error")

#: the header line naming the embedded SQLite test database, e.g.
#: ``ctxdb: default: sqlite+pysqlite:////tmp/pytest-ctxdb-1-ab/test_ctxdb (embedded SQLite; ...``
SQLITE_HEADER = re.compile(
    r"^ctxdb: default: sqlite\+pysqlite:///(?P<path>\S+) \(embedded SQLite", re.MULTILINE
)

#: the inner suite's ``conftest.py`` (sync): every test must start with empty tables.
SYNC_CONFTEST = """
import pytest
from models import row_counts


@pytest.fixture(autouse=True)
def starts_empty(db_connection):
    assert row_counts(db_connection) == {"item": 0, "note": 0}
"""

#: tests committing through ``db_session`` whose data the next test must not see; they run as
#: A, B, A again, so each order (A then B, B then A) is seen, and a leaked A breaks the second A.
COMMITS = """
import pytest
from models import NAMES, Item


@pytest.mark.parametrize("name", ["A", "B", "A"])
def test_commit(db_session, name):
    db_session.add(Item(name=name))
    db_session.commit()
    assert db_session.scalars(NAMES).all() == [name]
"""

#: a test's session and the objects it loaded are freed after it (pytest keeps every item
#: to the end of the run: what the plugin left on it would pile up, test after test).
RELEASED = """
import gc
import weakref

from models import Item

KEPT = []


def test_a_keeps_weak_references(db_session):
    item = Item(name="weak")
    db_session.add(item)
    db_session.commit()
    KEPT.extend([weakref.ref(db_session), weakref.ref(item)])


def test_b_they_are_gone():
    gc.collect()
    assert len(KEPT) == 2
    assert [ref() for ref in KEPT] == [None, None]
"""

#: commit, rollback, commit, close, then a session of the test's own that commits.
COMMIT_SEQUENCE = """
from sqlalchemy.orm import Session
from models import NAMES, Item, Note


def test_commit_rollback_commit_close_new_session(db_session, db_connection):
    db_session.add(Item(name="one"))
    db_session.commit()
    db_session.add(Item(name="rolled back"))
    db_session.flush()
    db_session.rollback()
    db_session.add(Item(name="two"))
    db_session.commit()
    db_session.close()
    with Session(bind=db_connection, join_transaction_mode="create_savepoint") as own:
        item = Item(name="three")
        own.add(item)
        own.flush()
        own.add(Note(item_id=item.id))
        own.commit()
        assert own.scalars(NAMES).all() == ["one", "three", "two"]
    assert db_connection.scalars(NAMES).all() == ["one", "three", "two"]
    assert db_session.scalars(NAMES).all() == ["one", "three", "two"]
"""

#: a unique violation caught, rolled back and retried with another name.
INTEGRITY_RETRY = """
import pytest
from sqlalchemy.exc import IntegrityError
from models import NAMES, Item


def test_integrity_error_rollback_retry(db_session):
    db_session.add(Item(name="taken"))
    db_session.commit()
    db_session.add(Item(name="taken"))
    with pytest.raises(IntegrityError):
        db_session.commit()
    db_session.rollback()
    db_session.add(Item(name="free"))
    db_session.commit()
    assert db_session.scalars(NAMES).all() == ["free", "taken"]
"""

#: nested savepoints, the inner one rolled back (through the session and the connection).
NESTED = """
from sqlalchemy import insert
from models import NAMES, Item


def test_session_nested_inner_rollback(db_session):
    with db_session.begin_nested():
        db_session.add(Item(name="outer"))
        inner = db_session.begin_nested()
        db_session.add(Item(name="inner"))
        db_session.flush()
        inner.rollback()
    db_session.commit()
    assert db_session.scalars(NAMES).all() == ["outer"]


def test_connection_nested_inner_rollback(db_connection):
    with db_connection.begin_nested():
        db_connection.execute(insert(Item).values(name="outer"))
        inner = db_connection.begin_nested()
        db_connection.execute(insert(Item).values(name="inner"))
        inner.rollback()
    assert db_connection.scalars(NAMES).all() == ["outer"]
"""

#: tests that fail with their outer transaction committed (refused) or aborted by an SQL error
#: (PostgreSQL then refuses every statement until rollback); the next test must start clean.
FAILING = """
from sqlalchemy import insert, text
from models import NAMES, Item


def test_connection_commit(db_connection):
    db_connection.execute(insert(Item).values(name="would leak"))
    db_connection.commit()


def test_after_refused_commit(db_session):
    assert db_session.scalars(NAMES).all() == []


def test_sql_error(db_connection):
    db_connection.execute(insert(Item).values(name="before the error"))
    db_connection.execute(text("SELECT * FROM no_such_table"))


def test_after_sql_error(db_session):
    assert db_session.scalars(NAMES).all() == []
"""


def write_suite(pytester: pytest.Pytester, conftest: str, **tests: str) -> None:
    """Write an inner suite: models, ``conftest.py``, the ``tests`` files and the final check
    ``test_zz_nothing_left.py`` (collected last, as files run in name order)."""
    pytester.makepyfile(models=MODELS)
    pytester.makeconftest(conftest)
    pytester.makepyfile(**tests, test_zz_nothing_left=NOTHING_LEFT)


def run_suite(backend: Backend, pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run the inner suite against ``backend`` in a subprocess and check that it left nothing.

    Server runs get a test database name of their own, so concurrent runs on one server do not
    meet. ``timeout`` turns a run that hangs (e.g. at exit, on a thread or loop left behind)
    into a failure instead of a stuck outer run. The caller checks the outcomes.
    """
    name = f"test_ctxdb_{uuid.uuid4().hex[:12]}"
    name_args = ("--db-test-name", name) if backend.url is not None else ()
    result = pytester.runpytest_subprocess(*backend.args, *name_args, *args, timeout=120)
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    assert_nothing_left(backend, result, name)
    return result


def assert_nothing_left(backend: Backend, result: pytest.RunResult, name: str) -> None:
    """Check from outside the finished run that its test database ``name`` is gone (server), or
    its SQLite file and directory, named in the ``ctxdb: default:`` header line."""
    if backend.url is None:
        match = SQLITE_HEADER.search(result.stdout.str())
        assert match, f"no embedded SQLite header line in:\n{result.stdout.str()}"
        path = Path("/" + match["path"].lstrip("/"))
        assert path.name.startswith("test_")
        assert not path.exists(), f"{path} survived the run"
        assert not path.parent.exists(), f"{path.parent} survived the run"
    else:
        assert name not in backend.leftover_test_databases(), result.stdout.str()


@pytest.fixture
def sync_suite(pytester: pytest.Pytester, ini) -> pytest.Pytester:
    """A pytester whose ini names the models' metadata."""
    ini(*INI_LINES)
    return pytester


def test_commit_then_next_test_sees_nothing_in_both_orders(backend: Backend, sync_suite) -> None:
    """A commit through db_session is invisible to the next test, whichever test runs first."""
    write_suite(sync_suite, SYNC_CONFTEST, test_commits=COMMITS)
    result = run_suite(backend, sync_suite, "-v")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [f"*test_commit[[]{test_id}[]] PASSED*" for test_id in ("A0", "B", "A1")]
        + ["*test_nothing_left PASSED*"]
    )


def test_savepoint_workflows_are_visible_within_the_test_and_gone_after(
    backend: Backend, sync_suite
) -> None:
    """Commit/rollback/close/new-session, IntegrityError retry and nested savepoints behave as in
    one transaction within the test, and none of their rows reach the next test."""
    write_suite(
        sync_suite,
        SYNC_CONFTEST,
        test_a_sequence=COMMIT_SEQUENCE,
        test_b_integrity=INTEGRITY_RETRY,
        test_c_nested=NESTED,
    )
    result = run_suite(backend, sync_suite, "-v")
    result.assert_outcomes(passed=5)


def test_failing_tests_leave_nothing(backend: Backend, sync_suite) -> None:
    """db_connection.commit() fails the test with the TransactionError message, and neither its
    row nor that of a test failing on an SQL error reaches the next test."""
    write_suite(sync_suite, SYNC_CONFTEST, test_failing=FAILING)
    result = run_suite(backend, sync_suite, "-v")
    result.assert_outcomes(passed=3, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*test_connection_commit FAILED*",
            "*test_after_refused_commit PASSED*",
            "*test_sql_error FAILED*",
            "*test_after_sql_error PASSED*",
            "*TransactionError: pytest-ctxdb refused to COMMIT the test's outer transaction*",
        ]
    )


def test_a_tests_session_and_objects_are_freed_after_it(backend: Backend, sync_suite) -> None:
    """Nothing of a finished test (its session, the objects it loaded) is kept; the run's
    connection is, by design (one connection per run, see the README)."""
    write_suite(sync_suite, SYNC_CONFTEST, test_released=RELEASED)
    result = run_suite(backend, sync_suite, "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*test_b_they_are_gone PASSED*"])
