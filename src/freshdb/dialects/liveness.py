"""Looking at an admin connection's socket: has its server gone, and cutting it short.

The socket-level half of :meth:`Dialect.connection_dropped`, :meth:`Dialect.abort`
and :meth:`Dialect.abort_after`; the dialects know how to find a connection's socket.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
from collections.abc import Callable, Iterator


def socket_readable(fileno: int) -> bool:
    """Whether a socket has something to read (or hung up), without waiting.

    ``poll`` works for any descriptor number; ``select.select`` fails for those of
    1024 and above, which a process with many open files (a big test suite) gets.
    """
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fileno, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    # Windows has no poll, and its select has no limit on descriptor numbers.
    readable, _, _ = select.select([fileno], [], [], 0)
    return bool(readable)


def shut_down(fileno: int) -> None:
    """Shut a socket down for reading and writing, leaving its descriptor open.

    A thread blocked on it gets an error at once, as if the server had hung up; the
    descriptor's owner still closes it as usual.
    """
    # A duplicate descriptor shares the socket: shutting it down shuts down the
    # owner's, and closing it leaves the owner's descriptor be.
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fileno)) as sock:
        sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def run_if_still_inside(seconds: float, action: Callable[[], None]) -> Iterator[None]:
    """Run ``action`` (from a timer thread) if the block has not ended after ``seconds``.

    Once the block has ended, ``action`` can no longer start: it is never run on
    something the block's code has since closed.
    """
    lock = threading.Lock()
    running = True

    def expire() -> None:
        with lock:
            if running:
                action()

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with lock:
            running = False
        timer.cancel()
