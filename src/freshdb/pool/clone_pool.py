"""The pool: keeps copies READY ahead of their users, drops given-back ones behind them.

Every move of a copy between states is made here, by :meth:`ClonePool._move`, under
the pool's lock (see :mod:`freshdb.pool` for the states and the threads). It runs a
little over 400 lines on purpose: the callers' side, the cloners and the dropper all
move copies under that one lock, and keeping them in one module keeps every move of
a copy's state in one place.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from freshdb.errors import AcquireCancelledError, FreshDBError, PoolTimeoutError
from freshdb.pool.cancellation import Cancellation
from freshdb.pool.states import MOVES, Copy, CopyState, CopyWorker

log = logging.getLogger("freshdb")


class ClonePool:
    """Keeps ``size`` copies ready and drops released ones in the background."""

    #: Failed clone attempts in a row after which callers waiting for a copy are
    #: told why: one failure may be a blip the cloner's retry gets over (a server
    #: full for a moment), so it alone fails nobody.
    failures_before_giving_up = 3

    def __init__(
        self,
        open_worker: Callable[[], CopyWorker],
        copy_name: Callable[[int], str],
        kept_name: Callable[[int], str],
        size: int,
        acquire_timeout: float,
        cloners: int = 2,
        server_gone: Callable[[BaseException], FreshDBError | None] | None = None,
    ) -> None:
        self._open_worker = open_worker
        # Asked after a clone fails: the error to end the pool with if the server is
        # gone for good (retrying would only flood the log), else None.
        self._server_gone = server_gone
        self._gone: FreshDBError | None = None
        self._copy_name = copy_name
        self._kept_name = kept_name
        self.size = size
        self.acquire_timeout = acquire_timeout
        self._cond = threading.Condition()
        self._ready: collections.deque[Copy] = collections.deque()
        self._to_drop: collections.deque[Copy] = collections.deque()
        self._copies: dict[str, Copy] = {}
        self._seq = 0
        self._waiting = 0
        self._closing = False  # no more hand-outs, no more clones
        self._closed = False  # close() has queued (or given up) every copy
        self._drop_on_close = True
        self._failure: BaseException | None = None  # the last clone attempt's, if it failed
        self._failures = 0  # clone attempts that failed, ever: a waiter's clock
        self._failure_streak = 0  # clone attempts that failed since the last success
        self.counters = collections.Counter[str]()
        self.wait_seconds = 0.0
        self.cloners = max(1, cloners)
        self._cloner_threads: list[threading.Thread] = []
        self._dropper_thread: threading.Thread | None = None

    # -- life -------------------------------------------------------------------
    def start(self) -> None:
        """Start the background threads; copies start appearing at once."""
        # Several cloners: one CREATE DATABASE at a time cannot keep up with tests
        # that take less time than a clone.
        for number in range(self.cloners):
            thread = threading.Thread(
                target=self._clone_loop, name=f"freshdb-cloner-{number}", daemon=True
            )
            thread.start()
            self._cloner_threads.append(thread)
        self._dropper_thread = threading.Thread(
            target=self._drop_loop, name="freshdb-dropper", daemon=True
        )
        self._dropper_thread.start()

    def close(self, timeout: float = 60.0, drop: bool = True) -> None:
        """Stop cloning and drop every copy this pool made (waits for the drops).

        Callers waiting for a copy get a :class:`FreshDBError` at once; copies still
        in use are dropped too (their later release does nothing). ``drop=False``
        when the server is gone: there is nothing left to drop, and every copy is
        given up at once.
        """
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._drop_on_close = drop
            self._cond.notify_all()
        for thread in self._cloner_threads:
            thread.join(timeout)
        with self._cond:
            self._ready.clear()
            if not drop:
                self._to_drop.clear()
            given_up = []
            for copy in list(self._copies.values()):
                if copy.state in (CopyState.READY, CopyState.IN_USE):
                    self._retire(copy)
                elif copy.state in (CopyState.DIRTY, CopyState.TO_KEEP) and not drop:
                    self._move(copy, CopyState.GONE)
                if copy.state is CopyState.GONE:
                    given_up.append(copy)
            self._closed = True
            self._cond.notify_all()
        for copy in given_up:
            _discard_quietly(copy)
        if self._dropper_thread is not None:
            self._dropper_thread.join(timeout)

    def server_gone(self, error: FreshDBError) -> None:
        """The server is gone for good: stop cloning and dropping, fail every caller.

        Callers waiting now and later get ``error``; copies not yet dropped are left
        to be reaped with this session's lease.
        """
        with self._cond:
            if self._gone is None:
                self._gone = error
            given_up = [*self._ready, *self._to_drop]
            self._ready.clear()
            self._to_drop.clear()
            for copy in given_up:
                self._move(copy, CopyState.GONE)
            self._cond.notify_all()
        for copy in given_up:
            _discard_quietly(copy)

    @property
    def last_failure(self) -> BaseException | None:
        """Why the last clone failed, if it did (cleared by the next success)."""
        return self._failure

    # -- the caller's side -------------------------------------------------------------
    def try_acquire(self) -> Copy | None:
        """A READY copy if there is one now, else ``None`` (never blocks)."""
        with self._cond:
            self._check_open()
            return self._take() if self._ready else None

    def acquire(self, timeout: float | None = None, cancel: Cancellation | None = None) -> Copy:
        """A READY copy, waiting (bounded) only if the pool is empty.

        Raises :class:`PoolTimeoutError` when no copy is ready in time, the cause
        when making copies keeps failing while this caller waits,
        :class:`AcquireCancelledError` once ``cancel`` is cancelled, and
        :class:`FreshDBError` when the pool closes.
        """
        with self._cond:
            self._check_open()
            if self._ready:
                return self._take()
            self.counters["waits"] += 1
            self._waiting += 1
            started = time.monotonic()
            deadline = started + (self.acquire_timeout if timeout is None else timeout)
            # A failure from before this caller came (a server full a moment ago) may
            # be over: only one while it waits, in a streak long enough to look
            # lasting, fails it.
            failures_seen = self._failures
            if cancel is not None:
                cancel._attach(self._cond)
            self._cond.notify_all()  # a cloner makes one more
            try:
                while True:
                    self._check_open()
                    if cancel is not None and cancel.cancelled:
                        raise AcquireCancelledError("waiting for a copy was cancelled")
                    if self._ready:
                        return self._take()
                    if (
                        self._failures != failures_seen
                        and self._failure_streak >= self.failures_before_giving_up
                        and self._failure is not None
                    ):
                        raise copy_failed(self._failure) from self._failure
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise PoolTimeoutError(
                            f"no copy became ready within {deadline - started:.0f} s "
                            f"({self._stats_line()}) — are tests holding copies they never "
                            "release? Raise FRESHDB_ACQUIRE_TIMEOUT or pool_size if the "
                            "server is just slow"
                        )
                    self._cond.wait(remaining)
            finally:
                self._waiting -= 1
                self.wait_seconds += time.monotonic() - started

    def release(self, copy: Copy, keep: bool = False) -> None:
        """Give a copy back: it is dropped (or kept) in the background.

        Does nothing if the copy is no longer in use (released before, or taken
        back when the pool closed).
        """
        with self._cond:
            if copy.state is not CopyState.IN_USE:
                log.debug("%s was given back already (%s)", copy.name, copy.state.value)
                return
            self._move(copy, CopyState.TO_KEEP if keep else CopyState.DIRTY)
            self._to_drop.append(copy)
            self._cond.notify_all()

    def stats(self) -> dict[str, Any]:
        """Counts of copies by state and of the work done.

        ``ready + busy + creating + dropping + keeping == total`` at every moment.
        """
        with self._cond:
            by_state = collections.Counter(c.state for c in self._copies.values())
            return {
                "ready": by_state[CopyState.READY],
                "busy": by_state[CopyState.IN_USE],
                "creating": by_state[CopyState.CREATING],
                "dropping": by_state[CopyState.DIRTY] + by_state[CopyState.DROPPING],
                "keeping": by_state[CopyState.TO_KEEP] + by_state[CopyState.RENAMING],
                "total": len(self._copies),
                "size": self.size,
                "clones": self.counters["clones"],
                "clone_failures": self._failures,
                "drops": self.counters["drops"],
                "drop_failures": self.counters["drop_failures"],
                "kept": self.counters["kept"],
                "acquired": self.counters["acquired"],
                "waits": self.counters["waits"],
                "waiting": self._waiting,
                "wait_seconds": round(self.wait_seconds, 4),
                "failure": None if self._failure is None else str(self._failure),
            }

    # -- internals -------------------------------------------------------------
    def _move(self, copy: Copy, state: CopyState) -> None:
        """The one place a copy changes state (under the lock)."""
        if state not in MOVES[copy.state]:
            raise AssertionError(f"copy {copy.name}: no move from {copy.state} to {state}")
        copy.state = state
        if state is CopyState.GONE:
            self._copies.pop(copy.name, None)

    def _retire(self, copy: Copy) -> None:
        """A copy the closing pool takes back: queued to drop, or given up."""
        if self._drop_on_close:
            self._move(copy, CopyState.DIRTY)
            self._to_drop.append(copy)
        else:
            self._move(copy, CopyState.GONE)

    def _check_open(self) -> None:
        if self._gone is not None:
            raise type(self._gone)(str(self._gone))
        if self._closing:
            raise FreshDBError("the server was stopped: no more copies can be handed out")

    def _take(self) -> Copy:
        copy = self._ready.popleft()
        self._move(copy, CopyState.IN_USE)
        self.counters["acquired"] += 1
        self._cond.notify_all()  # the cloner refills
        return copy

    def _stats_line(self) -> str:
        by_state = collections.Counter(c.state.value for c in self._copies.values())
        return ", ".join(f"{n} {s}" for s, n in sorted(by_state.items())) or "no copies"

    def _wants_clone(self) -> bool:
        if self._closing or self._gone is not None:
            return False
        creating = sum(1 for c in self._copies.values() if c.state is CopyState.CREATING)
        return len(self._ready) + creating < self.size + self._waiting

    def _clone_loop(self) -> None:
        worker: CopyWorker | None = None
        backoff = 0.0
        while True:
            with self._cond:
                while not self._wants_clone() and not self._closing and self._gone is None:
                    self._cond.wait()
                if self._closing or self._gone is not None:
                    break
                self._seq += 1
                copy = Copy(self._copy_name(self._seq), self._kept_name(self._seq))
                self._copies[copy.name] = copy
            try:
                if worker is None:
                    worker = self._open_worker()
                copy.warm_connection, copy.made_by = worker.clone(copy.name), worker
            except Exception as exc:
                # Once per run of failures: a server that is down fails every retry.
                log.log(
                    logging.DEBUG if backoff else logging.WARNING,
                    "making copy %s failed: %s",
                    copy.name,
                    exc,
                )
                gone = self._server_gone(exc) if self._server_gone is not None else None
                if gone is not None:
                    self.server_gone(gone)
                with self._cond:
                    self._failure = exc
                    self._failures += 1
                    self._failure_streak += 1
                    self._give_back_unready(copy)  # drop whatever half of it exists
                    self._cond.notify_all()
                if worker is not None:
                    _close_quietly(worker)
                    worker = None
                backoff = min(max(backoff * 2, 0.1), 2.0)
                with self._cond:
                    self._cond.wait_for(
                        lambda: self._closing or self._gone is not None, timeout=backoff
                    )
                continue
            backoff = 0.0
            with self._cond:
                self._failure = None
                self._failure_streak = 0
                self.counters["clones"] += 1
                if self._closing:
                    self._give_back_unready(copy)
                else:
                    self._move(copy, CopyState.READY)
                    self._ready.append(copy)
                self._cond.notify_all()
            if copy.state is CopyState.GONE:
                _discard_quietly(copy)
        if worker is not None:
            _close_quietly(worker)

    def _give_back_unready(self, copy: Copy) -> None:
        """A copy that never became READY (a failed clone, or the pool closed)."""
        if self._closed or (self._closing and not self._drop_on_close):
            # close() is done (the dropper may be gone) or there is nothing to drop:
            # the session's final sweep, or a later session's reaper, drops it.
            self._move(copy, CopyState.GONE)
        else:
            self._move(copy, CopyState.DIRTY)
            self._to_drop.append(copy)

    def _drop_loop(self) -> None:
        worker: CopyWorker | None = None
        while True:
            with self._cond:
                while not self._to_drop and not self._closed and self._gone is None:
                    self._cond.wait()
                if not self._to_drop or self._gone is not None:
                    break
                copy = self._to_drop.popleft()
                keep = copy.state is CopyState.TO_KEEP
                self._move(copy, CopyState.RENAMING if keep else CopyState.DROPPING)
            _discard_quietly(copy)
            try:
                if worker is None:
                    worker = self._open_worker()
                if keep:
                    worker.rename(copy.name, copy.kept_name)
                else:
                    worker.drop(copy.name)
                outcome = "kept" if keep else "drops"
            except Exception as exc:
                # The owner's lease dies with this session, so the copy is reaped later.
                log.warning(
                    "%s copy %s failed (it will be reaped later): %s",
                    "keeping" if keep else "dropping",
                    copy.name,
                    exc,
                )
                outcome = "drop_failures"
                if worker is not None:
                    _close_quietly(worker)
                    worker = None
            with self._cond:
                self.counters[outcome] += 1
                self._move(copy, CopyState.GONE)
                self._cond.notify_all()
        if worker is not None:
            _close_quietly(worker)


def copy_failed(failure: BaseException) -> FreshDBError:
    """The error a waiting caller gets when making a copy failed.

    Of the failure's own class when it is a ``FreshDBError`` (a ``ServerFullError``
    stays one, so callers can tell a full server from a bug), else ``FreshDBError``.
    """
    kind = type(failure) if isinstance(failure, FreshDBError) else FreshDBError
    return kind(f"cannot make a copy of the template: {failure}")


def _discard_quietly(copy: Copy) -> None:
    """Let go of what came with a copy nobody took (an open connection to it)."""
    warm_connection, copy.warm_connection = copy.warm_connection, None
    if warm_connection is None or copy.made_by is None:
        return
    try:
        copy.made_by.discard(warm_connection)
    except Exception as exc:
        log.debug("letting go of what came with copy %s failed: %s", copy.name, exc)


def _close_quietly(worker: CopyWorker) -> None:
    try:
        worker.close()
    except Exception as exc:
        log.debug("closing a pool worker failed: %s", exc)
