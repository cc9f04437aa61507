"""The life of test databases: names, creation, schema, clean-up."""

from __future__ import annotations

from ._database import SchemaHook, TestDatabase, make_sqlite_directory
from ._schema import create_schema, load_metadata

__all__ = ("SchemaHook", "TestDatabase", "create_schema", "load_metadata", "make_sqlite_directory")
