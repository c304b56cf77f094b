"""The pool once its server is gone: cloners stop retrying, callers get the reason.

A fake worker stands in for the SQL side: what is tested is the pool's own state
machine (which thread retries, who is told what), not any database.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from freshdb.errors import FreshDBError, ServerUnavailableError
from freshdb.pool import ClonePool

BOUND = 30.0  # a wait longer than this is a hang


class UnreachableWorker:
    """A worker whose every clone fails as if the server did not answer."""

    def __init__(self, attempts: list[str]) -> None:
        self.attempts = attempts

    def clone(self, name: str) -> Any:
        self.attempts.append(name)
        raise ServerUnavailableError("cannot reach the server (connection refused)")

    def discard(self, warm_connection: Any) -> None:
        pass

    def drop(self, name: str) -> None:
        raise ServerUnavailableError("cannot reach the server (connection refused)")

    def rename(self, old: str, new: str) -> None:
        raise ServerUnavailableError("cannot reach the server (connection refused)")

    def close(self) -> None:
        pass


def make_pool(attempts: list[str], server_gone: Any, size: int = 2, cloners: int = 2) -> ClonePool:
    return ClonePool(
        open_worker=lambda: UnreachableWorker(attempts),
        copy_name=lambda seq: f"copy_{seq}",
        kept_name=lambda seq: f"kept_{seq}",
        size=size,
        acquire_timeout=BOUND,
        cloners=cloners,
        server_gone=server_gone,
    )


def test_once_the_server_is_known_gone_cloners_stop_and_callers_get_the_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="freshdb")
    attempts: list[str] = []
    asked = threading.Event()
    gone = ServerUnavailableError("the server container x is gone — start a new session")

    def server_gone(failure: BaseException) -> FreshDBError | None:
        assert isinstance(failure, ServerUnavailableError)
        asked.set()
        return gone

    pool = make_pool(attempts, server_gone)
    pool.start()
    try:
        with pytest.raises(ServerUnavailableError, match="is gone — start a new session"):
            pool.acquire()
        assert asked.is_set()
        # No cloner is left running: both threads ended without being closed.
        for thread in pool._cloner_threads:
            thread.join(BOUND)
            assert not thread.is_alive()
        tried = len(attempts)
        assert tried <= 2  # at most one attempt per cloner, then they stopped
        # Later callers get the same reason at once, blocking or not.
        with pytest.raises(ServerUnavailableError, match="is gone"):
            pool.acquire(timeout=BOUND)
        with pytest.raises(ServerUnavailableError, match="is gone"):
            pool.try_acquire()
        assert len(attempts) == tried
    finally:
        pool.close(timeout=BOUND)
    assert pool.stats()["failure"] is not None


def test_a_server_down_for_a_while_is_retried_quietly_until_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="freshdb")
    attempts: list[str] = []
    enough = threading.Event()

    def not_gone(failure: BaseException) -> FreshDBError | None:
        if len(attempts) >= 4:
            enough.set()
        return None  # paused, or restarting: not known to be gone

    pool = make_pool(attempts, not_gone, size=1, cloners=1)
    pool.start()
    try:
        assert enough.wait(BOUND), attempts  # it keeps retrying (with a backoff)
    finally:
        pool.close(timeout=BOUND)
    failures = [r for r in caplog.records if r.getMessage().startswith("making copy")]
    assert len(failures) >= 4
    # The first failure of the run is a warning, the retries only debug lines.
    assert [r.levelno for r in failures[:1]] == [logging.WARNING]
    assert {r.levelno for r in failures[1:]} == {logging.DEBUG}
