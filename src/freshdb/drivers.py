"""The database drivers freshdb gives URLs for, and how each one is spoken to.

A test suite keeps its own driver: freshdb hands it a SQLAlchemy URL
(``postgresql+psycopg2://…``), a plain DSN (``postgresql://…``, what libpq-based
drivers, asyncpg and ``psql`` take) or the keyword arguments of the driver's own
``connect()``. freshdb's own admin connections always use psycopg 3 or PyMySQL,
whatever driver the tests use.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from freshdb.errors import ConfigurationError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

#: The engine family of each engine freshdb serves: the drivers of a family speak
#: to every engine in it.
FAMILIES: dict[str, str] = {"postgres": "postgres", "mysql": "mysql", "mariadb": "mysql"}
_FAMILY_TITLES = {"postgres": "Postgres", "mysql": "MySQL/MariaDB"}


@dataclasses.dataclass(frozen=True)
class Driver:
    """One DBAPI driver: its names, and what it needs to reach a copy."""

    #: The name freshdb's ``driver`` setting takes (the name users know it by).
    name: str
    #: "postgres" or "mysql".
    family: str
    #: The driver part of SQLAlchemy URLs (``postgresql+psycopg2``).
    sqlalchemy_name: str
    #: What ``import`` names, and what ``pip install`` brings it with.
    module: str
    package: str
    #: Whether SQLAlchemy's ``create_engine`` / ``create_async_engine`` can use it.
    serves_sync: bool
    serves_async: bool
    #: The keyword its ``connect()`` takes each part of an address by.
    database_argument: str = "database"
    password_argument: str = "password"
    #: The keyword bounding only its connecting (not later queries), if it has one.
    connect_timeout_argument: str | None = None
    #: Settings freshdb puts in this driver's URLs.
    url_query: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: The same settings as ``connect()`` keywords.
    connect_settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: The fewest SCRAM hash iterations the driver accepts in a stored password
    #: (0: any). freshdb stores one on its own servers, for cheap logins.
    min_scram_iterations: int = 0

    def installed(self) -> bool:
        """Whether the driver's module can be imported here."""
        return importlib.util.find_spec(self.module) is not None

    def missing_message(self) -> str:
        """What to say when the driver is not installed."""
        return (
            f"the {self.name} driver is not installed (no module {self.module!r}) — "
            f"pip install {self.package}, or choose another driver"
        )


DRIVERS: dict[str, Driver] = {
    driver.name: driver
    for driver in (
        Driver(
            "psycopg",
            "postgres",
            "postgresql+psycopg",
            "psycopg",
            "psycopg[binary]",
            serves_sync=True,
            # SQLAlchemy's psycopg dialect serves create_async_engine too.
            serves_async=True,
            database_argument="dbname",
            connect_timeout_argument="connect_timeout",
        ),
        Driver(
            "psycopg2",
            "postgres",
            "postgresql+psycopg2",
            "psycopg2",
            "psycopg2-binary",
            serves_sync=True,
            serves_async=False,
            database_argument="dbname",
            connect_timeout_argument="connect_timeout",
        ),
        Driver(
            "pg8000",
            "postgres",
            "postgresql+pg8000",
            "pg8000",
            "pg8000",
            serves_sync=True,
            serves_async=False,
            # pg8000's one timeout bounds every later query as well: none is set.
            # Its SCRAM library follows RFC 7677's minimum of 4096 iterations.
            min_scram_iterations=4096,
        ),
        Driver(
            "asyncpg",
            "postgres",
            "postgresql+asyncpg",
            "asyncpg",
            "asyncpg",
            serves_sync=False,
            serves_async=True,
        ),
        Driver(
            "pymysql",
            "mysql",
            "mysql+pymysql",
            "pymysql",
            "pymysql",
            serves_sync=True,
            serves_async=False,
            connect_timeout_argument="connect_timeout",
            # PyMySQL builds a TLS context on every connect (~20 ms) unless told not to.
            url_query={"ssl_disabled": "true"},
            connect_settings={"ssl_disabled": True},
        ),
        Driver(
            "mysqlclient",
            "mysql",
            "mysql+mysqldb",
            "MySQLdb",
            "mysqlclient",
            serves_sync=True,
            serves_async=False,
            connect_timeout_argument="connect_timeout",
        ),
        Driver(
            "aiomysql",
            "mysql",
            "mysql+aiomysql",
            "aiomysql",
            "aiomysql",
            serves_sync=False,
            serves_async=True,
            database_argument="db",
        ),
        Driver(
            "asyncmy",
            "mysql",
            "mysql+asyncmy",
            "asyncmy",
            "asyncmy",
            serves_sync=False,
            serves_async=True,
        ),
    )
}
#: Other names people give the same drivers (SQLAlchemy calls mysqlclient "mysqldb").
ALIASES = {"psycopg3": "psycopg", "mysqldb": "mysqlclient"}
#: Each family's drivers when none is configured: for sync and for async engines.
DEFAULT_SYNC = {"postgres": DRIVERS["psycopg"], "mysql": DRIVERS["pymysql"]}
DEFAULT_ASYNC = {"postgres": DRIVERS["psycopg"], "mysql": DRIVERS["aiomysql"]}


def family_of(engine: str) -> str:
    """``"postgres"`` or ``"mysql"``: the family of an engine (or of a family)."""
    return FAMILIES[engine]


