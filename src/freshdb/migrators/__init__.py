"""Migrators build a template's schema; their fingerprint names the template.

``schema=`` accepts any of: ``None`` (an empty database), a SQLAlchemy ``MetaData``,
a ``.sql`` file or directory, an Alembic ``.ini`` file (:class:`AlembicMigrator`), a
callable taking a connection, a :class:`Migrator`, an import path
``"package.module:attribute"``, or a list of these (applied in order).
:class:`DjangoMigrator` runs Django's ``migrate``. Alembic and Django are optional
extras, imported only when such a migrator runs.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from freshdb.errors import ConfigurationError
from freshdb.migrators.alembic import AlembicMigrator
from freshdb.migrators.base import (
    ComposedMigrator,
    EmptyMigrator,
    Migrator,
    ProgressCallback,
    describe,
    digest,
    migration_progress,
    progress_reported_to,
)
from freshdb.migrators.django import DjangoMigrator
from freshdb.migrators.function import CallableMigrator
from freshdb.migrators.metadata import MetadataMigrator
from freshdb.migrators.sql import SqlMigrator, split_statements

__all__ = [
    "AlembicMigrator",
    "CallableMigrator",
    "ComposedMigrator",
    "DjangoMigrator",
    "EmptyMigrator",
    "MetadataMigrator",
    "Migrator",
    "ProgressCallback",
    "SqlMigrator",
    "as_migrator",
    "describe",
    "digest",
    "migration_progress",
    "progress_reported_to",
    "split_statements",
]

_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def as_migrator(schema: Any, sqlalchemy_dialect: str | None = None) -> Migrator:
    """Turn whatever ``schema=`` was given into a :class:`Migrator`."""
    if schema is None:
        return EmptyMigrator()
    if _is_metadata(schema):
        return MetadataMigrator(schema, dialect=sqlalchemy_dialect)
    if isinstance(schema, Migrator):
        return schema
    if isinstance(schema, str | Path):
        return _from_string(str(schema), sqlalchemy_dialect)
    if isinstance(schema, Sequence):
        return ComposedMigrator([as_migrator(item, sqlalchemy_dialect) for item in schema])
    if callable(schema):
        return CallableMigrator(schema)
    raise ConfigurationError(
        f"schema={schema!r} is not something freshdb can build a template from: give a "
        "SQLAlchemy MetaData, a .sql file or directory, an alembic.ini, a function taking a "
        "connection, a Migrator, an import path 'package.module:attribute', or a list of these"
    )


def _is_metadata(schema: Any) -> bool:
    # Only an object whose class comes from SQLAlchemy can be a MetaData, and then
    # SQLAlchemy is imported already: other schemas cost no import of it (a start
    # imports it while its server starts, after this). The import statement, not
    # sys.modules, because a start's background thread may be importing SQLAlchemy
    # right now: sys.modules then holds it half made, and the statement waits for it.
    if not any(cls.__module__.startswith("sqlalchemy") for cls in type(schema).__mro__):
        return False
    import sqlalchemy

    return isinstance(schema, sqlalchemy.MetaData)


def _from_string(text: str, sqlalchemy_dialect: str | None) -> Migrator:
    path = Path(text)
    if path.suffix == ".ini":
        if not path.is_file():
            raise ConfigurationError(
                f"Alembic configuration {text} does not exist (working directory: "
                f"{Path.cwd()}) — fix the path"
            )
        return AlembicMigrator(path)
    if path.exists():
        return SqlMigrator(path)
    if text.endswith(".sql"):
        raise ConfigurationError(
            f"schema path {text} does not exist (working directory: {Path.cwd()}) — fix the path"
        )
    if _IMPORT_PATH.match(text):
        return as_migrator(_import(text), sqlalchemy_dialect)
    raise ConfigurationError(
        f"schema {text!r} is neither an existing .sql file or directory, nor an alembic.ini, "
        "nor an import path like 'myapp.models:Base.metadata'"
    )


def _import(path: str) -> Any:
    module_name, _, attribute = path.partition(":")
    try:
        value: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"cannot import {module_name!r} for schema {path!r}: {exc} — is the package "
            "installed, or the working directory right?"
        ) from exc
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise ConfigurationError(f"schema {path!r}: {part!r} not found") from None
    return value
