"""A tiny library catalogue: authors and their books.

Plain application code: nothing in this package knows about pytest or pytest-ctxdb.
"""
