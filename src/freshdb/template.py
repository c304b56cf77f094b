"""The template: built once per fingerprint, complete only when migrations succeed.

Like pgtestdb: the fingerprint (engine, server version, migrator fingerprint) names
the template; it is built under an exclusive server-side lock, in a database of its
own, and becomes the template by an atomic final step (a rename on Postgres, a
completion marker on MySQL). A crash leaves no complete template behind, and the
next builder simply starts over.

A *derived template* (a snapshot, see :mod:`freshdb.snapshot`) is built the same
way, except that its build database starts as a copy of its parent and a seed runs
on it instead of migrations.

Each use of a template is recorded on it (when, by which project), in its comment:
:mod:`freshdb.cleanup.retention` decides from those records which templates a
server keeps. Builds show what they do through :mod:`freshdb.build_progress`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from freshdb import naming
from freshdb.build_progress import BuildProgress as BuildProgress
from freshdb.build_progress import build_progress_shown as build_progress_shown
from freshdb.build_progress import show
from freshdb.config import find_pyproject
from freshdb.dialects.base import DBAPIConnection, Dialect, ServerAddress
from freshdb.errors import FreshDBError, MigrationError, SeedError
from freshdb.migrators import (
    ComposedMigrator,
    MetadataMigrator,
    Migrator,
    describe,
    digest,
    progress_reported_to,
)
from freshdb.migrators.base import shortened_statement

if TYPE_CHECKING:
    from freshdb.snapshot import Derivation
    from freshdb.template_cache.cache import TemplateCache

log = logging.getLogger("freshdb")

#: How many projects a template remembers (a template many projects share stays small).
PROJECTS_REMEMBERED = 16
#: How long a snapshot of a live copy waits for the copy's other connections to end
#: (Postgres clones only a database nobody is connected to).
CLONE_SOURCE_WAIT_SECONDS = 10.0

_FIX_THE_MIGRATION = (
    "Fix the migration; no template was marked complete, so the next run builds it again"
)
_FIX_THE_SEED = "Fix the seed; no snapshot was marked complete, so the next run builds it again"


@dataclasses.dataclass(frozen=True)
class TemplateFingerprint:
    """What a template is built from; its digest names the template."""

    family: str
    server_version: str
    migrator: str

    @property
    def digest(self) -> str:
        """The hex digest that names the template."""
        return digest("template", self.family, self.server_version, self.migrator)


@dataclasses.dataclass(frozen=True)
class Template:
    """A complete template on a server."""

    name: str
    fingerprint: str
    reused: bool
    build_seconds: float = 0.0
    #: Restored from the template cache instead of migrated.
    restored: bool = False
    #: The project recorded on it (see :func:`project_key`); a snapshot's chains its parent's.
    project: str = ""


def _now() -> str:
    # Milliseconds: "the newest" must be certain for templates used within a second
    # of each other (a whole second sorts before them).
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def schema_source(migrator: Migrator) -> str:
    """What a schema is built from, unchanged when its contents change.

    The migrator's description, except where that describes the contents (a
    ``MetaData``'s table count).
    """
    if isinstance(migrator, MetadataMigrator):
        return "SQLAlchemy MetaData"
    if isinstance(migrator, ComposedMigrator):
        return " + ".join(schema_source(m) for m in migrator.migrators)
    return describe(migrator)


def project_key(migrator: Migrator, start: Path | None = None) -> str:
    """The project a template belongs to: project root and schema source.

    The root is the directory of the nearest ``pyproject.toml`` at or above
    ``start`` (the working directory), else that directory itself.
    """
    return f"{project_root(start)} :: {schema_source(migrator)}"


def project_root(start: Path | None = None) -> Path:
    """The directory of the nearest ``pyproject.toml`` at or above ``start`` (the
    working directory), else that directory itself."""
    here = (start or Path.cwd()).resolve()
    pyproject = find_pyproject(here)
    return pyproject.parent if pyproject is not None else here


class TemplateBuilder:
    """Finds or builds the template for a migrator on one server."""

    def __init__(
        self,
        dialect: Dialect,
        address: ServerAddress,
        prefix: str,
        owner: str,
        lock_timeout: float = 600.0,
        project: str | None = None,
        cache: TemplateCache | None = None,
    ) -> None:
        self.dialect = dialect
        self.address = address
        self.prefix = prefix
        self.owner = owner
        self.lock_timeout = lock_timeout
        #: Recorded on the template with the time of each use (None: from the migrator).
        self.project = project
        #: Where a missing template is restored from, and a built one exported to.
        self.cache = cache

    def fingerprint(self, conn: DBAPIConnection, migrator: Migrator) -> TemplateFingerprint:
        """The fingerprint of ``migrator``'s template on this server."""
        return TemplateFingerprint(
            family=self.dialect.family,
            server_version=self.dialect.server_version(conn),
            migrator=migrator.fingerprint(),
        )

    def ensure(self, lease: DBAPIConnection, migrator: Migrator) -> Template:
        """The complete template for ``migrator``, built now if there is none.

        ``lease`` is the session's long-lived connection: it holds the build lock
        while building, and afterwards marks the template as in use for as long as
        the session lives (so pruning never drops it under a live session).
        Each use is recorded on the template (when, by which project): retention
        goes by use.
        """
        wanted = self.fingerprint(lease, migrator)
        what = describe(migrator)

        def reused(name: str) -> None:
            if self.cache is not None:
                scratch = naming.build_name(self.prefix, wanted.digest, self.owner)
                self.cache.export_template(lease, name, wanted, what, scratch)

        def fill(name: str, build: str) -> bool:
            if self.cache is not None and self.cache.restore(lease, build, wanted):
                return True
            show(f"freshdb: building template {name} with {what}")
            with progress_reported_to(BuildProgress(name, show)):
                self._run(migrator, build, f"building the template with {what}", MigrationError)
            if self.cache is not None:
                self.cache.export(lease, build, wanted, what)
            return False

        plan = _Plan(
            noun="template",
            fingerprint=wanted.digest,
            what=what,
            project=self.project or project_key(migrator),
            metadata={"migrator": what},
        )
        return self._ensure(
            lease, plan, lambda build: self.dialect.create_database(lease, build), fill, reused
        )

    def ensure_derived(self, lease: DBAPIConnection, derivation: Derivation) -> Template:
        """The complete derived template (a snapshot) of ``derivation``, built now if
        there is none.

        As :meth:`ensure` does, under the snapshot's own build lock, except that the
        build database starts as a clone of ``derivation.source`` and the seed runs
        on it (without a seed, the source's committed state is the snapshot).
        """
        seed = derivation.seed
        what = derivation.description

        def create(build: str) -> None:
            self.dialect.copy_database(lease, derivation.source, build, CLONE_SOURCE_WAIT_SECONDS)

        def fill(name: str, build: str) -> bool:
            if seed is not None:
                show(f"freshdb: building snapshot {name}: seeding with {what}")
                with progress_reported_to(BuildProgress(name, show, noun="snapshot")):
                    self._run(seed, build, f"seeding snapshot {name} with {what}", SeedError)
            return False

        plan = _Plan(
            noun="snapshot",
            fingerprint=derivation.fingerprint,
            what=what,
            project=derivation.project,
            metadata=derivation.metadata(),
        )
        return self._ensure(lease, plan, create, fill)

    def _ensure(
        self,
        lease: DBAPIConnection,
        plan: _Plan,
        create: Callable[[str], None],
        fill: Callable[[str, str], bool],
        reused: Callable[[str], None] | None = None,
    ) -> Template:
        fingerprint = plan.fingerprint
        name = naming.template_name(self.prefix, fingerprint)
        self.dialect.lock_template(lease, fingerprint, self.lock_timeout)
        try:
            if self.dialect.template_is_complete(lease, name):
                template = Template(name, fingerprint, reused=True, project=plan.project)
                record_use(self.dialect, lease, name, plan.project)
                show(f"freshdb: {plan.noun} {name} reused ({plan.what})")
                if reused is not None:
                    reused(name)
            else:
                template = self._build(lease, plan, name, create, fill)
            self.dialect.mark_template_in_use(lease, fingerprint)
        except BaseException:
            # If the server went away, unlocking fails too: the first error says why
            # (and the lock died with the connection anyway).
            try:
                self.dialect.unlock_template(lease, fingerprint)
            except Exception as unlock_error:
                log.debug("releasing the template lock failed: %s", unlock_error)
            raise
        self.dialect.unlock_template(lease, fingerprint)
        return template

    def _build(
        self,
        lease: DBAPIConnection,
        plan: _Plan,
        name: str,
        create: Callable[[str], None],
        fill: Callable[[str, str], bool],
    ) -> Template:
        """Build ``plan`` into a database of its own: ``create`` makes it, ``fill`` runs
        the migrations or the seed (True: restored from the cache), then it is completed."""
        started = time.perf_counter()
        fingerprint = plan.fingerprint
        # Holding the exclusive lock, any other build of this fingerprint is a
        # crashed builder's leftover.
        for leftover in self.dialect.our_databases(lease, self.prefix, ("build",)):
            if fingerprint.startswith(leftover.fingerprint):
                log.info("dropping %s, left by a builder that did not finish", leftover.name)
                self.dialect.drop_database(lease, leftover.name)
        build = self.dialect.build_database_name(
            name, naming.build_name(self.prefix, fingerprint, self.owner)
        )
        if build == name and self.dialect.database_exists(lease, name):
            self.dialect.drop_database(lease, name)  # incomplete: no completion marker
        try:
            create(build)
            restored = fill(name, build)
            now = _now()
            comment = json.dumps(
                {
                    "freshdb": "template",
                    "fingerprint": fingerprint,
                    **plan.metadata,
                    "created": now,
                    "last_used": now,
                    "projects": {plan.project: now},
                }
            )
            self.dialect.complete_template(lease, build, name, comment)
        except BaseException:
            try:
                self.dialect.drop_database(lease, build)
            except Exception as drop_error:  # the server may be gone; reaping finishes it
                log.warning("could not drop the failed build %s: %s", build, drop_error)
            raise
        seconds = time.perf_counter() - started
        verb = "restored from the cache" if restored else "built"
        show(f"freshdb: {plan.noun} {name} {verb} in {seconds:.2f} s")
        return Template(
            name,
            fingerprint,
            reused=False,
            build_seconds=seconds,
            restored=restored,
            project=plan.project,
        )

    def _run(
        self, migrator: Migrator, database: str, doing: str, failure: type[MigrationError]
    ) -> None:
        """Run ``migrator`` on ``database`` and commit; ``failure`` says why it failed:
        a :class:`MigrationError` for a template, a :class:`SeedError` for a snapshot."""
        import sqlalchemy
        from sqlalchemy.exc import DBAPIError
        from sqlalchemy.pool import NullPool

        fix = _FIX_THE_SEED if failure is SeedError else _FIX_THE_MIGRATION
        engine = sqlalchemy.create_engine(
            self.dialect.sync_url(self.address, database), poolclass=NullPool
        )
        try:
            with engine.connect() as connection:
                migrator.migrate(connection)
                connection.commit()
        except MigrationError as exc:
            # A migrator's own error says what failed; add what to do about it (and,
            # for a seed, which seed it was: a seed is often a .sql file like a schema).
            if fix in str(exc) and isinstance(exc, failure):
                raise
            text = str(exc) if failure is MigrationError else f"{doing} failed: {exc}"
            raise failure(f"{text}\n{fix}") from exc
        except FreshDBError:
            raise
        except DBAPIError as exc:
            translated = self.dialect.translate_error(exc.orig) if exc.orig else None
            if translated is not None and not isinstance(translated, MigrationError):
                raise translated from exc
            statement = shortened_statement(str(exc.statement or ""))
            raise failure(
                f"{doing} failed: {str(exc.orig).strip()}\n    in statement: {statement}\n{fix}"
            ) from exc
        except Exception as exc:
            raise failure(f"{doing} failed: {type(exc).__name__}: {exc}\n{fix}") from exc
        finally:
            engine.dispose()


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What one build makes: the fingerprint naming it, words for it, its metadata."""

    #: "template", or "snapshot" for a derived template (in progress lines).
    noun: str
    fingerprint: str
    #: What it is built with (a migrator's or a seed's description).
    what: str
    project: str
    #: Stored in its comment beside the fingerprint and the record of uses.
    metadata: dict[str, Any]


def read_metadata(dialect: Dialect, conn: DBAPIConnection, name: str) -> dict[str, Any]:
    """The metadata freshdb stored on a complete template (``{}`` if it has none).

    Read it only holding the template's build lock (or knowing it complete and
    kept): a MySQL template's metadata lives inside it.
    """
    try:
        value = json.loads(dialect.database_comment(conn, name) or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def record_use(dialect: Dialect, conn: DBAPIConnection, name: str, project: str) -> None:
    """Record on a complete template that ``project`` uses it now (holding its lock).

    A server that refuses (the template belongs to another user) costs retention
    its facts about this use, never the session.
    """
    try:
        metadata = read_metadata(dialect, conn, name)
        now = _now()
        projects = metadata.get("projects")
        projects = dict(projects) if isinstance(projects, dict) else {}
        projects[project] = now
        newest = sorted(projects.items(), key=lambda item: str(item[1]), reverse=True)
        metadata.update(
            freshdb="template", last_used=now, projects=dict(newest[:PROJECTS_REMEMBERED])
        )
        dialect.set_template_comment(conn, name, json.dumps(metadata))
    except Exception as exc:
        log.debug("could not record the use of template %s: %s", name, exc)
