"""Removing what no session will use again (``freshdb prune`` and ``freshdb down``).

Nothing is touched unless its labels and name say freshdb made it with this prefix,
and nothing anyone uses is removed: a container only once idle (or forced, by
``freshdb down --force``), a database only once its owner session is gone, a
template only once no session uses it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

from docker.models.containers import Container

from freshdb import naming
from freshdb.backends.containers import remove_container
from freshdb.backends.docker import DockerBackend
from freshdb.backends.throwaways import is_leaked_throwaway
from freshdb.cleanup import inventory
from freshdb.cleanup.leftovers import drop_old_kept_copies, reap_dead_owners
from freshdb.cleanup.retention import prune_templates
from freshdb.cleanup.retirement import (
    DOWN_WAIT_SECONDS,
    STICKY_START_GRACE,
    STICKY_UNUSED_AFTER,
    Retirement,
    retire,
)
from freshdb.config import Settings
from freshdb.dialects.base import DBAPIConnection
from freshdb.errors import FreshDBError, one_line

log = logging.getLogger("freshdb")


@dataclasses.dataclass(frozen=True)
class Removal:
    """One thing ``freshdb prune`` or ``freshdb down`` removed (or would remove)."""

    what: str  # "container", "template", "snapshot", "copy", "build" or "kept copy"
    name: str
    server: str
    reason: str


def prune(settings: Settings, max_age: dt.timedelta | None, dry_run: bool) -> list[Removal]:
    """Remove leftovers of this prefix (``freshdb prune``); with ``dry_run``, only list them.

    Leaked throwaway containers (owner process gone, or older than ``max_age``);
    idle sticky containers no longer wanted (superseded, or not asked for by any
    start in ``max_age``, by default :data:`~freshdb.cleanup.retirement.STICKY_UNUSED_AFTER`;
    never the one of these settings, never one in use); on every running server,
    copies and builds whose owner session is gone
    (:func:`~freshdb.cleanup.leftovers.reap_dead_owners`), templates retention removes
    beyond ``keep_templates`` — superseded ones first, then ones unused for
    ``template_retention`` — and snapshots whose parent is gone or pruned, or unused
    for ``template_retention``, that no session uses
    (:func:`~freshdb.cleanup.retention.prune_templates`), and kept copies older than ``max_age``.
    """
    removals: list[Removal] = []
    backend = inventory.docker_backend(settings) if settings.mode != "external" else None
    unused_after = max_age if max_age is not None else STICKY_UNUSED_AFTER
    servers = inventory.find_servers(
        settings, memory=False, backend=backend, unused_after=unused_after
    )
    current = _current_sticky_name(settings, backend)
    for server in servers:
        name = server.info.name
        reason = server.info.retire_reason
        if backend is not None and server.container is not None and reason and name != current:
            outcome = _retire(backend, server.container, dry_run)
            if outcome.removed:
                removals.append(Removal("container", name, name, f"{reason}, idle"))
                continue
            log.info("keeping %s (%s): %s", name, reason, outcome.why)
        if server.container is not None and is_leaked_throwaway(server.container, max_age):
            removals.append(
                Removal(
                    "container",
                    name,
                    name,
                    "leaked throwaway server: " + _throwaway_reason(server.info, max_age),
                )
            )
            if not dry_run:
                log.debug("removing leaked throwaway container %s", name)
                remove_container(server.container)
            continue
        if server.address is None:
            if server.info.error:
                log.warning("skipping %s: %s", name, server.info.error)
            continue
        try:
            with inventory.connect_to(server) as conn:
                removals += _prune_databases(server, conn, settings, max_age, dry_run)
        except FreshDBError as exc:
            log.warning("skipping %s: %s", name, one_line(exc))
    return removals


def _current_sticky_name(settings: Settings, backend: DockerBackend | None) -> str | None:
    if backend is None or settings.mode != "sticky":
        return None
    try:
        return backend.sticky_name()
    except FreshDBError:
        return None


def _retire(backend: DockerBackend, container: Container, dry_run: bool) -> Retirement:
    # Not waiting: prune is housekeeping, a busy server is simply kept for later.
    return retire(backend, container, grace=STICKY_START_GRACE, dry_run=dry_run)


def _throwaway_reason(info: inventory.ServerStatus, max_age: dt.timedelta | None) -> str:
    if info.leaked:
        return "its owner process is gone"
    hours = max_age.total_seconds() / 3600 if max_age is not None else 0
    return f"older than {hours:g} h"


def _prune_databases(
    server: inventory.FoundServer,
    conn: DBAPIConnection,
    settings: Settings,
    max_age: dt.timedelta | None,
    dry_run: bool,
) -> list[Removal]:
    dialect, prefix, where = server.dialect, server.info.prefix, server.info.name
    assert dialect is not None
    removals = []
    for name in reap_dead_owners(dialect, conn, prefix, dry_run=dry_run):
        parsed = naming.parse_database_name(prefix, name)
        what = "build" if parsed and parsed.kind == "build" else "copy"
        removals.append(Removal(what, name, where, "its owner session is gone"))
    for pruned in prune_templates(
        dialect,
        conn,
        prefix,
        settings.keep_templates,
        set(),
        retention_seconds=settings.template_retention_seconds,
        dry_run=dry_run,
        thorough=True,
    ):
        removals.append(Removal(pruned.kind, pruned.name, where, pruned.reason))
    if max_age is None:
        return removals
    hours = max_age.total_seconds() / 3600
    for name in drop_old_kept_copies(dialect, conn, prefix, max_age, dry_run=dry_run):
        removals.append(Removal("kept copy", name, where, f"kept longer than {hours:g} h"))
    return removals


def remove_sticky_servers(
    settings: Settings,
    every: bool = False,
    force: bool = False,
    wait: float = DOWN_WAIT_SECONDS,
) -> tuple[list[Removal], list[Retirement]]:
    """Remove the sticky server of these settings (``every``: all of the prefix).

    A server in use is waited for up to ``wait`` seconds, then kept unless ``force``:
    the removals, and the servers kept (each saying who uses it).
    """
    backend = inventory.docker_backend(settings)
    if every:
        containers = [
            c
            for c in backend.list_containers()
            if (c.labels or {}).get(naming.LABEL_MODE) == "sticky"
        ]
    else:
        found = backend.find_sticky()
        containers = [found] if found is not None else []
    removals, kept = [], []
    for container in containers:
        outcome = retire(backend, container, force=force, wait=wait)
        if outcome.removed:
            reason = "down --force" if force else "down"
            removals.append(Removal("container", outcome.name, outcome.name, reason))
        else:
            kept.append(outcome)
    return removals, kept
