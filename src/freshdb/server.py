"""``DatabaseServer``: a server, a template on it, and a pool of copies.

The flow of ``start()``: configuration → a backend starts or finds the server →
this session takes its owner lease → leftovers of dead sessions are reaped → the
template is found or built → stale templates are pruned → the pool starts cloning.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from sqlalchemy.engine import URL

from freshdb import naming
from freshdb.backends import RunningServer, ServerBackend, backend_for
from freshdb.config import Settings, resolve_settings
from freshdb.database import AsyncDatabaseContext, Database, EngineFactory
from freshdb.dialects import dialect_for
from freshdb.dialects.base import CopyRecipe, DBAPIConnection, Dialect, ServerAddress
from freshdb.drivers import ConnectionParts, configured_driver
from freshdb.errors import (
    AcquireCancelledError,
    DockerUnavailableError,
    FreshDBError,
    PoolTimeoutError,
    ServerFullError,
    ServerUnavailableError,
)
from freshdb.migrators import Migrator, as_migrator
from freshdb.pool import Cancellation, ClonePool, Copy
from freshdb.template import Template, TemplateBuilder, prune_templates

log = logging.getLogger("freshdb")

#: How long the server may take to accept a new connection and answer ``SELECT 1``
#: before it counts as not answering (paused, or the network to it cut).
ANSWER_TIMEOUT = 5.0
#: How long ``stop()`` lets its work on the server run before asking, every so
#: often, whether the server still answers; if not, that work is abandoned.
STOP_CHECK_INTERVAL = 5.0


class _SqlCopyWorker:
    """The pool's background work, done with the dialect's SQL on one connection."""

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
        # The pool's workers, to abort if the server stops answering during stop();
        # weak, so the ones the pool has closed and let go of are forgotten.
        self._workers: weakref.WeakSet[_SqlCopyWorker] = weakref.WeakSet()
        self._workers_lock = threading.Lock()
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
            backend = backend_for(self.settings, self.dialect)
            running = backend.start()
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
                "reused" if self._template and self._template.reused else "built",
            )
            return self

    def _begin_session(
        self, backend: ServerBackend, running: RunningServer, migrator: Migrator
    ) -> None:
        self._backend, self._running = backend, running
        self._engines = EngineFactory(self._driver)  # dialect state belongs to this server
        address = running.address
        prefix = self.settings.prefix
        self._owner = naming.new_owner_id()
        self._lease = self.dialect.connect(address)
        self.dialect.take_owner_lease(self._lease, self._owner)
        self._reaped = reap_dead_owners(self.dialect, self._lease, prefix)
        builder = TemplateBuilder(self.dialect, address, prefix, self._owner)
        template = builder.ensure(self._lease, migrator)
        self._template = template
        prune_templates(
            self.dialect,
            self._lease,
            prefix,
            self.settings.keep_templates,
            {template.name},
            retention_seconds=self.settings.template_retention_seconds,
        )
        recipe = self.dialect.copy_recipe(self._lease, template.name)
        owner = self._owner
        engines = self._engines

        def open_worker() -> _SqlCopyWorker:
            worker = _SqlCopyWorker(self.dialect, address, recipe, engines)
            with self._workers_lock:
                self._workers.add(worker)
            return worker

        pool = ClonePool(
            open_worker=open_worker,
            copy_name=lambda seq: naming.copy_name(prefix, template.fingerprint, owner, seq),
            kept_name=lambda seq: naming.kept_name(prefix, template.fingerprint, owner, seq),
            size=self.settings.pool_size,
            acquire_timeout=self.settings.acquire_timeout,
            cloners=self.settings.clone_workers,
            server_gone=self._gone_for_good,
        )
        pool.start()
        self._pool = pool

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
        # Dropping copies waits on the server: if it is paused or cut off, give up on
        # it (its copies are reaped later with this session's lease) instead of hanging.
        with self._abandoned_if_unanswered(pool, lease) as abandoned:
            if pool is not None:
                pool.close(drop=self._gone is None)
            try:
                if (
                    lease is not None
                    and self._owner is not None
                    and self._gone is None
                    and not abandoned.is_set()
                ):
                    self._drop_own_leftovers(lease, self._owner)
            except Exception as exc:  # the server may be gone already
                log.debug("final sweep of own copies failed: %s", exc)
        if lease is not None:
            try:
                lease.close()
            except Exception as exc:
                log.debug("closing the lease connection failed: %s", exc)
        with self._workers_lock:
            self._workers.clear()
        self._backend = None

    @contextlib.contextmanager
    def _abandoned_if_unanswered(
        self, pool: ClonePool | None, lease: DBAPIConnection | None
    ) -> Iterator[threading.Event]:
        """Run a block of work on the server; abandon it if the server stops answering.

        Slow work is fine as long as the server answers a new connection: every
        ``STOP_CHECK_INTERVAL`` seconds a watcher asks; once it does not (paused,
        network cut), the pool is told the server is gone and every connection of
        this session is aborted, so whatever waits on them fails at once. The event
        yielded is set then. Once the block ends, nothing is aborted any more.
        """
        finished = threading.Event()
        abandoned = threading.Event()
        lock = threading.Lock()

        def watch() -> None:
            while not finished.wait(STOP_CHECK_INTERVAL):
                reason = self._why_unanswered()
                if reason is None:
                    continue
                with lock:
                    if finished.is_set():
                        return
                    abandoned.set()
                    error = ServerUnavailableError(
                        f"stopping without the server {self._where()}, which does not "
                        f"answer: {reason}; this session's copies stay on it until a later "
                        "session or `freshdb prune` reaps them"
                    )
                    log.warning("%s", error)
                    if pool is not None:
                        pool.server_gone(error)
                    with self._workers_lock:
                        workers = list(self._workers)
                    for worker in workers:
                        worker.abort()
                    if lease is not None:
                        self.dialect.abort(lease)
                return

        watcher = threading.Thread(target=watch, name="freshdb-stop-watch", daemon=True)
        watcher.start()
        try:
            yield abandoned
        finally:
            with lock:  # after this the watcher touches no connection
                finished.set()

    def _drop_own_leftovers(self, lease: DBAPIConnection, owner: str) -> None:
        for mine in self.dialect.our_databases(lease, self.settings.prefix, ("copy", "build")):
            if mine.owner == owner:
                self.dialect.drop_database(lease, mine.name)

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
        pool = self._require_pool()
        self._check_server()
        return self._wrap(pool, self._acquire(pool, timeout))

    def adatabase(self, timeout: float | None = None) -> AsyncDatabaseContext:
        """``async with server.adatabase() as db``: a fresh copy for async code."""
        pool = self._require_pool()

        def now() -> Database | None:
            self._check_server()
            copy = pool.try_acquire()
            return None if copy is None else self._wrap(pool, copy)

        def waiting(cancel: Cancellation) -> Database:
            return self._wrap(pool, self._acquire(pool, timeout, cancel))

        return AsyncDatabaseContext(now, waiting)

    def _acquire(
        self, pool: ClonePool, timeout: float | None, cancel: Cancellation | None = None
    ) -> Copy:
        try:
            return pool.acquire(timeout, cancel)
        except AcquireCancelledError:
            raise
        except (ServerUnavailableError, PoolTimeoutError) as exc:
            # The pool cannot reach the server: if it is gone, say that instead. A
            # paused server (or a cut network) is told apart too: to the pool it
            # looks like a clone that never finishes, or a connection timing out.
            self._check_server(ask_backend=True)
            unanswered = self._unanswered_error()
            if unanswered is not None:
                raise unanswered from exc
            raise
        except FreshDBError:
            self._check_server()
            raise

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
            if not dropped and (not ask_backend or self._backend_says_alive()):
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

    def _unanswered_error(self) -> ServerUnavailableError | None:
        """The error to give if the server does not answer a new connection in time."""
        reason = self._why_unanswered()
        if reason is None:
            return None
        return ServerUnavailableError(
            f"the server {self._where()} does not answer: {reason} (this session goes on "
            "once it answers again)"
        )

    def _where(self) -> str:
        running = self._running
        if running is None:
            return "(not started)"
        return running.container_name or f"{running.address.host}:{running.address.port}"

    def _why_unanswered(self) -> str | None:
        """Why the server does not answer a new connection in time, or None if it does."""
        running = self._running
        if running is None:
            return None
        try:
            self.dialect.ping(running.address, timeout=ANSWER_TIMEOUT)
        except ServerUnavailableError as exc:
            failure = str(exc)
        except FreshDBError:
            return None  # it answered, if only to refuse (full, say): not a hang
        except Exception as exc:
            failure = f"{type(exc).__name__}: {exc}"
        else:
            return None
        note = self._pause_note()
        if note is not None:
            return f"{note} to resume it"
        return (
            f"a new connection got no answer within {ANSWER_TIMEOUT:.0f} s ({failure}) — "
            "is it paused or overloaded, or is the network to it cut?"
        )

    def _pause_note(self) -> str | None:
        backend = self._backend
        try:
            return backend.pause_note() if backend is not None else None
        except Exception:  # only advice
            return None

    def _backend_says_alive(self) -> bool:
        backend = self._backend
        try:
            return backend is None or backend.check_alive()
        except FreshDBError:
            return True  # nobody can tell (Docker does not answer): not known to be gone

    def _gone_error(self) -> FreshDBError:
        running, backend = self._running, self._backend
        if running is None:
            return ServerUnavailableError("the server is gone — start a new session")
        where = running.container_name or f"{running.address.host}:{running.address.port}"
        again = "leave `with DatabaseServer(...)` (or call stop()) and start a new session"
        if running.mode != "external":
            again += ", which starts the server again and rebuilds the template"
        pool = self._pool
        full = pool.last_failure if pool is not None else None
        if isinstance(full, ServerFullError):
            # Postgres restarts itself when it cannot write its WAL (a PANIC), which
            # ends this session: the full disk is the cause worth telling.
            return ServerFullError(
                f"{full} — the server restarted because of it, ending this session: {again}"
            )
        try:
            alive = backend.check_alive() if backend is not None else False
        except DockerUnavailableError as exc:
            return ServerUnavailableError(
                f"lost the connection to the server {where}, and the Docker engine does not "
                f"answer either ({exc}) — start Docker, then {again}"
            )
        if not alive and running.container_name:
            return ServerUnavailableError(
                f"the server container {where} is gone (stopped or removed) — {again}"
            )
        if not alive:
            return ServerUnavailableError(
                f"the server {where} does not answer any more — once it is back, {again}"
            )
        unanswered = self._why_unanswered()
        if unanswered is not None:
            return ServerUnavailableError(
                f"lost this session's connection to the server {where}, and it does not "
                f"answer a new one: {unanswered} Once it answers again, leave `with "
                "DatabaseServer(...)` (or call stop()) and start a new session"
            )
        return ServerUnavailableError(
            f"the server {where} ended this session's connection (it restarted, or someone "
            f"ended the connection), so this session's copies are no longer its own — {again}"
        )

    def _wrap(self, pool: ClonePool, copy: Copy) -> Database:
        address = self.address
        warm, copy.warm_connection = copy.warm_connection, None
        return Database(
            self._parts(address, copy.name),
            release=lambda keep: pool.release(copy, keep=keep),
            driver=self._driver,
            engines=self._engines,
            warm_connection=warm,
            kept_name=copy.kept_name,
        )

    def _parts(self, address: ServerAddress, database: str | None) -> ConnectionParts:
        return ConnectionParts(
            self.dialect.family,
            address.host,
            address.port,
            address.user,
            address.password,
            database,
        )

    def _require_pool(self) -> ClonePool:
        pool = self._pool
        if pool is None:
            raise FreshDBError(
                "the server is not started: use `with DatabaseServer(...) as server:` or "
                "call server.start() first"
            )
        return pool

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
        return self._parts(address, address.admin_database or None).url(driver)

    def dsn(self) -> str:
        """The admin address as a plain URI (``postgresql://…``, ``mysql://…``)."""
        address = self.address
        return self._parts(address, address.admin_database or None).dsn()

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
            "template_build_seconds": (
                round(self._template.build_seconds, 3) if self._template else None
            ),
            "start_seconds": round(self._start_seconds, 3),
            "server": self._running.describe() if self._running else None,
            "reaped": list(self._reaped),
            **pool_stats,
        }


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
