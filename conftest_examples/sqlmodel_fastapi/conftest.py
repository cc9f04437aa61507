"""Run the tests against the same kind of database the app is configured for.

The app reads its URL from ``HEROES_DATABASE_URL`` (``heroes_app.config``). Handing that URL to
pytest-ctxdb makes the test database a sibling of the app's: ``HEROES_DATABASE_URL=
postgresql+psycopg://app@db/heroes`` gives tests a ``test_heroes_<run id>`` database on that
server (the app's own database is never written). With the default ``sqlite:///./heroes.db``
the tests run on an embedded SQLite database in a temporary directory; ``heroes.db`` is not
opened. ``--db-url`` and a ``PYTEST_CTXDB_URL`` set by hand still win.
"""

from __future__ import annotations

import os

from heroes_app.config import get_settings

os.environ.setdefault("PYTEST_CTXDB_URL", get_settings().database_url)
