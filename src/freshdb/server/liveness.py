"""Telling a server that is gone from one that is paused, cut off or merely slow.

Asked after something failed (or while ``stop()`` waits on the server): the answer
picks the error a test sees, which says what happened and what to do.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator

from freshdb.backends import RunningServer, ServerBackend
from freshdb.dialects.base import Dialect
from freshdb.errors import (
    DockerUnavailableError,
    FreshDBError,
    ServerFullError,
    ServerUnavailableError,
)

#: How long the server may take to accept a new connection and answer ``SELECT 1``
#: before it counts as not answering (paused, or the network to it cut).
ANSWER_TIMEOUT = 5.0
#: How long ``stop()`` lets its work on the server run before asking, every so
#: often, whether the server still answers; if not, that work is abandoned.
STOP_CHECK_INTERVAL = 5.0


@dataclasses.dataclass(frozen=True)
class Liveness:
    """What can be told about a session's server: its dialect, how it runs, its backend."""

    dialect: Dialect
    running: RunningServer | None
    backend: ServerBackend | None

    def unanswered_error(self) -> ServerUnavailableError | None:
        """The error to give if the server does not answer a new connection in time."""
        reason = self.why_unanswered()
        if reason is None:
            return None
        return ServerUnavailableError(
            f"the server {self.where()} does not answer: {reason} (this session goes on "
            "once it answers again)"
        )

    def where(self) -> str:
        """The server's container name, or its host and port."""
        running = self.running
        if running is None:
            return "(not started)"
        return running.container_name or f"{running.address.host}:{running.address.port}"

    def why_unanswered(self) -> str | None:
        """Why the server does not answer a new connection in time, or None if it does."""
        running = self.running
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
        note = self.pause_note()
        if note is not None:
            return f"{note} to resume it"
        return (
            f"a new connection got no answer within {ANSWER_TIMEOUT:.0f} s ({failure}) — "
            "is it paused or overloaded, or is the network to it cut?"
        )

    def pause_note(self) -> str | None:
        """The backend's advice if the server is paused (``None``: not, or cannot tell)."""
        backend = self.backend
        try:
            return backend.pause_note() if backend is not None else None
        except Exception:  # only advice
            return None

    def backend_says_alive(self) -> bool:
        """Whether the backend says the server is still there (``True`` if it cannot tell)."""
        backend = self.backend
        try:
            return backend is None or backend.check_alive()
        except FreshDBError:
            return True  # nobody can tell (Docker does not answer): not known to be gone

    def gone_error(self, pool_failure: BaseException | None) -> FreshDBError:
        """The error that ends a session whose connection to the server was lost.

        ``pool_failure``: why the pool's last clone failed, if it did.
        """
        running, backend = self.running, self.backend
        if running is None:
            return ServerUnavailableError("the server is gone — start a new session")
        where = running.container_name or f"{running.address.host}:{running.address.port}"
        again = "leave `with DatabaseServer(...)` (or call stop()) and start a new session"
        if running.mode != "external":
            again += ", which starts the server again and rebuilds the template"
        full = pool_failure
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
        unanswered = self.why_unanswered()
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


@contextlib.contextmanager
def abandoned_if_unanswered(
    why_unanswered: Callable[[], str | None], abandon: Callable[[str], None]
) -> Iterator[threading.Event]:
    """Run a block of work on a server; abandon it if the server stops answering.

    Slow work is fine as long as the server answers a new connection: every
    ``STOP_CHECK_INTERVAL`` seconds a watcher asks ``why_unanswered``; once there is
    a reason (paused, network cut), ``abandon(reason)`` must make whatever the block
    waits on fail at once, and the event yielded is set. Once the block ends, nothing
    is abandoned any more.
    """
    finished = threading.Event()
    abandoned = threading.Event()
    lock = threading.Lock()

    def watch() -> None:
        while not finished.wait(STOP_CHECK_INTERVAL):
            reason = why_unanswered()
            if reason is None:
                continue
            with lock:
                if finished.is_set():
                    return
                abandoned.set()
                abandon(reason)
            return

    watcher = threading.Thread(target=watch, name="freshdb-stop-watch", daemon=True)
    watcher.start()
    try:
        yield abandoned
    finally:
        with lock:  # after this the watcher touches no connection
            finished.set()
