"""Sticky containers: their shape, the per-user records that guard and date them, and
finding, reusing or creating one at start.

A sticky container is shared by every session, project and process on the machine
that asks for the same *shape*, and it is never replaced, stopped, restarted or
removed while anyone uses it:

- The shape is everything fixed when a container is created: engine, image name and
  the image id it resolves to, server flags (``max_connections``), tmpfs size, the
  published interface and the host ``port`` if one is chosen. Its hash is part of
  the container's name, so a start with another shape gets a container of its own
  and leaves the others alone. Settings that do not change the container (pool
  size, schema, ``keep_templates``...) share.
- A start reuses a running container as it is, and restarts one that is stopped
  (nothing can be using a stopped server). A running one that does not answer in
  time is left alone, and the start fails saying what to do.
- Starts (and retirements) of one container take one file lock per user and
  engine, and each start touches a record whose age says when it was last wanted
  (see :mod:`freshdb.cleanup.retirement`).
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Callable
from typing import Any

from docker.models.containers import Container

import docker
from freshdb import naming
from freshdb.backends.containers import (
    find_container,
    parse_timestamp,
    remove_container,
    start_container,
)
from freshdb.backends.records import lock_path, record_start, state_directory, usage_record
from freshdb.config import Settings
from freshdb.dialects.base import ContainerSpec, ServerAddress
from freshdb.errors import ContainerConflictError, ServerStartError, one_line

log = logging.getLogger("freshdb")


def container_shape(
    settings: Settings, image_name: str, image_id: str | None, spec: ContainerSpec, bind: str
) -> dict[str, Any]:
    """Everything fixed when a container is created (its hash names a sticky one)."""
    shape: dict[str, Any] = {
        "engine": settings.engine,
        "image": image_name,
        "image_id": image_id,
        "command": list(spec.command),
        "tmpfs_size": settings.tmpfs_size,
        "bind": bind,
        "format": 3,
    }
    if settings.port is not None:
        # Only when chosen: the shapes (and names) of containers on a port Docker
        # picks stay what they were before the setting existed.
        shape["port"] = settings.port
    return shape


def check_ours(container: Container, prefix: str) -> None:
    """Refuse a container that freshdb did not make with this prefix."""
    labels = container.labels or {}
    if labels.get(naming.LABEL_MANAGED) != "true" or labels.get(naming.LABEL_PREFIX_NAME) != prefix:
        raise ContainerConflictError(
            f"a container named {container.name!r} exists but was not created by freshdb "
            "(its labels say so); freshdb leaves it alone — rename or remove it yourself, "
            "or set FRESHDB_PREFIX to use other names"
        )


def last_started(container: Container, docker_url: str) -> dt.datetime | None:
    """When a start on this machine last asked for this container (else when it
    was started or created, as Docker and its labels say)."""
    try:
        return dt.datetime.fromtimestamp(
            usage_record(str(container.name), docker_url).stat().st_mtime, dt.UTC
        )
    except OSError:
        pass
    state = (container.attrs or {}).get("State") or {}
    started = (
        parse_timestamp(str(state.get("StartedAt") or "")) if isinstance(state, dict) else None
    )
    if started is not None and started.year > 1:
        return started
    return parse_timestamp((container.labels or {}).get(naming.LABEL_CREATED, ""))


__all__ = [
    "check_ours",
    "container_shape",
    "last_started",
    "lock_path",
    "record_start",
    "state_directory",
    "usage_record",
]


def find_or_create(
    client: docker.DockerClient,
    name: str,
    settings: Settings,
    *,
    create: Callable[[str], Container],
    wait_ready: Callable[[Container], ServerAddress],
) -> tuple[Container, ServerAddress, bool]:
    """The sticky container ``name``, answering: reused as it is, unpaused, started
    again or created (by ``create``, given a new password); and whether it was reused.

    Called under the container's start lock. A running container that does not
    answer in time is left alone (others may be using it); one started here that
    never answers is removed.
    """
    container = find_container(client, name)
    if container is not None:
        check_ours(container, settings.prefix)
        if container.status in ("dead", "removing"):
            # No server process runs in it, so no session can be using it.
            log.info("removing %s: it is %s", name, container.status)
            remove_container(container)
            container = None
    reused = False
    if container is None:
        container = create(secrets.token_urlsafe(18))
        # If Docker said the name was taken, another host or user made it meanwhile.
        check_ours(container, settings.prefix)
    elif container.status in ("running", "restarting"):
        reused = True
    elif container.status == "paused":
        container.unpause()
        reused = True
    else:  # "exited" or "created": its server is not running, so nobody uses it
        log.info("starting stopped container %s (its tmpfs starts empty)", name)
        start_container(container, settings.port)
    try:
        return container, wait_ready(container), reused
    except ServerStartError as exc:
        if reused:
            # Others' sessions may be using it (slowly): never remove it from here.
            raise ServerStartError(
                f"the sticky server {name} runs but did not answer within "
                f"{settings.startup_timeout:.0f} s; freshdb leaves it alone because "
                "other sessions may be using it — `freshdb status` shows who uses it; "
                "`freshdb down` removes it once they are done (`--force` removes it "
                "anyway, cutting their connections); raise FRESHDB_STARTUP_TIMEOUT if the "
                f"machine is slow. {one_line(exc)}"
            ) from exc
        # Started here (new, or stopped before) and never ready: no session got in.
        # Left behind, it would only fail the next session the same way.
        remove_container(container)
        raise
