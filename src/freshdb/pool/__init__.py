"""The pool of ready copies, and the one place where a copy's state lives.

A copy moves through explicit states, each move made by :meth:`ClonePool._move`
under the pool's lock (:data:`~freshdb.pool.states.MOVES` lists every move allowed):

    CREATING ──▶ READY ──▶ IN_USE ──▶ DIRTY ──▶ DROPPING ──▶ GONE
        │                     └─────▶ TO_KEEP ▶ RENAMING ──▶ GONE
        └──▶ DIRTY  (the clone failed, or the pool closed meanwhile)

GONE means the pool no longer owns the copy: dropped, kept under its kept name, or
(when dropping failed or the server is gone) left to be reaped once this session's
owner lease is gone. Background threads do the slow work, each on its own server
connection: the *cloners* keep ``size`` copies READY (more while callers wait), the
*dropper* drops or renames released copies. ``acquire()`` only pops a READY copy, so a
caller never waits for ``CREATE DATABASE`` or ``DROP DATABASE`` unless the pool ran
dry. :class:`ClonePool` knows nothing of engines: a :class:`CopyWorker` does the SQL.

Releasing a copy that is no longer in use (released before, or taken back when the
pool closed) does nothing: giving back twice is harmless, as closing a file twice is.

The modules: :mod:`~freshdb.pool.states` (a copy, its states and the moves allowed),
:mod:`~freshdb.pool.clone_pool` (the pool and its threads),
:mod:`~freshdb.pool.cancellation` (calling off a wait). The :class:`CopyWorker` that
does the work with a dialect's SQL is :class:`freshdb.server.copy_worker.SqlCopyWorker`.
"""

from freshdb.pool.cancellation import Cancellation
from freshdb.pool.clone_pool import ClonePool, copy_failed
from freshdb.pool.states import Copy, CopyState, CopyWorker

__all__ = ["Cancellation", "ClonePool", "Copy", "CopyState", "CopyWorker", "copy_failed"]
