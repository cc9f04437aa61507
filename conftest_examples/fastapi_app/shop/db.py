"""The shop's database, registered at import as alias "default".

This is the production URL. Creating a ``Database`` contacts no server. Under pytest-ctxdb
every session the app makes is bound to the test's connection instead, and this engine is
never connected: if some code took a connection from it during a test, that test would fail
(the write would have bypassed the test's transaction and stayed for good).
"""

from __future__ import annotations

from pytest_ctxdb.context import Database

# expire_on_commit=False: an AsyncSession cannot reload expired attributes lazily, and the
# routes read objects after the middleware (or @atomic) has committed. Session options apply
# to the sessions made in tests too.
database = Database("postgresql+asyncpg://app@db/app", expire_on_commit=False)
