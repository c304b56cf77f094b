"""The fresh database handed to a test, for sync and async code alike."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine

from freshdb.errors import FreshDBError
from freshdb.pool import Cancellation

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


log = logging.getLogger("freshdb")

#: How long giving back a database may spend closing its async engines' connections
#: politely, even when the task is being cancelled; past it the copy's DROP … FORCE
#: ends them on the server side.
ASYNC_DISPOSE_SECONDS = 5.0


class EngineFactory:
    """Makes SQLAlchemy engines for copies of one template, initialising the dialect once.

    SQLAlchemy initialises a new engine's dialect on its first connection with a few
    queries (server version, schema, string settings...): ~7 ms, more than the
    rest of handing out a database. Every copy of a template on one server answers
    them identically, so the first engine is initialised normally, what that changed
    on its dialect is remembered, and later engines get it without asking.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._initialised: dict[str, Any] | None = None
        self._learned_from: str | None = None  # the database the dialect was learned on
        self._connector: Any = None
        self._connector_lock = threading.Lock()

    def create(self, url: URL, **kwargs: Any) -> Engine:
        """A new engine for ``url``, its dialect already initialised when possible."""
        if self._initialised is None:
            self._learn(url)
        if self._initialised is None:  # learning failed: fall back to the usual path
            return sqlalchemy.create_engine(url, **kwargs)
        engine = sqlalchemy.create_engine(url, _initialize=False, **kwargs)
        engine.dialect.__dict__.update(self._initialised)
        # The one answer that differs between copies: on MySQL the default schema is
        # the database itself (on Postgres it is "public", the same for every copy).
        if self._initialised.get("default_schema_name") == self._learned_from:
            engine.dialect.default_schema_name = url.database
        return engine

    def preconnect(self, url: URL) -> Any:
        """A DBAPI connection to ``url`` made as SQLAlchemy's engine would make it,
        with one query run (so the server process has loaded its caches), or
        ``None`` if that fails (the engine then connects as usual)."""
        try:
            dialect = self._connecting_dialect(url)
            cargs, cparams = dialect.create_connect_args(url)
            connection = dialect.connect(*cargs, **cparams)
        except Exception as exc:
            log.debug("opening a connection ahead of time failed: %s", exc)
            return None
        try:
            cursor = connection.cursor()
            cursor.execute("SELECT 1")
            cursor.fetchall()
            cursor.close()
            connection.rollback()
        except Exception as exc:
            log.debug("warming a connection failed: %s", exc)
            self.discard(connection)
            return None
        return connection

    def _connecting_dialect(self, url: URL) -> Any:
        # Only used to turn URLs into driver arguments, which needs no server state:
        # one dialect serves every copy instead of an engine made per clone.
        with self._connector_lock:
            if self._connector is None:
                self._connector = sqlalchemy.create_engine(url, _initialize=False).dialect
            return self._connector

    @staticmethod
    def discard(connection: Any) -> None:
        """Close a connection opened ahead of time that nobody used."""
        try:
            connection.close()
        except Exception as exc:
            log.debug("closing an unused connection failed: %s", exc)

    @staticmethod
    def hand_over(engine: Engine, connection: Any) -> None:
        """Make ``engine`` use ``connection`` for its first connection."""
        waiting = [connection]

        def use_waiting(dialect: Any, record: Any, cargs: Any, cparams: Any) -> Any:
            return waiting.pop() if waiting else None  # None: connect as usual

        event.listen(engine, "do_connect", use_waiting)

    def _learn(self, url: URL) -> None:
        with self._lock:
            if self._initialised is not None:
                return
            probe = sqlalchemy.create_engine(url, poolclass=sqlalchemy.NullPool)
            before = dict(vars(probe.dialect))
            try:
                with probe.connect():
                    pass
            except Exception:
                return  # the caller's own connection will report the problem
            finally:
                probe.dispose()
            self._learned_from = url.database
            self._initialised = {
                key: value
                for key, value in vars(probe.dialect).items()
                if key not in before or before[key] is not value
            }


