"""freshdb's containers as Docker sees them: made, waited for, read and removed.

Sticky or throwaway alike: the labels that mark a container as freshdb's, how one
is run (data on tmpfs, the server port published on one interface) and waited for
until its server answers a real query, and the facts the CLI shows about it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import re
import socket
import time
from typing import Any, cast

import docker.errors
from docker.models.containers import Container
from docker.models.images import Image
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

import docker
from freshdb import naming
from freshdb._version import __version__
from freshdb.backends.docker_discovery import ENGINE_UNREACHABLE, Reachability
from freshdb.config import Settings
from freshdb.dialects.base import OFFICIAL_ENTRYPOINT, ContainerSpec, Dialect, ServerAddress
from freshdb.errors import (
    ContainerConflictError,
    DockerUnavailableError,
    FreshDBError,
    ServerFullError,
    ServerStartError,
    one_line,
)

log = logging.getLogger("freshdb")


def container_labels(settings: Settings, image_name: str, shape_hash: str) -> dict[str, str]:
    """The labels that make a container freshdb's: what it runs, for whom, since when."""
    return {
        naming.LABEL_MANAGED: "true",
        naming.LABEL_ENGINE: settings.engine,
        naming.LABEL_SETTINGS_HASH: shape_hash,
        naming.LABEL_IMAGE: image_name,
        naming.LABEL_MODE: settings.mode,
        naming.LABEL_VERSION: __version__,
        naming.LABEL_PREFIX_NAME: settings.prefix,
        naming.LABEL_OWNER_HOST: socket.gethostname(),
        naming.LABEL_OWNER_PID: str(os.getpid()),
        naming.LABEL_CREATED: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def find_container(client: docker.DockerClient, name: str) -> Container | None:
    """The container of that name, if there is one."""
    try:
        return client.containers.get(name)
    except docker.errors.NotFound:
        return None


def run_container(
    client: docker.DockerClient,
    *,
    name: str,
    image: Image,
    image_name: str,
    spec: ContainerSpec,
    labels: dict[str, str],
    tmpfs_size: str,
    reach: Reachability,
    host_port: int | None = None,
) -> Container:
    """Create and start a server container; one of that name made meanwhile is returned.

    ``spec`` is the one with the container's password. The server port is published
    on ``host_port``, or on a free port Docker picks. If it cannot start (the port is
    taken, say), the container made here is removed.
    """
    volumes = list((image.attrs.get("Config") or {}).get("Volumes") or {}) or [spec.data_directory]
    # A tmpfs on every declared VOLUME path: otherwise Docker creates an anonymous
    # volume there that shadows the tmpfs, and the data silently lands on disk.
    tmpfs = {path: f"rw,size={tmpfs_size},mode=1777" for path in volumes}
    own_entrypoint = tuple((image.attrs.get("Config") or {}).get("Entrypoint") or ())
    # A dialect's own start-up replaces only the official entrypoint it stands in for.
    entrypoint = list(spec.entrypoint) if own_entrypoint == OFFICIAL_ENTRYPOINT else []
    try:
        container = client.containers.create(
            image_name,
            command=list(spec.command),
            entrypoint=entrypoint or None,
            name=name,
            detach=True,
            environment=dict(spec.environment),
            labels=labels,
            tmpfs=tmpfs,
            # On the chosen interface only; the chosen port, or a free one (None).
            ports={f"{spec.port}/tcp": cast(Any, (reach.bind, host_port))},
            shm_size="256m",
        )
    except docker.errors.APIError as exc:
        if exc.status_code == 409:  # the name is taken: made meanwhile by someone else
            found = find_container(client, name)
            if found is not None:
                return found
        raise ServerStartError(
            f"Docker could not start {image_name} as {name}: {one_line(exc)}"
        ) from exc
    try:
        start_container(container, host_port)
    except BaseException:
        remove_container(container)  # made here, never ran: nobody else knows of it
        raise
    return container


def start_container(container: Container, host_port: int | None = None) -> None:
    """Start a created or stopped container, saying so clearly if its port is taken."""
    try:
        container.start()
    except docker.errors.APIError as exc:
        text = str(exc).lower()
        if host_port is not None and any(words in text for words in _PORT_TAKEN):
            raise ServerStartError(
                f"port {host_port} (the port setting, FRESHDB_PORT) is taken on the "
                f"Docker host, by another process or container, so {container.name} cannot "
                f"publish its server there — choose another port, free port {host_port}, "
                "or unset the setting to let Docker pick a free one"
            ) from exc
        raise ServerStartError(f"Docker could not start {container.name}: {one_line(exc)}") from exc


#: How Docker says a host port is held by something else (its proxy's bind error, or
#: its own record of another container's port).
_PORT_TAKEN = ("port is already allocated", "address already in use")


#: The longest wait between two readiness probes of a starting server.
READINESS_POLL_MAX_SECONDS = 0.04


class _NotReady(Exception):
    """The server does not answer yet: ask again."""


def wait_ready(
    container: Container,
    dialect: Dialect,
    spec: ContainerSpec,
    reach: Reachability,
    timeout: float,
) -> ServerAddress:
    """Wait until the server answers a real query through the published port."""
    password = password_of(container, spec)

    def probe() -> ServerAddress:
        container.reload()
        if container.status in ("exited", "dead", "removing"):
            raise ServerStartError(
                f"the server container {container.name} stopped while starting; its last "
                f"log lines:\n{tail_logs(container)}"
            )
        port = published_port(container, spec.port)
        if port is None:
            raise _NotReady("port not published yet")
        address = ServerAddress(reach.host, port, spec.admin_user, password, spec.admin_database)
        try:
            dialect.ping(address, timeout=2.0)
        except ServerFullError:
            raise  # it answers, and is full: waiting (or replacing it) would not help
        except Exception as exc:
            raise _NotReady(str(exc)) from exc
        return address

    waited = time.perf_counter()
    try:
        for attempt in Retrying(
            stop=stop_after_delay(timeout),
            # Short waits: the server is ready ~1 s after a first start, and each
            # wait's end is when the start notices (up to 250 ms late, measured,
            # with waits growing to 250 ms); a probe costs a few ms.
            wait=wait_exponential(multiplier=0.01, max=READINESS_POLL_MAX_SECONDS),
            retry=retry_if_exception_type(_NotReady),
            reraise=True,
        ):
            with attempt:
                address = probe()
                log.debug(
                    "start: server answered (%s, after %.3f s, %d probes)",
                    container.name,
                    time.perf_counter() - waited,
                    attempt.retry_state.attempt_number,
                )
                return address
    except _NotReady as exc:
        raise ServerStartError(
            f"the server in {container.name} did not answer a query within "
            f"{timeout:.0f} s (last error: {exc}); its last log "
            f"lines:\n{tail_logs(container)}\nRaise FRESHDB_STARTUP_TIMEOUT if the "
            "machine is slow"
        ) from exc
    raise AssertionError("unreachable")


def list_managed_containers(client: docker.DockerClient, prefix: str | None) -> list[Container]:
    """Containers bearing freshdb's labels (and ``prefix``, if given)."""
    filters = [f"{naming.LABEL_MANAGED}=true"]
    if prefix is not None:
        filters.append(f"{naming.LABEL_PREFIX_NAME}={prefix}")
    found = client.containers.list(all=True, filters={"label": filters})
    return [c for c in found if prefix is None or str(c.name).startswith(f"{prefix}-")]


def remove_container(container: Container) -> None:
    """Remove a container freshdb made, with its anonymous volumes; gone already is fine."""
    try:
        container.remove(force=True, v=True)
    except docker.errors.NotFound:
        pass
    except ENGINE_UNREACHABLE as exc:
        raise DockerUnavailableError(
            f"cannot remove container {container.name}: the Docker engine does not answer "
            f"({one_line(exc)}) — start Docker; the next freshdb session or `freshdb "
            "prune` removes it once its owner process is gone"
        ) from exc
    except docker.errors.APIError as exc:
        if "already in progress" not in str(exc):
            raise FreshDBError(f"Docker failed to remove {container.name}: {exc}") from exc


def password_of(container: Container, spec: ContainerSpec) -> str:
    """The administrator password a freshdb container was created with."""
    environment = (container.attrs.get("Config") or {}).get("Env") or []
    values = dict(item.split("=", 1) for item in environment if "=" in item)
    for variable in spec.password_variables:
        if values.get(variable):
            return str(values[variable])
    raise ContainerConflictError(
        f"container {container.name} has no {'/'.join(spec.password_variables)}; it is not "
        "usable by freshdb — remove it with `freshdb down`"
    )


def published_port(container: Container, port: int) -> int | None:
    """The host port the container's ``port`` is published on, once Docker says."""
    bindings = ((container.attrs.get("NetworkSettings") or {}).get("Ports") or {}).get(
        f"{port}/tcp"
    )
    for binding in bindings or []:
        if binding.get("HostPort"):
            return int(binding["HostPort"])
    return None


def tail_logs(container: Container, lines: int = 20) -> str:
    """The container's last log lines, indented (for error messages)."""
    try:
        raw = container.logs(tail=lines)
    except docker.errors.DockerException as exc:
        return f"(logs unavailable: {exc})"
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    return "\n".join("    " + line for line in text.rstrip().splitlines())


@dataclasses.dataclass(frozen=True)
class ContainerFacts:
    """What Docker says about a freshdb container: its labels, state and memory use."""

    name: str
    id: str
    engine: str
    mode: str
    prefix: str
    image: str
    status: str
    host_port: int | None
    created: dt.datetime | None
    started: dt.datetime | None
    memory_bytes: int | None


def container_facts(container: Container, with_memory: bool = True) -> ContainerFacts:
    """The facts of a freshdb container; memory use only if asked (one stats call)."""
    labels = container.labels or {}
    attrs = container.attrs or {}
    state = attrs.get("State") or {}
    running = container.status == "running"
    memory = _memory_bytes(container) if with_memory and running else None
    host_port = None
    for bindings in ((attrs.get("NetworkSettings") or {}).get("Ports") or {}).values():
        for binding in bindings or []:
            if binding.get("HostPort"):
                host_port = int(binding["HostPort"])
                break
    return ContainerFacts(
        name=str(container.name),
        id=str(container.id or ""),
        engine=labels.get(naming.LABEL_ENGINE, ""),
        mode=labels.get(naming.LABEL_MODE, ""),
        prefix=labels.get(naming.LABEL_PREFIX_NAME, ""),
        image=str((attrs.get("Config") or {}).get("Image") or ""),
        status=str(container.status),
        host_port=host_port,
        created=parse_timestamp(labels.get(naming.LABEL_CREATED, "")),
        started=parse_timestamp(str(state.get("StartedAt") or "")) if running else None,
        memory_bytes=memory,
    )


def parse_timestamp(text: str) -> dt.datetime | None:
    """A time as Docker (or freshdb's labels) write it; ``None`` if it is not one."""
    # Docker writes nanoseconds; datetime takes at most microseconds.
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(.*)$", text)
    if not match:
        return None
    fraction = (match[2] or "")[:7]
    zone = "+00:00" if match[3] in ("Z", "") else match[3]
    try:
        return dt.datetime.fromisoformat(match[1] + fraction + zone)
    except ValueError:
        return None


def _memory_bytes(container: Container) -> int | None:
    try:
        stats = cast(dict[str, Any], container.stats(stream=False, one_shot=True))
    except docker.errors.DockerException:
        return None
    memory = stats.get("memory_stats") or {}
    usage = memory.get("usage")
    if usage is None:
        return None
    # As `docker stats` reports it: the page cache the kernel can drop is not "used".
    details = memory.get("stats") or {}
    cache = details.get("inactive_file", details.get("total_inactive_file", 0))
    return max(int(usage) - int(cache), 0)


__all__ = [
    "ContainerFacts",
    "container_facts",
    "container_labels",
    "find_container",
    "list_managed_containers",
    "parse_timestamp",
    "password_of",
    "published_port",
    "remove_container",
    "run_container",
    "start_container",
    "tail_logs",
    "wait_ready",
]
