"""Every driver freshdb gives addresses for, connected to a real copy.

For each driver, a session configured with it (the ``driver`` setting) hands out
copies whose URL speaks that driver: SQLAlchemy connects with it, and the driver's
own ``connect()`` connects with the plain DSN (or the keyword arguments, for the
drivers that take no DSN string). Each connection proves it reached the copy: it is
in the copy's database, and reads the row the template was built with.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

import freshdb
from freshdb.migrators import CallableMigrator

pytestmark = [pytest.mark.docker, pytest.mark.server, pytest.mark.compat]

BOUND = 60.0  # seconds: only a hang ever reaches it
SEEDED = "from the template"


def seeded_items(connection: sa.Connection) -> None:
    """One table with one row: what a copy of the template must show."""
    connection.exec_driver_sql("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(50))")
    connection.exec_driver_sql(f"INSERT INTO items VALUES (1, '{SEEDED}')")


SCHEMA = CallableMigrator(seeded_items, key="drivers-items")
CURRENT_DATABASE = {"postgres": "SELECT current_database()", "mysql": "SELECT DATABASE()"}
READ_SEEDED = "SELECT name FROM items WHERE id = 1"


@pytest.fixture
def family_server(sticky_family_server: Any) -> Any:
    """Opens a session with one driver on the family's server under test."""
    sessions: list[freshdb.DatabaseServer] = []

    def open_session(family: str, driver: str) -> freshdb.DatabaseServer:
        server = sticky_family_server(family, driver, schema=SCHEMA, pool_size=1)
        sessions.append(server.start())
        return server

    yield open_session
    for server in sessions:
        server.stop()


def proof(connection: Any, family: str) -> tuple[str, str]:
    """(the current database, the seeded row's name) through a DBAPI connection."""
    cursor = connection.cursor()
    cursor.execute(CURRENT_DATABASE[family])
    database = cursor.fetchone()[0]
    cursor.execute(READ_SEEDED)
    name = cursor.fetchone()[0]
    cursor.close()
    return database, name


def sqlalchemy_proof(connection: sa.Connection, family: str) -> tuple[str, str]:
    """(the current database, the seeded row's name) through SQLAlchemy."""
    database = connection.exec_driver_sql(CURRENT_DATABASE[family]).scalar_one()
    name = connection.exec_driver_sql(READ_SEEDED).scalar_one()
    return database, name


# -- sync drivers -------------------------------------------------------------------------
SYNC_DRIVERS = [
    ("postgres", "psycopg", "postgresql+psycopg"),
    ("postgres", "psycopg2", "postgresql+psycopg2"),
    ("postgres", "pg8000", "postgresql+pg8000"),
    ("mysql", "pymysql", "mysql+pymysql"),
    ("mysql", "mysqlclient", "mysql+mysqldb"),
]


def plain_connect(driver: str, db: freshdb.Database) -> Any:
    """The driver's own connect(), given the DSN where it takes one."""
    if driver in {"psycopg", "psycopg2"}:
        return importlib.import_module(driver).connect(db.dsn())
    module = {"pg8000": "pg8000", "pymysql": "pymysql", "mysqlclient": "MySQLdb"}[driver]
    return importlib.import_module(module).connect(**db.connect_args(driver))


@pytest.mark.parametrize(("family", "driver", "drivername"), SYNC_DRIVERS)
def test_a_sync_driver_reaches_the_copy_by_url_and_by_dsn(
    family_server: Any, family: str, driver: str, drivername: str
) -> None:
    server = family_server(family, driver)
    assert server.url.drivername == drivername
    check_sync_driver(server, family, driver, drivername)


def check_sync_driver(
    server: freshdb.DatabaseServer, family: str, driver: str, drivername: str
) -> None:
    """Connect to a copy through SQLAlchemy with its URL, then with the driver itself."""
    with server.database() as db:
        assert db.driver == driver
        assert db.url.drivername == drivername
        # SQLAlchemy, with the URL a suite would read (freshdb_url) ...
        engine = sa.create_engine(db.url, poolclass=sa.NullPool)
        try:
            with engine.connect() as connection:
                assert sqlalchemy_proof(connection, family) == (db.name, SEEDED)
        finally:
            engine.dispose()
        # ... freshdb's own engine, which speaks the configured driver ...
        assert db.engine().url.drivername == drivername
        with db.connect() as connection:
            assert sqlalchemy_proof(connection, family) == (db.name, SEEDED)
            connection.exec_driver_sql("INSERT INTO items VALUES (2, 'written')")
            connection.commit()
        # ... and the driver itself, with the plain DSN: it sees what the engine wrote.
        connection = plain_connect(driver, db)
        try:
            assert proof(connection, family) == (db.name, SEEDED)
            cursor = connection.cursor()
            cursor.execute("SELECT name FROM items WHERE id = 2")
            assert cursor.fetchone()[0] == "written"
        finally:
            connection.close()


