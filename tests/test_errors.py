"""Bad input ends the run with ONE clear error: no traceback, no error per test, no password.

Each test writes an inner suite of three database tests, runs it in a subprocess with a bad
setting and checks the exit code, the error line, that it appears once, and that no secret
of the URL is printed in any form (raw, percent-encoded or decoded).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

if TYPE_CHECKING:
    from conftest import Backend

DB_SUITE = """
def test_one(db_session):
    pass

def test_two(db_session):
    pass

def test_three(db_connection):
    pass
"""
ASYNC_DB_SUITE = """
import pytest

@pytest.mark.asyncio
async def test_one(async_db_session):
    pass

@pytest.mark.asyncio
async def test_two(async_db_session):
    pass

@pytest.mark.asyncio
async def test_three(async_db_connection):
    pass
"""
PLAIN_SUITE = """
def test_plain():
    assert 1 + 1 == 2
"""

#: nothing listens on port 1: any attempt to reach this server fails at once.
UNREACHABLE = "postgresql+psycopg://postgres:hunter2@127.0.0.1:1/test"
#: the password ``p@ss%word``, percent-encoded as a URL needs it.
ENCODED_PASSWORD = "p%40ss%25word"
#: every form in which the encoded password or its pieces could leak.
ENCODED_PASSWORD_FORMS = (ENCODED_PASSWORD, "p@ss%word", "p@ss", "ss%25word", "ss%word")


@pytest.fixture(autouse=True)
def _clean_inner_environment(ini: Callable[..., None], monkeypatch: pytest.MonkeyPatch) -> None:
    """Every inner run gets the default pytest.ini and no URL from this process's env."""
    monkeypatch.delenv("PYTEST_CTXDB_URL", raising=False)


def run_suite(pytester: pytest.Pytester, *args: str, suite: str = DB_SUITE) -> pytest.RunResult:
    """Write ``suite`` as the inner test module and run pytest on it in a subprocess."""
    pytester.makepyfile(test_inner=suite)
    return pytester.runpytest_subprocess(*args)


def output_of(result: pytest.RunResult) -> str:
    return "\n".join(result.outlines + result.errlines)


def assert_no_secret(result: pytest.RunResult, secrets: tuple[str, ...]) -> None:
    """No secret appears anywhere in the inner run's stdout or stderr."""
    output = output_of(result)
    leaked = [secret for secret in secrets if secret in output]
    assert leaked == [], output


def assert_one_usage_error(
    result: pytest.RunResult, pattern: str, secrets: tuple[str, ...] = ()
) -> str:
    """The run ended with a usage error whose one ``ERROR`` line matches ``pattern``.

    :returns: that line, for further checks.
    """
    lines = result.outlines + result.errlines
    output = output_of(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output
    assert "Traceback" not in output
    assert "INTERNALERROR" not in output
    error_lines = fnmatch.filter(lines, "*ERROR*")
    assert len(error_lines) == 1, output
    assert fnmatch.fnmatch(error_lines[0], pattern), output
    assert_no_secret(result, secrets)
    return error_lines[0]


# -- settings refused before any test runs -----------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "postgresql//u:s3cr%40t@127.0.0.1/app",
        "postgresql:/u:s3cr%40t@127.0.0.1/app",
        "://u:s3cr%40t@127.0.0.1/app",
        "postgresql+psycopg://u:s3cr%40t@127.0.0.1:notaport/app",
    ],
    ids=["words", "no-colon", "one-slash", "no-dialect", "non-numeric-port"],
)
def test_malformed_url_is_one_usage_error(pytester: pytest.Pytester, url: str) -> None:
    """A URL SQLAlchemy cannot parse is one usage error naming --db-url, password unprinted."""
    result = run_suite(pytester, "--db-url", url)
    assert_one_usage_error(
        result, "ERROR: --db-url: *not a valid SQLAlchemy URL*", secrets=("s3cr%40t", "s3cr@t")
    )


@pytest.mark.parametrize(
    "url",
    ["postgresql://u:s3cr%40t@/", "postgresql+psycopg://u:s3cr%40t@127.0.0.1:1"],
    ids=["no-host", "host-only"],
)
def test_url_without_database_is_one_usage_error(pytester: pytest.Pytester, url: str) -> None:
    """A server URL naming no database is refused: the test database name derives from it."""
    result = run_suite(pytester, "--db-url", url)
    assert_one_usage_error(
        result, "ERROR: --db-url: *names no database*", secrets=("s3cr%40t", "s3cr@t")
    )


