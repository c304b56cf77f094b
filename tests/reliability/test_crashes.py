"""Crashes: a process killed with SIGKILL (no cleanup runs) mid-acquire, mid-template
build, mid-release, or while holding the lock on starting the sticky server. The next
session must find a consistent state: no broken template marked complete, leaked
copies reaped, no lock left held."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import filelock
import pytest
import sqlalchemy as sa

import freshdb
from freshdb import naming
from freshdb.migrators import CallableMigrator
from freshdb.template import TemplateBuilder

from .conftest import NEVER_HANGS, Admin, Engine, Program, new_prefix

pytestmark = [pytest.mark.docker, pytest.mark.server]

# What every crash program starts with: a session on the module's server whose
# template has one table with one row (the key names the schema).
SESSION = """
import json, os, sys, time
from pathlib import Path
P = json.loads(sys.argv[1])
import freshdb
from freshdb import naming
from freshdb.migrators import CallableMigrator

def build(connection):
    log = Path(P["log"])
    first = not log.exists()
    with log.open("a") as handle:
        handle.write(f"{os.getpid()}\\n")
    connection.exec_driver_sql("CREATE TABLE items (id INT PRIMARY KEY)")
    connection.exec_driver_sql("INSERT INTO items VALUES (1)")
    if first and P.get("sleep_in_first_build"):
        print(json.dumps({"building": os.getpid()}), flush=True)
        time.sleep(600)

server = freshdb.DatabaseServer(
    P["engine"], image=P["image"], mode="sticky", prefix=P["prefix"],
    pool_size=P.get("pool_size", 2), schema=CallableMigrator(build, key=P["key"]),
)
server.start()

def report(**facts):
    print(json.dumps(facts), flush=True)

def owner_of(name):
    return naming.parse_database_name(P["prefix"], name).owner
"""

MID_ACQUIRE = (
    SESSION
    + """
held = [server.database() for _ in range(3)]
report(owner=owner_of(held[0].name), held=[db.name for db in held])
while True:  # with no copy ready, every acquire waits for a CREATE DATABASE: kill lands in one
    held.append(server.database())
"""
)

MID_RELEASE = (
    SESSION
    + """
released = []
for number in range(6):
    db = server.database()
    with db.engine().begin() as conn:
        conn.exec_driver_sql("CREATE TABLE dirt (id INT)")
        conn.exec_driver_sql("INSERT INTO items VALUES (2)")
    released.append(db.name)
    db.release()  # dropped in the background, from now on
report(owner=owner_of(released[0]), released=released)
time.sleep(600)
"""
)

FINISH = (
    SESSION
    + """
with server.database() as db, db.engine().connect() as conn:
    rows = [tuple(r) for r in conn.exec_driver_sql("SELECT id FROM items").all()]
report(template=server.template, built=not server.stats()["template_reused"], rows=rows)
server.stop()
"""
)

# Holds the lock on starting the sticky server (the real one DockerBackend takes),
# then waits to be killed.
HOLD_START_LOCK = """
import json, sys, time
P = json.loads(sys.argv[1])
import freshdb
from freshdb.backends import sticky

def hold(*args, **kwargs):
    lock_path = sys._getframe(1).f_locals["lock_path"]  # _start_sticky's lock
    print(json.dumps({"lock": str(lock_path)}), flush=True)
    time.sleep(600)

sticky.find_or_create = hold
# The recorded address would reach the server without Docker's way (and its lock
# holder): this start must take Docker's way.
from freshdb.backends.recorded import RecordedStickyBackend
RecordedStickyBackend._reuse = lambda *args, **kwargs: None
freshdb.DatabaseServer(P["engine"], image=P["image"], mode="sticky", prefix=P["prefix"]).start()
"""


@pytest.fixture(scope="module")
def crash_servers() -> Iterator[dict[str, freshdb.DatabaseServer]]:
    """One server per engine for this module (own prefix: reaping here is exact)."""
    started: dict[str, freshdb.DatabaseServer] = {}
    yield started
    for server in started.values():
        server.stop()


@pytest.fixture
def server(
    engine: Engine, crash_servers: dict[str, freshdb.DatabaseServer]
) -> freshdb.DatabaseServer:
    """This engine's server for the module, started on first use."""
    if engine.name not in crash_servers:
        crash_servers[engine.name] = engine.server(new_prefix(), pool_size=0).start()
    return crash_servers[engine.name]


def params(
    engine: Engine, server: freshdb.DatabaseServer, tmp_path: Path, **more: object
) -> dict[str, object]:
    """What a crash program needs: the server's settings and a schema of its own."""
    return {
        "engine": engine.name,
        "image": engine.image,
        "prefix": server.settings.prefix,
        "key": secrets.token_hex(4),
        "log": str(tmp_path / "migrations.log"),
        **more,
    }


