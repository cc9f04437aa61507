"""Async isolation: ``async_db_session`` / ``async_db_connection`` under every loop scope.

The inner suite is a package of two modules holding the same async tests, run under
pytest-asyncio strict mode (an ``asyncio`` marker with each ``loop_scope``) and auto mode
(``asyncio_default_test_loop_scope``). Every test starts by checking that the tables are
empty, so each one proves that the commits of the tests before it (in its module and in the
other module) were rolled back. The run must finish (no hang at exit), without any
cross-loop error, and leave nothing behind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from test_isolation import INI_LINES, run_suite, write_suite

if TYPE_CHECKING:
    from conftest import Backend

LOOP_SCOPES = ("function", "class", "module", "package", "session")

#: errors of async connections used in the wrong loop, or of loops/threads left behind.
LOOP_TROUBLE = (
    "attached to a different loop",
    "another operation is in progress",
    "Event loop is closed",
    "was never awaited",
    "Task was destroyed",
    "Exception ignored",
)

#: one module of the inner package; ``MARKER`` becomes the class's ``asyncio`` marker (if any)
#: and ``SHARED`` whether its async tests should all run in one event loop.
ASYNC_TESTS = """
import asyncio

import pytest
from sqlalchemy.exc import IntegrityError
from models import NAMES, Item

LOOPS = []


async def names(session):
    LOOPS.append(asyncio.get_running_loop())
    return (await session.scalars(NAMES)).all()


MARKER
class TestAsyncIsolation:
    @pytest.mark.parametrize("name", ["first", "second"])
    async def test_commit(self, async_db_session, name):
        assert await names(async_db_session) == []
        async_db_session.add(Item(name=name))
        await async_db_session.commit()
        assert await names(async_db_session) == [name]

    async def test_integrity_error_rollback_retry(self, async_db_session):
        assert await names(async_db_session) == []
        async_db_session.add(Item(name="taken"))
        await async_db_session.commit()
        async_db_session.add(Item(name="taken"))
        with pytest.raises(IntegrityError):
            await async_db_session.commit()
        await async_db_session.rollback()
        async_db_session.add(Item(name="free"))
        await async_db_session.commit()
        assert await names(async_db_session) == ["free", "taken"]

    async def test_connection_sees_session_flush(self, async_db_session, async_db_connection):
        assert await names(async_db_session) == []
        async_db_session.add(Item(name="flushed"))
        await async_db_session.flush()
        assert (await async_db_connection.scalars(NAMES)).all() == ["flushed"]


def test_loops():
    assert len(LOOPS) == 7
    assert len(set(map(id, LOOPS))) == (1 if SHARED else 4)
"""

#: an async test whose ``commit()`` of its outer transaction is refused, and the one after it.
ASYNC_REFUSED = """
import pytest
from sqlalchemy import insert
from models import NAMES, Item

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_connection_commit(async_db_connection):
    await async_db_connection.execute(insert(Item).values(name="would leak"))
    await async_db_connection.commit()


async def test_after_refused_commit(async_db_session):
    assert (await async_db_session.scalars(NAMES)).all() == []
"""

#: tests in one ``ASYNC_TESTS`` module.
PER_MODULE = 5


def async_module(loop_scope: str, *, marked: bool = True) -> str:
    """``ASYNC_TESTS`` for tests running in loops of ``loop_scope``, set by their ``asyncio``
    marker, or (``marked=False``, auto mode) by ini ``asyncio_default_test_loop_scope``."""
    marker = f'@pytest.mark.asyncio(loop_scope="{loop_scope}")' if marked else ""
    return ASYNC_TESTS.replace("MARKER", marker).replace("SHARED", str(loop_scope != "function"))


def write_async_suite(pytester: pytest.Pytester, **modules: str) -> None:
    """Write the inner package ``pkg`` holding ``modules`` and the shared files."""
    files = {f"pkg/{name}": text for name, text in modules.items()}
    write_suite(pytester, "", **{"pkg/__init__": ""}, **files)


def check_run(backend: Backend, pytester: pytest.Pytester, **outcomes: int) -> pytest.RunResult:
    """Run the suite: ``outcomes`` as expected, no loop trouble in the output, nothing left."""
    result = run_suite(backend, pytester, "-v")
    result.assert_outcomes(**outcomes)
    output = result.stdout.str() + result.stderr.str()
    for trouble in LOOP_TROUBLE:
        assert trouble not in output
    return result


@pytest.mark.parametrize("scope", LOOP_SCOPES)
def test_strict_mode_loop_scope(
    backend: Backend, pytester: pytest.Pytester, ini, scope: str
) -> None:
    """Under strict mode with @pytest.mark.asyncio(loop_scope=...), commits never outlive a test."""
    ini(*INI_LINES)
    module = async_module(scope)
    write_async_suite(pytester, test_one=module, test_two=module)
    check_run(backend, pytester, passed=2 * PER_MODULE + 1)


@pytest.mark.parametrize("scope", ["function", "session"])
def test_auto_mode_default_loop_scope(
    backend: Backend, pytester: pytest.Pytester, ini, scope: str
) -> None:
    """Under auto mode with asyncio_default_test_loop_scope, commits never outlive a test."""
    ini(*INI_LINES, f"asyncio_default_test_loop_scope = {scope}", asyncio_mode="auto")
    module = async_module(scope, marked=False)
    write_async_suite(pytester, test_one=module, test_two=module)
    check_run(backend, pytester, passed=2 * PER_MODULE + 1)


def test_every_loop_scope_in_one_run_with_a_refused_commit(
    backend: Backend, pytester: pytest.Pytester, ini
) -> None:
    """Tests of all five loop scopes share one run (one engine per loop, each closed in its own
    loop), and an async_db_connection.commit() is refused without leaking into the next test."""
    ini(*INI_LINES)
    modules = {f"test_{scope}": async_module(scope) for scope in LOOP_SCOPES}
    write_async_suite(pytester, **modules, test_zy_refused=ASYNC_REFUSED)
    result = check_run(backend, pytester, passed=len(LOOP_SCOPES) * PER_MODULE + 2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_zy_refused.py::test_connection_commit FAILED*",
            "*test_zy_refused.py::test_after_refused_commit PASSED*",
            "*TransactionError: pytest-ctxdb refused to COMMIT the test's outer transaction*",
        ]
    )
