"""The pool of ready copies, and the one place where a copy's state lives.

A copy moves through explicit states, each move made under the pool's lock:

    CREATING ──▶ READY ──▶ IN_USE ──▶ DIRTY ──▶ DROPPING ──▶ GONE
                                  └──▶ KEEP ───▶ (renamed, kept for inspection)

Background threads do the slow work, each on its own server connection: the
*cloners* keep ``size`` copies READY (more while callers wait), the *dropper* drops
released copies. ``acquire()`` only pops a READY copy, so a caller never waits for
``CREATE DATABASE`` or ``DROP DATABASE`` unless the pool ran dry. The pool knows
nothing of engines: a :class:`CopyWorker` does the SQL.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from freshdb.errors import FreshDBError, PoolTimeoutError

log = logging.getLogger("freshdb")


class CopyState(enum.Enum):
    """Where a copy is in its life."""

    CREATING = "creating"
    READY = "ready"
    IN_USE = "in use"
    DIRTY = "dirty"
    KEEP = "keep"
    DROPPING = "dropping"
    KEPT = "kept"
    GONE = "gone"


@dataclasses.dataclass(eq=False)
class Copy:
    """One copy of the template, owned by this pool."""

    name: str
    seq: int
    state: CopyState = CopyState.CREATING
    #: The name the copy is renamed to if its user keeps it (known from the start,
    #: so a test's report can name it before the rename happens).
    kept_name: str | None = None
    #: What the worker made along with the copy (an open connection to it), taken by
    #: whoever acquires the copy; discarded by the dropper if nobody did.
    attachment: Any = None


class CopyWorker(Protocol):
    """The SQL side of the pool's background work, on one server connection."""

    def clone(self, name: str) -> Any:
        """Create database ``name`` as a copy of the template; return an attachment
        (e.g. a connection opened to it ahead of its user) or ``None``."""
        ...

    def discard(self, attachment: Any) -> None:
        """Let go of an attachment nobody took."""
        ...

    def drop(self, name: str) -> None:
        """Drop database ``name``, disconnecting whoever is still connected."""
        ...

    def rename(self, old: str, new: str) -> None:
        """Rename a database (to keep a copy after a failure)."""
        ...

    def close(self) -> None:
        """Close the worker's connection."""
        ...


