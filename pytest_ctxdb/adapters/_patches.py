"""Bind other session-keeping styles to the test connection, one test at a time.

Each adapter is loaded once per run from an ini import string, applied when the test's
binding opens and restored when the test ends. ``apply`` verifies that the patch took
effect and raises :class:`ContextError` otherwise; the original engines stay guarded by
escape detection, so a reference the patch could not reach fails the test loudly.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import MetaData
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker
from sqlalchemy.orm import sessionmaker

from .._errors import ConfigurationError, ContextError
from .._importing import import_object
from .._settings import mask_url
from ..binding import JOIN_MODE
from ._engines import EngineBinding, bound_engine, connects_to

__all__ = (
    "Adapter",
    "ContextAsyncSQLAlchemyAdapter",
    "EngineAdapter",
    "SessionmakerAdapter",
    "load_adapters",
)

#: makes a session joined to the test's outer transaction (sync or async).
MakeSession = Callable[..., Any]


class Adapter:
    """Base of the adapters: ``is_async`` tells which test binding it needs."""

    is_async: bool = False
    label: str = ""

    def engines(self) -> Iterable[Engine]:
        """The app's own engines to guard with escape detection."""
        return ()

    def guard_engines(self) -> None:
        """Guard :meth:`engines` with escape detection (idempotent, cheap once done)."""
        from ..context import _seam

        for engine in self.engines():
            _seam.watch_engine(engine, f"the engine behind {self.label}", hint=self.escape_hint)

    #: what an escape through one of :meth:`engines` advises (``None``: the general advice).
    escape_hint: str | None = None

    def apply(self, connection: Any, make_session: MakeSession) -> None:
        """Bind to ``connection`` (a ``Connection`` or ``AsyncConnection``) for one test.

        :raises ContextError: the patch did not take effect.
        """
        raise NotImplementedError

    def restore(self) -> None:
        """Undo :meth:`apply`; idempotent."""
        raise NotImplementedError

    #: ``True``: the adapter binds engines of several aliases itself, through
    #: :meth:`apply_aliases`, instead of being given the default alias's connection.
    binds_aliases: bool = False

    def apply_aliases(
        self,
        connection_of: Callable[[str], Connection],
        refused: Callable[[ContextError], ContextError],
    ) -> None:
        """Bind to the test connections of several aliases for one test (when
        :attr:`binds_aliases`).

        :param connection_of: the test connection of an alias, its transaction begun;
            raises :class:`ContextError` (naming the ``db`` marker) for an alias the test
            did not declare.
        :param refused: records an error the app may swallow (the test fails anyway) and
            returns it, to raise.
        """
        raise NotImplementedError

    def aliases(self) -> Mapping[str, str]:
        """alias -> what names it: aliases this adapter's app uses, given a test database
        when they have no URL (before any is provisioned)."""
        return {}

    def schema(self, alias: str) -> tuple[MetaData, ...] | None:
        """The tables of ``alias`` when no ``db_metadata`` / ``db_alembic_ini`` line names it,
        or ``None``."""
        return None

    def close(self) -> None:
        """Undo what the adapter changed for the run (at its end)."""
        self.restore()


class SessionmakerAdapter(Adapter):
    """Rebinds a ``sessionmaker`` / ``async_sessionmaker`` (ini ``db_sessionmakers``)."""

    escape_hint = (
        "The sessionmaker is bound, but the engine was used without it: list the engine in "
        "ini db_engines to bind every use of it."
    )

    def __init__(self, spec: str, maker: Any) -> None:
        self.label = f"db_sessionmakers {spec}"
        self.maker = maker
        self.is_async = isinstance(maker, async_sessionmaker)
        self._saved: dict[str, Any] | None = None

    def engines(self) -> Iterable[Engine]:
        bind = self.maker.kw.get("bind")
        if isinstance(bind, AsyncEngine):
            bind = bind.sync_engine
        return (bind,) if isinstance(bind, Engine) else ()

    def apply(self, connection: Any, make_session: MakeSession) -> None:
        if self._saved is None:
            self._saved = dict(self.maker.kw)
        self.maker.kw.pop("binds", None)
        self.maker.configure(bind=connection, join_transaction_mode=JOIN_MODE)
        session = self.maker()
        sync_session = getattr(session, "sync_session", session)
        expected: Connection = _sync_connection(connection)
        try:
            # What the session will really run on: get_bind(), which a Session subclass may
            # override (Flask-SQLAlchemy's ignores session.bind), not the bind attribute.
            problem = _runs_on(sync_session.get_bind(), expected)
        except Exception as exc:  # noqa: BLE001 - any failure means "not verified"
            problem = f"its get_bind() raised {type(exc).__name__}: {exc}"
        finally:
            sync_session.close()  # no connection was taken: closing does no I/O
        if problem is not None:
            self.restore()
            raise ContextError(
                f"{self.label}: rebinding the sessionmaker had no effect: {problem}. Its "
                f"sessions ({type(sync_session).__qualname__}) would commit for real. List the "
                "engine they use in ini db_engines instead of the sessionmaker."
            )

    def restore(self) -> None:
        if self._saved is not None:
            self.maker.kw.clear()
            self.maker.kw.update(self._saved)
            self._saved = None


