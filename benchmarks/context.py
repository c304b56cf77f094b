"""What every benchmark shares: the servers, the schema, the images, the sample sizes.

Every figure is measured on the same two sticky servers of the ``bench`` prefix
(one Postgres, one MariaDB), started once per run with freshdb's default tuning.
The peers get the Postgres server's host, port and password and work on databases
named ``peer_*``, which never look like freshdb's own names.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import psycopg
from psycopg import sql

import freshdb
from freshdb.backends.containers import list_managed_containers, remove_container
from freshdb.backends.docker_discovery import connect_docker
from freshdb.dialects import dialect_for
from freshdb.dialects.base import ServerAddress

BENCH_DIRECTORY = Path(__file__).resolve().parent
REPOSITORY = BENCH_DIRECTORY.parent
SCHEMAS = BENCH_DIRECTORY / "schemas"
POSTGRES_SCHEMA = SCHEMAS / "postgres.sql"
MARIADB_SCHEMA = SCHEMAS / "mariadb.sql"

#: The prefix of the benchmark's own sticky servers (never a developer's "freshdb").
PREFIX = "bench"
#: Every test of every benchmark asks the same question of its fresh database.
FIRST_QUERY = "SELECT count(*) FROM customers"
EXPECTED_CUSTOMERS = 100
#: Databases made outside freshdb's pools (the peers', the benchmark's clone probes)
#: start with this; every run drops the leftovers.
PEER_DATABASE_PREFIX = "peer_"

POSTGRES_IMAGE_VARIABLE = "FRESHDB_POSTGRES_IMAGE"
MARIADB_IMAGE_VARIABLE = "FRESHDB_MARIADB_IMAGE"


@dataclasses.dataclass
class BenchContext:
    """The run's settings and its two started servers."""

    quick: bool
    postgres_image: str
    mariadb_image: str
    postgres: freshdb.DatabaseServer
    mariadb: freshdb.DatabaseServer
    docker: Any

    def count(self, full: int, quick: int) -> int:
        """A sample size: ``full`` normally, ``quick`` with ``--quick``."""
        return quick if self.quick else full

    @property
    def postgres_address(self) -> ServerAddress:
        """Host, port and admin credentials of the shared Postgres server."""
        return self.postgres.address

    def container(self, server: freshdb.DatabaseServer) -> Any:
        """The Docker container of one of the run's servers."""
        running = server.running
        if running is None or running.container_id is None:
            raise RuntimeError(f"{server!r} runs in no container")
        return self.docker.containers.get(running.container_id)


def bench_server(engine: str, image: str) -> freshdb.DatabaseServer:
    """The benchmark's sticky server of ``engine`` (not started)."""
    schema = POSTGRES_SCHEMA if engine == "postgres" else MARIADB_SCHEMA
    return freshdb.DatabaseServer(
        engine, schema=str(schema), image=image, mode="sticky", prefix=PREFIX
    )


def images_from_environment() -> tuple[str, str]:
    """The Postgres and MariaDB images: the Makefile exports them (local stand-ins)."""
    return (
        os.environ.get(POSTGRES_IMAGE_VARIABLE) or "postgres:17",
        os.environ.get(MARIADB_IMAGE_VARIABLE) or "mariadb:11.4",
    )


@contextlib.contextmanager
def open_context(*, quick: bool, keep_servers: bool) -> Iterator[BenchContext]:
    """Start (or reuse) the two bench servers; at the end drop the peers' databases
    and, unless ``keep_servers``, remove the bench containers."""
    postgres_image, mariadb_image = images_from_environment()
    docker_client, _ = connect_docker()
    postgres = bench_server("postgres", postgres_image)
    mariadb = bench_server("mariadb", mariadb_image)
    try:
        postgres.start()
        mariadb.start()
        context = BenchContext(
            quick, postgres_image, mariadb_image, postgres, mariadb, docker_client
        )
        drop_peer_databases(context.postgres_address)
        wait_until_idle(postgres)
        wait_until_idle(mariadb)
        yield context
    finally:
        with contextlib.suppress(Exception):
            drop_peer_databases(postgres.address)
        postgres.stop()
        mariadb.stop()
        if not keep_servers:
            for container in list_managed_containers(docker_client, PREFIX):
                remove_container(container)


def wait_until_idle(server: freshdb.DatabaseServer, timeout: float = 60.0) -> None:
    """Wait until the pool is full and no drop is pending: a warm, quiet pool."""
    deadline = time.monotonic() + timeout
    while True:
        stats = server.stats()
        if stats["ready"] >= stats["size"] and stats["dropping"] == 0 and stats["creating"] == 0:
            return
        if stats.get("failure"):
            raise RuntimeError(f"the pool of {server!r} fails: {stats['failure']}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the pool of {server!r} did not fill in {timeout:.0f} s: {stats}")
        time.sleep(0.001)


# -- Postgres databases of the peers -------------------------------------------------
def postgres_connect(address: ServerAddress, database: str | None = None) -> psycopg.Connection:
    """An autocommit admin connection to the shared Postgres server."""
    return cast(psycopg.Connection, dialect_for("postgres").connect(address, database))


def postgres_url(address: ServerAddress, database: str | None = None) -> str:
    """The SQLAlchemy URL freshdb would use (psycopg 3), with its password, for a
    database on the shared Postgres server (subprocesses get it as text)."""
    url = dialect_for("postgres").sync_url(address, database)
    return url.render_as_string(hide_password=False)


def create_database_from_schema(address: ServerAddress, name: str) -> None:
    """Create database ``name`` on the Postgres server and load the benchmark schema."""
    drop_database(address, name)
    with postgres_connect(address) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with postgres_connect(address, name) as connection:
        connection.execute(POSTGRES_SCHEMA.read_text().encode())
    # A backend lingers a moment after its connection closes, and a database anyone
    # is connected to cannot be cloned: wait until it is gone.
    with postgres_connect(address) as admin:
        deadline = time.monotonic() + 10
        while admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
        ).fetchone() != (0,):
            if time.monotonic() > deadline:
                raise RuntimeError(f"connections to {name} did not end")
            time.sleep(0.005)


def drop_database(address: ServerAddress, name: str) -> None:
    """Drop a Postgres database (a template too), whoever is connected to it."""
    with postgres_connect(address) as admin:
        dialect_for("postgres").drop_database(admin, name)


def drop_peer_databases(address: ServerAddress) -> None:
    """Drop every ``peer_*`` database (leftovers of this run or of a crashed one)."""
    with postgres_connect(address) as admin:
        names = [
            str(row[0])
            for row in admin.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s",
                (PEER_DATABASE_PREFIX.replace("_", r"\_") + "%",),
            )
        ]
    for name in names:
        drop_database(address, name)
