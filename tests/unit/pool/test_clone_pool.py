"""The ClonePool state machine, with a fake CopyWorker (the pool itself is pure logic).

The fake keeps the set of databases a server would have, and lets a test hold a
clone at a gate or make clones, drops and renames fail. Tests wait on events and on
pool counts (bounded waits); none measures time.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from freshdb.errors import AcquireCancelledError, FreshDBError, PoolTimeoutError, ServerFullError
from freshdb.pool import Cancellation, ClonePool, Copy, CopyState

BOUND = 10.0  # seconds: only a hang ever reaches it


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Wait (bounded) until ``condition()`` holds."""
    deadline = time.monotonic() + BOUND
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.001)


class Attachment:
    """What a clone hands along with a copy (a connection opened ahead of time)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.discarded = threading.Event()


class FakeServer:
    """The databases a server would hold, and the faults a test asks for."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.databases: set[str] = set()
        self.attachments: dict[str, Attachment] = {}
        self.clone_gate = threading.Event()
        self.clone_gate.set()
        self.clone_started = threading.Event()
        self.clone_failures: collections.deque[Exception] = collections.deque()
        self.failing_clones: Exception | None = None  # every clone fails while set
        self.failing_drops: set[str] = set()
        self.failing_renames: set[str] = set()
        self.drops: list[str] = []
        self.renames: list[tuple[str, str]] = []
        self.opened = 0
        self.closed = 0

    def open_worker(self) -> FakeWorker:
        with self.lock:
            self.opened += 1
        return FakeWorker(self)

    def copies(self) -> set[str]:
        with self.lock:
            return set(self.databases)


