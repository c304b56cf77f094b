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
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import freshdb
from freshdb.errors import ServerUnavailableError
from freshdb.migrators import CallableMigrator

from .conftest import NEVER_HANGS, Engine, new_prefix

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
        assert "does not answer" in caplog.text
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
