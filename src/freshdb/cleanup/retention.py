"""Template retention: which templates a server keeps, and removing the rest.

Every template records, per project, when it was last used (in its comment, which
never reaches a copy; written by :mod:`freshdb.template`). A server keeps
``keep_templates`` templates without question; beyond that, :func:`prune_templates`
removes a project's superseded templates first, then templates nobody used within
``template_retention``, and never one a live session uses or one that is not
complete. A *project* is the directory of the nearest ``pyproject.toml`` (else the
working directory) together with the schema's source (which files, which function,
which Alembic ini): editing the schema supersedes the old template; another
project's schema does not (see :func:`freshdb.template.project_key`).

*Snapshots* (derived templates: seeded data sealed like a template, see
:meth:`freshdb.DatabaseServer.snapshot`) are named like templates and say what they
are in the same comment (``"kind": "snapshot"``, their ``"parent"`` template). They
live under their parent: they never count against ``keep_templates`` (a suite's
snapshots never crowd out another project's template), and one goes when its
parent is gone or pruned (layers follow their parent snapshot) or when nobody used
it within ``template_retention``, whatever the count; never one a live session
uses.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Collection, Mapping
from typing import Any

from freshdb.dialects.base import DBAPIConnection, Dialect
from freshdb.template import read_metadata

log = logging.getLogger("freshdb")

#: How long a template nobody uses is kept (beyond ``keep_templates``) by default.
DEFAULT_RETENTION_SECONDS = 7 * 86400


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
    #: ``"template"`` (built from a schema) or ``"snapshot"`` (derived from ``parent``).
    kind: str = "template"
    #: A snapshot's parent: the template (or snapshot) it was seeded from.
    parent: str | None = None
    parent_fingerprint: str | None = None
    #: A snapshot's seed, described (what ran on the parent's copy).
    seed: str | None = None
    #: A snapshot's key (``db.snapshot(key)``, or ``key=``), if it has one.
    key: str | None = None

    @property
    def is_snapshot(self) -> bool:
        """A derived template (seeded from a parent), not one built from a schema."""
        return self.kind == "snapshot"


def _optional(value: Any) -> str | None:
    return None if value is None else str(value)


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
        kind="snapshot" if metadata.get("kind") == "snapshot" else "template",
        parent=_optional(metadata.get("parent")),
        parent_fingerprint=_optional(metadata.get("parent_fingerprint")),
        seed=_optional(metadata.get("seed")),
        key=_optional(metadata.get("key")),
    )


def read_templates(
    dialect: Dialect,
    conn: DBAPIConnection,
    prefix: str,
    *,
    drop_crashed: bool = False,
    crashed: list[str] | None = None,
) -> tuple[list[TemplateRecord], list[str]]:
    """The complete templates of ``prefix`` on a server, and those it could not read.

    Each template is read holding its build lock, taken without waiting: one being
    built, removed or taken into use right now is skipped (listed second), never
    read half-built. A MySQL template (or snapshot) left incomplete by a builder that
    died (its lock is free, its marker missing) is skipped too, or with
    ``drop_crashed`` dropped: nobody can be building it; ``crashed`` collects their
    names.
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
                if crashed is not None:
                    crashed.append(template.name)
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
    #: ``"template"`` or ``"snapshot"``.
    kind: str = "template"


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
    present: Collection[str] | None = None,
) -> list[PrunedTemplate]:
    """Which templates and snapshots retention removes, first to go first (pure).

    Templates: up to ``keep`` stay whatever their age. Beyond that, room is made
    by removing, least recently used first: superseded templates (each project
    that used one has used a newer one since), then templates nobody used within
    ``retention_seconds``. A project's current template used within the retention
    never goes to make room for another project's (so a server may hold more than
    ``keep``).

    Snapshots count against no ``keep``: one goes (after the templates) when its
    parent goes in this plan, when its parent is not among ``present`` (the names
    of every template-shaped database on the server, complete or not; default: the
    records'), or when nobody used it within ``retention_seconds``. Nothing in use
    or in ``protect`` ever goes.
    """
    moment = now or dt.datetime.now(dt.UTC)
    cutoff = (moment - dt.timedelta(seconds=retention_seconds)).isoformat(timespec="milliseconds")
    days = retention_seconds / 86400
    templates = [r for r in records if not r.is_snapshot]
    plan = _plan_templates(templates, keep, cutoff, days, protect)
    on_server = set(present) if present is not None else {r.name for r in records}
    return plan + _plan_snapshots(records, plan, on_server, cutoff, days, protect)


