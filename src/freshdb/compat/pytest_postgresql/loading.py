"""What pytest-postgresql's ``load=`` lists load into freshdb's template.

A ``Path`` is a SQL file executed at once; a string is the import path of a loader
function, called with the template's host, port, user, dbname and password, as
pytest-postgresql calls it. The template's fingerprint is made of the files'
contents and the loader modules' source, so a change to either builds a new one.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import URL, Connection

from freshdb.errors import ConfigurationError
from freshdb.migrators.base import ComposedMigrator, Migrator, digest

#: What ``load=`` takes, as in pytest-postgresql: a ``Path`` of a SQL file, an import
#: path of a loader function (``"package.module:function"``), or the function itself.
Load = Path | str | Callable[..., Any]

#: pytest-postgresql's options for what to load (registered by the plugin module).
LOAD_OPTION = "postgresql_load"
AUTOCOMMIT_OPTION = "postgresql_load_autocommit"


def _loader_function(load: str | Callable[..., Any]) -> Callable[..., Any]:
    """The function an import path names (``pkg.module:function`` or ``pkg.module.function``)."""
    if callable(load):
        return load
    module_name, _, attribute = load.rpartition(":")
    if not module_name:
        module_name, _, attribute = load.rpartition(".")
    if not module_name or not attribute:
        raise ConfigurationError(
            f"load={load!r}: a string in load= is an import path of a loader function "
            "(package.module:function); for a SQL file pass a pathlib.Path"
        )
    try:
        module = importlib.import_module(module_name)
        function = getattr(module, attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(
            f"load={load!r}: cannot import the loader function ({exc}) — check the import "
            "path, and that its package is importable from the test run"
        ) from exc
    if not callable(function):
        raise ConfigurationError(f"load={load!r} names {type(function).__name__}, not a function")
    result: Callable[..., Any] = function
    return result


def _source_of(function: Callable[..., Any]) -> str:
    """The code a loader function's behaviour depends on: its whole module if possible."""
    target = inspect.unwrap(function)
    for subject in (inspect.getmodule(target), target):
        if subject is None:
            continue
        try:
            return inspect.getsource(subject)
        except (OSError, TypeError):
            continue
    raise ConfigurationError(
        f"cannot read the source of the loader {function!r} to fingerprint the template — "
        "load a function defined in a .py file (not a functools.partial or a builtin)"
    )


class SqlFileLoad:
    """A ``Path`` in ``load=``: the file executed at once, as pytest-postgresql does."""

    def __init__(self, path: Path, autocommit: bool) -> None:
        self.path = path
        self.autocommit = autocommit
        self.description = f"load={path}"

    def fingerprint(self) -> str:
        try:
            content = self.path.read_bytes()
        except OSError as exc:
            raise ConfigurationError(
                f"load=[Path({str(self.path)!r})]: cannot read the SQL file ({exc})"
            ) from exc
        return digest("pytest-postgresql-sql", str(self.autocommit), content)

    def migrate(self, connection: Connection) -> None:
        with connect_like_a_loader(connection, self.autocommit) as loading:
            loading.execute(self.path.read_text())
            if not self.autocommit:
                loading.commit()


class FunctionLoad:
    """A loader function in ``load=``: called with host, port, user, dbname, password."""

    def __init__(self, load: str | Callable[..., Any]) -> None:
        self.function = _loader_function(load)
        name = getattr(self.function, "__qualname__", repr(self.function))
        self.description = f"load={getattr(self.function, '__module__', '?')}.{name}"

    def fingerprint(self) -> str:
        return digest("pytest-postgresql-loader", self.description, _source_of(self.function))

    def migrate(self, connection: Connection) -> None:
        url = connection.engine.url
        self.function(
            host=url.host,
            port=url.port,
            user=url.username,
            dbname=url.database,
            password=url.password,
        )


def psycopg_arguments(url: URL, dbname: str | None, **extra: Any) -> dict[str, Any]:
    """``psycopg.connect()``'s keywords for ``dbname`` on the server of ``url``."""
    return {
        "host": url.host,
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "dbname": dbname,
        **extra,
    }


def connect_like_a_loader(connection: Connection, autocommit: bool) -> psycopg.Connection[Any]:
    """A psycopg connection to the template being built, as pytest-postgresql's loaders get."""
    url = connection.engine.url
    return psycopg.connect(**psycopg_arguments(url, url.database, autocommit=autocommit))


def load_migrator(loads: Sequence[Load], autocommit: bool) -> Migrator:
    """The migrator of a ``load=`` list: each SQL file and loader function in turn."""
    steps: list[Migrator] = []
    for load in loads:
        if isinstance(load, Path):
            steps.append(SqlFileLoad(load, autocommit))
        elif isinstance(load, str) or callable(load):
            steps.append(FunctionLoad(load))
        else:
            raise ConfigurationError(
                f"load= takes Paths of SQL files, import paths of loader functions and "
                f"functions, got {load!r}"
            )
    return ComposedMigrator(steps)


def configured_loads(config: pytest.Config) -> tuple[list[Load], bool | None]:
    """pytest-postgresql's ``--postgresql-load`` / ``postgresql_load`` and
    ``--postgresql-load-autocommit`` / ``postgresql_load_autocommit``, when the
    compatibility plugin registered them: what factories without ``load=`` load.

    As in pytest-postgresql, a value ending in ``.sql`` is a SQL file (relative to
    the working directory, or in the ini file to the ini file's directory); any
    other is an import path.
    """
    values: list[Any] = []
    autocommit: bool | None = None
    try:
        values = list(config.getoption(LOAD_OPTION) or [])
        if not values and config.inipath is not None:
            # pathlist made every value a path next to the ini file: an import path
            # is given back as it was written.
            values = [
                path if str(path).endswith(".sql") else os.path.relpath(path, config.inipath.parent)
                for path in config.getini(LOAD_OPTION) or []
            ]
        autocommit = bool(config.getoption(AUTOCOMMIT_OPTION) or config.getini(AUTOCOMMIT_OPTION))
    except ValueError:  # the plugin is not loaded: the factories are used on their own
        pass
    loads: list[Load] = [Path(str(v)) if str(v).endswith(".sql") else str(v) for v in values]
    return loads, autocommit
