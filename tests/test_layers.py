"""Scoped data: class-, module-, package- and session-scoped fixtures write into layers.

Each inner suite builds data in wider-scoped fixtures (through ``db_setup_session``, the
context runtime, an app engine listed in ``db_engines``), then its tests change and delete
that data and the next test sees it restored; a later module sees none of it; the last test
counts, from a connection of its own, that nothing is left in the test database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from test_context_patching import NOTHING_LEFT  # the last module: nothing left behind
from test_context_runtime import MODELS

from conftest import Backend


CONFTEST = """
import pytest
from models import Item


@pytest.fixture(scope="session")
def catalogue(db_setup_session):
    db_setup_session.add_all([Item(name="session 1"), Item(name="session 2")])
    db_setup_session.commit()
    return ["session 1", "session 2"]
"""

SCOPES = '''
import pytest
from sqlalchemy import delete, select, update
from models import NAMES, Item


@pytest.fixture(scope="module")
def logins(catalogue, db_setup_session):
    db_setup_session.add(Item(name="module"))
    db_setup_session.commit()
    return [*catalogue, "module"]


def test_sees_session_and_module_data(logins, db_session):
    assert db_session.scalars(NAMES).all() == ["module", "session 1", "session 2"]
    db_session.execute(delete(Item).where(Item.name == "session 1"))
    db_session.execute(update(Item).where(Item.name == "module").values(name="renamed"))
    db_session.commit()
    assert db_session.scalars(NAMES).all() == ["renamed", "session 2"]


def test_then_sees_them_restored(logins, db_session):
    assert db_session.scalars(NAMES).all() == ["module", "session 1", "session 2"]
    db_session.add(Item(name="test"))
    db_session.commit()


class TestClassData:
    @pytest.fixture(scope="class")
    @classmethod
    def extra(cls, logins, db_setup_session):
        db_setup_session.add(Item(name="class"))
        db_setup_session.commit()

    def test_sees_class_data(self, extra, db_session):
        assert db_session.scalars(NAMES).all() == ["class", "module", "session 1", "session 2"]
        db_session.execute(delete(Item))
        db_session.commit()

    def test_sees_it_again(self, extra, db_session):
        assert db_session.scalars(NAMES).all() == ["class", "module", "session 1", "session 2"]


def test_class_data_gone_after_the_class(logins, db_session):
    assert db_session.scalars(NAMES).all() == ["module", "session 1", "session 2"]
'''

OTHER_MODULE = """
from models import NAMES


def test_sees_only_the_session_data(catalogue, db_session):
    assert db_session.scalars(NAMES).all() == ["session 1", "session 2"]
"""


def write_suite(pytester: pytest.Pytester, **modules: str) -> None:
    pytester.makepyfile(models=MODELS, **modules)


@contextmanager
def app_own_database(pytester: pytest.Pytester) -> Iterator[Path]:
    """The app's own database, a SQLite file with the ``item`` table; after the block, a
    connection of its own checks that it got no row."""
    own = pytester.path / "app_own.db"
    engine = create_engine(f"sqlite:///{own}")
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "CREATE TABLE item (id INTEGER PRIMARY KEY, name VARCHAR(50))"
            )
        yield own
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT count(*) FROM item").scalar() == 0
    finally:
        engine.dispose()


def test_session_module_and_class_layers(backend: Backend, pytester, ini) -> None:
    """Each scope's data is seen by its tests, restored after each test, and gone after it."""
    ini("db_metadata = models:Base.metadata")
    pytester.makeconftest(CONFTEST)
    write_suite(
        pytester,
        test_a_scopes=SCOPES,
        test_b_other=OTHER_MODULE,
        test_zz_nothing_left=NOTHING_LEFT,
    )
    result = backend.run_named(pytester, "test_ctxdb_layers", "-v")
    result.assert_outcomes(passed=7)


