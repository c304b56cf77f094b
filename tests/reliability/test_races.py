"""Races: many processes starting at the same moment, from nothing, on one server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import Admin, Engine, Program, containers_named, new_prefix

pytestmark = [pytest.mark.docker, pytest.mark.server]

# Each process: wait at a barrier until all are there, then start a session from
# nothing, and check three copies hold its own schema (and only that).
RACER = """
import json, os, sys, time
from pathlib import Path
P = json.loads(sys.argv[1])
import sqlalchemy as sa
import freshdb
from freshdb.migrators import CallableMigrator

def build(connection):
    with open(P["log"], "a") as log:  # one line per migration run
        log.write(f"{os.getpid()}\\n")
    connection.exec_driver_sql(f"CREATE TABLE {P['table']} (id INT PRIMARY KEY, label VARCHAR(20))")
    connection.exec_driver_sql(f"INSERT INTO {P['table']} VALUES (1, 'seed')")

barrier = Path(P["barrier"])
(barrier / str(os.getpid())).touch()
deadline = time.monotonic() + 60
while len(list(barrier.iterdir())) < P["processes"]:
    assert time.monotonic() < deadline, "the other processes never came"
    time.sleep(0.002)

server = freshdb.DatabaseServer(
    P["engine"], image=P["image"], mode="sticky", prefix=P["prefix"], pool_size=1,
    schema=CallableMigrator(build, key=P["table"]),
)
with server:
    copies = []
    for _ in range(3):
        with server.database() as db, db.engine().begin() as conn:
            assert sa.inspect(conn).get_table_names() == [P["table"]]
            rows = conn.exec_driver_sql(f"SELECT id, label FROM {P['table']}").all()
            assert [tuple(row) for row in rows] == [(1, "seed")], rows
            conn.exec_driver_sql(f"INSERT INTO {P['table']} VALUES (2, 'mine')")
            copies.append(db.name)
    print(json.dumps({
        "container": server.running.container_id,
        "template": server.template,
        "built": not server.stats()["template_reused"],
        "copies": copies,
    }), flush=True)
"""


def race(
    programs: Callable[..., Program],
    engine: Engine,
    prefix: str,
    tmp_path: Path,
    tables: list[str],
) -> list[dict[str, Any]]:
    """Start one process per entry of ``tables`` at the same moment; their reports."""
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    started = [
        programs(
            RACER,
            {
                "engine": engine.name,
                "image": engine.image,
                "prefix": prefix,
                "table": table,
                "log": str(tmp_path / f"{table}.log"),
                "barrier": str(barrier),
                "processes": len(tables),
            },
        )
        for table in tables
    ]
    reports = []
    for program, table in zip(started, tables, strict=True):
        out, _ = program.finish()
        reports.append({**json.loads(out.strip().splitlines()[-1]), "table": table})
    return reports


def test_six_processes_from_nothing_make_one_container_and_build_one_template(
    engine: Engine, programs: Callable[..., Program], tmp_path: Path, docker_client: Any
) -> None:
    prefix = new_prefix()
    reports = race(programs, engine, prefix, tmp_path, ["items"] * 6)

    assert len({r["container"] for r in reports}) == 1
    assert len(containers_named(docker_client, prefix)) == 1
    assert len({r["template"] for r in reports}) == 1
    # One migration run in all, by the one process that says it built the template.
    assert len((tmp_path / "items.log").read_text().splitlines()) == 1
    assert sum(r["built"] for r in reports) == 1
    copies = [name for r in reports for name in r["copies"]]
    assert len(set(copies)) == len(copies) == 18

    container = docker_client.containers.get(reports[0]["container"])
    server = engine.server(prefix, pool_size=0)
    with server, Admin.of(server) as admin:
        assert server.running is not None and server.running.container_id == container.id
        left = admin.databases(prefix)
        # Every process dropped its copies on the way out; the template stays.
        assert {p.kind for p in left} == {"template"}
        assert reports[0]["template"] in {p.name for p in left}


def test_two_schemas_at_once_on_one_server_make_two_templates_without_mixing(
    engine: Engine, programs: Callable[..., Program], tmp_path: Path, docker_client: Any
) -> None:
    prefix = new_prefix()
    reports = race(programs, engine, prefix, tmp_path, ["alpha", "beta", "alpha", "beta"])

    assert len({r["container"] for r in reports}) == 1
    assert len(containers_named(docker_client, prefix)) == 1
    templates = {
        table: {r["template"] for r in reports if r["table"] == table}
        for table in ("alpha", "beta")
    }
    assert len(templates["alpha"]) == len(templates["beta"]) == 1
    assert templates["alpha"] != templates["beta"]
    for table in ("alpha", "beta"):
        assert len((tmp_path / f"{table}.log").read_text().splitlines()) == 1
        assert sum(r["built"] for r in reports if r["table"] == table) == 1
    # Each copy held its own schema only: the racers asserted their tables inside.
    server = engine.server(prefix, pool_size=0)
    with server, Admin.of(server) as admin:
        built = {p.name for p in admin.databases(prefix) if p.kind == "template"}
        assert built - {server.template} == templates["alpha"] | templates["beta"]
        assert {p.kind for p in admin.databases(prefix)} == {"template"}
