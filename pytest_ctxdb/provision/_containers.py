"""Throwaway database servers started with testcontainers, once per run.

Started lazily, by the first process that provisions a database; pytest-xdist workers of the
same run share it through a small state file (under a file lock) and the process that owns
the run (the xdist controller, or the only process) stops it at the end. testcontainers is
imported only here, only when a container is asked for.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import secrets
import warnings
from pathlib import Path
from typing import Any

from filelock import FileLock
from sqlalchemy.engine import URL, make_url

from .._errors import ConfigurationError, ProvisioningError

__all__ = ("CONTAINER_KINDS", "ContainerServer")

#: kind -> (default image, SQLAlchemy dialect+driver of the URL, user, server port). The user
#: must be allowed to create databases: the image's superuser (``POSTGRES_USER`` is one;
#: MariaDB's ``MYSQL_USER`` may only use ``MYSQL_DATABASE``, so root is used there).
CONTAINER_KINDS = {
    "postgresql": ("postgres:16", "postgresql+psycopg", "test", 5432),
    "mariadb": ("mariadb:11", "mysql+pymysql", "root", 3306),
}


class ContainerServer:
    """One run's throwaway server.

    :param kind: ``"postgresql"`` or ``"mariadb"``.
    :param image: the image to run (``db_container_image``), e.g. ``local/postgres:15``.
    :param state_directory: where the run's state file and lock live.
    :param run_id: the run's id (shared by its xdist workers).
    """

    def __init__(self, kind: str, image: str | None, state_directory: Path, run_id: str) -> None:
        if kind not in CONTAINER_KINDS:
            raise ConfigurationError(
                f"--db-container / db_container: {kind!r} is not a valid kind. Valid kinds: "
                f"{', '.join(CONTAINER_KINDS)}."
            )
        self.kind = kind
        self.image = image or CONTAINER_KINDS[kind][0]
        self._state = state_directory / f"container-{run_id}.json"
        self._lock = state_directory / f"container-{run_id}.lock"
        self._container: Any = None
        self._url: URL | None = None

    @property
    def placeholder_url(self) -> URL:
        """A URL of the right dialect to describe the server before it is started."""
        _, driver, user, _ = CONTAINER_KINDS[self.kind]
        return make_url(f"{driver}://{user}@testcontainer/test")

    def url(self) -> URL:
        """Start the server (or join the run's running one) and return its URL.

        :raises ProvisioningError: no Docker engine is reachable, or the container failed.
        """
        if self._url is not None:
            return self._url
        self._state.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self._lock)):
            if self._state.exists():
                self._url = make_url(json.loads(self._state.read_text())["url"])
                return self._url
            self._url = self._start()
            state = {
                "url": self._url.render_as_string(hide_password=False),
                "container": self._container.get_wrapped_container().id,
            }
            # It holds the password: readable by this user only (the directory is shared).
            fd = os.open(self._state, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as file:
                json.dump(state, file)
        return self._url

    def _start(self) -> URL:
        try:
            if self.kind == "postgresql":
                try:
                    from testcontainers.community.postgres import PostgresContainer
                except ImportError:  # testcontainers < 4.14
                    from testcontainers.postgres import PostgresContainer
                factory: Any = PostgresContainer
                options: dict[str, Any] = {"dbname": "test", "driver": None}
            else:
                try:
                    from testcontainers.community.mysql import MySqlContainer
                except ImportError:
                    from testcontainers.mysql import MySqlContainer
                factory = MySqlContainer
                options = {"dbname": "test"}  # root's password is ``password``
        except ImportError:
            raise ConfigurationError(
                "--db-container: testcontainers is not installed; "
                "pip install 'pytest-ctxdb[containers]'"
            ) from None
        _, driver, user, port = CONTAINER_KINDS[self.kind]
        # A fresh password per container: never a word that also occurs in database names
        # (error messages mask the password wherever it appears).
        password = secrets.token_hex(12)
        failure: str | None = None
        container: Any = None
        try:
            container = factory(self.image, username=user, password=password, **options)
            container.start()
        except Exception as exc:  # noqa: BLE001 - docker raises many kinds; report one line
            failure = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            # start() runs the container before waiting for it to be ready: remove it.
            with contextlib.suppress(Exception):
                if container is not None and container.get_wrapped_container() is not None:
                    container.stop()
        if failure is not None:
            # The Docker client of the failed attempt leaves a socket behind: collect it now,
            # quietly (outside the except block, so its traceback no longer holds it), rather
            # than as a ResourceWarning in some later test.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                gc.collect()
            raise ProvisioningError(
                f"--db-container {self.kind}: could not start {self.image!r}: {failure}. Is a "
                "Docker engine reachable (DOCKER_HOST) and the image available? Without a "
                "registry set TESTCONTAINERS_RYUK_DISABLED=true. Or give --db-url instead, "
                "or set db_container_missing = skip."
            )
        self._container = container
        host = container.get_container_host_ip()
        return URL.create(
            driver,
            username=user,
            password=password,
            host=host,
            port=int(container.get_exposed_port(port)),
            database="test",
        )

    def stop(self) -> None:
        """Stop the run's container (the owning process calls this once, at the end)."""
        if not self._state.exists():
            return
        try:
            container_id = json.loads(self._state.read_text())["container"]
            if self._container is not None:
                self._container.stop()
            else:
                import docker  # type: ignore[import-untyped]

                docker.from_env().containers.get(container_id).remove(force=True)
        finally:
            self._state.unlink(missing_ok=True)
            with_lock = self._lock
            if with_lock.exists():
                os.unlink(with_lock)
