"""``async with server.adatabase()`` on real servers, under asyncio and trio.

A copy is given back wherever a cancellation strikes: while the task waits for one
(the pool empty, clones held back by a lock on the template), right after the copy
arrived, or in the body. Afterwards nothing is busy, and once the session stops no
copy of it is left on the server.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import pytest

import freshdb
from freshdb.migrators import CallableMigrator

pytestmark = [pytest.mark.docker, pytest.mark.anyio]

BOUND = 60.0  # seconds: only a hang ever reaches it


def items(connection: Any) -> None:
    """A one-table schema."""
    connection.exec_driver_sql("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(50))")


SCHEMA = CallableMigrator(items, key="async-items")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def start(engine: str, image: str, prefix: str, pool_size: int) -> freshdb.DatabaseServer:
    return freshdb.DatabaseServer(
        engine, schema=SCHEMA, image=image, mode="sticky", prefix=prefix, pool_size=pool_size
    ).start()


@pytest.fixture
def session(
    request: pytest.FixtureRequest, run_prefix: str, postgres_image: str
) -> Iterator[freshdb.DatabaseServer]:
    """A session on the Postgres server; its pool holds ``param`` copies (default 0:
    every copy is made while its caller waits)."""
    server = start("postgres", postgres_image, run_prefix, getattr(request, "param", 0))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mariadb_session(run_prefix: str, mariadb_image: str) -> Iterator[freshdb.DatabaseServer]:
    """A session on the MariaDB server, one copy kept ready."""
    server = start("mariadb", mariadb_image, run_prefix, 1)
    try:
        yield server
    finally:
        server.stop()


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait (bounded) until ``condition()`` holds."""
    with anyio.fail_after(BOUND):
        while not condition():
            await anyio.sleep(0.01)


def admin_scalar(server: freshdb.DatabaseServer, statement: str, *params: Any) -> Any:
    connection = server.dialect.connect(server.address)
    try:
        return server.dialect.scalar(connection, statement, params)
    finally:
        connection.close()


def exists(server: freshdb.DatabaseServer, name: str) -> bool:
    connection = server.dialect.connect(server.address)
    try:
        return server.dialect.database_exists(connection, name)
    finally:
        connection.close()


async def given_back(server: freshdb.DatabaseServer, before: dict[str, Any]) -> None:
    """Every copy handed out is back, nobody waits, and released copies are dropped."""
    stats = server.stats
    await eventually(lambda: stats()["busy"] == 0 and stats()["waiting"] == 0, "all is back")
    await eventually(lambda: stats()["dropping"] == 0, "released copies are dropped")
    after = stats()
    assert after["drops"] - before["drops"] == after["acquired"] - before["acquired"], after
    assert after["drop_failures"] == 0


def stop_and_check_nothing_is_left(server: freshdb.DatabaseServer) -> None:
    """Stop the session; then no copy of it may be left on the server."""
    owner, prefix, address = server.stats()["owner"], server.settings.prefix, server.address
    server.stop()
    connection = server.dialect.connect(address)
    try:
        leftovers = [
            parsed.name
            for parsed in server.dialect.our_databases(connection, prefix, ("copy",))
            if parsed.owner == owner
        ]
    finally:
        connection.close()
    assert leftovers == []


@contextlib.contextmanager
def clones_held_back(server: freshdb.DatabaseServer) -> Iterator[None]:
    """Postgres: a transaction holding a lock on the template that CREATE DATABASE …
    TEMPLATE waits for (COMMENT takes SHARE UPDATE EXCLUSIVE; a clone wants SHARE)."""
    connection = server.dialect.connect(server.address)
    try:
        connection.autocommit = False
        connection.execute(f'COMMENT ON DATABASE "{server.template}" IS NULL')
        yield
    finally:
        connection.rollback()
        connection.close()


def count_with_sync_engine(db: freshdb.Database) -> int:
    with db.engine().begin() as conn:
        conn.exec_driver_sql("INSERT INTO items (id, name) VALUES (1, 'sync')")
        return int(conn.exec_driver_sql("SELECT count(*) FROM items").scalar_one())


async def count_with_async_engine(db: freshdb.Database) -> int:
    engine = db.async_engine()
    async with engine.begin() as conn:
        await conn.exec_driver_sql("INSERT INTO items (id, name) VALUES (2, 'async')")
    async with engine.connect() as conn:
        return int((await conn.exec_driver_sql("SELECT count(*) FROM items")).scalar_one())


async def use_a_copy(db: freshdb.Database, backend: str) -> None:
    """Write and read under either event loop, the way each one can."""
    # Under both: the sync engine, from a worker thread.
    assert await anyio.to_thread.run_sync(count_with_sync_engine, db) == 1
    if backend == "asyncio":
        assert await count_with_async_engine(db) == 2
    else:
        # The async drivers (psycopg async, aiomysql) run on asyncio only: said plainly.
        with pytest.raises(freshdb.FreshDBError, match="asyncio only") as error:
            await count_with_async_engine(db)
        assert "db.engine() from a worker thread" in str(error.value)


# -- handing out ----------------------------------------------------------------------
async def test_a_copy_made_while_the_task_waits(
    session: freshdb.DatabaseServer, anyio_backend: str
) -> None:
    before = session.stats()
    async with session.adatabase() as db:
        assert session.stats()["busy"] == 1
        await use_a_copy(db, anyio_backend)
    stats = session.stats()
    assert stats["waits"] - before["waits"] == 1  # the pool was empty: it waited
    await given_back(session, before)
    assert not exists(session, db.name)
    stop_and_check_nothing_is_left(session)


