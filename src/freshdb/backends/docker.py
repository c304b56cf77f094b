"""Servers in Docker containers: sticky (kept across sessions) or throwaway.

:class:`DockerBackend` starts or finds a server and says how to reach it. What it
relies on lives beside it, one concern per module: finding and connecting the
engine (:mod:`~freshdb.backends.docker_discovery`), images
(:mod:`~freshdb.backends.images`), running and reading containers
(:mod:`~freshdb.backends.containers`), the shape and records of sticky ones
(:mod:`~freshdb.backends.sticky`), throwaway ones
(:mod:`~freshdb.backends.throwaways`), and ``freshdb shell``'s terminal
(:mod:`~freshdb.backends.execs`). Docker is called in these modules only. When to
retire a sticky container is cleanup's policy (:mod:`freshdb.cleanup.retirement`),
which a start is handed as a callable.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker.errors
import filelock
from docker.models.containers import Container
from docker.models.images import Image

import docker
from freshdb import naming
from freshdb.backends import sticky
from freshdb.backends.base import ProgramRunner, RunningServer, ServerBackend
from freshdb.backends.containers import (
    container_labels,
    list_managed_containers,
    password_of,
    published_port,
    remove_container,
    run_container,
    wait_ready,
)
from freshdb.backends.docker_discovery import (
    ENGINE_UNREACHABLE,
    LOOPBACK,
    Reachability,
    connect_docker,
    reachability,
)
from freshdb.backends.execs import exec_streaming
from freshdb.backends.images import check_image_port, ensure_image
from freshdb.backends.throwaways import THROWAWAYS, remove_leaked_throwaways
from freshdb.config import Settings
from freshdb.dialects import versions
from freshdb.dialects.base import ContainerSpec, Dialect, ServerAddress
from freshdb.errors import (
    DockerUnavailableError,
    FreshDBError,
    ServerStartError,
    ServerUnavailableError,
    UnsupportedServerError,
    one_line,
)

log = logging.getLogger("freshdb")

#: What a sticky start calls to retire idle containers the one it starts (named by
#: the last argument) supersedes: :func:`freshdb.cleanup.retirement.retire_superseded`.
SupersededRetirer = Callable[["DockerBackend", docker.DockerClient, Image, str], None]


class DockerBackend(ServerBackend):
    """A tuned server in a Docker container, data on tmpfs, published on loopback."""

    def __init__(
        self,
        settings: Settings,
        dialect: Dialect,
        *,
        retire_superseded: SupersededRetirer | None = None,
    ) -> None:
        self.settings = settings
        self.dialect = dialect
        # Cleanup's policy, handed in (backends never import cleanup); None: a start
        # retires nothing (the CLI's look at containers starts none).
        self._retire_superseded = retire_superseded
        self.image_name = settings.image or dialect.default_image(settings.engine)
        self._client: docker.DockerClient | None = None
        self._docker_url = ""
        self._container: Container | None = None
        self._reach: Reachability | None = None  # where published ports are reached (CLI)
        #: The id of the image the server was started from (known once started).
        self.image_id: str | None = None

    # -- public ---------------------------------------------------------------
    def start(self) -> RunningServer:
        started = time.perf_counter()
        # Before anything is pulled or started: an image whose name is plainly unfit.
        versions.check_image(self.settings.engine, self.image_name)
        client = self.client()
        reach = self.reachability()
        if reach.bind != LOOPBACK:
            log.warning(
                "publishing the database port on all interfaces: %s (set FRESHDB_HOST to "
                "choose the address to connect to)",
                reach.reason,
            )
        image = self.ensure_image(client)
        self.image_id = image.id
        log.debug("start: Docker client and image (%.3f s)", time.perf_counter() - started)
        spec = self.dialect.container_spec(self.settings, self.image_name, "")
        check_image_port(image, self.image_name, self.settings.engine, spec.port)
        if self.settings.mode == "throwaway":
            if self.settings.port is not None:
                # A leaked throwaway may hold the chosen port: it goes first.
                self.reap_leaked_throwaways()
            container, address = self._start_throwaway(client, image, spec, reach)
            reused = False
        else:
            container, address, reused = self._start_sticky(client, image, spec, reach)
        try:
            self.dialect.check_supported(
                address, self.settings.engine, f"the server in image {self.image_name!r}"
            )
        except BaseException as exc:
            # A server freshdb cannot use is of no use to the next session either; a
            # throwaway one is removed whatever went wrong.
            if isinstance(exc, UnsupportedServerError) or self.settings.mode == "throwaway":
                THROWAWAYS.forget(container.id or "")
                remove_container(container)
            raise
        log.debug("start: server version checked (at %.3f s)", time.perf_counter() - started)
        if not reused:
            self.dialect.prepare_new_server(address)
        self._container = container
        return RunningServer(
            address=address,
            mode=self.settings.mode,
            container_id=container.id,
            container_name=container.name,
            image=self.image_name,
            reused=reused,
            startup_seconds=time.perf_counter() - started,
        )

    def stop(self) -> None:
        container, self._container = self._container, None
        if container is not None and self.settings.mode == "throwaway":
            THROWAWAYS.forget(container.id or "")
            remove_container(container)

    @property
    def runs_programs(self) -> bool:
        return True

    def program_runner(self) -> ProgramRunner:
        """Runs programs in the server's container (see :func:`exec_streaming`)."""
        if self._container is None:
            raise FreshDBError("the server's container is not started")
        return functools.partial(exec_streaming, self._container)

    def check_alive(self) -> bool:
        """Whether the server's container still runs.

        Raises :class:`DockerUnavailableError` if the Docker engine does not answer:
        then nobody can tell.
        """
        if self._container is None:
            return False
        try:
            self._container.reload()
        except docker.errors.NotFound:
            return False
        except ENGINE_UNREACHABLE as exc:
            raise DockerUnavailableError(
                f"the Docker engine at {self._docker_url} does not answer ({one_line(exc)})"
            ) from exc
        except docker.errors.DockerException:
            return False
        # A paused container is still there, with its data: it answers again once
        # unpaused, so the session is not over (see pause_note).
        return bool(self._container.status in ("running", "paused"))

    def pause_note(self) -> str | None:
        container = self._container
        if container is None:
            return None
        try:
            container.reload()
        except Exception:  # only advice: Docker not answering is said elsewhere
            return None
        if container.status != "paused":
            return None
        return f"its container {container.name} is paused — `docker unpause {container.name}`"

    def reachability(self) -> Reachability:
        """Where published ports are reached from here, and the interface to bind."""
        if self._reach is None:
            self.client()
            self._reach = reachability(self._docker_url, engine_hostname=self.engine_hostname())
        return self._reach

    def engine_hostname(self) -> str | None:
        """The host name the Docker engine reports for itself."""
        try:
            return str(self.client().info().get("Name") or "") or None
        except docker.errors.DockerException:
            return None

    @property
    def docker_url(self) -> str:
        """The URL of the Docker engine (empty until the client is connected)."""
        return self._docker_url

    def adopt(self, container_id: str) -> None:
        """Take the container ``container_id`` as the server's, as if this backend had
        started it (a start that found it without Docker hands it over this way)."""
        try:
            self._container = self.client().containers.get(container_id)
        except docker.errors.NotFound:
            self._container = None
        except ENGINE_UNREACHABLE as exc:
            raise DockerUnavailableError(
                f"the Docker engine at {self._docker_url} does not answer ({one_line(exc)})"
            ) from exc

    def client(self) -> docker.DockerClient:
        """The Docker client, connected on first use."""
        if self._client is None:
            self._client, self._docker_url = connect_docker()
        return self._client

    # -- images -----------------------------------------------------------------
    def ensure_image(self, client: docker.DockerClient) -> Image:
        """The configured image, pulled (with progress logged) if it is not present."""
        return ensure_image(client, self.image_name, self.settings.engine)

    # -- containers -------------------------------------------------------------
    def _shape(
        self, image_id: str | None, spec: ContainerSpec, reach: Reachability
    ) -> dict[str, Any]:
        return sticky.container_shape(self.settings, self.image_name, image_id, spec, reach.bind)

    def _shape_hash(self, image_id: str | None) -> str:
        spec = self.dialect.container_spec(self.settings, self.image_name, "")
        return naming.settings_hash(self._shape(image_id, spec, self.reachability()))

    def sticky_name(self, image: Image | None = None) -> str:
        """The sticky container's name for these settings: prefix, engine, shape hash.

        The same for every start asking for the same shape (see
        :mod:`~freshdb.backends.sticky`); another ``tmpfs_size``, ``max_connections``
        or image id gives another name, so it never replaces a container others use.
        """
        if image is None:
            try:
                image = self.client().images.get(self.image_name)
            except docker.errors.ImageNotFound:
                image = None  # no container can run it yet: the name is still defined
        shape_hash = self._shape_hash(image.id if image is not None else None)
        return naming.sticky_container_name(self.settings.prefix, self.settings.engine, shape_hash)

    def lock_path(self, name: str) -> Path:
        """The file lock a start or retirement of the container ``name`` takes."""
        self.client()  # the engine's URL salts the name
        return sticky.lock_path(name, self._docker_url)

    def usage_record(self, name: str) -> Path:
        """The file whose modification time says when a start last asked for ``name``."""
        self.client()  # the engine's URL salts the name
        return sticky.usage_record(name, self._docker_url)

    def last_started(self, container: Container) -> dt.datetime | None:
        """When a start on this machine last asked for this container (else when it
        was started or created, as Docker and its labels say)."""
        self.client()  # the engine's URL salts the name
        return sticky.last_started(container, self._docker_url)

    def _start_sticky(
        self, client: docker.DockerClient, image: Image, spec: ContainerSpec, reach: Reachability
    ) -> tuple[Container, ServerAddress, bool]:
        shape_hash = naming.settings_hash(self._shape(image.id, spec, reach))
        name = naming.sticky_container_name(self.settings.prefix, self.settings.engine, shape_hash)
        lock_path = self.lock_path(name)
        if self.settings.port is not None and self._retire_superseded is not None:
            # An idle container this one supersedes may hold the chosen port: retire it
            # first (a busy one stays, and the start says the port is taken).
            self._retire_superseded(self, client, image, name)
        try:
            with filelock.FileLock(str(lock_path), timeout=self.settings.startup_timeout + 60):
                # Recorded under the lock: a retirer holding it sees this start.
                sticky.record_start(name, self._docker_url)
                found = sticky.find_or_create(
                    client,
                    name,
                    self.settings,
                    create=lambda password: self._create(
                        client, name, shape_hash, image, password, reach
                    ),
                    wait_ready=lambda container: self._wait_ready(container, spec, reach),
                )
        except filelock.Timeout as exc:
            raise ServerStartError(
                f"waited too long for another freshdb process to start {name} "
                f"(lock {lock_path}) — is one stuck? `freshdb status` shows the server"
            ) from exc
        if self.settings.port is None and self._retire_superseded is not None:
            self._retire_superseded(self, client, image, name)
        return found

    # -- starting containers ------------------------------------------------------
    def _start_throwaway(
        self, client: docker.DockerClient, image: Image, spec: ContainerSpec, reach: Reachability
    ) -> tuple[Container, ServerAddress]:
        name = naming.throwaway_container_name(self.settings.prefix, self.settings.engine)
        password = secrets.token_urlsafe(18)
        shape_hash = naming.settings_hash(self._shape(image.id, spec, reach))
        created = time.perf_counter()
        container = self._create(client, name, shape_hash, image, password, reach)
        log.debug("start: container created and started (%.3f s)", time.perf_counter() - created)
        THROWAWAYS.remember(container)
        try:
            self.begin_meanwhile()
            if self.settings.port is None:
                # Listing containers takes 40-100 ms: done while the new server initialises.
                self.reap_leaked_throwaways()
            return container, self._wait_ready(container, spec, reach)
        except BaseException:
            THROWAWAYS.forget(container.id or "")
            remove_container(container)
            raise

    def _create(
        self,
        client: docker.DockerClient,
        name: str,
        shape_hash: str,
        image: Image,
        password: str,
        reach: Reachability,
    ) -> Container:
        return run_container(
            client,
            name=name,
            image=image,
            image_name=self.image_name,
            spec=self.dialect.container_spec(self.settings, self.image_name, password),
            labels=container_labels(self.settings, self.image_name, shape_hash),
            tmpfs_size=self.settings.tmpfs_size,
            reach=reach,
            host_port=self.settings.port,
        )

    def _wait_ready(
        self, container: Container, spec: ContainerSpec, reach: Reachability
    ) -> ServerAddress:
        # The server is asked for: the session's imports run while it initialises (they
        # would slow the Docker calls before, sharing the interpreter with them).
        self.begin_meanwhile()
        return wait_ready(container, self.dialect, spec, reach, self.settings.startup_timeout)

    # -- leftovers --------------------------------------------------------------
    def list_containers(self) -> list[Container]:
        """Every container freshdb made with this prefix (running or not)."""
        return list_managed_containers(self.client(), self.settings.prefix)

    def reap_leaked_throwaways(self) -> list[str]:
        """Remove throwaway containers of this host whose owner process is gone."""
        return remove_leaked_throwaways(self.list_containers())

    # -- inspection (the CLI) -------------------------------------------------------
    def find_sticky(self) -> Container | None:
        """The sticky container of these settings, if it exists (never starts one)."""
        try:
            container = self.client().containers.get(self.sticky_name())
        except docker.errors.NotFound:
            return None
        sticky.check_ours(container, self.settings.prefix)
        return container

    def address_of(self, container: Container, dialect: Dialect | None = None) -> ServerAddress:
        """How to reach the server in a running freshdb container as its administrator.

        ``dialect`` is the one of the container's engine, when that is not this
        backend's (the CLI looks at servers of every engine).
        """
        dialect = dialect or self.dialect
        engine = (container.labels or {}).get(naming.LABEL_ENGINE) or self.settings.engine
        settings = self.settings
        if engine != settings.engine:
            settings = settings.replace(engine=engine)
        spec = dialect.container_spec(settings, self.image_name, "")
        port = published_port(container, spec.port)
        if port is None:
            raise ServerUnavailableError(
                f"container {container.name} publishes no port for its server (it is "
                f"{container.status}) — `freshdb up` starts the sticky server again"
            )
        password = password_of(container, spec)
        host = self.reachability().host
        return ServerAddress(host, port, spec.admin_user, password, spec.admin_database)


__all__ = ["DockerBackend"]