def _idle_reason(record: TemplateRecord, days: float) -> str:
    return f"not used within {days:g} days ({record.last_used or 'never'})"


def _plan_templates(
    records: list[TemplateRecord],
    keep: int,
    cutoff: str,
    days: float,
    protect: Collection[str],
) -> list[PrunedTemplate]:
    excess = len(records) - keep
    if excess <= 0:
        return []
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
    plan += [PrunedTemplate(r.name, _idle_reason(r, days)) for r in idle]
    return plan[:excess]


def _plan_snapshots(
    records: Collection[TemplateRecord],
    templates_going: list[PrunedTemplate],
    on_server: set[str],
    cutoff: str,
    days: float,
    protect: Collection[str],
) -> list[PrunedTemplate]:
    going = {entry.name for entry in templates_going}
    waiting = sorted(
        (r for r in records if r.is_snapshot and not r.in_use and r.name not in protect),
        key=lambda r: r.last_used,
    )
    plan: list[PrunedTemplate] = []
    # A layer's parent is a snapshot that may go in this very plan: go round until
    # nothing more goes, so parents are listed (and dropped) before their layers.
    changed = True
    while changed:
        changed = False
        for record in list(waiting):
            reason = _snapshot_reason(record, going, on_server, cutoff, days)
            if reason is None:
                continue
            plan.append(PrunedTemplate(record.name, reason, "snapshot"))
            going.add(record.name)
            waiting.remove(record)
            changed = True
    return plan


def _snapshot_reason(
    record: TemplateRecord, going: set[str], on_server: set[str], cutoff: str, days: float
) -> str | None:
    if record.parent is not None and record.parent in going:
        return f"snapshot of {record.parent}, which is pruned"
    if record.parent is not None and record.parent not in on_server:
        return f"snapshot of {record.parent}, which is gone"
    if record.last_used < cutoff:
        return _idle_reason(record, days)
    return None


def prune_templates(
    dialect: Dialect,
    conn: DBAPIConnection,
    prefix: str,
    keep: int,
    protect: Collection[str],
    *,
    retention_seconds: float = DEFAULT_RETENTION_SECONDS,
    dry_run: bool = False,
    thorough: bool = False,
) -> list[PrunedTemplate]:
    """Remove templates and snapshots as :func:`plan_pruning` says, skipping any busy.

    Never fails on another session's templates: one that is being built, removed
    or taken into use, that cannot be read or dropped, is skipped (logged at
    debug). With ``dry_run``, only name them (``freshdb prune --dry-run``).

    A session's start reads the templates only when the server holds more
    template-shaped databases (snapshots included) than ``keep``: its start stays
    cheap on a tidy server. ``thorough`` (``freshdb prune``) always reads them, so
    snapshots whose parent is gone, or that nobody used within the retention, go
    even then.
    """
    present = [t.name for t in dialect.our_databases(conn, prefix, ("template",))]
    if len(present) <= keep and not thorough:
        return []
    crashed: list[str] = []
    records, _ = read_templates(dialect, conn, prefix, drop_crashed=not dry_run, crashed=crashed)
    # MySQL builds in place: a builder that died left an incomplete one behind.
    left = [
        PrunedTemplate(name, "left incomplete by a builder that died", "build") for name in crashed
    ]
    plan = plan_pruning(records, keep, retention_seconds, protect, present=present)
    if dry_run:
        return left + plan
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
            log.info("dropping %s %s (%s)", entry.kind, entry.name, entry.reason)
            dialect.drop_database(conn, entry.name)
            pruned.append(entry)
        except Exception as exc:
            log.debug("could not drop template %s: %s", entry.name, exc)
        finally:
            _unlock_quietly(dialect, conn, fingerprint)
    return left + pruned
