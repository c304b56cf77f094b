"""SQLAlchemy engines for copies of one template, and connections opened ahead.

:class:`EngineFactory` makes the engines a :class:`~freshdb.Database` hands out,
its dialect initialised once per server (the trick, and why it is worth
SQLAlchemy's private flag, is in its docstring), and opens a copy's first
connection while the copy waits in the pool.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from freshdb.drivers import DEFAULT_ASYNC, DEFAULT_SYNC, DRIVERS, ConnectionParts, Driver
from freshdb.errors import ConfigurationError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine

log = logging.getLogger("freshdb")

#: How long the pool's thread may spend connecting to a copy ahead of its user
#: (with a driver other than the engine family's default, whose URL bounds it).
PRECONNECT_TIMEOUT_SECONDS = 10


def sync_driver(driver: Driver | None, family: str) -> Driver:
    """The driver of sync engines: ``driver`` if it serves them, else the family's default."""
    return driver if driver is not None and driver.serves_sync else DEFAULT_SYNC[family]


def async_driver(driver: Driver | None, family: str) -> Driver:
    """The driver of async engines: ``driver`` if it serves them, else the family's default."""
    return driver if driver is not None and driver.serves_async else DEFAULT_ASYNC[family]


def missing_driver(url: URL, exc: ImportError) -> ConfigurationError:
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
        import sqlalchemy

        try:
            initialised = self._initialised.get(url.drivername)
            if initialised is None:
                self._learn(url)
                initialised = self._initialised.get(url.drivername)
            if initialised is None:  # learning failed: fall back to the usual path
                return sqlalchemy.create_engine(url, **kwargs)
            engine = sqlalchemy.create_engine(url, _initialize=False, **kwargs)
        except ImportError as exc:
            raise missing_driver(url, exc) from exc
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
        from sqlalchemy import event

        waiting = [connection]

        def use_waiting(dialect: Any, record: Any, cargs: Any, cparams: Any) -> Any:
            return waiting.pop() if waiting else None  # None: connect as usual

        event.listen(engine, "do_connect", use_waiting)

    def _learn(self, url: URL) -> None:
        import sqlalchemy

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
