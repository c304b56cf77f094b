"""The server dies mid-session (``docker kill``, ``docker rm -f``), or the Docker engine
stops answering: freshdb says so clearly and at once, never hangs, never hands out a
copy on a dead server, and the next session recovers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import resource
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

import freshdb
from freshdb.backends.docker_discovery import locate_docker
from freshdb.errors import DockerUnavailableError, ServerUnavailableError
from freshdb.migrators import CallableMigrator

from .conftest import NEVER_HANGS, Admin, Engine, new_prefix

pytestmark = [pytest.mark.docker, pytest.mark.server]


def items(connection: Any) -> None:
    """A one-table schema."""
    connection.exec_driver_sql("CREATE TABLE items (id INT PRIMARY KEY)")


def wait_for_ready(server: freshdb.DatabaseServer, count: int) -> None:
    """Wait until the pool holds ``count`` ready copies."""
    deadline = time.monotonic() + NEVER_HANGS
    while server.stats()["ready"] < count:
        assert time.monotonic() < deadline, server.stats()
        time.sleep(0.02)


async def use_async(server: freshdb.DatabaseServer) -> None:
    """Take a copy from async code."""
    async with server.adatabase() as db:
        assert db.name


@pytest.mark.parametrize("death", ["docker kill", "docker rm -f"])
def test_a_dead_server_is_reported_at_once_and_the_next_session_recovers(
    engine: Engine, death: str, docker_client: Any
) -> None:
    prefix = new_prefix()
    schema = CallableMigrator(items, key=secrets.token_hex(4))
    server = engine.server(prefix, pool_size=2, schema=schema).start()
    assert server.running is not None
    container = docker_client.containers.get(server.running.container_id)
    held = server.database()
    wait_for_ready(server, 2)  # copies that must not be handed out once the server died

    if death == "docker kill":
        container.kill()
        container.wait(timeout=NEVER_HANGS)
    else:
        container.remove(force=True)

    started = time.monotonic()
    with pytest.raises(ServerUnavailableError) as error:
        server.database()
    assert time.monotonic() - started < NEVER_HANGS
    message = str(error.value)
    assert f"the server container {container.name} is gone" in message
    assert "start a new session" in message
    # Every later call says the same at once, sync or async.
    with pytest.raises(ServerUnavailableError, match="is gone"):
        server.database(timeout=NEVER_HANGS)
    with pytest.raises(ServerUnavailableError, match="is gone"):
        asyncio.run(use_async(server))
    held.release()  # never blocks: the drop happens (or fails) in the background
    server.stop()
    assert time.monotonic() - started < NEVER_HANGS

    with engine.server(prefix, pool_size=1, schema=schema) as again:
        assert again.running is not None
        if death == "docker kill":
            assert again.running.container_id == container.id  # started again
        else:
            assert again.running.container_id != container.id  # made anew
        assert again.stats()["template_reused"] is False  # tmpfs starts empty: rebuilt
        with again.database() as db, db.engine().connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM items").scalar() == 0


class DockerSocketProxy:
    """The Docker engine's unix socket behind a TCP port, to cut mid-session."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # cut
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.socket_path)
            with self.lock:
                self.open += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """From now on the engine does not answer: connections refused or reset."""
        for sock in [self.listener, *self.open]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@pytest.fixture
def docker_proxy(docker_client: Any) -> Iterator[DockerSocketProxy]:
    """A cuttable way to the local Docker engine (skipped unless it is on a unix socket)."""
    url = locate_docker().url or ""
    if not url.startswith("unix://"):
        pytest.skip(f"the Docker engine is not on a local unix socket ({url})")
    proxy = DockerSocketProxy(urlsplit(url).path)
    yield proxy
    proxy.cut()


def test_docker_unreachable_mid_session_gives_clear_errors(
    postgres: Engine,
    docker_proxy: DockerSocketProxy,
    docker_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{docker_proxy.port}")
    server = postgres.server(new_prefix(), mode="throwaway", pool_size=1).start()
    assert server.running is not None and server.running.container_name is not None
    name = server.running.container_name
    try:
        docker_proxy.cut()
        # Handing out copies needs no Docker: the session goes on.
        for _ in range(3):
            with server.database() as db, db.engine().connect() as conn:
                assert conn.exec_driver_sql("SELECT 1").scalar() == 1
        # Then the server dies too (killed through the real socket): the error says
        # that the connection is lost and that Docker does not answer either.
        docker_client.containers.get(name).kill()
        docker_client.containers.get(name).wait(timeout=NEVER_HANGS)
        started = time.monotonic()
        with pytest.raises(ServerUnavailableError, match="Docker engine does not answer"):
            server.database()
        # Removing the throwaway container needs Docker: said clearly, not a traceback.
        with pytest.raises(DockerUnavailableError, match=f"cannot remove container {name}"):
            server.stop()
        assert time.monotonic() - started < NEVER_HANGS
        assert docker_client.containers.get(name)  # still there, for prune to remove
    finally:
        docker_client.containers.get(name).remove(force=True)


@contextlib.contextmanager
def descriptors_above(number: int) -> Iterator[Callable[[], None]]:
    """Hold open files until every new descriptor is numbered above ``number``.

    A big test suite (many engines, files, sockets) gets there by itself;
    ``select.select`` cannot watch such descriptors at all. The kernel hands out the
    lowest free number, so a descriptor closed meanwhile (an earlier test's
    connection, collected late) would be handed out again below ``number``: garbage
    is collected first and not during the block, and the context yields ``plug``,
    which fills any hole again right before a connection that must be numbered high.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = number + 512
    if soft != resource.RLIM_INFINITY and soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"cannot open {wanted} files here (hard limit {hard})")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    held: list[int] = []

    def plug() -> None:
        while True:
            fd = os.open(os.devnull, os.O_RDONLY)
            if fd > number:
                os.close(fd)  # the next descriptor gets this number: above ``number``
                return
            held.append(fd)

    collecting = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        plug()
        yield plug
    finally:
        if collecting:
            gc.enable()
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def end_connection_from_the_server(admin: Admin, conn: Any) -> None:
    """Make the server end one connection, as a dying server ends them all."""
    if admin.family == "postgres":
        pid = admin.dialect.scalar(conn, "SELECT pg_backend_pid()")
        admin.execute(f"SELECT pg_terminate_backend({int(pid)})")
    else:
        connection_id = admin.dialect.scalar(conn, "SELECT CONNECTION_ID()")
        admin.execute(f"KILL CONNECTION {int(connection_id)}")


def test_the_liveness_check_works_on_descriptors_above_1024(
    engine: Engine, run_prefix: str
) -> None:
    dialect = engine.dialect
    with descriptors_above(1024) as plug, engine.server(run_prefix, pool_size=1) as server:
        # Every hand-out checks the session's lease connection (opened after the
        # files, so numbered above 1024): it must not be taken for dead.
        for _ in range(3):
            with server.database() as db, db.engine().connect() as conn:
                assert conn.exec_driver_sql("SELECT 1").scalar() == 1
        plug()
        conn = dialect.connect(server.address)
        try:
            fileno = dialect.connection_fileno(conn)
            assert fileno is not None and fileno > 1024
            assert not dialect.connection_dropped(conn)  # alive
            with Admin.of(server) as admin:
                end_connection_from_the_server(admin, conn)
            # The server's goodbye arrives a moment later: then it is seen as dead.
            deadline = time.monotonic() + NEVER_HANGS
            while not dialect.connection_dropped(conn):
                assert time.monotonic() < deadline, "a connection the server ended looks alive"
                time.sleep(0.02)
        finally:
            conn.close()
