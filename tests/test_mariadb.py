"""MariaDB: isolation with pymysql and asyncmy, and what MySQL-family servers add.

MariaDB commits the current transaction implicitly on DDL, ``TRUNCATE`` and a few other
statements, and MyISAM/Aria tables ignore ROLLBACK altogether. In rollback mode pytest-ctxdb
refuses the first (the test fails with the explanation and nothing is committed) and fails
tests that would write to the second; under ``@pytest.mark.db(transaction=True)`` both work
and every table is emptied afterwards. The inner suites and helpers come from
``test_isolation.py`` and ``test_async.py``; each run ends with a check, on a connection of
its own, that every table is empty, and afterwards its test database must be gone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from test_async import ASYNC_REFUSED, PER_MODULE, async_module, check_run, write_async_suite
from test_isolation import (
    COMMIT_SEQUENCE,
    COMMITS,
    FAILING,
    INI_LINES,
    INTEGRITY_RETRY,
    NESTED,
    SYNC_CONFTEST,
    run_suite,
    write_suite,
)

if TYPE_CHECKING:
    from conftest import Backend

#: savepoints through ``AsyncSession.begin_nested()``, the inner one rolled back.
ASYNC_NESTED = """
import pytest
from models import NAMES, Item

pytestmark = pytest.mark.asyncio


async def test_begin_nested_inner_rollback(async_db_session):
    assert (await async_db_session.scalars(NAMES)).all() == []
    async with async_db_session.begin_nested():
        async_db_session.add(Item(name="outer"))
        inner = await async_db_session.begin_nested()
        async_db_session.add(Item(name="inner"))
        await async_db_session.flush()
        await inner.rollback()
    await async_db_session.commit()
    assert (await async_db_session.scalars(NAMES)).all() == ["outer"]
"""

#: statements MariaDB commits implicitly: (statement, how the refusal quotes it).
IMPLICIT_COMMITS = (
    ("TRUNCATE TABLE note", "TRUNCATE TABLE note"),
    ("CREATE TABLE extra (id INTEGER)", "CREATE TABLE extra"),
    ("ALTER TABLE item ADD COLUMN extra INTEGER", "ALTER TABLE item"),
    ("DROP TABLE note", "DROP TABLE note"),
)
STATEMENTS = [statement for statement, _ in IMPLICIT_COMMITS]

#: each statement in a rollback-mode test, after a committed row (sync, then async).
REFUSED_SYNC = f"""
import pytest
from sqlalchemy import text
from models import Item


@pytest.mark.parametrize("statement", {STATEMENTS!r})
def test_refused(db_session, statement):
    db_session.add(Item(name="before the statement"))
    db_session.commit()
    db_session.execute(text(statement))
"""
REFUSED_ASYNC = f"""
import pytest
from sqlalchemy import text
from models import Item


@pytest.mark.asyncio
@pytest.mark.parametrize("statement", {STATEMENTS!r})
async def test_refused_async(async_db_session, statement):
    async_db_session.add(Item(name="before the statement"))
    await async_db_session.commit()
    await async_db_session.execute(text(statement))
"""

#: after the refusals: the schema is unchanged and every table empty.
UNCHANGED = """
from sqlalchemy import inspect
from models import row_counts


def test_schema_and_rows_unchanged(db_connection):
    inspector = inspect(db_connection)
    assert sorted(inspector.get_table_names()) == ["item", "note"]
    assert [column["name"] for column in inspector.get_columns("item")] == ["id", "name"]
    assert row_counts(db_connection) == {"item": 0, "note": 0}
"""

#: the same statements under transaction=True, after another transaction=True test: they run,
#: commit for real (seen from a connection of their own), and every table is emptied after.
COMMIT_MODE = """
import pytest
from sqlalchemy import text
from models import Item, Note, row_counts


def count_extra(connection):
    return connection.execute(text("SELECT count(*) FROM extra")).scalar()


@pytest.mark.db(transaction=True)
def test_a_commit_mode_first(db_session):
    db_session.add(Item(name="first"))
    db_session.commit()


