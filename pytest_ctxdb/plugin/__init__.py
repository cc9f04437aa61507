"""The pytest face of pytest-ctxdb (entry point ``ctxdb``; ``-p no:ctxdb`` disables it).

Hooks, options and fixtures only: every decision about databases and transactions is made
by the runtime packages (:mod:`pytest_ctxdb.provision`, :mod:`pytest_ctxdb.binding`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import sys
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from .._errors import ConfigurationError, CtxdbError
from .._settings import DEFAULT_ALIAS, Source, mask_url
from ..context import _seam
from ..provision import (
    ContainerServer,
    EmbeddedServer,
    default_template_directory,
    make_sqlite_directory,
    project_key,
)
from ._fixtures import (
    ASYNC_FIXTURES,
    SYNC_FIXTURES,
    _ctxdb_anyio_binding,
    _ctxdb_async,
    _ctxdb_binding,
    _ctxdb_state,
    async_db_connection,
    async_db_engine,
    async_db_session,
    async_db_sessions,
    async_db_setup_session,
    db_connection,
    db_engine,
    db_session,
    db_sessions,
    db_setup_session,
    make_plan,
)
from ._layers import SETUP_SESSIONS, WIDER_SCOPES, open_binding_for, run_scoped, wants_layer
from ._marker import MARKER_HELP, MarkerError, read_marker
from ._options import add_options, read_schema_lines, read_settings
from ._state import STATE_KEY, RunState, activate, deactivate

#: the run's id, shared with xdist workers through ``workerinput``.
RUN_ID_KEY = pytest.StashKey[str]()

try:
    import pytest_asyncio  # noqa: F401
except ImportError:  # the async fixtures then fail with the extra to install
    pass
else:
    from ._async_fixtures import *

__all__ = (
    "STATE_KEY",
    "_ctxdb_anyio_binding",
    "_ctxdb_async",
    "_ctxdb_binding",
    "_ctxdb_state",
    "async_db_connection",
    "async_db_engine",
    "async_db_session",
    "async_db_sessions",
    "async_db_setup_session",
    "db_connection",
    "db_engine",
    "db_session",
    "db_sessions",
    "db_setup_session",
    "pytest_addhooks",
    "pytest_addoption",
    "pytest_collection_finish",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_fixture_setup",
    "pytest_report_collectionfinish",
    "pytest_report_header",
    "pytest_runtest_setup",
    "pytest_runtestloop",
    "pytest_sessionfinish",
    "pytest_unconfigure",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import _hookspecs

    pluginmanager.add_hookspecs(_hookspecs)


def _spare_clones(config: pytest.Config, workers: int) -> int:
    """ini ``db_spare_clones``: ``auto`` is one per xdist worker of the run (``workers``).

    :raises pytest.UsageError: neither ``auto`` nor a number >= 0.
    """
    value = str(config.getini("db_spare_clones")).strip().lower()
    if value == "auto":
        return workers
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        raise pytest.UsageError(
            f"db_spare_clones: {value!r} is not 'auto' or a number of spare clones >= 0 "
            "(0 turns spare clones off)"
        )
    return count


def _detach_spares(config: pytest.Config) -> bool:
    """ini ``db_spare_clones_detach``: ``auto`` detaches when pytest writes to a terminal
    (a developer waiting for the prompt; not CI, not a pytest-xdist worker).

    :raises pytest.UsageError: not ``auto``, ``true`` or ``false``.
    """
    value = str(config.getini("db_spare_clones_detach")).strip().lower()
    if value == "auto":
        stdout = sys.__stdout__
        return stdout is not None and stdout.isatty()
    if value in ("true", "false"):
        return value == "true"
    raise pytest.UsageError(
        f"{value!r} is not a valid db_spare_clones_detach. Valid values: auto, true, false."
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    settings = read_settings(config)

    def schema_hook(connection: object, alias: str) -> None:
        config.hook.pytest_ctxdb_setup_schema(connection=connection, alias=alias)

    def fingerprint_inputs(alias: str) -> tuple[str, ...]:
        return _fingerprint_inputs(config, alias)

    # On a pytest-xdist worker, each worker gets its own test database (test_app_<run>_gw0,
    # ...); the run id comes from the controller so that a run's databases share it.
    workerinput = getattr(config, "workerinput", None)
    suffix = f"_{workerinput['workerid']}" if workerinput else ""
    run_id = (workerinput or {}).get("ctxdb_run_id") or uuid.uuid4().hex[:8]
    config.stash[RUN_ID_KEY] = run_id
    if config.pluginmanager.hasplugin("xdist") and not config.pluginmanager.has_plugin(
        "ctxdb-xdist"
    ):
        config.pluginmanager.register(_XdistHooks(), "ctxdb-xdist")
    sweep_age: float | None
    try:
        sweep_age = float(config.getini("db_sweep_age"))
    except ValueError:
        raise pytest.UsageError(
            f"db_sweep_age: {config.getini('db_sweep_age')!r} is not a number of seconds"
        ) from None
    if not config.getini("db_sweep"):
        sweep_age = None  # db_sweep = false: nothing is swept
    workers = int((workerinput or {}).get("workercount", 1))
    spares = _spare_clones(config, workers)
    container, settings = _container(config, settings, run_id)
    embedded, settings = _embedded(config, settings, container)
    hook_sources = tuple(
        impl.function
        for impl in config.pluginmanager.hook.pytest_ctxdb_setup_schema.get_hookimpls()
    )
    project = project_key(config.rootpath)
    try:
        # Builds each TestDatabase: validates dialect and names; contacts no server.
        state = RunState(
            settings,
            make_sqlite_directory(project),
            schema_hook,
            name_suffix=suffix,
            sessionmaker_specs=tuple(config.getini("db_sessionmakers")),
            engine_specs=tuple(config.getini("db_engines")),
            flask_specs=tuple(config.getini("db_flask_sqlalchemy")),
            advanced_alchemy_specs=tuple(config.getini("db_advanced_alchemy")),
            session_class_specs=tuple(config.getini("db_session_class")),
            block_access=bool(config.getini("db_block_access")),
            run_id=run_id,
            rebuild=bool(config.option.db_create),
            reuse=bool(config.option.db_reuse),
            sweep_age=sweep_age,
            project=project,
            fingerprint_inputs=fingerprint_inputs,
            spares=0 if container is not None else spares,
            workers=workers,
            detach_spares=container is None and _detach_spares(config),
            schema_lines=read_schema_lines(config),
            hook_sources=hook_sources,
            container=container or embedded,
            skip_without_container=config.getini("db_container_missing") == "skip",
        )
    except CtxdbError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[STATE_KEY] = state
    activate(state)
    _seam.protect_databases(_url_databases(state))


def _url_databases(state: RunState) -> list[tuple[str, str, str, str]]:
    """The databases the URL settings name (the app's own), for
    :func:`pytest_ctxdb.context._seam.protect_databases`; a container's are throwaway, and
    the embedded server's belong to the plugin."""
    found = []
    for settings in state.settings.values():
        url = settings.url
        if url is None or not url.database or settings.source.kind in ("container", "embedded"):
            continue
        found.append((url.get_backend_name(), url.database, mask_url(url), settings.source.name))
    return found


def _fingerprint_inputs(config: pytest.Config, alias: str) -> tuple[str, ...]:
    """The values the ``pytest_ctxdb_fingerprint`` implementations return for ``alias``.

    :raises ConfigurationError: one returned something other than a string, a list of
        strings or ``None`` (the run stops with a usage error naming the hook).
    """
    values: list[str] = []
    for result in config.hook.pytest_ctxdb_fingerprint(alias=alias):
        items = [result] if isinstance(result, str) else result
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
            raise ConfigurationError(
                f"pytest_ctxdb_fingerprint returned {type(result).__name__} {result!r:.80} for "
                f"alias {alias!r}; return a string, a list of strings or None."
            )
        values.extend(items)
    return tuple(values)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE_KEY, None)
    if state is not None:
        deactivate(state)


