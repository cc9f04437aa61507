"""Template databases, clones, sweeping, pytest-xdist and throwaway containers, seen from outside.

Each test writes an inner suite whose tests record what they see (the test database's name
and port, its tables, the columns of ``item``, the rows of an out-of-band marker table, the
Alembic version) into ``observed/<worker>.json``; the outer test runs it in a subprocess and
checks the records, the server's catalog, the template files and Docker. Inner runs get a
private ``TMPDIR``, so SQLite templates, provisioning locks and container state files of one
test never meet another's; every server database a test makes is dropped after it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from conftest import SELECTED_BACKENDS, SERVER_URLS, Backend, make_backend, server_problem

#: the inner models; ``# EXTRA COLUMN`` is replaced to change the schema.
MODELS = """
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "item"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    # EXTRA COLUMN
"""
EXTRA_COLUMN = "note: Mapped[str | None] = mapped_column(String(20))"

#: ``COUNT`` tests (filled in) that each record what their test database holds.
OBSERVE = """
import json
import os
import sys
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

OUT = Path(__file__).parent / "observed"
COMMENT = {
    "postgresql": "SELECT shobj_description(oid, 'pg_database') FROM pg_database "
    "WHERE datname = current_database()",
    "mysql": "SELECT SCHEMA_COMMENT FROM information_schema.SCHEMATA "
    "WHERE SCHEMA_NAME = DATABASE()",
    "sqlite": "SELECT NULL",
}


