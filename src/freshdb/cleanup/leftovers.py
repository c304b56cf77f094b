"""Databases a session leaves behind: its copies, its half-built templates, kept copies.

Every copy and build bears its owner session's id in its name (see
:mod:`freshdb.naming`), and the session holds its *owner lease* for as long as it
lives. A leftover whose owner holds no lease any more is nobody's: any session may
drop it. Kept copies are kept on purpose (a failed test's data): only an age limit
(``freshdb prune --max-age``) removes them.
"""

from __future__ import annotations

import datetime as dt
import logging

from freshdb.dialects.base import DBAPIConnection, Dialect

log = logging.getLogger("freshdb")


def reap_dead_owners(
    dialect: Dialect, conn: DBAPIConnection, prefix: str, *, dry_run: bool = False
) -> list[str]:
    """Drop copies and half-built templates whose owner session is gone.

    Never fails on a leftover: one that cannot be dropped (another session is
    dropping it too, or the server refuses) is skipped, logged at debug, and left
    for the next start. With ``dry_run``, only name them (``freshdb prune --dry-run``).
    """
    parsed = dialect.our_databases(conn, prefix, ("copy", "build"))
    owners = sorted({p.owner for p in parsed if p.owner})
    alive = dialect.live_owners(conn, owners)
    reaped = []
    for leftover in parsed:
        if leftover.owner in alive:
            continue
        if not dry_run:
            log.info("reaping %s: its owner session is gone", leftover.name)
            try:
                dialect.drop_database(conn, leftover.name)
            except Exception as exc:
                log.debug("could not reap %s (left for later): %s", leftover.name, exc)
                continue
        reaped.append(leftover.name)
    return reaped


def drop_own_leftovers(dialect: Dialect, conn: DBAPIConnection, prefix: str, owner: str) -> None:
    """Drop the copies and builds of session ``owner`` (its final sweep, at stop)."""
    for mine in dialect.our_databases(conn, prefix, ("copy", "build")):
        if mine.owner == owner:
            dialect.drop_database(conn, mine.name)


def drop_old_kept_copies(
    dialect: Dialect,
    conn: DBAPIConnection,
    prefix: str,
    max_age: dt.timedelta,
    *,
    dry_run: bool = False,
) -> list[str]:
    """Drop kept copies older than ``max_age``; with ``dry_run``, only name them."""
    kept = [p.name for p in dialect.our_databases(conn, prefix, ("kept",))]
    created = dialect.database_created(conn, kept) if kept else {}
    cutoff = dt.datetime.now(dt.UTC) - max_age
    old = [name for name in kept if name in created and created[name] <= cutoff]
    if not dry_run:
        for name in old:
            log.debug("dropping kept copy %s", name)
            dialect.drop_database(conn, name)
    return old
