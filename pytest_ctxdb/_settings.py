"""Resolved settings: one frozen :class:`DatabaseSettings` per alias.

The pytest plugin collects raw values (``--db-url``, env ``PYTEST_CTXDB_URL``, ini ``db_url``, ...)
and calls :func:`resolve_settings` once; nothing here imports pytest.

Precedence, per alias: the command line wins over the environment, which wins over the ini file.
With no URL at all for the default alias, an embedded SQLite file database is used. An alias
named by a setting (``db_metadata``, ``db_alembic_ini``, ``--db-test-name``) or a ``db`` marker
but given no URL is *derived*: its test database is on the default alias's server.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ._errors import ConfigurationError

__all__ = (
    "DEFAULT_ALIAS",
    "DatabaseSettings",
    "SchemaLines",
    "Source",
    "derive_settings",
    "hide_password",
    "is_alias_name",
    "mask_url",
    "parse_alias_values",
    "resolve_settings",
    "split_alias",
    "split_optional_alias",
)

DEFAULT_ALIAS = "default"
_ALIAS_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.+)$", re.DOTALL)
_ALIAS_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_alias_name(name: str) -> bool:
    """``True`` if ``name`` can be an alias: letters, digits and ``_``, not starting with a
    digit (what ``ALIAS=VALUE`` entries accept, and what a test database name can carry)."""
    return _ALIAS_NAME.fullmatch(name) is not None


@dataclass(frozen=True)
class Source:
    """Where a setting came from, for the report header and error messages.

    :ivar name: the option or variable as the user wrote it, e.g. ``"--db-url"``, ``"db_url"``.
    :ivar kind: one of ``"cli"``, ``"env"``, ``"ini"``, ``"container"``, ``"embedded"``
        (``name`` then says which server and which setting asked for it), ``"default"``, or
        ``"derived"`` for an alias without a URL of its own (``name`` then says what named
        the alias, e.g. ``"db_metadata"`` or ``"@pytest.mark.db in test_x.py::test_y"``).
    """

    name: str
    kind: str

    def __str__(self) -> str:
        return {
            "cli": f"from {self.name}",
            "env": f"from env {self.name}",
            "ini": f"from ini {self.name}",
            "container": f"a testcontainers server, {self.name}, started on first use",
            "embedded": f"{self.name}, started on first use",
            "derived": f"alias named by {self.name}",
        }.get(self.kind, "default")


@dataclass(frozen=True)
class DatabaseSettings:
    """What the user asked for one alias, resolved once per run.

    :ivar alias: the alias name (``"default"`` unless set as ``ALIAS=URL``).
    :ivar url: the server URL as given, or ``None`` for the embedded SQLite database.
        The plugin never writes to, nor drops, the database this URL names.
    :ivar source: where the URL came from.
    :ivar test_database: the test database name asked for with ``--db-test-name``,
        or ``None`` for the default ``test_<name>`` (Django's convention).
    :ivar metadata: import strings ``module:attribute`` of SQLAlchemy ``MetaData`` objects
        whose tables are created in the test database (ini ``db_metadata``).
    :ivar alembic_ini: ``path[::section]`` of the ``alembic.ini`` that builds the schema
        instead of ``create_all`` (ini ``db_alembic_ini``), or ``None``.
    """

    alias: str
    url: URL | None
    source: Source
    test_database: str | None = None
    metadata: tuple[str, ...] = ()
    #: the alias whose test connection and transaction this one shares (``--db-mirror``).
    mirror_of: str | None = None
    alembic_ini: str | None = None

    @property
    def embedded(self) -> bool:
        """``True`` when no server URL was given and an embedded SQLite database is used."""
        return self.url is None and self.mirror_of is None

    @property
    def derived(self) -> bool:
        """``True`` for an alias without a URL of its own: its test database is on the default
        alias's server (:attr:`url` is the default's), or embedded SQLite when the default has
        no server."""
        return self.source.kind == "derived"


@dataclass(frozen=True)
class SchemaLines:
    """The schema settings as written, before they are given to aliases.

    :ivar metadata: alias -> its ``db_metadata`` import strings; key ``None`` holds the lines
        without ``ALIAS=``.
    :ivar alembic: alias -> its ``db_alembic_ini`` value; key ``None`` for the one without
        ``ALIAS=``.

    The rule (Django creates every model in every test database): the default alias gets the
    lines without ``ALIAS=`` and its own ``default=`` lines; any other alias gets its own
    lines if it has any (in either setting), else the lines without ``ALIAS=``.
    """

    metadata: Mapping[str | None, Sequence[str]] = field(default_factory=dict)
    alembic: Mapping[str | None, str] = field(default_factory=dict)

    def named_aliases(self) -> dict[str, str]:
        """alias -> the setting naming it with ``ALIAS=``, for every alias named so."""
        named: dict[str, str] = {}
        for setting, mapping in (("db_metadata", self.metadata), ("db_alembic_ini", self.alembic)):
            for alias in mapping:
                if alias is not None:
                    named.setdefault(alias, setting)
        return named

    def of(self, alias: str) -> tuple[tuple[str, ...], str | None]:
        """``(metadata, alembic_ini)`` of ``alias`` by the rule above."""
        shared = (tuple(self.metadata.get(None, ())), self.alembic.get(None))
        own = (tuple(self.metadata.get(alias, ())), self.alembic.get(alias))
        if alias == DEFAULT_ALIAS:
            return shared[0] + own[0], own[1] or shared[1]
        if alias in self.metadata or alias in self.alembic:
            return own
        return shared


def derive_settings(
    alias: str,
    named_by: str,
    server: URL | None,
    schema: SchemaLines,
    test_database: str | None = None,
) -> DatabaseSettings:
    """The settings of ``alias``, which has no URL of its own.

    :param named_by: what named the alias, for the report (``"db_metadata"``, ...).
    :param server: the default alias's URL: the test database goes on that server (``None``:
        an embedded SQLite database).
    :param schema: the schema lines; the alias's schema follows the rule of
        :class:`SchemaLines`.
    :param test_database: the name asked for with ``--db-test-name ALIAS=NAME``.
    """
    metadata, alembic_ini = schema.of(alias)
    return DatabaseSettings(
        alias=alias,
        url=server,
        source=Source(named_by, "derived"),
        test_database=test_database,
        metadata=metadata,
        alembic_ini=alembic_ini,
    )


def hide_password(text: str, url: URL) -> str:
    """``text`` (e.g. a server's or a library's error message) with the password of ``url``
    replaced by ``***`` wherever it occurs."""
    return text.replace(str(url.password), "***") if url.password else text


def mask_url(url: URL | str) -> str:
    """Render ``url`` with its password replaced by ``***``.

    :param url: a :class:`~sqlalchemy.engine.URL` or a URL string.
    :returns: the URL as a string, safe to print. Query-string values named ``password``
        are masked too (``URL.render_as_string`` alone leaves them).
    """
    if isinstance(url, str):
        try:
            url = make_url(url)
        except (ArgumentError, ValueError):
            return "<unparsable URL>"
    secret_keys = [key for key in url.query if key.lower() in ("password", "passwd", "pwd")]
    if secret_keys:
        url = url.update_query_dict({key: "MASKED" for key in secret_keys})
    return url.render_as_string(hide_password=True).replace("=MASKED", "=***")


def split_alias(entry: str) -> tuple[str, str]:
    """Split one ``[ALIAS=]VALUE`` entry.

    :returns: ``(alias, value)``; without ``ALIAS=`` the alias is ``"default"``. A URL's own
        ``=`` (in its query string) is never taken for an alias separator, because an alias
        is an identifier at the very start of the entry.
    """
    alias, value = split_optional_alias(entry)
    return alias or DEFAULT_ALIAS, value


def split_optional_alias(entry: str) -> tuple[str | None, str]:
    """Like :func:`split_alias`, but the alias is ``None`` for an entry without ``ALIAS=``
    (``db_metadata`` and ``db_alembic_ini`` lines without it apply to several aliases)."""
    entry = entry.strip()
    match = _ALIAS_RE.match(entry)
    if match:
        return match.group(1), match.group(2).strip()
    return None, entry


def parse_alias_values(values: Iterable[str], setting: str) -> dict[str, str]:
    """Split ``[ALIAS=]VALUE`` entries into a mapping alias -> value, one value per alias.

    :param values: the raw entries, one per option use or ini line; blank ones are skipped.
    :param setting: the option or ini name, for error messages.
    :returns: ``{alias: value}``; an entry without ``ALIAS=`` belongs to ``"default"``.
    :raises ConfigurationError: when one alias is given twice in the same setting.
    """
    parsed: dict[str, str] = {}
    for raw in values:
        if not raw.strip():
            continue
        alias, value = split_alias(raw)
        if alias in parsed:
            raise ConfigurationError(
                f"{setting}: alias {alias!r} is given twice; give each alias once "
                f"(use ALIAS=VALUE for aliases other than {DEFAULT_ALIAS!r})."
            )
        parsed[alias] = value
    return parsed


def _parse_url(value: str, alias: str, source: Source) -> URL:
    try:
        url = make_url(value)
    except (ArgumentError, ValueError):  # ValueError: e.g. a port that is not a number
        # The raw value may hold a password: never echo it.
        raise ConfigurationError(
            f"{source.name}: the URL for alias {alias!r} is not a valid SQLAlchemy URL; "
            "expected dialect[+driver]://user:password@host[:port]/database, "
            "e.g. postgresql+psycopg://postgres@127.0.0.1/app or sqlite:///app.db."
        ) from None
    if url.get_backend_name() not in ("sqlite",) and not url.database:
        raise ConfigurationError(
            f"{source.name}: the URL for alias {alias!r} ({mask_url(url)}) names no database; "
            "add one after the host, e.g. .../app. The test database is derived from it."
        )
    return url


def resolve_settings(
    sources: Sequence[tuple[Source, Iterable[str]]],
    *,
    test_names: Mapping[str, str] | None = None,
    schema: SchemaLines | None = None,
    mirrors: tuple[Source, Mapping[str, str]] | None = None,
) -> dict[str, DatabaseSettings]:
    """Resolve the URL settings of every alias.

    :param sources: ``(source, raw entries)`` pairs in precedence order, highest first
        (command line, environment, ini). For each alias the first source naming it wins.
    :param test_names: alias -> test database name (``--db-test-name``).
    :param schema: the ``db_metadata`` and ``db_alembic_ini`` lines (see :class:`SchemaLines`
        for which alias gets which).
    :param mirrors: where mirrors came from, and mirror alias -> target alias
        (``--db-mirror replica=default``): the mirror gets no database of its own.
    :returns: ``{alias: DatabaseSettings}``, always with a ``"default"`` alias (embedded SQLite
        when no source names it), default alias first, then the aliases with a URL, then the
        *derived* ones: named by ``db_metadata``, ``db_alembic_ini`` or ``--db-test-name``
        with ``ALIAS=`` but given no URL (see :func:`derive_settings`), then the mirrors.
    :raises ConfigurationError: for a malformed URL or entry, naming the setting.
    """
    chosen: dict[str, tuple[Source, str]] = {}
    for source, entries in sources:
        for alias, value in parse_alias_values(entries, source.name).items():
            chosen.setdefault(alias, (source, value))
    test_names = dict(test_names or {})
    schema = schema or SchemaLines()
    mirror_source, mirror_map = mirrors or (Source("--db-mirror", "cli"), {})
    named = schema.named_aliases()
    for alias in test_names:
        named.setdefault(alias, "--db-test-name / db_test_name")
    derived = {
        alias: setting
        for alias, setting in sorted(named.items())
        if alias not in chosen and alias not in mirror_map and alias != DEFAULT_ALIAS
    }
    for mirror, target in mirror_map.items():
        if mirror in chosen or mirror == DEFAULT_ALIAS:
            raise ConfigurationError(
                f"{mirror_source.name}: alias {mirror!r} has a URL of its own (or is the default "
                "alias), so it cannot also be a mirror; drop one of the two settings."
            )
        if target != DEFAULT_ALIAS and target not in chosen and target not in derived:
            raise ConfigurationError(
                f"{mirror_source.name}: {mirror}={target}: unknown alias {target!r}; a mirror "
                "needs an alias with a test database (one with a URL, the default alias, or one "
                "named by db_metadata / db_alembic_ini / --db-test-name) to share."
            )
    result: dict[str, DatabaseSettings] = {}
    for alias in [DEFAULT_ALIAS, *sorted(set(chosen) - {DEFAULT_ALIAS})]:
        if alias in chosen:
            source, value = chosen[alias]
            url: URL | None = _parse_url(value, alias, source)
        else:
            source, url = Source("", "default"), None
        metadata, alembic_ini = schema.of(alias)
        result[alias] = DatabaseSettings(
            alias=alias,
            url=url,
            source=source,
            test_database=test_names.get(alias),
            metadata=metadata,
            alembic_ini=alembic_ini,
        )
    for alias, setting in derived.items():
        result[alias] = derive_settings(
            alias, setting, result[DEFAULT_ALIAS].url, schema, test_names.get(alias)
        )
    for mirror in sorted(mirror_map):
        result[mirror] = DatabaseSettings(
            alias=mirror, url=None, source=mirror_source, mirror_of=mirror_map[mirror]
        )
    return result
