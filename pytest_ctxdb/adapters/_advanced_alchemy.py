"""advanced-alchemy configs bound to the test connection (ini ``db_advanced_alchemy``, and
detection when the app imports the library).

advanced-alchemy (Litestar's default, also for FastAPI, Flask, Sanic, Starlette) keeps one
engine per config object (``SQLAlchemyAsyncConfig`` / ``SQLAlchemySyncConfig`` and the
framework extensions' subclasses): ``config.get_engine()`` makes it once and stores it in
``config.engine_instance``; ``create_session_maker()`` (what ``get_session()``,
``provide_session``, the Litestar plugin's per-request sessions and its lifespan use) makes an
``async_sessionmaker`` / ``sessionmaker`` bound to that engine object. So binding the engine
object in place (:class:`~pytest_ctxdb.adapters.EngineBinding`, as ``db_engines`` does) is
enough: every session the library makes runs on the test connection with the library's own
commit / rollback / close logic (Litestar's ``before_send_handler="autocommit"`` included),
where commits release savepoints. Nothing of the library's is replaced but two methods of its
base config class, wrapped for the run:

* ``GenericSQLAlchemyConfig.__post_init__``: each config made from then on is tracked
  (configs made earlier are found once, when the library is first seen imported, by a scan
  of the garbage collector's objects). If the library is not imported when the run's adapters
  load, an import hook (a ``sys.meta_path`` finder) wraps them right after its base config
  module is executed: an app first imported during a test (a fixture importing it lazily)
  would otherwise make configs whose engines were neither bound nor guarded;
* ``GenericSQLAlchemyConfig.get_engine``: an engine a config makes while the run goes on is
  guarded by escape detection at once, and bound at once when a test binding of its kind
  (async config: the async one; sync config: the sync one) is open.

A config named in ini ``db_advanced_alchemy`` is tracked from the start and its engine is made
(``get_engine()``, which does not connect) when the run's adapters are loaded.

Every config is bound to the default alias's test connection (its ``bind_key`` is not mapped
to an alias). Configs with ``routing_config`` (read replicas: engines the library makes inside
its routing session maker) are refused.

advanced-alchemy is never imported here: the module is looked up in ``sys.modules``.
"""

from __future__ import annotations

import gc
import importlib.abc
import importlib.machinery
import sys
import weakref
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from .._errors import ConfigurationError, ContextError
from .._settings import DEFAULT_ALIAS
from ._engines import EngineBinding, bound_engine
from ._patches import Adapter, MakeSession, _runs_on, _sync_connection

__all__ = (
    "AdvancedAlchemyAdapter",
    "AdvancedAlchemyTracker",
    "advanced_alchemy_adapters",
    "is_config",
)

#: the module of advanced-alchemy's base config class.
_COMMON = "advanced_alchemy.config.common"


def _base_class() -> type | None:
    """``GenericSQLAlchemyConfig`` if the app imported advanced-alchemy, else ``None``."""
    module = sys.modules.get(_COMMON)
    found = getattr(module, "GenericSQLAlchemyConfig", None)
    return found if isinstance(found, type) else None


def is_config(obj: object) -> bool:
    """``True`` if ``obj`` is an advanced-alchemy SQLAlchemy config (sync or async)."""
    base = _base_class()
    return base is not None and isinstance(obj, base)


def _is_async(config: Any) -> bool:
    maker_class = getattr(config, "session_maker_class", None)
    return isinstance(maker_class, type) and issubclass(maker_class, async_sessionmaker)