def _container(
    config: pytest.Config, settings: dict[str, Any], run_id: str
) -> tuple[ContainerServer | None, dict[str, Any]]:
    """The ``--db-container`` server, and the settings with the default alias pointing at it."""
    kind = config.option.db_container or config.getini("db_container") or None
    missing = config.getini("db_container_missing")
    if missing not in ("error", "skip"):
        raise pytest.UsageError(
            f"{missing!r} is not a valid db_container_missing. Valid values: error, skip."
        )
    default = settings[DEFAULT_ALIAS]
    if kind is None or not default.embedded:
        return None, settings  # a URL wins: testcontainers is never imported then
    image = config.option.db_container_image or config.getini("db_container_image") or None
    try:
        server = ContainerServer(kind, image, default_template_directory(), run_id)
    except CtxdbError as exc:
        raise pytest.UsageError(str(exc)) from None
    name = "--db-container" if config.option.db_container else "db_container"
    settings = dict(settings)
    settings[DEFAULT_ALIAS] = dataclasses.replace(
        default,
        url=server.placeholder_url,
        source=Source(f"{name} {kind} ({server.image})", "container"),
    )
    return server, settings


def _embedded(
    config: pytest.Config, settings: dict[str, Any], container: ContainerServer | None
) -> tuple[EmbeddedServer | None, dict[str, Any]]:
    """The ``--db-embedded`` server, and the settings with the default alias pointing at it.

    A URL for the default alias wins (nothing embedded is looked for then).

    :raises pytest.UsageError: an unknown kind, ``--db-container`` given too, a bad
        ``db_embedded_idle_timeout``, or the ``embedded`` extra is not installed.
    """
    kind = config.option.db_embedded or config.getini("db_embedded") or None
    if kind is None:
        return None, settings
    name = "--db-embedded" if config.option.db_embedded else "db_embedded"
    if container is not None:
        raise pytest.UsageError(
            f"{name} {kind} and --db-container / db_container both ask for the default "
            "alias's server; give one of them."
        )
    default = settings[DEFAULT_ALIAS]
    if not default.embedded:
        return None, settings
    directory = str(config.getini("db_embedded_dir")).strip()
    idle = str(config.getini("db_embedded_idle_timeout")).strip()
    try:
        idle_timeout = float(idle)
    except ValueError:
        idle_timeout = -1.0
    if not idle_timeout >= 0:  # also NaN
        raise pytest.UsageError(
            f"db_embedded_idle_timeout: {idle!r} is not a number of seconds >= 0 "
            "(0 stops the server at the end of the last run)"
        )
    try:
        server = EmbeddedServer(
            kind,
            config.rootpath / directory if directory else None,
            setting=name,
            idle_timeout=idle_timeout,
        )
    except CtxdbError as exc:
        raise pytest.UsageError(str(exc)) from None
    settings = dict(settings)
    settings[DEFAULT_ALIAS] = dataclasses.replace(
        default,
        url=server.placeholder_url,
        source=Source(f"{server.description} ({name} {kind})", "embedded"),
    )
    return server, settings