@pytest.mark.parametrize(
    ("url", "pattern"),
    [
        ("oracle+foo://u:pw-unknown@127.0.0.1:1/app", "ERROR: --db-url: *'oracle'*not supported*"),
        ("nosuchdialect://u:pw-unknown@127.0.0.1:1/app", "ERROR: --db-url: *'nosuchdialect'*"),
        ("postgresql+nosuchdriver://u:pw-unknown@127.0.0.1/test", "ERROR: *--db-url*nosuchdriver*"),
        ("sqlite+nosuchdriver:///app.db", "ERROR: *--db-url*nosuchdriver*"),
    ],
    ids=["oracle", "unknown-dialect", "postgresql-unknown-driver", "sqlite-unknown-driver"],
)
def test_unknown_dialect_or_driver_is_one_usage_error(
    pytester: pytest.Pytester, url: str, pattern: str
) -> None:
    """An unsupported dialect or a driver SQLAlchemy does not know is refused, not replaced."""
    result = run_suite(pytester, "--db-url", url)
    line = assert_one_usage_error(result, pattern, secrets=("pw-unknown",))
    assert "cannot use the server" not in line  # refused without trying a connection


@pytest.mark.parametrize(
    ("module", "args", "suite", "extra"),
    [
        ("psycopg", ("--db-url", UNREACHABLE), DB_SUITE, "postgres"),
        ("asyncpg", ("--db-url", UNREACHABLE), ASYNC_DB_SUITE, "async"),
        ("aiosqlite", (), ASYNC_DB_SUITE, "async"),
    ],
)
def test_missing_driver_names_the_extra_to_install(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    module: str,
    args: tuple[str, ...],
    suite: str,
    extra: str,
) -> None:
    """A driver that does not import is one usage error saying which extra installs it."""
    fake_site = pytester.mkdir("fake_site")
    (fake_site / f"{module}.py").write_text(
        f"raise ImportError('simulated: {module} is not installed', name={module!r})\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(fake_site))
    result = run_suite(pytester, *args, suite=suite)
    line = assert_one_usage_error(result, f"ERROR: *{module}*", secrets=("hunter2",))
    assert f"pip install 'pytest-ctxdb[{extra}]'" in line


def test_unreachable_server_is_reported_once_at_session_start(pytester: pytest.Pytester) -> None:
    """An unreachable server is one error naming host:port, after collection, before any test."""
    result = run_suite(pytester, "--db-url", UNREACHABLE)
    assert_one_usage_error(result, "ERROR: pytest-ctxdb: *127.0.0.1:1*", secrets=("hunter2",))
    result.stdout.fnmatch_lines(["collected 3 items", "*no tests ran*"])


def test_unreachable_server_under_xdist_is_one_message_not_a_worker_crash(
    pytester: pytest.Pytester,
) -> None:
    """Under ``-n 2`` the workers run no test and xdist ends the run with the plugin's own
    message (once), not an INTERNALERROR about a crashed worker; no password is printed."""
    url = f"postgresql+psycopg://postgres:{ENCODED_PASSWORD}@127.0.0.1:1/test"
    result = run_suite(pytester, "-p", "xdist", "-n", "2", "--db-url", url)
    output = output_of(result)
    assert result.ret == pytest.ExitCode.INTERRUPTED, output
    assert "INTERNALERROR" not in output and "Traceback" not in output, output
    lines = fnmatch.filter(result.outlines, "*Interrupted: pytest-ctxdb: alias 'default'*")
    assert len(lines) == 1, output
    assert "cannot use the server at 127.0.0.1:1" in lines[0], output
    result.stdout.fnmatch_lines(["*no tests ran*"])
    assert_no_secret(result, ENCODED_PASSWORD_FORMS)


@pytest.mark.parametrize(
    ("url", "pattern"),
    [
        (f"postgresql+psycopg://postgres:{ENCODED_PASSWORD}@127.0.0.1:1/test", "*127.0.0.1:1*"),
        (f"postgresql+psycopg://postgres:{ENCODED_PASSWORD}@127.0.0.1:1", "*names no database*"),
        (f"oracle://postgres:{ENCODED_PASSWORD}@127.0.0.1:1/test", "*not supported*"),
        (f"postgresql//postgres:{ENCODED_PASSWORD}@127.0.0.1:1/test", "*not a valid*"),
    ],
    ids=["unreachable", "no-database", "unsupported-dialect", "malformed"],
)
def test_password_with_at_and_percent_is_never_printed(
    pytester: pytest.Pytester, url: str, pattern: str
) -> None:
    """A password holding ``@`` and ``%`` leaks neither encoded nor decoded through any error."""
    result = run_suite(pytester, "--db-url", url)
    assert_one_usage_error(result, f"ERROR: {pattern}", secrets=ENCODED_PASSWORD_FORMS)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("nosuch_ctxdb_module:metadata", "nosuch_ctxdb_module"),
        ("os:nosuch_attribute", "nosuch_attribute"),
        ("os:path", "MetaData"),
        ("no_colon_here", "no_colon_here"),
    ],
    ids=["module-missing", "attribute-missing", "not-metadata", "not-an-import-string"],
)
def test_bad_db_metadata_is_one_usage_error(
    pytester: pytest.Pytester, ini: Callable[..., None], spec: str, fragment: str
) -> None:
    """An ini ``db_metadata`` that does not import a MetaData is one error naming db_metadata."""
    ini(f"db_metadata = {spec}")
    result = run_suite(pytester)
    assert_one_usage_error(result, f"ERROR: *db_metadata*{fragment}*")