class _ImportWatch(importlib.abc.MetaPathFinder):
    """Calls ``on_import`` right after advanced-alchemy's base config module is executed, so
    that configs an app makes when it first imports the library *during a test* (a fixture
    importing the app lazily) are tracked, guarded and bound like the others."""

    def __init__(self, on_import: Callable[[], None]) -> None:
        self.on_import = on_import

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _COMMON:
            return None
        spec: importlib.machinery.ModuleSpec | None = None
        for finder in sys.meta_path:
            find_spec = None if finder is self else getattr(finder, "find_spec", None)
            spec = None if find_spec is None else find_spec(fullname, path, target)
            if spec is not None:
                break
        if spec is None:
            return None
        loader = spec.loader
        exec_module = getattr(loader, "exec_module", None)
        if exec_module is None:
            return spec
        on_import = self.on_import

        def exec_then_hook(module: ModuleType) -> None:
            exec_module(module)
            on_import()

        setattr(loader, "exec_module", exec_then_hook)  # noqa: B010 - the loader object's own
        return spec


class AdvancedAlchemyTracker:
    """The advanced-alchemy configs of the run, and the hooks that find them.

    Shared by the run's two :class:`AdvancedAlchemyAdapter` (one sync, one async).

    :param configs: ``(ini line, config)`` of ini ``db_advanced_alchemy``.
    :raises ConfigurationError: a line names no advanced-alchemy config, or one with
        ``routing_config``.
    """

    def __init__(self, configs: Iterable[tuple[str, Any]] = ()) -> None:
        #: id -> (weak reference to the config, label)
        self._configs: dict[int, tuple[weakref.ref[Any], str]] = {}
        self._hooked: type | None = None
        self._originals: dict[str, Any] = {}
        #: the adapters (sync, async) told about engines made while the run goes on.
        self.adapters: list[AdvancedAlchemyAdapter] = []
        self._watch: _ImportWatch | None = None
        for spec, config in configs:
            if not is_config(config):
                raise ConfigurationError(
                    f"db_advanced_alchemy: {spec!r} is a {type(config).__name__}, not an "
                    "advanced-alchemy SQLAlchemyAsyncConfig or SQLAlchemySyncConfig (e.g. "
                    "myapp.db:alchemy_config)."
                )
            if getattr(config, "routing_config", None) is not None:
                raise ConfigurationError(
                    f"db_advanced_alchemy: {spec!r} has a routing_config (read replicas), "
                    "whose engines pytest-ctxdb cannot bind; give the test configuration a "
                    "connection_string instead."
                )
            self._add(config, f"db_advanced_alchemy {spec}")
            try:
                config.get_engine()  # made now (no connection), bound and guarded from the start
            except Exception as exc:  # noqa: BLE001 - the library's own configuration error
                raise ConfigurationError(
                    f"db_advanced_alchemy: {spec!r}: get_engine() failed: "
                    f"{type(exc).__name__}: {exc}"
                ) from None
        self.hook()
        if self._hooked is None:  # not imported yet: hook as soon as it is
            self._watch = _ImportWatch(self.hook)
            sys.meta_path.insert(0, self._watch)

    def _unwatch(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None and watch in sys.meta_path:
            sys.meta_path.remove(watch)

    # -- finding configs -------------------------------------------------------------------

    def _add(self, config: Any, label: str | None = None) -> bool:
        key = id(config)
        known = self._configs.get(key)
        if known is not None and known[0]() is config:
            return False
        configs = self._configs

        def forget(_ref: weakref.ref[Any]) -> None:
            configs.pop(key, None)

        configs[key] = (
            weakref.ref(config, forget),
            label or f"advanced-alchemy {type(config).__qualname__} (detected)",
        )
        return True

    def configs(self) -> list[tuple[Any, str]]:
        """The live configs known so far, with their labels."""
        found = []
        for ref, label in list(self._configs.values()):
            config = ref()
            if config is not None:
                found.append((config, label))
        return found

    def hook(self) -> None:
        """If the app has imported advanced-alchemy: wrap ``__post_init__`` and ``get_engine``
        of its base config class (once per run) and find the configs made before. Cheap when
        done or when the library is not imported (one ``sys.modules`` look-up)."""
        if self._hooked is not None:
            return
        base = _base_class()
        if base is None:
            return
        self._unwatch()
        self._hooked = base
        original_init = self._originals["__post_init__"] = base.__dict__["__post_init__"]
        original_get_engine = self._originals["get_engine"] = base.__dict__["get_engine"]
        tracker = self

        def __post_init__(config: Any) -> None:
            original_init(config)
            if tracker._add(config):
                tracker._new_engine(config)  # an engine_instance given to it

        def get_engine(config: Any) -> Any:
            engine = original_get_engine(config)
            tracker._add(config)
            tracker._new_engine(config)
            return engine

        base.__post_init__ = __post_init__  # type: ignore[attr-defined]
        base.get_engine = get_engine  # type: ignore[attr-defined]
        for obj in gc.get_objects():  # configs made before the library was seen
            if isinstance(obj, base):
                self._add(obj)

    def close(self) -> None:
        """Undo the class hooks (end of the run); a hook wrapped since is left in place."""
        self._unwatch()
        base, self._hooked = self._hooked, None
        if base is None:
            return
        originals, self._originals = self._originals, {}
        for name, original in originals.items():
            current = base.__dict__.get(name)
            if getattr(current, "__qualname__", "").startswith(
                f"{AdvancedAlchemyTracker.__qualname__}.hook."
            ):
                setattr(base, name, original)

    def _new_engine(self, config: Any) -> None:
        for adapter in self.adapters:
            adapter.new_engine(config)


class AdvancedAlchemyAdapter(Adapter):
    """Binds the engines of the run's advanced-alchemy configs of one kind to the test
    connection of the default alias: async configs in tests with an async binding, sync
    configs in tests with a sync binding (see the module docstring).

    :param tracker: the run's configs (shared with the adapter of the other kind).
    :param is_async: which kind of config this adapter binds.
    """

    def __init__(self, tracker: AdvancedAlchemyTracker, is_async: bool) -> None:
        self.tracker = tracker
        self.is_async = is_async
        kind, fixture = ("async", "async_db_session") if is_async else ("sync", "db_session")
        article = "an" if is_async else "a"
        self.label = f"advanced-alchemy ({kind} configs)"
        self.escape_hint = (
            f"advanced-alchemy's {kind} configs are bound in tests with {article} {kind} database "
            f"binding of the default alias (request {fixture}, or use @pytest.mark.db); "
            "fixtures that run before it opens (module or session scope) cannot use them."
            + (
                " An async app must run in the test's event loop: drive it with "
                "httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) inside "
                "`async with app.lifespan():`, not Litestar 2's (Async)TestClient."
                if is_async
                else ""
            )
        )
        #: binding sync configs goes through apply_aliases (lazily opened connection).
        self.binds_aliases = not is_async
        #: the test connection (opened on first call), while a test binding is open.
        self._connection_of: Callable[[], Connection | None] | None = None
        self._bindings: list[EngineBinding] = []
        #: engine -> the test connection its sessions were checked on (reused across tests).
        self._sessions_checked: weakref.WeakKeyDictionary[Engine, Connection] = (
            weakref.WeakKeyDictionary()
        )
        tracker.adapters.append(self)

    def _mine(self) -> list[tuple[Any, str]]:
        return [(c, label) for c, label in self.tracker.configs() if _is_async(c) == self.is_async]

    @staticmethod
    def _engine_of(config: Any) -> Engine | None:
        engine = vars(config).get("engine_instance")
        if isinstance(engine, AsyncEngine):
            return engine.sync_engine
        return engine if isinstance(engine, Engine) else None

    def engines(self) -> Iterable[Engine]:
        self.tracker.hook()
        found = (self._engine_of(config) for config, _label in self._mine())
        return [engine for engine in found if engine is not None]

    def guard_engines(self) -> None:
        from ..context import _seam

        self.tracker.hook()
        for config, label in self._mine():
            engine = self._engine_of(config)
            if engine is not None:
                _seam.watch_engine(engine, f"the engine of {label}", hint=self.escape_hint)

    def apply(self, connection: Any, make_session: MakeSession) -> None:
        """Bind the async configs to the test's async connection (already open)."""
        trunk = _sync_connection(connection)
        self._open(lambda: trunk)

    def apply_aliases(
        self,
        connection_of: Callable[[str], Connection],
        refused: Callable[[ContextError], ContextError],
    ) -> None:
        """Bind the sync configs to the default alias's sync test connection, opened when the
        first config needs it (a config made during the test included). A test that did not
        declare the default alias leaves them unbound and guarded."""

        def trunk() -> Connection | None:
            try:
                return connection_of(DEFAULT_ALIAS)
            except ContextError:
                return None

        self._open(trunk)

    def _open(self, trunk: Callable[[], Connection | None]) -> None:
        self.restore()
        self.tracker.hook()
        self._connection_of = trunk
        for config, label in self._mine():
            self._bind(config, label, verify_sessions=True)

    def new_engine(self, config: Any) -> None:
        """A config of the run just made (or was given) an engine: guard it, and bind it if a
        test binding of its kind is open."""
        if _is_async(config) != self.is_async:
            return
        engine = self._engine_of(config)
        if engine is None:
            return
        label = next((lb for c, lb in self.tracker.configs() if c is config), self.label)
        from ..context import _seam

        _seam.watch_engine(engine, f"the engine of {label}", hint=self.escape_hint)
        if self._connection_of is not None:
            self._bind(config, label, verify_sessions=False)

    def _bind(self, config: Any, label: str, verify_sessions: bool) -> None:
        engine = self._engine_of(config)
        if engine is None or bound_engine(engine):
            return  # no engine yet (get_engine() binds it when made), or bound already
        if getattr(config, "routing_config", None) is not None:
            raise ContextError(
                f"{label}: a config with routing_config (read replicas) cannot be bound: its "
                "routing session maker makes engines of its own. Configure the app under test "
                "with a connection_string."
            )
        assert self._connection_of is not None
        trunk = self._connection_of()
        if trunk is None:
            return  # the default alias is not declared: the engine stays guarded
        binding = EngineBinding(engine, trunk, label)
        binding.install()
        self._bindings.append(binding)
        binding.verify()  # by effect, once per engine and test connection
        if not verify_sessions or self._sessions_checked.get(engine) is trunk:
            return
        problem = self._check_sessions(config, trunk)
        if problem is not None:
            self.restore()
            raise ContextError(
                f"{label}: binding its engine had no effect on its sessions: {problem}. "
                "They would commit for real."
            )
        self._sessions_checked[engine] = trunk

    @staticmethod
    def _check_sessions(config: Any, expected: Connection) -> str | None:
        """By effect: a session of ``config.create_session_maker()`` (what ``get_session()``
        and ``provide_session`` use; made now as the app's lifespan would) runs on the test
        connection. No I/O: the session is closed before it connects."""
        try:
            session = config.create_session_maker()()
            sync_session = getattr(session, "sync_session", session)
            try:
                return _runs_on(sync_session.get_bind(), expected)
            finally:
                sync_session.close()
        except Exception as exc:  # noqa: BLE001 - any failure means "not verified"
            return f"{type(exc).__name__}: {exc}"

    def restore(self) -> None:
        self._connection_of = None
        bindings, self._bindings = self._bindings, []
        for binding in bindings:
            binding.remove()

    def close(self) -> None:
        self.restore()
        self.tracker.close()


def advanced_alchemy_adapters(
    configs: Iterable[tuple[str, Any]],
) -> list[Adapter]:
    """The run's two advanced-alchemy adapters (sync configs, async configs).

    :param configs: ``(ini line, object)`` of ini ``db_advanced_alchemy``.
    :raises ConfigurationError: see :class:`AdvancedAlchemyTracker`.
    """
    tracker = AdvancedAlchemyTracker(configs)
    return [AdvancedAlchemyAdapter(tracker, is_async=False), AdvancedAlchemyAdapter(tracker, True)]

