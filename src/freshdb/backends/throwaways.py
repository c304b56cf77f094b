"""Throwaway containers: removed when their process ends, however it ends.

This process's throwaway containers are removed at exit and on SIGTERM/SIGHUP;
those whose owner process died harder (kill -9) are *leaked*, and the next
throwaway start or ``freshdb prune`` removes them.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import logging
import os
import signal
import socket
import threading
from types import FrameType
from typing import Any

from docker.models.containers import Container

from freshdb import naming
from freshdb.backends.containers import remove_container

log = logging.getLogger("freshdb")


class ThrowawayRegistry:
    """Removes this process's throwaway containers at exit and on SIGTERM/SIGHUP."""

    def __init__(self) -> None:
        self._containers: dict[str, Container] = {}
        self._lock = threading.Lock()
        self._installed = False
        self._previous: dict[int, Any] = {}

    def remember(self, container: Container) -> None:
        """Remove ``container`` when this process ends, unless forgotten before."""
        with self._lock:
            self._containers[container.id or ""] = container
            if not self._installed:
                self._installed = True
                atexit.register(self.remove_all)
                self._install_signal_handlers()

    def forget(self, container_id: str) -> None:
        """Leave the container with this id alone at exit (it is removed already)."""
        with self._lock:
            self._containers.pop(container_id, None)

    def remove_all(self) -> None:
        """Remove every remembered container now (best effort)."""
        with self._lock:
            containers, self._containers = list(self._containers.values()), {}
        for container in containers:
            with contextlib.suppress(Exception):
                remove_container(container)

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(ValueError, OSError):
                self._previous[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.remove_all()
        previous = self._previous.get(signum, signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
            return
        if previous == signal.SIG_IGN:
            return
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


#: The throwaway containers this process started and has not removed yet.
THROWAWAYS = ThrowawayRegistry()


def is_leaked_throwaway(container: Container, max_age: dt.timedelta | None = None) -> bool:
    """A throwaway container whose owner process (on this host) is gone, or too old."""
    labels = container.labels or {}
    if labels.get(naming.LABEL_MODE) != "throwaway" or labels.get(naming.LABEL_MANAGED) != "true":
        return False
    if max_age is not None:
        try:
            created = dt.datetime.fromisoformat(labels.get(naming.LABEL_CREATED, ""))
            if dt.datetime.now(dt.UTC) - created > max_age:
                return True
        except ValueError:
            pass
    if labels.get(naming.LABEL_OWNER_HOST) != socket.gethostname():
        return False
    try:
        pid = int(labels.get(naming.LABEL_OWNER_PID, ""))
    except ValueError:
        return False
    return pid != os.getpid() and not _pid_alive(pid)


def remove_leaked_throwaways(containers: list[Container]) -> list[str]:
    """Remove the leaked throwaway containers among ``containers``; their names."""
    removed = []
    for container in containers:
        if is_leaked_throwaway(container):
            log.info("removing leaked throwaway container %s", container.name)
            remove_container(container)
            removed.append(str(container.name))
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = ["THROWAWAYS", "ThrowawayRegistry", "is_leaked_throwaway", "remove_leaked_throwaways"]