def test_mariadb_layers(mariadb: Backend, pytester, ini) -> None:
    """MariaDB keeps the layers too (InnoDB savepoints)."""
    ini("db_metadata = models:Base.metadata")
    pytester.makeconftest(CONFTEST)
    write_suite(
        pytester,
        test_a_scopes=SCOPES,
        test_b_other=OTHER_MODULE,
        test_zz_nothing_left=NOTHING_LEFT,
    )
    mariadb.run_named(pytester, "test_ctxdb_layers_my").assert_outcomes(passed=7)


PACKAGE_CONFTEST = """
import pytest
from models import Item


@pytest.fixture(scope="package", autouse=True)
def package_data(db_setup_session):
    db_setup_session.add(Item(name="package"))
    db_setup_session.commit()
"""

IN_PACKAGE = """
from sqlalchemy import delete
from models import NAMES, Item


def test_one(db_session):
    assert db_session.scalars(NAMES).all() == ["package"]
    db_session.execute(delete(Item))
    db_session.commit()


def test_two(db_session):
    assert db_session.scalars(NAMES).all() == ["package"]
"""

OUTSIDE_PACKAGE = """
from models import NAMES


def test_outside(db_session):
    assert db_session.scalars(NAMES).all() == []
"""


def test_package_layer(backend: Backend, pytester, ini) -> None:
    """A package-scoped fixture's data is seen in its package only."""
    ini("db_metadata = models:Base.metadata")
    pytester.makepyfile(models=MODELS)
    package = pytester.mkpydir("pkg")
    (package / "conftest.py").write_text(PACKAGE_CONFTEST)
    (package / "test_in_package.py").write_text(IN_PACKAGE)
    (package / "test_in_package_2.py").write_text(IN_PACKAGE)
    pytester.makepyfile(test_zz_outside=OUTSIDE_PACKAGE, test_zzz_nothing_left=NOTHING_LEFT)
    result = backend.run_named(pytester, "test_ctxdb_layers_pkg")
    result.assert_outcomes(passed=6)


#: an app with a module-level engine, used as FastAPI's and SQLAlchemy's docs write it.
APP = """
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from pytest_ctxdb.context import Database

from models import Item

engine = create_engine("sqlite:///app_own.db")
database = Database("sqlite:///app_own.db")  # the context runtime's default alias


def add(name):
    with Session(engine) as session:
        session.add(Item(name=name))
        session.commit()
"""

APP_TESTS = '''
import pytest
from sqlalchemy import delete
from pytest_ctxdb.context import db_session as context_session, session_context

import app
from models import NAMES, Item


@pytest.fixture(scope="module")
def through_the_app():
    app.add("engine")
    with session_context():
        context_session().add(Item(name="context"))


@pytest.fixture(scope="module")
def left_uncommitted():
    # The fixture's own context session is committed at the end of its set-up.
    context_session().add(Item(name="pending"))


def test_app_data_is_there(through_the_app, left_uncommitted, db_session):
    assert db_session.scalars(NAMES).all() == ["context", "engine", "pending"]
    db_session.execute(delete(Item))
    db_session.commit()


def test_and_restored(through_the_app, left_uncommitted, db_session):
    assert db_session.scalars(NAMES).all() == ["context", "engine", "pending"]
'''


def test_module_fixture_writes_through_the_app(backend: Backend, pytester, ini) -> None:
    """A module fixture writing through an engine in ``db_engines`` and the context runtime
    writes into the module's layer; the app's own database gets nothing."""
    ini("db_metadata = models:Base.metadata", "db_engines = app:engine")
    write_suite(pytester, app=APP, test_app=APP_TESTS, test_zz_nothing_left=NOTHING_LEFT)
    with app_own_database(pytester):
        result = backend.run_named(pytester, "test_ctxdb_layers_app")
        result.assert_outcomes(passed=3)


