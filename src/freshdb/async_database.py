"""``async with server.adatabase() as db``: a copy for async code, under asyncio or trio."""

from __future__ import annotations

import threading
from collections.abc import Callable

import anyio
import anyio.lowlevel
import anyio.to_thread

from freshdb.database import Database
from freshdb.pool import Cancellation


class AsyncDatabaseContext:
    """``async with server.adatabase() as db``: acquires without blocking the event loop.

    Works under asyncio and trio (through anyio). A cancelled task gives its copy
    back wherever the cancellation strikes: while it waits for a copy (the wait,
    in a worker thread, is called off), just after the copy arrived, or in the body.
    """

    def __init__(
        self,
        acquire_now: Callable[[], Database | None],
        acquire: Callable[[Cancellation], Database],
    ) -> None:
        self._acquire_now = acquire_now
        self._acquire = acquire
        self._database: Database | None = None

    async def __aenter__(self) -> Database:
        # A task cancelled already takes nothing.
        await anyio.lowlevel.checkpoint_if_cancelled()
        database = self._acquire_now()  # the usual case: a ready copy, no thread hop
        if database is None:
            database = await self._acquire_in_thread()
        self._database = database
        return database

    async def _acquire_in_thread(self) -> Database:
        # Exactly one side gives the copy back if the task is cancelled: the thread,
        # when it gets the copy after the task gave up on it; else the task, which
        # may have been cancelled after the thread handed the copy over.
        lock = threading.Lock()
        cancellation = Cancellation()
        handed_over: list[Database] = []

        def acquire() -> Database | None:
            database = self._acquire(cancellation)
            with lock:
                if not cancellation.cancelled:
                    handed_over.append(database)
                    return database
            database.release()
            return None

        try:
            database = await anyio.to_thread.run_sync(acquire, abandon_on_cancel=True)
        except BaseException:
            with lock:
                cancellation.cancel()
                orphans = list(handed_over)
            for orphan in orphans:
                orphan.release()
            raise
        assert database is not None  # None only once cancelled, and then nobody awaits
        return database

    async def __aexit__(self, *exc_info: object) -> None:
        database, self._database = self._database, None
        if database is not None:
            await database.arelease()
