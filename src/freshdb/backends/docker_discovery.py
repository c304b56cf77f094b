"""Where the Docker engine is, how to connect to it, and how a database it runs is reached.

Logic over the environment and the file system, so it is unit-tested without an
engine: ``DOCKER_HOST`` (with ``DOCKER_TLS_VERIFY`` and ``DOCKER_CERT_PATH``), then
the docker context (``DOCKER_CONTEXT``, else the Docker CLI's current one; read by
the Docker SDK, TLS material included), then the usual sockets of Docker Engine,
Docker Desktop, colima, OrbStack, rootless Docker and podman.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import docker.errors
import requests.exceptions
from docker.context import Context
from docker.context.config import get_current_context_name
from docker.tls import TLSConfig

import docker
from freshdb.errors import DockerUnavailableError, one_line

LOOPBACK = "127.0.0.1"
ALL_INTERFACES = "0.0.0.0"


@dataclasses.dataclass(frozen=True)
class DockerLocation:
    """A Docker engine URL, how it was found, and every place that was looked at."""

    url: str | None
    source: str
    tried: tuple[str, ...]
    #: The TLS settings of the docker context it came from, if that has TLS material.
    tls: TLSConfig | None = None


def candidate_sockets(environ: Mapping[str, str], home: Path) -> list[tuple[str, Path]]:
    """The well-known engine sockets, most common first, as (what, path)."""
    runtime = environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    return [
        ("Docker Engine", Path("/var/run/docker.sock")),
        ("Docker Desktop", home / ".docker" / "run" / "docker.sock"),
        ("Docker Desktop (legacy)", home / ".docker" / "desktop" / "docker.sock"),
        ("rootless Docker", Path(runtime) / "docker.sock"),
        ("colima", home / ".colima" / "default" / "docker.sock"),
        ("colima (legacy)", home / ".colima" / "docker.sock"),
        ("OrbStack", home / ".orbstack" / "run" / "docker.sock"),
        ("Rancher Desktop", home / ".rd" / "docker.sock"),
        ("podman (rootless)", Path(runtime) / "podman" / "podman.sock"),
        ("podman", Path("/run/podman/podman.sock")),
    ]


def docker_context(environ: Mapping[str, str]) -> Context | None:
    """The active docker context, unless it is ``default`` (then: the local sockets).

    ``DOCKER_CONTEXT`` names it, else the Docker CLI's ``currentContext`` (in
    ``config.json`` under ``DOCKER_CONFIG`` or ``~/.docker``). The Docker SDK reads
    it, with its TLS material; a context named but not there is an error, as it is
    for the docker CLI.
    """
    chosen = environ.get("DOCKER_CONTEXT")
    where = "DOCKER_CONTEXT" if chosen else "the docker CLI's current context"
    name = chosen or get_current_context_name()
    if not name or name == "default":
        return None
    try:
        context = Context.load_context(name)
    except Exception as exc:  # the SDK raises a bare Exception for a corrupt meta file
        raise DockerUnavailableError(
            f"cannot read docker context {name!r} ({where}): {one_line(exc)} — fix or "
            "recreate it (`docker context inspect`), choose another with `docker context "
            "use`, or set DOCKER_HOST"
        ) from exc
    if context is None:
        raise DockerUnavailableError(
            f"docker context {name!r} ({where}) does not exist — `docker context ls` lists "
            "the contexts there are; choose one with `docker context use NAME` or "
            "DOCKER_CONTEXT, or set DOCKER_HOST"
        )
    return context


def locate_docker(
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
    is_socket: Callable[[Path], bool] | None = None,
) -> DockerLocation:
    """Find the Docker engine: DOCKER_HOST > docker context > well-known sockets."""
    env = os.environ if environ is None else environ
    home = home if home is not None else Path.home()
    exists = is_socket or _is_socket
    tried: list[str] = []
    if env.get("DOCKER_HOST"):
        return DockerLocation(env["DOCKER_HOST"], "DOCKER_HOST", ("DOCKER_HOST",))
    tried.append("DOCKER_HOST (unset)")
    context = docker_context(env)
    if context is not None and context.Host:
        return DockerLocation(
            context.Host,
            f"docker context {context.Name!r}",
            (*tried, f"docker context {context.Name!r}"),
            tls=context.TLSConfig,
        )
    if context is not None:
        tried.append(f"docker context {context.Name!r} (no docker endpoint)")
    else:
        tried.append("docker context (default)")
    for what, path in candidate_sockets(env, home):
        tried.append(f"{path} ({what})")
        if exists(path):
            return DockerLocation(f"unix://{path}", what, tuple(tried))
    return DockerLocation(None, "nowhere", tuple(tried))


#: What the Docker SDK raises when the engine does not answer at all (it does not wrap
#: these in ``DockerException``).
ENGINE_UNREACHABLE = (requests.exceptions.ConnectionError, requests.exceptions.Timeout)


def docker_client(location: DockerLocation, api_version: str | None = None) -> docker.DockerClient:
    """A client for the engine at ``location``.

    Without ``api_version`` the client asks the engine which version it speaks; with
    one, nothing is sent until the client is used.
    """
    if location.url is None:
        raise DockerUnavailableError(
            "no Docker engine found (looked at: "
            + "; ".join(location.tried)
            + ") — start Docker (Docker Desktop, colima, OrbStack, podman or Docker Engine), "
            "set DOCKER_HOST, or set FRESHDB_URL to use an existing database server"
        )
    if location.source == "DOCKER_HOST":
        # The SDK reads DOCKER_TLS_VERIFY and DOCKER_CERT_PATH along with it.
        return docker.from_env(version=api_version, timeout=60)
    return docker.DockerClient(
        base_url=location.url,
        version=api_version,
        timeout=60,
        tls=location.tls or False,
        use_ssh_client=location.url.startswith("ssh://"),
    )


def connect_docker() -> tuple[docker.DockerClient, str]:
    """A client for the Docker engine found by :func:`locate_docker`, and its URL."""
    location = locate_docker()
    try:
        client = docker_client(location)
        client.ping()
    except docker.errors.DockerException as exc:
        raise DockerUnavailableError(
            f"Docker engine not reachable at {location.url} (found via {location.source}: "
            f"{one_line(exc)}) — start Docker, or set FRESHDB_URL to use an existing "
            "server"
        ) from exc
    return client, str(location.url)


def _is_socket(path: Path) -> bool:
    try:
        import stat

        return stat.S_ISSOCK(path.stat().st_mode)
    except OSError:
        return False


@dataclasses.dataclass(frozen=True)
class Reachability:
    """How a published database port is reached from this process."""

    host: str  # where to connect
    bind: str  # the host address the port is published on
    reason: str


def reachability(
    docker_url: str | None,
    environ: Mapping[str, str] | None = None,
    in_container: bool | None = None,
    default_gateway: Callable[[], str | None] | None = None,
    engine_hostname: str | None = None,
) -> Reachability:
    """Decide where to connect to a container's published port and what to bind it to.

    A local engine publishes on 127.0.0.1 only. A remote engine (``tcp://``,
    ``ssh://``) is reached at its own host, and freshdb running inside a container
    with the host's socket reaches the host through its default gateway: in both
    cases the port must be published beyond loopback. (When the engine runs in the
    same container as freshdb, it reports our own hostname, and loopback works.)
    ``FRESHDB_HOST`` overrides where to connect.
    """
    env = os.environ if environ is None else environ
    override = env.get("FRESHDB_HOST")
    scheme_host = urlsplit(docker_url or "")
    remote = scheme_host.scheme in {"tcp", "ssh", "http", "https"} and scheme_host.hostname not in {
        None,
        "localhost",
        "127.0.0.1",
        "::1",
    }
    if remote:
        host = override or str(scheme_host.hostname)
        return Reachability(host, ALL_INTERFACES, f"remote Docker engine at {scheme_host.hostname}")
    inside = in_container if in_container is not None else Path("/.dockerenv").exists()
    same_host = engine_hostname is not None and engine_hostname == socket.gethostname()
    if inside and not same_host:
        gateway = (default_gateway or linux_default_gateway)()
        host = override or gateway or LOOPBACK
        return Reachability(host, ALL_INTERFACES, "freshdb runs inside a container")
    return Reachability(override or LOOPBACK, LOOPBACK, "local Docker engine")


def linux_default_gateway(route_file: Path = Path("/proc/net/route")) -> str | None:
    """The IPv4 default gateway from ``/proc/net/route`` (Linux), if there is one."""
    try:
        lines = route_file.read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000":
            raw = bytes.fromhex(fields[2])
            return ".".join(str(b) for b in reversed(raw))
    return None
