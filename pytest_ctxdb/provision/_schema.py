"""Load the ``MetaData`` objects named by ini ``db_metadata`` and create their tables."""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, event, inspect
from sqlalchemy.engine import URL, Connection, Dialect
from sqlalchemy.exc import DBAPIError

from .._errors import ConfigurationError, CtxdbError, ProvisioningError
from .._importing import import_object
from .._settings import hide_password
from ..context import _seam
from ._fingerprint import schema_fingerprint

__all__ = ("SchemaBuilder", "create_schema", "load_metadata")


def _where(exc: BaseException) -> str:
    """``file:line in function`` of the innermost frame of ``exc`` outside installed packages
    and this plugin (the user's migration or hook), else of its innermost frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [
        frame
        for frame in frames
        if "site-packages" not in frame.filename and "pytest_ctxdb" not in frame.filename
    ]
    frame = (own or frames)[-1] if frames else None
    return f"{frame.filename}:{frame.lineno} in {frame.name}" if frame else "no traceback"


@contextlib.contextmanager
def _statements_on(connection: Connection) -> Iterator[list[str]]:
    """Collect the statements executed on ``connection`` while the block runs."""
    statements: list[str] = []

    def seen(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(connection, "before_cursor_execute", seen)
    try:
        yield statements
    finally:
        event.remove(connection, "before_cursor_execute", seen)


def _import_one(spec: str, setting: str) -> MetaData:
    obj, _owner, _name = import_object(spec, setting)
    if not isinstance(obj, MetaData):
        candidate = getattr(obj, "metadata", None)
        if isinstance(candidate, MetaData):
            return candidate
        raise ConfigurationError(
            f"{setting}: {spec!r} is a {type(obj).__name__}, not a sqlalchemy.MetaData "
            "(nor a declarative base with .metadata)."
        )
    return obj


def load_metadata(specs: Iterable[str], setting: str = "db_metadata") -> tuple[MetaData, ...]:
    """Import every ``module:attribute`` string and return its ``MetaData``.

    :param specs: import strings such as ``"myapp.models:Base.metadata"``; a declarative base
        (``"myapp.models:Base"``) is accepted and its ``.metadata`` used.
    :param setting: the setting name for error messages.
    :returns: the ``MetaData`` objects, in order, without duplicates.
    :raises ConfigurationError: a string does not import or names something else.
    """
    found: list[MetaData] = []
    for spec in specs:
        metadata = _import_one(spec.strip(), setting)
        if not any(metadata is seen for seen in found):
            found.append(metadata)
    return tuple(found)


def create_schema(connection: Connection, metadata: Sequence[MetaData]) -> None:
    """Create every table of ``metadata`` on ``connection`` (``MetaData.create_all``)."""
    for each in metadata:
        each.create_all(connection)


class SchemaBuilder:
    """How one alias's schema is built, and its fingerprint.

    :param alias: the alias, passed to the schema hook.
    :param metadata: ``MetaData`` created with ``create_all`` (ini ``db_metadata``).
    :param hook: ``hook(connection, alias)`` run after ``create_all`` / the migrations, in the
        same transaction (the ``pytest_ctxdb_setup_schema`` hook).
    :param hook_sources: the hook implementations, whose source goes into the fingerprint.
    :param alembic_ini: ``path`` or ``path:section`` of an ``alembic.ini``; when given, the
        schema is built by ``alembic upgrade head`` through Alembic's API instead of
        ``create_all`` (ini ``db_alembic_ini``).
    :param fingerprint_inputs: more strings for the fingerprint (the values of the
        ``pytest_ctxdb_fingerprint`` hook): a change means a new template.
    """

    def __init__(
        self,
        alias: str,
        metadata: Sequence[MetaData] = (),
        hook: Callable[[Connection, str], None] | None = None,
        hook_sources: Sequence[Any] = (),
        alembic_ini: str | None = None,
        fingerprint_inputs: Sequence[str] = (),
    ) -> None:
        self.alias = alias
        self.metadata = tuple(metadata)
        self.hook = hook
        self.hook_sources = tuple(hook_sources)
        self.alembic_ini = alembic_ini
        self.fingerprint_inputs = tuple(fingerprint_inputs)

    def _alembic_config(self, url: URL | None = None) -> Any:
        try:
            from alembic.config import Config
        except ImportError:
            raise ConfigurationError(
                "db_alembic_ini: Alembic is not installed; pip install alembic"
            ) from None
        path, _, section = (self.alembic_ini or "").partition("::")
        if not Path(path).is_file():
            raise ConfigurationError(f"db_alembic_ini: {path!r} is not a file")
        config = Config(path, ini_section=section or "alembic")
        if url is not None:
            # ConfigParser interpolation: a literal % must be doubled.
            rendered = url.render_as_string(hide_password=False).replace("%", "%%")
            config.set_main_option("sqlalchemy.url", rendered)
        return config

    def fingerprint(self, dialect: Dialect) -> str:
        """The schema fingerprint for ``dialect`` (see :func:`schema_fingerprint`).

        With Alembic, the migration environment's files are hashed. Where ``alembic.ini``
        names its directories plainly (``script_location`` and ``version_locations`` as paths,
        ``%(here)s`` allowed), every ``.py`` file under them is read without importing Alembic
        (~80 ms saved on every warm start); otherwise Alembic's ``ScriptDirectory`` lists the
        revision files and heads.
        """
        files: list[Path] = []
        extra: list[str] = []
        if self.alembic_ini:
            plain = self._alembic_plain_files()
            if plain is not None:
                files = plain
            else:
                from alembic.script import ScriptDirectory

                script = ScriptDirectory.from_config(self._alembic_config())
                files = [Path(rev.path) for rev in script.walk_revisions() if rev.path]
                env = Path(script.dir) / "env.py"
                if env.is_file():
                    files.append(env)
                extra = sorted(script.get_heads())
        return schema_fingerprint(
            dialect, self.metadata, self.hook_sources, files, extra, self.fingerprint_inputs
        )

    def _alembic_plain_files(self) -> list[Path] | None:
        """Every ``.py`` file of the migration environment when ``alembic.ini`` gives its
        directories as plain paths (read with ``configparser``, as Alembic reads it, with
        ``here`` = the file's directory); ``None`` when Alembic itself must resolve them
        (a ``package:resource`` location, a missing option or section, a missing directory)."""
        import configparser

        path, _, section = (self.alembic_ini or "").partition("::")
        ini = Path(path)
        if not ini.is_file():
            return None
        parser = configparser.ConfigParser(defaults={"here": str(ini.resolve().parent)})
        try:
            parser.read(ini, encoding="utf-8")
            options = parser[section or "alembic"]
            location = options.get("script_location")
            versions = options.get("version_locations")
        except (configparser.Error, KeyError, UnicodeDecodeError):
            return None
        if not location:
            return None
        directories = [location, *(versions.replace(",", " ").split() if versions else ())]
        roots = []
        for directory in directories:
            root = Path(directory)
            if not root.is_absolute():
                root = Path.cwd() / root  # Alembic resolves relative locations from the cwd
            if not root.is_dir():
                return None  # e.g. "myapp:migrations", a package resource
            roots.append(root)
        return sorted(
            {
                file
                for root in roots
                for file in root.rglob("*.py")
                if "__pycache__" not in file.parts
            }
        )

    def _ignored_connection(self, config: Any, url: URL) -> str:
        """The error for an ``env.py`` that migrated some other database than the template."""
        env = "env.py"
        with contextlib.suppress(Exception):  # only for the message
            from alembic.script import ScriptDirectory

            env = str(Path(ScriptDirectory.from_config(config).dir) / "env.py")
        text = (
            f"alias {self.alias!r}: `alembic upgrade head` ran no statement on the template "
            f"database and left it without an alembic_version table: {env} ignored "
            'config.attributes["connection"] (the template\'s connection, which pytest-ctxdb '
            "passes it) and the sqlalchemy.url set to the template, and may have migrated "
            "another database, the one its own settings name. Make run_migrations_online() "
            "use that connection when it is there, as in the Alembic cookbook recipe "
            '"Sharing a Connection across one or more programmatic migration commands": '
            'connection = config.attributes.get("connection"); if it is not None, '
            "context.configure(connection=connection, target_metadata=...) and run the "
            "migrations in context.begin_transaction(); create an engine from its own "
            "settings only when it is None."
        )
        return hide_password(text, url)

    @property
    def empty(self) -> bool:
        """``True`` when there is nothing to build (no metadata, hook or migrations)."""
        return not (self.metadata or self.hook or self.alembic_ini)

    def build(self, connection: Connection, url: URL) -> None:
        """Build the schema on ``connection`` (to the template database at ``url``) and commit.

        :raises ProvisioningError: a migration or the schema hook raised something other than
            a database error (those propagate as they are); the message names the exception
            and where it was raised.
        """
        stage = "alembic upgrade head"
        try:
            with connection.begin():
                if self.alembic_ini:
                    from alembic import command

                    config = self._alembic_config(url)
                    # env.py files that follow Alembic's cookbook use this connection;
                    # others connect to sqlalchemy.url, which names the same database.
                    config.attributes["connection"] = connection
                    guard = (
                        f"alias {self.alias!r}: `alembic upgrade head` was stopped before it "
                        "wrote to the app's own database: env.py ignored "
                        'config.attributes["connection"] (the template\'s connection) and '
                        "connected with its own settings; see the Alembic cookbook recipe "
                        '"Sharing a Connection across one or more programmatic migration '
                        'commands" (use that connection when it is there).'
                    )
                    with _statements_on(connection) as statements, _seam.building(guard):
                        command.upgrade(config, "head")
                    if not statements and not inspect(connection).has_table("alembic_version"):
                        raise ProvisioningError(self._ignored_connection(config, url))
                stage = "create_all of db_metadata"
                create_schema(connection, self.metadata)
                stage = "pytest_ctxdb_setup_schema"
                if self.hook is not None:
                    self.hook(connection, self.alias)
        except DBAPIError as exc:
            exc.ctxdb_stage = stage  # type: ignore[attr-defined]  # named by the error message
            raise
        except CtxdbError:
            raise
        except Exception as exc:
            # e.g. an Alembic error quoting sqlalchemy.url
            text = hide_password(f"{type(exc).__name__}: {exc}", url)
            raise ProvisioningError(
                f"alias {self.alias!r}: building the template's schema failed in {stage}: "
                f"{text} ({_where(exc)})"
            ) from exc
