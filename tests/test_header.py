"""What pytest-ctxdb shows before the run: the header, ``--fixtures`` and ``--help``.

The header has one ``ctxdb: ALIAS: <test database URL> (<source>; sync driver X, async driver Y)``
line per alias, with every password masked. None of these runs contacts a server: the URLs
point at port 1, where nothing listens, and the inner tests use no database fixture.
"""

from __future__ import annotations

import re

import inspect
from collections.abc import Callable

import pytest

import pytest_ctxdb.plugin

PLAIN_SUITE = """
def test_plain():
    assert 1 + 1 == 2
"""
ENV_URL = "PYTEST_CTXDB_URL"
#: the passwords used below, in every form that must never be printed.
SECRETS = ("hunter2", "p%40ss%25word", "p@ss%word", "qs-secret-42")
PUBLIC_FIXTURES = (
    "db_engine",
    "db_connection",
    "db_session",
    "async_db_engine",
    "async_db_connection",
    "async_db_session",
)


@pytest.fixture(autouse=True)
def _clean_inner_environment(ini: Callable[..., None], monkeypatch: pytest.MonkeyPatch) -> None:
    """Every inner run gets the default pytest.ini and no URL from this process's env."""
    monkeypatch.delenv(ENV_URL, raising=False)


def server_url(database: str, *, password: str = "hunter2", driver: str = "psycopg") -> str:
    """A PostgreSQL URL on port 1 (nothing listens there) naming ``database``."""
    return f"postgresql+{driver}://postgres:{password}@127.0.0.1:1/{database}"


#: each run's test databases carry the run's id: ``test_app_1a2b3c4d``.
RUN_ID = re.compile(r"(/test_\w+?)_[0-9a-f]{8}\b")


def pg_header_line(alias: str, database: str, source: str) -> str:
    """The expected header line of a psycopg/asyncpg alias whose URL has a password."""
    return (
        f"ctxdb: {alias}: postgresql+psycopg://postgres:***@127.0.0.1:1/{database}_<run> "
        f"({source}; sync driver psycopg, async driver asyncpg)"
    )


def header_lines(pytester: pytest.Pytester, *args: str) -> list[str]:
    """Run a suite that uses no database and return its ``ctxdb:`` header lines."""
    pytester.makepyfile(test_plain=PLAIN_SUITE)
    result = pytester.runpytest_subprocess(*args)
    output = "\n".join(result.outlines + result.errlines)
    assert result.ret == pytest.ExitCode.OK, output
    assert [secret for secret in SECRETS if secret in output] == []
    return [RUN_ID.sub(r"\1_<run>", line) for line in result.outlines if line.startswith("ctxdb:")]


def test_header_shows_test_database_url_with_password_masked(pytester: pytest.Pytester) -> None:
    """The header names the test database (not the URL's), its source and drivers, no password."""
    lines = header_lines(pytester, "--db-url", server_url("app"))
    assert lines == [pg_header_line("default", "test_app", "from --db-url")]


@pytest.mark.parametrize(
    ("sources", "database", "origin"),
    [
        (("cli", "env", "ini"), "test_cli_db", "from --db-url"),
        (("env", "ini"), "test_env_db", f"from env {ENV_URL}"),
        (("ini",), "test_ini_db", "from ini db_url"),
    ],
    ids=["cli-wins", "env-beats-ini", "ini-alone"],
)
def test_url_precedence_is_cli_then_env_then_ini(
    pytester: pytest.Pytester,
    ini: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    sources: tuple[str, ...],
    database: str,
    origin: str,
) -> None:
    """With the URL set in several places, --db-url beats env PYTEST_CTXDB_URL beats ini db_url."""
    args: tuple[str, ...] = ()
    if "cli" in sources:
        args = ("--db-url", server_url("cli_db"))
    if "env" in sources:
        monkeypatch.setenv(ENV_URL, server_url("env_db"))  # inherited by the subprocess
    if "ini" in sources:
        ini(f"db_url = {server_url('ini_db')}")
    assert header_lines(pytester, *args) == [pg_header_line("default", database, origin)]


def test_header_without_any_url_shows_embedded_sqlite(pytester: pytest.Pytester) -> None:
    """With no URL anywhere, the header says an embedded SQLite database is used."""
    lines = header_lines(pytester)
    assert len(lines) == 1, lines
    assert lines[0].startswith("ctxdb: default: sqlite+pysqlite:///")
    assert lines[0].endswith(
        "/test_ctxdb_<run> (embedded SQLite; sync driver pysqlite, async driver aiosqlite)"
    )


def test_each_alias_has_its_own_header_line(
    pytester: pytest.Pytester, ini: Callable[..., None]
) -> None:
    """``ALIAS=URL`` entries get one header line each, default first, each with its source."""
    ini(f"db_url = reports={server_url('reports', driver='asyncpg')}")
    lines = header_lines(
        pytester,
        "--db-url",
        server_url("app"),
        "--db-url",
        f"archive={server_url('archive', password='p%40ss%25word')}",
    )
    assert lines == [
        pg_header_line("default", "test_app", "from --db-url"),
        pg_header_line("archive", "test_archive", "from --db-url"),
        pg_header_line("reports", "test_reports", "from ini db_url"),
    ]