def template_name(server: freshdb.DatabaseServer, admin: Admin, key: str) -> str:
    """The name the template of a crash program's schema gets on this server."""
    builder = TemplateBuilder(server.dialect, server.address, server.settings.prefix, "0" * 8)
    migrator = CallableMigrator(lambda connection: None, key=key)
    return naming.template_name(
        server.settings.prefix, builder.fingerprint(admin.conn, migrator).digest
    )


def next_session_finds_it_clean(
    engine: Engine,
    server: freshdb.DatabaseServer,
    admin: Admin,
    key: str,
    dead_owner: str,
) -> None:
    """A new session reaps everything the dead one left, and the template is sound."""
    prefix = server.settings.prefix
    leftovers = {p.name for p in admin.databases(prefix) if p.owner == dead_owner}
    assert leftovers, "the killed session left nothing: the test did not test anything"
    schema = CallableMigrator(lambda connection: None, key=key)  # same key: same template
    with engine.server(prefix, pool_size=1, schema=schema) as session:
        assert set(session.stats()["reaped"]) >= leftovers
        assert session.stats()["template_reused"] is True
        assert not [p for p in admin.databases(prefix) if p.owner == dead_owner]
        with session.database() as db, db.engine().connect() as conn:
            # A copy of the template as built: the dead session's writes went nowhere.
            assert sa.inspect(conn).get_table_names() == ["items"]
            assert conn.exec_driver_sql("SELECT id FROM items").scalars().all() == [1]
        fingerprint = naming.parse_database_name(prefix, session.template or "")
    # Nobody uses the template now: the dead session's in-use marker died with it
    # (and the stopped session's is gone once the server has seen its lease close).
    assert fingerprint is not None
    deadline = time.monotonic() + NEVER_HANGS
    while not admin.dialect.try_lock_unused_template(admin.conn, fingerprint.fingerprint):
        assert time.monotonic() < deadline, "the template stays marked in use"
        time.sleep(0.05)
    admin.dialect.unlock_template(admin.conn, fingerprint.fingerprint)


@pytest.mark.parametrize(
    ("program_code", "pool_size"),
    [(MID_ACQUIRE, 0), (MID_RELEASE, None)],
    ids=["mid_acquire", "mid_release"],
)
def test_killed_mid_acquire_or_release(
    engine: Engine,
    server: freshdb.DatabaseServer,
    programs: Callable[..., Program],
    tmp_path: Path,
    program_code: str,
    pool_size: int | None,
) -> None:
    more = {} if pool_size is None else {"pool_size": pool_size}
    facts = params(engine, server, tmp_path, **more)
    program = programs(program_code, facts)
    owner = program.report()["owner"]
    program.kill()
    with Admin.of(server) as admin:
        admin.wait_until_gone(owner)
        next_session_finds_it_clean(engine, server, admin, str(facts["key"]), owner)


def test_killed_mid_template_build_leaves_no_complete_template_and_no_held_lock(
    engine: Engine,
    server: freshdb.DatabaseServer,
    programs: Callable[..., Program],
    tmp_path: Path,
) -> None:
    facts = params(engine, server, tmp_path, sleep_in_first_build=True)
    builder = programs(FINISH, facts)
    builder.report()  # it is inside the migration, holding the template's build lock
    waiter = programs(FINISH, facts)  # blocks on that lock
    with Admin.of(server) as admin:
        template = template_name(server, admin, str(facts["key"]))
        assert not admin.template_complete(template)
        builder.kill()
        # The lock died with the killed builder's connection: the waiter builds anew.
        report = waiter.report()
        waiter.finish()
        assert report == {"template": template, "built": True, "rows": [[1]]}
        assert len(Path(str(facts["log"])).read_text().splitlines()) == 2
        assert admin.template_complete(template)
        # The killed build was dropped; no copy, no build is left of anybody.
        kinds = {p.kind for p in admin.databases(server.settings.prefix)}
        assert kinds == {"template"}


def test_the_start_lock_dies_with_its_holder(
    postgres: Engine,
    crash_servers: dict[str, freshdb.DatabaseServer],
    programs: Callable[..., Program],
) -> None:
    if "postgres" not in crash_servers:
        crash_servers["postgres"] = postgres.server(new_prefix(), pool_size=0).start()
    prefix = crash_servers["postgres"].settings.prefix
    holder = programs(
        HOLD_START_LOCK, {"engine": "postgres", "image": postgres.image, "prefix": prefix}
    )
    lock = filelock.FileLock(holder.report()["lock"])
    with pytest.raises(filelock.Timeout):
        lock.acquire(timeout=0.2)  # held: the test can tell
    holder.kill()
    lock.acquire(timeout=0)  # the kernel released it with the process
    lock.release()
    # And freshdb itself gets past it (a stuck lock would fail after startup_timeout).
    with postgres.server(prefix, pool_size=0, startup_timeout=5) as session:
        assert session.running is not None and session.running.reused
