"""Cleanup: the one home of what freshdb removes, when, and what it reports.

Nothing freshdb makes is removed while anyone uses it; everything it leaves behind
is found again by its name and labels and removed once nobody does. The policy is
here, apart from the primitives it uses (Docker calls in :mod:`freshdb.backends`,
SQL in :mod:`freshdb.dialects`):

- :mod:`~freshdb.cleanup.leftovers`: copies and half-built templates whose owner
  session is gone (reaped by every session's start, and by ``freshdb prune``), a
  session's own copies at its stop, kept copies past an age limit.
- :mod:`~freshdb.cleanup.retention`: which templates a server keeps, and pruning
  the rest (at every session's start, and by ``freshdb prune``).
- :mod:`~freshdb.cleanup.inventory`: the servers, templates and copies on this
  machine, and which of them the rules above would remove (``freshdb status``).
- :mod:`~freshdb.cleanup.removal`: ``freshdb prune`` (leaked throwaway containers,
  idle sticky containers no longer wanted, and the above on every server) and
  ``freshdb down``.

- :mod:`~freshdb.cleanup.retirement`: which sticky containers are no longer wanted
  (superseded or unused) and retiring them once idle (by a later start, ``freshdb
  prune`` and ``freshdb down``).

Callers: :class:`freshdb.DatabaseServer` (reap and prune at start, its own copies at
stop; the pytest plugin and the Django runner get them through it) and the CLI.
Two removals happen while a container starts, under the Docker backend's start
lock: a throwaway start removes leaked throwaway containers (a Docker fact: the
owner process is gone), and a sticky start retires idle containers it supersedes.
The latter is this package's policy, handed to the backend as a callable
(:func:`superseded_retirer`), because the start must retire before it publishes a
fixed ``port`` such a container may hold, and backends never import cleanup.

The submodules are imported where they are used: ``leftovers`` and ``retention``
need no Docker client, so a session on an external server never imports one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from freshdb.config import Settings

if TYPE_CHECKING:
    from docker.models.images import Image

    import docker
    from freshdb.backends.docker import DockerBackend, SupersededRetirer


def superseded_retirer(settings: Settings) -> SupersededRetirer | None:
    """What a sticky start of these settings calls to retire the idle containers it
    supersedes (:func:`~freshdb.cleanup.retirement.retire_superseded`); ``None`` for
    other modes. Imported only when called: it needs the Docker SDK."""
    if settings.mode != "sticky":
        return None
    return _retire_superseded


def _retire_superseded(
    backend: DockerBackend, client: docker.DockerClient, image: Image, keep: str
) -> None:
    # Imported when called: a start that finds its server without Docker never is.
    from freshdb.cleanup.retirement import retire_superseded

    retire_superseded(backend, client, image, keep)