REPLICA_SUITE = """
import pytest


@pytest.mark.db(using="replica")
def test_replica(db_session):
    pass
"""


def test_alias_without_url_on_an_unreachable_server_is_one_usage_error(
    pytester: pytest.Pytester,
) -> None:
    """A marker's alias without a URL goes to the default alias's server: when that is
    unreachable, one error names the alias, what named it and host:port, never the password."""
    url = f"postgresql+psycopg://postgres:{ENCODED_PASSWORD}@127.0.0.1:1/test"
    result = run_suite(pytester, "--db-url", url, suite=REPLICA_SUITE)
    assert_one_usage_error(
        result,
        "ERROR: pytest-ctxdb: alias 'replica' (@pytest.mark.db in test_inner.py::test_replica, "
        "on the default alias's server): cannot use the server at 127.0.0.1:1 as "
        "postgresql+psycopg://postgres:***@127.0.0.1:1/test*",
        secrets=ENCODED_PASSWORD_FORMS,
    )


def test_bad_db_metadata_of_an_alias_without_url_is_one_usage_error(
    pytester: pytest.Pytester, ini: Callable[..., None]
) -> None:
    """A db_metadata line of an alias without a URL that does not import is one error naming
    db_metadata, when a test uses that alias."""
    ini("db_metadata = other=nosuch_ctxdb_module:metadata")
    result = run_suite(pytester, suite=REPLICA_SUITE.replace('"replica"', '"other"'))
    assert_one_usage_error(result, "ERROR: *db_metadata*nosuch_ctxdb_module*")


@pytest.mark.parametrize("source", ["ini", "env"])
def test_malformed_url_names_ini_or_env_source(
    pytester: pytest.Pytester,
    ini: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    source: str,
) -> None:
    """A malformed URL from ini ``db_url`` or env PYTEST_CTXDB_URL names where it came from."""
    bad_url = "postgresql//u:s3cr%40t@127.0.0.1/app"
    if source == "ini":
        ini(f"db_url = {bad_url}")
        pattern = "ERROR: db_url: *not a valid SQLAlchemy URL*"
    else:
        monkeypatch.setenv("PYTEST_CTXDB_URL", bad_url)
        pattern = "ERROR: PYTEST_CTXDB_URL: *not a valid SQLAlchemy URL*"
    result = run_suite(pytester)
    assert_one_usage_error(result, pattern, secrets=("s3cr%40t", "s3cr@t"))


@pytest.mark.parametrize(
    ("args", "ini_lines", "pattern"),
    [
        (
            (
                "--db-url",
                "a=postgresql://u:hunter2@127.0.0.1:1/one",
                "--db-url",
                "a=sqlite:///two.db",
            ),
            (),
            "ERROR: --db-url: alias 'a' is given twice*",
        ),
        (
            ("--db-url", "postgresql://u:hunter2@127.0.0.1:1/one", "--db-url", "sqlite:///two.db"),
            (),
            "ERROR: --db-url: alias 'default' is given twice*",
        ),
        (
            (),
            ("db_url =", "    a=postgresql://u:hunter2@127.0.0.1:1/one", "    a=sqlite:///two.db"),
            "ERROR: db_url: alias 'a' is given twice*",
        ),
    ],
    ids=["cli-alias", "cli-default", "ini-alias"],
)
def test_alias_given_twice_is_one_usage_error(
    pytester: pytest.Pytester,
    ini: Callable[..., None],
    args: tuple[str, ...],
    ini_lines: tuple[str, ...],
    pattern: str,
) -> None:
    """Two URLs for one alias in the same setting are refused rather than one silently kept."""
    ini(*ini_lines)
    result = run_suite(pytester, *args)
    assert_one_usage_error(result, pattern, secrets=("hunter2",))


