"""Calling off a wait for a copy from another thread."""

from __future__ import annotations

import threading


class Cancellation:
    """Lets another thread call off an :meth:`ClonePool.acquire` that is waiting.

    Async code waits for a copy in a worker thread; when the waiting task is
    cancelled, :meth:`cancel` ends that wait at once instead of leaving the thread
    (and a copy cloned for it) to the acquire timeout.
    """

    def __init__(self) -> None:
        self._cancelled = False
        self._cond: threading.Condition | None = None

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancelled

    def cancel(self) -> None:
        """Make the acquire this was given to raise :class:`AcquireCancelledError`."""
        self._cancelled = True
        # Set before reading: an acquire that attaches after this read sees the flag.
        cond = self._cond
        if cond is not None:
            with cond:
                cond.notify_all()

    def _attach(self, cond: threading.Condition) -> None:
        self._cond = cond