class ClonePool:
    """Keeps ``size`` copies ready and drops released ones in the background."""

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
        self._creating = 0
        self._waiting = 0
        self._closing = False
        self._cloner_done = False
        self._failure: BaseException | None = None
        self._failures = 0  # clone attempts that failed, ever: a waiter's clock
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

        ``drop=False`` when the server is gone: there is nothing left to drop.
        """
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
        for thread in self._cloner_threads:
            thread.join(timeout)
        with self._cond:
            if not drop:
                self._to_drop.clear()
            for copy in list(self._copies.values()):
                if copy.state in (CopyState.READY, CopyState.IN_USE) and drop:
                    copy.state = CopyState.DIRTY
                    self._to_drop.append(copy)
            self._ready.clear()
            self._cloner_done = True
            self._cond.notify_all()
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
            self._ready.clear()
            self._to_drop.clear()
            self._cond.notify_all()

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

    def acquire(self, timeout: float | None = None) -> Copy:
        """A READY copy, waiting (bounded) only if the pool is empty."""
        with self._cond:
            self._check_open()
            if self._ready:
                return self._take()
            self.counters["waits"] += 1
            self._waiting += 1
            started = time.monotonic()
            deadline = started + (self.acquire_timeout if timeout is None else timeout)
            # Only a clone that fails while this caller waits fails it: a failure from
            # before (a server full a moment ago) may be over, and the cloner retries.
            failures_seen = self._failures
            self._cond.notify_all()
            try:
                while not self._ready:
                    self._check_open()
                    if self._failures != failures_seen and self._failure is not None:
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
                return self._take()
            finally:
                self._waiting -= 1
                self.wait_seconds += time.monotonic() - started

    def release(self, copy: Copy, keep: bool = False) -> None:
        """Give a copy back: it is dropped (or kept) in the background."""
        with self._cond:
            if copy.state is not CopyState.IN_USE:
                return
            copy.state = CopyState.KEEP if keep else CopyState.DIRTY
            self._to_drop.append(copy)
            self._cond.notify_all()

    def stats(self) -> dict[str, Any]:
        """Counts of copies by state and of the work done."""
        with self._cond:
            by_state = collections.Counter(c.state for c in self._copies.values())
            return {
                "ready": by_state[CopyState.READY],
                "busy": by_state[CopyState.IN_USE],
                "creating": by_state[CopyState.CREATING],
                "dropping": by_state[CopyState.DIRTY] + by_state[CopyState.DROPPING],
                "total": sum(by_state.values()),
                "size": self.size,
                "clones": self.counters["clones"],
                "drops": self.counters["drops"],
                "kept": self.counters["kept"],
                "acquired": self.counters["acquired"],
                "waits": self.counters["waits"],
                "wait_seconds": round(self.wait_seconds, 4),
                "failure": None if self._failure is None else str(self._failure),
            }

    # -- internals -------------------------------------------------------------
    def _check_open(self) -> None:
        if self._gone is not None:
            raise type(self._gone)(str(self._gone))
        if self._closing:
            raise FreshDBError("the server was stopped: no more copies can be handed out")

    def _take(self) -> Copy:
        copy = self._ready.popleft()
        copy.state = CopyState.IN_USE
        self.counters["acquired"] += 1
        self._cond.notify_all()  # the cloner refills
        return copy

    def _stats_line(self) -> str:
        by_state = collections.Counter(c.state.value for c in self._copies.values())
        return ", ".join(f"{n} {s}" for s, n in sorted(by_state.items())) or "no copies"

    def _wants_clone(self) -> bool:
        if self._closing or self._gone is not None:
            return False
        return len(self._ready) + self._creating < self.size + self._waiting

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
                copy = Copy(
                    self._copy_name(self._seq), self._seq, kept_name=self._kept_name(self._seq)
                )
                self._copies[copy.name] = copy
                self._creating += 1
            try:
                if worker is None:
                    worker = self._open_worker()
                copy.attachment = worker.clone(copy.name)
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
                    self._creating -= 1
                    copy.state = CopyState.DIRTY  # drop whatever half of it exists
                    self._to_drop.append(copy)
                    self._failure = exc
                    self._failures += 1
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
                self._creating -= 1
                self._failure = None
                self.counters["clones"] += 1
                if self._closing:
                    copy.state = CopyState.DIRTY
                    self._to_drop.append(copy)
                else:
                    copy.state = CopyState.READY
                    self._ready.append(copy)
                self._cond.notify_all()
        if worker is not None:
            _close_quietly(worker)

    def _drop_loop(self) -> None:
        worker: CopyWorker | None = None
        while True:
            with self._cond:
                while not self._to_drop and not self._cloner_done and self._gone is None:
                    self._cond.wait()
                if not self._to_drop or self._gone is not None:
                    break
                copy = self._to_drop.popleft()
                keep = copy.state is CopyState.KEEP
                copy.state = CopyState.DROPPING
            try:
                if worker is None:
                    worker = self._open_worker()
                attachment, copy.attachment = copy.attachment, None
                if attachment is not None:
                    worker.discard(attachment)
                if keep and copy.kept_name:
                    worker.rename(copy.name, copy.kept_name)
                else:
                    worker.drop(copy.name)
            except Exception as exc:
                # The owner's lease dies with this session, so the copy is reaped later.
                log.warning("dropping copy %s failed (it will be reaped later): %s", copy.name, exc)
                if worker is not None:
                    _close_quietly(worker)
                    worker = None
            with self._cond:
                copy.state = CopyState.KEPT if keep else CopyState.GONE
                self.counters["kept" if keep else "drops"] += 1
                self._copies.pop(copy.name, None)
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


def _close_quietly(worker: CopyWorker) -> None:
    try:
        worker.close()
    except Exception as exc:
        log.debug("closing a pool worker failed: %s", exc)