# -- async drivers ------------------------------------------------------------------------
ASYNC_DRIVERS = [
    ("postgres", "asyncpg", "postgresql+asyncpg"),
    ("mysql", "aiomysql", "mysql+aiomysql"),
    ("mysql", "asyncmy", "mysql+asyncmy"),
]


async def plain_proof(driver: str, db: freshdb.Database, family: str) -> tuple[str, str]:
    """The async driver's own connect(): asyncpg with the DSN, the others with keywords."""
    if driver == "asyncpg":
        import asyncpg

        connection = await asyncpg.connect(db.dsn())
        try:
            database = await connection.fetchval(CURRENT_DATABASE[family])
            name = await connection.fetchval(READ_SEEDED)
        finally:
            await connection.close()
        return database, name
    module = importlib.import_module(driver)
    connection = await module.connect(**db.connect_args(driver))
    try:
        async with connection.cursor() as cursor:
            await cursor.execute(CURRENT_DATABASE[family])
            database = (await cursor.fetchone())[0]
            await cursor.execute(READ_SEEDED)
            name = (await cursor.fetchone())[0]
    finally:
        connection.close()
        if driver == "asyncmy":
            await connection.ensure_closed()
    return database, name


@pytest.mark.parametrize(("family", "driver", "drivername"), ASYNC_DRIVERS)
def test_an_async_driver_reaches_the_copy_by_url_and_by_dsn(
    family_server: Any, family: str, driver: str, drivername: str
) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    server = family_server(family, driver)

    async def main() -> None:
        with anyio.fail_after(BOUND):
            async with server.adatabase() as db:
                assert db.url.drivername == drivername
                assert db.async_url.drivername == drivername
                # The URL a suite reads, in its own async engine ...
                engine = create_async_engine(db.url, poolclass=sa.NullPool)
                try:
                    async with engine.connect() as connection:
                        found = await connection.run_sync(sqlalchemy_proof, family)
                        assert found == (db.name, SEEDED)
                finally:
                    await engine.dispose()
                # ... freshdb's async engine ...
                async with db.async_engine().connect() as connection:
                    found = await connection.run_sync(sqlalchemy_proof, family)
                    assert found == (db.name, SEEDED)
                # ... and the driver's own connect().
                assert await plain_proof(driver, db, family) == (db.name, SEEDED)
                # An async-only driver leaves db.engine() on the family's sync default.
                with db.connect() as connection:
                    assert sqlalchemy_proof(connection, family) == (db.name, SEEDED)

    anyio.run(main)


# -- any driver from one session ---------------------------------------------------------
@pytest.mark.parametrize("family", ["postgres", "mysql"])
def test_url_for_gives_every_driver_of_the_family_the_same_copy(
    family_server: Any, family: str
) -> None:
    server = family_server(family, "psycopg" if family == "postgres" else "pymysql")
    drivers = [d for f, d, _ in SYNC_DRIVERS if f == family]
    with server.database() as db:
        for driver in drivers:
            engine = sa.create_engine(db.url_for(driver), poolclass=sa.NullPool)
            try:
                with engine.connect() as connection:
                    assert sqlalchemy_proof(connection, family) == (db.name, SEEDED), driver
            finally:
                engine.dispose()


def test_the_servers_admin_address_speaks_the_configured_driver(family_server: Any) -> None:
    server = family_server("postgres", "psycopg2")
    import psycopg2

    connection = psycopg2.connect(server.dsn())
    try:
        cursor = connection.cursor()
        cursor.execute("SELECT current_database()")
        assert cursor.fetchone()[0] == server.address.admin_database
    finally:
        connection.close()
    engine = sa.create_engine(server.url_for("psycopg"), poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT 1").scalar_one() == 1
    finally:
        engine.dispose()


def test_freshdb_url_json_gives_the_parts_and_a_working_url(
    family_server: Any, run_prefix: str, postgres_image: str
) -> None:
    server = family_server("postgres", "psycopg")
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("FRESHDB_")
    }
    environment.update(FRESHDB_PREFIX=run_prefix, FRESHDB_IMAGE=postgres_image)
    result = subprocess.run(
        [sys.executable, "-m", "freshdb", "url", "--json", "--driver", "psycopg2"],
        capture_output=True,
        text=True,
        timeout=BOUND,
        env={**environment, "FRESHDB_ENGINE": "postgres", "FRESHDB_MODE": "sticky"},
        check=True,
    )
    document = json.loads(result.stdout)
    address = server.address
    assert document["driver"] == "psycopg2"
    assert (document["host"], document["port"]) == (address.host, address.port)
    assert (document["user"], document["password"]) == (address.user, address.password)
    assert document["database"] == address.admin_database
    assert sa.make_url(document["url"]).drivername == "postgresql+psycopg2"
    engine = sa.create_engine(document["url"], poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT current_database()").scalar_one() == (
                address.admin_database
            )
    finally:
        engine.dispose()
