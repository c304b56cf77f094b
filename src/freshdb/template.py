"""The template: built once per fingerprint, complete only when migrations succeed.

Like pgtestdb: the fingerprint (engine, server version, migrator fingerprint) names
the template; it is built under an exclusive server-side lock, in a database of its
own, and becomes the template by an atomic final step (a rename on Postgres, a
completion marker on MySQL). A crash leaves no complete template behind, and the
next builder simply starts over.

Retention: every template records, per project, when it was last used (in its
comment, which never reaches a copy). A server keeps ``keep_templates`` templates
without question; beyond that, :func:`prune_templates` removes a project's
superseded templates first, then templates nobody used within
``template_retention``, and never one a live session uses or one that is not
complete. A *project* is the directory of the nearest ``pyproject.toml`` (else the
working directory) together with the schema's source (which files, which
function, which Alembic ini): editing the schema supersedes the old template;
another project's schema does not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from freshdb import naming
from freshdb.config import find_pyproject
from freshdb.dialects.base import DBAPIConnection, Dialect, ServerAddress
from freshdb.errors import FreshDBError, MigrationError
from freshdb.migrators import (
    ComposedMigrator,
    MetadataMigrator,
    Migrator,
    describe,
    digest,
    progress_reported_to,
)

log = logging.getLogger("freshdb")

#: How many projects a template remembers (a template many projects share stays small).
PROJECTS_REMEMBERED = 16

_FIX_THE_MIGRATION = (
    "Fix the migration; no template was marked complete, so the next run builds it again"
)


#: Where build progress is shown (a line at a time), innermost last; empty: only logged.
_PROGRESS_WRITERS: list[Callable[[str], None]] = []
_PROGRESS_WRITERS_LOCK = threading.Lock()
#: Progress lines are at least this far apart (the first and the last always show).
PROGRESS_INTERVAL_SECONDS = 1.0


@contextlib.contextmanager
def build_progress_shown(write: Callable[[str], None]) -> Iterator[None]:
    """Show template builds (and reuses) of this block through ``write``, one line each.

    Used where someone watches: pytest's terminal, ``freshdb warm``, Django's runner.
    """
    with _PROGRESS_WRITERS_LOCK:
        _PROGRESS_WRITERS.append(write)
    try:
        yield
    finally:
        with _PROGRESS_WRITERS_LOCK:
            _PROGRESS_WRITERS.remove(write)


def _show(line: str) -> None:
    with _PROGRESS_WRITERS_LOCK:
        write = _PROGRESS_WRITERS[-1] if _PROGRESS_WRITERS else None
    if write is None:
        log.info("%s", line.removeprefix("freshdb: "))
        return
    log.debug("%s", line)  # shown already: once is enough where the log is shown too
    try:
        write(line)
    except Exception as exc:  # a closed terminal never fails a build
        log.debug("showing build progress failed: %s", exc)


class BuildProgress:
    """Throttled lines about one template build: step ``n`` of ``total`` and time so far.

    Called with each step as it starts; shows the first step, then at most one line
    per ``interval`` seconds (the step starting then), so a long history shows
    where it is without a line per migration in a CI log.
    """

    def __init__(
        self,
        template: str,
        write: Callable[[str], None],
        *,
        interval: float = PROGRESS_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.template = template
        self.write = write
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self._shown_at: float | None = None

    def __call__(self, step: int, total: int, name: str) -> None:
        now = self.clock()
        if self._shown_at is not None and now - self._shown_at < self.interval:
            return
        self._shown_at = now
        self.write(
            f"freshdb: building template {self.template}: {step}/{total} {name} "
            f"({now - self.started:.1f} s)"
        )


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
    here = (start or Path.cwd()).resolve()
    pyproject = find_pyproject(here)
    root = pyproject.parent if pyproject is not None else here
    return f"{root} :: {schema_source(migrator)}"


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
    ) -> None:
        self.dialect = dialect
        self.address = address
        self.prefix = prefix
        self.owner = owner
        self.lock_timeout = lock_timeout
        #: Recorded on the template with the time of each use (None: from the migrator).
        self.project = project

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
        fingerprint = self.fingerprint(lease, migrator).digest
        name = naming.template_name(self.prefix, fingerprint)
        project = self.project or project_key(migrator)
        self.dialect.lock_template(lease, fingerprint, self.lock_timeout)
        try:
            if self.dialect.template_is_complete(lease, name):
                template = Template(name, fingerprint, reused=True)
                record_use(self.dialect, lease, name, project)
                _show(f"freshdb: template {name} reused ({describe(migrator)})")
            else:
                template = self._build(lease, migrator, fingerprint, name, project)
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
        migrator: Migrator,
        fingerprint: str,
        name: str,
        project: str,
    ) -> Template:
        started = time.perf_counter()
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
        _show(f"freshdb: building template {name} with {describe(migrator)}")
        self.dialect.create_database(lease, build)
        try:
            with progress_reported_to(BuildProgress(name, _show)):
                self._migrate(migrator, build)
            now = _now()
            comment = json.dumps(
                {
                    "freshdb": "template",
                    "fingerprint": fingerprint,
                    "migrator": describe(migrator),
                    "created": now,
                    "last_used": now,
                    "projects": {project: now},
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
        _show(f"freshdb: template {name} built in {seconds:.2f} s")
        return Template(name, fingerprint, reused=False, build_seconds=seconds)

    def _migrate(self, migrator: Migrator, database: str) -> None:
        engine = sqlalchemy.create_engine(
            self.dialect.sync_url(self.address, database), poolclass=NullPool
        )
        try:
            with engine.connect() as connection:
                migrator.migrate(connection)
                connection.commit()
        except MigrationError as exc:
            # A migrator's own error says what failed; add what to do about it.
            if _FIX_THE_MIGRATION in str(exc):
                raise
            raise MigrationError(f"{exc}\n{_FIX_THE_MIGRATION}") from exc
        except FreshDBError:
            raise
        except DBAPIError as exc:
            translated = self.dialect.translate_error(exc.orig) if exc.orig else None
            if translated is not None and not isinstance(translated, MigrationError):
                raise translated from exc
            statement = " ".join(str(exc.statement or "").split())
            if len(statement) > 300:
                statement = statement[:297] + "..."
            raise MigrationError(
                f"building the template with {describe(migrator)} failed: "
                f"{str(exc.orig).strip()}\n    in statement: {statement}\n"
                f"{_FIX_THE_MIGRATION}"
            ) from exc
        except Exception as exc:
            raise MigrationError(
                f"building the template with {describe(migrator)} failed: "
                f"{type(exc).__name__}: {exc}\n{_FIX_THE_MIGRATION}"
            ) from exc
        finally:
            engine.dispose()


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


def template_created(dialect: Dialect, conn: DBAPIConnection, name: str) -> str:
    """When a template was completed (ISO 8601), from the comment stored on it."""
    return str(read_metadata(dialect, conn, name).get("created", ""))


@dataclasses.dataclass(frozen=True)
class TemplateRecord:
    """What a server says about one complete template, for retention and status."""

    name: str
    fingerprint: str
    created: str
    #: When any project last used it (ISO 8601; its creation if never recorded).
    last_used: str
    #: Project key -> when that project last used it.
    projects: Mapping[str, str]
    migrator: str | None
    in_use: bool


def _record(
    name: str, fingerprint: str, metadata: Mapping[str, Any], in_use: bool
) -> TemplateRecord:
    created = str(metadata.get("created", ""))
    raw = metadata.get("projects")
    projects = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
    last_used = max([str(metadata.get("last_used") or created), *projects.values()])
    migrator = metadata.get("migrator")
    return TemplateRecord(
        name=name,
        fingerprint=fingerprint,
        created=created,
        last_used=last_used,
        projects=projects,
        migrator=str(migrator) if migrator is not None else None,
        in_use=in_use,
    )


def read_templates(
    dialect: Dialect, conn: DBAPIConnection, prefix: str, *, drop_crashed: bool = False
) -> tuple[list[TemplateRecord], list[str]]:
    """The complete templates of ``prefix`` on a server, and those it could not read.

    Each template is read holding its build lock, taken without waiting: one being
    built, removed or taken into use right now is skipped (listed second), never
    read half-built. A MySQL template left incomplete by a builder that died (its
    lock is free, its marker missing) is skipped too, or with ``drop_crashed``
    dropped: nobody can be building it.
    """
    records: list[TemplateRecord] = []
    busy: list[str] = []
    for template in dialect.our_databases(conn, prefix, ("template",)):
        try:
            if not dialect.try_lock_template(conn, template.fingerprint):
                log.debug("skipping template %s: another session holds its lock", template.name)
                busy.append(template.name)
                continue
        except Exception as exc:
            log.debug("skipping template %s: %s", template.name, exc)
            busy.append(template.name)
            continue
        try:
            if not dialect.template_is_complete(conn, template.name):
                busy.append(template.name)
                if drop_crashed:
                    log.info("dropping %s, left by a builder that did not finish", template.name)
                    dialect.drop_database(conn, template.name)
                continue
            metadata = read_metadata(dialect, conn, template.name)
            in_use = dialect.template_in_use(conn, template.fingerprint)
            records.append(_record(template.name, template.fingerprint, metadata, in_use))
        except Exception as exc:
            log.debug("skipping template %s: %s", template.name, exc)
            busy.append(template.name)
        finally:
            _unlock_quietly(dialect, conn, template.fingerprint)
    return records, busy


def _unlock_quietly(dialect: Dialect, conn: DBAPIConnection, fingerprint: str) -> None:
    try:
        dialect.unlock_template(conn, fingerprint)
    except Exception as exc:
        log.debug("releasing the lock of template %s failed: %s", fingerprint[:20], exc)


@dataclasses.dataclass(frozen=True)
class PrunedTemplate:
    """A template retention removes (or, in a dry run, would remove), and why."""

    name: str
    reason: str


def _superseded(record: TemplateRecord, records: Collection[TemplateRecord]) -> bool:
    """Every project that used it has used another template since."""
    if not record.projects:
        return False  # no project recorded (an older freshdb made it): cannot tell
    return all(
        any(
            other.name != record.name and other.projects.get(project, "") > used
            for other in records
        )
        for project, used in record.projects.items()
    )


def plan_pruning(
    records: Collection[TemplateRecord],
    keep: int,
    retention_seconds: float,
    protect: Collection[str] = (),
    now: dt.datetime | None = None,
) -> list[PrunedTemplate]:
    """Which templates retention removes, first to go first (pure: no server).

    Up to ``keep`` templates stay whatever their age. Beyond that, room is made
    by removing, least recently used first: superseded templates (each project
    that used one has used a newer one since), then templates nobody used within
    ``retention_seconds``. A template in use or in ``protect`` never goes, and a
    project's current template used within the retention never goes to make room
    for another project's (so a server may hold more than ``keep``).
    """
    excess = len(records) - keep
    if excess <= 0:
        return []
    moment = now or dt.datetime.now(dt.UTC)
    cutoff = (moment - dt.timedelta(seconds=retention_seconds)).isoformat(timespec="milliseconds")
    removable = [r for r in records if not r.in_use and r.name not in protect]
    superseded = sorted(
        (r for r in removable if _superseded(r, records)), key=lambda r: r.last_used
    )
    idle = sorted(
        (r for r in removable if r not in superseded and r.last_used < cutoff),
        key=lambda r: r.last_used,
    )
    plan = [
        PrunedTemplate(r.name, "superseded: its project uses a newer template") for r in superseded
    ]
    days = retention_seconds / 86400
    plan += [
        PrunedTemplate(r.name, f"not used within {days:g} days ({r.last_used or 'never'})")
        for r in idle
    ]
    return plan[:excess]


def prune_templates(
    dialect: Dialect,
    conn: DBAPIConnection,
    prefix: str,
    keep: int,
    protect: Collection[str],
    *,
    retention_seconds: float = 7 * 86400,
    dry_run: bool = False,
) -> list[PrunedTemplate]:
    """Remove templates as :func:`plan_pruning` says, skipping any that is busy.

    Never fails on another session's templates: one that is being built, removed
    or taken into use, that cannot be read or dropped, is skipped (logged at
    debug). With ``dry_run``, only name them (``freshdb prune --dry-run``).
    """
    if len(dialect.our_databases(conn, prefix, ("template",))) <= keep:
        return []
    records, _ = read_templates(dialect, conn, prefix, drop_crashed=not dry_run)
    plan = plan_pruning(records, keep, retention_seconds, protect)
    if dry_run:
        return plan
    last_used = {r.name: r.last_used for r in records}
    pruned = []
    for entry in plan:
        fingerprint = next(r.fingerprint for r in records if r.name == entry.name)
        try:
            if not dialect.try_lock_unused_template(conn, fingerprint):
                log.debug("not dropping template %s: it is in use or locked", entry.name)
                continue
        except Exception as exc:
            log.debug("not dropping template %s: %s", entry.name, exc)
            continue
        try:
            # Used since it was read: the plan no longer holds for it.
            now_used = _record(
                entry.name, fingerprint, read_metadata(dialect, conn, entry.name), False
            )
            if now_used.last_used != last_used[entry.name]:
                log.debug("not dropping template %s: used meanwhile", entry.name)
                continue
            log.info("dropping template %s (%s)", entry.name, entry.reason)
            dialect.drop_database(conn, entry.name)
            pruned.append(entry)
        except Exception as exc:
            log.debug("could not drop template %s: %s", entry.name, exc)
        finally:
            _unlock_quietly(dialect, conn, fingerprint)
    return pruned
