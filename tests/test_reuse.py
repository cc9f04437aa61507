"""A run's database kept as the next run's spare clone when it provably is the template again
(PostgreSQL), seen from outside: which database each run gets (its oid), the ids its rows
get (sequences), what it finds, and what the server holds afterwards."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Backend, make_backend
from sqlalchemy import create_engine
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool
from test_templates import databases, drop_databases, spares, wait_unused, write_suite

#: records the database's oid, the id a new item gets, and the items it finds.
OBSERVE = """
import json
from pathlib import Path

from sqlalchemy import select, text

from models import Item


def test_observe(db_session):
    found = sorted(db_session.scalars(select(Item.name)))
    item = Item(name="new")
    db_session.add(item)
    db_session.commit()  # a SAVEPOINT release: rolled back with the test, the id is not
    oid = db_session.execute(
        text("SELECT oid FROM pg_database WHERE datname = current_database()")
    ).scalar()
    seen = {"oid": oid, "id": item.id, "found": found}
    Path(__file__).with_name("seen.json").write_text(json.dumps(seen))
"""

#: tests that leave the run's database unlike the template, one way each.
WRITES = {
    "db_engine": """
from sqlalchemy import text


def test_writes(db_engine):
    with db_engine.begin() as connection:
        connection.execute(text("INSERT INTO item (name) VALUES ('left by db_engine')"))
""",
    "own_engine": """
from sqlalchemy import create_engine, text


def test_writes(db_session):
    # an engine of its own on the test database: the plugin does not see it
    url = db_session.connection().engine.url
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO item (name) VALUES ('left by own engine')"))
    engine.dispose()
""",
    "own_engine_ddl": """
from sqlalchemy import create_engine, text


def test_writes(db_session):
    engine = create_engine(db_session.connection().engine.url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE left_behind (id integer)"))
    engine.dispose()
""",
    "transaction": """
import pytest
from sqlalchemy import text


@pytest.mark.db(transaction=True)
def test_writes(db_session):
    db_session.execute(text("INSERT INTO item (name) VALUES ('emptied afterwards')"))
    db_session.commit()
""",
}

#: seed data and a moved sequence in the template (``pytest_ctxdb_setup_schema``).
SEED_CONFTEST = """
def pytest_ctxdb_setup_schema(connection, alias):
    connection.exec_driver_sql("INSERT INTO item (name) VALUES ('seed 1'), ('seed 2')")
    connection.exec_driver_sql("CREATE SEQUENCE other_seq")
    connection.exec_driver_sql("ALTER SEQUENCE other_seq RESTART WITH 100")
"""


@pytest.fixture(autouse=True)
def private_tmpdir(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Inner runs get a private TMPDIR (their locks); no URL or xdist variable leaks in."""
    for name in (
        "PYTEST_CTXDB_URL",
        "PYTEST_XDIST_WORKER",
        "PYTEST_XDIST_WORKER_COUNT",
        "PYTEST_XDIST_TESTRUNUID",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path_factory.mktemp("inner-tmp")))


@pytest.fixture
def postgresql_url(postgresql: Backend) -> URL:
    assert postgresql.url is not None
    return postgresql.url


@pytest.fixture
def base(postgresql_url: URL) -> Iterator[str]:
    """A unique ``test_ctxdb_*`` base name; its databases are dropped afterwards."""
    name = f"test_ctxdb_{uuid.uuid4().hex[:10]}"
    yield name
    drop_databases(postgresql_url, [n for n in databases(postgresql_url) if n.startswith(name)])


def run(pytester: pytest.Pytester, postgresql: Backend, base: str, *files: str) -> dict[str, Any]:
    """Run the inner suite (``test_observe.py`` first, then ``files``) with test database
    ``base``; return what ``test_observe`` saw."""
    seen = pytester.path / "seen.json"
    seen.unlink(missing_ok=True)
    for old in pytester.path.glob("test_*.py"):
        old.unlink()
    (pytester.path / "test_a_observe.py").write_text(OBSERVE)
    for name in files:
        (pytester.path / f"test_b_{name}.py").write_text(WRITES[name])
    shutil.rmtree(pytester.path / "__pycache__", ignore_errors=True)
    result = postgresql.run_named(pytester, base)
    result.assert_outcomes(passed=1 + len(files))
    assert postgresql.url is not None
    for spare in spares(postgresql.url, base):
        wait_unused(postgresql.url, spare)
    return dict(json.loads(seen.read_text()))


