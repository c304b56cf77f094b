"""``DatabaseServer``: a server, a template on it, and a pool of copies.

The flow of ``start()``: configuration → a backend starts or finds the server →
this session takes its owner lease → leftovers of dead sessions are reaped → the
template is found or built → stale templates are pruned → the pool starts cloning.

The modules: :mod:`~freshdb.server.database_server` (the session: start, stop,
whether the server is gone), :mod:`~freshdb.server.hand_out` (a pool's copy made
the ``Database`` a test gets), :mod:`~freshdb.server.preparation` (reaping, the
template and pruning at start), :mod:`~freshdb.server.copy_worker` (the pool's SQL
work on the server), :mod:`~freshdb.server.snapshots` (the snapshots a session
finds or builds), :mod:`~freshdb.server.logins` (a database's address with any
driver) and :mod:`~freshdb.server.liveness` (telling a server that is gone from one
that is paused or cut off, and saying so).
"""

from freshdb.server.database_server import DatabaseServer

__all__ = ["DatabaseServer"]
