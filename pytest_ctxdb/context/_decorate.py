"""One way to turn a sync-and-async context manager into a decorator."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ("decorate",)

F = TypeVar("F", bound=Callable[..., Any])


def decorate(make: Callable[[], Any], func: F) -> F:
    """Wrap ``func`` so that each call runs inside ``make()`` (``async with`` for a coroutine
    function, ``with`` otherwise)."""
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            async with make():
                return await func(*args, **kwargs)

        return run_async  # type: ignore[return-value]

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        with make():
            return func(*args, **kwargs)

    return run  # type: ignore[return-value]
