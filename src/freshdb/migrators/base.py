"""The migrator protocol: what builds a template, and the fingerprint that names it.

A migrator that knows its steps (Django's migrations, Alembic's revisions, SQL
files) tells the builder where it is with :func:`migration_progress`; whoever builds
the template decides, through :func:`progress_reported_to`, whether and where that
shows. A migrator that never calls it builds all the same, silently.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


@runtime_checkable
class Migrator(Protocol):
    """Builds a schema into an empty database.

    ``fingerprint()`` must change whenever what ``migrate()`` would build changes:
    it names the template, so an unchanged fingerprint means "reuse the template".
    """

    def fingerprint(self) -> str:
        """A stable digest of everything that shapes the schema."""
        ...

    def migrate(self, connection: Connection) -> None:
        """Build the schema through ``connection`` (freshdb commits afterwards)."""
        ...


#: ``(step, total, name)``: step ``step`` of ``total`` (counted from 1), named ``name``,
#: starts now.
ProgressCallback = Callable[[int, int, str], None]

_PROGRESS: contextvars.ContextVar[ProgressCallback | None] = contextvars.ContextVar(
    "freshdb_migration_progress", default=None
)


def migration_progress(step: int, total: int, name: str) -> None:
    """Say that step ``step`` of ``total`` (a migration, a revision, a file) starts."""
    callback = _PROGRESS.get()
    if callback is not None:
        callback(step, total, name)


@contextlib.contextmanager
def progress_reported_to(callback: ProgressCallback | None) -> Iterator[None]:
    """Send :func:`migration_progress` calls made in this block to ``callback``."""
    token = _PROGRESS.set(callback)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def digest(*parts: str | bytes) -> str:
    """A sha256 hex digest over length-prefixed parts (so boundaries cannot shift)."""
    hasher = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        hasher.update(len(data).to_bytes(8, "big"))
        hasher.update(data)
    return hasher.hexdigest()


def shortened_statement(sql: str, limit: int = 300) -> str:
    """A statement on one line, cut to ``limit`` characters, for an error message."""
    line = " ".join(sql.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def describe(migrator: Migrator) -> str:
    """A short human description of a migrator (for logs and errors)."""
    text = getattr(migrator, "description", None)
    return str(text) if text else type(migrator).__name__


class EmptyMigrator:
    """No schema at all: copies are empty databases."""

    description = "empty database"

    def fingerprint(self) -> str:
        return digest("empty")

    def migrate(self, connection: Connection) -> None:
        """Nothing to build."""


class ComposedMigrator:
    """Several migrators applied in order (e.g. schema, then seed data)."""

    def __init__(self, migrators: Sequence[Migrator]) -> None:
        self.migrators = list(migrators)
        self.description = " + ".join(describe(m) for m in self.migrators)

    def fingerprint(self) -> str:
        return digest(
            "composed", *(f"{type(m).__name__}:{m.fingerprint()}" for m in self.migrators)
        )

    def migrate(self, connection: Connection) -> None:
        for migrator in self.migrators:
            migrator.migrate(connection)