def _describe(state: RunState, alias: str) -> str:
    """The report line of ``alias``: its test database, or what it mirrors."""
    settings = state.settings[alias]
    if settings.mirror_of is not None:
        return (
            f"ctxdb: {alias}: mirror of {settings.mirror_of} ({settings.source}; shares its "
            "test connection and transaction)"
        )
    return f"ctxdb: {state.database(alias).describe()}"


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = config.stash[STATE_KEY]
    return [_describe(state, alias) for alias in state.settings]


def pytest_report_collectionfinish(config: pytest.Config) -> list[str]:
    """One line per alias a ``db`` marker named without it being configured (so that a typo
    in ``using=`` is seen): it got a test database of its own."""
    state = config.stash.get(STATE_KEY, None)
    if state is None:
        return []
    return [_describe(state, alias) for alias in state.added_aliases]


#: the error a test gets when it touches a database without asking for one.
ACCESS_NOT_ALLOWED = (
    "Database access not allowed, use @pytest.mark.db or the db_session fixture "
    "(or set ini db_block_access = false)."
)
_USES_DB = pytest.StashKey[bool]()


def _uses_db(item: pytest.Item) -> bool:
    names = getattr(item, "fixturenames", ())
    return (
        item.get_closest_marker("db") is not None
        or not SYNC_FIXTURES.isdisjoint(names)
        or not ASYNC_FIXTURES.isdisjoint(names)
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Note which tests use a database; a test with the ``db`` marker but no database fixture
    still gets its binding."""
    for item in items:
        item.stash[_USES_DB] = _uses_db(item)
        names = getattr(item, "fixturenames", None)
        if names is None:
            continue
        setup = [name for name in SETUP_SESSIONS if name in names]
        if setup and not any(
            name in SYNC_FIXTURES or name in ASYNC_FIXTURES
            for name in names
            if name not in SETUP_SESSIONS
        ):
            # What a test writes with a setup session is rolled back with the test.
            names.append("_ctxdb_binding" if "db_setup_session" in setup else "_ctxdb_async")
            continue
        if item.get_closest_marker("db") is None:
            continue
        if SYNC_FIXTURES.isdisjoint(names) and ASYNC_FIXTURES.isdisjoint(names):
            is_async = inspect.iscoroutinefunction(getattr(item, "obj", None))
            names.append("_ctxdb_async" if is_async else "_ctxdb_binding")


@pytest.hookimpl(tryfirst=True)  # before the terminal reporter's, which asks for the report
def pytest_collection_finish(session: pytest.Session) -> None:
    """An alias that a ``db`` marker of a selected test names (or a bind key of ini
    ``db_flask_sqlalchemy``) and that is not configured gets a test database of its own (see
    ``RunState.add_alias``), before any is provisioned; ``pytest_report_collectionfinish``
    names it."""
    state = session.config.stash.get(STATE_KEY, None)
    if state is not None:
        # Bind keys of ini db_flask_sqlalchemy first (the test modules imported the app's
        # models by now); a bad import string is reported once by pytest_runtestloop.
        with contextlib.suppress(CtxdbError):
            state.add_adapter_aliases()
        for item in session.items:
            _add_marker_aliases(item, state)


def _add_marker_aliases(item: pytest.Item, state: RunState) -> None:
    """Add the aliases the ``db`` marker of ``item`` names that are not configured.

    :raises pytest.UsageError: such an alias cannot get a test database.
    """
    try:
        marker = read_marker(item, state.aliases)
    except MarkerError:
        return  # that test fails on its own, with the marker's message
    if marker is None:
        return
    for alias in marker.using:
        try:
            state.add_alias(alias, f"@pytest.mark.db in {item.nodeid}")
        except CtxdbError as exc:
            raise pytest.UsageError(f"@pytest.mark.db in {item.nodeid}: {exc}") from None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Block database access for a test that asked for none (and its fixtures' setup and
    finalizers, which run in its phases); allow it for the others."""
    state = item.config.stash.get(STATE_KEY, None)
    if state is None:
        return
    state.current_item = item
    uses_db = item.stash.get(_USES_DB, None)
    if uses_db is None:
        uses_db = _uses_db(item)
    _seam.set_ambient(state.ambient_source if uses_db else None)
    if state.block_access:
        _seam.block(None if uses_db else ACCESS_NOT_ALLOWED)
    if uses_db or state.block_access:
        with contextlib.suppress(CtxdbError):  # a bad import string fails elsewhere, once
            state.guard_adapters()


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Any:
    """Run the set-up and teardown of class-, module-, package- and session-scoped fixtures
    in their scope's layer (see :mod:`pytest_ctxdb.plugin._layers`), once the run has test
    databases; a function-scoped fixture using a setup session gets the test's binding
    first. Other function-scoped fixtures cost two comparisons."""
    if fixturedef.scope not in WIDER_SCOPES:
        if not SETUP_SESSIONS.isdisjoint(fixturedef.argnames):
            state = request.config.stash.get(STATE_KEY, None)
            if state is not None:
                open_binding_for(state, fixturedef.argnames)
        return (yield)
    state = request.config.stash.get(STATE_KEY, None)
    if state is None or not state.provisioned or not wants_layer(fixturedef.argname):
        return (yield)
    scoped = run_scoped(state, request, fixturedef)
    scoped.enter()
    try:
        result = yield
    except BaseException:
        scoped.leave(failed=True)
        raise
    scoped.leave()
    fixturedef.addfinalizer(scoped.enter)  # before its teardown (finalizers run LIFO)
    return result


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    """Provision the databases the selected tests need, once, before the first test.

    A failure (missing driver, unreachable server, bad schema import string) ends the run
    with one usage error instead of one error per test. On a pytest-xdist worker, where a
    usage error would crash the worker and xdist would report only the test it was given,
    the worker runs no test and stops the session with the message instead: xdist ends the
    run with ``Interrupted: pytest-ctxdb: ...``. A run whose selected tests use no database
    fixture contacts no server.
    """
    if session.config.option.collectonly or not session.items:
        return None
    state = session.config.stash[STATE_KEY]
    needs_sync = needs_async = False
    aliases: dict[str, None] = {}
    for item in session.items:
        names = getattr(item, "fixturenames", ())
        uses_sync = not SYNC_FIXTURES.isdisjoint(names)
        uses_async = not ASYNC_FIXTURES.isdisjoint(names)
        if not (uses_sync or uses_async or item.get_closest_marker("db")):
            continue
        needs_sync = needs_sync or uses_sync or not uses_async
        needs_async = needs_async or uses_async
        try:
            aliases.update(dict.fromkeys(make_plan(item, state).physical_aliases()))
        except MarkerError:
            pass  # that test fails on its own, with the marker's message
    if not aliases:
        return None
    try:
        state.add_adapter_aliases()
        state.provision(list(aliases), sync=needs_sync, async_=needs_async)
        state.adapters()
        state.session_classes()
    except CtxdbError as exc:
        if getattr(session.config, "workerinput", None) is not None:
            session.shouldstop = f"pytest-ctxdb: {exc}"
            return True  # no test runs on this worker
        raise pytest.UsageError(f"pytest-ctxdb: {exc}") from None
    return None


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    state = session.config.stash.get(STATE_KEY, None)
    if state is None:
        return
    seam = sys.modules.get("pytest_ctxdb.context._seam")
    if seam is not None:
        seam.block(None)
        seam.set_ambient(None)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")

    def report(message: str) -> None:
        if reporter is not None:
            reporter.write_line(f"pytest-ctxdb: {message}", red=True)

    state.close(report)
    if isinstance(state.container, EmbeddedServer):
        _release_embedded(state, state.container, report)
    elif state.container is not None and getattr(session.config, "workerinput", None) is None:
        try:
            state.container.stop()  # the run's owner stops it, after every worker is done
        except Exception as exc:  # noqa: BLE001 - report, do not mask the run's outcome
            report(f"stopping the container failed: {exc}")


def _release_embedded(
    state: RunState, server: EmbeddedServer, report: Callable[[str], Any]
) -> None:
    """Every process releases its lease on the embedded server (after the last one it stops
    when idle); with ``--db-reuse`` it keeps running and the kept databases' ``psql`` is
    shown."""
    try:
        server.release(keep_running=state.reuse)
    except CtxdbError as exc:  # report, do not mask the run's outcome
        report(str(exc))
    if state.reuse:
        for database in state.databases.values():
            if database.created and database.url.query.get("host") == str(
                server.socket_directory
            ):
                report(
                    f"--db-reuse: {server.description} keeps running (until the next run "
                    f"ends); connect with: {server.psql_command(database.name)}"
                )


class _XdistHooks:
    """Registered only when pytest-xdist is installed (its hooks do not exist otherwise)."""

    @staticmethod
    def pytest_configure_node(node: object) -> None:
        config = node.config  # type: ignore[attr-defined]
        node.workerinput["ctxdb_run_id"] = config.stash[RUN_ID_KEY]  # type: ignore[attr-defined]
