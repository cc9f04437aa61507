"""The billing database, registered at import as alias "default".

A sync URL makes a sync ``Engine`` and ``Session``\\ s. This is the production URL: under
pytest-ctxdb every session is made on the test's connection instead and this engine is never
connected (a connection taken from it during a test would fail the test).
"""

from __future__ import annotations

from pytest_ctxdb.context import Database

database = Database("postgresql+psycopg://billing@db/billing")
