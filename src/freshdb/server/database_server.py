"""``DatabaseServer``: one session on a server — start, hand out copies, stop.

The flow of ``start()``: configuration → a backend starts or finds the server →
this session takes its owner lease → leftovers of dead sessions are reaped → the
template is found or built → stale templates are pruned → the pool starts cloning.
Handing out copies is :class:`~freshdb.server.hand_out.CopyHandOut`'s, made at start.

A little over 400 lines: what stays here shares the session's state (the lease,
the pool, whether the server is gone), which start, stop and the check before
every hand-out all read and change.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

from freshdb import naming
from freshdb.async_database import AsyncDatabaseContext
from freshdb.backends import RunningServer, ServerBackend, backend_for
from freshdb.cleanup import superseded_retirer
from freshdb.cleanup.leftovers import drop_own_leftovers
from freshdb.config import Settings, resolve_settings
from freshdb.database import Database
from freshdb.dialects import dialect_for
from freshdb.dialects.base import DBAPIConnection, Dialect, ServerAddress
from freshdb.drivers import configured_driver
from freshdb.engine_factory import EngineFactory, sync_driver
from freshdb.errors import FreshDBError, ServerUnavailableError
from freshdb.migrators import Migrator, as_migrator
from freshdb.pool import ClonePool
from freshdb.server.copy_worker import CopyWorkers, start_copy_pool
from freshdb.server.hand_out import CopyHandOut
from freshdb.server.liveness import Liveness, abandoned_if_unanswered
from freshdb.server.logins import Logins
from freshdb.server.preparation import (
    START_MODULES,
    import_meanwhile,
    prepare_template,
    template_origin,
)
from freshdb.server.snapshots import SessionSnapshots
from freshdb.snapshot import Snapshot
from freshdb.template import Template

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

log = logging.getLogger("freshdb")


class DatabaseServer:
    """A database server with a template built from ``schema`` and a pool of copies.

    >>> with DatabaseServer("postgres", schema=Base.metadata) as server:  # doctest: +SKIP
    ...     with server.database() as db:
    ...         engine = db.engine()

    Settings not given here come from ``FRESHDB_*`` environment variables, then
    ``[tool.freshdb]`` in ``pyproject.toml``, then defaults (see :mod:`freshdb.config`).
    """

    def __init__(
        self,
        engine: str | None = None,
        *,
        schema: Any = None,
        image: str | None = None,
        mode: str | None = None,
        url: str | None = None,
        pool_size: int | None = None,
        **settings: Any,
    ) -> None:
        self.settings: Settings = resolve_settings(
            {
                "engine": engine,
                "image": image,
                "mode": mode,
                "url": url,
                "pool_size": pool_size,
                **settings,
            }
        )
        self.dialect: Dialect = dialect_for(self.settings.engine)
        self._schema = schema if schema is not None else self.settings.schema
        self._lock = threading.Lock()
        self._logins = Logins(self.dialect)
        self._backend: ServerBackend | None = None
        self._running: RunningServer | None = None
        self._lease: DBAPIConnection | None = None
        self._owner: str | None = None
        self._template: Template | None = None
        self._pool: ClonePool | None = None
        self._reaped: list[str] = []
        self._start_seconds = 0.0
        # The lease is used by start/stop (under _lock) and by the liveness check of
        # every hand-out; this lock keeps two threads off the connection at once.
        self._lease_lock = threading.Lock()
        self._gone: FreshDBError | None = None  # why this session can hand out no more
        # The pool's workers, to abort if the server stops answering during stop().
        self._workers: CopyWorkers | None = None
        self._snapshots: SessionSnapshots | None = None
        # Turns the pools' copies into Databases; made at start, before the pool.
        self._copies: CopyHandOut | None = None
        # The driver of the URLs and engines tests get (the ``driver`` setting).
        self._driver = configured_driver(self.settings.driver, self.settings.engine)
        self._engines = EngineFactory(self._driver)

    def __repr__(self) -> str:
        state = "running" if self._pool is not None else "stopped"
        return f"<DatabaseServer {self.settings.engine} {self.settings.mode} {state}>"

    # -- life -------------------------------------------------------------------
    def start(self) -> DatabaseServer:
        """Start or reuse the server, build or reuse the template, fill the pool."""
        with self._lock:
            if self._pool is not None:
                return self
            started = time.perf_counter()
            migrator = as_migrator(self._schema, self.dialect.sqlalchemy_name)
            backend = backend_for(
                self.settings, self.dialect, retire_superseded=superseded_retirer(self.settings)
            )
            # SQLAlchemy and the rest are imported while the server starts (a Docker
            # backend begins them once it has asked for the container).
            backend.meanwhile = functools.partial(
                import_meanwhile,
                sync_driver(self._driver, self.dialect.family).sqlalchemy_name,
                START_MODULES,
            )
            running = backend.start()
            backend.begin_meanwhile()
            log.debug(
                "start: server found or started (%s, %.3f s)",
                running.container_name or "",
                running.startup_seconds,
            )
            self._gone = None
            try:
                self._begin_session(backend, running, migrator)
            except BaseException as exc:
                self._end_session()
                backend.stop()
                # A driver error on freshdb's own connections (the server died or
                # filled up while starting) is said in freshdb's words.
                translated = (
                    self.dialect.translate_error(exc)
                    if isinstance(exc, Exception) and not isinstance(exc, FreshDBError)
                    else None
                )
                if translated is not None:
                    raise translated from exc
                raise
            self._start_seconds = time.perf_counter() - started
            log.info(
                "freshdb %s server ready in %.2f s (%s), template %s (%s)",
                self.settings.engine,
                self._start_seconds,
                "reused" if running.reused else "started",
                self.template,
                template_origin(self._template),
            )
            return self

    def _begin_session(
        self, backend: ServerBackend, running: RunningServer, migrator: Migrator
    ) -> None:
        self._backend, self._running = backend, running
        self._engines = EngineFactory(self._driver)  # dialect state belongs to this server
        address = running.address
        self._owner = naming.new_owner_id()
        # The start may have opened (and checked) an admin connection already.
        self._lease = backend.take_admin_connection() or self.dialect.connect(address)
        self.dialect.take_owner_lease(self._lease, self._owner)
        self._logins.use(address)
        self._logins.accept(self._driver)
        log.debug("start: lease taken")
        template, self._reaped = prepare_template(
            self.settings, self.dialect, backend, address, self._lease, self._owner, migrator
        )
        self._template = template
        self._copies = copies = CopyHandOut(
            self._logins,
            address,
            driver=self._driver,
            engines=self._engines,
            check_server=self._check_server,
            liveness=self._liveness,
            snapshots=lambda: self._snapshots,
        )
        self._pool, self._workers = start_copy_pool(
            self.dialect,
            address,
            self._lease,
            template,
            settings=self.settings,
            owner=self._owner,
            size=self.settings.pool_size,
            engines=self._engines,
            server_gone=self._gone_for_good,
        )
        log.debug("start: template ready, pool started (%s)", template.name)
        self._snapshots = SessionSnapshots(
            self.dialect,
            address,
            self.settings,
            self._owner,
            engines=self._engines,
            server_gone=self._gone_for_good,
            hand_out=copies.hand_out,
            hand_out_async=copies.hand_out_async,
        )

    def stop(self) -> None:
        """Drop this session's copies; remove a throwaway server, keep a sticky one."""
        with self._lock:
            backend = self._backend
            self._end_session()
            if backend is not None:
                backend.stop()

    def _end_session(self) -> None:
        pool, self._pool = self._pool, None
        with self._lease_lock:
            lease, self._lease = self._lease, None
        workers, self._workers = self._workers, None
        snapshots, self._snapshots = self._snapshots, None
        # Dropping copies waits on the server: if it is paused or cut off, give up on
        # it (its copies are reaped later with this session's lease) instead of hanging.
        with abandoned_if_unanswered(
            lambda: self._liveness().why_unanswered(),
            lambda reason: self._abandon(pool, workers, lease, reason, snapshots),
        ) as abandoned:
            if snapshots is not None:
                snapshots.close(drop=self._gone is None)
            if pool is not None:
                pool.close(drop=self._gone is None)
            try:
                if (
                    lease is not None
                    and self._owner is not None
                    and self._gone is None
                    and not abandoned.is_set()
                ):
                    drop_own_leftovers(self.dialect, lease, self.settings.prefix, self._owner)
            except Exception as exc:  # the server may be gone already
                log.debug("final sweep of own copies failed: %s", exc)
        if lease is not None:
            try:
                lease.close()
            except Exception as exc:
                log.debug("closing the lease connection failed: %s", exc)
        self._backend = None

    def _abandon(
        self,
        pool: ClonePool | None,
        workers: CopyWorkers | None,
        lease: DBAPIConnection | None,
        reason: str,
        snapshots: SessionSnapshots | None = None,
    ) -> None:
        """Give up on a server that stopped answering while this session stops: the
        pool is told it is gone, and every connection of this session is aborted, so
        whatever waits on them fails at once."""
        error = ServerUnavailableError(
            f"stopping without the server {self._liveness().where()}, which does not "
            f"answer: {reason}; this session's copies stay on it until a later "
            "session or `freshdb prune` reaps them"
        )
        log.warning("%s", error)
        if snapshots is not None:
            snapshots.abandon(error)
        if pool is not None:
            pool.server_gone(error)
        if workers is not None:
            workers.abort_all()
        if lease is not None:
            self.dialect.abort(lease)

    def __enter__(self) -> DatabaseServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- copies -------------------------------------------------------------------
    def database(self, timeout: float | None = None) -> Database:
        """A fresh copy of the template (waits only if the pool is empty).

        Raises :class:`~freshdb.ServerUnavailableError` once the server is gone,
        :class:`~freshdb.PoolTimeoutError` if no copy is ready within ``timeout``
        (default: the ``acquire_timeout`` setting).
        """
        pool, copies = self._require_copies()
        return copies.hand_out(pool, self._template, timeout)

    def adatabase(self, timeout: float | None = None) -> AsyncDatabaseContext:
        """``async with server.adatabase() as db``: a fresh copy for async code."""
        pool, copies = self._require_copies()
        return copies.hand_out_async(pool, self._template, timeout)

    def snapshot(
        self, seed: Any, *, key: str | None = None, pool_size: int | None = None
    ) -> Snapshot:
        """``seed`` run once on a copy of the template, cached on the server like the
        template, with a pool of copies of its own (see :mod:`freshdb.snapshot`).

        ``seed`` is what ``schema=`` accepts; ``key`` names a seed whose source does
        not say all it does; ``pool_size`` (default: ``snapshot_pool_size``) copies
        are kept ready. Raises :class:`~freshdb.SeedError` if the seed fails.
        """
        self._require_pool()
        snapshots, template = self._snapshots, self._template
        if snapshots is None or template is None:
            raise FreshDBError("the server stopped while making a snapshot")
        return snapshots.snapshot(template, seed, key=key, pool_size=pool_size)

    def _check_server(self, ask_backend: bool = False) -> None:
        """Raise if the server is gone: ready copies of a dead server are no use.

        Costs a non-blocking look at the lease connection's socket (the server
        hangs up on it when it dies), so it runs on every hand-out. With
        ``ask_backend`` (only after a failure: it may be a Docker API call), the
        backend is asked too, for where no hang-up ever reaches the lease.
        """
        if self._gone is None:
            with self._lease_lock:
                lease = self._lease
                dropped = lease is not None and self.dialect.connection_dropped(lease)
            if not dropped and (not ask_backend or self._liveness().backend_says_alive()):
                return
            self._gone = self._gone_error()
            log.warning("%s", self._gone)
        raise type(self._gone)(str(self._gone))

    def _gone_for_good(self, failure: BaseException) -> FreshDBError | None:
        """Asked by the pool after a clone failed: the error that ends it, if the server
        is gone for good (not merely slow, full, paused or out of reach for now)."""
        if not isinstance(failure, ServerUnavailableError):
            return None
        with contextlib.suppress(FreshDBError):  # it raises _gone, once set
            self._check_server(ask_backend=True)
        return self._gone

    def _liveness(self) -> Liveness:
        return Liveness(self.dialect, self._running, self._backend)

    def _gone_error(self) -> FreshDBError:
        pool = self._pool
        return self._liveness().gone_error(pool.last_failure if pool is not None else None)

    def _require_pool(self) -> ClonePool:
        pool = self._pool
        if pool is None:
            raise FreshDBError(
                "the server is not started: use `with DatabaseServer(...) as server:` or "
                "call server.start() first"
            )
        return pool

    def _require_copies(self) -> tuple[ClonePool, CopyHandOut]:
        pool, copies = self._require_pool(), self._copies
        assert copies is not None  # made before the pool at start, and kept after stop
        return pool, copies

    # -- facts ------------------------------------------------------------------
    @property
    def address(self) -> ServerAddress:
        """Where the server is (host, port, admin credentials)."""
        if self._running is None:
            raise FreshDBError("the server is not started")
        return self._running.address

    @property
    def url(self) -> URL:
        """The admin URL of the server, with the configured driver."""
        return self.url_for(self._driver.name)

    def url_for(self, driver: str) -> URL:
        """The admin URL of the server for ``driver`` (e.g. ``"psycopg2"``)."""
        address = self.address
        return self._logins.parts(address, address.admin_database or None).url(driver)

    def dsn(self) -> str:
        """The admin address as a plain URI (``postgresql://…``, ``mysql://…``)."""
        address = self.address
        return self._logins.parts(address, address.admin_database or None).dsn()

    @property
    def template(self) -> str | None:
        """The name of the template copies are made from."""
        return self._template.name if self._template else None

    @property
    def running(self) -> RunningServer | None:
        """How the server was found or started, if it is."""
        return self._running

    def stats(self) -> dict[str, Any]:
        """Pool counts (ready, busy, total, clones, waits) and what the session uses."""
        pool_stats = self._pool.stats() if self._pool is not None else {}
        return {
            "engine": self.settings.engine,
            "mode": self.settings.mode,
            "template": self.template,
            # The owner id in the names of this session's copies (see freshdb.naming).
            "owner": self._owner,
            "template_reused": self._template.reused if self._template else None,
            "template_restored": self._template.restored if self._template else None,
            "template_build_seconds": (
                round(self._template.build_seconds, 3) if self._template else None
            ),
            "start_seconds": round(self._start_seconds, 3),
            "server": self._running.describe() if self._running else None,
            "reaped": list(self._reaped),
            "snapshots": self._snapshots.names() if self._snapshots is not None else [],
            **pool_stats,
        }