@pytest.mark.parametrize("session", [1], indirect=True)
async def test_a_ready_copy(session: freshdb.DatabaseServer, anyio_backend: str) -> None:
    await eventually(lambda: session.stats()["ready"] == 1, "a copy is ready")
    before = session.stats()
    async with session.adatabase() as db:
        await use_a_copy(db, anyio_backend)
    assert session.stats()["waits"] == before["waits"]
    await given_back(session, before)
    stop_and_check_nothing_is_left(session)


# -- cancellation ---------------------------------------------------------------------
async def test_cancelled_while_waiting_for_a_copy(
    session: freshdb.DatabaseServer, anyio_backend: str
) -> None:
    before = session.stats()
    entered: list[freshdb.Database] = []

    async def take() -> None:
        async with session.adatabase() as db:
            entered.append(db)

    with clones_held_back(session):
        async with anyio.create_task_group() as group:
            group.start_soon(take)
            await eventually(lambda: session.stats()["waiting"] == 1, "the task waits")
            group.cancel_scope.cancel()
        # The wait in the worker thread ended too, while clones are still held back.
        await eventually(lambda: session.stats()["waiting"] == 0, "the wait is called off")
        assert session.stats()["creating"] == 1
    assert entered == []
    # The copy made for it is not lost: it lands in the pool, for the next caller.
    await eventually(lambda: session.stats()["ready"] == 1, "the late copy is ready")
    stats = session.stats()
    assert (stats["acquired"], stats["busy"]) == (before["acquired"], 0)
    async with session.adatabase() as db:
        assert await anyio.to_thread.run_sync(count_with_sync_engine, db) == 1
    await given_back(session, before)
    stop_and_check_nothing_is_left(session)


async def test_cancelled_right_after_the_copy_arrived(
    session: freshdb.DatabaseServer, anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cancellation is placed exactly: the waiting thread has the copy, and the
    # task is cancelled before it sees it.
    pool = session._pool
    assert pool is not None
    real_acquire = pool.acquire
    scope = anyio.CancelScope()

    def acquire_then_cancel(*args: Any, **kwargs: Any) -> Any:
        copy = real_acquire(*args, **kwargs)
        anyio.from_thread.run_sync(scope.cancel)
        return copy

    monkeypatch.setattr(pool, "acquire", acquire_then_cancel)
    before = session.stats()
    entered: list[freshdb.Database] = []
    with scope:
        async with session.adatabase() as db:
            entered.append(db)
    assert scope.cancelled_caught
    assert entered == []
    await eventually(lambda: session.stats()["acquired"] == before["acquired"] + 1, "acquired")
    await given_back(session, before)
    assert session.stats()["drops"] == before["drops"] + 1
    stop_and_check_nothing_is_left(session)


async def test_a_task_cancelled_before_it_asks_takes_nothing(
    session: freshdb.DatabaseServer, anyio_backend: str
) -> None:
    before = session.stats()
    with anyio.CancelScope() as scope:
        scope.cancel()
        async with session.adatabase():
            pytest.fail("the body ran in a cancelled scope")
    after = session.stats()
    assert (after["acquired"], after["waits"]) == (before["acquired"], before["waits"])
    stop_and_check_nothing_is_left(session)


async def cancel_in_the_body(
    server: freshdb.DatabaseServer,
    backend: str,
    long_query: str,
    query_running: Callable[[str], bool],
) -> str:
    """Cancel a task while its body runs (under asyncio, in a query on the async
    engine); return the copy's name."""
    names: list[str] = []
    ready = anyio.Event()

    async def body() -> None:
        async with server.adatabase() as db:
            names.append(db.name)
            await anyio.to_thread.run_sync(count_with_sync_engine, db)
            if backend == "asyncio":
                # One connection idle in the engine's pool, which giving the copy back
                # closes (awaiting the server, inside the cancelled scope), and one busy.
                await count_with_async_engine(db)
                async with db.async_engine().connect() as conn:
                    ready.set()
                    await conn.exec_driver_sql(long_query)
            else:
                ready.set()
                await anyio.sleep_forever()
            pytest.fail("the body outlived its cancellation")

    async with anyio.create_task_group() as group:
        group.start_soon(body)
        await ready.wait()
        if backend == "asyncio":
            name_of: Callable[[], bool] = lambda: query_running(names[0])  # noqa: E731
            await eventually(name_of, "the long query runs")
        assert server.stats()["busy"] == 1
        group.cancel_scope.cancel()
    return names[0]


async def test_cancelled_in_the_body(session: freshdb.DatabaseServer, anyio_backend: str) -> None:
    before = session.stats()

    def sleeping(name: str) -> bool:
        return bool(
            admin_scalar(
                session,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND query LIKE %s",
                name,
                "SELECT pg_sleep%",
            )
        )

    name = await cancel_in_the_body(session, anyio_backend, "SELECT pg_sleep(600)", sleeping)
    await given_back(session, before)
    assert not exists(session, name)  # dropped, whoever was still connected
    stop_and_check_nothing_is_left(session)


async def test_mariadb_copy_used_and_cancelled_in_the_body(
    mariadb_session: freshdb.DatabaseServer, anyio_backend: str
) -> None:
    server = mariadb_session
    before = server.stats()
    async with server.adatabase() as db:
        assert db.async_url.drivername == "mysql+aiomysql"
        await use_a_copy(db, anyio_backend)

    def sleeping(name: str) -> bool:
        return bool(
            admin_scalar(
                server,
                "SELECT count(*) FROM information_schema.PROCESSLIST "
                "WHERE DB = %s AND INFO LIKE %s",
                name,
                "SELECT SLEEP%",
            )
        )

    name = await cancel_in_the_body(server, anyio_backend, "SELECT SLEEP(600)", sleeping)
    await given_back(server, before)
    assert not exists(server, name)
    stop_and_check_nothing_is_left(server)