def sequence_state(url: URL, database: str) -> list[tuple[Any, ...]]:
    engine = create_engine(url.set(database=database), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return [
                tuple(connection.exec_driver_sql(f"SELECT last_value, is_called FROM {name}").one())
                for name in ("item_id_seq", "other_seq")
            ]
    finally:
        engine.dispose()


def test_rollback_only_runs_reuse_their_database(
    pytester: pytest.Pytester, postgresql: Backend, postgresql_url: URL, base: str
) -> None:
    """A run of rollback-mode tests leaves its database as the next run's spare (no copy,
    no drop), with every sequence back where the template has it: the next run gets the same
    database, the same ids and the same seed rows; nothing else is left on the server."""
    write_suite(pytester.path, count=0, conftest=SEED_CONFTEST)
    first = run(pytester, postgresql, base)
    assert first["found"] == ["seed 1", "seed 2"]
    assert first["id"] == 3
    [spare] = spares(postgresql_url, base)
    [template] = [name for name in databases(postgresql_url) if name.startswith(f"{base}_tpl_")]
    assert sequence_state(postgresql_url, spare) == sequence_state(postgresql_url, template)
    assert sequence_state(postgresql_url, spare) == [(2, True), (100, False)]
    second = run(pytester, postgresql, base)
    assert second == first, "the second run did not get the first run's database back"
    third = run(pytester, postgresql, base)
    assert third == first
    left = sorted(name for name in databases(postgresql_url) if name.startswith(base))
    assert left == sorted([template, *spares(postgresql_url, base)])
    assert len(spares(postgresql_url, base)) == 1


@pytest.mark.parametrize("writes", sorted(WRITES))
def test_a_run_that_may_have_written_is_not_reused(
    pytester: pytest.Pytester, postgresql: Backend, postgresql_url: URL, base: str, writes: str
) -> None:
    """A commit through ``db_engine``, through an engine the plugin does not know (rows or
    DDL), or a ``transaction=True`` test: the run's database is dropped and the next run gets a fresh
    copy of the template, without the row and with the template's sequences."""
    write_suite(pytester.path, count=0)
    first = run(pytester, postgresql, base)  # fresh clone of a new template; recycled
    second = run(pytester, postgresql, base, writes)
    assert second["oid"] == first["oid"]
    third = run(pytester, postgresql, base)
    assert third["oid"] != first["oid"], f"reused after a write ({writes})"
    assert third["found"] == [] and third["id"] == 1
    fourth = run(pytester, postgresql, base)
    assert fourth["oid"] == third["oid"]


def test_a_spare_written_to_between_runs_is_used_but_not_reused(
    pytester: pytest.Pytester, postgresql: Backend, postgresql_url: URL, base: str
) -> None:
    """Something committed into a spare clone behind the plugin's back (its tables' counts
    of committed changes moved): the run that takes it still uses it, as before, but drops it
    afterwards."""
    write_suite(pytester.path, count=0)
    run(pytester, postgresql, base)
    [spare] = spares(postgresql_url, base)
    engine = create_engine(postgresql_url.set(database=spare), poolclass=NullPool)
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO item (name) VALUES ('planted')")
        oid = connection.exec_driver_sql(
            "SELECT oid FROM pg_database WHERE datname = current_database()"
        ).scalar()
    engine.dispose()
    wait_unused(postgresql_url, spare)
    second = run(pytester, postgresql, base)
    assert second["oid"] == oid and second["found"] == ["planted"]
    third = run(pytester, postgresql, base)
    assert third["oid"] != oid and third["found"] == []


def test_db_spare_clones_0_drops_the_database(
    pytester: pytest.Pytester, postgresql: Backend, postgresql_url: URL, base: str
) -> None:
    """``db_spare_clones = 0``: no spare is kept, a reusable database included."""
    write_suite(pytester.path, "db_metadata = models:Base.metadata", "db_spare_clones = 0", count=0)
    run(pytester, postgresql, base)
    assert spares(postgresql_url, base) == []
    assert sorted(n for n in databases(postgresql_url) if n.startswith(base)) == [
        n for n in databases(postgresql_url) if n.startswith(f"{base}_tpl_")
    ]


#: records whether the run handed its end to a detached process (read after its end).
DETACHED_CONFTEST = """
from pathlib import Path

from pytest_ctxdb.plugin._state import STATE_KEY


def pytest_unconfigure(config):
    state = config.stash[STATE_KEY]
    detached = state.databases["default"].detached
    Path(__file__).with_name("detached.txt").write_text(str(detached))
"""

DIRTY = """
import pytest
from sqlalchemy import text


@pytest.mark.db(transaction=True)
def test_commits(db_session):
    db_session.execute(text("INSERT INTO item (name) VALUES ('emptied afterwards')"))
    db_session.commit()
"""


@pytest.mark.parametrize("server_name", ["postgresql", "mariadb"])
def test_detached_end_of_run(pytester: pytest.Pytester, server_name: str) -> None:
    """``db_spare_clones_detach = true``: a run whose database cannot be reused leaves the
    drop and the copy for the next run to a process of its own; both are done after the run
    has exited (its database gone, one complete spare marked), and the next run takes it."""
    server = make_backend(server_name)
    assert server.url is not None
    url = server.url
    base = f"test_ctxdb_{uuid.uuid4().hex[:10]}"
    try:
        write_suite(
            pytester.path,
            "db_metadata = models:Base.metadata",
            count=0,
            test_dirty=DIRTY,
            conftest=DETACHED_CONFTEST,
        )
        # (not run_named: the run's database is dropped after the run has exited)
        args = (
            "-p",
            "no:cacheprovider",
            "--db-test-name",
            base,
            "-o",
            "db_spare_clones_detach=true",
        )
        server.runpytest(pytester, *args).assert_outcomes(passed=1)
        assert (pytester.path / "detached.txt").read_text() == "True"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            names = {n: c for n, c in databases(url).items() if n.startswith(base)}
            if spares(url, base) and base not in names:
                break
            time.sleep(0.2)
        [spare] = spares(url, base)
        assert base not in databases(url), "the detached process did not drop the database"
        wait_unused(url, spare)
        server.runpytest(pytester, *args).assert_outcomes(passed=1)
        deadline = time.monotonic() + 60
        while spare in databases(url) and time.monotonic() < deadline:
            time.sleep(0.2)  # taken by the second run (then dropped or made a new spare)
        assert spare not in databases(url), "the second run did not take the spare"
    finally:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # let a detached copy end before dropping
            names = databases(url)
            if not any("kind=clone" in (names[n] or "") for n in names if n.startswith(base)):
                break
            time.sleep(0.2)
        drop_databases(url, [n for n in databases(url) if n.startswith(base)])


def test_db_spare_clones_detach_must_be_known(pytester: pytest.Pytester) -> None:
    write_suite(pytester.path, "db_spare_clones_detach = maybe", count=0)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*'maybe' is not a valid db_spare_clones_detach. Valid values: auto, true, false.*"]
    )
