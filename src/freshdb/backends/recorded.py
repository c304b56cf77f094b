"""The warm start of a sticky server: its recorded address first, Docker's way otherwise.

A sticky start through the Docker SDK costs a new process more than everything
else it does (the SDK's import alone is 70-190 ms; then a client, the image, the
container, the lock). When a start of the same settings found the server before,
:class:`RecordedStickyBackend` takes the short way, and every check that makes the
long way safe is still made, more cheaply:

- the record is named by every setting that shapes the container and is known
  without Docker, and by what picks the engine (:func:`~.records.record_key`):
  other settings find no record, and take the long way;
- under the container's start lock, the start is recorded (so a retirer spares
  the container), as the long way does;
- the engine is asked, over its socket without the SDK, whether the container of
  the record still runs, under its name, from the image the image name resolves
  to now, publishing the recorded port (a rebuilt or pulled image, a removed or
  re-created container: the long way, which makes or finds the right one);
- the server at the address must say it is the recorded one
  (:meth:`~freshdb.dialects.base.Dialect.server_identity`), over the connection
  that becomes the session's lease: a foreign server on a reused port never is.

Any doubt takes the long way, which records the address again. A start that took
the short way retires no superseded container (the long way does that whenever a
new container is made; ``freshdb prune`` does it too).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from freshdb.backends import records
from freshdb.backends.base import ProgramRunner, RunningServer, ServerBackend
from freshdb.backends.local_engine import EngineQueryError, LocalEngine, socket_path
from freshdb.config import Settings
from freshdb.dialects.base import DBAPIConnection, Dialect
from freshdb.naming import LABEL_MANAGED, LABEL_PREFIX_NAME

if TYPE_CHECKING:
    from freshdb.backends.docker import DockerBackend, SupersededRetirer

log = logging.getLogger("freshdb")

#: How long connecting to the recorded address may take before the long way is
#: taken (a paused server accepts the connection and never answers).
CONNECT_TIMEOUT = 2.0


def record_mismatch(
    record: records.AddressRecord,
    image: dict[str, Any] | None,
    container: dict[str, Any] | None,
    *,
    prefix: str,
    server_port: int,
) -> str | None:
    """Why the engine's answers say the record no longer holds (``None``: it holds).

    ``image`` and ``container`` are the engine's inspections of the configured
    image name and of the recorded container id.
    """
    if image is None:
        return f"image {record.image} is gone"
    if image.get("Id") != record.image_id:
        return f"image {record.image} is another image now"
    if container is None:
        return f"container {record.name} is gone"
    if str(container.get("Name", "")).lstrip("/") != record.name:
        return f"container {record.container_id[:12]} is not named {record.name}"
    labels = (container.get("Config") or {}).get("Labels") or {}
    if labels.get(LABEL_MANAGED) != "true" or labels.get(LABEL_PREFIX_NAME) != prefix:
        return f"container {record.name} is not freshdb's of prefix {prefix}"
    if container.get("Image") != record.image_id:
        return f"container {record.name} runs another image"
    if (container.get("State") or {}).get("Status") != "running":
        return f"container {record.name} is not running"
    bindings = ((container.get("NetworkSettings") or {}).get("Ports") or {}).get(
        f"{server_port}/tcp"
    ) or []
    ports = {str(binding.get("HostPort")) for binding in bindings}
    if str(record.address.port) not in ports:
        return f"container {record.name} no longer publishes port {record.address.port}"
    return None


class RecordedStickyBackend(ServerBackend):
    """A sticky server in Docker, reached at its recorded address when that holds.

    Everything else (a first start, a check whether the container is still there,
    running programs in it) is the :class:`~freshdb.backends.docker.DockerBackend`'s,
    made when first needed.
    """

    def __init__(
        self,
        settings: Settings,
        dialect: Dialect,
        *,
        retire_superseded: SupersededRetirer | None = None,
    ) -> None:
        self.settings = settings
        self.dialect = dialect
        self.image_name = settings.image or dialect.default_image(settings.engine)
        self._retire_superseded = retire_superseded
        self._docker: DockerBackend | None = None
        self._docker_lock = threading.Lock()
        self._record: records.AddressRecord | None = None  # the record this start used
        self._connection: DBAPIConnection | None = None  # checked, for the lease

    # -- starting -----------------------------------------------------------------
    def start(self) -> RunningServer:
        started = time.perf_counter()
        spec = self.dialect.container_spec(self.settings, self.image_name, "")
        key = records.record_key(self.settings, self.image_name, list(spec.command))
        record = records.read_record(key)
        if record is not None:
            # Checking the record is short and mostly waiting: the imports start now.
            self.begin_meanwhile()
            running = self._reuse(key, record, spec.port, started)
            if running is not None:
                return running
        backend = self._docker_backend()
        backend.meanwhile, self.meanwhile = self.meanwhile, None
        running = backend.start()
        self._remember(key, backend, running)
        return running

    def _reuse(
        self, key: str, record: records.AddressRecord, server_port: int, started: float
    ) -> RunningServer | None:
        """The recorded server, if it still holds (else the record is forgotten)."""
        path = socket_path(record.docker_url)
        if path is None:
            return None  # only a local engine is asked without the SDK
        try:
            with records.start_lock_held(
                records.lock_path(record.name, record.docker_url),
                timeout=self.settings.startup_timeout + 60,
            ):
                # Under the lock, as the long way does: a retirer that held it has
                # decided (the engine's answer says so); one taking it later sees
                # this start and spares the container. Only a container this start
                # uses is marked as wanted: a superseded one must stay retirable.
                why_not = self._engine_says(record, path, server_port)
                if why_not is None:
                    records.record_start(record.name, record.docker_url)
        except records.StartLockTimeout:
            return None  # the long way says who holds it
        if why_not is None:
            why_not = self._check_identity(record)
        if why_not is not None:
            log.debug("not using the recorded address of %s: %s", record.name, why_not)
            records.forget_record(key)
            return None
        self._record = record
        return RunningServer(
            address=record.address,
            mode="sticky",
            container_id=record.container_id,
            container_name=record.name,
            image=self.image_name,
            reused=True,
            startup_seconds=time.perf_counter() - started,
            from_record=True,
        )

    def _engine_says(
        self, record: records.AddressRecord, path: str, server_port: int
    ) -> str | None:
        try:
            with LocalEngine(path) as engine:
                image = engine.image(self.image_name)
                container = engine.container(record.container_id)
        except EngineQueryError as exc:
            return f"the Docker engine did not answer plainly ({exc})"
        return record_mismatch(
            record, image, container, prefix=self.settings.prefix, server_port=server_port
        )

    def _check_identity(self, record: records.AddressRecord) -> str | None:
        try:
            conn = self.dialect.connect(record.address, timeout=CONNECT_TIMEOUT)
        except Exception as exc:
            return f"connecting to {record.address.host}:{record.address.port} failed: {exc}"
        try:
            identity = self.dialect.server_identity(conn)
        except Exception as exc:
            conn.close()
            return f"the server did not say who it is: {exc}"
        if identity is None or identity != record.identity:
            conn.close()
            return "another server answers at its address"
        self._connection = conn
        return None

    def _remember(self, key: str, backend: DockerBackend, running: RunningServer) -> None:
        """Record where the long way found the server, for the next start (best effort)."""
        image_id, docker_url = backend.image_id, backend.docker_url
        if not (running.container_id and running.container_name and image_id and docker_url):
            return
        if socket_path(docker_url) is None:
            return  # no start could check it without the SDK
        try:
            conn = self.dialect.connect(running.address)
        except Exception as exc:
            log.debug("not recording the address of %s: %s", running.container_name, exc)
            return
        try:
            identity = self.dialect.server_identity(conn)
        except Exception as exc:
            log.debug("not recording the address of %s: %s", running.container_name, exc)
            conn.close()
            return
        if identity is None:
            conn.close()
            return
        self._connection = conn
        records.write_record(
            key,
            records.AddressRecord(
                name=running.container_name,
                container_id=running.container_id,
                docker_url=docker_url,
                image=self.image_name,
                image_id=image_id,
                address=running.address,
                identity=identity,
            ),
        )

    def take_admin_connection(self) -> DBAPIConnection | None:
        connection, self._connection = self._connection, None
        return connection

    def stop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
        if self._docker is not None:
            self._docker.stop()

    # -- the rest is Docker's --------------------------------------------------------
    def _docker_backend(self) -> DockerBackend:
        with self._docker_lock:
            if self._docker is None:
                from freshdb.backends.docker import DockerBackend

                self._docker = DockerBackend(
                    self.settings, self.dialect, retire_superseded=self._retire_superseded
                )
                if self._record is not None:
                    # Started the short way: the Docker backend learns its container.
                    self._docker.adopt(self._record.container_id)
            return self._docker

    @property
    def runs_programs(self) -> bool:
        return True

    def program_runner(self) -> ProgramRunner:
        return self._docker_backend().program_runner()

    def check_alive(self) -> bool:
        return self._docker_backend().check_alive()

    def pause_note(self) -> str | None:
        return self._docker_backend().pause_note()


__all__ = ["RecordedStickyBackend", "record_mismatch"]
