"""Heroes and teams: a FastAPI + SQLModel app written as FastAPI's and SQLModel's docs write it."""
