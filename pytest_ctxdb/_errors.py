"""The one exception family of pytest-ctxdb.

Every error the runtime raises for a user derives from :class:`CtxdbError`; its message
says what happened and how to fix it, naming the option, marker or fixture involved.
No message ever contains a password: URLs are rendered with
``URL.render_as_string(hide_password=True)``.
"""

from __future__ import annotations

__all__ = (
    "ConfigurationError",
    "ContextError",
    "CtxdbError",
    "MissingDriverError",
    "ProvisioningError",
    "TransactionError",
)


class CtxdbError(Exception):
    """Base class of every error raised by pytest-ctxdb."""


class ConfigurationError(CtxdbError):
    """A setting (``--db-url``, ini ``db_url``, ``db_metadata``, ...) is malformed.

    The pytest plugin turns it into a :class:`pytest.UsageError`, shown once before any test runs.
    """


class MissingDriverError(ConfigurationError):
    """The DBAPI driver a URL names is not installed; the message names the extra to install."""


class ProvisioningError(CtxdbError):
    """A test database could not be created, built or dropped (server unreachable, no rights, ...)."""


class TransactionError(CtxdbError):
    """A test broke the isolation contract, e.g. committed the outer transaction itself."""


class ContextError(CtxdbError):
    """The context-session runtime was misused: unknown alias, ``durable`` atomic nested,
    a sync helper used on an async alias, a database touched outside the test's binding."""
