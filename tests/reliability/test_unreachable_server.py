"""The server stops answering mid-session without dying: its container is paused
(``docker pause``) or cut off the network (``docker network disconnect``). Its TCP
connections still look healthy (the kernel, or Docker's port proxy, answers for it),
so nothing but freshdb's own checks can tell. Handing out a copy and ``stop()`` must
end within a bounded time with an error that says what is wrong, never hang; once
the server is back, the next session on it works.

Each test pauses or disconnects only the container of its own prefix.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import freshdb
from freshdb.errors import ServerUnavailableError
from freshdb.migrators import CallableMigrator

from .conftest import NEVER_HANGS, Admin, Engine, new_prefix

pytestmark = pytest.mark.docker


def items(connection: Any) -> None:
    """A one-table schema."""
    connection.exec_driver_sql("CREATE TABLE items (id INT PRIMARY KEY)")


def within_bound(call: Callable[[], Any]) -> Any:
    """Run ``call`` in a thread: its result, or its exception raised here.

    Fails the test if it has not ended within ``NEVER_HANGS`` seconds: a hang.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = call()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(NEVER_HANGS)
    assert not thread.is_alive(), f"{call} did not end within {NEVER_HANGS:.0f} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")


def wait_for_ready(server: freshdb.DatabaseServer, count: int) -> None:
    """Wait until the pool holds ``count`` ready copies."""
    deadline = time.monotonic() + NEVER_HANGS
    while server.stats()["ready"] < count:
        assert time.monotonic() < deadline, server.stats()
        time.sleep(0.02)


def copies_until_refused(server: freshdb.DatabaseServer) -> ServerUnavailableError:
    """Ask for copies until one is refused; the refusal.

    Copies made before the server stopped answering may still be handed out (there
    is no telling without a round trip to the server); the pool holds one.
    """
    for _ in range(2):
        try:
            within_bound(server.database)
        except ServerUnavailableError as exc:
            return exc
    raise AssertionError("copies were handed out from a server that does not answer")


@pytest.fixture
def session(engine: Engine) -> Iterator[tuple[Engine, str, freshdb.DatabaseServer]]:
    """A started session on a sticky server of its own (one ready copy, a short wait)."""
    prefix = new_prefix()
    schema = CallableMigrator(items, key=secrets.token_hex(4))
    server = engine.server(prefix, pool_size=1, acquire_timeout=5, schema=schema).start()
    wait_for_ready(server, 1)
    yield engine, prefix, server
    within_bound(server.stop)  # done already by the test; stopping twice is harmless


def next_session_works(engine: Engine, prefix: str) -> None:
    """A new session on the same sticky server gets a working copy."""
    schema = CallableMigrator(items, key=secrets.token_hex(4))
    with (
        engine.server(prefix, pool_size=1, schema=schema) as again,
        again.database() as db,
        db.engine().connect() as conn,
    ):
        assert conn.exec_driver_sql("SELECT count(*) FROM items").scalar() == 0


def test_a_paused_server_gives_a_clear_error_and_stop_returns(
    session: tuple[Engine, str, freshdb.DatabaseServer],
    docker_client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine, prefix, server = session
    caplog.set_level(logging.WARNING, logger="freshdb")
    assert server.running is not None
    container = docker_client.containers.get(server.running.container_id)
    container.pause()
    try:
        refused = copies_until_refused(server)
        assert f"the server {container.name} does not answer" in str(refused)
        assert f"docker unpause {container.name}" in str(refused)
        within_bound(server.stop)
        assert f"stopping without the server {container.name}, which does not answer" in caplog.text
        assert "until a later session or `freshdb prune` reaps them" in caplog.text
    finally:
        container.reload()
        if container.status == "paused":
            container.unpause()
    next_session_works(engine, prefix)


def test_a_server_cut_off_the_network_gives_a_clear_error_and_stop_returns(
    session: tuple[Engine, str, freshdb.DatabaseServer],
    docker_client: Any,
) -> None:
    engine, prefix, server = session
    assert server.running is not None
    container = docker_client.containers.get(server.running.container_id)
    bridge = docker_client.networks.get("bridge")
    bridge.disconnect(container)
    try:
        refused = copies_until_refused(server)
        assert f"the server {container.name}" in str(refused)
        assert "does not answer" in str(refused)
        assert "network to it cut" in str(refused)
        within_bound(server.stop)
    finally:
        container.reload()
        if "bridge" not in container.attrs["NetworkSettings"]["Networks"]:
            bridge.connect(container)
    next_session_works(engine, prefix)


# -- bounded, yet never cutting legitimate work ------------------------------------------
def test_admin_connections_bound_their_io_but_not_a_long_statement(
    engine: Engine, run_prefix: str
) -> None:
    dialect = engine.dialect
    with engine.server(run_prefix, pool_size=1) as server:
        conn = dialect.connect(server.address, timeout=2)
        try:
            fileno = dialect.connection_fileno(conn)
            assert fileno is not None and fileno >= 0
            with socket.socket(fileno=os.dup(fileno)) as sock:
                # A server host or network gone is noticed, not waited on for hours.
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                assert 0 < sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) < 7200
                if hasattr(socket, "TCP_USER_TIMEOUT"):
                    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) > 0
            # Longer than the connect timeout, which bounds the handshake only (MySQL's
            # handshake is bounded by the read timeout): a slow statement is no hang.
            sleep = (
                "SELECT pg_sleep(3)" if engine.dialect.family == "postgres" else "SELECT SLEEP(3)"
            )
            dialect.scalar(conn, sleep)
            if dialect.family == "mysql":
                # DDL waiting on a metadata lock gives up (the server default is a day
                # or a year); the session never idles out.
                lock_wait, idle = dialect.rows(
                    conn, "SELECT @@SESSION.lock_wait_timeout, @@SESSION.wait_timeout"
                )[0]
                assert 0 < int(lock_wait) <= 3600
                assert int(idle) >= 86400
        finally:
            conn.close()


def test_a_server_wide_idle_limit_ends_no_connection_of_the_session(postgres: Engine) -> None:
    prefix = new_prefix()
    with postgres.server(prefix, pool_size=0) as first, Admin.of(first) as admin:
        # A limit set on the server applies to connections opened from now on.
        admin.execute("ALTER SYSTEM SET idle_session_timeout = '1s'")
        admin.execute("ALTER SYSTEM SET idle_in_transaction_session_timeout = '1s'")
        admin.execute("SELECT pg_reload_conf()")
    with postgres.server(prefix, pool_size=1) as server:
        wait_for_ready(server, 1)
        time.sleep(3)  # the lease and the pool's connections idle past the limit
        clones = server.stats()["clones"]
        # Each hand-out checks the lease (it would say the session ended); each
        # refill runs on a pool connection that idled as long.
        for _ in range(3):
            with server.database() as db:
                assert db.name
            time.sleep(1.5)
        wait_for_ready(server, 1)
        stats = server.stats()
        assert stats["failure"] is None
        assert stats["clones"] >= clones + 3
