"""freshdb: a fresh, fully migrated database for every test, in about a millisecond.

>>> import freshdb
>>> server = freshdb.DatabaseServer("postgres", schema="schema.sql")  # doctest: +SKIP
>>> with server, server.database() as db:  # doctest: +SKIP
...     db.engine()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from freshdb._version import __version__
from freshdb.errors import (
    ConfigurationError,
    ContainerConflictError,
    DockerUnavailableError,
    FreshDBError,
    ImageError,
    MigrationError,
    PoolTimeoutError,
    SeedError,
    ServerFullError,
    ServerStartError,
    ServerUnavailableError,
    UnsupportedServerError,
)

if TYPE_CHECKING:
    from freshdb.config import Settings, resolve_settings
    from freshdb.database import Database
    from freshdb.server import DatabaseServer
    from freshdb.snapshot import Snapshot

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
    "SeedError",
    "ServerFullError",
    "ServerStartError",
    "ServerUnavailableError",
    "Settings",
    "Snapshot",
    "UnsupportedServerError",
    "__version__",
    "resolve_settings",
]

# Imported on first use, so that importing a light part of freshdb (the pytest plugin
# loads freshdb.errors) does not import SQLAlchemy and the server machinery.
_LAZY = {
    "Database": "freshdb.database",
    "DatabaseServer": "freshdb.server",
    "Settings": "freshdb.config",
    "Snapshot": "freshdb.snapshot",
    "resolve_settings": "freshdb.config",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
