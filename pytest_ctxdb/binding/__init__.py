"""The test binding: per test, a connection inside one outer transaction per alias, and
the sessions joined to it. pytest-free; the plugin drives it, and the context runtime
will ask it for sessions."""

from __future__ import annotations

from ._async import AsyncOuterTransaction, AsyncReusedConnection
from ._binding import AsyncTestBinding, BindingPlan, TestBinding
from ._commit import CommitTransaction
from ._layers import LayerCursor, LayerError, LayerScope, LayerStack, layers_of
from ._outer import (
    JOIN_MODE,
    OuterTransaction,
    ReusedConnection,
    check_loop,
    guard_branch,
    yield_when_covered,
)
from ._source import EngineSessionSource, TestSessionSource, load_session_classes

__all__ = (
    "JOIN_MODE",
    "AsyncOuterTransaction",
    "AsyncReusedConnection",
    "AsyncTestBinding",
    "BindingPlan",
    "CommitTransaction",
    "EngineSessionSource",
    "LayerCursor",
    "LayerError",
    "LayerScope",
    "LayerStack",
    "OuterTransaction",
    "ReusedConnection",
    "TestBinding",
    "TestSessionSource",
    "check_loop",
    "guard_branch",
    "layers_of",
    "load_session_classes",
    "yield_when_covered",
)
