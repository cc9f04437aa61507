"""The private SQLAlchemy internals pytest-ctxdb relies on, named in one place.

Each name here differs between SQLAlchemy releases or is not public API;
``tests/test_sqla_internals.py`` checks every one of them against the installed release, so
a release that moves one fails loudly there rather than somewhere in a test run.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ("in_greenlet",)


def _find_in_greenlet() -> Callable[[], bool]:
    try:  # later SQLAlchemy 2.0 releases, and 2.1
        from sqlalchemy.util.concurrency import in_greenlet as found

        return found
    except ImportError:  # SQLAlchemy 2.0.0-2.0.x: SQLAlchemy's greenlet has its own class
        from sqlalchemy.util._concurrency_py3k import (  # type: ignore[import-not-found]
            _AsyncIoGreenlet,
            getcurrent,
        )

        def in_greenlet() -> bool:
            return isinstance(getcurrent(), _AsyncIoGreenlet)

        return in_greenlet


#: ``True`` inside a greenlet SQLAlchemy's asyncio layer spawned (sync code run for an
#: ``AsyncConnection`` / ``AsyncSession``), where ``await_only`` may be called.
in_greenlet: Callable[[], bool] = _find_in_greenlet()
