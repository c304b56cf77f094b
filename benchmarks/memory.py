"""Memory: the server container with a full pool, tmpfs bytes per copy, test process RSS.

- Container memory is what ``docker stats`` shows (usage less inactive page cache;
  tmpfs pages count, as they are memory here), read with a full, idle pool, the way
  ``freshdb status`` reads it.
- Bytes per copy: ``pg_database_size`` of each ready copy on Postgres (the size of
  its directory on the tmpfs); ``du -sb`` of each copy's directory inside the MariaDB
  container (information_schema's sizes are estimates).
- Peak RSS of the pytest process is measured by the suites (:mod:`benchmarks.suites`)
  with ``resource.getrusage`` inside the subprocess, and lands in this group.
"""

from __future__ import annotations

from benchmarks.context import PREFIX, BenchContext, wait_until_idle
from benchmarks.report import Figure
from benchmarks.stats import Summary
from freshdb import DatabaseServer
from freshdb.backends.containers import container_facts

GROUP = "Memory"
MEMORY_SAMPLES = 3
MIB = 1024 * 1024


def ready_copies(server: DatabaseServer) -> list[str]:
    """Names of the copies of the bench prefix on the server (the pools' ready copies)."""
    connection = server.dialect.connect(server.address)
    try:
        return [c.name for c in server.dialect.our_databases(connection, PREFIX, ("copy",))]
    finally:
        connection.close()


def postgres_copy_bytes(server: DatabaseServer) -> list[float]:
    """``pg_database_size`` of every ready copy."""
    connection = server.dialect.connect(server.address)
    try:
        sizes = server.dialect.database_sizes(connection, ready_copies(server))
    finally:
        connection.close()
    return [float(size) for size in sizes.values()]


def mariadb_copy_bytes(context: BenchContext) -> list[float]:
    """``du -sb`` of every ready copy's directory in the MariaDB container."""
    names = ready_copies(context.mariadb)
    if not names:
        return []
    exit_code, output = context.container(context.mariadb).exec_run(
        ["du", "-sb", *(f"/var/lib/mysql/{name}" for name in names)]
    )
    if exit_code != 0:
        raise RuntimeError(f"du failed in the MariaDB container: {output!r}")
    return [float(line.split()[0]) for line in output.decode().splitlines() if line.strip()]


def container_memory(context: BenchContext, server: DatabaseServer) -> list[float]:
    """Container memory in MiB, read a few times with the pool full and idle."""
    container = context.container(server)
    samples = []
    for _ in range(MEMORY_SAMPLES):
        wait_until_idle(server)
        memory = container_facts(container, with_memory=True).memory_bytes
        if memory is not None:
            samples.append(memory / MIB)
    return samples


def run(context: BenchContext) -> list[Figure]:
    """Container memory and bytes per copy, Postgres and MariaDB."""
    figures = []
    for engine, server in (("Postgres", context.postgres), ("MariaDB", context.mariadb)):
        memory = container_memory(context, server)
        pool = server.stats()["size"]
        figures.append(
            Figure(
                f"memory.container.{engine.lower()}",
                GROUP,
                f"{engine} container, pool of {pool} full (docker stats)",
                "MiB",
                Summary.of(memory) if memory else None,
                note="" if memory else "Docker reported no memory figure",
            )
        )
    for engine, sizes in (
        ("Postgres", postgres_copy_bytes(context.postgres)),
        ("MariaDB", mariadb_copy_bytes(context)),
    ):
        figures.append(
            Figure(
                f"memory.copy.{engine.lower()}",
                GROUP,
                f"{engine} tmpfs per copy",
                "MiB",
                Summary.of([size / MIB for size in sizes]) if sizes else None,
            )
        )
    return figures
