"""The fresh database handed to a test, for sync and async code alike."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine

from freshdb.drivers import DEFAULT_ASYNC, DEFAULT_SYNC, DRIVERS, ConnectionParts, Driver
from freshdb.errors import ConfigurationError, FreshDBError
from freshdb.pool import Cancellation

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


log = logging.getLogger("freshdb")

#: How long giving back a database may spend closing its async engines' connections
#: politely, even when the task is being cancelled; past it the copy's DROP … FORCE
#: ends them on the server side.
ASYNC_DISPOSE_SECONDS = 5.0
#: How long the pool's thread may spend connecting to a copy ahead of its user
#: (with a driver other than the engine family's default, whose URL bounds it).
PRECONNECT_TIMEOUT_SECONDS = 10


def sync_driver(driver: Driver | None, family: str) -> Driver:
    """The driver of sync engines: ``driver`` if it serves them, else the family's default."""
    return driver if driver is not None and driver.serves_sync else DEFAULT_SYNC[family]


def async_driver(driver: Driver | None, family: str) -> Driver:
    """The driver of async engines: ``driver`` if it serves them, else the family's default."""
    return driver if driver is not None and driver.serves_async else DEFAULT_ASYNC[family]


def _missing_driver(url: URL, exc: ImportError) -> ConfigurationError:
    """A driver SQLAlchemy could not import, said with the package to install."""
    name = url.get_driver_name()
    for driver in DRIVERS.values():
        if driver.sqlalchemy_name == url.drivername:
            return ConfigurationError(driver.missing_message())
    return ConfigurationError(f"the {name} driver is not installed ({exc}) — install it")


