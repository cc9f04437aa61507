"""The life of test databases: names, creation, schema, clean-up."""

from __future__ import annotations

from ._containers import CONTAINER_KINDS, ContainerServer
from ._embedded import EMBEDDED_KINDS, EmbeddedServer
from ._database import (
    SchemaHook,
    TestDatabase,
    default_template_directory,
    make_sqlite_directory,
    project_key,
)
from ._fingerprint import schema_fingerprint
from ._schema import SchemaBuilder, create_schema, load_metadata

__all__ = (
    "CONTAINER_KINDS",
    "ContainerServer",
    "EMBEDDED_KINDS",
    "EmbeddedServer",
    "SchemaBuilder",
    "SchemaHook",
    "TestDatabase",
    "create_schema",
    "default_template_directory",
    "load_metadata",
    "make_sqlite_directory",
    "project_key",
    "schema_fingerprint",
)
