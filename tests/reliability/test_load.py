"""Load: 8 worker processes, each a session of its own, times 100 acquire/release cycles
with real queries, on one server: no error, every copy fresh, nothing leaked, and
the server's memory bounded (the figures are reported, not timed)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from freshdb.backends.containers import container_facts
from freshdb.migrators import CallableMigrator

from .conftest import Admin, Engine, Program, new_prefix

pytestmark = [pytest.mark.docker, pytest.mark.slow]

WORKERS = 8
CYCLES = 100
MIB = 1024 * 1024
#: Far above what a healthy run adds (tens of MiB), far below what leaking the
#: 800 copies would (several GiB on Postgres, hundreds of MiB on MariaDB).
MEMORY_GROWTH_BOUND = 512 * MIB

WORKER = """
import json, os, sys, time
from pathlib import Path
P = json.loads(sys.argv[1])
import freshdb
from freshdb.migrators import CallableMigrator

def schema(connection):
    connection.exec_driver_sql("CREATE TABLE hits (id INT PRIMARY KEY, who VARCHAR(40))")

server = freshdb.DatabaseServer(
    P["engine"], image=P["image"], mode="sticky", prefix=P["prefix"], pool_size=2,
    schema=CallableMigrator(schema, key=P["key"]),
)
barrier = Path(P["barrier"])
with server:
    (barrier / str(os.getpid())).touch()
    deadline = time.monotonic() + 60
    while len(list(barrier.iterdir())) < P["workers"]:
        assert time.monotonic() < deadline, "the other workers never came"
        time.sleep(0.005)
    names = set()
    for cycle in range(P["cycles"]):
        with server.database() as db, db.engine().begin() as conn:
            # A fresh copy every time: empty, whatever the last test wrote elsewhere.
            assert conn.exec_driver_sql("SELECT count(*) FROM hits").scalar() == 0
            conn.exec_driver_sql(f"INSERT INTO hits VALUES ({cycle}, '{os.getpid()}')")
            assert conn.exec_driver_sql("SELECT count(*) FROM hits").scalar() == 1
            names.add(db.name)
    stats = server.stats()
print(json.dumps({"copies": len(names), "waits": stats["waits"], "clones": stats["clones"]}))
"""


def hits_table(connection: Any) -> None:
    """The workers' schema."""
    connection.exec_driver_sql("CREATE TABLE hits (id INT PRIMARY KEY, who VARCHAR(40))")


def memory(docker_client: Any, container_id: str) -> int:
    """The server container's memory use, as `docker stats` shows it (tmpfs included)."""
    used = container_facts(docker_client.containers.get(container_id)).memory_bytes
    assert used is not None
    return used


def test_eight_workers_hundred_cycles_each(
    engine: Engine,
    programs: Callable[..., Program],
    docker_client: Any,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    prefix, key = new_prefix(), secrets.token_hex(4)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    schema = CallableMigrator(hits_table, key=key)  # the workers' schema (same key)
    # A session of its own keeps the server (and the template) for the workers.
    with engine.server(prefix, pool_size=0, schema=schema) as server, Admin.of(server) as admin:
        assert server.running is not None and server.running.container_id is not None
        container_id = server.running.container_id
        before = memory(docker_client, container_id)
        workers = [
            programs(
                WORKER,
                {
                    "engine": engine.name,
                    "image": engine.image,
                    "prefix": prefix,
                    "key": key,
                    "barrier": str(barrier),
                    "workers": WORKERS,
                    "cycles": CYCLES,
                },
            )
            for _ in range(WORKERS)
        ]
        reports = [json.loads(worker.finish()[0].strip().splitlines()[-1]) for worker in workers]
        assert [r["copies"] for r in reports] == [CYCLES] * WORKERS  # a new copy each time
        # Every worker dropped all it made: not a copy, not a build is left.
        assert {p.kind for p in admin.databases(prefix)} == {"template"}
        after = memory(docker_client, container_id)

    facts = {
        "engine": engine.name,
        "memory_before_mib": round(before / MIB, 1),
        "memory_after_mib": round(after / MIB, 1),
        "waits": sum(r["waits"] for r in reports),
        "clones": sum(r["clones"] for r in reports),
    }
    for name, value in facts.items():
        record_property(name, value)
    print(f"\nload {json.dumps(facts)}")
    assert after - before < MEMORY_GROWTH_BOUND, facts
