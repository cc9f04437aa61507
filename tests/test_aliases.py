"""Several databases in one run: aliases, mirrors, the ``db`` marker and access blocking.

Each test writes an inner suite (models, a small app on ``pytest_ctxdb.context``, tests), runs
it in a subprocess with two aliases (``default`` and ``other``, each with its own schema from
a per-alias ``db_metadata``) or a mirror (``--db-mirror replica=default``), and checks the
outcome. Most suites end with ``test_zz_nothing_left``, which counts every table of every
alias through a connection of its own; after the run, every test database named in the
header must be gone. The app's own URLs point at a SQLite file that must never be opened.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy.engine import URL, make_url

if TYPE_CHECKING:
    from conftest import Backend

#: the inner models: ``item`` in the default alias's schema, ``entry`` in the other's; and
#: helpers the inner tests share.
MODELS = '''
from sqlalchemy import String, create_engine, func, inspect, select, table, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import NullPool


class Base(DeclarativeBase):
    """The schema of the default alias."""


class OtherBase(DeclarativeBase):
    """The schema of the other alias."""


class Item(Base):
    __tablename__ = "item"
    # SQLite then never reuses an id, as servers do not: reset_sequences has work to do.
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


class Entry(OtherBase):
    __tablename__ = "entry"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


ITEMS = select(Item.name).order_by(Item.name)
ENTRIES = select(Entry.name).order_by(Entry.name)


def tables(session):
    """The tables of the database behind ``session`` (SQLite's own bookkeeping aside)."""
    names = inspect(session.connection()).get_table_names()
    return sorted(name for name in names if not name.startswith("sqlite_"))


def outside_counts(session):
    """Rows per table of ``session``'s database, counted on a connection of its own."""
    names = tables(session)
    engine = create_engine(session.connection().engine.url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return {
                name: connection.scalar(select(func.count()).select_from(table(name)))
                for name in names
            }
    finally:
        engine.dispose()


def write_both(db_sessions, name):
    """Commit an item in the default alias and an entry in the other one."""
    db_sessions["default"].add(Item(name=name))
    db_sessions["default"].commit()
    db_sessions["other"].add(Entry(name=name))
    db_sessions["other"].commit()


def assert_both_empty(db_sessions):
    assert db_sessions["default"].scalars(ITEMS).all() == []
    assert db_sessions["other"].scalars(ENTRIES).all() == []
'''

#: app code on the context runtime; ``settings.APP_URLS`` (alias -> URL) is written per test.
APP = """
from sqlalchemy import create_engine, text
from pytest_ctxdb.context import Database, db_session, session_context
from models import ITEMS, Item
from settings import APP_URLS

for alias, url in APP_URLS.items():
    Database(url, alias=alias)

#: an engine the app uses directly; ini db_engines names it.
LEGACY_ENGINE = create_engine(APP_URLS["default"])


def add_item(name, using="default"):
    session = db_session(using)
    session.add(Item(name=name))
    session.commit()


def item_names(using="default"):
    return db_session(using).scalars(ITEMS).all()


def ping(using="default"):
    return db_session(using).execute(text("SELECT 1")).scalar()


def add_item_in_new_context(name):
    with session_context():
        db_session().add(Item(name=name))
"""

#: the last test of a suite: through ``using="__all__"``, every alias (``ALIASES``, filled in)
#: has its tables, and a connection of its own finds every one of them empty.
NOTHING_LEFT = """
import pytest
from models import outside_counts


@pytest.mark.db(using="__all__")
def test_nothing_left(db_sessions):
    assert list(db_sessions) == ALIASES
    for alias in db_sessions:
        counts = outside_counts(db_sessions[alias])
        assert counts and set(counts.values()) == {0}, (alias, counts)
"""

#: the same tests three times (A, B, A): a leak of either database breaks a later one.
TWO_DATABASES = """
import pytest
from models import ENTRIES, ITEMS, assert_both_empty, outside_counts, tables, write_both


@pytest.mark.db(using=["default", "other"])
@pytest.mark.parametrize("name", ["A", "B", "A"])
def test_each_database_isolated(db_session, db_sessions, name):
    default, other = db_sessions["default"], db_sessions["other"]
    assert db_session is default
    assert (tables(default), tables(other)) == (["item"], ["entry"])
    assert default.connection().engine.url != other.connection().engine.url
    assert_both_empty(db_sessions)
    write_both(db_sessions, name)
    assert default.scalars(ITEMS).all() == [name]
    assert other.scalars(ENTRIES).all() == [name]
    assert (outside_counts(default), outside_counts(other)) == ({"item": 0}, {"entry": 0})
"""

#: read-after-write through the mirror ``replica``, by the fixtures and by app code.
MIRROR = """
import pytest
from app import add_item, item_names
from models import ITEMS, Item


@pytest.mark.db(using=["default", "replica"])
def test_fixture_write_is_read_through_the_replica(db_sessions):
    assert db_sessions["replica"].scalars(ITEMS).all() == []
    db_sessions["default"].add(Item(name="by fixture"))
    db_sessions["default"].commit()
    assert db_sessions["replica"].scalars(ITEMS).all() == ["by fixture"]


@pytest.mark.db(using=["default", "replica"])
def test_app_write_is_read_through_the_replica(db_sessions):
    assert item_names("replica") == []
    add_item("by app")
    assert item_names("replica") == ["by app"]
    assert db_sessions["replica"].scalars(ITEMS).all() == ["by app"]


def test_mirror_of_the_declared_alias_needs_no_marker(db_session):
    assert item_names("replica") == []
    add_item("unmarked")
    assert item_names("replica") == ["unmarked"]
"""

#: the marker on functions, classes and modules; its first alias is db_session's.
MARKER_PLACES = {
    "test_function_marker": """
import pytest
from models import tables


@pytest.mark.db(using="other")
def test_function_marker(db_session, db_sessions):
    assert tables(db_session) == ["entry"]
    assert db_session is db_sessions["other"]


@pytest.mark.db(using=["other", "default"])
def test_first_declared_alias_is_db_session(db_session, db_sessions):
    assert db_session is db_sessions["other"]
    assert (tables(db_session), tables(db_sessions["default"])) == (["entry"], ["item"])


def test_no_marker_means_default(db_session):
    assert tables(db_session) == ["item"]
""",
    "test_class_marker": """
import pytest
from models import tables


@pytest.mark.db(using="other")
class TestClassMarker:
    def test_class_marker(self, db_session):
        assert tables(db_session) == ["entry"]

    @pytest.mark.db(using="default")
    def test_function_marker_wins(self, db_session):
        assert tables(db_session) == ["item"]
""",
    "test_module_marker": """
import pytest
from app import add_item, item_names
from models import tables

pytestmark = pytest.mark.db(using=["default", "other"])


def test_module_marker(db_sessions):
    assert tables(db_sessions["other"]) == ["entry"]


def test_marker_alone_binds_app_code():
    assert item_names() == []
    add_item("through the app")
    assert item_names() == ["through the app"]
""",
}

#: the app's context session and db_sessions' session of an alias are one object, whichever
#: of the two the test makes first.
SESSION_IDENTITY = """
import pytest
import app  # registers the app's aliases
from pytest_ctxdb import context

pytestmark = pytest.mark.db(using=["default", "other"])


@pytest.mark.parametrize("alias", ["default", "other"])
def test_fixture_session_first(db_sessions, alias):
    from_fixture = db_sessions[alias]
    assert context.db_session(alias) is from_fixture


@pytest.mark.parametrize("alias", ["default", "other"])
def test_app_session_first(db_sessions, alias):
    from_app = context.db_session(alias)
    assert from_app is db_sessions[alias]
"""

#: tests touching the alias ``other`` they did not declare, through a fixture and app code.
UNDECLARED = """
import pytest
from app import ping


def test_undeclared_through_fixture(db_sessions):
    db_sessions["other"]


@pytest.mark.db
def test_undeclared_through_app_code():
    ping("other")
"""

#: tests asking for no database that touch one: app code, a test engine kept from an earlier
#: test, and an engine of ini db_engines (first, before any test bound anything).
UNMARKED_ACCESS = """
from sqlalchemy import text
import app

ENGINES = []


def test_adapter_engine_without_marker():
    with app.LEGACY_ENGINE.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1


def test_app_code_without_marker():
    assert app.ping() == 1


def test_keeps_the_test_engine(db_engine):
    ENGINES.append(db_engine)


def test_test_engine_without_marker():
    with ENGINES[0].connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1
"""
UNMARKED_ACCESS_TESTS = (
    "test_adapter_engine_without_marker",
    "test_app_code_without_marker",
    "test_test_engine_without_marker",
)
#: the whole message a test gets when it touches a database it did not ask for.
ACCESS_NOT_ALLOWED = (
    "Database access not allowed, use @pytest.mark.db or the db_session fixture "
    "(or set ini db_block_access = false)."
)

#: a module-scoped fixture writing through the context runtime, used by a db-marked test.
MODULE_FIXTURE = """
import pytest
from app import add_item_in_new_context


@pytest.fixture(scope="module")
def seeded():
    add_item_in_new_context("seeded by a module fixture")
    return "seeded"


@pytest.mark.db
def test_uses_a_module_fixture(seeded):
    assert seeded == "seeded"
"""

#: invalid markers: (test name, marker arguments, the test's fixtures, what its one error
#: line says after "@pytest.mark.db").
INVALID_MARKERS = (
    (
        "test_not_an_alias_name",
        'using="no pe"',
        "db_session",
        "(using='no pe'): 'no pe' is not an alias name*",
    ),
    ("test_wrong_type", "using=3", "db_session", "(using=3): using must be an alias name*"),
    ("test_unknown_keyword", "transactional=True", "db_sessions", ": *keyword*'transactional'*"),
    ("test_reset_without_transaction", "reset_sequences=True", "", "(reset_sequences=True) needs*"),
)
VALID_NEIGHBOURS = """
import pytest
from sqlalchemy import text


def test_unmarked_neighbour(db_session):
    assert db_session.execute(text("SELECT 1")).scalar() == 1


@pytest.mark.db
def test_marked_neighbour():
    pass
"""

#: commit mode (real commits, tables emptied afterwards) between rollback-mode tests.
COMMIT_MODE = """
import pytest
from models import assert_both_empty, outside_counts, write_both

ALIASES = ["default", "other"]


@pytest.mark.db(using=ALIASES)
def test_rollback_mode(db_sessions):
    assert_both_empty(db_sessions)
    write_both(db_sessions, "rolled back")
    assert outside_counts(db_sessions["default"]) == {"item": 0}
    assert outside_counts(db_sessions["other"]) == {"entry": 0}


@pytest.mark.db(using=ALIASES, transaction=True)
def test_commit_mode(db_sessions):
    assert_both_empty(db_sessions)
    write_both(db_sessions, "committed")
    assert outside_counts(db_sessions["default"]) == {"item": 1}
    assert outside_counts(db_sessions["other"]) == {"entry": 1}
"""

#: ids go on after transaction=True tests; a reset_sequences=True test starts from 1 (the
#: sequences restart before it runs, as Django's reset_sequences does).
SEQUENCES = """
import pytest
from models import Item


def new_id(session, name):
    item = Item(name=name)
    session.add(item)
    session.commit()
    return item.id


@pytest.mark.db(transaction=True)
def test_a_first_ids(db_session):
    assert [new_id(db_session, "a"), new_id(db_session, "b")] == [1, 2]


@pytest.mark.db(transaction=True)
def test_b_ids_go_on_without_reset(db_session):
    assert new_id(db_session, "c") == 3


@pytest.mark.db(transaction=True, reset_sequences=True)
def test_c_starts_from_one(db_session):
    assert [new_id(db_session, "d"), new_id(db_session, "e")] == [1, 2]


@pytest.mark.db(transaction=True)
def test_d_ids_go_on_from_the_reset(db_session):
    assert new_id(db_session, "f") == 3
"""

#: the first alias's connection dies before teardown (then both aliases' connections do).
TEARDOWN = """
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from models import assert_both_empty, write_both

ALIASES = ["default", "other"]


def terminate(session):
    \"\"\"End the server process behind ``session``'s connection, from a connection of its own.\"\"\"
    connection = session.connection()
    pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    engine = create_engine(connection.engine.url, poolclass=NullPool)
    try:
        with engine.connect() as admin:
            assert admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    finally:
        engine.dispose()


@pytest.mark.db(using=ALIASES)
def test_a_first_alias_dies(db_sessions):
    write_both(db_sessions, "doomed")
    terminate(db_sessions["default"])


@pytest.mark.db(using=ALIASES)
def test_b_after_one_failure(db_sessions):
    assert_both_empty(db_sessions)
    write_both(db_sessions, "doomed")


@pytest.mark.db(using=ALIASES)
def test_c_both_aliases_die(db_sessions):
    write_both(db_sessions, "doomed")
    terminate(db_sessions["default"])
    terminate(db_sessions["other"])


@pytest.mark.db(using=ALIASES)
def test_d_after_two_failures(db_sessions):
    assert_both_empty(db_sessions)
"""

#: a header line naming an alias's test database: ``ctxdb: ALIAS: URL (...)``.
HEADER_LINE = re.compile(r"^ctxdb: (?P<alias>\w+): (?P<url>\S+) \(", re.MULTILINE)
#: the app's database file (in the inner suite's directory); no test may ever open it.
APP_FILE = "app.db"


@pytest.fixture(autouse=True)
def _no_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inner runs see only the URLs a test passes, never one from this process's env."""
    monkeypatch.delenv("PYTEST_CTXDB_URL", raising=False)


def unique_name() -> str:
    """A test database name no concurrent run uses."""
    return f"test_ctxdb_{uuid.uuid4().hex[:10]}"


def alias_args(alias: str, server: URL | None, name: str) -> list[str]:
    """``--db-url`` / ``--db-test-name`` of ``alias``: on ``server`` with test database
    ``name``, or an embedded SQLite database when ``server`` is ``None``."""
    if server is None:
        return [] if alias == "default" else ["--db-url", f"{alias}=sqlite://"]
    url = server.render_as_string(hide_password=False)
    return ["--db-url", f"{alias}={url}", "--db-test-name", f"{alias}={name}"]


def two_alias_args(default: URL | None, other: URL | None) -> list[str]:
    """Arguments for the aliases ``default`` and ``other``, each with a unique name."""
    name = unique_name()
    return [*alias_args("default", default, name), *alias_args("other", other, f"{name}_o")]


def metadata_lines(*aliases: str) -> tuple[str, ...]:
    """ini ``db_metadata`` giving each alias its own schema (mirrors have none)."""
    schema = {"default": "models:Base.metadata", "other": "models:OtherBase.metadata"}
    return ("db_metadata =", *(f"    {alias}={schema[alias]}" for alias in aliases))


def write_suite(
    pytester: pytest.Pytester,
    ini: Callable[..., None],
    aliases: tuple[str, ...],
    *ini_lines: str,
    **files: str,
) -> None:
    """Write the models, the app (its every alias on the never-opened ``APP_FILE``), the ini
    file with the schema of each alias of ``aliases`` and the test ``files``."""
    app_url = f"sqlite:///{pytester.path / APP_FILE}"
    app_urls = {alias: app_url for alias in ("default", "other", "replica")}
    pytester.makepyfile(models=MODELS, app=APP, settings=f"APP_URLS = {app_urls!r}\n", **files)
    ini(*metadata_lines(*aliases), "filterwarnings = error", *ini_lines)


def nothing_left(*aliases: str) -> str:
    """``NOTHING_LEFT`` for a run whose configured aliases are ``aliases``."""
    return NOTHING_LEFT.replace("ALIASES", repr(list(aliases)))


def header_urls(result: pytest.RunResult) -> dict[str, URL]:
    """Alias -> URL of its test database, as the run's header names it (mirrors have none)."""
    return {m["alias"]: make_url(m["url"]) for m in HEADER_LINE.finditer(result.stdout.str())}


def run_suite(
    pytester: pytest.Pytester, *args: str, servers: tuple[Backend, ...] = ()
) -> pytest.RunResult:
    """Run the inner suite in a subprocess; afterwards no test database named in its header is
    left (on ``servers``, or as a SQLite file)."""
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", *args, timeout=120)
    output = "\n".join(result.outlines + result.errlines)
    assert "INTERNALERROR" not in output, output
    urls = header_urls(result)
    assert urls, output
    leftovers = {name for server in servers for name in server.leftover_test_databases()}
    for alias, url in urls.items():
        if url.get_backend_name() == "sqlite":
            assert url.database and not Path(url.database).exists(), (alias, url)
        else:
            assert url.database not in leftovers, (alias, url)
    return result


def assert_app_database_unopened(pytester: pytest.Pytester, result: pytest.RunResult) -> None:
    """The app's own database file was never created: nothing reached the app's engines."""
    assert not (pytester.path / APP_FILE).exists(), result.stdout.str()


# -- two databases ---------------------------------------------------------------------------


@pytest.mark.parametrize("other_kind", ["postgresql", "sqlite"])
def test_two_databases_each_isolated_with_its_own_schema(
    pytester: pytest.Pytester, ini: Callable[..., None], postgresql: Backend, other_kind: str
) -> None:
    """Default on PostgreSQL, other on PostgreSQL (same server, same test database name: kept
    apart as NAME_other) or SQLite: each has its own schema and test database, and commits
    reach neither the next test nor the other database."""
    assert postgresql.url is not None
    name = unique_name()
    other = postgresql.url if other_kind == "postgresql" else None
    write_suite(
        pytester,
        ini,
        ("default", "other"),
        test_two=TWO_DATABASES,
        test_zz_nothing_left=nothing_left("default", "other"),
    )
    args = [*alias_args("default", postgresql.url, name), *alias_args("other", other, name)]
    result = run_suite(pytester, *args, servers=(postgresql,))
    result.assert_outcomes(passed=4)
    urls = header_urls(result)
    assert urls["default"].database == name
    assert urls["other"].get_backend_name() == other_kind
    if other_kind == "postgresql":
        assert urls["other"].database == f"{name}_other"
    assert_app_database_unopened(pytester, result)


# -- mirrors -----------------------------------------------------------------------------------


def test_mirror_reads_what_the_target_wrote_in_the_same_test_only(
    backend: Backend, pytester: pytest.Pytester, ini: Callable[..., None]
) -> None:
    """--db-mirror replica=default: writes through default (fixture or app code) are read
    through replica within the test, and neither alias sees them in the next one."""
    write_suite(
        pytester,
        ini,
        ("default",),
        test_mirror=MIRROR,
        test_zz_nothing_left=nothing_left("default", "replica"),
    )
    name_args = alias_args("default", backend.url, unique_name())
    result = run_suite(pytester, *name_args, "--db-mirror", "replica=default", servers=(backend,))
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["ctxdb: replica: mirror of default (from --db-mirror*"])
    assert set(header_urls(result)) == {"default"}
    assert_app_database_unopened(pytester, result)


# -- the marker ----------------------------------------------------------------------------------


def test_marker_on_function_class_and_module(
    pytester: pytest.Pytester, ini: Callable[..., None]
) -> None:
    """The closest db marker (function, class, module pytestmark) decides the aliases and
    db_session's; the marker alone binds app code; an undeclared alias is refused by name."""
    write_suite(
        pytester,
        ini,
        ("default", "other"),
        **MARKER_PLACES,
        test_undeclared=UNDECLARED,
        test_zz_nothing_left=nothing_left("default", "other"),
    )
    result = run_suite(pytester, *two_alias_args(None, None))
    result.assert_outcomes(passed=8, failed=2)
    refusal = (
        "E   *ContextError: this test touched database alias 'other', which it did not "
        "declare; declared: default. Add it: @pytest.mark.db(using=[[]'default', 'other'])."
    )  # "[[]" is fnmatch's literal "["
    result.stdout.fnmatch_lines(
        ["*_ test_undeclared_through_fixture _*", refusal]
        + ["*_ test_undeclared_through_app_code _*", refusal]
    )
    assert_app_database_unopened(pytester, result)


def test_app_and_fixture_share_one_session_per_alias_in_either_order(
    pytester: pytest.Pytester, ini: Callable[..., None]
) -> None:
    """In the test's own context, context.db_session(alias) is db_sessions[alias], whether
    the app or the test asks first (the README's rule, for every declared alias)."""
    write_suite(pytester, ini, ("default", "other"), test_identity=SESSION_IDENTITY)
    result = run_suite(pytester, *two_alias_args(None, None))
    result.assert_outcomes(passed=4)


def error_section(result: pytest.RunResult, test: str) -> list[str]:
    """The non-blank lines of the report section ``ERROR at setup of <test>``."""
    lines = result.outlines
    header = [i for i, line in enumerate(lines) if re.search(rf" ERROR at setup of {test} _", line)]
    assert len(header) == 1, "\n".join(lines)
    section = []
    for line in lines[header[0] + 1 :]:
        if line.startswith(("____", "====")):
            break
        if line.strip():
            section.append(line)
    return section


def test_invalid_marker_fails_only_its_test_with_one_line(
    pytester: pytest.Pytester, ini: Callable[..., None]
) -> None:
    """Not an alias name, wrong type, unknown keyword, reset_sequences without transaction: each
    fails its own test with one line naming the test and the marker; no traceback; the other
    tests of the run pass."""
    invalid = "\n".join(
        f"@pytest.mark.db({arguments})\ndef {test}({fixtures}):\n    pass\n"
        for test, arguments, fixtures, _ in INVALID_MARKERS
    )
    write_suite(
        pytester,
        ini,
        ("default",),
        test_invalid=f"import pytest\n\n{invalid}",
        test_neighbours=VALID_NEIGHBOURS,
    )
    result = run_suite(pytester)
    result.assert_outcomes(passed=2, errors=len(INVALID_MARKERS))
    output = "\n".join(result.outlines + result.errlines)
    assert "Traceback" not in output
    for test, _, _, message in INVALID_MARKERS:
        section = error_section(result, test)
        assert len(section) == 1, "\n".join(section)
        pattern = f"In test_invalid.py::{test}: @pytest.mark.db{message}"
        assert re.fullmatch(fnmatch_regex(pattern), section[0]), section[0]


def fnmatch_regex(pattern: str) -> str:
    """``pattern`` with ``*`` as the only wildcard, as a regular expression."""
    return ".*".join(re.escape(part) for part in pattern.split("*"))


# -- access blocking -------------------------------------------------------------------------------


def write_access_suite(pytester: pytest.Pytester, ini: Callable[..., None]) -> None:
    """The ``UNMARKED_ACCESS`` suite, the app's engine listed in ini db_engines."""
    write_suite(
        pytester, ini, ("default",), "db_engines = app:LEGACY_ENGINE", test_access=UNMARKED_ACCESS
    )


def test_access_without_marker_or_fixture_is_blocked(
    pytester: pytest.Pytester, ini: Callable[..., None]
) -> None:
    """A test with no db marker and no db fixture that touches an adapter engine, app code
    or a test database engine fails with the message, and the app's database stays unopened."""
    write_access_suite(pytester, ini)
    result = run_suite(pytester)
    result.stdout.fnmatch_lines([f"*::{test} FAILED*" for test in UNMARKED_ACCESS_TESTS])
    result.assert_outcomes(passed=1, failed=len(UNMARKED_ACCESS_TESTS))
    for test in UNMARKED_ACCESS_TESTS:
        result.stdout.fnmatch_lines(
            [f"*_ {test} _*", f"E   *ContextError: {ACCESS_NOT_ALLOWED}"], consecutive=False
        )
    assert_app_database_unopened(pytester, result)


def test_block_access_false_lets_unmarked_tests_through(
    pytester: pytest.Pytester, ini: Callable[..., None]
) -> None:
    """With -o db_block_access=false the same tests run: the app code and the adapter engine
    reach the app's own (throwaway) database, the kept engine the test database."""
    write_access_suite(pytester, ini)
    result = run_suite(pytester, "-o", "db_block_access=false")
    result.assert_outcomes(passed=len(UNMARKED_ACCESS_TESTS) + 1)
    assert "Database access not allowed" not in result.stdout.str()


def test_module_scoped_fixture_writing_through_the_runtime_is_allowed(
    pytester: pytest.Pytester, ini: Callable[..., None]
) -> None:
    """A module-scoped fixture of a db-marked test may write through the context runtime:
    it is not blocked, and its write does not reach the app's own database."""
    write_suite(pytester, ini, ("default",), test_module_fixture=MODULE_FIXTURE)
    result = run_suite(pytester)
    assert "Database access not allowed" not in result.stdout.str()
    assert_app_database_unopened(pytester, result)
    result.assert_outcomes(passed=1)


# -- transaction=True and reset_sequences=True ------------------------------------------------------


def test_commit_mode_among_rollback_tests_leaves_every_database_empty(
    backend: Backend, pytester: pytest.Pytester, ini: Callable[..., None]
) -> None:
    """transaction=True tests commit for real in both aliases (seen from outside), rollback
    tests do not; after each, both databases are empty again, and at the end dropped."""
    write_suite(
        pytester,
        ini,
        ("default", "other"),
        test_round_1=COMMIT_MODE,
        test_round_2=COMMIT_MODE,
        test_zz_nothing_left=nothing_left("default", "other"),
    )
    result = run_suite(pytester, *two_alias_args(backend.url, backend.url), servers=(backend,))
    result.assert_outcomes(passed=5)


@pytest.mark.parametrize("backend_name", ["sqlite", "postgresql", "mariadb"])
def test_reset_sequences_restarts_ids_for_the_next_test(
    pytester: pytest.Pytester, ini: Callable[..., None], backend_name: str
) -> None:
    """Ids go on from test to test under transaction=True; a reset_sequences=True test starts
    again from id 1 (SQLite sqlite_sequence, PostgreSQL sequences, AUTO_INCREMENT)."""
    from conftest import make_backend

    backend = make_backend(backend_name)
    write_suite(
        pytester,
        ini,
        ("default",),
        test_sequences=SEQUENCES,
        test_zz_nothing_left=nothing_left("default"),
    )
    result = run_suite(
        pytester, *alias_args("default", backend.url, unique_name()), servers=(backend,)
    )
    result.assert_outcomes(passed=5)


# -- teardown ------------------------------------------------------------------------------------


def test_teardown_ends_every_alias_when_one_fails(
    pytester: pytest.Pytester, ini: Callable[..., None], postgresql: Backend
) -> None:
    """When the first alias's rollback fails (its server process was terminated), the second
    alias is still rolled back and the failure is reported; when both fail, one error names
    each alias. The next tests start empty."""
    write_suite(
        pytester,
        ini,
        ("default", "other"),
        test_teardown=TEARDOWN,
        test_zz_nothing_left=nothing_left("default", "other"),
    )
    args = two_alias_args(postgresql.url, postgresql.url)
    result = run_suite(pytester, *args, servers=(postgresql,))
    result.assert_outcomes(passed=5, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*test_a_first_alias_dies PASSED*",
            "*test_a_first_alias_dies ERROR*",
            "*test_b_after_one_failure PASSED*",
            "*test_c_both_aliases_die PASSED*",
            "*test_c_both_aliases_die ERROR*",
            "*test_d_after_two_failures PASSED*",
            "*_ ERROR at teardown of test_a_first_alias_dies _*",
            "E   *OperationalError*terminating connection due to administrator command*",
            "*_ ERROR at teardown of test_c_both_aliases_die _*",
            (
                "E   *TransactionError: ending the test's transactions failed: alias 'default': "
                "OperationalError: *terminating connection*"
            ),
            "E   *; alias 'other': OperationalError: *terminating connection*",
        ]
    )


# -- aliases without a URL of their own ------------------------------------------------------------

#: ``replica`` is named only by markers: it gets a test database of its own, with the tables of
#: the db_metadata line without ALIAS=; writes through it (fixture or app code) are rolled back.
DERIVED_REPLICA = """
import pytest
from app import add_item, item_names
from models import ITEMS, Item, outside_counts, tables


@pytest.mark.db(using=["default", "replica"])
@pytest.mark.parametrize("name", ["A", "B", "A"])
def test_replica_has_a_database_of_its_own(db_sessions, name):
    default, replica = db_sessions["default"], db_sessions["replica"]
    assert (tables(default), tables(replica)) == (["item"], ["item"])
    assert default.connection().engine.url != replica.connection().engine.url
    assert replica.scalars(ITEMS).all() == []
    replica.add(Item(name=name))
    replica.commit()
    assert replica.scalars(ITEMS).all() == [name]
    assert default.scalars(ITEMS).all() == []
    assert outside_counts(replica) == {"item": 0}


@pytest.mark.db(using="replica")
@pytest.mark.parametrize("name", ["app", "app"])
def test_app_code_writes_through_the_replica(db_session, name):
    assert item_names("replica") == []
    add_item(name, using="replica")
    assert item_names("replica") == [name]
    assert db_session.scalars(ITEMS).all() == [name]
"""

#: ``other`` has a db_metadata line of its own (and no URL), ``reports`` a URL and no line,
#: ``replica`` neither: only ``other`` misses the tables of the line without ALIAS=.
OWN_AND_SHARED_SCHEMA = """
import pytest
from models import tables


@pytest.mark.db(using=["default", "other", "reports", "replica"])
def test_each_alias_has_its_schema(db_sessions):
    schemas = {alias: tables(session) for alias, session in db_sessions.items()}
    assert schemas == {
        "default": ["item"], "other": ["entry"], "reports": ["item"], "replica": ["item"]
    }
    urls = {session.connection().engine.url for session in db_sessions.values()}
    assert len(urls) == 4
"""


def write_replica_suite(
    pytester: pytest.Pytester, ini: Callable[..., None], **files: str
) -> None:
    """``DERIVED_REPLICA`` (and ``files``) with one db_metadata line, without ALIAS=."""
    write_suite(pytester, ini, (), test_replica=DERIVED_REPLICA, **files)
    ini("db_metadata = models:Base.metadata", "filterwarnings = error")


def derived_names(backend: Backend, prefix: str) -> list[str]:
    """The databases on ``backend``'s server carrying pytest-ctxdb's mark, named ``prefix...``,
    that are test databases (not the templates and spares kept across runs by design)."""
    return [
        name
        for name in backend.leftover_test_databases()
        if name.startswith(prefix) and "_tpl_" not in name and "_sp_" not in name
    ]


@pytest.mark.parametrize("backend_name", ["sqlite", "postgresql", "mariadb"])
def test_marker_alias_without_url_gets_a_rolled_back_database_of_its_own(
    pytester: pytest.Pytester, ini: Callable[..., None], backend_name: str
) -> None:
    """@pytest.mark.db(using="replica") with no URL for replica: a test database on the default
    alias's server (embedded SQLite without one), named after the default's, with the tables of
    the db_metadata line without ALIAS=; the report names it and what named it; writes are
    rolled back (a connection of its own counts no row) and it is dropped at the end."""
    from conftest import make_backend

    backend = make_backend(backend_name)
    name = unique_name()
    write_replica_suite(
        pytester, ini, test_zz_nothing_left=nothing_left("default", "replica")
    )
    result = run_suite(pytester, *alias_args("default", backend.url, name), servers=(backend,))
    result.assert_outcomes(passed=6)
    where = "embedded SQLite" if backend.url is None else "on the default alias's server"
    result.stdout.fnmatch_lines(
        [
            "*collected 6 items",
            f"ctxdb: replica: * ({where}, alias named by @pytest.mark.db in "
            "test_replica.py::test_replica_has_a_database_of_its_own[[]A0]; sync driver *",
        ]
    )
    urls = header_urls(result)
    assert set(urls) == {"default", "replica"}
    replica = urls["replica"]
    assert replica.get_backend_name() == urls["default"].get_backend_name()
    assert (replica.host, replica.port) == (urls["default"].host, urls["default"].port)
    if backend.url is None:
        assert Path(str(replica.database)).name.startswith("test_ctxdb_replica_")
    else:
        assert str(replica.database).startswith(f"{name}_replica_")
        assert derived_names(backend, name) == []
    assert_app_database_unopened(pytester, result)


def test_alias_with_its_own_db_metadata_line_gets_only_its_own_tables(
    backend: Backend, pytester: pytest.Pytester, ini: Callable[..., None]
) -> None:
    """A db_metadata line without ALIAS= applies to every alias without a line of its own:
    an alias with a URL (reports), one named by a marker (replica); ``other=`` lines give
    other (no URL: named by db_metadata, in the header) its own tables only."""
    name = unique_name()
    write_suite(pytester, ini, (), test_schemas=OWN_AND_SHARED_SCHEMA)
    ini(
        "db_metadata =",
        "    models:Base.metadata",
        "    other=models:OtherBase.metadata",
        "filterwarnings = error",
    )
    reports = alias_args("reports", backend.url, f"{name}_r")
    args = [*alias_args("default", backend.url, name), *reports]
    result = run_suite(pytester, *args, servers=(backend,))
    result.assert_outcomes(passed=1)
    where = "embedded SQLite" if backend.url is None else "on the default alias's server"
    result.stdout.fnmatch_lines(
        [
            f"ctxdb: other: * ({where}, alias named by db_metadata; sync driver *",
            "*collected 1 item",
            f"ctxdb: replica: * ({where}, alias named by @pytest.mark.db in *",
        ]
    )
    assert set(header_urls(result)) == {"default", "other", "reports", "replica"}
    if backend.url is not None:
        assert derived_names(backend, name) == []


def test_marker_alias_without_url_under_xdist(
    pytester: pytest.Pytester, ini: Callable[..., None], postgresql: Backend
) -> None:
    """Under pytest-xdist each worker collects the marker's alias and gets its own database
    of it (``..._replica_<run>_gw0``); every one is dropped at the end."""
    name = unique_name()
    write_replica_suite(pytester, ini)
    args = alias_args("default", postgresql.url, name)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", *args, timeout=120)
    result.assert_outcomes(passed=5)
    assert derived_names(postgresql, name) == []


#: ``ro`` mirrors ``other``, which has no URL (db_metadata names it): a write through other is
#: read through ro in the same test, and gone in the next.
MIRROR_OF_DERIVED = """
import pytest
from models import ITEMS, Item


@pytest.mark.db(using=["other", "ro"])
@pytest.mark.parametrize("name", ["A", "B"])
def test_mirror_reads_the_derived_alias(db_sessions, name):
    assert db_sessions["ro"].scalars(ITEMS).all() == []
    db_sessions["other"].add(Item(name=name))
    db_sessions["other"].commit()
    assert db_sessions["ro"].scalars(ITEMS).all() == [name]
"""


def test_mirror_of_an_alias_without_url(
    pytester: pytest.Pytester, ini: Callable[..., None]
) -> None:
    """--db-mirror may target an alias that only a db_metadata line names."""
    write_suite(pytester, ini, (), test_mirror=MIRROR_OF_DERIVED)
    ini("db_metadata =", "    other=models:Base.metadata", "filterwarnings = error")
    result = run_suite(pytester, "--db-mirror", "ro=other")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "ctxdb: other: * (embedded SQLite, alias named by db_metadata; *",
            "ctxdb: ro: mirror of other (from --db-mirror*",
        ]
    )