LATE_WIDER = '''
import pytest
from models import Item


@pytest.fixture(scope="module")
def module_data(db_setup_session):
    db_setup_session.add(Item(name="module"))
    db_setup_session.commit()


@pytest.fixture(scope="session")
def late_session_data(db_setup_session):
    db_setup_session.add(Item(name="session"))
    db_setup_session.commit()


def test_first(module_data, db_session):
    pass


def test_second(module_data, late_session_data, db_session):
    pass


def test_getfixturevalue(db_session, request):
    request.getfixturevalue("in_test_data")


@pytest.fixture(scope="module")
def in_test_data(db_setup_session):
    db_setup_session.add(Item(name="in test"))
    db_setup_session.commit()
'''


def test_wider_data_that_cannot_be_kept_fails_clearly(backend: Backend, pytester, ini) -> None:
    """A session fixture first set up after a module's data, and a module fixture set up
    inside a test, fail naming the fixture and the fix."""
    ini("db_metadata = models:Base.metadata")
    write_suite(pytester, test_late=LATE_WIDER, test_zz_nothing_left=NOTHING_LEFT)
    result = backend.run_named(pytester, "test_ctxdb_layers_late")
    result.assert_outcomes(passed=2, errors=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*fixture 'late_session_data' (the session) wrote to the database after data of "
            "the narrower module test_late.py was set up*",
            "*fixture 'in_test_data' (module test_late.py) wrote to the database during a "
            "test*getfixturevalue*",
        ]
    )


TRANSACTION_IN_LAYER = '''
import pytest
from models import Item


@pytest.fixture(scope="module")
def module_data(db_setup_session):
    db_setup_session.add(Item(name="module"))
    db_setup_session.commit()


def test_layered(module_data, db_session):
    pass


@pytest.mark.db(transaction=True)
def test_commits_for_real(module_data, db_session):
    pass
'''


def test_transaction_test_inside_a_layer_fails_clearly(backend: Backend, pytester, ini) -> None:
    ini("db_metadata = models:Base.metadata")
    write_suite(pytester, test_tx=TRANSACTION_IN_LAYER, test_zz_nothing_left=NOTHING_LEFT)
    result = backend.run_named(pytester, "test_ctxdb_layers_tx")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*test_commits_for_real is @pytest.mark.db(transaction=True), but the test "
         "connection of alias 'default' holds the data of wider-scoped fixtures of module "
         "test_tx.py*"]
    )


BROKEN_LAYER = '''
import pytest
from sqlalchemy import text
from models import Item


@pytest.fixture(scope="module")
def broken_data(db_setup_session):
    db_setup_session.add(Item(name="kept?"))
    db_setup_session.commit()
    connection = db_setup_session.connection()
    connection.execute(text("SELECT * FROM no_such_table"))


def test_one(broken_data, db_session):
    pass


def test_two(db_session):
    pass
'''

AFTER_BROKEN = """
from models import NAMES


def test_next_module_starts_clean(db_session):
    assert db_session.scalars(NAMES).all() == []
"""


def test_a_failing_scoped_fixture(postgresql: Backend, pytester, ini) -> None:
    """A module fixture that aborts the PostgreSQL transaction inside its layer: the module's
    tests fail with one message; the next module starts clean."""
    ini("db_metadata = models:Base.metadata")
    write_suite(
        pytester,
        test_broken=BROKEN_LAYER,
        test_clean=AFTER_BROKEN,
        test_zz_nothing_left=NOTHING_LEFT,
    )
    result = postgresql.run_named(pytester, "test_ctxdb_layers_broken")
    result.assert_outcomes(passed=2, errors=2)
    assert "UndefinedTable" in result.stdout.str()  # test_one: the fixture's own error
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_two*",
            "pytest-ctxdb: fixture 'broken_data' failed and left the data of the module "
            "test_broken.py in a broken transaction (*current transaction is aborted*); that "
            "data was rolled back, so the scope's tests cannot run on it.",
        ]
    )


def test_xdist_workers_build_their_own_layers(backend: Backend, pytester, ini) -> None:
    """With ``-n 2`` each worker builds the layers of the scopes it runs."""
    ini("db_metadata = models:Base.metadata")
    pytester.makeconftest(CONFTEST)
    write_suite(pytester, test_a_scopes=SCOPES, test_b_other=OTHER_MODULE)
    result = backend.run_named(pytester, "test_ctxdb_layers_xd", "-n", "2")
    result.assert_outcomes(passed=6)


