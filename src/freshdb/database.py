"""The fresh database handed to a test, for sync and async code alike.

:class:`Database` is the copy a test holds; its engines come from
:class:`~freshdb.engine_factory.EngineFactory`, and ``async with
server.adatabase()`` hands it out through
:class:`~freshdb.async_database.AsyncDatabaseContext`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from freshdb.drivers import DEFAULT_SYNC, ConnectionParts, Driver
from freshdb.engine_factory import EngineFactory, async_driver, missing_driver, sync_driver
from freshdb.errors import FreshDBError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Connection, Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

    from freshdb.snapshot import Snapshot


log = logging.getLogger("freshdb")

#: How long giving back a database may spend closing its async engines' connections
#: politely, even when the task is being cancelled; past it the copy's DROP … FORCE
#: ends them on the server side.
ASYNC_DISPOSE_SECONDS = 5.0


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
        snapshot: Callable[[str], Snapshot] | None = None,
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
        # Makes a snapshot of this copy (given by the session that handed it out).
        self._make_snapshot = snapshot
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
        from sqlalchemy import event
        from sqlalchemy.ext.asyncio import create_async_engine

        with self._lock:
            if not kwargs and self._async_engines:
                return self._async_engines[0]
            try:
                engine = create_async_engine(self.async_url, **kwargs)
            except ImportError as exc:
                raise missing_driver(self.async_url, exc) from exc
            event.listen(engine.sync_engine, "do_connect", _require_asyncio)
            self._async_engines.append(engine)
            return engine

    # -- its state as a snapshot ----------------------------------------------------
    def snapshot(self, key: str) -> Snapshot:
        """This database's committed state, as a snapshot keyed by ``key``.

        The state becomes a derived template (see :mod:`freshdb.snapshot`) named by
        this copy's template and ``key``: an expensive setup once, then fresh copies
        of it from ``snapshot.database()``. If a snapshot with that key is complete
        on the server already, it is reused as is (change the key when the setup
        changes). This database stays yours, unchanged.

        Uncommitted work is not in the snapshot. On Postgres, nobody may be
        connected to the database while it is copied: idle connections of
        :meth:`engine` are closed first; others (a connection still checked out, an
        async engine, your own driver's) make this a
        :class:`~freshdb.FreshDBError` after a short wait.
        """
        with self._lock:
            if self._released:
                raise FreshDBError(
                    f"database {self.name} was released: take the snapshot before giving "
                    "the database back (inside its `with` block)"
                )
            warm, self._warm_connection = self._warm_connection, None
            engines = list(self._engines)
        if self._make_snapshot is None:
            raise FreshDBError(
                f"database {self.name} was not handed out by a DatabaseServer, which makes "
                "snapshots: use server.database() or snapshot.database()"
            )
        if warm is not None:
            self._engine_factory.discard(warm)
        for engine in engines:
            # A connection opened ahead and handed to an engine not used yet waits
            # outside its pool until it first connects: take it into the pool, then
            # close the pool's idle connections, and those checked out now once they
            # come back (a new pool, as Engine.dispose() makes, would leave them open).
            with engine.connect():
                pass
            engine.pool.dispose()
        return self._make_snapshot(key)

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
