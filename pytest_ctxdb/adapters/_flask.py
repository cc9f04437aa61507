"""Flask-SQLAlchemy 3.x apps bound to the test connections (ini ``db_flask_sqlalchemy``).

Flask-SQLAlchemy keeps one ``Engine`` per bind key *per app* (``db._app_engines[app]``, read
through ``db.engines`` / ``db.engine`` in an app context), and its ``Session.get_bind()`` picks
one of those engine objects by the bind key of the table queried, ignoring ``session.bind``.
So binding the engine objects in place is enough: during a test every engine of every app the
extension is initialised on (apps made before the test, and apps an app factory makes during
it) is bound with :class:`~pytest_ctxdb.adapters.EngineBinding` to the test connection of the
alias named after its bind key (``None`` -> ``"default"``, ``"users"`` -> ``"users"``). Then
``db.session``, ``db.engine``, ``db.engines[key]``, ``Model.query`` and anything given
``db.session`` (factory_boy's ``sqlalchemy_session``) run inside the test's transactions with
Flask-SQLAlchemy's own session class and routing, and nothing of the extension is patched but
``_make_engine``.

* Engines made while the run goes on: ``db._make_engine`` (what ``init_app`` calls for each bind
  key) is shadowed by an instance attribute for the whole run, so an engine is guarded by escape
  detection as soon as it exists, and bound at once when a test binding is open.
* A bind key whose alias the test did not declare: the engine's ``connect()`` raises the
  binding plan's access-control error (it names the alias and the ``db`` marker to add).
* Tables: each alias named after a bind key gets the tables of ``db.metadatas[key]`` unless a
  ``db_metadata`` / ``db_alembic_ini`` line names the alias (for the default alias: unless
  any line applies to it).
* Sessions of ``db.session`` still open at the end of a test (a test or fixture that used it
  inside a long-lived app context) are closed and removed, as ``teardown_appcontext`` does
  after a request: their connections ended with the test.

Flask and Flask-SQLAlchemy are never imported here: the extension object is given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import MetaData
from sqlalchemy.engine import Connection, Engine

from .._errors import ConfigurationError, ContextError
from .._settings import DEFAULT_ALIAS, is_alias_name
from ._engines import EngineBinding, bound_engine
from ._patches import Adapter

__all__ = ("FlaskSQLAlchemyAdapter", "bind_key_alias")


def bind_key_alias(key: str | None) -> str:
    """The alias of a Flask-SQLAlchemy bind key: ``None`` -> ``"default"``, else the key."""
    return DEFAULT_ALIAS if key is None else key


def _is_extension(obj: object) -> bool:
    """``True`` if ``obj`` is a Flask-SQLAlchemy 3.x ``SQLAlchemy`` object (by what this adapter
    uses, without importing the library: a subclass or an old version would differ)."""
    return (
        isinstance(getattr(obj, "metadatas", None), dict)
        and hasattr(obj, "_app_engines")
        and callable(getattr(obj, "_make_engine", None))
        and hasattr(obj, "session")
    )


class FlaskSQLAlchemyAdapter(Adapter):
    """Binds the engines of a Flask-SQLAlchemy ``SQLAlchemy()`` object, per bind key and app.

    :param spec: the ini line (``myapp.extensions:db``), for messages.
    :param db: the extension object (nothing is read that needs an app context).
    :raises ConfigurationError: ``db`` is not a Flask-SQLAlchemy 3.x extension object, or its
        ``_make_engine`` cannot be shadowed.
    """

    binds_aliases = True

    def __init__(self, spec: str, db: Any) -> None:
        if not _is_extension(db):
            raise ConfigurationError(
                f"db_flask_sqlalchemy: {spec!r} is a {type(db).__name__}, not a Flask-SQLAlchemy "
                "3.x SQLAlchemy() object (e.g. myapp.extensions:db)."
            )
        self.spec = spec
        self.label = f"db_flask_sqlalchemy {spec}"
        self.escape_hint = (
            "Flask-SQLAlchemy's engines are bound in tests that have a sync database binding "
            "(request db_session, or use @pytest.mark.db); fixtures that run before it opens "
            "(module or session scope) cannot use db.session: the tables of db.metadatas are "
            "created in the test databases, so drop db.create_all() from them."
        )
        self.db = db
        #: ``alias -> connection`` while a test binding is open (see apply_aliases).
        self._connection_of: Callable[[str], Connection] | None = None
        self._refused: Callable[[ContextError], ContextError] | None = None
        self._bindings: list[EngineBinding] = []
        self._refusing: list[Engine] = []
        self._original_make_engine = db._make_engine
        self._hook_make_engine()

    # -- the run ---------------------------------------------------------------------------

    def _hook_make_engine(self) -> None:
        original = self._original_make_engine

        def _make_engine(bind_key: str | None, options: Any, app: Any) -> Engine:
            engine: Engine = original(bind_key, options, app)
            self._new_engine(bind_key, engine)
            return engine

        self.db._make_engine = _make_engine
        # By effect: what init_app calls (self._make_engine) is now the hook.
        if getattr(self.db, "_make_engine", None) is not _make_engine:
            raise ConfigurationError(
                f"{self.label}: shadowing db._make_engine had no effect (the extension's "
                f"class {type(self.db).__qualname__} does not allow it), so engines of apps "
                "made during a test could not be bound."
            )

    def close(self) -> None:
        """Undo the ``_make_engine`` hook (end of the run)."""
        self.restore()
        vars(self.db).pop("_make_engine", None)

    def _apps(self) -> list[tuple[Any, Mapping[str | None, Engine]]]:
        return list(self.db._app_engines.items())

    def _keyed_engines(self) -> Iterable[tuple[str | None, Engine]]:
        for _app, engines in self._apps():
            yield from list(engines.items())

    def engines(self) -> Iterable[Engine]:
        return [engine for _key, engine in self._keyed_engines()]

    def guard_engines(self) -> None:
        for key, engine in self._keyed_engines():
            self._guard(key, engine)

    def _guard(self, key: str | None, engine: Engine) -> None:
        from ..context import _seam

        _seam.watch_engine(
            engine, f"the engine of bind key {key!r} of {self.label}", hint=self.escape_hint
        )

    def aliases(self) -> dict[str, str]:
        """alias -> what names it, for each bind key known now (``db.metadatas``, the apps
        already initialised) that is a valid alias name, the default alias left out."""
        keys: dict[str | None, None] = dict.fromkeys(self.db.metadatas)
        for key, _engine in self._keyed_engines():
            keys[key] = None
        return {
            key: f"{self.label} (bind key {key!r})"
            for key in keys
            if key is not None and is_alias_name(key)
        }

    def schema(self, alias: str) -> tuple[MetaData, ...] | None:
        """The tables of ``alias``: ``db.metadatas`` of its bind key, if there is one."""
        key = None if alias == DEFAULT_ALIAS else alias
        metadata = self.db.metadatas.get(key)
        return None if metadata is None else (metadata,)

    # -- one test ---------------------------------------------------------------------------

    def apply_aliases(
        self,
        connection_of: Callable[[str], Connection],
        refused: Callable[[ContextError], ContextError],
    ) -> None:
        """Bind every engine of every app to the test connection of its bind key's alias.

        :param connection_of: the test connection of an alias (opening its transaction);
            raises :class:`ContextError` for an alias the test did not declare.
        :param refused: records a refusal (the test fails even if the app swallows it) and
            returns the error to raise.
        :raises ContextError: a binding had no effect.
        """
        self.restore()
        self._connection_of, self._refused = connection_of, refused
        for key, engine in self._keyed_engines():
            self._bind(key, engine)

    def _new_engine(self, key: str | None, engine: Engine) -> None:
        """An engine ``init_app`` just made: guard it, and bind it if a test binding is open."""
        self._guard(key, engine)
        if self._connection_of is not None:
            self._bind(key, engine)

    def _bind(self, key: str | None, engine: Engine) -> None:
        if bound_engine(engine):
            return  # listed in db_engines too (bound first), or shared by two apps
        assert self._connection_of is not None
        alias = bind_key_alias(key)
        label = f"{self.label} bind key {key!r}"
        problem: ContextError | None = None
        if not is_alias_name(alias):
            problem = ContextError(
                f"{label}: the bind key cannot name a database alias (letters, digits and _, "
                "not starting with a digit), so its engine has no test database. Rename it."
            )
        else:
            try:
                trunk = self._connection_of(alias)
            except ContextError as exc:  # not declared: the plan's access-control message
                problem = ContextError(f"{label}: {exc}")
        if problem is not None:
            self._refuse(engine, problem)
            return
        binding = EngineBinding(engine, trunk, label)
        binding.install()
        self._bindings.append(binding)
        binding.verify()  # by effect, once per engine and test connection

    def _refuse(self, engine: Engine, problem: ContextError) -> None:
        refused = self._refused

        def connect(*args: Any, **kwargs: Any) -> Connection:
            __tracebackhide__ = True
            raise refused(problem) if refused is not None else problem

        engine.connect = connect  # type: ignore[method-assign]
        self._refusing.append(engine)

    def restore(self) -> None:
        """Unbind every engine; close the sessions ``db.session`` kept (see the module)."""
        if self._connection_of is None and not self._bindings and not self._refusing:
            return
        self._connection_of = self._refused = None
        bindings, self._bindings = self._bindings, []
        refusing, self._refusing = self._refusing, []
        for binding in bindings:
            binding.remove()
        for engine in refusing:
            vars(engine).pop("connect", None)
        self._close_sessions()

    def _close_sessions(self) -> None:
        registry = getattr(getattr(self.db, "session", None), "registry", None)
        sessions = getattr(registry, "registry", None)
        if not isinstance(sessions, dict):
            return
        kept = list(sessions.values())
        sessions.clear()
        for session in kept:
            try:
                session.close()  # its connections ended with the test: no I/O
            except Exception:  # noqa: BLE001 - a broken session is gone either way
                pass