class FakeWorker:
    """A CopyWorker on the fake server."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.is_closed = False

    def clone(self, name: str) -> Any:
        assert not self.is_closed
        self.server.clone_started.set()
        assert self.server.clone_gate.wait(BOUND), "a clone was held at the gate too long"
        with self.server.lock:
            if self.server.clone_failures:
                raise self.server.clone_failures.popleft()
            if self.server.failing_clones is not None:
                raise self.server.failing_clones
            self.server.databases.add(name)
            warm_connection = Attachment(name)
            self.server.attachments[name] = warm_connection
            return warm_connection

    def discard(self, warm_connection: Any) -> None:
        assert isinstance(warm_connection, Attachment)
        assert not warm_connection.discarded.is_set(), f"{warm_connection.name} discarded twice"
        warm_connection.discarded.set()

    def drop(self, name: str) -> None:
        assert not self.is_closed
        with self.server.lock:
            if name in self.server.failing_drops:
                raise RuntimeError(f"cannot drop {name}: the disk said no")
            self.server.databases.discard(name)  # DROP DATABASE IF EXISTS
            self.server.drops.append(name)

    def rename(self, old: str, new: str) -> None:
        assert not self.is_closed
        with self.server.lock:
            if old in self.server.failing_renames:
                raise RuntimeError(f"cannot rename {old}")
            self.server.databases.remove(old)
            self.server.databases.add(new)
            self.server.renames.append((old, new))

    def close(self) -> None:
        assert not self.is_closed
        self.is_closed = True
        with self.server.lock:
            self.server.closed += 1


def make_pool(server: FakeServer, size: int, cloners: int = 2) -> ClonePool:
    return ClonePool(
        open_worker=server.open_worker,
        copy_name=lambda seq: f"copy_{seq}",
        kept_name=lambda seq: f"kept_{seq}",
        size=size,
        acquire_timeout=BOUND,
        cloners=cloners,
    )


def assert_counts_add_up(stats: dict[str, Any]) -> None:
    parts = ("ready", "busy", "creating", "dropping", "keeping")
    assert sum(stats[part] for part in parts) == stats["total"], stats


class Caller(threading.Thread):
    """A thread acquiring one copy; keeps what it got, or what it raised."""

    def __init__(self, pool: ClonePool, cancel: Cancellation | None = None) -> None:
        super().__init__(daemon=True)
        self.pool = pool
        self.cancel = cancel
        self.copy: Copy | None = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.copy = self.pool.acquire(cancel=self.cancel)
        except BaseException as exc:
            self.error = exc

    def outcome(self) -> Copy | BaseException:
        self.join(BOUND)
        assert not self.is_alive(), "the caller is still waiting"
        result = self.copy if self.copy is not None else self.error
        assert result is not None
        return result


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def pools(server: FakeServer) -> Iterator[list[ClonePool]]:
    """Pools a test made; closed at the end, whatever the test did."""
    made: list[ClonePool] = []
    yield made
    server.clone_gate.set()
    for pool in made:
        pool.close(timeout=BOUND)


def started(pools: list[ClonePool], server: FakeServer, size: int, cloners: int = 2) -> ClonePool:
    pool = make_pool(server, size, cloners)
    pools.append(pool)
    pool.start()
    return pool


# -- the usual life -------------------------------------------------------------------
def test_keeps_size_copies_ready_and_a_released_copy_is_dropped(
    server: FakeServer, pools: list[ClonePool]
) -> None:
    pool = started(pools, server, size=2)
    wait_until(lambda: pool.stats()["ready"] == 2, "two copies are ready")
    copy = pool.acquire()
    assert copy.state is CopyState.IN_USE
    assert copy.name in server.copies()
    assert copy.kept_name == copy.name.replace("copy_", "kept_")
    wait_until(lambda: pool.stats()["ready"] == 2, "the pool refilled")
    assert pool.stats()["busy"] == 1

    pool.release(copy)
    wait_until(lambda: copy.state is CopyState.GONE, "the copy is dropped")
    assert copy.name not in server.copies()
    assert server.drops == [copy.name]
    # Nobody took the connection opened ahead of time: the dropper let go of it.
    assert server.attachments[copy.name].discarded.is_set()
    stats = pool.stats()
    assert (stats["busy"], stats["drops"], stats["acquired"], stats["waits"]) == (0, 1, 1, 0)
    assert_counts_add_up(stats)


def test_try_acquire_never_waits(server: FakeServer, pools: list[ClonePool]) -> None:
    server.clone_gate.clear()
    pool = started(pools, server, size=1)
    assert pool.try_acquire() is None
    server.clone_gate.set()
    wait_until(lambda: pool.stats()["ready"] == 1, "a copy is ready")
    copy = pool.try_acquire()
    assert copy is not None and copy.state is CopyState.IN_USE


def test_a_caller_waits_for_a_copy_when_the_pool_is_empty(
    server: FakeServer, pools: list[ClonePool]
) -> None:
    server.clone_gate.clear()
    pool = started(pools, server, size=0)  # copies are made only for callers waiting
    assert pool.stats()["total"] == 0
    caller = Caller(pool)
    wait_until(lambda: pool.stats()["waiting"] == 1, "the caller waits")
    server.clone_gate.set()
    got = caller.outcome()
    assert isinstance(got, Copy) and got.state is CopyState.IN_USE
    stats = pool.stats()
    assert (stats["waits"], stats["waiting"], stats["ready"], stats["busy"]) == (1, 0, 0, 1)


# -- giving back ----------------------------------------------------------------------
def test_releasing_twice_does_nothing_the_second_time(
    server: FakeServer, pools: list[ClonePool]
) -> None:
    pool = started(pools, server, size=1)
    copy = pool.acquire()
    pool.release(copy)
    pool.release(copy)  # while the first release is queued or under way
    wait_until(lambda: copy.state is CopyState.GONE, "the copy is dropped")
    pool.release(copy, keep=True)  # and after it is gone: not renamed back to life
    first = pool.acquire()
    pool.release(first)
    wait_until(lambda: first.state is CopyState.GONE, "the next copy is dropped")
    assert server.drops == [copy.name, first.name]
    assert server.renames == []
    stats = pool.stats()
    assert (stats["drops"], stats["kept"], stats["drop_failures"]) == (2, 0, 0)
    assert_counts_add_up(stats)


def test_a_kept_copy_is_renamed_not_dropped(server: FakeServer, pools: list[ClonePool]) -> None:
    pool = started(pools, server, size=1)
    copy = pool.acquire()
    pool.release(copy, keep=True)
    wait_until(lambda: copy.state is CopyState.GONE, "the copy is kept")
    assert server.renames == [(copy.name, copy.kept_name)]
    assert copy.kept_name in server.copies() and copy.name not in server.copies()
    assert server.drops == []
    stats = pool.stats()
    assert (stats["kept"], stats["keeping"], stats["drops"]) == (1, 0, 0)
    # Closing the pool drops its copies, never what was kept.
    pool.close(timeout=BOUND)
    assert server.copies() == {copy.kept_name}


def test_a_failed_drop_is_logged_and_counted_and_the_pool_goes_on(
    server: FakeServer, pools: list[ClonePool], caplog: pytest.LogCaptureFixture
) -> None:
    pool = started(pools, server, size=1, cloners=1)
    copy = pool.acquire()
    wait_until(lambda: pool.stats()["ready"] == 1, "the pool refilled")
    server.failing_drops.add(copy.name)
    opened = server.opened
    with caplog.at_level(logging.WARNING, logger="freshdb"):
        pool.release(copy)
        wait_until(lambda: copy.state is CopyState.GONE, "the pool gives the copy up")
    assert f"dropping copy {copy.name} failed (it will be reaped later)" in caplog.text
    assert "the disk said no" in caplog.text
    assert copy.name in server.copies()  # left for the reaper
    stats = pool.stats()
    assert (stats["drops"], stats["drop_failures"], stats["total"]) == (0, 1, 1)  # 1 ready
    assert_counts_add_up(stats)
    # The dropper's connection may be broken: it opens a new one, and drops go on.
    second = pool.acquire()
    pool.release(second)
    wait_until(lambda: second.state is CopyState.GONE, "the next copy is dropped")
    assert server.drops == [second.name]
    assert server.opened > opened
    assert pool.stats()["drops"] == 1


def test_a_failed_rename_leaves_the_copy_to_the_reaper(
    server: FakeServer, pools: list[ClonePool], caplog: pytest.LogCaptureFixture
) -> None:
    pool = started(pools, server, size=1)
    copy = pool.acquire()
    server.failing_renames.add(copy.name)
    with caplog.at_level(logging.WARNING, logger="freshdb"):
        pool.release(copy, keep=True)
        wait_until(lambda: copy.state is CopyState.GONE, "the pool gives the copy up")
    assert f"keeping copy {copy.name} failed" in caplog.text
    assert copy.name in server.copies()
    stats = pool.stats()
    assert (stats["kept"], stats["drop_failures"]) == (0, 1)


# -- failures while callers wait ------------------------------------------------------
def test_one_failed_clone_fails_none_of_the_callers_waiting(
    server: FakeServer, pools: list[ClonePool]
) -> None:
    server.clone_gate.clear()
    server.clone_failures.append(ServerFullError("too many connections for a moment"))
    pool = started(pools, server, size=0, cloners=1)
    callers = [Caller(pool) for _ in range(3)]
    wait_until(lambda: pool.stats()["waiting"] == 3, "three callers wait")
    server.clone_gate.set()  # the first clone fails; the cloner retries
    outcomes = [caller.outcome() for caller in callers]
    assert all(isinstance(outcome, Copy) for outcome in outcomes), outcomes
    assert len({outcome.name for outcome in outcomes if isinstance(outcome, Copy)}) == 3
    stats = pool.stats()
    assert (stats["clone_failures"], stats["clones"], stats["busy"]) == (1, 3, 3)
    assert stats["failure"] is None  # over
    # The copy that failed half-way is dropped (whatever of it exists).
    wait_until(lambda: pool.stats()["dropping"] == 0, "the failed copy is cleaned up")
    assert len(server.drops) == 1 and server.drops[0] not in server.copies()


def test_a_lasting_clone_failure_fails_the_callers_waiting_with_its_cause(
    server: FakeServer, pools: list[ClonePool]
) -> None:
    server.clone_gate.clear()
    cause = ServerFullError("no space left on device")
    server.failing_clones = cause
    pool = started(pools, server, size=0)
    callers = [Caller(pool) for _ in range(2)]
    wait_until(lambda: pool.stats()["waiting"] == 2, "two callers wait")
    server.clone_gate.set()
    for caller in callers:
        error = caller.outcome()
        # Still a ServerFullError, so callers can tell a full server from a bug.
        assert isinstance(error, ServerFullError), error
        assert str(error) == "cannot make a copy of the template: no space left on device"
        assert error.__cause__ is cause
    stats = pool.stats()
    assert stats["clone_failures"] >= ClonePool.failures_before_giving_up
    assert stats["failure"] == "no space left on device"
    assert (stats["waiting"], stats["busy"], stats["clones"]) == (0, 0, 0)

    # Once the cause is over, the cloner's retries succeed and callers get copies:
    # the failures before a caller came do not fail it.
    server.failing_clones = None
    copy = pool.acquire()
    assert copy.state is CopyState.IN_USE
    assert pool.stats()["failure"] is None


# -- timeouts, cancellation, closing --------------------------------------------------
def test_acquire_gives_up_after_its_timeout(server: FakeServer, pools: list[ClonePool]) -> None:
    server.clone_gate.clear()
    pool = started(pools, server, size=0)
    with pytest.raises(PoolTimeoutError) as error:
        pool.acquire(timeout=0.01)
    message = str(error.value)
    assert "no copy became ready within" in message
    assert "FRESHDB_ACQUIRE_TIMEOUT" in message
    stats = pool.stats()
    assert (stats["waits"], stats["waiting"], stats["busy"]) == (1, 0, 0)


def test_a_cancelled_wait_ends_at_once_and_its_copy_stays_in_the_pool(
    server: FakeServer, pools: list[ClonePool]
) -> None:
    server.clone_gate.clear()
    pool = started(pools, server, size=0, cloners=1)
    cancel = Cancellation()
    caller = Caller(pool, cancel)
    assert server.clone_started.wait(BOUND)  # a copy is being made for the caller
    assert pool.stats()["waiting"] == 1
    cancel.cancel()
    error = caller.outcome()  # while the clone is still held at the gate
    assert isinstance(error, AcquireCancelledError), error
    assert pool.stats()["waiting"] == 0
    # The copy made for it is not lost: it is ready for the next caller.
    server.clone_gate.set()
    wait_until(lambda: pool.stats()["ready"] == 1, "the copy made for it is ready")
    assert pool.acquire().state is CopyState.IN_USE


def test_a_cancellation_before_the_wait_is_seen(server: FakeServer, pools: list[ClonePool]) -> None:
    server.clone_gate.clear()
    pool = started(pools, server, size=0)
    cancel = Cancellation()
    cancel.cancel()
    with pytest.raises(AcquireCancelledError):
        pool.acquire(cancel=cancel)


def test_close_while_callers_wait_tells_them_at_once(
    server: FakeServer, pools: list[ClonePool]
) -> None:
    server.clone_gate.clear()
    pool = started(pools, server, size=0, cloners=1)
    callers = [Caller(pool) for _ in range(2)]
    wait_until(lambda: pool.stats()["waiting"] == 2, "two callers wait")
    assert server.clone_started.wait(BOUND)
    closer = threading.Thread(target=pool.close, kwargs={"timeout": BOUND}, daemon=True)
    closer.start()
    for caller in callers:  # answered while a clone is still held: close did not wait for it
        error = caller.outcome()
        assert isinstance(error, FreshDBError), error
        assert "the server was stopped" in str(error)
    assert closer.is_alive()  # close itself waits for the cloner
    server.clone_gate.set()
    closer.join(BOUND)
    assert not closer.is_alive()
    # The clone that finished during close was dropped, and nothing else is left.
    assert server.copies() == set()
    assert pool.stats()["total"] == 0
    assert server.opened == server.closed
    with pytest.raises(FreshDBError, match="the server was stopped"):
        pool.acquire()
    with pytest.raises(FreshDBError, match="the server was stopped"):
        pool.try_acquire()


def test_close_drops_every_copy_and_a_later_release_does_nothing(
    server: FakeServer, pools: list[ClonePool]
) -> None:
    pool = started(pools, server, size=2)
    held = pool.acquire()
    wait_until(lambda: pool.stats()["ready"] == 2, "the pool refilled")
    ready = server.copies() - {held.name}
    pool.close(timeout=BOUND)
    assert server.copies() == set()
    assert held.state is CopyState.GONE
    assert all(server.attachments[name].discarded.is_set() for name in ready)
    stats = pool.stats()
    assert (stats["total"], stats["drops"]) == (0, 3)
    pool.release(held)  # the test that held it finishes after the server stopped
    pool.release(held, keep=True)
    assert server.drops.count(held.name) == 1
    assert server.renames == []
    assert pool.stats()["total"] == 0
    assert server.opened == server.closed


def test_close_without_drop_gives_every_copy_up_at_once(
    server: FakeServer, pools: list[ClonePool]
) -> None:
    pool = started(pools, server, size=2)
    held = pool.acquire()
    released = pool.acquire()
    wait_until(lambda: pool.stats()["ready"] == 2, "the pool refilled")
    server.failing_drops.update(server.copies())  # the server is gone: nothing drops
    drops_before = pool.stats()["drops"] + pool.stats()["drop_failures"]
    pool.release(released)
    pool.close(timeout=BOUND, drop=False)
    stats = pool.stats()
    assert (stats["total"], stats["busy"], stats["ready"], stats["dropping"]) == (0, 0, 0, 0)
    assert held.state is CopyState.GONE and released.state is CopyState.GONE
    # Nothing was dropped: at most the released copy was tried before close began.
    assert stats["drops"] == 0
    assert stats["drop_failures"] - drops_before <= 1
    assert len(server.copies()) == 4
    assert all(server.attachments[name].discarded.is_set() for name in server.copies())
    pool.release(held)
    assert pool.stats()["total"] == 0


def test_a_clone_finishing_after_close_gave_up_on_it_is_not_lost_track_of(
    server: FakeServer, pools: list[ClonePool]
) -> None:
    server.clone_gate.clear()
    server.clone_started.clear()
    pool = started(pools, server, size=1, cloners=1)
    assert server.clone_started.wait(BOUND)
    pool.close(timeout=0.01)  # the cloner is held: close stops waiting for it
    assert pool.stats()["creating"] == 1
    server.clone_gate.set()
    wait_until(lambda: pool.stats()["total"] == 0, "the late copy is given up")
    # Its connection is let go of; the database itself is left to the session's
    # final sweep of its own copies (the dropper may be gone).
    (name,) = server.copies()
    assert server.attachments[name].discarded.is_set()
    wait_until(lambda: server.opened == server.closed, "the cloner closed its connection")


# -- stats ----------------------------------------------------------------------------
def test_the_counts_add_up_at_every_moment(server: FakeServer, pools: list[ClonePool]) -> None:
    pool = started(pools, server, size=2, cloners=3)
    done = threading.Event()
    seen = collections.Counter[str]()

    def watch() -> None:
        while not done.is_set():
            stats = pool.stats()
            parts = stats["ready"] + stats["busy"] + stats["creating"]
            parts += stats["dropping"] + stats["keeping"]
            seen["consistent" if parts == stats["total"] else "inconsistent"] += 1

    def use(keep: bool) -> None:
        for _ in range(25):
            copy = pool.acquire()
            pool.release(copy, keep=keep)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    users = [threading.Thread(target=use, args=(n == 0,), daemon=True) for n in range(4)]
    for user in users:
        user.start()
    for user in users:
        user.join(BOUND)
        assert not user.is_alive()
    wait_until(
        lambda: pool.stats()["total"] == pool.stats()["ready"] == 2,
        "every released copy is dropped or kept, and the pool refilled",
    )
    done.set()
    watcher.join(BOUND)
    assert seen["consistent"] > 0
    assert seen["inconsistent"] == 0
    final = pool.stats()
    assert final["acquired"] == 100
    assert (final["drops"], final["kept"], final["busy"]) == (75, 25, 0)
    assert final["clones"] == final["acquired"] + final["ready"]
    assert len(server.renames) == 25
