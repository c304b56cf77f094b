"""The snapshots one session uses: each found or built once, with a pool of its own.

:class:`SessionSnapshots` belongs to one :class:`~freshdb.server.DatabaseServer`
session. It finds or builds derived templates (see :mod:`freshdb.snapshot`) on an
admin connection of its own, opened for the first snapshot: that connection holds a
snapshot's build lock while it is built (a seed may take minutes, while the
session's lease serves every hand-out), then marks the snapshot in use for the rest
of the session, so pruning never drops it under a live session. At stop, the pools
are closed, and the connection with them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from freshdb.async_database import AsyncDatabaseContext
from freshdb.config import Settings
from freshdb.database import Database
from freshdb.dialects.base import DBAPIConnection, Dialect, ServerAddress
from freshdb.engine_factory import EngineFactory
from freshdb.errors import ConfigurationError, FreshDBError
from freshdb.migrators import CallableMigrator, Migrator, as_migrator
from freshdb.pool import ClonePool
from freshdb.server.copy_worker import CopyWorkers, start_copy_pool
from freshdb.snapshot import Derivation, Snapshot, snapshot_project
from freshdb.template import Template, TemplateBuilder, schema_source

log = logging.getLogger("freshdb")

#: Hands out a fresh copy from a pool of copies of a template.
HandOut = Callable[[ClonePool, Template, float | None], Database]
HandOutAsync = Callable[[ClonePool, Template, float | None], AsyncDatabaseContext]


class SessionSnapshots:
    """One session's snapshots: one :class:`~freshdb.Snapshot` per fingerprint."""

    def __init__(
        self,
        dialect: Dialect,
        address: ServerAddress,
        settings: Settings,
        owner: str,
        *,
        engines: EngineFactory,
        server_gone: Callable[[BaseException], FreshDBError | None],
        hand_out: HandOut,
        hand_out_async: HandOutAsync,
    ) -> None:
        self.dialect = dialect
        self.address = address
        self.settings = settings
        self.owner = owner
        self._engines = engines
        self._server_gone = server_gone
        self._hand_out = hand_out
        self._hand_out_async = hand_out_async
        # Held while a snapshot is found or built: one build at a time per session,
        # and asking twice for one snapshot builds it once.
        self._build_lock = threading.Lock()
        # Guards only the lists below: abandon() reads them while close() may wait.
        self._state_lock = threading.Lock()
        self._snapshots: dict[str, Snapshot] = {}
        self._pools: list[tuple[ClonePool, CopyWorkers]] = []
        self._conn: DBAPIConnection | None = None
        self._closed = False

    # -- making them --------------------------------------------------------------
    def snapshot(
        self, parent: Template, seed: Any, *, key: str | None, pool_size: int | None
    ) -> Snapshot:
        """The snapshot of ``seed`` run on a copy of ``parent``, built now if the server
        has none."""
        if seed is None:
            raise ConfigurationError(
                "a snapshot needs a seed: a function taking a connection, a .sql file or "
                "directory, or a migrator (what schema= accepts)"
            )
        if key is not None and (not isinstance(key, str) or not key):
            raise ConfigurationError(f"a snapshot's key must be a non-empty string, got {key!r}")
        migrator = _fingerprintable(as_migrator(seed, self.dialect.sqlalchemy_name), key)
        derivation = Derivation(
            parent=parent.name,
            parent_fingerprint=parent.fingerprint,
            source=parent.name,
            seed=migrator,
            key=key,
            project=snapshot_project(parent.project, schema_source(migrator), key),
        )
        return self._ensure(derivation, pool_size)

    def of_copy(self, parent: Template, copy: str, key: str) -> Snapshot:
        """The snapshot keyed ``key`` of the committed state of ``copy`` (a copy of
        ``parent`` this session handed out); one already complete is reused as is."""
        if not isinstance(key, str) or not key:
            raise ConfigurationError(
                f"db.snapshot() needs a key, a non-empty string naming the state, got {key!r}"
            )
        derivation = Derivation(
            parent=parent.name,
            parent_fingerprint=parent.fingerprint,
            source=copy,
            seed=None,
            key=key,
            project=snapshot_project(parent.project, "db.snapshot()", key),
        )
        return self._ensure(derivation, None)

    def _ensure(self, derivation: Derivation, pool_size: int | None) -> Snapshot:
        fingerprint = derivation.fingerprint
        size = self.settings.snapshot_pool_size if pool_size is None else pool_size
        if not 0 <= size <= 64:
            raise ConfigurationError(f"a snapshot's pool_size must be between 0 and 64, got {size}")
        with self._build_lock:
            self._check_open()
            known = self._snapshots.get(fingerprint)
            if known is not None:
                return known
            conn = self._connection()
            builder = TemplateBuilder(self.dialect, self.address, self.settings.prefix, self.owner)
            with self.dialect.explained_errors():
                template = builder.ensure_derived(conn, derivation)
                pool, workers = start_copy_pool(
                    self.dialect,
                    self.address,
                    conn,
                    template,
                    settings=self.settings,
                    owner=self.owner,
                    size=size,
                    engines=self._engines,
                    server_gone=self._server_gone,
                )
            with self._state_lock:
                # A stop that began during the build has closed the pools it saw: this
                # one would clone copies nobody drops, on workers nobody stops.
                stopped = self._closed
                if not stopped:
                    self._pools.append((pool, workers))
            if stopped:
                pool.close(drop=True)
                self._check_open()
            snapshot = Snapshot(template, derivation.parent, pool, self)
            self._snapshots[fingerprint] = snapshot
            log.info(
                "freshdb snapshot %s of %s %s (%s)",
                template.name,
                derivation.parent,
                "reused" if template.reused else f"built in {template.build_seconds:.2f} s",
                derivation.description,
            )
            return snapshot

    def _connection(self) -> DBAPIConnection:
        if self._conn is None:
            self._conn = self.dialect.connect(self.address)
        return self._conn

    def _check_open(self) -> None:
        if self._closed:
            raise FreshDBError(
                "the server is stopped: make snapshots while it runs (inside `with "
                "DatabaseServer(...) as server:`)"
            )

    # -- what a Snapshot asks of its session ---------------------------------------
    def hand_out(self, pool: ClonePool, template: Template, timeout: float | None) -> Database:
        """A fresh copy from ``pool`` (copies of ``template``)."""
        return self._hand_out(pool, template, timeout)

    def hand_out_async(
        self, pool: ClonePool, template: Template, timeout: float | None
    ) -> AsyncDatabaseContext:
        """``async with``: a fresh copy from ``pool``."""
        return self._hand_out_async(pool, template, timeout)

    def names(self) -> list[str]:
        """The names of this session's snapshots, in the order they were made."""
        return [snapshot.name for snapshot in self._snapshots.values()]

    # -- the end ------------------------------------------------------------------
    def close(self, drop: bool = True) -> None:
        """Close every snapshot's pool (dropping its copies unless the server is gone),
        then the connection marking the snapshots in use."""
        with self._state_lock:
            self._closed = True
            pools = list(self._pools)
        for pool, _ in pools:
            pool.close(drop=drop)
        with self._state_lock:
            self._pools.clear()
        with self._build_lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:
                log.debug("closing the snapshots' connection failed: %s", exc)

    def abandon(self, error: FreshDBError) -> None:
        """The server stopped answering while the session stops: fail every snapshot
        pool's callers with ``error`` and abort every connection's I/O (any thread)."""
        with self._state_lock:
            pools = list(self._pools)
        for pool, workers in pools:
            pool.server_gone(error)
            workers.abort_all()
        conn = self._conn
        if conn is not None:
            self.dialect.abort(conn)


def _fingerprintable(migrator: Migrator, key: str | None) -> Migrator:
    """``migrator``, or for a callable whose source cannot be read (a
    ``functools.partial``, a callable object) one named by ``key`` alone.

    The key is what a snapshot offers for a seed freshdb cannot see into; without
    one such a seed is an error saying to pass it.
    """
    if not isinstance(migrator, CallableMigrator) or migrator.key is not None:
        return migrator
    try:
        migrator.fingerprint()
    except ConfigurationError:
        if key is None:
            raise ConfigurationError(
                f"cannot read the source of the seed {migrator.description} to fingerprint "
                "it — name it with a key: server.snapshot(seed, key='v1'), and change the "
                "key whenever what the seed does changes"
            ) from None
        return CallableMigrator(migrator.function, key=key)
    return migrator