@pytest.mark.parametrize(
    ("url", "sync_driver", "async_driver"),
    [
        (server_url("app", driver="psycopg"), "psycopg", "asyncpg"),
        (server_url("app", driver="asyncpg"), "psycopg", "asyncpg"),
        (server_url("app", driver="psycopg2"), "psycopg2", "asyncpg"),
        ("postgresql://postgres:hunter2@127.0.0.1:1/app", "psycopg", "asyncpg"),
        ("sqlite:///app.db", "pysqlite", "aiosqlite"),
        ("sqlite+aiosqlite:///app.db", "pysqlite", "aiosqlite"),
        ("mysql+pymysql://root:hunter2@127.0.0.1:1/app", "pymysql", "asyncmy"),
    ],
)
def test_header_names_sync_and_async_drivers(
    pytester: pytest.Pytester, url: str, sync_driver: str, async_driver: str
) -> None:
    """The header names the sync and the async driver the fixtures will use for the URL."""
    lines = header_lines(pytester, "--db-url", url)
    assert len(lines) == 1, lines
    dialect = url.split(":", 1)[0].split("+")[0]
    assert lines[0].startswith(f"ctxdb: default: {dialect}+{sync_driver}://")
    assert lines[0].endswith(f"sync driver {sync_driver}, async driver {async_driver})")


def test_password_in_query_string_is_masked(pytester: pytest.Pytester) -> None:
    """A password given as ``?password=...`` is masked as ``***`` like one in the userinfo."""
    lines = header_lines(
        pytester, "--db-url", "postgresql+psycopg://postgres@127.0.0.1:1/app?password=qs-secret-42"
    )
    assert len(lines) == 1, lines
    assert "qs-secret-42" not in lines[0]
    assert "/test_app_<run>?password=*** (from --db-url;" in lines[0]


def first_docstring_line(fixture_name: str) -> str:
    doc = getattr(pytest_ctxdb.plugin, fixture_name).__doc__
    assert doc, f"{fixture_name} has no docstring"
    return inspect.cleandoc(doc).splitlines()[0]


def test_fixtures_listing_shows_public_fixtures_with_docstrings(pytester: pytest.Pytester) -> None:
    """``pytest --fixtures`` lists the six public fixtures, each followed by its docstring."""
    pytester.makepyfile(test_plain=PLAIN_SUITE)
    result = pytester.runpytest_subprocess("--fixtures")
    assert result.ret == pytest.ExitCode.OK
    for name in PUBLIC_FIXTURES:
        result.stdout.fnmatch_lines(
            [f"{name} *-- *", f"    {first_docstring_line(name)}"], consecutive=True
        )
    result.stdout.no_fnmatch_line("_ctxdb_*")  # private machinery stays out of the listing


def test_help_shows_options_and_ini_keys(pytester: pytest.Pytester) -> None:
    """``pytest --help`` documents --db-url, --db-test-name and the ini keys."""
    result = pytester.runpytest_subprocess("--help")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "  --db-url=*URL*SQLAlchemy URL*",
            "  --db-test-name=*",
            "  db_url (linelist):*SQLAlchemy URL*",
            "  db_test_name (linelist):*",
            "  db_metadata (linelist):*",
        ]
    )


MARKED_SUITE = """
import pytest


@pytest.mark.db(using=["default", "replica"])
def test_marked():
    pass
"""


def test_alias_without_url_is_in_the_header_with_what_named_it(
    pytester: pytest.Pytester, ini: Callable[..., None]
) -> None:
    """An alias named by db_metadata or --db-test-name but given no URL gets a header line: a
    test database on the default alias's server (named after the default's, or as chosen)."""
    ini("db_metadata =", "    models:Base.metadata", "    other=models:OtherBase.metadata")
    lines = header_lines(
        pytester, "--db-url", server_url("app"), "--db-test-name", "archive=test_archive_x"
    )
    assert lines == [
        pg_header_line("default", "test_app", "from --db-url"),
        "ctxdb: archive: postgresql+psycopg://postgres:***@127.0.0.1:1/test_archive_x "
        "(on the default alias's server, alias named by --db-test-name / db_test_name; "
        "sync driver psycopg, async driver asyncpg)",
        pg_header_line(
            "other", "test_app_other", "on the default alias's server, alias named by db_metadata"
        ),
    ]


def test_alias_named_by_a_marker_only_is_reported_after_collection(
    pytester: pytest.Pytester,
) -> None:
    """A db marker naming an alias that is not configured is reported once collected (a typo
    shows), embedded SQLite without a default URL; --collect-only contacts no server; a
    deselected test names no alias."""
    pytester.makepyfile(test_marked=MARKED_SUITE)
    for args in ((), ("--db-url", server_url("app"))):
        result = pytester.runpytest_subprocess("--collect-only", *args)
        assert result.ret == pytest.ExitCode.OK, "\n".join(result.outlines + result.errlines)
        assert "hunter2" not in "\n".join(result.outlines + result.errlines)
        where = "on the default alias's server" if args else "embedded SQLite"
        database = "test_app_replica_*" if args else "*/test_ctxdb_replica_*"
        result.stdout.fnmatch_lines(
            [
                "collected 1 item",
                f"ctxdb: replica: *{database} ({where}, alias named by @pytest.mark.db in "
                "test_marked.py::test_marked; sync driver *",
            ]
        )
    deselected = pytester.runpytest_subprocess("--collect-only", "-k", "not test_marked")
    assert deselected.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    deselected.stdout.no_fnmatch_line("ctxdb: replica:*")  # only the selected tests count
