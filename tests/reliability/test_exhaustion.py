"""Exhaustion: an empty pool under load, a server at max_connections, a full tmpfs.
Each ends in a bounded wait and a clear FreshDBError, never a driver traceback."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import freshdb
from freshdb.dialects.base import DBAPIConnection
from freshdb.errors import MigrationError, PoolTimeoutError, ServerFullError
from freshdb.migrators import CallableMigrator

from .conftest import NEVER_HANGS, Admin, Engine, new_prefix

pytestmark = [pytest.mark.docker, pytest.mark.server]

#: The smallest max_connections freshdb accepts: easy to fill.
MAX_CONNECTIONS = 20


@pytest.fixture(scope="module")
def small_servers() -> dict[str, str]:
    """A prefix per engine for servers with max_connections=20 (a container shape of
    their own: it never shares a container with a session of other settings)."""
    return {}


@pytest.fixture
def small(engine: Engine, small_servers: dict[str, str]) -> Iterator[freshdb.DatabaseServer]:
    """A session on this engine's max_connections=20 server, no copies kept ready."""
    prefix = small_servers.setdefault(engine.name, new_prefix())
    with engine.server(prefix, pool_size=0, max_connections=MAX_CONNECTIONS) as server:
        yield server


def wait_for_ready(server: freshdb.DatabaseServer, count: int) -> None:
    """Wait until the pool holds ``count`` ready copies."""
    deadline = time.monotonic() + NEVER_HANGS
    while server.stats()["ready"] < count:
        assert time.monotonic() < deadline, server.stats()
        time.sleep(0.02)


class CloneStall:
    """Blocks every clone of a template, the way a slow or busy server would."""

    def __init__(self, admin: Admin, template: str) -> None:
        self.admin = admin
        if admin.family == "postgres":
            # CREATE DATABASE ... TEMPLATE takes a lock on the template that an open
            # transaction's COMMENT ON DATABASE holds against it.
            admin.execute("BEGIN")
            admin.execute(f"COMMENT ON DATABASE {admin.quote(template)} IS 'stalled'")
        else:
            admin.execute("FLUSH TABLES WITH READ LOCK")  # CREATE DATABASE waits for it

    def end(self) -> None:
        """Let clones through again."""
        self.admin.execute("ROLLBACK" if self.admin.family == "postgres" else "UNLOCK TABLES")


def test_an_empty_pool_makes_callers_wait_then_raise_pool_timeout(
    engine: Engine, small_servers: dict[str, str]
) -> None:
    prefix = small_servers.setdefault(engine.name, new_prefix())
    timeout = 2
    server = engine.server(
        prefix,
        pool_size=1,
        clone_workers=1,
        acquire_timeout=timeout,
        max_connections=MAX_CONNECTIONS,
    )
    with server, Admin.of(server) as admin:
        wait_for_ready(server, 1)
        stall = CloneStall(admin, str(server.template))
        try:
            first = server.database()  # the one ready copy; the pool is empty now
            outcomes: list[tuple[BaseException | None, float]] = []

            def caller() -> None:
                started = time.monotonic()
                try:
                    server.database().release()
                    outcomes.append((None, time.monotonic() - started))
                except BaseException as exc:
                    outcomes.append((exc, time.monotonic() - started))

            callers = [threading.Thread(target=caller) for _ in range(6)]
            for thread in callers:
                thread.start()
            for thread in callers:
                thread.join(NEVER_HANGS)
            assert len(outcomes) == len(callers)
            for error, waited in outcomes:
                assert isinstance(error, PoolTimeoutError), error
                assert timeout <= waited < NEVER_HANGS  # they waited, boundedly
                message = str(error)
                assert f"no copy became ready within {timeout} s" in message
                assert "FRESHDB_ACQUIRE_TIMEOUT" in message
            # A per-call timeout overrides the setting.
            with pytest.raises(PoolTimeoutError, match="within 1 s"):
                server.database(timeout=1)
        finally:
            stall.end()
        # The stall over, copies come again; nothing of the episode is left over.
        with server.database() as db, db.engine().connect() as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
        first.release()
    with Admin(engine.name, server.address) as admin:
        assert not [p for p in admin.databases(prefix) if p.kind == "copy"]


def fill(server: freshdb.DatabaseServer) -> list[DBAPIConnection]:
    """Open connections (as a test's own code would) until the server refuses one."""
    connections: list[DBAPIConnection] = []
    while True:
        try:
            connections.append(server.dialect.connect(server.address, timeout=5))
        except ServerFullError:
            return connections
        assert len(connections) <= MAX_CONNECTIONS + 5, "max_connections is not enforced"


