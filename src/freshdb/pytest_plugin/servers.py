"""The servers of a pytest session: started on first use, cached by settings.

Nothing here touches Docker or a database until a fixture asks for a server. Under
pytest-xdist every worker has its own :class:`ServerRegistry` (so its own owner id
and pool) while all workers share one server and one template: a sticky container
has a deterministic name taken under a file lock, the template is built under the
server's advisory lock, and a throwaway container is started once, on the first
worker's request, by the controller's :class:`ThrowawayBroker`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from freshdb import naming
from freshdb.config import Settings
from freshdb.errors import FreshDBError, ServerStartError
from freshdb.pytest_plugin.options import (
    ServerRequest,
    SnapshotRequest,
    resolve_schema,
    server_request,
)

if TYPE_CHECKING:
    import pytest

    # The server machinery (SQLAlchemy, drivers, Docker) is imported when a server is
    # first asked for: pytest creates the registry for every run.
    from freshdb import Snapshot
    from freshdb.backends import ServerBackend
    from freshdb.database import Database
    from freshdb.server import DatabaseServer

log = logging.getLogger("freshdb")

#: The settings that shape a container; the rest (schema, pool) are each worker's own.
CONTAINER_FIELDS = (
    "engine",
    "image",
    "mode",
    "tmpfs_size",
    "prefix",
    "host",
    "max_connections",
    "startup_timeout",
)
_BROKER_POLL_SECONDS = 0.05
# Waiting for the controller may include pulling an image, on top of the start itself.
_BROKER_EXTRA_WAIT_SECONDS = 600.0


def describe_server(
    server: DatabaseServer, worker: str, *, mode: str | None = None, container: str | None = None
) -> dict[str, Any]:
    """What the end-of-session summary says about a started server (no secrets).

    Plain values only: under xdist this travels from a worker to the controller.
    """
    stats = server.stats()
    running = server.running
    return {
        "worker": worker,
        "engine": server.settings.engine,
        "image": (running.image if running else None) or server.settings.image,
        "mode": mode or server.settings.mode,
        "url": server.url.render_as_string(hide_password=True) if running else None,
        "container": container or (running.container_name if running else None),
        "server_reused": running.reused if running else None,
        "template": stats.get("template"),
        "template_reused": stats.get("template_reused"),
        "template_build_seconds": stats.get("template_build_seconds"),
        "pool": {
            name: stats.get(name)
            for name in ("size", "acquired", "waits", "wait_seconds", "clones", "drops", "kept")
        },
    }


def describe_snapshot(snapshot: Snapshot) -> dict[str, Any]:
    """What the summary says about a snapshot this worker used (plain values)."""
    return {
        "name": snapshot.name,
        "reused": snapshot.reused,
        "build_seconds": snapshot.build_seconds,
    }


@dataclasses.dataclass
class RegistryEntry:
    server: DatabaseServer
    shown_mode: str | None = None
    container: str | None = None


class ServerRegistry:
    """This process's servers for one pytest session, keyed by their settings."""

    def __init__(
        self,
        base_arguments: Mapping[str, Any],
        rootdir: Path,
        worker: str,
        broker: BrokerClient | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.base_arguments = dict(base_arguments)
        self.rootdir = rootdir
        self.worker = worker
        self.broker = broker
        #: Where a template build a server start runs shows its progress (pytest's
        #: terminal); ``None``: only logged.
        self.progress = progress
        self._default: ServerRequest | None = None
        self._specs: dict[tuple[Any, ...], ServerRequest] = {}
        self._servers: dict[tuple[Settings, object], RegistryEntry] = {}
        self._failures: dict[tuple[Settings, object], BaseException] = {}
        self._shared: dict[tuple[int, int], tuple[DatabaseServer, Database]] = {}
        self._snapshots: dict[tuple[int, object, str | None], Snapshot] = {}
        self._snapshot_failures: dict[tuple[int, object, str | None], BaseException] = {}
        #: The snapshots used on each server (by id), for the summary.
        self._used_snapshots: dict[int, list[Snapshot]] = {}
        self._reports: dict[int, dict[str, Any]] = {}
        self._closed = False

    # -- which server ---------------------------------------------------------------
    def request(self, overrides: Mapping[str, Any] | None = None) -> ServerRequest:
        """The settings of the run's server, or of one picked by ``overrides``."""
        if overrides:
            # Markers ask once per test: resolve each distinct set of overrides once.
            try:
                cache_key: tuple[Any, ...] | None = tuple(sorted(overrides.items()))
                hash(cache_key)
            except TypeError:
                cache_key = None
            spec = self._specs.get(cache_key) if cache_key is not None else None
            if spec is None:
                spec = server_request(self.base_arguments, overrides, self.rootdir)
                if cache_key is not None:
                    self._specs[cache_key] = spec
            return spec
        if self._default is None:
            self._default = server_request(self.base_arguments, {}, self.rootdir)
        return self._default

    def cli_defaults(self) -> Settings | None:
        """The settings the ``freshdb`` CLI would use here (environment, pyproject.toml)."""
        try:
            return server_request({}, {}, self.rootdir).settings
        except FreshDBError:
            return None

    def server(self, spec: ServerRequest) -> DatabaseServer:
        """The started server for ``spec``: started now if this session has none yet."""
        key = spec.key
        owned = self._servers.get(key)
        if owned is not None:
            return owned.server
        failure = self._failures.get(key)
        if failure is not None:
            raise FreshDBError(
                f"the freshdb server failed to start earlier in this session: {failure}"
            ) from failure
        try:
            owned = self._start(spec)
        except BaseException as exc:
            self._failures[key] = exc
            raise
        self._servers[key] = owned
        return owned.server

    def _start(self, spec: ServerRequest) -> RegistryEntry:
        from freshdb.server import DatabaseServer

        settings, shown_mode, container = spec.settings, None, None
        if settings.mode == "throwaway" and self.broker is not None:
            answer = self.broker.shared_server(settings)
            settings = settings.replace(mode="external", url=answer["url"])
            shown_mode = "throwaway (one for all xdist workers)"
            container = answer.get("container")
        fields = dataclasses.asdict(settings)
        fields.pop("schema")
        server = DatabaseServer(schema=spec.schema, **fields)
        if self.progress is None:
            server.start()
        else:
            from freshdb.template import build_progress_shown

            with build_progress_shown(self.progress):
                server.start()
        return RegistryEntry(server, shown_mode, container)

    # -- snapshots --------------------------------------------------------------------
    def snapshot(self, server: DatabaseServer, wanted: SnapshotRequest) -> Snapshot:
        """The snapshot of ``wanted.seed`` on ``server``: built (or found) on first use.

        Asked once per session and seed: every test asking again gets the same
        :class:`~freshdb.Snapshot`. Across xdist workers and sessions, the server's
        build lock and the snapshot's fingerprint make the seed run once.
        """
        seed = resolve_schema(wanted.seed, self.rootdir)
        try:
            hash(seed)
            identity: object = seed
        except TypeError:
            identity = ("object", id(seed))
        key = (id(server), identity, wanted.key)
        found = self._snapshots.get(key)
        if found is not None:
            return found
        failure = self._snapshot_failures.get(key)
        if failure is not None:
            raise FreshDBError(
                f"building the snapshot of {wanted.seed!r} failed earlier in this session: "
                f"{failure}"
            ) from failure
        try:
            found = server.snapshot(seed, key=wanted.key)
        except BaseException as exc:
            self._snapshot_failures[key] = exc
            raise
        self._snapshots[key] = found
        self._used_snapshots.setdefault(id(server), []).append(found)
        return found

    # -- savepoint mode ---------------------------------------------------------------
    def shared_database(self, server: DatabaseServer, source: Snapshot | None = None) -> Database:
        """This worker's one copy on ``server`` (of ``source``, a snapshot, if given)
        for the whole session (savepoint mode)."""
        key = (id(server), id(source))
        entry = self._shared.get(key)
        if entry is None:
            entry = (server, (source or server).database())
            self._shared[key] = entry
        return entry[1]

    def replace_shared_database(
        self, server: DatabaseServer, source: Snapshot | None = None
    ) -> None:
        """Drop this worker's shared copy: the next test gets a new one."""
        entry = self._shared.pop((id(server), id(source)), None)
        if entry is not None:
            entry[1].release()

    # -- reporting and the end ------------------------------------------------------
    def note(self, server: DatabaseServer) -> None:
        """Remember ``server``'s latest figures for the summary (servers from user
        fixtures are stopped before the session ends, so they are noted while in use)."""
        owned = next((o for o in self._servers.values() if o.server is server), None)
        try:
            report = describe_server(
                server,
                self.worker,
                mode=owned.shown_mode if owned else None,
                container=owned.container if owned else None,
            )
        except FreshDBError:
            return  # never started
        if report["pool"]["acquired"] is None and id(server) in self._reports:
            return  # stopped already: keep the figures noted while it ran
        report["snapshots"] = [
            describe_snapshot(snapshot) for snapshot in self._used_snapshots.get(id(server), [])
        ]
        self._reports[id(server)] = report

    def close(self) -> list[dict[str, Any]]:
        """Give back the shared copies, stop this session's servers; the summary's figures."""
        if not self._closed:
            self._closed = True
            for server, database in self._shared.values():
                with contextlib.suppress(Exception):
                    database.release()
                self.note(server)
            self._shared.clear()
            for owned in self._servers.values():
                self.note(owned.server)
                try:
                    owned.server.stop()
                except Exception as exc:
                    log.warning("stopping %r failed: %s", owned.server, exc)
        return list(self._reports.values())


def terminal_progress(config: pytest.Config) -> Callable[[str], None] | None:
    """Writes a line on pytest's terminal, past output capturing (a session server
    starts inside a test's setup, whose output is captured); ``None`` where pytest
    shows no terminal (an xdist worker: its controller shows the tests)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return None
    capture = config.pluginmanager.get_plugin("capturemanager")

    def show(line: str) -> None:
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.ensure_newline()
            reporter.write_line(line)

    return show


def _container_fields(settings: Settings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in CONTAINER_FIELDS}


def _write_atomically(path: Path, payload: Mapping[str, Any], *, exclusive: bool) -> bool:
    """Write JSON so readers never see half a file; with ``exclusive``, only if absent."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(payload, stream)
        if not exclusive:
            os.replace(temporary, path)
            return True
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


class ThrowawayBroker:
    """On the xdist controller: starts the throwaway servers workers ask for.

    The controller outlives every worker, so the container it starts (and whose
    owner-pid label is the controller's) serves all of them and is removed when the
    controller ends. It starts nothing until a worker asks: a run whose tests use no
    freshdb fixture never touches Docker.
    """

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="freshdb-xdist-"))
        self._stop = threading.Event()
        self._backends: list[ServerBackend] = []
        self._thread = threading.Thread(target=self._serve, name="freshdb-broker", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.wait(_BROKER_POLL_SECONDS):
            for request in sorted(self.directory.glob("*.request.json")):
                answer = request.with_name(request.name.replace(".request.", ".answer."))
                if not answer.exists():
                    self._answer(request, answer)

    def _answer(self, request: Path, answer: Path) -> None:
        from freshdb.backends import backend_for
        from freshdb.dialects import dialect_for

        try:
            settings = Settings(**json.loads(request.read_text())).replace()
            dialect = dialect_for(settings.engine)
            backend = backend_for(settings, dialect)
            running = backend.start()
            self._backends.append(backend)
            payload: dict[str, Any] = {
                "url": dialect.sync_url(running.address).render_as_string(hide_password=False),
                "container": running.container_name,
            }
        except Exception as exc:
            log.warning("starting a throwaway server for the xdist workers failed: %s", exc)
            payload = {"error": f"{type(exc).__name__}: {exc}"}
        _write_atomically(answer, payload, exclusive=False)

    def close(self) -> None:
        """Remove the throwaway servers (every worker is done with them)."""
        self._stop.set()
        self._thread.join(timeout=_BROKER_EXTRA_WAIT_SECONDS)
        for backend in self._backends:
            try:
                backend.stop()
            except Exception as exc:
                log.warning("removing a throwaway server failed: %s", exc)
        self._backends.clear()
        shutil.rmtree(self.directory, ignore_errors=True)


class BrokerClient:
    """On an xdist worker: asks the controller's :class:`ThrowawayBroker` for a server."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def shared_server(self, settings: Settings) -> dict[str, Any]:
        """The admin URL (and container name) of the throwaway server for ``settings``."""
        fields = _container_fields(settings)
        key = naming.settings_hash(fields)
        request = self.directory / f"{key}.request.json"
        answer = self.directory / f"{key}.answer.json"
        # The first worker to get here asks; the others wait for the same answer.
        _write_atomically(request, fields, exclusive=True)
        deadline = time.monotonic() + settings.startup_timeout + _BROKER_EXTRA_WAIT_SECONDS
        while not answer.exists():
            if time.monotonic() > deadline:
                raise ServerStartError(
                    "the pytest-xdist controller did not start the throwaway server in time "
                    f"(no answer in {self.directory}) — run with -n 0 to see why, or use "
                    "--freshdb-mode=sticky"
                )
            time.sleep(_BROKER_POLL_SECONDS)
        payload: dict[str, Any] = json.loads(answer.read_text())
        if "error" in payload:
            raise ServerStartError(
                f"the pytest-xdist controller could not start the throwaway server: "
                f"{payload['error']}"
            )
        return payload