def _sync_connection(connection: Connection | AsyncConnection) -> Connection:
    """The sync ``Connection`` of a test connection (an ``AsyncConnection``'s, once started)."""
    if isinstance(connection, AsyncConnection):
        sync = connection.sync_connection
        assert sync is not None, "the async test connection is started before adapters apply"
        return sync
    return connection


def _runs_on(bind: Any, expected: Connection) -> str | None:
    """``None`` if a session whose ``get_bind()`` returned ``bind`` runs on the test connection
    ``expected`` (directly, or through an engine bound by an :class:`EngineAdapter`), else
    what it runs on."""
    if bind is expected:
        return None
    if isinstance(bind, Engine):
        if bound_engine(bind) and connects_to(bind, expected):  # bound by an adapter
            return None
        return f"its get_bind() returns {mask_url(bind.url)!r}, the app's own engine"
    return f"its get_bind() returns {bind!r}"


class EngineAdapter(Adapter):
    """Binds an app ``Engine`` / ``AsyncEngine`` (ini ``db_engines``) to the test connection.

    The engine object stays where the app keeps it (module globals, sessionmakers made at
    import, FastAPI dependencies, class attributes): for the test, its ``connect()`` returns a
    :class:`~pytest_ctxdb.adapters.BranchConnection` on the test connection, whose
    transactions are savepoints there (see :mod:`._engines`). Sessions the app makes on it keep
    their own class and options. No per-test search through modules: binding costs two
    attribute assignments.
    """

    def __init__(self, spec: str, engine: Any) -> None:
        self.spec = spec
        self.label = f"db_engines {spec}"
        is_async = isinstance(engine, AsyncEngine)
        kind, fixture = ("async", "async_db_session") if is_async else ("sync", "db_session")
        self.escape_hint = (
            f"The engine is listed in db_engines, which binds what its connect() hands out in "
            f"tests with a {kind} database binding (request {fixture}, or use "
            "@pytest.mark.db on the default alias). Not bound: engine.raw_connection() and "
            "engine.pool, which hand out DBAPI connections of the app's own database."
        )
        self.engine = engine
        self.is_async = isinstance(engine, AsyncEngine)
        self.sync_engine: Engine = engine.sync_engine if self.is_async else engine
        self._binding: EngineBinding | None = None

    def engines(self) -> Iterable[Engine]:
        return (self.sync_engine,)

    def apply(self, connection: Any, make_session: MakeSession) -> None:
        trunk = _sync_connection(connection)
        self.restore()
        binding = self._binding = EngineBinding(self.sync_engine, trunk, self.label)
        binding.install()
        binding.verify()

    def restore(self) -> None:
        binding, self._binding = self._binding, None
        if binding is not None:
            binding.remove()


