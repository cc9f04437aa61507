"""The app's settings, read from the environment (FastAPI's "Settings and Environment Variables").

``HEROES_DATABASE_URL=postgresql+psycopg://app@db/heroes`` in production; without it the app
uses a SQLite file in the working directory.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HEROES_")

    database_url: str = "sqlite:///./heroes.db"
    echo_sql: bool = False


@lru_cache
def get_settings() -> Settings:
    return Settings()
