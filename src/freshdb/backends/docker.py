"""Servers in Docker containers: sticky (kept across sessions) or throwaway.

Every Docker API call freshdb makes is in this module.

A sticky container is shared by every session, project and process on the machine
that asks for the same *shape*, and it is never replaced, stopped, restarted or
removed while anyone uses it:

- The shape is everything fixed when a container is created: engine, image name and
  the image id it resolves to, server flags (``max_connections``), tmpfs size and
  the published interface. Its hash is part of the container's name, so a start with
  another shape gets a container of its own and leaves the others alone. Settings
  that do not change the container (pool size, schema, ``keep_templates``...) share.
- A start reuses a running container as it is, and restarts one that is stopped
  (nothing can be using a stopped server). A running one that does not answer in
  time is left alone, and the start fails saying what to do.
- A container nobody will ask for again is *superseded*: its image name now
  resolves to another image (a pull or a rebuild), or an older freshdb named it. One
  whose shape no start on this machine asked for in :data:`STICKY_UNUSED_AFTER` is
  *unused*. Both are retired, only when idle (no other client connection, hence no
  owner lease): superseded ones by a later start (best effort, never blocking it),
  both by ``freshdb prune``. ``freshdb down`` waits a little for a busy container's
  sessions to end, then refuses unless forced.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import re
import secrets
import signal
import socket
import termios
import threading
import time
import tty
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, BinaryIO, cast

import docker.errors
import filelock
import platformdirs
import requests.exceptions
from docker.models.containers import Container
from docker.models.images import Image
from docker.utils import parse_repository_tag
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

import docker
from freshdb import naming
from freshdb._version import __version__
from freshdb.backends.base import ByteSource, ExecResult, RunningServer, ServerBackend
from freshdb.backends.docker_discovery import LOOPBACK, Reachability, locate_docker, reachability
from freshdb.config import Settings
from freshdb.dialects import dialect_for, versions
from freshdb.dialects.base import ContainerSpec, Dialect, ServerAddress, ServerUse
from freshdb.errors import (
    ContainerConflictError,
    DockerUnavailableError,
    FreshDBError,
    ImageError,
    ServerFullError,
    ServerStartError,
    ServerUnavailableError,
    UnsupportedServerError,
)

log = logging.getLogger("freshdb")

#: A sticky container whose shape no start on this machine asked for in this long is
#: no longer wanted: ``freshdb prune`` retires it once idle (``--max-age`` overrides).
STICKY_UNUSED_AFTER = dt.timedelta(days=7)
#: A sticky container started this recently is never retired: the session that
#: started it may not have connected and taken its owner lease yet.
STICKY_START_GRACE = dt.timedelta(minutes=5)
#: How long ``freshdb down`` waits for a busy server's sessions to end by default.
DOWN_WAIT_SECONDS = 10.0


def state_directory() -> Path:
    """Per-user state (locks) shared by every freshdb process of this user."""
    path = Path(platformdirs.user_state_dir("freshdb", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def connect_docker() -> tuple[docker.DockerClient, str]:
    """A client for the Docker engine found by :func:`locate_docker`, and its URL."""
    location = locate_docker()
    if location.url is None:
        raise DockerUnavailableError(
            "no Docker engine found (looked at: "
            + "; ".join(location.tried)
            + ") — start Docker (Docker Desktop, colima, OrbStack, podman or Docker Engine), "
            "set DOCKER_HOST, or set FRESHDB_URL to use an existing database server"
        )
    try:
        if location.source == "DOCKER_HOST":
            client = docker.from_env(timeout=60)
        else:
            client = docker.DockerClient(
                base_url=location.url,
                timeout=60,
                use_ssh_client=location.url.startswith("ssh://"),
            )
        client.ping()
    except docker.errors.DockerException as exc:
        raise DockerUnavailableError(
            f"Docker engine not reachable at {location.url} (found via {location.source}: "
            f"{_first_line(exc)}) — start Docker, or set FRESHDB_URL to use an existing "
            "server"
        ) from exc
    return client, location.url


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


#: What the Docker SDK raises when the engine does not answer at all (it does not wrap
#: these in ``DockerException``).
ENGINE_UNREACHABLE = (requests.exceptions.ConnectionError, requests.exceptions.Timeout)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DockerBackend(ServerBackend):
    """A tuned server in a Docker container, data on tmpfs, published on loopback."""

    def __init__(self, settings: Settings, dialect: Dialect) -> None:
        self.settings = settings
        self.dialect = dialect
        self.image_name = settings.image or dialect.default_image(settings.engine)
        self._client: docker.DockerClient | None = None
        self._docker_url = ""
        self._container: Container | None = None
        self._reach: Reachability | None = None  # where published ports are reached (CLI)

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
        spec = self.dialect.container_spec(self.settings, self.image_name, "")
        self._check_image_port(image, spec)
        if self.settings.mode == "throwaway":
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
                _THROWAWAYS.forget(container.id or "")
                remove_container(container)
            raise
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
            _THROWAWAYS.forget(container.id or "")
            remove_container(container)

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
                f"the Docker engine at {self._docker_url} does not answer ({_first_line(exc)})"
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

    @property
    def runs_programs(self) -> bool:
        return True

    def run_in_server(
        self,
        command: Sequence[str],
        environment: Mapping[str, str],
        stdin: ByteSource | None = None,
        stdout: BinaryIO | None = None,
    ) -> ExecResult:
        """Run a program inside the server's container (see :func:`exec_streaming`)."""
        if self._container is None:
            raise FreshDBError("the server's container is not started")
        return exec_streaming(self._container, command, environment, stdin, stdout)

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

    def client(self) -> docker.DockerClient:
        """The Docker client, connected on first use."""
        if self._client is None:
            self._client, self._docker_url = connect_docker()
        return self._client

    # -- images -----------------------------------------------------------------
    def ensure_image(self, client: docker.DockerClient) -> Image:
        """The configured image, pulled (with progress logged) if it is not present."""
        try:
            return client.images.get(self.image_name)
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.DockerException as exc:
            raise DockerUnavailableError(f"Docker failed to look up images: {exc}") from exc
        repository, tag = parse_repository_tag(self.image_name)
        log.info("pulling image %s", self.image_name)
        variable = f"FRESHDB_{self.settings.engine.upper()}_IMAGE"
        try:
            last: dict[str, str] = {}
            for event in client.api.pull(repository, tag=tag or "latest", stream=True, decode=True):
                if "error" in event:
                    raise ImageError(
                        f"cannot pull image {self.image_name}: {event['error']} — check the "
                        f"name and your registry access, or set FRESHDB_IMAGE / {variable} to "
                        "an image you have"
                    )
                layer, status = event.get("id", ""), event.get("status", "")
                if status and last.get(layer) != status:
                    last[layer] = status
                    log.info("pull %s: %s %s", self.image_name, layer, status)
            return client.images.get(self.image_name)
        except docker.errors.DockerException as exc:
            raise ImageError(
                f"cannot pull image {self.image_name}: {_first_line(exc)} — check the name "
                f"and your registry access, or set FRESHDB_IMAGE / {variable} to an image "
                "you have"
            ) from exc

    def _check_image_port(self, image: Image, spec: ContainerSpec) -> None:
        """Refuse an image that declares ports, none of them the engine's server port.

        Catches an image of another engine whose name does not say so (an id, a
        private name) before it is started with settings it cannot understand.
        """
        exposed = sorted((image.attrs.get("Config") or {}).get("ExposedPorts") or {})
        if exposed and f"{spec.port}/tcp" not in exposed:
            raise UnsupportedServerError(
                f"image {self.image_name!r} exposes {', '.join(exposed)}, not {spec.port}/tcp "
                f"where a {self.settings.engine} server listens: it runs another engine — "
                f"use the engine it runs, or choose an image with image= or "
                f"FRESHDB_{self.settings.engine.upper()}_IMAGE / FRESHDB_IMAGE. freshdb "
                f"supports: {versions.supported_servers()}"
            )

    # -- containers -------------------------------------------------------------
    def _shape(
        self, image_id: str | None, spec: ContainerSpec, reach: Reachability
    ) -> dict[str, Any]:
        return {
            "engine": self.settings.engine,
            "image": self.image_name,
            "image_id": image_id,
            "command": list(spec.command),
            "tmpfs_size": self.settings.tmpfs_size,
            "bind": reach.bind,
            "format": 3,
        }

    def _shape_hash(self, image_id: str | None) -> str:
        spec = self.dialect.container_spec(self.settings, self.image_name, "")
        return naming.settings_hash(self._shape(image_id, spec, self.reachability()))

    def sticky_name(self, image: Image | None = None) -> str:
        """The sticky container's name for these settings: prefix, engine, shape hash.

        The same for every start asking for the same shape (see the module's
        docstring); another ``tmpfs_size``, ``max_connections`` or image id gives
        another name, so it never replaces a container others are using.
        """
        if image is None:
            try:
                image = self.client().images.get(self.image_name)
            except docker.errors.ImageNotFound:
                image = None  # no container can run it yet: the name is still defined
        shape_hash = self._shape_hash(image.id if image is not None else None)
        return naming.sticky_container_name(self.settings.prefix, self.settings.engine, shape_hash)

    def _labels(self, shape_hash: str) -> dict[str, str]:
        return {
            naming.LABEL_MANAGED: "true",
            naming.LABEL_ENGINE: self.settings.engine,
            naming.LABEL_SETTINGS_HASH: shape_hash,
            naming.LABEL_IMAGE: self.image_name,
            naming.LABEL_MODE: self.settings.mode,
            naming.LABEL_VERSION: __version__,
            naming.LABEL_PREFIX_NAME: self.settings.prefix,
            naming.LABEL_OWNER_HOST: socket.gethostname(),
            naming.LABEL_OWNER_PID: str(os.getpid()),
            naming.LABEL_CREATED: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }

    def _check_ours(self, container: Container) -> None:
        labels = container.labels or {}
        if labels.get(naming.LABEL_MANAGED) != "true" or (
            labels.get(naming.LABEL_PREFIX_NAME) != self.settings.prefix
        ):
            raise ContainerConflictError(
                f"a container named {container.name!r} exists but was not created by freshdb "
                "(its labels say so); freshdb leaves it alone — rename or remove it yourself, "
                "or set FRESHDB_PREFIX to use other names"
            )

    def _lock_path(self, name: str) -> Path:
        self.client()  # the engine's URL salts the name
        path = state_directory() / "locks" / naming.lock_name(name, self._docker_url)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def usage_record(self, name: str) -> Path:
        """The file whose modification time says when a start last asked for ``name``."""
        self.client()  # the engine's URL salts the name
        return state_directory() / "used" / naming.usage_record_name(name, self._docker_url)

    def _record_start(self, name: str) -> None:
        path = self.usage_record(name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        except OSError as exc:  # only retirement reads it; a start must not fail on it
            log.debug("cannot record the start of %s in %s: %s", name, path, exc)

    def last_started(self, container: Container) -> dt.datetime | None:
        """When a start on this machine last asked for this container (else when it
        was started or created, as Docker and its labels say)."""
        try:
            return dt.datetime.fromtimestamp(
                self.usage_record(str(container.name)).stat().st_mtime, dt.UTC
            )
        except OSError:
            pass
        state = (container.attrs or {}).get("State") or {}
        started = _timestamp(str(state.get("StartedAt") or "")) if isinstance(state, dict) else None
        if started is not None and started.year > 1:
            return started
        return _timestamp((container.labels or {}).get(naming.LABEL_CREATED, ""))

    def _start_sticky(
        self, client: docker.DockerClient, image: Image, spec: ContainerSpec, reach: Reachability
    ) -> tuple[Container, ServerAddress, bool]:
        shape_hash = naming.settings_hash(self._shape(image.id, spec, reach))
        name = naming.sticky_container_name(self.settings.prefix, self.settings.engine, shape_hash)
        lock_path = self._lock_path(name)
        try:
            with filelock.FileLock(str(lock_path), timeout=self.settings.startup_timeout + 60):
                # Recorded under the lock: a retirer holding it sees this start.
                self._record_start(name)
                found = self._find_or_create_sticky(client, name, shape_hash, image, spec, reach)
        except filelock.Timeout as exc:
            raise ServerStartError(
                f"waited too long for another freshdb process to start {name} "
                f"(lock {lock_path}) — is one stuck? `freshdb status` shows the server"
            ) from exc
        self._retire_superseded(client, image, keep=name)
        return found

    def _find_or_create_sticky(
        self,
        client: docker.DockerClient,
        name: str,
        shape_hash: str,
        image: Image,
        spec: ContainerSpec,
        reach: Reachability,
    ) -> tuple[Container, ServerAddress, bool]:
        container = self._find(client, name)
        if container is not None:
            self._check_ours(container)
            if container.status in ("dead", "removing"):
                # No server process runs in it, so no session can be using it.
                log.info("removing %s: it is %s", name, container.status)
                remove_container(container)
                container = None
        reused = False
        if container is None:
            password = secrets.token_urlsafe(18)
            container = self._create(client, name, shape_hash, spec, image, password, reach)
            # If Docker said the name was taken, another host or user made it meanwhile.
            self._check_ours(container)
        elif container.status in ("running", "restarting"):
            reused = True
        elif container.status == "paused":
            container.unpause()
            reused = True
        else:  # "exited" or "created": its server is not running, so nobody uses it
            log.info("starting stopped container %s (its tmpfs starts empty)", name)
            container.start()
        try:
            return container, self._wait_ready(container, spec, reach), reused
        except ServerStartError as exc:
            if reused:
                # Others' sessions may be using it (slowly): never remove it from here.
                raise ServerStartError(
                    f"the sticky server {name} runs but did not answer within "
                    f"{self.settings.startup_timeout:.0f} s; freshdb leaves it alone because "
                    "other sessions may be using it — `freshdb status` shows who uses it; "
                    "`freshdb down` removes it once they are done (`--force` removes it "
                    "anyway, cutting their connections); raise FRESHDB_STARTUP_TIMEOUT if the "
                    f"machine is slow. {_first_line(exc)}"
                ) from exc
            # Started here (new, or stopped before) and never ready: no session got in.
            # Left behind, it would only fail the next session the same way.
            remove_container(container)
            raise

    # -- retiring sticky containers ----------------------------------------------
    def retirement_reason(
        self, container: Container, unused_after: dt.timedelta | None = STICKY_UNUSED_AFTER
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
            current_id = self.client().images.get(image_name).id if image_name else None
        except docker.errors.ImageNotFound:
            current_id = None
        if current_id != running_id:
            now_names = "names another image" if current_id else "is no longer present"
            return f"superseded: {image_name or 'its image'} {now_names}"
        if unused_after is not None:
            last = self.last_started(container)
            if last is not None and dt.datetime.now(dt.UTC) - last > unused_after:
                return f"unused: no start asked for it in {_age(dt.datetime.now(dt.UTC) - last)}"
        return None

    def server_use(self, container: Container) -> ServerUse | None:
        """Who uses the server in a running container (``None``: it does not answer,
        so nobody can tell)."""
        engine = (container.labels or {}).get(naming.LABEL_ENGINE) or self.settings.engine
        try:
            dialect = dialect_for(engine)
            address = self.address_of(container, dialect)
            conn = dialect.connect(address, timeout=5.0)
            try:
                return dialect.server_use(conn)
            finally:
                conn.close()
        except Exception as exc:  # not answering: the caller must assume it is busy
            log.debug("cannot ask %s who uses it: %s", container.name, _first_line(exc))
            return None

    def retire(
        self,
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
        lock = filelock.FileLock(str(self._lock_path(name)), timeout=max(wait, 0.0))
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
                last = self.last_started(container)
                if last is not None and dt.datetime.now(dt.UTC) - last < grace:
                    return Retirement(name, False, None, "a start asked for it moments ago")
            deadline = time.monotonic() + wait
            use: ServerUse | None = None
            while not force and container.status in ("running", "paused", "restarting"):
                use = self.server_use(container) if container.status == "running" else None
                if use is not None and use.idle:
                    break
                if time.monotonic() >= deadline:
                    why = (
                        f"in use ({use.describe()})"
                        if use is not None
                        else f"it is {container.status} and does not answer, so who uses it "
                        "cannot be told"
                    )
                    return Retirement(name, False, use, why)
                time.sleep(0.2)
                container.reload()
            if not dry_run:
                log.debug("removing sticky server %s", name)
                remove_container(container)
            return Retirement(name, True, use, "idle" if not force else "forced")
        finally:
            lock.release()

    def _retire_superseded(self, client: docker.DockerClient, image: Image, keep: str) -> None:
        """Best effort, at start: remove idle containers this one supersedes."""
        try:
            candidates = [
                c
                for c in client.containers.list(
                    all=True,
                    sparse=True,
                    filters={
                        "label": [
                            f"{naming.LABEL_MANAGED}=true",
                            f"{naming.LABEL_PREFIX_NAME}={self.settings.prefix}",
                            f"{naming.LABEL_ENGINE}={self.settings.engine}",
                            f"{naming.LABEL_MODE}=sticky",
                        ]
                    },
                )
                if _sparse_name(c) != keep and _may_be_superseded(c, self.image_name, image.id)
            ]
            for candidate in candidates:
                container = client.containers.get(str(candidate.id))
                reason = self.retirement_reason(container, unused_after=None)
                if reason is None:
                    continue
                outcome = self.retire(container, grace=STICKY_START_GRACE)
                if outcome.removed:
                    log.info("retired sticky server %s (%s, idle)", outcome.name, reason)
                else:
                    log.debug("kept sticky server %s (%s): %s", outcome.name, reason, outcome.why)
        except Exception as exc:  # housekeeping must never fail a start
            log.debug("could not look for superseded sticky servers: %s", _first_line(exc))

    def _start_throwaway(
        self, client: docker.DockerClient, image: Image, spec: ContainerSpec, reach: Reachability
    ) -> tuple[Container, ServerAddress]:
        name = naming.throwaway_container_name(self.settings.prefix, self.settings.engine)
        password = secrets.token_urlsafe(18)
        shape_hash = naming.settings_hash(self._shape(image.id, spec, reach))
        container = self._create(client, name, shape_hash, spec, image, password, reach)
        _THROWAWAYS.remember(container)
        try:
            return container, self._wait_ready(container, spec, reach)
        except BaseException:
            _THROWAWAYS.forget(container.id or "")
            remove_container(container)
            raise

    def _find(self, client: docker.DockerClient, name: str) -> Container | None:
        try:
            return client.containers.get(name)
        except docker.errors.NotFound:
            return None

    def _create(
        self,
        client: docker.DockerClient,
        name: str,
        shape_hash: str,
        spec: ContainerSpec,
        image: Image,
        password: str,
        reach: Reachability,
    ) -> Container:
        run_spec = self.dialect.container_spec(self.settings, self.image_name, password)
        volumes = list((image.attrs.get("Config") or {}).get("Volumes") or {}) or [
            run_spec.data_directory
        ]
        # A tmpfs on every declared VOLUME path: otherwise Docker creates an anonymous
        # volume there that shadows the tmpfs, and the data silently lands on disk.
        tmpfs = {path: f"rw,size={self.settings.tmpfs_size},mode=1777" for path in volumes}
        try:
            return client.containers.run(
                self.image_name,
                command=list(run_spec.command),
                name=name,
                detach=True,
                environment=dict(run_spec.environment),
                labels=self._labels(shape_hash),
                tmpfs=tmpfs,
                # A free port chosen by Docker, on the chosen interface only.
                ports={f"{run_spec.port}/tcp": cast(Any, (reach.bind, None))},
                shm_size="256m",
            )
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # the name is taken: made meanwhile by someone else
                found = self._find(client, name)
                if found is not None:
                    return found
            raise ServerStartError(
                f"Docker could not start {self.image_name} as {name}: {_first_line(exc)}"
            ) from exc

    def _wait_ready(
        self, container: Container, spec: ContainerSpec, reach: Reachability
    ) -> ServerAddress:
        """Wait until the server answers a real query through the published port."""
        password = _password_of(container, spec)

        class NotReady(Exception):
            pass

        def probe() -> ServerAddress:
            container.reload()
            if container.status in ("exited", "dead", "removing"):
                raise ServerStartError(
                    f"the server container {container.name} stopped while starting; its last "
                    f"log lines:\n{_tail_logs(container)}"
                )
            port = _published_port(container, spec.port)
            if port is None:
                raise NotReady("port not published yet")
            address = ServerAddress(
                reach.host, port, spec.admin_user, password, spec.admin_database
            )
            try:
                self.dialect.ping(address, timeout=2.0)
            except ServerFullError:
                raise  # it answers, and is full: waiting (or replacing it) would not help
            except Exception as exc:
                raise NotReady(str(exc)) from exc
            return address

        try:
            for attempt in Retrying(
                stop=stop_after_delay(self.settings.startup_timeout),
                wait=wait_exponential(multiplier=0.02, max=0.25),
                retry=retry_if_exception_type(NotReady),
                reraise=True,
            ):
                with attempt:
                    return probe()
        except NotReady as exc:
            raise ServerStartError(
                f"the server in {container.name} did not answer a query within "
                f"{self.settings.startup_timeout:.0f} s (last error: {exc}); its last log "
                f"lines:\n{_tail_logs(container)}\nRaise FRESHDB_STARTUP_TIMEOUT if the "
                "machine is slow"
            ) from exc
        raise AssertionError("unreachable")

    # -- leftovers --------------------------------------------------------------
    def list_containers(self) -> list[Container]:
        """Every container freshdb made with this prefix (running or not)."""
        return list_managed_containers(self.client(), self.settings.prefix)

    def reap_leaked_throwaways(self) -> list[str]:
        """Remove throwaway containers of this host whose owner process is gone."""
        removed = []
        for container in self.list_containers():
            if is_leaked_throwaway(container):
                log.info("removing leaked throwaway container %s", container.name)
                remove_container(container)
                removed.append(str(container.name))
        return removed

    # -- inspection (the CLI) -------------------------------------------------------
    def find_sticky(self) -> Container | None:
        """The sticky container of these settings, if it exists (never starts one)."""
        try:
            container = self.client().containers.get(self.sticky_name())
        except docker.errors.NotFound:
            return None
        self._check_ours(container)
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
        port = _published_port(container, spec.port)
        if port is None:
            raise ServerUnavailableError(
                f"container {container.name} publishes no port for its server (it is "
                f"{container.status}) — `freshdb up` starts the sticky server again"
            )
        password = _password_of(container, spec)
        host = self.reachability().host
        return ServerAddress(host, port, spec.admin_user, password, spec.admin_database)


@dataclasses.dataclass(frozen=True)
class Retirement:
    """What became of a sticky container freshdb tried to retire."""

    name: str
    removed: bool
    #: Who used it when last asked (``None``: not asked, or it did not answer).
    use: ServerUse | None
    #: Why it was (or was not) removed.
    why: str


def _sparse_name(container: Container) -> str:
    names = (container.attrs or {}).get("Names") or []
    return str(names[0]).lstrip("/") if names else str(container.name or "")


def _may_be_superseded(container: Container, image_name: str, image_id: str | None) -> bool:
    """From a cheap listing: could this container be superseded by one of ``image_id``?"""
    attrs = container.attrs or {}
    labels = attrs.get("Labels") or {}
    if labels.get(naming.LABEL_IMAGE) not in (None, image_name):
        return False  # another image name altogether: not this start's business
    name = _sparse_name(container)
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


def list_managed_containers(client: docker.DockerClient, prefix: str | None) -> list[Container]:
    """Containers bearing freshdb's labels (and ``prefix``, if given)."""
    filters = [f"{naming.LABEL_MANAGED}=true"]
    if prefix is not None:
        filters.append(f"{naming.LABEL_PREFIX_NAME}={prefix}")
    found = client.containers.list(all=True, filters={"label": filters})
    return [c for c in found if prefix is None or str(c.name).startswith(f"{prefix}-")]


def is_leaked_throwaway(container: Container, max_age: dt.timedelta | None = None) -> bool:
    """A throwaway container whose owner process (on this host) is gone, or too old."""
    labels = container.labels or {}
    if labels.get(naming.LABEL_MODE) != "throwaway" or labels.get(naming.LABEL_MANAGED) != "true":
        return False
    if max_age is not None:
        try:
            created = dt.datetime.fromisoformat(labels.get(naming.LABEL_CREATED, ""))
            if dt.datetime.now(dt.UTC) - created > max_age:
                return True
        except ValueError:
            pass
    if labels.get(naming.LABEL_OWNER_HOST) != socket.gethostname():
        return False
    try:
        pid = int(labels.get(naming.LABEL_OWNER_PID, ""))
    except ValueError:
        return False
    return pid != os.getpid() and not _pid_alive(pid)


def remove_container(container: Container) -> None:
    """Remove a container freshdb made, with its anonymous volumes; gone already is fine."""
    try:
        container.remove(force=True, v=True)
    except docker.errors.NotFound:
        pass
    except ENGINE_UNREACHABLE as exc:
        raise DockerUnavailableError(
            f"cannot remove container {container.name}: the Docker engine does not answer "
            f"({_first_line(exc)}) — start Docker; the next freshdb session or `freshdb "
            "prune` removes it once its owner process is gone"
        ) from exc
    except docker.errors.APIError as exc:
        if "already in progress" not in str(exc):
            raise FreshDBError(f"Docker failed to remove {container.name}: {exc}") from exc


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
        created=_timestamp(labels.get(naming.LABEL_CREATED, "")),
        started=_timestamp(str(state.get("StartedAt") or "")) if running else None,
        memory_bytes=memory,
    )


def _timestamp(text: str) -> dt.datetime | None:
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


def exec_interactive(
    container: Container, command: Sequence[str], environment: Mapping[str, str]
) -> int:
    """Run ``command`` in the container wired to this process's terminal; its exit code.

    Like ``docker exec -i`` (and ``-t`` when stdin and stdout are terminals), through
    the SDK: the exec's socket is pumped to and from file descriptors 0, 1 and 2.
    """
    api = cast(docker.DockerClient, container.client).api
    use_tty = os.isatty(0) and os.isatty(1)
    try:
        exec_id = api.exec_create(
            container.id,
            list(command),
            stdin=True,
            tty=use_tty,
            environment=dict(environment),
        )["Id"]
        response = api.exec_start(exec_id, tty=use_tty, socket=True)
    except docker.errors.DockerException as exc:
        raise FreshDBError(
            f"Docker could not run {command[0]} in {container.name}: {_first_line(exc)}"
        ) from exc
    # docker-py hands back the socket wrapped in a SocketIO; the pump needs the socket.
    sock = cast(socket.socket, getattr(response, "_sock", response))
    saved_terminal = None
    if use_tty:
        saved_terminal = termios.tcgetattr(0)
        tty.setraw(0)
        _resize_exec(api, exec_id)
        signal.signal(signal.SIGWINCH, lambda *_: _resize_exec(api, exec_id))
    try:
        threading.Thread(target=_pump_stdin, args=(sock,), daemon=True).start()
        _pump_output(sock, raw=use_tty)
    finally:
        if saved_terminal is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved_terminal)
            signal.signal(signal.SIGWINCH, signal.SIG_DFL)
        with contextlib.suppress(OSError):
            sock.close()
    for _ in range(100):
        details = api.exec_inspect(exec_id)
        if not details.get("Running"):
            return int(details.get("ExitCode") or 0)
        time.sleep(0.05)
    return 1


_STDERR_KEPT = 64 * 1024


def exec_streaming(
    container: Container,
    command: Sequence[str],
    environment: Mapping[str, str],
    stdin: ByteSource | None = None,
    stdout: BinaryIO | None = None,
) -> ExecResult:
    """Run ``command`` in the container, ``stdin`` streamed in and stdout streamed out.

    For data of any size (a dump, a restore): nothing is held in memory but a
    chunk, and the end of stderr for the error message.
    """
    api = cast(docker.DockerClient, container.client).api
    try:
        exec_id = api.exec_create(
            container.id,
            list(command),
            stdin=stdin is not None,
            tty=False,
            environment=dict(environment),
        )["Id"]
        response = api.exec_start(exec_id, tty=False, socket=True)
    except docker.errors.DockerException as exc:
        raise FreshDBError(
            f"Docker could not run {command[0]} in {container.name}: {_first_line(exc)}"
        ) from exc
    sock = cast(socket.socket, getattr(response, "_sock", response))
    errors = bytearray()
    try:
        if stdin is not None:
            threading.Thread(
                target=_pump_file, args=(stdin, sock), name="freshdb-exec-stdin", daemon=True
            ).start()
        for stream, payload in _frames(sock):
            if stream == 2:
                errors += payload
                del errors[:-_STDERR_KEPT]
            elif stdout is not None:
                stdout.write(payload)
    finally:
        with contextlib.suppress(OSError):
            sock.close()
    for _ in range(200):
        details = api.exec_inspect(exec_id)
        if not details.get("Running"):
            return ExecResult(int(details.get("ExitCode") or 0), errors.decode(errors="replace"))
        time.sleep(0.05)
    return ExecResult(1, errors.decode(errors="replace") + "\n(the command did not end)")


def _pump_file(source: ByteSource, sock: socket.socket) -> None:
    try:
        while data := source.read(1 << 20):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # the program in the container sees EOF
    except (OSError, ValueError):
        pass  # the program ended first (it failed: its exit code says so)


def _frames(sock: socket.socket) -> Iterator[tuple[int, bytes]]:
    """Docker's framing of a non-tty exec: 1 byte stream, 3 zero bytes, 4-byte length."""
    buffer = b""
    while chunk := sock.recv(1 << 20):
        buffer += chunk
        while len(buffer) >= 8:
            length = int.from_bytes(buffer[4:8], "big")
            if len(buffer) < 8 + length:
                break
            yield buffer[0], buffer[8 : 8 + length]
            buffer = buffer[8 + length :]


def _resize_exec(api: Any, exec_id: str) -> None:
    size = os.get_terminal_size(1)
    with contextlib.suppress(docker.errors.DockerException):
        api.exec_resize(exec_id, height=size.lines, width=size.columns)


def _pump_stdin(sock: socket.socket) -> None:
    try:
        while data := os.read(0, 65536):
            sock.sendall(data)
        # End of input: the program in the container sees EOF (e.g. psql < script.sql).
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the exec ended first


def _pump_output(sock: socket.socket, raw: bool) -> None:
    buffer = b""
    while chunk := sock.recv(65536):
        if raw:  # a tty: one stream, no framing
            _write_all(1, chunk)
            continue
        # Without a tty Docker frames output: 1 byte stream, 3 zero bytes, 4-byte length.
        buffer += chunk
        while len(buffer) >= 8:
            length = int.from_bytes(buffer[4:8], "big")
            if len(buffer) < 8 + length:
                break
            stream, payload, buffer = buffer[0], buffer[8 : 8 + length], buffer[8 + length :]
            _write_all(2 if stream == 2 else 1, payload)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _password_of(container: Container, spec: ContainerSpec) -> str:
    environment = (container.attrs.get("Config") or {}).get("Env") or []
    values = dict(item.split("=", 1) for item in environment if "=" in item)
    for variable in spec.password_variables:
        if values.get(variable):
            return str(values[variable])
    raise ContainerConflictError(
        f"container {container.name} has no {'/'.join(spec.password_variables)}; it is not "
        "usable by freshdb — remove it with `freshdb down`"
    )


def _published_port(container: Container, port: int) -> int | None:
    bindings = ((container.attrs.get("NetworkSettings") or {}).get("Ports") or {}).get(
        f"{port}/tcp"
    )
    for binding in bindings or []:
        if binding.get("HostPort"):
            return int(binding["HostPort"])
    return None


def _tail_logs(container: Container, lines: int = 20) -> str:
    try:
        raw = container.logs(tail=lines)
    except docker.errors.DockerException as exc:
        return f"(logs unavailable: {exc})"
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    return "\n".join("    " + line for line in text.rstrip().splitlines())


class _ThrowawayRegistry:
    """Removes this process's throwaway containers at exit and on SIGTERM/SIGHUP."""

    def __init__(self) -> None:
        self._containers: dict[str, Container] = {}
        self._lock = threading.Lock()
        self._installed = False
        self._previous: dict[int, Any] = {}

    def remember(self, container: Container) -> None:
        with self._lock:
            self._containers[container.id or ""] = container
            if not self._installed:
                self._installed = True
                atexit.register(self.remove_all)
                self._install_signal_handlers()

    def forget(self, container_id: str) -> None:
        with self._lock:
            self._containers.pop(container_id, None)

    def remove_all(self) -> None:
        with self._lock:
            containers, self._containers = list(self._containers.values()), {}
        for container in containers:
            with contextlib.suppress(Exception):
                remove_container(container)

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(ValueError, OSError):
                self._previous[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.remove_all()
        previous = self._previous.get(signum, signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
            return
        if previous == signal.SIG_IGN:
            return
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


_THROWAWAYS = _ThrowawayRegistry()


__all__ = [
    "DOWN_WAIT_SECONDS",
    "STICKY_START_GRACE",
    "STICKY_UNUSED_AFTER",
    "ContainerFacts",
    "DockerBackend",
    "Retirement",
    "connect_docker",
    "container_facts",
    "exec_interactive",
    "exec_streaming",
    "is_leaked_throwaway",
    "list_managed_containers",
    "remove_container",
    "state_directory",
]