@pytest.mark.parametrize("test_name", ["test", "default=test"])
def test_test_database_named_like_url_database_is_refused(
    pytester: pytest.Pytester, test_name: str
) -> None:
    """``--db-test-name`` equal to the URL's own database is refused before any server is used."""
    result = run_suite(pytester, "--db-url", UNREACHABLE, "--db-test-name", test_name)
    assert_one_usage_error(result, "ERROR: --db-test-name / db_test_name: *'test'*", secrets=("hunter2",))


# -- databases already on the server -------------------------------------------------------------


@pytest.fixture
def admin_engine(postgresql: Backend) -> Iterator[Engine]:
    """An AUTOCOMMIT engine on the PostgreSQL server's URL database, for CREATE/DROP DATABASE."""
    assert postgresql.url is not None
    engine = create_engine(postgresql.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def run_sql(engine: Engine, *statements: str) -> None:
    with engine.connect() as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)


def database_exists(engine: Engine, name: str) -> bool:
    with engine.connect() as connection:
        found = connection.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
        ).first()
    return found is not None


FOREIGN = "test_ctxdb_foreign"
STALE = "test_ctxdb_stale"
STALE_SUITE = f"""
from sqlalchemy import inspect

def test_gets_a_fresh_database(db_connection):
    assert db_connection.engine.url.database == {STALE!r}
    assert not inspect(db_connection).has_table("stale_leftover")
"""


def test_foreign_database_with_the_test_name_is_never_dropped(
    pytester: pytest.Pytester, postgresql: Backend, admin_engine: Engine
) -> None:
    """A database named like the test database but not made by pytest-ctxdb is refused, kept."""
    run_sql(admin_engine, f"DROP DATABASE IF EXISTS {FOREIGN}", f"CREATE DATABASE {FOREIGN}")
    try:
        result = run_suite(pytester, *postgresql.args, "--db-test-name", FOREIGN)
        assert_one_usage_error(result, f"ERROR: pytest-ctxdb: *{FOREIGN!r}*")
        assert database_exists(admin_engine, FOREIGN)
    finally:
        run_sql(admin_engine, f"DROP DATABASE IF EXISTS {FOREIGN}")


def test_stale_marked_database_is_replaced_and_dropped(
    pytester: pytest.Pytester, postgresql: Backend, admin_engine: Engine
) -> None:
    """A leftover database with pytest-ctxdb's mark is recreated empty and dropped at the end."""
    run_sql(
        admin_engine,
        f"DROP DATABASE IF EXISTS {STALE}",
        f"CREATE DATABASE {STALE}",
        f"COMMENT ON DATABASE {STALE} IS 'created by pytest-ctxdb'",
    )
    stale_engine = create_engine(admin_engine.url.set(database=STALE), poolclass=NullPool)
    try:
        with stale_engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE stale_leftover (id INTEGER)")
            assert inspect(connection).has_table("stale_leftover")
        stale_engine.dispose()
        result = run_suite(pytester, *postgresql.args, "--db-test-name", STALE, suite=STALE_SUITE)
        result.assert_outcomes(passed=1)
        assert not database_exists(admin_engine, STALE)
    finally:
        stale_engine.dispose()
        run_sql(admin_engine, f"DROP DATABASE IF EXISTS {STALE}")


# -- runs that must not contact any server --------------------------------------------------------


def test_run_without_db_fixtures_ignores_unreachable_url(pytester: pytest.Pytester) -> None:
    """Tests that use no database fixture pass even when --db-url points at nothing."""
    result = run_suite(pytester, "--db-url", UNREACHABLE, suite=PLAIN_SUITE)
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK
    assert_no_secret(result, ("hunter2",))


def test_collect_only_contacts_no_server(pytester: pytest.Pytester) -> None:
    """``--collect-only`` lists database tests without reaching the (unreachable) server."""
    result = run_suite(pytester, "--db-url", UNREACHABLE, "--collect-only")
    assert result.ret == pytest.ExitCode.OK, output_of(result)
    result.stdout.fnmatch_lines(["*3 tests collected*"])
    assert fnmatch.filter(result.outlines + result.errlines, "*ERROR*") == []
