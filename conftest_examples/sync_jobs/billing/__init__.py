"""Billing jobs written with pytest_ctxdb.context: sync code, one session per context."""

from . import db  # registers the database (alias "default") as soon as billing is imported

__all__ = ("db",)
