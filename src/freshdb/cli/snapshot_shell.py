"""``freshdb shell --snapshot NAME``: a SQL shell on a fresh copy of a snapshot.

A snapshot is a derived template, sealed like any template: on Postgres it accepts
no connections (``ALLOW_CONNECTIONS false``, or nobody could clone it), and on
MySQL a write into it would reach every later copy. So the shell never opens the
snapshot itself: it opens a *copy* made for it, the way a test gets one, and drops
it when the shell ends. The copy is a session's like any other: named after an
owner id whose lease this command holds, so a shell killed midway leaves a copy
the next session (or ``freshdb prune``) reaps; the snapshot is marked in use while
the shell lives, so pruning never drops it underneath.

``NAME`` is the snapshot's database name (as ``freshdb status`` lists it), its key
(``db.snapshot(key)``, ``key=``), or a prefix of its name that only it has. A base
template's full name opens a copy of that template the same way.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from freshdb import naming
from freshdb.cleanup.retention import TemplateRecord, read_templates
from freshdb.dialects.base import DBAPIConnection, Dialect, ServerAddress
from freshdb.errors import ConfigurationError, FreshDBError

log = logging.getLogger("freshdb")

#: How long the shell waits for a snapshot being built or removed right now.
LOCK_TIMEOUT_SECONDS = 30.0


def find_snapshot(records: list[TemplateRecord], wanted: str) -> TemplateRecord:
    """The snapshot ``wanted`` names: its name, else its key, else a unique prefix
    (a base template by its full name too).

    None, or several: a :class:`~freshdb.errors.ConfigurationError` listing the
    snapshots there are.
    """
    snapshots = [r for r in records if r.is_snapshot]
    for matches in (
        [r for r in records if r.name == wanted],
        [r for r in snapshots if r.key == wanted],
        [r for r in snapshots if r.name.startswith(wanted)],
    ):
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ConfigurationError(
                f"{wanted!r} names {len(matches)} snapshots ({_listed(matches)}) — give "
                "more of the name (`freshdb status` lists them)"
            )
    there = _listed(snapshots) if snapshots else "none"
    raise ConfigurationError(
        f"no snapshot named {wanted!r} (by name, key or name prefix) on this server; "
        f"snapshots here: {there} — `freshdb status` lists them under their templates"
    )


#: How many snapshots an error names; a busy server has dozens (status lists them all).
LISTED_AT_MOST = 8


def _listed(records: list[TemplateRecord]) -> str:
    named = ", ".join(
        r.name + (f" (key {r.key!r})" if r.key else "") for r in records[:LISTED_AT_MOST]
    )
    more = len(records) - LISTED_AT_MOST
    return f"{named} and {more} more" if more > 0 else named


@contextlib.contextmanager
def snapshot_copy(
    dialect: Dialect, address: ServerAddress, prefix: str, wanted: str
) -> Iterator[tuple[TemplateRecord, str]]:
    """A fresh copy of the snapshot ``wanted`` names, dropped on leaving (the
    snapshot and the copy's name)."""
    conn = dialect.connect(address, timeout=10.0)
    try:
        owner = naming.new_owner_id()
        dialect.take_owner_lease(conn, owner)
        records, busy = read_templates(dialect, conn, prefix)
        try:
            snapshot = find_snapshot(records, wanted)
        except ConfigurationError:
            if busy:
                log.info("being built or removed right now (not searched): %s", ", ".join(busy))
            raise
        _take_into_use(dialect, conn, snapshot)
        copy = naming.copy_name(prefix, snapshot.fingerprint, owner, 0)
        dialect.clone(conn, dialect.copy_recipe(conn, snapshot.name), copy)
        try:
            yield snapshot, copy
        finally:
            dialect.drop_database(conn, copy)
    finally:
        conn.close()


def _take_into_use(dialect: Dialect, conn: DBAPIConnection, snapshot: TemplateRecord) -> None:
    # As a session takes its template: under the build lock, so no pruner drops it
    # between the check and the mark; the mark lasts as long as this connection.
    dialect.lock_template(conn, snapshot.fingerprint, LOCK_TIMEOUT_SECONDS)
    try:
        if not dialect.template_is_complete(conn, snapshot.name):
            raise FreshDBError(
                f"snapshot {snapshot.name} was removed meanwhile — run `freshdb status` "
                "and pick another, or rebuild it by running the tests that make it"
            )
        dialect.mark_template_in_use(conn, snapshot.fingerprint)
    finally:
        dialect.unlock_template(conn, snapshot.fingerprint)