class EngineFactory:
    """Makes SQLAlchemy engines for copies of one template, initialising the dialect once.

    SQLAlchemy initialises a new engine's dialect on its first connection with a few
    queries (server version, default schema, isolation level, string settings;
    psycopg also looks up hstore). On a fresh copy a new server process answers them
    with cold caches. Every copy of a template on one server answers them
    identically, so the first engine is initialised normally, what that changed on
    its dialect is remembered, and later engines get it without asking.

    Why this is worth SQLAlchemy's private ``_initialize`` flag: measured on this
    project's machine (median of 50 copies, first connection handed over warm), an
    engine's first query took 4.5 ms with it and 27 ms without on Postgres 17, 1.9 ms
    and 7.5 ms on MariaDB 10.11. Initialising in the pool's thread instead (public
    API only) saved the test's path as much but slowed the refilling of the pool: 200
    back-to-back tiny tests took 30 ms each instead of 23 on Postgres. What the flag
    and the copied state must do is pinned by tests/integration/test_database.py for
    every sync driver (passing on SQLAlchemy 2.0.58 and 2.1.9); if learning fails,
    :meth:`create` falls back to a normal engine.
    """

    def __init__(self, driver: Driver | None = None) -> None:
        #: The driver of connections opened ahead (the family's default when ``None``
        #: or when the configured driver is async-only).
        self.driver = driver
        self._lock = threading.Lock()
        # What initialising changed on a dialect, per driver (SQLAlchemy URL drivername).
        self._initialised: dict[str, dict[str, Any]] = {}
        self._learned_from: dict[str, str | None] = {}  # the database it was learned on
        self._connectors: dict[str, Any] = {}
        self._connector_lock = threading.Lock()

    def create(self, url: URL, **kwargs: Any) -> Engine:
        """A new engine for ``url``, its dialect already initialised when possible;
        a missing driver is said with what to install."""
        try:
            initialised = self._initialised.get(url.drivername)
            if initialised is None:
                self._learn(url)
                initialised = self._initialised.get(url.drivername)
            if initialised is None:  # learning failed: fall back to the usual path
                return sqlalchemy.create_engine(url, **kwargs)
            engine = sqlalchemy.create_engine(url, _initialize=False, **kwargs)
        except ImportError as exc:
            raise _missing_driver(url, exc) from exc
        engine.dialect.__dict__.update(initialised)
        # The one answer that differs between copies: on MySQL the default schema is
        # the database itself (on Postgres it is "public", the same for every copy).
        if initialised.get("default_schema_name") == self._learned_from[url.drivername]:
            engine.dialect.default_schema_name = url.database
        return engine

    def preconnect(self, url: URL) -> Any:
        """A DBAPI connection to the database of ``url`` made as SQLAlchemy's engine
        would make it (with the configured driver), with one query run (so the server
        process has loaded its caches), or ``None`` if that fails (the engine then
        connects as usual)."""
        url = self._with_driver(url)
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

    def _with_driver(self, url: URL) -> URL:
        # ``url`` is the dialect's own (psycopg 3 or PyMySQL, connecting bounded);
        # another driver gets the same parts and its own way of bounding it.
        parts = ConnectionParts.from_url(url)
        driver = sync_driver(self.driver, parts.family)
        if driver.sqlalchemy_name == url.drivername:
            return url
        rebuilt = parts.url(driver)
        if driver.connect_timeout_argument is not None:
            rebuilt = rebuilt.update_query_dict(
                {driver.connect_timeout_argument: str(PRECONNECT_TIMEOUT_SECONDS)}
            )
        return rebuilt

    def _connecting_dialect(self, url: URL) -> Any:
        # Only used to turn URLs into driver arguments and connect, which needs no
        # server state: one dialect per driver serves every copy.
        with self._connector_lock:
            connector = self._connectors.get(url.drivername)
            if connector is None:
                dialect_class: Any = url.get_dialect()
                connector = dialect_class(dbapi=dialect_class.import_dbapi())
                self._connectors[url.drivername] = connector
            return connector

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
            if url.drivername in self._initialised:
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
            self._learned_from[url.drivername] = url.database
            self._initialised[url.drivername] = {
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

    Its address, for code that connects by itself: :attr:`url` (a SQLAlchemy URL
    with the configured driver), :meth:`url_for` another driver, :meth:`dsn` (a
    plain URI) and :meth:`connect_args` (a driver's ``connect()`` keywords), or the
    parts :attr:`host`, :attr:`port`, :attr:`user`, :attr:`password`, :attr:`name`.
    """

    def __init__(
        self,
        parts: ConnectionParts,
        release: Callable[[bool], None],
        *,
        driver: Driver | None = None,
        engines: EngineFactory | None = None,
        warm_connection: Any = None,
        kept_name: str | None = None,
    ) -> None:
        if parts.database is None:
            raise ValueError("a Database needs the name of its database")
        self._parts = parts
        #: The database name.
        self.name: str = parts.database
        #: The server's host, port, and the user and password the copy is reached with.
        self.host = parts.host
        self.port = parts.port
        self.user = parts.user
        self.password = parts.password
        chosen = driver or DEFAULT_SYNC[parts.family]
        #: The configured driver's name (the ``driver`` setting): what :attr:`url` speaks.
        self.driver = chosen.name
        #: A SQLAlchemy URL with the configured driver (psycopg 3 or PyMySQL by default).
        self.url = parts.url(chosen)
        #: The URL :meth:`async_engine` uses: the configured driver if it serves
        #: asyncio, else psycopg 3 (async) or aiomysql.
        self.async_url = parts.url(async_driver(chosen, parts.family))
        # What engine() uses: the configured driver if it is a sync one, else the
        # family's default sync driver.
        self._sync_url = parts.url(sync_driver(chosen, parts.family))
        self._release = release
        self._engine_factory = engines or EngineFactory(chosen)
        self._warm_connection = warm_connection
        #: The name this database will have after :meth:`keep` and release.
        self.kept_name = kept_name or self.name
        self._keep = False
        self._released = False
        self._engines: list[Engine] = []
        self._async_engines: list[AsyncEngine] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Database {self.name} at {self.url.render_as_string(hide_password=True)}>"

    # -- its address --------------------------------------------------------------
    def url_for(self, driver: str) -> URL:
        """A SQLAlchemy URL of this database for ``driver`` (e.g. ``"asyncpg"``,
        ``"psycopg2"``, ``"mysqlclient"``); a driver of the other engine family, or
        an unknown one, is a :class:`~freshdb.ConfigurationError`."""
        return self._parts.url(driver)

    def dsn(self) -> str:
        """A plain URI with the password in it: on Postgres a libpq URI that
        ``psycopg.connect``, ``psycopg2.connect``, ``asyncpg.connect`` and ``psql``
        take; on MySQL/MariaDB ``mysql://user:password@host:port/name``."""
        return self._parts.dsn()

    def connect_args(self, driver: str | None = None) -> dict[str, Any]:
        """Keyword arguments for a driver's own ``connect()`` (default: the configured
        driver), e.g. ``pymysql.connect(**db.connect_args("pymysql"))``."""
        return self._parts.connect_args(driver or self.driver)

    # -- connecting -------------------------------------------------------------
    def engine(self, **kwargs: Any) -> Engine:
        """A SQLAlchemy ``Engine`` for this database (the same one on every call
        without arguments); disposed when the database is released.

        It speaks the configured driver, or psycopg 3 / PyMySQL if that driver is
        async-only (use :meth:`async_engine` for it).
        """
        with self._lock:
            if not kwargs and self._engines:
                return self._engines[0]
            engine = self._engine_factory.create(self._sync_url, **kwargs)
            warm, self._warm_connection = self._warm_connection, None
            if warm is not None:
                self._engine_factory.hand_over(engine, warm)
            self._engines.append(engine)
            return engine

    def connect(self) -> Connection:
        """A new SQLAlchemy ``Connection`` from :meth:`engine`."""
        return self.engine().connect()

    def async_engine(self, **kwargs: Any) -> AsyncEngine:
        """A SQLAlchemy ``AsyncEngine`` for this database: the configured driver if it
        serves asyncio (psycopg 3, asyncpg, aiomysql, asyncmy), else psycopg 3 or
        aiomysql.

        Its drivers run on asyncio only. Under trio, connecting raises a
        :class:`~freshdb.FreshDBError` saying so: use :meth:`engine` from a worker
        thread there (``anyio.to_thread.run_sync``); :meth:`server.adatabase()
        <freshdb.DatabaseServer.adatabase>` itself works under both.
        """
        from sqlalchemy.ext.asyncio import create_async_engine

        with self._lock:
            if not kwargs and self._async_engines:
                return self._async_engines[0]
            try:
                engine = create_async_engine(self.async_url, **kwargs)
            except ImportError as exc:
                raise _missing_driver(self.async_url, exc) from exc
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
            warm, self._warm_connection = self._warm_connection, None
        if warm is not None:  # never used: no engine was made
            self._engine_factory.discard(warm)
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

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.arelease()


def _require_asyncio(dialect: Any, record: Any, cargs: Any, cparams: Any) -> None:
    """Before an async engine connects: its driver needs a running asyncio loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise FreshDBError(
            "db.async_engine() connects with an asyncio driver (psycopg's async one, asyncpg, "
            "aiomysql or asyncmy), which run on asyncio only, and no asyncio event loop is "
            "running here (under trio?) — "
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

    async def __aexit__(self, *exc_info: object) -> None:
        database, self._database = self._database, None
        if database is not None:
            await database.arelease()
