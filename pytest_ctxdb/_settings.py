"""Resolved settings: one frozen :class:`DatabaseSettings` per alias.

The pytest plugin collects raw values (``--db-url``, env ``PYTEST_CTXDB_URL``, ini ``db_url``, ...)
and calls :func:`resolve_settings` once; nothing here imports pytest.

Precedence, per alias: the command line wins over the environment, which wins over the ini file.
With no URL at all for the default alias, an embedded SQLite file database is used.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ._errors import ConfigurationError

__all__ = (
    "DEFAULT_ALIAS",
    "DatabaseSettings",
    "Source",
    "hide_password",
    "mask_url",
    "parse_alias_values",
    "resolve_settings",
    "split_alias",
)

DEFAULT_ALIAS = "default"
_ALIAS_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.+)$", re.DOTALL)


@dataclass(frozen=True)
class Source:
    """Where a setting came from, for the report header and error messages.

    :ivar name: the option or variable as the user wrote it, e.g. ``"--db-url"``, ``"db_url"``.
    :ivar kind: one of ``"cli"``, ``"env"``, ``"ini"``, ``"container"``, ``"default"``.
    """

    name: str
    kind: str

    def __str__(self) -> str:
        return {
            "cli": f"from {self.name}",
            "env": f"from env {self.name}",
            "ini": f"from ini {self.name}",
            "container": f"a testcontainers server, {self.name}, started on first use",
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
    """

    alias: str
    url: URL | None
    source: Source
    test_database: str | None = None
    metadata: tuple[str, ...] = ()
    #: the alias whose test connection and transaction this one shares (``--db-mirror``).
    mirror_of: str | None = None

    @property
    def embedded(self) -> bool:
        """``True`` when no server URL was given and an embedded SQLite database is used."""
        return self.url is None and self.mirror_of is None


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
    entry = entry.strip()
    match = _ALIAS_RE.match(entry)
    if match:
        return match.group(1), match.group(2).strip()
    return DEFAULT_ALIAS, entry


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
    metadata: Mapping[str, Sequence[str]] | None = None,
    mirrors: tuple[Source, Mapping[str, str]] | None = None,
) -> dict[str, DatabaseSettings]:
    """Resolve the URL settings of every alias.

    :param sources: ``(source, raw entries)`` pairs in precedence order, highest first
        (command line, environment, ini). For each alias the first source naming it wins.
    :param test_names: alias -> test database name (``--db-test-name``).
    :param metadata: alias -> ``module:attribute`` import strings (ini ``db_metadata``).
    :param mirrors: where mirrors came from, and mirror alias -> target alias
        (``--db-mirror replica=default``): the mirror gets no database of its own.
    :returns: ``{alias: DatabaseSettings}``, always with a ``"default"`` alias (embedded SQLite
        when no source names it), default alias first.
    :raises ConfigurationError: for a malformed URL or entry, naming the setting.
    """
    chosen: dict[str, tuple[Source, str]] = {}
    for source, entries in sources:
        for alias, value in parse_alias_values(entries, source.name).items():
            chosen.setdefault(alias, (source, value))
    test_names = dict(test_names or {})
    metadata = dict(metadata or {})
    mirror_source, mirror_map = mirrors or (Source("--db-mirror", "cli"), {})
    for mirror, target in mirror_map.items():
        if mirror in chosen or mirror == DEFAULT_ALIAS:
            raise ConfigurationError(
                f"{mirror_source.name}: alias {mirror!r} has a URL of its own (or is the default "
                "alias), so it cannot also be a mirror; drop one of the two settings."
            )
        if target != DEFAULT_ALIAS and target not in chosen:
            raise ConfigurationError(
                f"{mirror_source.name}: {mirror}={target}: unknown alias {target!r}; a mirror "
                "needs an alias with a URL (or the default alias) to share."
            )
    for setting, mapping in (("--db-test-name", test_names), ("db_metadata", metadata)):
        unknown = sorted(set(mapping) - set(chosen) - set(mirror_map) - {DEFAULT_ALIAS})
        if unknown:
            raise ConfigurationError(
                f"{setting}: unknown alias {unknown[0]!r}; known aliases: "
                f"{', '.join(sorted(set(chosen) | {DEFAULT_ALIAS}))}. Define it with --db-url ALIAS=URL."
            )
    result: dict[str, DatabaseSettings] = {}
    for alias in [DEFAULT_ALIAS, *sorted(set(chosen) - {DEFAULT_ALIAS})]:
        if alias in chosen:
            source, value = chosen[alias]
            url: URL | None = _parse_url(value, alias, source)
        else:
            source, url = Source("", "default"), None
        result[alias] = DatabaseSettings(
            alias=alias,
            url=url,
            source=source,
            test_database=test_names.get(alias),
            metadata=tuple(metadata.get(alias, ())),
        )
    for mirror in sorted(mirror_map):
        result[mirror] = DatabaseSettings(
            alias=mirror, url=None, source=mirror_source, mirror_of=mirror_map[mirror]
        )
    return result
