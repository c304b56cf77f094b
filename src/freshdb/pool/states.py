"""A copy of the template, and the states it moves through (see :mod:`freshdb.pool`)."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Protocol


class CopyState(enum.Enum):
    """Where a copy is in its life."""

    CREATING = "creating"  # a cloner is making it
    READY = "ready"  # made, waiting in the pool for a caller
    IN_USE = "in use"  # handed out, until released
    DIRTY = "dirty"  # given back (or broken): waits for the dropper to drop it
    TO_KEEP = "to keep"  # given back to be kept: waits for the dropper to rename it
    DROPPING = "dropping"  # the dropper is dropping it
    RENAMING = "renaming"  # the dropper is renaming it to its kept name
    GONE = "gone"  # no longer the pool's: dropped, kept, or left to the reaper


#: Every move a copy may make: ``MOVES[from]`` holds the states it may go to.
MOVES: dict[CopyState, frozenset[CopyState]] = {
    CopyState.CREATING: frozenset({CopyState.READY, CopyState.DIRTY, CopyState.GONE}),
    CopyState.READY: frozenset({CopyState.IN_USE, CopyState.DIRTY, CopyState.GONE}),
    CopyState.IN_USE: frozenset({CopyState.DIRTY, CopyState.TO_KEEP, CopyState.GONE}),
    CopyState.DIRTY: frozenset({CopyState.DROPPING, CopyState.GONE}),
    CopyState.TO_KEEP: frozenset({CopyState.RENAMING, CopyState.GONE}),
    CopyState.DROPPING: frozenset({CopyState.GONE}),
    CopyState.RENAMING: frozenset({CopyState.GONE}),
    CopyState.GONE: frozenset(),
}


@dataclasses.dataclass(eq=False)
class Copy:
    """One copy of the template, owned by this pool."""

    name: str
    #: The name the copy is renamed to if its user keeps it (known from the start,
    #: so a test's report can name it before the rename happens).
    kept_name: str
    state: CopyState = CopyState.CREATING
    #: What the worker made along with the copy (an open connection to it), taken by
    #: whoever acquires the copy; discarded by the dropper if nobody did.
    warm_connection: Any = None
    #: The worker that made the warm_connection, and knows how to let go of it.
    made_by: CopyWorker | None = None


class CopyWorker(Protocol):
    """The SQL side of the pool's background work, on one server connection."""

    def clone(self, name: str) -> Any:
        """Create database ``name`` as a copy of the template; return a warm connection
        (e.g. a connection opened to it ahead of its user) or ``None``."""
        ...

    def discard(self, warm_connection: Any) -> None:
        """Let go of a warm connection nobody took (even after :meth:`close`)."""
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
