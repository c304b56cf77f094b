"""The :class:`~freshdb.pool.CopyWorker` that does the pool's work with a dialect's SQL,
the set of them a session aborts if its server stops answering, and starting a pool
of copies of one template (the session's, or a snapshot's)."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

from freshdb import naming
from freshdb.config import Settings
from freshdb.dialects.base import CopyRecipe, DBAPIConnection, Dialect, ServerAddress
from freshdb.engine_factory import EngineFactory
from freshdb.errors import FreshDBError
from freshdb.pool import ClonePool
from freshdb.template import Template


class SqlCopyWorker:
    """The pool's background work, done with a dialect's SQL on one connection."""

    def __init__(
        self,
        dialect: Dialect,
        address: ServerAddress,
        recipe: CopyRecipe,
        engines: EngineFactory,
    ) -> None:
        self.dialect = dialect
        self.address = address
        self.recipe = recipe
        self.engines = engines
        self.conn = dialect.connect(address)
        # close() (the pool's thread) and abort() (any thread) never overlap: a
        # closed connection's descriptor number may already belong to another file.
        self._closing_lock = threading.Lock()
        self._closed = False

    def clone(self, name: str) -> Any:
        self._translated(self.dialect.clone, self.conn, self.recipe, name)
        # The test's first connection, opened now while the copy waits in the pool:
        # connecting costs a new server process and a login, ~6 ms on its path.
        return self.engines.preconnect(self.dialect.warm_url(self.address, name))

    def discard(self, warm_connection: Any) -> None:
        self.engines.discard(warm_connection)

    def drop(self, name: str) -> None:
        self._translated(self.dialect.drop_database, self.conn, name)

    def rename(self, old: str, new: str) -> None:
        self._translated(self.dialect.rename_database, self.conn, old, new)

    def close(self) -> None:
        with self._closing_lock:
            self._closed = True
            self.conn.close()

    def abort(self) -> None:
        """Make the operation under way on the connection fail at once (any thread)."""
        with self._closing_lock:
            if not self._closed:
                self.dialect.abort(self.conn)

    def _translated(self, operation: Any, *args: Any) -> None:
        try:
            operation(*args)
        except FreshDBError:
            raise
        except Exception as exc:
            translated = self.dialect.translate_error(exc)
            if translated is not None:
                raise translated from exc
            raise


class CopyWorkers:
    """The pool's workers on one server, to abort them all at once if the server stops
    answering while the session stops."""

    def __init__(self, open_worker: Callable[[], SqlCopyWorker]) -> None:
        self._open_worker = open_worker
        # Weak: the workers the pool has closed and let go of are forgotten.
        self._workers: weakref.WeakSet[SqlCopyWorker] = weakref.WeakSet()
        self._lock = threading.Lock()

    def open(self) -> SqlCopyWorker:
        """A new worker for the pool, remembered until the pool lets go of it."""
        worker = self._open_worker()
        with self._lock:
            self._workers.add(worker)
        return worker

    def abort_all(self) -> None:
        """Make every worker's operation under way fail at once (any thread)."""
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            worker.abort()


def start_copy_pool(
    dialect: Dialect,
    address: ServerAddress,
    conn: DBAPIConnection,
    template: Template,
    *,
    settings: Settings,
    owner: str,
    size: int,
    engines: EngineFactory,
    server_gone: Callable[[BaseException], FreshDBError | None],
) -> tuple[ClonePool, CopyWorkers]:
    """Start a pool of ``size`` copies of a complete ``template``, and its workers.

    The template's copy recipe is captured now, on ``conn``; copies bear the
    session's ``owner`` in their names, so a dead session's are reaped.
    """
    recipe = dialect.copy_recipe(conn, template.name)
    workers = CopyWorkers(lambda: SqlCopyWorker(dialect, address, recipe, engines))
    prefix, fingerprint = settings.prefix, template.fingerprint
    pool = ClonePool(
        open_worker=workers.open,
        copy_name=lambda seq: naming.copy_name(prefix, fingerprint, owner, seq),
        kept_name=lambda seq: naming.kept_name(prefix, fingerprint, owner, seq),
        size=size,
        acquire_timeout=settings.acquire_timeout,
        cloners=settings.clone_workers,
        server_gone=server_gone,
    )
    pool.start()
    return pool, workers