@pytest.mark.parametrize("n", range(COUNT))
def test_observe(db_session, n):
    connection = db_session.connection()
    inspector = inspect(connection)
    tables = sorted(t for t in inspector.get_table_names() if not t.startswith("sqlite_"))

    def rows(sql, table):
        return connection.execute(text(sql)).scalars().all() if table in tables else None

    seen = {
        "database": connection.engine.url.database,
        "port": connection.engine.url.port,
        "tables": tables,
        "item_columns": (
            [c["name"] for c in inspector.get_columns("item")] if "item" in tables else None
        ),
        "marker": rows("SELECT note FROM ctxdb_marker", "ctxdb_marker"),
        "alembic_version": rows("SELECT version_num FROM alembic_version", "alembic_version"),
        "testcontainers_imported": "testcontainers" in sys.modules,
        "alembic_imported": "alembic" in sys.modules,
        "oid": (
            connection.execute(
                text("SELECT oid FROM pg_database WHERE datname = current_database()")
            ).scalar()
            if connection.dialect.name == "postgresql"
            else None
        ),
        "comment": connection.execute(text(COMMENT[connection.dialect.name])).scalar(),
        "container_state_modes": sorted(
            oct(path.stat().st_mode & 0o777)
            for path in (Path(tempfile.gettempdir()) / "pytest-ctxdb").glob("container-*.json")
        ),
    }
    OUT.mkdir(exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    (OUT / f"{worker}.json").write_text(json.dumps(seen))
"""

#: a commit in one test, nothing of it in the next (rollback mode).
COMMIT_PAIR = """
from sqlalchemy import select
from models import Item


def test_a_commits(db_session):
    db_session.add(Item(name="committed"))
    db_session.commit()
    assert db_session.scalars(select(Item.name)).all() == ["committed"]


def test_b_nothing_left(db_session):
    assert db_session.scalars(select(Item.name)).all() == []
"""

#: a failing database test.
FAILS = """
def test_fails(db_session):
    assert db_session.connection().exec_driver_sql("SELECT 1").scalar() == 2
"""

#: a test using no database (it records whether testcontainers was imported), and one using
#: it: ``-k plain`` selects only the first.
PLAIN_AND_DB = """
import json
import sys
from pathlib import Path


def test_plain():
    out = Path(__file__).parent / "observed"
    out.mkdir(exist_ok=True)
    seen = {"testcontainers_imported": "testcontainers" in sys.modules}
    (out / "main.json").write_text(json.dumps(seen))


def test_uses_db(db_session):
    pass
"""

#: the marker table put into a template behind the plugin's back.
MARKER_SQL = (
    "CREATE TABLE ctxdb_marker (note VARCHAR(50))",
    "INSERT INTO ctxdb_marker (note) VALUES ('out of band')",
)
MARKER_ROWS = ["out of band"]

#: an Alembic project as ``alembic init`` makes it (sync env.py), minus logging.
ALEMBIC_INI = """
[alembic]
script_location = %(here)s/migrations
sqlalchemy.url = sqlite:///never-used.db
"""
ALEMBIC_ENV = """
from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config
target_metadata = None


def run_migrations_offline():
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    connectable = engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
"""
#: revision -> (down revision, table it creates).
REVISIONS = {"0001": (None, "widget"), "0002": ("0001", "gadget")}
REVISION = '''
"""create {table}"""
import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "{table}",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(50)),
    )


def downgrade():
    op.drop_table("{table}")
'''

#: the image ``--db-container`` runs in these tests (built locally, no registry needed:
#: ``../shared/tools/docker-postgres.sh`` and ``.ci/docker-mariadb.sh``), per kind.
IMAGE = "local/postgres:15"
IMAGES = {"postgresql": IMAGE, "mariadb": "local/mariadb:10.11"}
CONTAINER_ARGS = ("--db-container", "postgresql", "--db-container-image", IMAGE)
#: a Docker engine that is not there, and the reason a run gives without one.
NO_DOCKER = "unix:///nonexistent.sock"
NO_DOCKER_REASON = (
    f"--db-container postgresql: could not start '{IMAGE}': *Is a Docker engine reachable "
    "(DOCKER_HOST)*"
)
#: a URL no server answers on.
UNREACHABLE_URL = "postgresql+psycopg://postgres@127.0.0.1:1/test"
#: ``pytest.ExitCode.USAGE_ERROR``: the plugin stops a run it cannot provision with it.
USAGE_ERROR = 4
HEADER_URL = re.compile(r"^ctxdb: default: (?P<url>\S+) \(", re.MULTILINE)
TWO_DAYS = 2 * 24 * 3600


# -- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def template_dir(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Inner runs get a private TMPDIR (their templates, locks, container state); returns
    their ``<TMPDIR>/pytest-ctxdb``. No URL comes from this process's environment."""
    monkeypatch.delenv("PYTEST_CTXDB_URL", raising=False)
    # When this suite itself runs under xdist, its worker's variables must not leak in.
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
    tmp = tmp_path_factory.mktemp("inner-tmp")
    monkeypatch.setenv("TMPDIR", str(tmp))
    return tmp / "pytest-ctxdb"


@pytest.fixture(
    params=[name for name in SELECTED_BACKENDS if name in ("sqlite", "postgresql", "mariadb")]
)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Embedded SQLite, PostgreSQL and MariaDB: templates and clones exist on all three."""
    return make_backend(request.param)


@pytest.fixture
def base() -> Iterator[str]:
    """A unique ``test_ctxdb_*`` base name; every server database named after it (or after
    ``ctxdb_<same hex>``) is dropped afterwards."""
    unique = uuid.uuid4().hex[:10]
    yield f"test_ctxdb_{unique}"
    for server in ("postgresql", "mariadb"):
        if server_problem(server) is None:
            url = make_url(SERVER_URLS[server])
            prefixes = (f"test_ctxdb_{unique}", f"ctxdb_{unique}")
            drop_databases(url, [name for name in databases(url) if name.startswith(prefixes)])


def server_host(url: URL) -> str:
    """How errors name the server of ``url``: its host, or its socket folder (``?host=``)."""
    return url.host or str(url.query["host"])


def admin_engine(url: URL) -> Engine:
    return create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")


def databases(url: URL) -> dict[str, str | None]:
    """Every database on the server of ``url`` (PostgreSQL or MariaDB), with its comment."""
    if url.get_backend_name() == "postgresql":
        query = "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database"
    else:
        query = "SELECT SCHEMA_NAME, SCHEMA_COMMENT FROM information_schema.SCHEMATA"
    engine = admin_engine(url)
    try:
        with engine.connect() as conn:
            return {name: comment or None for name, comment in conn.execute(text(query))}
    finally:
        engine.dispose()


def create_database(url: URL, name: str, comment: str | None = None) -> None:
    """Create database ``name`` by hand (PostgreSQL or MariaDB), with ``comment`` if given."""
    engine = admin_engine(url)
    try:
        with engine.connect() as conn:
            if url.get_backend_name() != "postgresql":
                commented = f" COMMENT '{comment}'" if comment is not None else ""
                conn.exec_driver_sql(f"CREATE DATABASE `{name}`{commented}")
                return
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            if comment is not None:
                conn.exec_driver_sql(f"COMMENT ON DATABASE \"{name}\" IS '{comment}'")
    finally:
        engine.dispose()


def set_comment(url: URL, name: str, comment: str) -> None:
    """Replace the comment of database ``name`` (PostgreSQL or MariaDB)."""
    engine = admin_engine(url)
    try:
        with engine.connect() as conn:
            if url.get_backend_name() == "postgresql":
                conn.exec_driver_sql(f"COMMENT ON DATABASE \"{name}\" IS '{comment}'")
            else:
                conn.exec_driver_sql(f"ALTER DATABASE `{name}` COMMENT '{comment}'")
    finally:
        engine.dispose()


def drop_databases(url: URL, names: list[str]) -> None:
    postgresql = url.get_backend_name() == "postgresql"
    engine = admin_engine(url)
    try:
        with engine.connect() as conn:
            for name in names:
                if postgresql:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                else:
                    conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        engine.dispose()


def clone_mark(run: str, created: float) -> str:
    """The ownership comment the plugin gives a clone."""
    return f"created by pytest-ctxdb; kind=clone; run={run}; created={int(created)}"


def spare_mark(template: str, comment: str | None) -> str:
    """The ownership comment of a spare clone of ``template`` (its time taken from ``comment``)."""
    created = (comment or "").rpartition("created=")[2]
    return f"created by pytest-ctxdb; kind=spare; template={template}; created={created}"


def spares(url: URL, base: str) -> list[str]:
    """The spare clones of ``base`` on the server (names, sorted)."""
    return sorted(
        name
        for name, comment in databases(url).items()
        if name.startswith(f"{base}_sp_")
        and (comment or "").startswith("created by pytest-ctxdb; kind=spare;")
    )


def planted_spare_mark(url: URL, base: str) -> str:
    """Make an (empty) marked template ``<base>_tpl_0`` and return the mark of a spare clone
    of it: a spare whose template is gone is swept by any run on the server (this suite's
    other tests run in parallel)."""
    template = f"{base}_tpl_0"
    mark = "created by pytest-ctxdb; kind=template; fingerprint=0; ready=1; created="
    mark += str(int(time.time()))
    create_database(url, template, mark)
    return spare_mark(template, f"created={int(time.time())}")


def wait_unused(url: URL, name: str) -> None:
    """Wait (at most 10 s) until no session is connected to database ``name``: a closed
    PostgreSQL connection's server process ends a moment later, and a database someone is
    connected to cannot be renamed."""
    if url.get_backend_name() != "postgresql":
        return
    engine = admin_engine(url)
    try:
        with engine.connect() as conn:
            deadline = time.monotonic() + 10
            query = text("SELECT count(*) FROM pg_stat_activity WHERE datname = :name")
            while conn.execute(query, {"name": name}).scalar() and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        engine.dispose()


def template_files(template_dir: Path, pattern: str = "*.sqlite3") -> list[Path]:
    """The SQLite template files (or others matching ``pattern``) in the project folders of
    ``template_dir``."""
    return sorted(template_dir.glob(f"*/{pattern}"))


def template_names(backend: Backend, base: str, template_dir: Path) -> list[str]:
    """The template databases (server) or files (SQLite, any project's) of ``base``."""
    prefix = f"{base}_tpl_"
    if backend.url is None:
        return sorted(
            p.name[: -len(".sqlite3")] for p in template_files(template_dir, f"{prefix}*.sqlite3")
        )
    return sorted(name for name in databases(backend.url) if name.startswith(prefix))


def put_marker(backend: Backend, template: str, template_dir: Path) -> None:
    """Add the marker table and row to the template, behind the plugin's back."""
    if backend.url is None:
        [path] = template_files(template_dir, f"{template}.sqlite3")
        with sqlite3.connect(path) as conn:
            for sql in MARKER_SQL:
                conn.execute(sql)
        conn.close()
        return
    engine = create_engine(backend.url.set(database=template), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            for sql in MARKER_SQL:
                conn.exec_driver_sql(sql)
    finally:
        engine.dispose()


def ini_text(*lines: str, warnings_as_errors: bool = True) -> str:
    return "\n".join(
        [
            "[pytest]",
            "asyncio_mode = strict",
            "asyncio_default_fixture_loop_scope = function",
            *(["filterwarnings = error"] if warnings_as_errors else []),
            *lines,
            "",
        ]
    )


def write_suite(
    directory: Path,
    *ini_lines: str,
    models: str = MODELS,
    count: int = 1,
    warnings_as_errors: bool = True,
    **files: str,
) -> None:
    """Write ``pytest.ini`` (``db_metadata`` of the models unless ``ini_lines`` are given),
    the models, ``test_observe.py`` with ``count`` observing tests, and ``files``."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = ini_lines or ("db_metadata = models:Base.metadata",)
    ini = ini_text(*lines, warnings_as_errors=warnings_as_errors)
    (directory / "pytest.ini").write_text(ini)
    (directory / "models.py").write_text(models)
    if count:
        (directory / "test_observe.py").write_text(OBSERVE.replace("COUNT", str(count)))
    for name, body in files.items():
        (directory / f"{name}.py").write_text(body)


def observations(directory: Path) -> dict[str, dict[str, Any]]:
    """Worker (``main`` without xdist) -> what its tests recorded."""
    return {
        path.stem: json.loads(path.read_text())
        for path in sorted((directory / "observed").glob("*.json"))
    }


def run_inner(
    pytester: pytest.Pytester, *args: str
) -> tuple[pytest.RunResult, dict[str, dict[str, Any]]]:
    """Run the inner suite in a subprocess; return the result and the observations."""
    shutil.rmtree(pytester.path / "observed", ignore_errors=True)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs", *args, timeout=180)
    output = "\n".join(result.outlines + result.errlines)
    assert "INTERNALERROR" not in output, output
    return result, observations(pytester.path)


def header_url(result: pytest.RunResult) -> URL:
    """The default alias's test database URL, as the run's header names it."""
    match = HEADER_URL.search(result.stdout.str())
    assert match, result.stdout.str()
    return make_url(match["url"])


def write_alembic_project(directory: Path, *revisions: str) -> None:
    (directory / "alembic.ini").write_text(ALEMBIC_INI)
    versions = directory / "migrations" / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    (directory / "migrations" / "env.py").write_text(ALEMBIC_ENV)
    for revision in revisions:
        down, table = REVISIONS[revision]
        (versions / f"{revision}_{table}.py").write_text(
            REVISION.format(revision=revision, down=down, table=table)
        )


# -- Docker ----------------------------------------------------------------------------------------


@cache
def docker_problem(image: str) -> str | None:
    """Why no container of ``image`` can be started here, or ``None``."""
    for command in (["docker", "info"], ["docker", "image", "inspect", image]):
        try:
            subprocess.run(command, capture_output=True, check=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"{' '.join(command)} failed: {type(exc).__name__}"
    return None


@dataclass
class Docker:
    """The image's containers before the test, and the host ports the test's runs used."""

    kind: str
    image: str
    before: set[str]
    ports: set[int]


def require_image(kind: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The local image of ``kind``, with testcontainers set up for it (no Ryuk, the local
    engine). Skips (fails under CI=true) without Docker or the image."""
    image = IMAGES[kind]
    problem = docker_problem(image)
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {problem}")
        pytest.skip(problem)
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    return image


@pytest.fixture(params=list(IMAGES))
def docker(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Docker]:
    """One ``--db-container`` kind with its local image. Skip (fail under CI=true) without
    Docker and the image. Afterwards, containers of the image that appeared during the test
    and publish a port its runs recorded are removed."""
    kind: str = request.param
    image = require_image(kind, monkeypatch)
    state = Docker(kind, image, container_ids(image), set())
    yield state
    for container in container_ids(image) - state.before:
        if container_ports(container) & state.ports:
            subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)


def container_ports(container: str) -> set[int]:
    """The host ports ``container`` publishes."""
    inspected = subprocess.run(
        ["docker", "inspect", "--format", "{{json .NetworkSettings.Ports}}", container],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    try:
        published = json.loads(inspected.stdout or "null") or {}
    except ValueError:
        return set()
    return {int(b["HostPort"]) for bindings in published.values() for b in bindings or ()}


def container_ids(image: str) -> set[str]:
    """Ids of every container (running or not) of ``image``."""
    listed = subprocess.run(
        ["docker", "ps", "-a", "-q", "--no-trunc", "--filter", f"ancestor={image}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return set(listed.stdout.split())


# -- 1. the template is kept, rebuilt on --db-create and on a schema change ------------------------


def test_template_reused_then_rebuilt_by_db_create_and_by_a_model_change(
    backend: Backend, pytester: pytest.Pytester, base: str, template_dir: Path
) -> None:
    """Template kept (out-of-band marker cloned); --db-create / new column rebuild; old swept.

    Spare clones are off: a spare is a copy of the template made before the marker was put
    in (see test_spare_clone_* for them)."""
    write_suite(pytester.path)
    args = (*backend.args, "--db-test-name", base, "-o", "db_spare_clones=0")
    result, seen = run_inner(pytester, *args)
    result.assert_outcomes(passed=1)
    assert seen["main"]["marker"] is None
    [template] = template_names(backend, base, template_dir)

    put_marker(backend, template, template_dir)
    result, seen = run_inner(pytester, *args)
    result.assert_outcomes(passed=1)
    assert seen["main"]["marker"] == MARKER_ROWS, "the template was rebuilt, not cloned"
    assert template_names(backend, base, template_dir) == [template]

    result, seen = run_inner(pytester, *args, "--db-create")
    result.assert_outcomes(passed=1)
    assert seen["main"]["marker"] is None, "--db-create cloned the old template"
    assert template_names(backend, base, template_dir) == [template]

    put_marker(backend, template, template_dir)
    (pytester.path / "models.py").write_text(MODELS.replace("# EXTRA COLUMN", EXTRA_COLUMN))
    result, seen = run_inner(pytester, *args)
    result.assert_outcomes(passed=1)
    assert seen["main"]["marker"] is None, "a changed model cloned the old template"
    assert seen["main"]["item_columns"] == ["id", "name", "note"]
    [new_template] = [
        name for name in template_names(backend, base, template_dir) if name != template
    ]
    assert template_names(backend, base, template_dir) == [new_template], "old template kept"


# -- 1b. spare clones (PostgreSQL, MariaDB) ------------------------------------------------------


@pytest.fixture(params=["postgresql", "mariadb"])
def server(request: pytest.FixtureRequest) -> Backend:
    """The servers where runs keep spare clones."""
    return make_backend(request.param)


TWO_ALIASES = """
import pytest


@pytest.mark.db(using=["default", "other"])
def test_both(db_sessions):
    names = {a: s.connection().engine.url.database for a, s in db_sessions.items()}
    assert names["default"] != names["other"], names
"""


#: four tests on the aliases default and other, recording their test databases' names.
TWO_ALIASES_RECORDED = """
import json
import os
from pathlib import Path

import pytest


@pytest.mark.db(using=["default", "other"])
@pytest.mark.parametrize("n", range(4))
def test_both(db_sessions, n):
    names = sorted(s.connection().engine.url.database for s in db_sessions.values())
    out = Path(__file__).parent / "observed"
    out.mkdir(exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    (out / f"{worker}.json").write_text(json.dumps({"databases": names}))
"""


def test_two_aliases_on_one_database_each_keep_a_template(
    server: Backend, pytester: pytest.Pytester, base: str
) -> None:
    """Two aliases whose URLs name one database (no --db-test-name) are kept apart as
    test_<db> and test_<db>_other: each keeps its template, so the second run builds none."""
    assert server.url is not None
    own = base.removeprefix("test_")
    create_database(server.url, own)
    url = server.url.set(database=own).render_as_string(hide_password=False)
    lines = ("db_metadata =", "    default=models:Base.metadata", "    other=models:Base.metadata")
    write_suite(pytester.path, *lines, count=0, test_two=TWO_ALIASES)
    args = ("--db-url", url, "--db-url", f"other={url}", "-o", "db_spare_clones=0")
    run_inner(pytester, *args)[0].assert_outcomes(passed=1)
    first = sorted(name for name in databases(server.url) if name.startswith(base))
    assert {name.rpartition("_tpl_")[0] for name in first} == {base, f"{base}_other"}, first
    run_inner(pytester, *args)[0].assert_outcomes(passed=1)
    second = sorted(name for name in databases(server.url) if name.startswith(base))
    assert second == first, "the second run built a template again"


def test_long_names_stay_distinct_per_worker_and_alias(
    server: Backend, pytester: pytest.Pytester, base: str
) -> None:
    """A URL database name so long that test_<name>_<run id>_gw0 passes the server's limit
    (PostgreSQL cuts names to 63 bytes without an error): each worker and each of two aliases
    on that URL still get a database and a template of their own, all dropped after; a chosen
    name that is too long is refused by name."""
    assert server.url is not None
    own = f"{base.removeprefix('test_')}_{'x' * 40}"  # 61 characters
    create_database(server.url, own)
    url = server.url.set(database=own).render_as_string(hide_password=False)
    lines = ("db_metadata =", "    default=models:Base.metadata", "    other=models:Base.metadata")
    write_suite(pytester.path, *lines, count=0, test_two=TWO_ALIASES_RECORDED)
    args = ("--db-url", url, "--db-url", f"other={url}", "-o", "db_spare_clones=0")
    result, seen = run_inner(pytester, *args, "-p", "xdist", "-n", "2")
    result.assert_outcomes(passed=4)
    names = [name for record in seen.values() for name in record["databases"]]
    assert sorted(seen) == ["gw0", "gw1"] and len(set(names)) == 4, seen
    limit = 63 if server.name == "postgresql" else 64
    assert all(len(name) <= limit for name in names), names
    left = [name for name in databases(server.url) if name.startswith(base)]
    assert len([name for name in left if "_tpl_" in name]) == 2 and len(left) == 2, left

    result, _ = run_inner(pytester, *args, "--db-test-name", f"{own}_{'y' * 10}")
    assert result.ret == USAGE_ERROR
    result.stderr.fnmatch_lines(["*--db-test-name / db_test_name: the test database name*longer*"])


def test_a_template_being_built_elsewhere_is_waited_for(
    server: Backend, pytester: pytest.Pytester, base: str, template_dir: Path
) -> None:
    """Runs on other machines share no file lock: a half-built template that someone is
    connected to (its builder) is waited for, not dropped under it; once marked ready, it
    is cloned (a marker put into it shows up) rather than built again."""
    assert server.url is not None
    write_suite(pytester.path)
    args = (*server.args, "--db-test-name", base, "-o", "db_spare_clones=0")
    run_inner(pytester, *args)[0].assert_outcomes(passed=1)
    [template] = template_names(server, base, template_dir)
    ready = databases(server.url)[template]
    assert ready is not None and "ready=1" in ready
    put_marker(server, template, template_dir)
    set_comment(server.url, template, ready.replace("ready=1", "ready=0"))
    builder = create_engine(server.url.set(database=template), poolclass=NullPool)
    connection = builder.connect()
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
    shutil.rmtree(pytester.path / "observed", ignore_errors=True)
    run = subprocess.Popen(
        command, cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        time.sleep(2)  # the run meets the half-built template and waits
        assert run.poll() is None, run.communicate()[0]
        set_comment(server.url, template, ready)
    finally:
        connection.close()
        builder.dispose()
    output = run.communicate(timeout=120)[0]
    assert run.returncode == 0, output
    assert observations(pytester.path)["main"]["marker"] == MARKER_ROWS, "built again"


def test_spare_clone_is_renamed_for_the_next_run_and_replaced(
    server: Backend, pytester: pytest.Pytester, base: str, template_dir: Path
) -> None:
    """A run leaves one spare clone; the next run's database IS that spare (a marker put into
    it shows up), and a new spare replaces it; db_spare_clones=0 uses a spare but makes none;
    --db-create drops the spares of the old template."""
    assert server.url is not None
    url = server.url
    write_suite(pytester.path, count=2, test_commit=COMMIT_PAIR)
    args = (*server.args, "--db-test-name", base)
    result, seen = run_inner(pytester, *args)
    result.assert_outcomes(passed=4)
    assert seen["main"]["marker"] is None
    [template] = [name for name in databases(url) if name.startswith(f"{base}_tpl_")]
    [spare] = spares(url, base)
    comment = databases(url)[spare]
    assert comment == spare_mark(template, comment)

    put_marker(server, spare, template_dir)
    wait_unused(url, spare)
    result, seen = run_inner(pytester, *args)
    result.assert_outcomes(passed=4)
    assert seen["main"]["database"] == base
    assert seen["main"]["marker"] == MARKER_ROWS, "the run did not take the spare clone"
    [second] = spares(url, base)
    assert second != spare and spare not in databases(url)
    assert base not in databases(url), "the run's database was left behind"

    put_marker(server, second, template_dir)
    wait_unused(url, second)
    result, seen = run_inner(pytester, *args, "-o", "db_spare_clones=0")
    result.assert_outcomes(passed=4)
    assert seen["main"]["marker"] == MARKER_ROWS, "the run did not take the spare clone"
    assert spares(url, base) == [], "db_spare_clones=0 made a spare"

    run_inner(pytester, *args)[0].assert_outcomes(passed=4)  # leaves a spare again
    [before] = spares(url, base)
    put_marker(server, before, template_dir)
    wait_unused(url, before)
    result, seen = run_inner(pytester, *args, "--db-create")
    result.assert_outcomes(passed=4)
    assert seen["main"]["marker"] is None, "--db-create used an old spare"
    [after] = spares(url, base)
    assert after != before
    left = sorted(name for name in databases(url) if name.startswith(base))
    assert left == sorted([template, after]), left


def test_spare_clones_of_an_old_schema_are_swept(
    server: Backend, pytester: pytest.Pytester, base: str
) -> None:
    """A changed model: the old template and its spare clones are dropped, the new template
    gets its own spare."""
    assert server.url is not None
    url = server.url
    write_suite(pytester.path)
    args = (*server.args, "--db-test-name", base, "-p", "xdist", "-n", "2")
    run_inner(pytester, *args)[0].assert_outcomes(passed=1)
    old = spares(url, base)
    assert 1 <= len(old) <= 2, old
    (pytester.path / "models.py").write_text(MODELS.replace("# EXTRA COLUMN", EXTRA_COLUMN))
    result, seen = run_inner(pytester, *server.args, "--db-test-name", base)
    result.assert_outcomes(passed=1)
    assert seen["main"]["item_columns"] == ["id", "name", "note"]
    [template] = [name for name in databases(url) if name.startswith(f"{base}_tpl_")]
    new = spares(url, base)
    assert len(new) == 1 and not set(new) & set(old), (old, new)
    comments = databases(url)
    assert [spare_mark(template, comments[name]) for name in new] == [comments[n] for n in new]


def test_xdist_workers_get_distinct_clones_all_dropped(
    backend: Backend, pytester: pytest.Pytester, base: str
) -> None:
    """-n 3: each worker runs on a clone of its own; no clone is left after the run, which
    fails (a failed run drops its clones too)."""
    write_suite(pytester.path, count=12, test_fails=FAILS)
    result, seen = run_inner(
        pytester, *backend.args, "--db-test-name", base, "-p", "xdist", "-n", "3"
    )
    result.assert_outcomes(passed=12, failed=1)
    assert sorted(seen) == ["gw0", "gw1", "gw2"]
    names = {worker: record["database"] for worker, record in seen.items()}
    assert len(set(names.values())) == 3, names
    if backend.url is None:
        assert len({Path(name).parent for name in names.values()}) == 3, names
        assert [name for name in names.values() if Path(name).exists()] == []
    else:
        assert names == {f"gw{i}": f"{base}_gw{i}" for i in range(3)}
        assert set(names.values()) & set(databases(backend.url)) == set()


# -- 3. two concurrent xdist runs on one server --------------------------------------------------


def test_two_concurrent_xdist_runs_on_one_server(
    server: Backend, pytester: pytest.Pytester, base: str
) -> None:
    """Two -n 2 runs at once, twice: four clones marked with two run ids each time, one
    template, no clone left; the second time the four workers take the spares the first pair
    left (PostgreSQL renames them to the run's names, MariaDB uses them under their own), and
    the spares left at the end are complete and marked."""
    assert server.url is not None
    # The URL's database ctxdb_<hex> makes the default base test_ctxdb_<hex>: no --db-test-name,
    # so each run's clones carry its run id.
    own = base.removeprefix("test_")
    create_database(server.url, own)
    url = server.url.set(database=own).render_as_string(hide_password=False)
    for label in ("a", "b"):
        write_suite(pytester.path / label, count=6)
    left = check_two_concurrent_runs(server, pytester.path, url, base, spares=set())
    check_two_concurrent_runs(server, pytester.path, url, base, spares=left)


def check_two_concurrent_runs(
    server: Backend, path: Path, url: str, base: str, spares: set[str]
) -> set[str]:
    """Run the two runs; on MariaDB some worker takes one of ``spares`` (the spares an
    earlier pair left) if there are any. Returns the spares they leave."""
    assert server.url is not None
    runs = {}
    for label in ("a", "b"):
        shutil.rmtree(path / label / "observed", ignore_errors=True)
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "xdist"]
        runs[label] = subprocess.Popen(
            [*command, "-n", "2", "--db-url", url],
            cwd=path / label,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    outputs = {}
    for label, process in runs.items():
        try:
            outputs[label] = process.communicate(timeout=180)[0]
        except subprocess.TimeoutExpired:
            process.kill()
            outputs[label] = process.communicate()[0]
            pytest.fail(f"run {label} timed out:\n{outputs[label]}")
    for label, process in runs.items():
        assert process.returncode == 0, outputs[label]
        assert "6 passed" in outputs[label], outputs[label]
    seen = {
        (label, worker): record
        for label in runs
        for worker, record in observations(path / label).items()
    }
    names = {key: record["database"] for key, record in seen.items()}
    assert sorted(names) == [(label, f"gw{i}") for label in "ab" for i in range(2)]
    assert len(set(names.values())) == 4, names
    own_names = re.compile(rf"{base}_(?P<run>[0-9a-f]{{8}})_gw[01]")
    marks = re.compile(r"created by pytest-ctxdb; kind=clone; run=(?P<run>[0-9a-f]{8}); .*")
    run_ids: dict[str, set[str]] = {label: set() for label in runs}
    for (label, worker), record in seen.items():
        mark = marks.fullmatch(record["comment"] or "")
        assert mark, seen
        run_ids[label].add(mark["run"])
        name = own_names.fullmatch(record["database"])
        if server.name == "mariadb" and name is None:  # a spare (maybe the other run's)
            assert re.fullmatch(rf"{base}_sp_[0-9a-f]{{12}}", record["database"]), seen
        else:
            assert name and name["run"] == mark["run"], seen
    assert len(run_ids["a"]) == len(run_ids["b"]) == 1 and run_ids["a"] != run_ids["b"], seen
    if server.name == "mariadb" and spares:
        assert set(names.values()) & spares, "no worker took a spare"
    left = {name: c for name, c in databases(server.url).items() if name.startswith(base)}
    [template] = [name for name in left if name.startswith(f"{base}_tpl_")]
    others = {name: c for name, c in left.items() if name != template}
    assert 1 <= len(others) <= 4, left  # each worker replaces at most what it found missing
    for comment in others.values():
        assert comment == spare_mark(template, comment), left
    return set(others)


@pytest.mark.parametrize("keep_name", [False, True], ids=["renamed", "name-kept"])
def test_a_spare_is_taken_once(server: Backend, base: str, keep_name: bool) -> None:
    """Runs on other machines share no file lock: when two reach for one spare, the second
    claim fails or declines, leaving nothing behind, and the first has every table. MariaDB
    claims a spare in place when the run may keep its name; PostgreSQL always renames."""
    from pytest_ctxdb.backends import MySQLBackend, PostgreSQLBackend

    assert server.url is not None
    mysql = server.url.get_backend_name() != "postgresql"
    backend = MySQLBackend() if mysql else PostgreSQLBackend()
    spare, first, second = f"{base}_sp_0123456789ab", f"{base}_one", f"{base}_two"
    create_database(server.url, spare, planted_spare_mark(server.url, base))
    table = create_engine(server.url.set(database=spare), poolclass=NullPool)
    try:
        with table.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE item (id INTEGER PRIMARY KEY)")
    finally:
        table.dispose()
    wait_unused(server.url, spare)
    mark = clone_mark("0123abcd", time.time())
    engine = admin_engine(server.url)
    try:
        with engine.connect() as admin:
            taken = backend.take_spare(admin, spare, first, mark, keep_name=keep_name)
            try:
                again = backend.take_spare(admin, spare, second, mark, keep_name=keep_name)
            except DBAPIError:
                again = None
    finally:
        engine.dispose()
    assert taken == (spare if mysql and keep_name else first)
    assert again is None
    left = databases(server.url)
    assert second not in left, sorted(n for n in left if base in n)
    assert (spare in left) == (taken == spare), sorted(n for n in left if base in n)
    assert left[taken] == mark
    moved = create_engine(server.url.set(database=taken), poolclass=NullPool)
    try:
        with moved.connect() as conn:
            assert inspect(conn).get_table_names() == ["item"]
    finally:
        moved.dispose()


VIEW_AND_TRIGGER = """
def pytest_ctxdb_setup_schema(connection, alias):
    connection.exec_driver_sql("CREATE VIEW item_names AS SELECT name FROM item")
    connection.exec_driver_sql(
        "CREATE TRIGGER shout BEFORE INSERT ON item FOR EACH ROW SET NEW.name = UPPER(NEW.name)"
    )
"""
USES_VIEW_AND_TRIGGER = """
from sqlalchemy import text
from models import Item


def test_view_and_trigger(db_session):
    db_session.add(Item(name="quiet"))
    db_session.commit()
    assert db_session.execute(text("SELECT name FROM item_names")).scalars().all() == ["QUIET"]
"""


def test_mariadb_spare_is_used_in_place_views_and_triggers_included(
    pytester: pytest.Pytester, base: str, template_dir: Path
) -> None:
    """MariaDB cannot rename a database, and RENAME TABLE cannot move views and triggers; a
    run that did not choose its database's name takes the spare clone in place: the next
    run's database IS the spare (a marker put into it shows up), view and trigger included.
    With --db-test-name (the tables would have to move) no spare of such a template is made."""
    server = make_backend("mariadb")
    assert server.url is not None
    own = base.removeprefix("test_")
    create_database(server.url, own)
    url = server.url.set(database=own).render_as_string(hide_password=False)
    write_suite(pytester.path, conftest=VIEW_AND_TRIGGER, test_objects=USES_VIEW_AND_TRIGGER)
    run_inner(pytester, "--db-url", url)[0].assert_outcomes(passed=2)
    [spare] = spares(server.url, base)
    put_marker(server, spare, template_dir)

    result, seen = run_inner(pytester, "--db-url", url)
    result.assert_outcomes(passed=2)
    assert seen["main"]["database"] == spare
    assert seen["main"]["marker"] == MARKER_ROWS, "the run did not take the spare clone"
    [second] = spares(server.url, base)
    assert second != spare and spare not in databases(server.url)

    exact = f"{base}_exact"
    args = ("--db-url", url, "--db-test-name", exact)
    run_inner(pytester, *args)[0].assert_outcomes(passed=2)
    assert spares(server.url, exact) == []
    assert [name for name in databases(server.url) if name.startswith(exact)] != []  # template


def test_mariadb_spare_with_a_view_is_not_moved(base: str) -> None:
    """A MariaDB spare with a view (made for runs that keep its name) is declined by a run
    that must move its tables (RENAME TABLE would leave the view behind); it stays a spare."""
    from pytest_ctxdb.backends import MySQLBackend

    server = make_backend("mariadb")
    assert server.url is not None
    spare, name = f"{base}_sp_0123456789ab", f"{base}_one"
    comment = planted_spare_mark(server.url, base)
    create_database(server.url, spare, comment)
    engine = create_engine(server.url.set(database=spare), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE item (id INTEGER PRIMARY KEY)")
            conn.exec_driver_sql("CREATE VIEW item_ids AS SELECT id FROM item")
    finally:
        engine.dispose()
    admin = admin_engine(server.url)
    try:
        with admin.connect() as conn:
            mark = clone_mark("0123abcd", time.time())
            assert MySQLBackend().take_spare(conn, spare, name, mark, keep_name=False) is None
    finally:
        admin.dispose()
    left = databases(server.url)
    assert name not in left and left[spare] == comment


def worker_databases(
    server: Backend, own: str, run_id: str, template_dir: Path, workers: int = 2
) -> list[Any]:
    """One ``TestDatabase`` per xdist worker of one run, on the URL database ``own``."""
    from pytest_ctxdb import DatabaseSettings
    from pytest_ctxdb._settings import Source
    from pytest_ctxdb.provision import TestDatabase

    assert server.url is not None
    settings = DatabaseSettings("default", server.url.set(database=own), Source("test", "test"))
    return [
        TestDatabase(
            settings,
            template_dir / "sqlite",
            f"_gw{i}",
            run_id=run_id,
            template_directory=template_dir,
        )
        for i in range(workers)
    ]


def test_a_run_keeps_its_other_workers_databases_and_build(
    server: Backend, base: str, template_dir: Path
) -> None:
    """Two xdist workers of one run: the second does not sweep the first one's database,
    however old it looks (a long run, or a tiny db_sweep_age), and with --db-create it takes
    the first one's rebuild instead of building the template again."""
    from pytest_ctxdb.provision import SchemaBuilder

    assert server.url is not None
    own = base.removeprefix("test_")
    create_database(server.url, own)
    run = "0a1b2c3d"
    first, second = worker_databases(server, own, run, template_dir)
    try:
        first.create(SchemaBuilder("default"), rebuild=True, spares=0)
        # Two days old: stale to any sweep (a sweep age of 0 here would also sweep the
        # clones of the other tests' runs on this server).
        set_comment(server.url, first.name, clone_mark(run, time.time() - TWO_DAYS))
        second.create(SchemaBuilder("default"), rebuild=True, sweep_age=60, spares=0)
        assert (first.template_built, second.template_built) == (True, False)
        assert {first.name, second.name} <= set(databases(server.url))
    finally:
        for database in (first, second):
            database.drop()


FUNCTION_VIEW = """
def pytest_ctxdb_setup_schema(connection, alias):
    connection.exec_driver_sql("CREATE FUNCTION seven() RETURNS INTEGER RETURN 7")
    connection.exec_driver_sql("CREATE VIEW sevens AS SELECT seven() AS n")
"""


def test_mariadb_clone_failing_halfway_leaves_nothing(
    pytester: pytest.Pytester, base: str
) -> None:
    """Stored functions are not copied, so a view using one cannot be replayed into a clone:
    the run stops with the error, and the half-made clone is dropped."""
    server = make_backend("mariadb")
    assert server.url is not None
    write_suite(pytester.path, conftest=FUNCTION_VIEW)
    result, _ = run_inner(pytester, *server.args, "--db-test-name", base)
    assert result.ret == USAGE_ERROR
    result.stderr.fnmatch_lines(["*seven*does not exist*"])
    left = [name for name in databases(server.url) if name.startswith(base)]
    assert len(left) == 1 and "_tpl_" in left[0], left


def test_mariadb_forced_drop_ends_sessions_left_open(base: str) -> None:
    """A connection a test left open in a transaction on its database holds a metadata
    lock: the run's forced drop ends it instead of waiting (up to lock_wait_timeout, a day)."""
    from pytest_ctxdb.backends import MySQLBackend

    server = make_backend("mariadb")
    assert server.url is not None
    create_database(server.url, base)
    leaked = create_engine(server.url.set(database=base), poolclass=NullPool)
    holder = leaked.connect()
    holder.exec_driver_sql("CREATE TABLE item (id INTEGER PRIMARY KEY)")
    holder.commit()
    holder.exec_driver_sql("SELECT * FROM item").all()  # autobegun: a metadata lock on item
    admin = admin_engine(server.url)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql("SET SESSION lock_wait_timeout = 10")
            started = time.monotonic()
            MySQLBackend().drop_database(conn, base, force=True)
            assert time.monotonic() - started < 5
        assert base not in databases(server.url)
    finally:
        with contextlib.suppress(Exception):
            holder.close()
        leaked.dispose()
        admin.dispose()


@pytest.mark.parametrize("workers", [0, 2], ids=["one-process", "xdist-2"])
def test_schema_hook_raising_is_one_error_naming_it(
    backend: Backend, pytester: pytest.Pytester, base: str, workers: int
) -> None:
    """A schema hook that raises (not a database error): one error naming the hook, the
    exception and its line, no INTERNALERROR (or crashed xdist worker); nothing is left, not
    even the half-built template."""
    hook = "def pytest_ctxdb_setup_schema(connection, alias):\n    raise RuntimeError('boom')\n"
    write_suite(pytester.path, conftest=hook)
    xdist = ("-p", "xdist", "-n", str(workers)) if workers else ()
    result, _ = run_inner(pytester, *backend.args, "--db-test-name", base, *xdist)
    output = "\n".join(result.outlines + result.errlines)
    assert "Traceback" not in output, output
    message = (
        "*pytest-ctxdb: alias 'default': building the template's schema failed in "
        "pytest_ctxdb_setup_schema: RuntimeError: boom (*conftest.py:2 in *)*"
    )
    assert result.ret != 0
    (result.stdout if workers else result.stderr).fnmatch_lines([message])
    if backend.url is not None:
        assert [name for name in databases(backend.url) if name.startswith(base)] == []


def test_sqlite_failed_template_build_leaves_no_file(
    pytester: pytest.Pytester, template_dir: Path
) -> None:
    """A schema hook whose statement fails: the run stops with the error naming the hook, and
    the half-built template file is removed (the sweep does not look for it)."""
    write_suite(
        pytester.path,
        conftest=(
            "def pytest_ctxdb_setup_schema(connection, alias):\n"
            "    connection.exec_driver_sql('CREATE TABLE broken (')\n"
        ),
    )
    result, _ = run_inner(pytester)
    assert result.ret == USAGE_ERROR
    result.stderr.fnmatch_lines(  # the stage that ran the statement is named
        ["ERROR: pytest-ctxdb: alias 'default': a statement of pytest_ctxdb_setup_schema failed "
         "(template of test database *): *"]
    )
    assert template_files(template_dir) == []  # never built
    assert list(template_dir.rglob("*.building")) == [], list(template_dir.rglob("*"))


# -- 4. sweeping what killed runs left -------------------------------------------------------------


def test_sweep_drops_only_stale_unused_marked_clones(
    server: Backend, pytester: pytest.Pytester, base: str
) -> None:
    """db_sweep_age=60 drops old idle marked clones; fresh, unmarked and in-use ones stay."""
    assert server.url is not None
    now = time.time()
    stale = {f"{base}_deadbeef": now - TWO_DAYS, f"{base}_0000beef": now - 600}
    kept = {
        f"{base}_f00dcafe": clone_mark("f00dcafe", now),
        f"{base}_badc0ffe": None,
        f"{base}_1234abcd": clone_mark("1234abcd", now - TWO_DAYS),
    }
    for name, created in stale.items():
        create_database(server.url, name, clone_mark(name[-8:], created))
    held = f"{base}_1234abcd"
    for name, comment in kept.items():
        # The held clone is made fresh and marked stale only once held: other runs on this
        # server (this suite runs in parallel) sweep stale clones nobody is connected to.
        create_database(server.url, name, clone_mark("1234abcd", now) if name == held else comment)
    holder = create_engine(server.url.set(database=held), poolclass=NullPool)
    try:
        with holder.connect():
            set_comment(server.url, held, str(kept[held]))
            write_suite(pytester.path)
            result, _ = run_inner(
                pytester, *server.args, "--db-test-name", base, "-o", "db_sweep_age=60"
            )
    finally:
        holder.dispose()
    result.assert_outcomes(passed=1)
    left = databases(server.url)
    assert sorted(set(stale) & set(left)) == [], "stale clones not swept"
    assert {name: left.get(name, "DROPPED") for name in kept} == kept


def test_unmarked_database_named_like_the_template_is_refused_and_kept(
    server: Backend, pytester: pytest.Pytester, base: str
) -> None:
    """An unmarked database named like the template: one clear error (even --db-create), kept."""
    assert server.url is not None
    write_suite(pytester.path)
    args = (*server.args, "--db-test-name", base)
    result, _ = run_inner(pytester, *args)
    result.assert_outcomes(passed=1)
    [template] = [name for name in databases(server.url) if name.startswith(f"{base}_tpl_")]
    drop_databases(server.url, [template])
    create_database(server.url, template)
    for extra in ((), ("--db-create",)):
        result, seen = run_inner(pytester, *args, *extra)
        assert result.ret == USAGE_ERROR, result.stdout.str()
        assert seen == {}
        result.stderr.fnmatch_lines(
            [
                (
                    f"ERROR: pytest-ctxdb: alias 'default': database '{template}' exists on "
                    f"{server_host(server.url)} and was not created by pytest-ctxdb; it is never "
                    "dropped or reused. Drop it yourself or choose another base name with "
                    "--db-test-name default=NAME."
                )
            ]
        )
        assert "Traceback" not in "\n".join(result.outlines + result.errlines)
        assert databases(server.url).get(template, "DROPPED") is None


def template_mark(fingerprint: str, created: float) -> str:
    """The ownership comment of a complete template."""
    return (
        f"created by pytest-ctxdb; kind=template; fingerprint={fingerprint}; ready=1; "
        f"created={int(created)}"
    )


def test_sweep_keeps_other_base_names_and_db_sweep_false_keeps_everything(
    server: Backend, pytester: pytest.Pytester, base: str
) -> None:
    """A shared server: a run sweeps only what is named after its own base (its stale clones,
    its template of an old schema), never another base's stale clones, templates or spares,
    even of a base that starts with this one's (an alias's ``<base>_other``, ``<base>_tpl_x``).
    ``db_sweep = false`` sweeps nothing, its own stale databases included.

    (Another base's week-old template or orphan spare is not planted: runs of earlier versions
    on this shared server would sweep them.)"""
    assert server.url is not None
    # Stale to this test's db_sweep_age=1, not yet to other runs on this server (60 s and more).
    stale = int(time.time()) - 5
    other = f"{base}_other"  # another project's (or alias's) base, sharing this one's start
    own = {
        f"{base}_deadbeef": clone_mark("deadbeef", stale),
        f"{base}_0badc0de_gw1": clone_mark("0badc0de", stale),
        f"{base}_tpl_0123456789ab": template_mark("0123456789ab", stale),
    }
    foreign = {
        f"{other}_deadbeef": clone_mark("deadbeef", stale),
        f"{other}_gw0": clone_mark("-", stale),
        # the template of base <base>_tpl_x starts like this base's templates
        f"{base}_tpl_x_tpl_0123456789ab": template_mark("0123456789ab", stale),
        f"{other}_tpl_0123456789ab": template_mark("0123456789ab", stale),
        f"{other}_sp_0123456789ab": spare_mark(f"{other}_tpl_0123456789ab", f"created={stale}"),
    }
    for name, comment in {**own, **foreign}.items():
        create_database(server.url, name, comment)
    write_suite(pytester.path)
    args = (*server.args, "--db-test-name", base, "-o", "db_sweep_age=1")

    run_inner(pytester, *args, "-o", "db_sweep=false")[0].assert_outcomes(passed=1)
    left = databases(server.url)
    assert {name: left.get(name, "DROPPED") for name in own} == own, "db_sweep=false swept"

    run_inner(pytester, *args)[0].assert_outcomes(passed=1)
    left = databases(server.url)
    assert sorted(set(own) & set(left)) == [], "own stale databases not swept"
    assert {name: left.get(name, "DROPPED") for name in foreign} == foreign


def test_two_sqlite_projects_keep_both_templates(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, template_dir: Path
) -> None:
    """Two projects on one machine, both with the default base test_ctxdb and different
    models: each keeps its template (in a folder of its own), so neither rebuilds it after the
    other ran; a run sweeps its own project's killed-run folders, not another project's."""
    from pytest_ctxdb.provision import project_key

    projects = {label: pytester.path / label for label in ("a", "b")}
    write_suite(projects["a"])
    write_suite(projects["b"], models=MODELS.replace("# EXTRA COLUMN", EXTRA_COLUMN))

    def run(label: str) -> dict[str, Any]:
        monkeypatch.chdir(projects[label])
        shutil.rmtree(projects[label] / "observed", ignore_errors=True)
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=180)
        result.assert_outcomes(passed=1)
        return observations(projects[label])["main"]

    run("a")
    run("b")
    files = template_files(template_dir, "test_ctxdb_tpl_*.sqlite3")
    assert len(files) == 2 and len({path.parent for path in files}) == 2, files
    [a_template] = [path for path in files if path.parent.name == project_key(projects["a"])]
    put_marker(Backend("sqlite", None), a_template.stem, template_dir)

    dead_pid = 2**22 + 12345  # above Linux's default pid_max: no such process
    old = time.time() - TWO_DAYS
    killed = {
        label: template_dir.parent / f"pytest-ctxdb-{project_key(path)}-{dead_pid}-0badc0de"
        for label, path in projects.items()
    }
    for folder in killed.values():
        folder.mkdir()
        os.utime(folder, (old, old))
    seen = run("a")
    assert seen["marker"] == MARKER_ROWS, "project a's template was rebuilt"
    assert template_files(template_dir, "test_ctxdb_tpl_*.sqlite3") == files
    assert not killed["a"].exists(), "project a's killed-run folder was not swept"
    assert killed["b"].exists(), "project a swept project b's folder"


# -- 5. --db-reuse ---------------------------------------------------------------------------------


def test_db_reuse_keeps_the_clone_and_says_so(
    backend: Backend, pytester: pytest.Pytester, base: str
) -> None:
    """--db-reuse: the run says it kept its test database, and the database is still there."""
    write_suite(pytester.path)
    result, seen = run_inner(pytester, *backend.args, "--db-test-name", base, "--db-reuse")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [f"pytest-ctxdb: --db-reuse: kept 'default' test database '{base}'"]
    )
    database = header_url(result).database
    assert database == seen["main"]["database"]
    if backend.url is None:
        assert database and Path(database).is_file(), f"{database} was deleted"
    else:
        comment = databases(backend.url).get(base)
        assert comment and comment.startswith("created by pytest-ctxdb; kind=clone;"), comment


# -- 6. Alembic ------------------------------------------------------------------------------------


def test_alembic_migration_raising_is_one_error_naming_it(
    pytester: pytest.Pytester, base: str
) -> None:
    """A migration that raises: one error naming `alembic upgrade head`, the exception and
    the migration's line (no INTERNALERROR)."""
    write_suite(pytester.path, "db_alembic_ini = alembic.ini")
    write_alembic_project(pytester.path, "0001")
    [revision] = (pytester.path / "migrations" / "versions").glob("0001_*.py")
    source = revision.read_text().replace(
        "def upgrade():\n", "def upgrade():\n    raise ValueError('bad migration')\n"
    )
    revision.write_text(source)
    result, _ = run_inner(pytester, "--db-test-name", base)
    assert result.ret == USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*building the template's schema failed in alembic upgrade head: ValueError: "
            "bad migration (*0001_widget.py:* in upgrade)*"
        ]
    )


def test_alembic_builds_the_template_and_a_new_revision_rebuilds_it(
    backend: Backend, pytester: pytest.Pytester, base: str, template_dir: Path
) -> None:
    """db_alembic_ini builds the template by migrating; a warm run does not even import
    Alembic (the scripts are hashed as files); a new revision makes a new template."""
    write_suite(pytester.path, "db_alembic_ini = alembic.ini")
    write_alembic_project(pytester.path, "0001")
    args = (*backend.args, "--db-test-name", base)
    result, seen = run_inner(pytester, *args)
    result.assert_outcomes(passed=1)
    assert seen["main"]["tables"] == ["alembic_version", "widget"]
    assert seen["main"]["alembic_version"] == ["0001"]
    assert seen["main"]["alembic_imported"], "the template was not built with Alembic"
    before = set(template_names(backend, base, template_dir))
    assert len(before) == 1

    result, seen = run_inner(pytester, *args)
    result.assert_outcomes(passed=1)
    assert seen["main"]["alembic_version"] == ["0001"]
    assert not seen["main"]["alembic_imported"], "a warm run imported Alembic"
    assert set(template_names(backend, base, template_dir)) == before

    write_alembic_project(pytester.path, "0002")
    result, seen = run_inner(pytester, *args)
    result.assert_outcomes(passed=1)
    assert seen["main"]["tables"] == ["alembic_version", "gadget", "widget"]
    assert seen["main"]["alembic_version"] == ["0002"]
    assert len(set(template_names(backend, base, template_dir)) - before) == 1


#: aliases without a URL: ``replica`` (named by the marker) is migrated by the db_alembic_ini
#: line without ALIAS=; ``other`` has a db_metadata line of its own, so create_all builds it.
ALIASES_AND_ALEMBIC = """
import pytest
from sqlalchemy import inspect


def tables(session):
    names = inspect(session.connection()).get_table_names()
    return sorted(name for name in names if not name.startswith("sqlite_"))


@pytest.mark.db(using=["default", "replica", "other"])
def test_schemas(db_sessions):
    assert tables(db_sessions["default"]) == ["alembic_version", "widget"]
    assert tables(db_sessions["replica"]) == ["alembic_version", "widget"]
    assert tables(db_sessions["other"]) == ["item"]
"""


def test_alembic_line_without_alias_migrates_every_alias_without_a_schema_line(
    backend: Backend, pytester: pytest.Pytester, base: str
) -> None:
    """db_alembic_ini without ALIAS= builds the default alias and a marker's alias without a
    URL; an alias with a db_metadata line of its own keeps its own schema (create_all)."""
    lines = ("db_alembic_ini = alembic.ini", "db_metadata = other=models:Base.metadata")
    write_suite(pytester.path, *lines, count=0, test_aliases=ALIASES_AND_ALEMBIC)
    write_alembic_project(pytester.path, "0001")
    result, _ = run_inner(pytester, *backend.args, "--db-test-name", base)
    result.assert_outcomes(passed=1)


#: an env.py that builds its own engine from its own settings (here: another SQLite file),
#: ignoring config.attributes["connection"] and sqlalchemy.url.
ALEMBIC_ENV_OWN_ENGINE = """
from pathlib import Path

from alembic import context
from sqlalchemy import create_engine, pool

config = context.config
OWN_URL = "sqlite:///" + str(Path(__file__).resolve().parent.parent / "other.db")


def run_migrations_online():
    connectable = create_engine(OWN_URL, poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
"""


def test_alembic_env_py_migrating_another_database_is_one_error(
    backend: Backend, pytester: pytest.Pytester, base: str, template_dir: Path
) -> None:
    """env.py ignores the template's connection and migrates the database of its own settings
    (another SQLite file): one usage error that says so and how to fix env.py, no
    traceback, the password masked, no template left; the other database was migrated."""
    write_suite(pytester.path, "db_alembic_ini = alembic.ini")
    write_alembic_project(pytester.path, "0001")
    (pytester.path / "migrations" / "env.py").write_text(ALEMBIC_ENV_OWN_ENGINE)
    args: tuple[str, ...] = backend.args
    if backend.name == "postgresql":  # a password the server does not need, never printed
        with_password = backend.url.set(password="s3cret-pw").render_as_string(False)
        args = ("--db-url", with_password)
    result, seen = run_inner(pytester, *args, "--db-test-name", base)
    assert result.ret == USAGE_ERROR, result.stdout.str()
    assert seen == {}
    output = "\n".join(result.outlines + result.errlines)
    assert "Traceback" not in output and "s3cret-pw" not in output, output
    result.stderr.fnmatch_lines(
        [
            "ERROR: pytest-ctxdb: alias 'default': `alembic upgrade head` ran no statement on "
            "the template database and left it without an alembic_version table: "
            "*migrations?env.py ignored config.attributes[[]\"connection\"[]]*may have migrated "
            "another database, the one its own settings name.*\"Sharing a Connection across "
            "one or more programmatic migration commands\"*"
        ]
    )
    assert template_names(backend, base, template_dir) == [], "the half-built template is left"
    other = sqlite3.connect(pytester.path / "other.db")
    try:
        query = "SELECT name FROM sqlite_master WHERE type = 'table'"
        tables = sorted(row[0] for row in other.execute(query))
        version = other.execute("SELECT version_num FROM alembic_version").fetchall()
    finally:
        other.close()
    assert tables == ["alembic_version", "widget"] and version == [("0001",)]


def test_alembic_env_py_migrating_the_urls_own_database_is_stopped(
    pytester: pytest.Pytester,
) -> None:
    """The same env.py when its own settings name the database the URL names (the app's own,
    as in FastAPI's project template): pytest-ctxdb refuses that connection, so nothing is
    written there, and the run stops with one usage error saying why."""
    write_suite(pytester.path, "db_alembic_ini = alembic.ini")
    write_alembic_project(pytester.path, "0001")
    (pytester.path / "migrations" / "env.py").write_text(ALEMBIC_ENV_OWN_ENGINE)
    other = pytester.path / "other.db"
    result, seen = run_inner(pytester, "--db-url", f"sqlite:///{other}")
    assert result.ret == USAGE_ERROR, result.stdout.str()
    result.stderr.fnmatch_lines(
        [
            "ERROR: pytest-ctxdb: alias 'default': `alembic upgrade head` was stopped before it "
            "wrote to the app's own database: env.py ignored config.attributes[[]\"connection\"[]]*"
            "It opened a connection to sqlite:///*other.db (--db-url).*"
        ]
    )
    assert "Traceback" not in "\n".join(result.outlines + result.errlines)
    assert not other.exists() or other.stat().st_size == 0, "the app's own database was written"


# -- 6b. settings in the fingerprint (pytest_ctxdb_fingerprint) ---------------------------------


SEEDED_BY_SETTING = """
import os


def pytest_ctxdb_fingerprint(alias):
    return ["seed note", os.environ["SEED_NOTE"]]


def pytest_ctxdb_setup_schema(connection, alias):
    connection.exec_driver_sql("CREATE TABLE ctxdb_marker (note VARCHAR(50))")
    note = os.environ["SEED_NOTE"]
    connection.exec_driver_sql(f"INSERT INTO ctxdb_marker (note) VALUES ('{note}')")
"""


def add_row_out_of_band(backend: Backend, template: str, template_dir: Path) -> None:
    """Add a row to the template's ctxdb_marker table, behind the plugin's back."""
    sql = "INSERT INTO ctxdb_marker (note) VALUES ('out of band')"
    if backend.url is None:
        [path] = template_files(template_dir, f"{template}.sqlite3")
        with sqlite3.connect(path) as conn:
            conn.execute(sql)
        conn.close()
        return
    engine = create_engine(backend.url.set(database=template), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(sql)
    finally:
        engine.dispose()


def test_fingerprint_hook_value_change_rebuilds_the_template(
    backend: Backend,
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    base: str,
    template_dir: Path,
) -> None:
    """Seed data read from a setting: with the setting returned by pytest_ctxdb_fingerprint,
    an unchanged value clones the kept template (a row put into it shows up) and a changed
    one builds a new template with the new seed (no --db-create), the old one swept."""
    write_suite(pytester.path, conftest=SEEDED_BY_SETTING)
    args = (*backend.args, "--db-test-name", base, "-o", "db_spare_clones=0")
    monkeypatch.setenv("SEED_NOTE", "one")
    result, seen = run_inner(pytester, *args)
    result.assert_outcomes(passed=1)
    assert seen["main"]["marker"] == ["one"]
    [template] = template_names(backend, base, template_dir)

    add_row_out_of_band(backend, template, template_dir)
    result, seen = run_inner(pytester, *args)
    result.assert_outcomes(passed=1)
    assert sorted(seen["main"]["marker"]) == ["one", "out of band"], "rebuilt, not cloned"
    assert template_names(backend, base, template_dir) == [template]

    monkeypatch.setenv("SEED_NOTE", "two")
    result, seen = run_inner(pytester, *args)
    result.assert_outcomes(passed=1)
    assert seen["main"]["marker"] == ["two"], "a changed fingerprint value cloned the old template"
    [new_template] = template_names(backend, base, template_dir)
    assert new_template != template


def test_fingerprint_hook_returning_something_else_is_a_usage_error(
    pytester: pytest.Pytester,
) -> None:
    """An implementation returning neither a string, a list of strings nor None: one usage
    error naming the hook and what it returned."""
    write_suite(pytester.path, conftest="def pytest_ctxdb_fingerprint(alias):\n    return 42\n")
    result, _ = run_inner(pytester)
    assert result.ret == USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*pytest_ctxdb_fingerprint returned int 42 for alias 'default'; return a string, "
            "a list of strings or None.*"
        ]
    )


# -- 7. testcontainers -----------------------------------------------------------------------------


@pytest.mark.xdist_group("docker")  # one container test at a time (with --dist loadgroup)
@pytest.mark.parametrize("workers", [0, 2], ids=["one-process", "xdist-2"])
def test_container_run_is_isolated_shared_and_removed(
    pytester: pytest.Pytester, docker: Docker, base: str, template_dir: Path, workers: int
) -> None:
    """--db-container (PostgreSQL, MariaDB): named in the header, isolated, one container per
    run shared by its xdist workers, none left after."""
    # test_pair.py sorts after test_observe.py: xdist's load scheduler sends each worker a
    # chunk of two consecutive tests first, so both workers get observing tests (the rest go to
    # whichever worker is free, which may be the same one every time).
    write_suite(pytester.path, count=4, test_pair=COMMIT_PAIR)
    xdist = ("-p", "xdist", "-n", str(workers)) if workers else ()
    container = ("--db-container", docker.kind, "--db-container-image", docker.image)
    result, seen = run_inner(pytester, *container, "--db-test-name", base, *xdist)
    result.assert_outcomes(passed=6)
    url, driver = {
        "postgresql": ("postgresql+psycopg://test", "psycopg"),
        "mariadb": ("mysql+pymysql://root", "pymysql"),
    }[docker.kind]
    result.stdout.fnmatch_lines(
        [
            (
                f"ctxdb: default: {url}@testcontainer/{base} (*testcontainers*"
                f"--db-container {docker.kind} ({docker.image})*; sync driver {driver}*"
            )
        ]
    )
    assert sorted(seen) == ([f"gw{i}" for i in range(workers)] if workers else ["main"])
    assert any(record["testcontainers_imported"] for record in seen.values())
    ports = {record["port"] for record in seen.values()}
    docker.ports |= {port for port in ports if port}
    assert len(ports) == 1 and None not in ports and not ports & {3306, 5432}, ports
    assert len({record["database"] for record in seen.values()}) == len(seen)
    # The run's state file holds the container's password: readable by its owner only.
    assert all(record["container_state_modes"] == ["0o600"] for record in seen.values()), seen
    # Only this run's container (the one publishing the recorded port): another test may run
    # a container of the same image at the same time when this suite runs under xdist.
    left = {c for c in container_ids(docker.image) - docker.before if container_ports(c) & ports}
    assert left == set(), "the run's container was left"
    assert list(template_dir.glob("container-*")) == []


@pytest.mark.xdist_group("docker")
def test_container_run_that_never_gets_ready_is_removed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, base: str
) -> None:
    """A container that starts but never reports ready (a PostgreSQL image asked to be
    MariaDB) fails the run with one usage error, and is not left running."""
    image = require_image("postgresql", monkeypatch)
    monkeypatch.setenv("TC_MAX_TRIES", "3")  # testcontainers' readiness wait: ~3 s
    before = container_ids(image)
    write_suite(pytester.path, count=1)
    container = ("--db-container", "mariadb", "--db-container-image", image)
    result, _ = run_inner(pytester, *container, "--db-test-name", base)
    assert result.ret == USAGE_ERROR, result.stdout.str()
    result.stderr.fnmatch_lines([f"ERROR: pytest-ctxdb: --db-container mariadb: could not start*"])
    left = container_ids(image) - before
    for container_id in left:  # leave nothing even when the check fails
        subprocess.run(["docker", "rm", "-f", container_id], capture_output=True, check=False)
    assert left == set(), "the container that never got ready was left running"


@pytest.mark.parametrize("missing", ["error", "skip"])
def test_container_without_docker_engine(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, base: str, missing: str
) -> None:
    """No Docker engine: one usage error, or with db_container_missing=skip a skip, with why."""
    monkeypatch.setenv("DOCKER_HOST", NO_DOCKER)
    write_suite(pytester.path, count=0, warnings_as_errors=False, test_mixed=PLAIN_AND_DB)
    args = (*CONTAINER_ARGS, "--db-test-name", base, "-o", f"db_container_missing={missing}")
    result, _ = run_inner(pytester, *args)
    output = "\n".join(result.outlines + result.errlines)
    assert "Traceback" not in output
    if missing == "error":
        assert result.ret == USAGE_ERROR, output
        result.stderr.fnmatch_lines([f"ERROR: pytest-ctxdb: {NO_DOCKER_REASON}"])
        assert output.count("could not start") == 1, output
    else:
        result.assert_outcomes(passed=1, skipped=1)
        result.stdout.fnmatch_lines([f"SKIPPED [[]1[]] *: pytest-ctxdb: {NO_DOCKER_REASON}"])


def test_container_skip_leaves_no_resource_warning(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, base: str
) -> None:
    """db_container_missing=skip: the failed start leaks no ResourceWarning into a plain test."""
    monkeypatch.setenv("DOCKER_HOST", NO_DOCKER)
    write_suite(pytester.path, count=0, test_mixed=PLAIN_AND_DB)
    args = (*CONTAINER_ARGS, "--db-test-name", base, "-o", "db_container_missing=skip")
    result, _ = run_inner(pytester, *args)
    assert "ResourceWarning" not in result.stdout.str(), result.stdout.str()
    result.assert_outcomes(passed=1, skipped=1)


def test_url_wins_over_container_without_importing_testcontainers(
    pytester: pytest.Pytester, base: str
) -> None:
    """--db-url with --db-container: the URL is used and testcontainers is never imported."""
    write_suite(pytester.path)
    result, seen = run_inner(
        pytester, "--db-url", "sqlite:///app.db", *CONTAINER_ARGS, "--db-test-name", base
    )
    result.assert_outcomes(passed=1)
    assert seen["main"]["testcontainers_imported"] is False
    assert header_url(result).get_backend_name() == "sqlite"
    assert "--db-container" not in result.stdout.str()
    assert not (pytester.path / "app.db").exists()


# -- 8. lazy provisioning --------------------------------------------------------------------------


@pytest.mark.parametrize("server", ["unreachable-url", "container"])
def test_run_without_database_tests_contacts_no_server(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    template_dir: Path,
    base: str,
    server: str,
) -> None:
    """A run selecting no db test contacts no server and starts no container; with one, it does."""
    # A container start would need this engine: the plain run must never try one.
    monkeypatch.setenv("DOCKER_HOST", NO_DOCKER)
    if server == "unreachable-url":
        args: tuple[str, ...] = ("--db-url", UNREACHABLE_URL, *CONTAINER_ARGS)
        message = "*cannot use the server at 127.0.0.1:1*"
    else:
        args = CONTAINER_ARGS
        message = "*--db-container postgresql: could not start*"
    write_suite(pytester.path, count=0, test_mixed=PLAIN_AND_DB)
    result, seen = run_inner(pytester, *args, "--db-test-name", base, "-k", "plain")
    result.assert_outcomes(passed=1, deselected=1)
    assert seen == {"main": {"testcontainers_imported": False}}
    assert not template_dir.exists(), "no lock, template or container state for a plain run"
    control, _ = run_inner(pytester, *args, "--db-test-name", base)
    assert control.ret == USAGE_ERROR, control.stdout.str()
    control.stderr.fnmatch_lines([f"ERROR: pytest-ctxdb: {message}"])
