"""Where template and snapshot builds show what they do: a line at a time, throttled.

A build says when it starts, how far its migrations are (step ``n`` of ``total``, at
most a line a second) and when it is done or reused; whoever watches (pytest's
terminal, ``freshdb warm``, Django's runner) decides where those lines go with
:func:`build_progress_shown`. Without a watcher they are only logged.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator

log = logging.getLogger("freshdb")

#: Where build progress is shown (a line at a time), innermost last; empty: only logged.
_PROGRESS_WRITERS: list[Callable[[str], None]] = []
_PROGRESS_WRITERS_LOCK = threading.Lock()
#: Progress lines are at least this far apart (the first and the last always show).
PROGRESS_INTERVAL_SECONDS = 1.0


@contextlib.contextmanager
def build_progress_shown(write: Callable[[str], None]) -> Iterator[None]:
    """Show template builds (and reuses) of this block through ``write``, one line each.

    Used where someone watches: pytest's terminal, ``freshdb warm``, Django's runner.
    """
    with _PROGRESS_WRITERS_LOCK:
        _PROGRESS_WRITERS.append(write)
    try:
        yield
    finally:
        with _PROGRESS_WRITERS_LOCK:
            _PROGRESS_WRITERS.remove(write)


def show(line: str) -> None:
    """Show one line of a build through the innermost :func:`build_progress_shown`
    writer, or log it if nobody watches."""
    with _PROGRESS_WRITERS_LOCK:
        write = _PROGRESS_WRITERS[-1] if _PROGRESS_WRITERS else None
    if write is None:
        log.info("%s", line.removeprefix("freshdb: "))
        return
    log.debug("%s", line)  # shown already: once is enough where the log is shown too
    try:
        write(line)
    except Exception as exc:  # a closed terminal never fails a build
        log.debug("showing build progress failed: %s", exc)


class BuildProgress:
    """Throttled lines about one template build: step ``n`` of ``total`` and time so far.

    Called with each step as it starts; shows the first step, then at most one line
    per ``interval`` seconds (the step starting then), so a long history shows
    where it is without a line per migration in a CI log.
    """

    def __init__(
        self,
        template: str,
        write: Callable[[str], None],
        *,
        interval: float = PROGRESS_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        noun: str = "template",
    ) -> None:
        self.template = template
        #: What is built: "template", or "snapshot" for a derived template.
        self.noun = noun
        self.write = write
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self._shown_at: float | None = None

    def __call__(self, step: int, total: int, name: str) -> None:
        now = self.clock()
        if self._shown_at is not None and now - self._shown_at < self.interval:
            return
        self._shown_at = now
        self.write(
            f"freshdb: building {self.noun} {self.template}: {step}/{total} {name} "
            f"({now - self.started:.1f} s)"
        )