class ContextAsyncSQLAlchemyAdapter(Adapter):
    """Binds apps written with context-async-sqlalchemy to the test connection.

    Every session that library makes, for ``db_session(connect)``, ``atomic_db_session``,
    ``new_non_ctx_session``, ``new_non_ctx_atomic_session`` and ``run_in_new_ctx``, comes from
    ``DBConnect.session_maker()``; the adapter replaces that one method, so the library's
    own commit/rollback/close logic, its middleware and its hooks keep running, on the test
    connection. Applied only when the app imported the library.
    """

    is_async = True
    label = "context-async-sqlalchemy"

    def __init__(self) -> None:
        self._original: Any = None
        self._verified: Any = None

    @staticmethod
    def _dbconnect() -> Any:
        module = sys.modules.get("context_async_sqlalchemy.connect")
        return None if module is None else module.DBConnect

    def apply(self, connection: Any, make_session: MakeSession) -> None:
        cls = self._dbconnect()
        if cls is None:
            return

        makers: dict[int, Any] = {}

        class _Maker:
            """Makes test sessions with the options of the app's own sessionmaker."""

            def __init__(self, real: Any) -> None:
                self.class_ = getattr(real, "class_", None)
                kw = getattr(real, "kw", {})
                self.kw = {k: v for k, v in kw.items() if k not in ("bind", "binds")}
                self.kw.pop("join_transaction_mode", None)

            def __call__(self) -> Any:
                if self.class_ is not None:
                    return make_session(class_=self.class_, **self.kw)
                return make_session(**self.kw)

        async def session_maker(self: Any) -> Any:
            maker = makers.get(id(self))
            if maker is None:
                # The app's own creator, given the test engine, tells its session options
                # (expire_on_commit, class_, ...); its engine is never connected.
                creator = getattr(self, "_session_maker_creator", None)
                real = creator(connection.engine) if creator is not None else None
                maker = makers[id(self)] = _Maker(real)
            return maker

        if self._original is None:
            self._original = cls.__dict__["session_maker"]
        cls.session_maker = session_maker
        if self._verified is not connection:
            problem = self._check(cls, makers, _sync_connection(connection))
            if problem is not None:
                self.restore()
                raise ContextError(f"{self.label}: patching DBConnect.session_maker had no "
                                   f"effect: {problem}")
            self._verified = connection

    @staticmethod
    def _check(dbconnect: Any, makers: dict[int, Any], expected: Connection) -> str | None:
        """By effect: a ``DBConnect``'s ``session_maker()`` makes sessions whose ``get_bind()``
        is the test connection (no I/O: the coroutine awaits nothing, the session is closed
        before it connects). ``None`` if so, else what happened."""
        probe = dbconnect.__new__(dbconnect)  # a bare instance: no engine is made
        try:
            coroutine = dbconnect.session_maker(probe)
            try:
                coroutine.send(None)
            except StopIteration as done:
                maker = done.value
            else:
                coroutine.close()
                return "DBConnect.session_maker() awaited something"
            session = maker()
            sync_session = getattr(session, "sync_session", session)
            try:
                bind = sync_session.get_bind()
            finally:
                sync_session.close()
            return None if bind is expected else f"its sessions bind to {bind!r}"
        except Exception as exc:  # noqa: BLE001 - any failure means "not verified"
            return f"{type(exc).__name__}: {exc}"
        finally:
            makers.pop(id(probe), None)

    def refuse(self) -> None:
        """Without an async binding, make the library fail clearly instead of connecting."""
        cls = self._dbconnect()
        if cls is None:
            return

        async def session_maker(self: Any) -> Any:
            raise ContextError(
                "context-async-sqlalchemy asked for a session, but this test has no async "
                "database binding: request the async_db_session fixture."
            )

        if self._original is None:
            self._original = cls.__dict__["session_maker"]
        cls.session_maker = session_maker

    def restore(self) -> None:
        cls = self._dbconnect()
        if cls is not None and self._original is not None:
            cls.session_maker = self._original
        self._original = None


def load_adapters(
    sessionmakers: Iterable[str],
    engines: Iterable[str],
    flask_sqlalchemy: Iterable[str] = (),
    advanced_alchemy: Iterable[str] = (),
) -> list[Adapter]:
    """Import the objects named by ini ``db_engines``, ``db_sessionmakers``,
    ``db_flask_sqlalchemy`` and ``db_advanced_alchemy``.

    :returns: one adapter per engine (an engine named twice is bound once), then one per
        Flask-SQLAlchemy extension, then one per sessionmaker, then the two advanced-alchemy
        adapters (sync and async configs: those named, and those detected when the app
        imports the library), then the context-async-sqlalchemy adapter: engines are bound
        first, so that a sessionmaker's check can see a session reach a bound engine.
    :raises ConfigurationError: a string does not import, names ``None`` or names the wrong
        kind of object; the message names the ini key.
    """
    adapters: list[Adapter] = []
    seen: set[int] = set()
    for spec in engines:
        engine = import_object(spec, "db_engines")[0]
        if not isinstance(engine, (Engine, AsyncEngine)):
            raise ConfigurationError(
                f"db_engines: {spec!r} is a {type(engine).__name__}, not a sqlalchemy Engine "
                "or AsyncEngine."
            )
        if id(engine) not in seen:
            seen.add(id(engine))
            adapters.append(EngineAdapter(spec, engine))
    for spec in flask_sqlalchemy:
        from ._flask import FlaskSQLAlchemyAdapter

        db = import_object(spec, "db_flask_sqlalchemy")[0]
        if id(db) not in seen:
            seen.add(id(db))
            adapters.append(FlaskSQLAlchemyAdapter(spec, db))
    for spec in sessionmakers:
        maker = import_object(spec, "db_sessionmakers")[0]
        if not isinstance(maker, (sessionmaker, async_sessionmaker)):
            hint = (
                " List it in db_engines instead."
                if isinstance(maker, (Engine, AsyncEngine))
                else ""
            )
            raise ConfigurationError(
                f"db_sessionmakers: {spec!r} is a {type(maker).__name__}, not a "
                f"sqlalchemy.orm.sessionmaker or async_sessionmaker.{hint}"
            )
        adapters.append(SessionmakerAdapter(spec, maker))
    from ._advanced_alchemy import advanced_alchemy_adapters

    configs = [(spec, import_object(spec, "db_advanced_alchemy")[0]) for spec in advanced_alchemy]
    adapters.extend(advanced_alchemy_adapters(configs))
    adapters.append(ContextAsyncSQLAlchemyAdapter())
    return adapters
