"""A tiny blog whose writes go to a primary database and whose reads go to a read replica.

Plain application code: nothing in this package knows about pytest or pytest-ctxdb.
"""
