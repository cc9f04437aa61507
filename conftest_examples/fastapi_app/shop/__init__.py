"""A small shop written with pytest_ctxdb.context: one async session per request."""

from . import db  # registers the database (alias "default") as soon as shop is imported

__all__ = ("db",)