@pytest.mark.db(transaction=True)
def test_b_statements_run(db_session, db_engine):
    item = Item(name="committed")
    db_session.add(item)
    db_session.commit()
    db_session.add(Note(item_id=item.id))
    db_session.commit()
    db_session.execute(text("TRUNCATE TABLE note"))
    db_session.execute(text("CREATE TABLE extra (id INTEGER)"))
    db_session.execute(text("INSERT INTO extra VALUES (1)"))
    db_session.commit()
    with db_engine.connect() as outside:
        assert row_counts(outside) == {"item": 1, "note": 0}
        assert count_extra(outside) == 1


def test_c_every_table_emptied(db_connection):
    assert row_counts(db_connection) == {"item": 0, "note": 0}
    assert count_extra(db_connection) == 0
"""

#: the suite's ``conftest.py`` adding a MyISAM table, which cannot roll back.
#: a schema hook making a view on a view (as in the README's example), a trigger, a sequence
#: (two of its values used, as seed data would) and a seeded table with a generated and an
#: invisible column.
OBJECTS_CONFTEST = """
def pytest_ctxdb_setup_schema(connection, alias):
    connection.exec_driver_sql(
        "CREATE TABLE seeded (id INTEGER PRIMARY KEY, n INTEGER,"
        " doubled INTEGER AS (n * 2) STORED, secret INTEGER INVISIBLE DEFAULT 0)"
    )
    connection.exec_driver_sql("INSERT INTO seeded (id, n, secret) VALUES (1, 21, 7)")
    connection.exec_driver_sql("CREATE VIEW item_names AS SELECT name FROM item")
    connection.exec_driver_sql(
        "CREATE VIEW z_named AS SELECT name FROM item_names WHERE name IS NOT NULL"
    )
    connection.exec_driver_sql(
        "CREATE TRIGGER shout BEFORE INSERT ON item FOR EACH ROW SET NEW.name = UPPER(NEW.name)"
    )
    connection.exec_driver_sql("CREATE SEQUENCE ticket START WITH 100")
    connection.exec_driver_sql("SELECT NEXTVAL(ticket), NEXTVAL(ticket)")  # seed data used 2
"""
OBJECTS = """
from sqlalchemy import text
from models import Item


def test_view_trigger_and_sequence(db_session):
    db_session.add(Item(name="quiet"))
    db_session.commit()
    assert db_session.execute(text("SELECT name FROM z_named")).scalars().all() == ["QUIET"]
    # Not a value the seed data used (MariaDB skips the template's cached ones too).
    assert db_session.execute(text("SELECT NEXTVAL(ticket)")).scalar() >= 102
    assert db_session.execute(text("SELECT n, doubled, secret FROM seeded")).all() == [(21, 42, 7)]
    database = db_session.execute(text("SELECT DATABASE()")).scalar()
    definitions = db_session.execute(
        text("SELECT VIEW_DEFINITION FROM information_schema.VIEWS WHERE TABLE_SCHEMA = :s"),
        {"s": database},
    ).scalars().all()
    assert len(definitions) == 2 and all(f"`{database}`" in d for d in definitions), definitions
"""

MYISAM_CONFTEST = """
def pytest_ctxdb_setup_schema(connection, alias):
    connection.exec_driver_sql(
        "CREATE TABLE legacy_log (id INTEGER PRIMARY KEY, message VARCHAR(50)) ENGINE=MyISAM"
    )
"""
MYISAM = """
import pytest
from sqlalchemy import text

LOG_COUNT = text("SELECT count(*) FROM legacy_log")


def test_rollback_mode_refused(db_session):
    db_session.execute(text("INSERT INTO legacy_log VALUES (1, 'would stay')"))


@pytest.mark.db(transaction=True)
def test_commit_mode_allowed(db_session):
    db_session.execute(text("INSERT INTO legacy_log VALUES (1, 'emptied afterwards')"))
    db_session.commit()
    assert db_session.execute(LOG_COUNT).scalar() == 1


@pytest.mark.db(transaction=True)
def test_commit_mode_emptied(db_session):
    assert db_session.execute(LOG_COUNT).scalar() == 0
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, ini: Callable[..., None]) -> pytest.Pytester:
    """A pytester whose ini names the models' metadata."""
    ini(*INI_LINES)
    return pytester


