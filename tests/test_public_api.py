"""The declared public API, as users meet it: a name that appears or disappears fails here
until this list (and the README's "Public API" section) says so.

Public: the names in ``pytest_ctxdb.__all__`` and ``pytest_ctxdb.context.__all__``, the
fixtures, the ``db`` marker, the hooks, the command-line options and the ini keys. Everything
else (``pytest_ctxdb.binding``, ``.provision``, ``.backends``, ``.adapters``, ``.plugin`` and
every name starting with ``_``) is internal and may change in any release.
"""

from __future__ import annotations

import re

import pytest

import pytest_ctxdb
import pytest_ctxdb.context
from pytest_ctxdb.plugin import _hookspecs

TOP_LEVEL = {
    "AsyncOuterTransaction",
    "ConfigurationError",
    "ContextError",
    "CtxdbError",
    "DatabaseSettings",
    "MissingDriverError",
    "OuterTransaction",
    "ProvisioningError",
    "TransactionError",
    "__version__",
}
CONTEXT = {
    "Atomic",
    "ContextError",
    "DBSessionMiddleware",
    "Database",
    "SessionContext",
    "SessionScope",
    "atomic",
    "close_db_session",
    "commit_db_session",
    "current_scope",
    "db_session",
    "get_database",
    "get_db",
    "new_session",
    "registered_databases",
    "rollback_db_session",
    "run_in_new_context",
    "session_context",
}
FIXTURES = {
    "db_engine",
    "db_connection",
    "db_session",
    "db_sessions",
    "db_setup_session",
    "async_db_engine",
    "async_db_connection",
    "async_db_session",
    "async_db_sessions",
    "async_db_setup_session",
}
HOOKS = {"pytest_ctxdb_fingerprint", "pytest_ctxdb_setup_schema"}
OPTIONS = {
    "--db-url",
    "--db-test-name",
    "--db-mirror",
    "--db-create",
    "--db-reuse",
    "--db-container",
    "--db-container-image",
    "--db-embedded",
}
INI_KEYS = {
    "db_url",
    "db_test_name",
    "db_metadata",
    "db_mirrors",
    "db_block_access",
    "db_sweep",
    "db_sweep_age",
    "db_spare_clones",
    "db_spare_clones_detach",
    "db_alembic_ini",
    "db_container",
    "db_container_image",
    "db_container_missing",
    "db_embedded",
    "db_embedded_dir",
    "db_embedded_idle_timeout",
    "db_sessionmakers",
    "db_engines",
    "db_flask_sqlalchemy",
    "db_advanced_alchemy",
    "db_session_class",
}


def test_package_names() -> None:
    assert set(pytest_ctxdb.__all__) == TOP_LEVEL
    assert set(pytest_ctxdb.context.__all__) == CONTEXT


def test_hooks() -> None:
    assert {name for name in dir(_hookspecs) if name.startswith("pytest_ctxdb_")} == HOOKS


def test_fixtures_options_ini_keys_and_marker(pytester: pytest.Pytester, ini) -> None:
    """What ``pytest --help``, ``--fixtures`` and ``--markers`` show a user."""
    ini()
    help_text = pytester.runpytest_subprocess("--help", "-p", "no:cacheprovider").stdout.str()
    options = set(re.findall(r"^  (--db[\w-]*)", help_text, re.MULTILINE))
    ini_keys = set(re.findall(r"^  (db_\w+)", help_text, re.MULTILINE))
    assert options == OPTIONS
    assert ini_keys == INI_KEYS
    fixtures_text = pytester.runpytest_subprocess(
        "--fixtures", "-v", "-p", "no:cacheprovider"
    ).stdout.str()
    found = re.findall(r"^(\w+)(?: \[[\w ]+\])? -- .*pytest_ctxdb/", fixtures_text, re.M)
    assert {name for name in found if not name.startswith("_")} == FIXTURES
    markers = pytester.runpytest_subprocess("--markers", "-p", "no:cacheprovider").stdout.str()
    assert "@pytest.mark.db(using='default', transaction=False" in markers
