"""Snapshots under concurrency and crashes: processes asking for one snapshot at once
seed it once; a process killed with SIGKILL while its seed runs leaves no complete
snapshot, and the next session builds it."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

import freshdb
from freshdb import naming
from freshdb.migrators import CallableMigrator

from .conftest import NEVER_HANGS, Admin, Engine, Program, new_prefix

pytestmark = [pytest.mark.docker, pytest.mark.server]

# A session whose template has one empty table; it asks for the snapshot seeded by
# `seed` (one row) once the file P["go"] exists, and reports what it got. The seed
# writes a line to P["log"] each time it runs; with P["block"], the first seed waits
# (to be killed) after saying which database it seeds.
SNAPSHOT_SESSION = """
import json, os, sys, time
from pathlib import Path
P = json.loads(sys.argv[1])
import freshdb
from freshdb.migrators import CallableMigrator

def report(**facts):
    print(json.dumps(facts), flush=True)

def schema(connection):
    connection.exec_driver_sql("CREATE TABLE items (id INT PRIMARY KEY)")

def seed(connection):
    log = Path(P["log"])
    first = not log.exists()
    with log.open("a") as handle:
        handle.write(f"{os.getpid()}\\n")
    connection.exec_driver_sql("INSERT INTO items VALUES (1)")
    if first and P.get("block"):
        report(seeding=connection.engine.url.database)
        time.sleep(600)

server = freshdb.DatabaseServer(
    P["engine"], image=P["image"], mode="sticky", prefix=P["prefix"], pool_size=0,
    snapshot_pool_size=1, schema=CallableMigrator(schema, key=P["schema_key"]),
)
server.start()
report(owner=server.stats()["owner"])
while not Path(P["go"]).exists():
    time.sleep(0.01)
seeded = server.snapshot(CallableMigrator(seed, key="one-row"), key=P["key"])
with seeded.database() as db, db.engine().connect() as conn:
    rows = [list(r) for r in conn.exec_driver_sql("SELECT id FROM items").all()]
report(snapshot=seeded.name, reused=seeded.reused, rows=rows)
server.stop()
"""


def schema(connection: sa.Connection) -> None:
    connection.exec_driver_sql("CREATE TABLE items (id INT PRIMARY KEY)")


def seed(connection: sa.Connection) -> None:
    """What the programs' seed does (the key, not the source, names it)."""
    connection.exec_driver_sql("INSERT INTO items VALUES (1)")


@pytest.fixture(scope="module")
def prefixes() -> dict[str, str]:
    """This module's own sticky server per engine."""
    return {}


@pytest.fixture
def facts(engine: Engine, prefixes: dict[str, str], tmp_path: Path) -> dict[str, object]:
    """What a program needs; a schema and a snapshot key of the test's own."""
    prefix = prefixes.setdefault(engine.name, new_prefix())
    return {
        "engine": engine.name,
        "image": engine.image,
        "prefix": prefix,
        "schema_key": secrets.token_hex(4),
        "key": secrets.token_hex(4),
        "log": str(tmp_path / "seeds.log"),
        "go": str(tmp_path / "go"),
    }


def session(engine: Engine, facts: dict[str, object]) -> freshdb.DatabaseServer:
    """A session in this process on the programs' server and template."""
    return engine.server(
        str(facts["prefix"]),
        pool_size=0,
        snapshot_pool_size=1,
        schema=CallableMigrator(schema, key=str(facts["schema_key"])),
    )


def seeds_run(facts: dict[str, object]) -> int:
    log = Path(str(facts["log"]))
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_four_processes_asking_at_once_seed_once(
    engine: Engine, facts: dict[str, object], programs: Callable[..., Program]
) -> None:
    started = [programs(SNAPSHOT_SESSION, facts) for _ in range(4)]
    for program in started:
        program.report()  # started, template ready: waiting for the go
    Path(str(facts["go"])).touch()
    reports = [program.report() for program in started]
    for program in started:
        program.finish()
    assert seeds_run(facts) == 1
    assert len({r["snapshot"] for r in reports}) == 1
    assert sorted(r["reused"] for r in reports) == [False, True, True, True]
    assert all(r["rows"] == [[1]] for r in reports)


def test_killed_while_seeding_leaves_no_complete_snapshot_and_the_next_builds_it(
    engine: Engine, facts: dict[str, object], programs: Callable[..., Program]
) -> None:
    Path(str(facts["go"])).touch()
    builder = programs(SNAPSHOT_SESSION, {**facts, "block": True})
    owner = builder.report()["owner"]
    seeding = str(builder.report()["seeding"])
    prefix = str(facts["prefix"])
    parsed = naming.parse_database_name(prefix, seeding)
    assert parsed is not None
    snapshot = naming.template_name(prefix, parsed.fingerprint)
    with session(engine, facts) as watcher, Admin.of(watcher) as admin:
        assert not admin.template_complete(snapshot)
        builder.kill()
        admin.wait_until_gone(owner)
        assert not admin.template_complete(snapshot)
        # The next session builds it from the start: the seed runs again, once.
        with session(engine, facts) as next_session:
            rebuilt = next_session.snapshot(
                CallableMigrator(seed, key="one-row"), key=str(facts["key"])
            )
            assert rebuilt.name == snapshot and not rebuilt.reused
            with rebuilt.database() as db, db.engine().connect() as conn:
                assert conn.exec_driver_sql("SELECT id FROM items").scalars().all() == [1]
        assert seeds_run(facts) == 1  # only the killed one wrote: this seed is the test's
        assert admin.template_complete(snapshot)
        # Nothing of the killed builder is left: its build was dropped or reaped.
        deadline = time.monotonic() + NEVER_HANGS
        while [p for p in admin.databases(prefix) if p.owner == owner]:
            assert time.monotonic() < deadline, "the killed builder's build is still there"
            time.sleep(0.05)
        # And a program of the same seed now reuses it without seeding.
        again = programs(SNAPSHOT_SESSION, facts)
        again.report()
        assert again.report() == {"snapshot": snapshot, "reused": True, "rows": [[1]]}
        again.finish()
        assert seeds_run(facts) == 1
