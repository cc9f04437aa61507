"""Schema fingerprints: a hash of everything that builds a test database's schema.

The template database is named after it, so a changed model, migration or schema hook
means a new template, built automatically; an unchanged schema means the template of an
earlier run is cloned as it is.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateIndex, CreateTable

__all__ = ("FINGERPRINT_VERSION", "schema_fingerprint")

#: bump when the way templates are built changes, to retire old templates. 2: the template's
#: mark records its sequences' state (``seqs``), which a reused run database is put back to.
FINGERPRINT_VERSION = "2"


def _metadata_ddl(metadata: Sequence[MetaData], dialect: Dialect) -> Iterable[str]:
    for each in metadata:
        for table in each.sorted_tables:
            yield str(CreateTable(table).compile(dialect=dialect))
            for index in sorted(table.indexes, key=lambda i: str(i.name)):
                yield str(CreateIndex(index).compile(dialect=dialect))


def _source_of(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return repr(obj)


def schema_fingerprint(
    dialect: Dialect,
    metadata: Sequence[MetaData] = (),
    hooks: Sequence[Any] = (),
    alembic_files: Sequence[Path] = (),
    extra: Sequence[str] = (),
    inputs: Sequence[str] = (),
) -> str:
    """Return a short hex digest of what builds the schema.

    :param dialect: the DDL is compiled for it (a model change that alters the DDL on this
        backend changes the fingerprint; one that does not, does not).
    :param metadata: the ``MetaData`` of ini ``db_metadata``.
    :param hooks: ``pytest_ctxdb_setup_schema`` implementations; their source is hashed.
    :param alembic_files: migration scripts (their bytes are hashed) when Alembic builds it.
    :param extra: other strings that matter (Alembic heads, ...).
    :param inputs: the values of the ``pytest_ctxdb_fingerprint`` hook (settings the schema
        hook's seed data depends on), in order; each is hashed with its length, so
        ``["ab"]`` and ``["a", "b"]`` differ. None (the default) leaves the fingerprint as it
        was without the hook.
    :returns: 12 hex characters.
    """
    digest = hashlib.sha256(f"pytest-ctxdb template v{FINGERPRINT_VERSION}\n".encode())
    digest.update(f"{dialect.name}\n".encode())
    for ddl in _metadata_ddl(metadata, dialect):
        digest.update(ddl.encode())
    for hook in hooks:
        digest.update(_source_of(hook).encode())
    for path in sorted(alembic_files):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    for item in extra:
        digest.update(item.encode())
    for item in inputs:
        value = item.encode()
        digest.update(f"input {len(value)}\n".encode())
        digest.update(value)
    return digest.hexdigest()[:12]