def test_sync_isolation(mariadb: Backend, suite: pytest.Pytester) -> None:
    """With pymysql, commits, rollbacks, savepoints, an IntegrityError retry and failing tests
    leave nothing for the next test."""
    write_suite(
        suite,
        SYNC_CONFTEST,
        test_commits=COMMITS,
        test_a_sequence=COMMIT_SEQUENCE,
        test_b_integrity=INTEGRITY_RETRY,
        test_c_nested=NESTED,
        test_failing=FAILING,
    )
    result = run_suite(mariadb, suite, "-v")
    result.assert_outcomes(passed=10, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*test_connection_commit FAILED*",
            "*test_after_refused_commit PASSED*",
            "*test_sql_error FAILED*",
            "*test_after_sql_error PASSED*",
        ]
    )


def test_async_isolation(mariadb: Backend, suite: pytest.Pytester) -> None:
    """With asyncmy, under function and session loop scopes, commits, rollbacks, savepoints and
    a refused outer commit leave nothing for the next test."""
    write_async_suite(
        suite,
        test_a_nested=ASYNC_NESTED,
        test_function=async_module("function"),
        test_session=async_module("session"),
        test_zy_refused=ASYNC_REFUSED,
    )
    check_run(mariadb, suite, passed=2 * PER_MODULE + 3, failed=1)


def test_implicit_commit_is_refused_in_rollback_mode(
    mariadb: Backend, suite: pytest.Pytester
) -> None:
    """DDL and TRUNCATE in a rollback-mode test (sync or async) fail it with the explanation;
    nothing was committed: the next test finds the schema unchanged and every table empty."""
    write_suite(
        suite,
        "",
        test_a_refused=REFUSED_SYNC,
        test_b_unchanged=UNCHANGED,
        test_c_refused=REFUSED_ASYNC,
        test_d_unchanged=UNCHANGED,
    )
    result = run_suite(mariadb, suite, "-v")
    result.assert_outcomes(passed=3, failed=2 * len(IMPLICIT_COMMITS))
    for test in ("test_refused", "test_refused_async"):
        for statement, quoted in IMPLICIT_COMMITS:
            result.stdout.fnmatch_lines(
                [
                    f"*_ {test}[[]{statement}[]] _*",
                    (
                        f"E   *TransactionError: pytest-ctxdb refused '{quoted}'...: on "
                        "MySQL/MariaDB this statement commits the current transaction implicitly*"
                    ),
                ]
            )


def test_implicit_commit_runs_in_commit_mode_and_tables_are_emptied(
    mariadb: Backend, suite: pytest.Pytester
) -> None:
    """Under transaction=True, TRUNCATE and CREATE TABLE run and commit; afterwards every
    table of the test database is empty, the one the test created included."""
    write_suite(suite, "", test_commit_mode=COMMIT_MODE)
    result = run_suite(mariadb, suite, "-v")
    result.assert_outcomes(passed=4)


def test_myisam_table_fails_rollback_mode_tests(mariadb: Backend, suite: pytest.Pytester) -> None:
    """A MyISAM table from the schema hook fails rollback-mode tests with a message naming it;
    transaction=True tests run, and the table is emptied after them."""
    write_suite(suite, MYISAM_CONFTEST, test_myisam=MYISAM)
    result = run_suite(mariadb, suite, "-v")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at setup of test_rollback_mode_refused _*",
            (
                "*pytest-ctxdb: alias 'default': tables legacy_log use a storage engine that "
                "cannot roll back (MyISAM/Aria)*ENGINE=InnoDB*transaction=True*"
            ),
        ]
    )


def test_views_triggers_and_sequences_are_cloned(mariadb: Backend, suite: pytest.Pytester) -> None:
    """MariaDB has no CREATE DATABASE ... TEMPLATE: the clone replays the template's views (in
    dependency order, on the clone's own tables), triggers and sequences too, and copies seed
    rows of tables with generated and invisible columns. (A spare clone of such a template,
    used in place, is in test_templates.)"""
    write_suite(suite, OBJECTS_CONFTEST, test_objects=OBJECTS)
    result = run_suite(mariadb, suite, "-v")
    result.assert_outcomes(passed=2)
