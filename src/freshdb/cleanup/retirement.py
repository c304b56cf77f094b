"""Retiring sticky containers nobody will ask for again, only once they are idle.

A container nobody will ask for again is *superseded*: its image name now resolves
to another image (a pull or a rebuild), or an older freshdb named it. One whose
shape no start on this machine asked for in :data:`STICKY_UNUSED_AFTER` is
*unused*. Both are retired, only when idle (no other client connection, hence no
owner lease): superseded ones by a later start (best effort, never blocking it),
both by ``freshdb prune``. ``freshdb down`` waits a little for a busy container's
sessions to end, then refuses unless forced.

This is policy, so it lives in :mod:`freshdb.cleanup`; the Docker calls it makes
are :class:`~freshdb.backends.docker.DockerBackend`'s (its client, the start lock,
the record of starts). A sticky start retires what it supersedes through
:func:`retire_superseded`, which the start's caller hands to the backend (see
:func:`freshdb.backends.backend_for`): the start must do it before it publishes a
fixed ``port`` an idle superseded container may hold, and backends never import
cleanup.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

import docker.errors
import filelock
from docker.models.containers import Container
from docker.models.images import Image
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_result,
    stop_after_delay,
    wait_fixed,
)

import docker
from freshdb import naming
from freshdb.backends.containers import remove_container
from freshdb.backends.docker import DockerBackend
from freshdb.dialects import dialect_for
from freshdb.dialects.base import ServerUse
from freshdb.errors import one_line

log = logging.getLogger("freshdb")

#: A sticky container whose shape no start on this machine asked for in this long is
#: no longer wanted: ``freshdb prune`` retires it once idle (``--max-age`` overrides).
STICKY_UNUSED_AFTER = dt.timedelta(days=7)
#: A sticky container started this recently is never retired: the session that
#: started it may not have connected and taken its owner lease yet.
STICKY_START_GRACE = dt.timedelta(minutes=5)
#: How long ``freshdb down`` waits for a busy server's sessions to end by default.
DOWN_WAIT_SECONDS = 10.0


@dataclasses.dataclass(frozen=True)
class Retirement:
    """What became of a sticky container freshdb tried to retire."""

    name: str
    removed: bool
    #: Who used it when last asked (``None``: not asked, or it did not answer).
    use: ServerUse | None
    #: Why it was (or was not) removed.
    why: str


def retirement_reason(
    backend: DockerBackend,
    container: Container,
    unused_after: dt.timedelta | None = STICKY_UNUSED_AFTER,
) -> str | None:
    """Why a sticky container is no longer wanted (``None``: it may be).

    Superseded: no start will ask for it again (its image name now names another
    image, or an older freshdb named it). Unused: no start on this machine asked
    for it in ``unused_after`` (``None``: do not judge by age).
    """
    labels = container.labels or {}
    if labels.get(naming.LABEL_MODE) != "sticky" or labels.get(naming.LABEL_MANAGED) != "true":
        return None
    name = str(container.name)
    if naming.sticky_shape_hash(name) != labels.get(naming.LABEL_SETTINGS_HASH):
        return "superseded: named by an older freshdb"
    attrs = container.attrs or {}
    image_name = labels.get(naming.LABEL_IMAGE) or str(
        (attrs.get("Config") or {}).get("Image") or ""
    )
    running_id = attrs.get("Image") or attrs.get("ImageID")
    try:
        current_id = backend.client().images.get(image_name).id if image_name else None
    except docker.errors.ImageNotFound:
        current_id = None
    if current_id != running_id:
        now_names = "names another image" if current_id else "is no longer present"
        return f"superseded: {image_name or 'its image'} {now_names}"
    if unused_after is not None:
        last = backend.last_started(container)
        if last is not None and dt.datetime.now(dt.UTC) - last > unused_after:
            return f"unused: no start asked for it in {_age(dt.datetime.now(dt.UTC) - last)}"
    return None


def server_use(backend: DockerBackend, container: Container) -> ServerUse | None:
    """Who uses the server in a running container (``None``: it does not answer, so
    nobody can tell)."""
    engine = (container.labels or {}).get(naming.LABEL_ENGINE) or backend.settings.engine
    try:
        dialect = dialect_for(engine)
        address = backend.address_of(container, dialect)
        conn = dialect.connect(address, timeout=5.0)
        try:
            return dialect.server_use(conn)
        finally:
            conn.close()
    except Exception as exc:  # not answering: the caller must assume it is busy
        log.debug("cannot ask %s who uses it: %s", container.name, one_line(exc))
        return None


def retire(
    backend: DockerBackend,
    container: Container,
    *,
    force: bool = False,
    wait: float = 0.0,
    grace: dt.timedelta | None = None,
    dry_run: bool = False,
) -> Retirement:
    """Remove a sticky container if nobody uses it (or ``force``).

    Waits up to ``wait`` seconds for its users to leave; never removes one started
    within ``grace``. Done under the lock starts take, so a start of the same
    container on this machine is either seen (and the container kept) or waits.
    """
    name = str(container.name)
    lock = filelock.FileLock(str(backend.lock_path(name)), timeout=max(wait, 0.0))
    try:
        lock.acquire()
    except filelock.Timeout:
        return Retirement(name, False, None, "another freshdb process is starting it")
    try:
        try:
            container.reload()
        except docker.errors.NotFound:
            return Retirement(name, False, None, "it is gone already")
        if grace is not None and not force:
            last = backend.last_started(container)
            if last is not None and dt.datetime.now(dt.UTC) - last < grace:
                return Retirement(name, False, None, "a start asked for it moments ago")
        use: ServerUse | None = None
        if not force:
            try:
                use = _wait_until_unused(backend, container, wait)
            except RetryError as still_used:
                use = still_used.last_attempt.result()
                why = (
                    f"in use ({use.describe()})"
                    if use is not None
                    else f"it is {container.status} and does not answer, so who uses it "
                    "cannot be told"
                )
                return Retirement(name, False, use, why)
        if not dry_run:
            log.debug("removing sticky server %s", name)
            remove_container(container)
        return Retirement(name, True, use, "idle" if not force else "forced")
    finally:
        lock.release()


def _wait_until_unused(
    backend: DockerBackend, container: Container, wait: float
) -> ServerUse | None:
    """Ask who uses the container until nobody does (or it stops), for ``wait`` seconds.

    Returns who used it when last asked (``None``: it is not running); raises
    :class:`tenacity.RetryError` if it was still used (or did not answer) at the end.
    """

    def ask() -> ServerUse | None:
        return server_use(backend, container) if container.status == "running" else None

    def still_used(use: ServerUse | None) -> bool:
        active = container.status in ("running", "paused", "restarting")
        return active and not (use is not None and use.idle)

    def look_again(state: RetryCallState) -> None:
        if state.attempt_number > 1:  # its status may have changed during the pause
            container.reload()

    retrying = Retrying(
        stop=stop_after_delay(wait),
        wait=wait_fixed(0.2),
        retry=retry_if_result(still_used),
        before=look_again,
    )
    return retrying(ask)


def retire_superseded(
    backend: DockerBackend, client: docker.DockerClient, image: Image, keep: str
) -> None:
    """Best effort, at start: remove idle containers the one named ``keep`` supersedes."""
    settings = backend.settings
    try:
        candidates = [
            c
            for c in client.containers.list(
                all=True,
                sparse=True,
                filters={
                    "label": [
                        f"{naming.LABEL_MANAGED}=true",
                        f"{naming.LABEL_PREFIX_NAME}={settings.prefix}",
                        f"{naming.LABEL_ENGINE}={settings.engine}",
                        f"{naming.LABEL_MODE}=sticky",
                    ]
                },
            )
            if sparse_name(c) != keep and may_be_superseded(c, backend.image_name, image.id)
        ]
        for candidate in candidates:
            container = client.containers.get(str(candidate.id))
            reason = retirement_reason(backend, container, unused_after=None)
            if reason is None:
                continue
            outcome = retire(backend, container, grace=STICKY_START_GRACE)
            if outcome.removed:
                log.info("retired sticky server %s (%s, idle)", outcome.name, reason)
            else:
                log.debug("kept sticky server %s (%s): %s", outcome.name, reason, outcome.why)
    except Exception as exc:  # housekeeping must never fail a start
        log.debug("could not look for superseded sticky servers: %s", one_line(exc))


def sparse_name(container: Container) -> str:
    """A container's name, from a sparse listing (which has no ``Name``) or not."""
    names = (container.attrs or {}).get("Names") or []
    return str(names[0]).lstrip("/") if names else str(container.name or "")


def may_be_superseded(container: Container, image_name: str, image_id: str | None) -> bool:
    """From a cheap listing: could this container be superseded by one of ``image_id``?"""
    attrs = container.attrs or {}
    labels = attrs.get("Labels") or {}
    if labels.get(naming.LABEL_IMAGE) not in (None, image_name):
        return False  # another image name altogether: not this start's business
    name = sparse_name(container)
    return (
        naming.sticky_shape_hash(name) != labels.get(naming.LABEL_SETTINGS_HASH)
        or attrs.get("ImageID") != image_id
    )


def _age(delta: dt.timedelta) -> str:
    days = delta.days
    if days >= 1:
        return f"{days} day{'' if days == 1 else 's'}"
    hours = int(delta.total_seconds() // 3600)
    return f"{hours} h" if hours else f"{int(delta.total_seconds() // 60)} min"


__all__ = [
    "DOWN_WAIT_SECONDS",
    "STICKY_START_GRACE",
    "STICKY_UNUSED_AFTER",
    "Retirement",
    "may_be_superseded",
    "retire",
    "retire_superseded",
    "retirement_reason",
    "server_use",
    "sparse_name",
]
