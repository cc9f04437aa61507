"""pytest-ctxdb: a real database for every test, isolated by one outer transaction.

The pytest plugin lives in :mod:`pytest_ctxdb.plugin` (entry point ``ctxdb``, so
``-p no:ctxdb`` disables it). Importing this package does not import pytest.
"""

from __future__ import annotations

from ._errors import (
    ConfigurationError,
    ContextError,
    CtxdbError,
    MissingDriverError,
    ProvisioningError,
    TransactionError,
)
from ._settings import DatabaseSettings
from .binding import AsyncOuterTransaction, OuterTransaction

__version__ = "0.1.0"

__all__ = (
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
)
