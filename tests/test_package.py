"""The package's shape: pytest-free runtime, honest ``__all__``, schema hook, ``-p no:ctxdb``."""

from __future__ import annotations

import importlib
import inspect as pyinspect
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import FunctionType
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.pool import NullPool

if TYPE_CHECKING:
    from conftest import Backend

#: the runtime packages: usable without pytest (the context runtime, other test runners).
RUNTIME_PACKAGES = (
    "pytest_ctxdb",
    "pytest_ctxdb.binding",
    "pytest_ctxdb.provision",
    "pytest_ctxdb.backends",
    "pytest_ctxdb.context",
)
PACKAGES = (*RUNTIME_PACKAGES, "pytest_ctxdb.plugin")


@pytest.fixture(autouse=True)
def _no_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inner runs see only the URL a test passes, never one from this process's env."""
    monkeypatch.delenv("PYTEST_CTXDB_URL", raising=False)


PYTEST_MODULES_SCRIPT = """
import json, sys
import {module}
loaded = [name for name in sys.modules if name.partition(".")[0] in ("pytest", "_pytest")]
print(json.dumps(sorted(loaded)))
"""


def pytest_modules_after_import(module: str, cwd: Path) -> list[str]:
    """Import ``module`` in a fresh interpreter; return the pytest modules it loaded."""
    code = PYTEST_MODULES_SCRIPT.format(module=module)
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, check=False
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


@pytest.mark.parametrize("module", RUNTIME_PACKAGES)
def test_runtime_packages_do_not_import_pytest(module: str, tmp_path: Path) -> None:
    """Importing a runtime package in a fresh interpreter loads neither pytest nor _pytest."""
    assert pytest_modules_after_import(module, tmp_path) == []


def test_pytest_import_check_detects_the_plugin(tmp_path: Path) -> None:
    """Control: the same check does see pytest when the plugin module is imported."""
    loaded = pytest_modules_after_import("pytest_ctxdb.plugin", tmp_path)
    assert "pytest" in loaded
    assert "_pytest" in loaded


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_a_tuple_of_existing_names(name: str) -> None:
    """``__all__`` is a tuple, without duplicates, and every name in it exists."""
    module = importlib.import_module(name)
    exported = module.__all__
    assert isinstance(exported, tuple)
    assert len(set(exported)) == len(exported)
    assert [attr for attr in exported if not hasattr(module, attr)] == []


def public_classes_and_functions(module: object, home: Callable[[str], bool]) -> set[str]:
    """Public names of ``module`` bound to a class or function whose ``__module__`` is ``home``."""
    found = set()
    for attr in dir(module):
        value = getattr(module, attr)
        if attr.startswith("_") or not (
            isinstance(value, FunctionType) or pyinspect.isclass(value)
        ):
            continue
        if home(value.__module__):
            found.add(attr)
    return found


@pytest.mark.parametrize("name", PACKAGES)
def test_names_defined_in_init_are_in_all(name: str) -> None:
    """Every public class or function defined in a package's ``__init__`` is in ``__all__``."""
    module = importlib.import_module(name)
    defined = public_classes_and_functions(module, lambda home: home == name)
    assert defined - set(module.__all__) == set()


@pytest.mark.parametrize("name", RUNTIME_PACKAGES)
def test_runtime_packages_export_what_they_reexport(name: str) -> None:
    """A runtime package exports every public class or function it takes from its own modules."""
    module = importlib.import_module(name)
    reexported = public_classes_and_functions(module, lambda home: home.startswith(f"{name}."))
    assert reexported, f"{name} re-exports nothing: the check would prove nothing"
    assert reexported - set(module.__all__) == set()


# -- the pytest_ctxdb_setup_schema hook -----------------------------------------------------------

HOOK_TEST_DATABASE = "test_ctxdb_hook"
HOOK_CONFTEST = """
import pytest
from sqlalchemy import text

CALLS = []

def pytest_ctxdb_setup_schema(connection, alias):
    connection.execute(text("CREATE TABLE raw_t (id INTEGER PRIMARY KEY, name VARCHAR(20))"))
    CALLS.append((alias, connection.engine.url.database))

@pytest.fixture
def schema_calls():
    return CALLS
"""
HOOK_SUITE = """
import os
from sqlalchemy import text

URL_DATABASE = {url_database!r}
BUILDS = {builds}

def test_hook_ran_on_the_template_database(db_session, schema_calls):
    test_database = db_session.connection().engine.url.database
    assert len(schema_calls) == BUILDS
    for alias, database in schema_calls:
        assert alias == "default"
        assert os.path.basename(database).startswith("{test_database}_tpl_")
    assert test_database != URL_DATABASE

def test_raw_table_exists_in_the_test_database(db_session, schema_calls):
    db_session.execute(text("INSERT INTO raw_t (id, name) VALUES (1, 'raw')"))
    assert db_session.execute(text("SELECT name FROM raw_t")).scalar_one() == "raw"
"""


def test_setup_schema_hook_runs_raw_ddl_on_the_template_database(
    pytester: pytest.Pytester, ini: Callable[..., None], backend: Backend
) -> None:
    """``pytest_ctxdb_setup_schema`` runs once, on the template database its raw DDL is cloned
    from; with the template current (second run) it does not run at all."""
    url_database = backend.url.database if backend.url is not None else None
    pytester.makeconftest(HOOK_CONFTEST)
    for builds, args in ((1, ["--db-create"]), (0, [])):
        pytester.makepyfile(
            test_hook=HOOK_SUITE.format(
                url_database=url_database, builds=builds, test_database=HOOK_TEST_DATABASE
            )
        )
        result = backend.runpytest(pytester, "--db-test-name", HOOK_TEST_DATABASE, *args)
        result.assert_outcomes(passed=2)
        assert HOOK_TEST_DATABASE not in backend.leftover_test_databases()
    if backend.url is not None:
        engine = create_engine(backend.url, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                assert not inspect(connection).has_table("raw_t")
        finally:
            engine.dispose()


# -- disabling the plugin -------------------------------------------------------------------------

DB_SESSION_SUITE = """
def test_uses_db_session(db_session):
    assert db_session is not None
"""


def test_p_no_ctxdb_disables_the_plugin(
    pytester: pytest.Pytester, ini: Callable[..., None]
) -> None:
    """``-p no:ctxdb`` unloads the plugin: no header line, no ``db_session`` fixture."""
    pytester.makepyfile(test_db=DB_SESSION_SUITE)
    enabled = pytester.runpytest_subprocess()
    enabled.assert_outcomes(passed=1)
    enabled.stdout.fnmatch_lines(["ctxdb: default: *"])

    disabled = pytester.runpytest_subprocess("-p", "no:ctxdb")
    disabled.assert_outcomes(errors=1)
    disabled.stdout.fnmatch_lines(["*fixture 'db_session' not found*"])
    disabled.stdout.no_fnmatch_line("ctxdb: *")
