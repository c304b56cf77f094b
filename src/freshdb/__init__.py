"""freshdb: a fresh, fully migrated database for every test, in about a millisecond.

>>> import freshdb
>>> server = freshdb.DatabaseServer("postgres", schema="schema.sql")  # doctest: +SKIP
>>> with server, server.database() as db:  # doctest: +SKIP
...     db.engine()
"""

from freshdb._version import __version__
from freshdb.config import Settings, resolve_settings
from freshdb.database import Database
from freshdb.errors import (
    ConfigurationError,
    ContainerConflictError,
    DockerUnavailableError,
    FreshDBError,
    ImageError,
    MigrationError,
    PoolTimeoutError,
    ServerFullError,
    ServerStartError,
    ServerUnavailableError,
    UnsupportedServerError,
)
from freshdb.server import DatabaseServer

__all__ = [
    "ConfigurationError",
    "ContainerConflictError",
    "Database",
    "DatabaseServer",
    "DockerUnavailableError",
    "FreshDBError",
    "ImageError",
    "MigrationError",
    "PoolTimeoutError",
    "ServerFullError",
    "ServerStartError",
    "ServerUnavailableError",
    "Settings",
    "UnsupportedServerError",
    "__version__",
    "resolve_settings",
]
