"""A small shop written with pytest_ctxdb.context: one async session per request."""