def test_fixtures_help_names_the_layer(pytester, ini) -> None:
    ini()
    result = pytester.runpytest_subprocess("--fixtures", "-v", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(
        ["db_setup_session [[]session scope[]]*", "*What it commits goes into the layer of*"]
    )


FUNCTION_SCOPED = '''
import pytest
from models import NAMES, Item


@pytest.fixture
def row(db_setup_session):
    db_setup_session.add(Item(name="function"))
    db_setup_session.commit()


def test_function_fixture_writes_into_the_test(row, db_session):
    assert db_session.scalars(NAMES).all() == ["function"]


def test_requesting_only_the_setup_session(db_setup_session):
    assert db_setup_session.scalars(NAMES).all() == []
    db_setup_session.add(Item(name="rolled back"))
    db_setup_session.commit()


def test_after_it(db_session):
    assert db_session.scalars(NAMES).all() == []
'''


def test_setup_session_in_function_scope(backend: Backend, pytester, ini) -> None:
    """Used by a function-scoped fixture or a test, db_setup_session writes into the test's
    transaction."""
    ini("db_metadata = models:Base.metadata")
    write_suite(pytester, test_fn=FUNCTION_SCOPED, test_zz_nothing_left=NOTHING_LEFT)
    backend.run_named(pytester, "test_ctxdb_layers_fn").assert_outcomes(passed=4)


ASYNC_APP = """
from pytest_ctxdb.context import Database
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from models import Item
from settings import ASYNC_URL

database = Database(ASYNC_URL)  # the context runtime's default alias, async
async_engine = create_async_engine(ASYNC_URL)


async def add(name):
    async with AsyncSession(async_engine) as session:
        session.add(Item(name=name))
        await session.commit()
"""

ASYNC_LAYERS = '''
import pytest
import pytest_asyncio
from sqlalchemy import delete
from pytest_ctxdb.context import db_session as context_session, session_context

import app
from models import NAMES, Item


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def module_data(seed):
    await app.add("engine")
    async with session_context():
        context_session().add(Item(name="context"))


pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_sees_every_layer(module_data, async_db_session):
    assert (await async_db_session.scalars(NAMES)).all() == ["context", "engine", "session"]
    await async_db_session.execute(delete(Item))
    await async_db_session.commit()
    assert (await async_db_session.scalars(NAMES)).all() == []


async def test_then_restored(module_data, async_db_session):
    assert (await async_db_session.scalars(NAMES)).all() == ["context", "engine", "session"]


@pytest_asyncio.fixture(loop_scope="session")
async def per_test_row(async_db_setup_session):
    async_db_setup_session.add(Item(name="function"))
    await async_db_setup_session.commit()


async def test_a_function_fixture_writes_into_the_test(
    module_data, per_test_row, async_db_session
):
    names = (await async_db_session.scalars(NAMES)).all()
    assert names == ["context", "engine", "function", "session"]


async def test_and_not_beyond_it(module_data, async_db_session):
    assert (await async_db_session.scalars(NAMES)).all() == ["context", "engine", "session"]
'''

ASYNC_OTHER = '''
import pytest
from models import NAMES

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_other_module_sees_the_session_seed_only(seed, async_db_session):
    assert (await async_db_session.scalars(NAMES)).all() == ["session"]


def test_a_sync_test_has_its_own_connection(db_session):
    assert db_session.scalars(NAMES).all() == []
'''

ASYNC_CONFTEST = """
import pytest_asyncio


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def seed(async_db_setup_session):
    from models import Item

    async_db_setup_session.add(Item(name="session"))
    await async_db_setup_session.commit()
"""


def test_async_layers(backend: Backend, pytester, ini) -> None:
    """Async wider-scoped fixtures write into layers on their loop scope's connection
    (aiosqlite, asyncpg): through async_db_setup_session, an async engine in db_engines and
    the context runtime; tests of that loop scope see them; sync tests do not; the app's own
    database gets nothing."""
    run_async_layers(backend, pytester, ini, "test_ctxdb_layers_async")


def test_mariadb_async_layers(mariadb: Backend, pytester, ini) -> None:
    """The same on MariaDB (asyncmy)."""
    run_async_layers(mariadb, pytester, ini, "test_ctxdb_layers_async_my")


def run_async_layers(backend: Backend, pytester: pytest.Pytester, ini, name: str) -> None:
    ini("db_metadata = models:Base.metadata", "db_engines = app:async_engine")
    with app_own_database(pytester) as own:
        pytester.makepyfile(
            settings=f"ASYNC_URL = 'sqlite+aiosqlite:///{own}'",
            models=MODELS,
            app=ASYNC_APP,
            test_a_layers=ASYNC_LAYERS,
            test_b_other=ASYNC_OTHER,
            test_zz_nothing_left=NOTHING_LEFT,
        )
        pytester.makeconftest(ASYNC_CONFTEST)
        result = backend.run_named(pytester, name)
        result.assert_outcomes(passed=7)


FIRST_USE_INSIDE = '''
import pytest
from models import NAMES, Item


@pytest.fixture(scope="module")
def module_data(request):
    # db_setup_session is first made here, while this module fixture is being set up.
    session = request.getfixturevalue("db_setup_session")
    session.add(Item(name="module"))
    session.commit()


def test_sees_it(module_data, db_session):
    assert db_session.scalars(NAMES).all() == ["module"]
'''


def test_setup_session_first_made_inside_a_wider_fixture(backend: Backend, pytester, ini) -> None:
    """The outer transaction is open before db_setup_session begins, whenever it is made."""
    ini("db_metadata = models:Base.metadata")
    write_suite(pytester, test_first=FIRST_USE_INSIDE, test_zz_nothing_left=NOTHING_LEFT)
    backend.run_named(pytester, "test_ctxdb_layers_first").assert_outcomes(passed=2)


MIRROR_AND_REFUSED_COMMIT = '''
import pytest
from models import NAMES, Item


@pytest.fixture(scope="module")
def module_data(db_setup_session):
    db_setup_session.add(Item(name="module"))
    db_setup_session.commit()


@pytest.mark.db(using=["default", "replica"])
def test_the_mirror_sees_the_layers(module_data, db_sessions):
    assert db_sessions["replica"].scalars(NAMES).all() == ["module"]


class TestRefusedOuterCommit:
    @pytest.fixture(scope="class")
    @classmethod
    def commits_for_real(cls, module_data, db_setup_session):
        db_setup_session.connection().commit()  # refused: it would end the outer transaction

    def test_one(self, commits_for_real, db_session):
        pass

    def test_two(self, db_session):
        pass
'''

AFTER_REFUSED = """
from models import NAMES


def test_next_module_starts_clean(db_session):
    assert db_session.scalars(NAMES).all() == []
"""


def test_mirror_and_a_refused_outer_commit(backend: Backend, pytester, ini) -> None:
    """A mirror shares its primary's layers. A wider fixture committing the connection itself
    is refused; the layers it ended are reported to the rest of their scopes' tests, and the
    next module starts clean."""
    ini("db_metadata = models:Base.metadata", "db_mirrors = replica=default")
    write_suite(
        pytester,
        test_a=MIRROR_AND_REFUSED_COMMIT,
        test_b=AFTER_REFUSED,
        test_zz_nothing_left=NOTHING_LEFT,
    )
    result = backend.run_named(pytester, "test_ctxdb_layers_mirror")
    result.assert_outcomes(passed=3, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*refused to COMMIT the test's outer transaction*",
            "*ERROR at setup of TestRefusedOuterCommit.test_two*",
            "pytest-ctxdb: the data of the wider-scoped fixtures of module test_a.py* was lost: "
            "fixture 'commits_for_real' (class test_a.py::TestRefusedOuterCommit) ended the "
            "outer transaction, so the rest of that scope cannot run on it.",
        ]
    )
