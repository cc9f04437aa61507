"""The blog's two databases, registered at import.

``default`` is the primary, where every write goes; ``replica`` is a read replica of it,
where the read-only pages read. These are the production URLs: under pytest-ctxdb every
session is made on the test's connection instead, and neither engine is ever connected
(creating them needs psycopg installed, nothing more).
"""

from __future__ import annotations

import os

from pytest_ctxdb.context import Database

PRIMARY_URL = os.environ.get("BLOG_PRIMARY_URL", "postgresql+psycopg://blog@primary/blog")
REPLICA_URL = os.environ.get("BLOG_REPLICA_URL", "postgresql+psycopg://blog@replica/blog")

primary = Database(PRIMARY_URL)
replica = Database(REPLICA_URL, alias="replica")
