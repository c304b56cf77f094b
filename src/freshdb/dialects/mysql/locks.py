"""Who owns what on a MySQL server, through named locks (``GET_LOCK``).

A named lock lives as long as the connection holding it. There are no shared named
locks, so a session marks a template in use by holding one of a fixed set of
per-template "user slot" locks, taken under the template's exclusive lock; a
template none of whose slots is held is unused. The lock names are in
:mod:`freshdb.naming`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from freshdb import naming
from freshdb.dialects.base import DBAPIConnection, Dialect, ServerUse
from freshdb.dialects.mysql.statements import first_row
from freshdb.errors import FreshDBError

log = logging.getLogger("freshdb")

# How long marking a template in use may wait for a build of it to finish.
_MARK_IN_USE_TIMEOUT = 600.0


class MySQLLocks(Dialect):
    """The ownership and template locks of :class:`~freshdb.dialects.mysql.MySQLDialect`."""

    def take_owner_lease(self, conn: DBAPIConnection, owner: str) -> None:
        """Hold the owner's lock for the life of ``conn``."""
        # The lease dies with this connection (connect() keeps it from idling out).
        taken = self.scalar(conn, "SELECT GET_LOCK(%s, 0)", (naming.owner_lease_lock(owner),))
        if taken != 1:  # owner ids are random; a clash means a broken random source
            raise FreshDBError(f"owner id {owner} is already in use on this server")

    def live_owners(self, conn: DBAPIConnection, owners: Sequence[str]) -> set[str]:
        """Which of ``owners`` still hold their lease."""
        alive: set[str] = set()
        owners = list(owners)
        for start in range(0, len(owners), 100):
            chunk = owners[start : start + 100]
            held = first_row(
                conn,
                "SELECT " + ", ".join(["IS_USED_LOCK(%s)"] * len(chunk)),
                [naming.owner_lease_lock(owner) for owner in chunk],
            )
            alive.update(owner for owner, holder in zip(chunk, held, strict=True) if holder)
        return alive

    def server_use(self, conn: DBAPIConnection) -> ServerUse:
        """Other client connections (sessions are not countable here)."""
        # Held named locks cannot be listed without performance_schema (off here, and
        # absent in MariaDB), so every other client connection counts: a session's
        # lease is one. The server's own threads are not clients.
        connections = self.scalar(
            conn,
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() "
            "AND COMMAND NOT IN ('Daemon', 'Binlog Dump', 'Binlog Dump GTID') "
            "AND USER NOT IN ('system user', 'event_scheduler')",
        )
        return ServerUse(sessions=None, connections=int(connections or 0))

    def lock_template(self, conn: DBAPIConnection, fingerprint: str, timeout: float) -> None:
        """Take a template's build lock, waiting up to ``timeout`` (re-entrant: every take
        needs its own release)."""
        if self.try_lock_template(conn, fingerprint):
            return
        log.info(
            "waiting for the lock of template %s, held by %s",
            fingerprint[:20],
            self.template_lock_holder(conn, fingerprint) or "another session",
        )
        taken = self.scalar(
            conn,
            "SELECT GET_LOCK(%s, %s)",
            (naming.template_build_lock(fingerprint), max(0, math.ceil(timeout))),
        )
        if taken != 1:
            holder = self.template_lock_holder(conn, fingerprint) or "a session that just left"
            raise FreshDBError(
                f"waited {timeout:.0f} s for the lock of template {fingerprint[:20]}, held by "
                f"{holder} — it is still building or removing that template; if that "
                "process hangs, end it (its lock goes with its connection)"
            )

    def try_lock_template(self, conn: DBAPIConnection, fingerprint: str) -> bool:
        """Take a template's build lock if it is free now."""
        taken = self.scalar(
            conn, "SELECT GET_LOCK(%s, 0)", (naming.template_build_lock(fingerprint),)
        )
        return bool(taken == 1)

    def unlock_template(self, conn: DBAPIConnection, fingerprint: str) -> None:
        """Release one take of a template's build lock."""
        self.scalar(conn, "SELECT RELEASE_LOCK(%s)", (naming.template_build_lock(fingerprint),))

    def template_lock_holder(self, conn: DBAPIConnection, fingerprint: str) -> str | None:
        """Who holds a template's build lock, in words (``None`` if nobody does)."""
        # IS_USED_LOCK names the holder's connection; the process list says more.
        holder = self.scalar(
            conn, "SELECT IS_USED_LOCK(%s)", (naming.template_build_lock(fingerprint),)
        )
        if holder is None:
            return None
        row = first_row(
            conn,
            "SELECT USER, HOST, TIME, COMMAND FROM information_schema.PROCESSLIST WHERE ID = %s",
            (int(holder),),
        )
        if not row:
            return f"connection {int(holder)}"
        user, host, seconds, command = row
        state = f"{command} for {int(seconds or 0)} s"
        return f"connection {int(holder)} (user {user} from {host}, {state})"

    def mark_template_in_use(self, conn: DBAPIConnection, fingerprint: str) -> None:
        """Hold one of the template's user slots for the life of ``conn``."""
        # Slots are taken only under the exclusive lock (re-entrant if the caller holds
        # it), so a pruner holding that lock sees every user and no new one can appear.
        self.lock_template(conn, fingerprint, _MARK_IN_USE_TIMEOUT)
        try:
            me, *holders = first_row(
                conn, "SELECT CONNECTION_ID(), " + self._slot_probe(), self._slots(fingerprint)
            )
            if me in holders:
                return
            for slot, holder in enumerate(holders):
                if holder is None and self.scalar(
                    conn, "SELECT GET_LOCK(%s, 0)", (naming.template_user_lock(fingerprint, slot),)
                ):
                    return
            raise FreshDBError(
                f"more than {naming.TEMPLATE_USER_SLOTS} sessions use template "
                f"{fingerprint[:20]} on this server at once — use fewer workers"
            )
        finally:
            self.unlock_template(conn, fingerprint)

    def template_in_use(self, conn: DBAPIConnection, fingerprint: str) -> bool:
        """Whether any of the template's user slots is held."""
        holders = first_row(conn, "SELECT " + self._slot_probe(), self._slots(fingerprint))
        return any(holder is not None for holder in holders)

    @staticmethod
    def _slots(fingerprint: str) -> list[str]:
        return [
            naming.template_user_lock(fingerprint, slot)
            for slot in range(naming.TEMPLATE_USER_SLOTS)
        ]

    @staticmethod
    def _slot_probe() -> str:
        return ", ".join(["IS_USED_LOCK(%s)"] * naming.TEMPLATE_USER_SLOTS)