def names_of(family: str) -> str:
    """The drivers of a family, for messages: ``'psycopg' (default), 'psycopg2', …``."""
    default = DEFAULT_SYNC[family].name
    return ", ".join(
        f"{name!r} (default)" if name == default else repr(name)
        for name, driver in DRIVERS.items()
        if driver.family == family
    )


def _valid_names() -> str:
    return "; ".join(f"{_FAMILY_TITLES[family]}: {names_of(family)}" for family in DEFAULT_SYNC)


def lookup(name: str, family: str) -> Driver:
    """The driver called ``name``, which must speak to servers of ``family``."""
    key = str(name).strip().lower()
    driver = DRIVERS.get(ALIASES.get(key, key))
    if driver is None:
        raise ConfigurationError(f"unknown driver {name!r}: freshdb knows {_valid_names()}")
    family = family_of(family)
    if driver.family != family:
        raise ConfigurationError(
            f"driver {driver.name!r} speaks to {_FAMILY_TITLES[driver.family]} servers, and "
            f"this server is {_FAMILY_TITLES[family]}: choose one of {names_of(family)}"
        )
    return driver


def configured_driver(setting: str | None, engine: str) -> Driver:
    """The driver the ``driver`` setting chooses for a server of ``engine``.

    The setting names one driver, or one per family separated by commas
    (``"psycopg2,mysqlclient"``) for a suite that runs servers of both; unset,
    the family's default (psycopg 3, PyMySQL).
    """
    family = family_of(engine)
    if setting is None or not str(setting).strip():
        return DEFAULT_SYNC[family]
    names = [part.strip() for part in str(setting).split(",") if part.strip()]
    chosen: dict[str, Driver] = {}
    for name in names:
        key = name.lower()
        driver = DRIVERS.get(ALIASES.get(key, key))
        if driver is None:
            raise ConfigurationError(f"unknown driver {name!r}: freshdb knows {_valid_names()}")
        if driver.family in chosen and chosen[driver.family] != driver:
            raise ConfigurationError(
                f"driver setting {setting!r} names two {_FAMILY_TITLES[driver.family]} drivers "
                f"({chosen[driver.family].name!r} and {driver.name!r}): name one per family"
            )
        chosen[driver.family] = driver
    if family not in chosen:
        # Say it with the one driver named, as lookup() would.
        return lookup(names[0], family) if len(names) == 1 else lookup(names[-1], family)
    return chosen[family]


@dataclasses.dataclass(frozen=True)
class ConnectionParts:
    """Where a database is and who connects to it: what every driver's address is made of."""

    family: str
    host: str
    port: int
    user: str
    password: str
    #: The database name (``None``: the server's default for the user, MySQL only).
    database: str | None
    #: Called with each driver an address is made for, before it is handed out: the
    #: server's chance to accept that driver (see :attr:`Driver.min_scram_iterations`).
    accept: Callable[[Driver], None] | None = dataclasses.field(
        default=None, compare=False, repr=False
    )

    def __repr__(self) -> str:  # never show the password
        return (
            f"ConnectionParts(family={self.family!r}, host={self.host!r}, port={self.port}, "
            f"user={self.user!r}, database={self.database!r})"
        )

    @classmethod
    def from_url(cls, url: URL) -> ConnectionParts:
        """The parts of a SQLAlchemy URL of a Postgres or MySQL-family server."""
        backend = url.get_backend_name()
        family = "postgres" if backend in {"postgresql", "postgres"} else "mysql"
        return cls(
            family=family,
            host=url.host or "localhost",
            port=url.port or (5432 if family == "postgres" else 3306),
            user=url.username or "",
            password=url.password or "",
            database=url.database or None,
        )

    def url(self, driver: Driver | str) -> URL:
        """A SQLAlchemy URL for ``driver`` (a :class:`Driver` or its name)."""
        from sqlalchemy.engine import URL

        chosen = self._driver(driver)
        return URL.create(
            chosen.sqlalchemy_name,
            username=self.user,
            password=self.password,
            host=self.host,
            port=self.port,
            database=self.database,
            query=dict(chosen.url_query),
        )

    def dsn(self) -> str:
        """A plain connection URI with the password in it.

        On Postgres a libpq URI (``postgresql://user:password@host:port/name``), which
        ``psycopg.connect``, ``psycopg2.connect``, ``asyncpg.connect`` and ``psql``
        take; on MySQL/MariaDB ``mysql://user:password@host:port/name``, for tools
        that take URIs (the MySQL drivers take :meth:`connect_args` instead).
        """
        from sqlalchemy.engine import URL

        scheme = "postgresql" if self.family == "postgres" else "mysql"
        url = URL.create(
            scheme,
            username=self.user,
            password=self.password,
            host=self.host,
            port=self.port,
            database=self.database,
        )
        return url.render_as_string(hide_password=False)

    def connect_args(self, driver: Driver | str) -> dict[str, Any]:
        """Keyword arguments for the driver's own ``connect()`` (``driver.connect(**args)``)."""
        chosen = self._driver(driver)
        arguments: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            chosen.password_argument: self.password,
        }
        if self.database is not None:
            arguments[chosen.database_argument] = self.database
        arguments.update(chosen.connect_settings)
        return arguments

    def _driver(self, driver: Driver | str) -> Driver:
        chosen = lookup(driver, self.family) if isinstance(driver, str) else driver
        if self.accept is not None:
            self.accept(chosen)
        return chosen