def test_max_connections_reached_raises_server_full(
    engine: Engine, small: freshdb.DatabaseServer, docker_client: Any
) -> None:
    assert small.running is not None
    container = docker_client.containers.get(small.running.container_id)
    connections = fill(small)
    try:
        # A new session: its lease connection is refused. Said at once (no waiting for a
        # "starting" server), and the full server is not mistaken for a dead one.
        started = time.monotonic()
        with pytest.raises(ServerFullError) as error:
            engine.server(
                small.settings.prefix, pool_size=0, max_connections=MAX_CONNECTIONS
            ).start()
        assert time.monotonic() - started < NEVER_HANGS
        assert "max_connections reached" in str(error.value)
        assert "FRESHDB_MAX_CONNECTIONS" in str(error.value)
        container.reload()
        assert container.status == "running"  # not replaced
        assert docker_client.containers.get(container.name).id == container.id
        # A running session: its pool's worker connection is refused.
        with pytest.raises(ServerFullError, match="max_connections reached"):
            small.database(timeout=NEVER_HANGS)
    finally:
        for connection in connections:
            connection.close()
    # Room again (once the server has noticed the closed connections): the pool's
    # cloner retries by itself, and copies come again.
    deadline = time.monotonic() + NEVER_HANGS
    while True:
        try:
            db = small.database(timeout=NEVER_HANGS)
            break
        except ServerFullError:
            assert time.monotonic() < deadline, "the pool never recovered"
            time.sleep(0.1)
    with db, db.engine().connect() as conn:
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1


def numbers(connection: Any, count: int) -> str:
    """A derived table of ``seq`` = 1..count: MariaDB's Sequence engine, on MySQL a
    recursive CTE (allowed past its default depth of 1000). (MySQL 9 has no MD5():
    the fillers are SHA2 hex digests.)"""
    if connection.dialect.is_mariadb:
        return f"seq_1_to_{count}"
    connection.exec_driver_sql(f"SET SESSION cte_max_recursion_depth = {count + 1}")
    return (
        "(WITH RECURSIVE numbers (seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM numbers "
        f"WHERE seq < {count}) SELECT seq FROM numbers) AS numbers"
    )


def big_insert(connection: Any) -> None:
    """More data than the tmpfs holds (and rows no engine compresses much)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("CREATE TABLE big (id INT, pad TEXT)")
        connection.exec_driver_sql(
            "INSERT INTO big SELECT g, repeat(md5(g::text), 30) FROM generate_series(1, 400000) g"
        )
    else:
        # Few fat rows: data fills the disk long before InnoDB's undo log grows.
        connection.exec_driver_sql("CREATE TABLE big (id INT, pad LONGTEXT)")
        connection.exec_driver_sql(
            "INSERT INTO big SELECT seq, REPEAT(SHA2(seq, 256), 300) "
            f"FROM {numbers(connection, 20000)}"
        )


def some_rows(connection: Any) -> None:
    """A few megabytes a copy."""
    connection.exec_driver_sql("CREATE TABLE filler (id INT, pad TEXT)")
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(
            "INSERT INTO filler SELECT g, repeat(md5(g::text), 30) FROM generate_series(1, 2000) g"
        )
    else:
        connection.exec_driver_sql(
            "INSERT INTO filler SELECT seq, REPEAT(SHA2(seq, 256), 15) "
            f"FROM {numbers(connection, 20000)}"
        )


def assert_says_what_to_do(error: BaseException) -> None:
    """A full tmpfs's message: prune, or a larger limit."""
    message = str(error)
    assert "freshdb prune" in message and "FRESHDB_TMPFS_SIZE" in message, message


def test_a_full_tmpfs_raises_server_full(engine: Engine, docker_client: Any) -> None:
    # MariaDB's redo log alone takes 96 MB of it; a new MySQL 9 data directory
    # (redo log, undo tablespaces, data dictionary) about 190 MB.
    tmpfs = {"postgres": "64m", "mariadb": "200m", "mysql": "320m"}[engine.name]
    prefix = new_prefix()
    settings = {"mode": "throwaway", "tmpfs_size": tmpfs, "acquire_timeout": NEVER_HANGS}

    # A migration that fills the disk: ServerFullError, not a MigrationError.
    started = time.monotonic()
    big = CallableMigrator(big_insert, key=secrets.token_hex(4))
    with pytest.raises(ServerFullError) as error:
        engine.server(prefix, schema=big, **settings).start()
    assert not isinstance(error.value, MigrationError)
    assert_says_what_to_do(error.value)
    assert time.monotonic() - started < NEVER_HANGS

    # Copies that fill the disk: the caller waiting for one gets ServerFullError.
    schema = CallableMigrator(some_rows, key=secrets.token_hex(4))
    with engine.server(prefix, schema=schema, pool_size=1, **settings) as server:
        held = []
        with pytest.raises(ServerFullError) as error:
            for _ in range(100):
                held.append(server.database())
        assert_says_what_to_do(error.value)
        for db in held:
            db.release()
    assert not [c for c in docker_client.containers.list(all=True) if prefix in str(c.name)]
