"""Flask-SQLAlchemy 3.x apps bound with one ini line (``db_flask_sqlalchemy = myapp:db``).

Each test writes an inner suite with ``pytester``: a Flask app factory whose
``SQLALCHEMY_DATABASE_URI`` and one extra bind key (``audit``) point at *real* databases of
its own (SQLite files, or two databases on the PostgreSQL server, holding the app's tables),
views that commit through ``db.session``, factory_boy factories on ``db.session``, and tests
driving them with ``app.test_client()``. After the run a separate connection counts the rows
in the app's own databases (there must be none); the inner suite's last test counts the rows
in both test databases outside every test's transaction (none either).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from conftest import Backend

pytest.importorskip("flask_sqlalchemy")
pytest.importorskip("factory")

#: the app: the extension object, models on two bind keys, an app factory with views.
APP = '''
from flask import Flask, jsonify, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import settings


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class User(db.Model):
    __tablename__ = "user_account"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


class Event(db.Model):
    __bind_key__ = "audit"
    __tablename__ = "event"
    id: Mapped[int] = mapped_column(primary_key=True)
    what: Mapped[str] = mapped_column(String(50))


def create_app():
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = settings.DATABASE_URI
    app.config["SQLALCHEMY_BINDS"] = {"audit": settings.AUDIT_URI}
    db.init_app(app)

    @app.post("/users")
    def create_user():
        db.session.add(User(name=request.json["name"]))
        db.session.add(Event(what=f"created {request.json['name']}"))
        db.session.commit()
        return jsonify(created=request.json["name"]), 201

    @app.get("/users")
    def list_users():
        return jsonify(db.session.scalars(select(User.name).order_by(User.name)).all())

    @app.get("/events")
    def count_events():
        return jsonify(db.session.scalar(select(func.count()).select_from(Event)))

    return app
'''

FACTORIES = '''
import factory
from factory.alchemy import SQLAlchemyModelFactory

from myapp import Event, User, db


class UserFactory(SQLAlchemyModelFactory):
    class Meta:
        model = User
        sqlalchemy_session = db.session
        sqlalchemy_session_persistence = "commit"

    name = factory.Sequence(lambda n: f"user {n}")


class EventFactory(SQLAlchemyModelFactory):
    class Meta:
        model = Event
        sqlalchemy_session = db.session
        sqlalchemy_session_persistence = "commit"

    what = "made by a factory"
'''

#: an app per test: one made before the test's binding opens, one by a fixture after it.
CONFTEST_PER_TEST = '''
import pytest

from myapp import create_app


@pytest.fixture
def early_app():
    """Made before the binding opens (it requests no database fixture)."""
    return create_app()


@pytest.fixture
def app(early_app, db_session):
    """Made after the binding opened: its engines are bound as init_app makes them."""
    made = create_app()
    with made.app_context():
        yield made
'''

#: one app for the whole run, made at import.
CONFTEST_ONE_APP = '''
import pytest

from myapp import create_app

APP = create_app()


@pytest.fixture(scope="session")
def early_app():
    return APP


@pytest.fixture(scope="session")
def context(early_app):
    """One app context for the whole run: db.session is one scoped session throughout."""
    with APP.app_context():
        yield


@pytest.fixture
def app(context, db_session):
    return APP
'''

TESTS = '''
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.pool import NullPool

from factories import EventFactory, UserFactory
from myapp import Event, User, db

BOTH = pytest.mark.db(using=["default", "audit"])


@BOTH
@pytest.mark.parametrize("name", ["ada", "grace"])
def test_view_commits_through_db_session(app, db_session, db_sessions, name):
    assert db_session.scalar(select(func.count()).select_from(User)) == 0
    client = app.test_client()
    assert client.post("/users", json={"name": name}).status_code == 201
    assert client.get("/users").json == [name]
    assert client.get("/events").json == 1
    # What the views committed is on the tests' connections of both aliases.
    assert db_session.scalars(select(User.name)).all() == [name]
    assert db_sessions["audit"].scalars(select(Event.what)).all() == [f"created {name}"]


@BOTH
@pytest.mark.parametrize("run", [1, 2])
def test_factory_boy_on_db_session(app, db_session, db_sessions, run):
    users = UserFactory.create_batch(2)
    EventFactory()
    assert db_session.scalar(select(func.count()).select_from(User)) == 2
    assert db_sessions["audit"].scalar(select(func.count()).select_from(Event)) == 1
    assert User.query.count() == 2 and Event.query.count() == 1  # Model.query: db.session
    assert app.test_client().get("/users").json == sorted(user.name for user in users)


def test_engine_and_engines_run_on_the_test_connection(app, db_connection):
    dbapi = db_connection.connection.dbapi_connection
    with db.engine.connect() as connection:
        assert connection.connection.dbapi_connection is dbapi
    with db.engines[None].begin() as connection:
        connection.execute(User.__table__.insert().values(name="core"))
    assert db_connection.scalar(select(User.name)) == "core"


def test_early_app_is_bound_too(early_app, db_session):
    with early_app.app_context():
        db.session.add(User(name="early"))
        db.session.commit()
    assert db_session.scalars(select(User.name)).all() == ["early"]


def test_a_test_without_a_database_is_blocked(early_app):
    from pytest_ctxdb import ContextError

    with early_app.app_context(), pytest.raises(ContextError, match="Database access not allowed"):
        db.session.scalar(select(User.name))


def test_undeclared_bind_is_refused(app, db_session):
    db.session.add(Event(what="not declared"))
    db.session.commit()


@BOTH
def test_zz_nothing_left(db_sessions):
    for alias, table in (("default", User.__table__), ("audit", Event.__table__)):
        engine = create_engine(db_sessions[alias].get_bind().engine.url, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                assert connection.scalar(select(func.count()).select_from(table)) == 0, alias
        finally:
            engine.dispose()
'''

_DDL = (
    "CREATE TABLE user_account (id INTEGER PRIMARY KEY, name VARCHAR(50))",
    "CREATE TABLE event (id INTEGER PRIMARY KEY, what VARCHAR(50))",
)


@dataclass
class AppDatabases:
    """The app's own databases (default and ``audit`` binds): real, never to be written."""

    uri: str
    audit_uri: str

    def count(self, uri: str, table: str) -> int:
        engine = create_engine(uri, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                return int(connection.scalar(text(f"SELECT count(*) FROM {table}")))
        finally:
            engine.dispose()

    def rows(self) -> dict[str, int]:
        return {
            "user_account": self.count(self.uri, "user_account"),
            "event (audit)": self.count(self.audit_uri, "event"),
        }


def _create_tables(uri: str) -> None:
    engine = create_engine(uri, poolclass=NullPool)
    with engine.begin() as connection:
        for statement in _DDL:
            connection.exec_driver_sql(statement)
    engine.dispose()


@pytest.fixture
def app_databases(
    backend: Backend, pytester: pytest.Pytester, request: pytest.FixtureRequest
) -> Iterator[AppDatabases]:
    if backend.url is None:
        uris = [f"sqlite:///{pytester.path / name}" for name in ("app_own.db", "app_audit.db")]
        for uri in uris:
            _create_tables(uri)
        yield AppDatabases(*uris)
        return
    base = f"t_ctxdb_flask_{zlib.crc32(request.node.nodeid.encode()):08x}"
    names = (base, f"{base}_audit")
    admin = create_engine(backend.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        for name in names:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
            connection.exec_driver_sql(f"CREATE DATABASE {name}")
    uris = [backend.url.set(database=name).render_as_string(hide_password=False) for name in names]
    for uri in uris:
        _create_tables(uri)
    try:
        yield AppDatabases(*uris)
    finally:
        with admin.connect() as connection:
            for name in names:
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.dispose()


@dataclass
class FlaskSuite:
    backend: Backend
    databases: AppDatabases
    pytester: pytest.Pytester
    ini: Callable[..., None]
    name: str

    def run(self, conftest: str, *ini_lines: str, **files: str) -> pytest.RunResult:
        databases = self.databases
        self.ini("db_flask_sqlalchemy = myapp:db", *ini_lines, "filterwarnings = error")
        self.pytester.makepyfile(
            settings=f"DATABASE_URI = {databases.uri!r}\nAUDIT_URI = {databases.audit_uri!r}\n",
            myapp=APP,
            factories=FACTORIES,
            conftest=conftest,
            **files,
        )
        result = self.backend.run_named(self.pytester, self.name)
        leftovers = self.backend.leftover_test_databases()  # templates and spares are kept
        audit = re.compile(rf"{self.name}_audit_[0-9a-f]{{8}}")  # the audit alias's clone
        assert not [name for name in leftovers if audit.fullmatch(name)]
        return result


@pytest.fixture
def flask_suite(
    backend: Backend,
    app_databases: AppDatabases,
    pytester: pytest.Pytester,
    ini: Callable[..., None],
    request: pytest.FixtureRequest,
) -> FlaskSuite:
    name = f"test_ctxdb_flask_{zlib.crc32(request.node.nodeid.encode()):08x}"
    return FlaskSuite(backend, app_databases, pytester, ini, name)


@pytest.mark.parametrize(
    "conftest", [CONFTEST_PER_TEST, CONFTEST_ONE_APP], ids=["app-per-test", "one-app"]
)
def test_flask_sqlalchemy_app_runs_in_the_test_transactions(
    flask_suite: FlaskSuite, conftest: str
) -> None:
    """db.session in views and in factory_boy factories, db.engine and db.engines[key], for an
    app made per test (before and after the binding opens) or once for the run: every commit
    stays inside the test's transactions of the default and ``audit`` aliases, which got the
    tables of db.metadatas; the app's own databases get nothing; the undeclared bind key is
    refused naming the alias and the marker."""
    result = flask_suite.run(conftest, test_app=TESTS)
    result.assert_outcomes(passed=8, failed=1)
    result.stdout.fnmatch_lines(
        [
            "E*ContextError: db_flask_sqlalchemy myapp:db bind key 'audit': "
            "this test touched database alias 'audit', which it did not declare; declared: "
            "default. Add it: @pytest.mark.db(using=?'default', 'audit'?)*",
            "FAILED test_app.py::test_undeclared_bind_is_refused*",
        ]
    )
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    assert flask_suite.databases.rows() == {"user_account": 0, "event (audit)": 0}


#: data a module-scoped fixture makes over HTTP, on both bind keys (aliases).
CONFTEST_SCOPED = '''
import pytest

from myapp import create_app


@pytest.fixture(scope="module")
def app():
    made = create_app()
    with made.app_context():
        yield made


@pytest.fixture(scope="module")
def users(app):
    client = app.test_client()
    for name in ("ann", "bob"):
        assert client.post("/users", json={"name": name}).status_code == 201
'''

SCOPED_TESTS = """
import pytest
from sqlalchemy import delete

from myapp import Event, User, db

pytestmark = pytest.mark.db(using=["default", "audit"])


def test_sees_the_module_data(app, users):
    client = app.test_client()
    assert client.get("/users").json == ["ann", "bob"]
    assert client.get("/events").json == 2
    db.session.execute(delete(User))
    db.session.execute(delete(Event))
    db.session.commit()
    assert client.get("/users").json == []


def test_then_restored(app, users):
    client = app.test_client()
    assert client.get("/users").json == ["ann", "bob"]
    assert client.get("/events").json == 2
"""

SCOPED_OTHER = """
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.pool import NullPool

from myapp import Event, User

pytestmark = pytest.mark.db(using=["default", "audit"])


def test_another_module_sees_nothing(app, db_sessions):
    assert db_sessions["default"].scalar(select(func.count()).select_from(User)) == 0
    assert db_sessions["audit"].scalar(select(func.count()).select_from(Event)) == 0
    for alias, model in (("default", User), ("audit", Event)):
        engine = create_engine(db_sessions[alias].get_bind().engine.url, poolclass=NullPool)
        with engine.connect() as connection:
            assert connection.scalar(select(func.count()).select_from(model)) == 0
        engine.dispose()
"""


def test_flask_sqlalchemy_module_scoped_data(flask_suite: FlaskSuite) -> None:
    """A module-scoped fixture writing through the app's views commits into the module's
    layer on both bind keys' aliases; the next module sees none of it, nor does a separate
    connection; the app's own databases get nothing."""
    result = flask_suite.run(
        CONFTEST_SCOPED, test_a_scoped=SCOPED_TESTS, test_b_other=SCOPED_OTHER
    )
    result.assert_outcomes(passed=3)
    assert flask_suite.databases.rows() == {"user_account": 0, "event (audit)": 0}
