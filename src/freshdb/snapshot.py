"""Snapshots: a seeded state cached like the schema, with a pool of copies of its own.

A :class:`Snapshot` is a *derived template*: a clone of its parent template (the
session's template, or another snapshot) on which a seed ran once, completed
exactly like a template (see :meth:`freshdb.template.TemplateBuilder.ensure_derived`)
and named by its fingerprint, which chains the parent's fingerprint with the seed's
and a key. So it is built once per server under the build lock, reused by later
sessions and processes without running the seed, and reaped and retained like a
template; its copies come from a pool of its own.

``db.snapshot(key)`` makes one of a handed-out copy's committed state instead (no
seed: the key names it). A seed may change the schema too (add a table, an index):
the snapshot is whatever the seed leaves.

A session keeps its snapshots in :mod:`freshdb.server.snapshots`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Protocol

from freshdb.migrators import Migrator, describe, digest

if TYPE_CHECKING:
    from freshdb.async_database import AsyncDatabaseContext
    from freshdb.database import Database
    from freshdb.pool import ClonePool
    from freshdb.template import Template

#: The ``kind`` in a derived template's metadata (a base template has none).
SNAPSHOT_KIND = "snapshot"


def snapshot_fingerprint(parent_fingerprint: str, seed_fingerprint: str, key: str | None) -> str:
    """The fingerprint of a seeded snapshot: its parent's, its seed's, and ``key``."""
    keyed = () if key is None else (key,)
    return digest("snapshot", parent_fingerprint, seed_fingerprint, *keyed)


def copy_snapshot_fingerprint(parent_fingerprint: str, key: str) -> str:
    """The fingerprint of a snapshot of a copy's state (``db.snapshot(key)``): the
    copy's template and the key, since the state itself cannot be known beforehand."""
    return digest("snapshot-of-copy", parent_fingerprint, key)


def snapshot_project(parent_project: str, what: str, key: str | None) -> str:
    """The project a snapshot records its uses under: its parent's, and its seed and key.

    So a snapshot of a new template (a changed schema) supersedes the one of the old
    template, while snapshots with other seeds or keys never supersede each other.
    """
    keyed = "" if key is None else f" [{key}]"
    return f"{parent_project} >> {what}{keyed}"


@dataclasses.dataclass(frozen=True)
class Derivation:
    """What a derived template is made from: a clone of ``source``, then ``seed``."""

    #: The parent template's name and fingerprint.
    parent: str
    parent_fingerprint: str
    #: The database cloned: the parent template, or a copy of it (``db.snapshot``).
    source: str
    #: What runs on the clone; ``None``: the source's state is the snapshot.
    seed: Migrator | None
    key: str | None
    #: The project its uses are recorded under (see :func:`snapshot_project`).
    project: str

    @property
    def fingerprint(self) -> str:
        """The fingerprint that names the derived template."""
        if self.seed is None:
            return copy_snapshot_fingerprint(self.parent_fingerprint, self.key or "")
        return snapshot_fingerprint(self.parent_fingerprint, self.seed.fingerprint(), self.key)

    @property
    def description(self) -> str:
        """The seed, in words (for progress lines, errors and the metadata)."""
        if self.seed is None:
            return f"db.snapshot({self.key!r})"
        return describe(self.seed)

    def metadata(self) -> dict[str, Any]:
        """What the derived template's metadata says about where it comes from."""
        return {
            "kind": SNAPSHOT_KIND,
            "parent": self.parent,
            "parent_fingerprint": self.parent_fingerprint,
            "seed": self.description,
            "key": self.key,
        }


class SnapshotSession(Protocol):
    """What a snapshot needs of the session that made it (see :mod:`freshdb.server.snapshots`)."""

    def hand_out(self, pool: ClonePool, template: Template, timeout: float | None) -> Database:
        """A fresh copy from ``pool`` (copies of ``template``)."""
        ...

    def hand_out_async(
        self, pool: ClonePool, template: Template, timeout: float | None
    ) -> AsyncDatabaseContext:
        """``async with``: a fresh copy from ``pool``."""
        ...

    def snapshot(
        self, parent: Template, seed: Any, *, key: str | None, pool_size: int | None
    ) -> Snapshot:
        """The snapshot of ``seed`` on ``parent``, built now if there is none."""
        ...


class Snapshot:
    """A seeded state on the server, and a pool of fresh copies of it.

    >>> users = server.snapshot(seed_users)  # doctest: +SKIP
    >>> with users.database() as db:  # doctest: +SKIP
    ...     db.engine()

    Made by :meth:`DatabaseServer.snapshot() <freshdb.DatabaseServer.snapshot>`,
    :meth:`Snapshot.snapshot` (a layer on top) or :meth:`Database.snapshot()
    <freshdb.Database.snapshot>`; one object per seed per session, whose pool the
    session closes when it stops.
    """

    def __init__(
        self, template: Template, parent: str, pool: ClonePool, session: SnapshotSession
    ) -> None:
        self._template = template
        self._pool = pool
        self._session = session
        #: The derived template's database name.
        self.name = template.name
        #: The hex digest naming it: the parent's fingerprint, the seed's, the key.
        self.fingerprint = template.fingerprint
        #: The parent template's name (the session's template, or another snapshot).
        self.parent = parent
        #: Whether it was found complete on the server (the seed did not run).
        self.reused = template.reused
        #: How long building it took (0 when reused).
        self.build_seconds = template.build_seconds

    def __repr__(self) -> str:
        return f"<Snapshot {self.name} of {self.parent}{' reused' if self.reused else ''}>"

    def database(self, timeout: float | None = None) -> Database:
        """A fresh copy of the snapshot (waits only if its pool is empty)."""
        return self._session.hand_out(self._pool, self._template, timeout)

    def adatabase(self, timeout: float | None = None) -> AsyncDatabaseContext:
        """``async with snapshot.adatabase() as db``: a fresh copy for async code."""
        return self._session.hand_out_async(self._pool, self._template, timeout)

    def snapshot(
        self, seed: Any, *, key: str | None = None, pool_size: int | None = None
    ) -> Snapshot:
        """A layer: ``seed`` run once on a copy of this snapshot, cached the same way."""
        return self._session.snapshot(self._template, seed, key=key, pool_size=pool_size)

    def stats(self) -> dict[str, Any]:
        """Its pool's counts (ready, busy, clones, ...) and where it comes from."""
        return {
            "name": self.name,
            "parent": self.parent,
            "reused": self.reused,
            "build_seconds": round(self.build_seconds, 3),
            **self._pool.stats(),
        }
