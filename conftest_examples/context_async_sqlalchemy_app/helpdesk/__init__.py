"""A helpdesk API written with context-async-sqlalchemy, unchanged for its tests."""
