"""Who owns what on a Postgres server, through two-key advisory locks.

The first key is a namespace (:mod:`freshdb.naming`): an owner's lease under OWNER,
a template's exclusive build lock under BUILD, and the shared lock every session
cloning a template holds under TEMPLATE (taken while holding BUILD), so a remover
holding BUILD sees every user in ``pg_locks``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_result,
    stop_after_delay,
    wait_exponential,
)

from freshdb.dialects.base import DBAPIConnection, Dialect, ServerUse
from freshdb.errors import FreshDBError
from freshdb.naming import (
    LOCK_NAMESPACE_BUILD,
    LOCK_NAMESPACE_OWNER,
    LOCK_NAMESPACE_TEMPLATE,
    fingerprint_lock_key,
    owner_lock_key,
)

log = logging.getLogger("freshdb")

# A held advisory lock of ours in pg_locks (two int4 keys: objsubid 2), by namespace.
_HELD = "locktype = 'advisory' AND granted AND classid = %s::oid AND objsubid = 2"


class PostgresLocks(Dialect):
    """The ownership and template locks of :class:`~freshdb.dialects.postgres.PostgresDialect`."""

    def take_owner_lease(self, conn: DBAPIConnection, owner: str) -> None:
        """Hold the owner's lock for the life of ``conn``."""
        taken = self.scalar(
            conn,
            "SELECT pg_try_advisory_lock(%s, %s)",
            (LOCK_NAMESPACE_OWNER, owner_lock_key(owner)),
        )
        if not taken:  # owner ids are random; a clash means a broken random source
            raise FreshDBError(f"owner id {owner} is already in use on this server")

    def live_owners(self, conn: DBAPIConnection, owners: Sequence[str]) -> set[str]:
        """Which of ``owners`` still hold their lease."""
        if not owners:
            return set()
        held = self.rows(
            conn, f"SELECT objid::bigint FROM pg_locks WHERE {_HELD}", (LOCK_NAMESPACE_OWNER,)
        )
        held_keys = {int(row[0]) for row in held}
        return {owner for owner in owners if owner_lock_key(owner) in held_keys}

    def server_use(self, conn: DBAPIConnection) -> ServerUse:
        """Sessions holding their lease, and other client connections."""
        row = self.rows(
            conn,
            f"SELECT (SELECT count(*) FROM pg_locks WHERE {_HELD}), "
            "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND pid <> pg_backend_pid())",
            (LOCK_NAMESPACE_OWNER,),
        )[0]
        return ServerUse(sessions=int(row[0]), connections=int(row[1]))

    def lock_template(self, conn: DBAPIConnection, fingerprint: str, timeout: float) -> None:
        """Take a template's build lock, trying again (pauses growing to 0.2 s) until
        ``timeout`` has passed; then say who holds it."""
        told = False

        def tell_once_waiting_long(state: RetryCallState) -> None:
            nonlocal told
            if not told and state.seconds_since_start is not None and state.seconds_since_start > 2:
                told = True
                log.info(
                    "waiting for the lock of template %s, held by %s",
                    fingerprint[:20],
                    self.template_lock_holder(conn, fingerprint) or "another session",
                )

        def give_up(state: RetryCallState) -> bool:
            holder = self.template_lock_holder(conn, fingerprint) or "a session that just left"
            raise FreshDBError(
                f"waited {timeout:.0f} s for the lock of template {fingerprint[:20]}, held "
                f"by {holder} — it is still building or removing that template; if that "
                "process hangs, end it (its lock goes with its connection)"
            )

        retrying = Retrying(
            retry=retry_if_result(lambda taken: not taken),
            stop=stop_after_delay(timeout),
            wait=wait_exponential(multiplier=0.01, max=0.2),
            before_sleep=tell_once_waiting_long,
            retry_error_callback=give_up,
        )
        retrying(self.try_lock_template, conn, fingerprint)

    def try_lock_template(self, conn: DBAPIConnection, fingerprint: str) -> bool:
        """Take a template's build lock if it is free now."""
        return bool(
            self.scalar(
                conn,
                "SELECT pg_try_advisory_lock(%s, %s)",
                (LOCK_NAMESPACE_BUILD, fingerprint_lock_key(fingerprint)),
            )
        )

    def unlock_template(self, conn: DBAPIConnection, fingerprint: str) -> None:
        """Release a template's build lock."""
        self.scalar(
            conn,
            "SELECT pg_advisory_unlock(%s, %s)",
            (LOCK_NAMESPACE_BUILD, fingerprint_lock_key(fingerprint)),
        )

    def template_lock_holder(self, conn: DBAPIConnection, fingerprint: str) -> str | None:
        """Who holds a template's build lock, in words (``None`` if nobody does)."""
        # pg_locks names the backend holding the advisory lock; the same backend's
        # owner lease says which freshdb session it is.
        row = self.rows(
            conn,
            "SELECT l.pid, a.application_name, a.client_addr::text, a.backend_start, "
            "(SELECT o.objid::bigint FROM pg_locks o WHERE o.pid = l.pid "
            " AND o.locktype = 'advisory' AND o.granted AND o.classid = %s::oid "
            " AND o.objsubid = 2 LIMIT 1) "
            "FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s::oid "
            "AND l.objid = %s::oid AND l.objsubid = 2 AND l.pid <> pg_backend_pid() LIMIT 1",
            (LOCK_NAMESPACE_OWNER, LOCK_NAMESPACE_BUILD, fingerprint_lock_key(fingerprint)),
        )
        if not row:
            return None
        pid, application, client, since, owner = row[0]
        who = f"freshdb session {int(owner):08x}" if owner is not None else "a session"
        facts = [f"server pid {pid}"]
        if application:
            facts.append(f"application {application!r}")
        if client:
            facts.append(f"client {client}")
        if since is not None:
            facts.append(f"connected since {since:%Y-%m-%d %H:%M:%S %Z}".rstrip())
        return f"{who} ({', '.join(facts)})"

    def mark_template_in_use(self, conn: DBAPIConnection, fingerprint: str) -> None:
        """Hold a shared lock on the template for the life of ``conn``."""
        # Nobody ever takes this lock exclusively: a shared take never waits.
        self.scalar(
            conn,
            "SELECT pg_try_advisory_lock_shared(%s, %s)",
            (LOCK_NAMESPACE_TEMPLATE, fingerprint_lock_key(fingerprint)),
        )

    def template_in_use(self, conn: DBAPIConnection, fingerprint: str) -> bool:
        """Whether a live session holds the template's shared lock."""
        # Holding BUILD, nobody can start using it; those already using it hold a
        # shared TEMPLATE lock for as long as they live.
        users = self.scalar(
            conn,
            f"SELECT count(*) FROM pg_locks WHERE {_HELD} AND objid = %s::oid",
            (LOCK_NAMESPACE_TEMPLATE, fingerprint_lock_key(fingerprint)),
        )
        return bool(users)
