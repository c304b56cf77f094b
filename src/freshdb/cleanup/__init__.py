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

Callers: :class:`freshdb.DatabaseServer` (reap and prune at start, its own copies at
stop; the pytest plugin and the Django runner get them through it) and the CLI.
Two removals belong to starting a container and stay in the Docker backend, which
runs them under its start lock: a throwaway start removes leaked throwaway
containers, and a sticky start retires idle containers it supersedes.

The submodules are imported where they are used: ``leftovers`` and ``retention``
need no Docker client, so a session on an external server never imports one.
"""
