"""Handing out copies: a copy taken from a pool becomes the ``Database`` a test holds.

:class:`CopyHandOut` belongs to one :class:`~freshdb.server.DatabaseServer` session
and serves its pool (``server.database()``, ``server.adatabase()``) and its
snapshots' pools alike. It asks the session, through the callables it is given,
whether the server is still there: a ready copy of a dead server is no use, and a
pool that cannot reach the server is told apart from one that is merely slow.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Protocol

from freshdb.async_database import AsyncDatabaseContext
from freshdb.database import Database
from freshdb.dialects.base import ServerAddress
from freshdb.drivers import Driver
from freshdb.engine_factory import EngineFactory
from freshdb.errors import (
    AcquireCancelledError,
    FreshDBError,
    PoolTimeoutError,
    ServerUnavailableError,
)
from freshdb.pool import Cancellation, ClonePool, Copy
from freshdb.server.liveness import Liveness
from freshdb.server.logins import Logins
from freshdb.server.snapshots import SessionSnapshots
from freshdb.template import Template


class CheckServer(Protocol):
    """The session's check that its server is not gone (it raises if it is)."""

    def __call__(self, ask_backend: bool = False) -> None: ...


class CopyHandOut:
    """One session's hand-out: copies from its pools, as :class:`~freshdb.Database`.

    ``check_server`` raises once the server is gone, ``liveness`` tells a server that
    does not answer, and ``snapshots`` is the session's snapshots (``None`` once it
    stops), which a handed-out database makes its own snapshots with.
    """

    def __init__(
        self,
        logins: Logins,
        address: ServerAddress,
        *,
        driver: Driver,
        engines: EngineFactory,
        check_server: CheckServer,
        liveness: Callable[[], Liveness],
        snapshots: Callable[[], SessionSnapshots | None],
    ) -> None:
        self.address = address
        self._logins = logins
        self._driver = driver
        self._engines = engines
        self._check_server = check_server
        self._liveness = liveness
        self._snapshots = snapshots

    def hand_out(
        self, pool: ClonePool, template: Template | None, timeout: float | None
    ) -> Database:
        """A fresh copy from ``pool`` (waits only if it is empty)."""
        self._check_server()
        return self._wrap(pool, self._acquire(pool, timeout), template)

    def hand_out_async(
        self, pool: ClonePool, template: Template | None, timeout: float | None
    ) -> AsyncDatabaseContext:
        """``async with``: a fresh copy from ``pool``, without blocking the event loop."""

        def now() -> Database | None:
            self._check_server()
            copy = pool.try_acquire()
            return None if copy is None else self._wrap(pool, copy, template)

        def waiting(cancel: Cancellation) -> Database:
            return self._wrap(pool, self._acquire(pool, timeout, cancel), template)

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
            unanswered = self._liveness().unanswered_error()
            if unanswered is not None:
                raise unanswered from exc
            raise
        except FreshDBError:
            self._check_server()
            raise

    def _wrap(self, pool: ClonePool, copy: Copy, template: Template | None) -> Database:
        address = self.address
        warm, copy.warm_connection = copy.warm_connection, None
        snapshots = self._snapshots()
        return Database(
            self._logins.parts(address, copy.name),
            release=lambda keep: pool.release(copy, keep=keep),
            driver=self._driver,
            engines=self._engines,
            warm_connection=warm,
            kept_name=copy.kept_name,
            snapshot=(
                functools.partial(snapshots.of_copy, template, copy.name)
                if snapshots is not None and template is not None
                else None
            ),
        )