class Database:
    """A fresh copy of the template, yours until released.

    Use it as a context manager (``with server.database() as db``, or ``async with
    server.adatabase() as db``), or call :meth:`release`. Releasing never waits
    for the copy to be dropped: that happens in the background. Engines made with
    :meth:`engine` and :meth:`async_engine` are disposed on release.
    """

    def __init__(
        self,
        name: str,
        url: URL,
        async_url: URL,
        release: Callable[[bool], None],
        engines: EngineFactory | None = None,
        warm_connection: Any = None,
        kept_name: str | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self.async_url = async_url
        self._release = release
        self._engine_factory = engines or EngineFactory()
        self._warm_connection = warm_connection
        #: The name this database will have after :meth:`keep` and release.
        self.kept_name = kept_name or name
        self._keep = False
        self._released = False
        self._engines: list[Engine] = []
        self._async_engines: list[AsyncEngine] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Database {self.name} at {self.url.render_as_string(hide_password=True)}>"

    # -- connecting -------------------------------------------------------------
    def engine(self, **kwargs: Any) -> Engine:
        """A SQLAlchemy ``Engine`` for this database (the same one on every call
        without arguments); disposed when the database is released."""
        with self._lock:
            if not kwargs and self._engines:
                return self._engines[0]
            engine = self._engine_factory.create(self.url, **kwargs)
            if self._warm_connection is not None:
                self._engine_factory.hand_over(engine, self._warm_connection)
                self._warm_connection = None
            self._engines.append(engine)
            return engine

    def connect(self) -> Connection:
        """A new SQLAlchemy ``Connection`` from :meth:`engine`."""
        return self.engine().connect()

    def async_engine(self, **kwargs: Any) -> AsyncEngine:
        """A SQLAlchemy ``AsyncEngine`` (psycopg async, or aiomysql) for this database.

        Its drivers run on asyncio only. Under trio, connecting raises a
        :class:`~freshdb.FreshDBError` saying so: use :meth:`engine` from a worker
        thread there (``anyio.to_thread.run_sync``); :meth:`server.adatabase()
        <freshdb.DatabaseServer.adatabase>` itself works under both.
        """
        from sqlalchemy.ext.asyncio import create_async_engine

        with self._lock:
            if not kwargs and self._async_engines:
                return self._async_engines[0]
            engine = create_async_engine(self.async_url, **kwargs)
            event.listen(engine.sync_engine, "do_connect", _require_asyncio)
            self._async_engines.append(engine)
            return engine

    # -- giving it back ---------------------------------------------------------
    def keep(self) -> None:
        """Keep this database after release (renamed, for inspection) instead of dropping it."""
        self._keep = True

    @property
    def kept(self) -> bool:
        """Whether :meth:`keep` was called."""
        return self._keep

    def release(self) -> None:
        """Give the database back; it is dropped (or kept) in the background.

        Releasing again does nothing.
        """
        with self._lock:
            if self._released:
                return
            self._released = True
        if self._warm_connection is not None:  # never used: no engine was made
            self._engine_factory.discard(self._warm_connection)
            self._warm_connection = None
        for engine in self._engines:
            engine.dispose()
        for async_engine in self._async_engines:
            # Outside an event loop the connections cannot be closed politely; the
            # drop (WITH FORCE) ends them on the server side.
            async_engine.sync_engine.dispose(close=False)
        self._engines.clear()
        self._async_engines.clear()
        self._release(self._keep)

    async def arelease(self) -> None:
        """Give the database back from async code (closes async engines politely).

        The database is given back even when the task is being cancelled: closing
        the engines' connections is shielded from the cancellation (for at most
        ``ASYNC_DISPOSE_SECONDS``), and the copy is released whatever happens to it.
        """
        if self._released:
            return
        try:
            if self._async_engines:
                with anyio.move_on_after(ASYNC_DISPOSE_SECONDS, shield=True):
                    for async_engine in list(self._async_engines):
                        await async_engine.dispose()
        except Exception as exc:  # the server may be gone: the drop cleans up
            log.debug("closing async connections failed: %s", exc)
        finally:
            self.release()

    def __enter__(self) -> Database:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.arelease()


def _require_asyncio(dialect: Any, record: Any, cargs: Any, cparams: Any) -> None:
    """Before an async engine connects: its driver needs a running asyncio loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise FreshDBError(
            "db.async_engine() connects with psycopg's or aiomysql's async driver, which "
            "run on asyncio only, and no asyncio event loop is running here (under trio?) — "
            "use db.engine() from a worker thread instead (anyio.to_thread.run_sync)"
        ) from None


class AsyncDatabaseContext:
    """``async with server.adatabase() as db``: acquires without blocking the event loop.

    Works under asyncio and trio (through anyio). A cancelled task gives its copy
    back wherever the cancellation strikes: while it waits for a copy (the wait,
    in a worker thread, is called off), just after the copy arrived, or in the body.
    """

    def __init__(
        self,
        acquire_now: Callable[[], Database | None],
        acquire: Callable[[Cancellation], Database],
    ) -> None:
        self._acquire_now = acquire_now
        self._acquire = acquire
        self._database: Database | None = None

    async def __aenter__(self) -> Database:
        # A task cancelled already takes nothing.
        await anyio.lowlevel.checkpoint_if_cancelled()
        database = self._acquire_now()  # the usual case: a ready copy, no thread hop
        if database is None:
            database = await self._acquire_in_thread()
        self._database = database
        return database

    async def _acquire_in_thread(self) -> Database:
        # Exactly one side gives the copy back if the task is cancelled: the thread,
        # when it gets the copy after the task gave up on it; else the task, which
        # may have been cancelled after the thread handed the copy over.
        lock = threading.Lock()
        cancellation = Cancellation()
        handed_over: list[Database] = []

        def acquire() -> Database | None:
            database = self._acquire(cancellation)
            with lock:
                if not cancellation.cancelled:
                    handed_over.append(database)
                    return database
            database.release()
            return None

        try:
            database = await anyio.to_thread.run_sync(acquire, abandon_on_cancel=True)
        except BaseException:
            with lock:
                cancellation.cancel()
                orphans = list(handed_over)
            for orphan in orphans:
                orphan.release()
            raise
        assert database is not None  # None only once cancelled, and then nobody awaits
        return database

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        database, self._database = self._database, None
        if database is not None:
            await database.arelease()
