"""Snapshots on real servers of both engine families: seeded state built once per
server, handed out as fresh copies, reused across sessions, layered, taken from a
live copy, and a failing seed that leaves nothing complete."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from tenacity import Retrying, stop_after_delay, wait_fixed

import freshdb
from freshdb import naming
from freshdb.dialects.base import DBAPIConnection
from freshdb.migrators import CallableMigrator
from freshdb.template import read_metadata

from ..conftest import ENGINES, image_for
from .conftest import sticky_server

pytestmark = [pytest.mark.docker, pytest.mark.server]


def items_table(connection: sa.Connection) -> None:
    """The template: one table with an auto-numbered key, empty."""
    metadata = sa.MetaData()
    sa.Table(
        "items",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(50), nullable=False),
    )
    metadata.create_all(connection)


SCHEMA = CallableMigrator(items_table, key="snapshot-tests-items")

#: Every call of a seed below, by name: the proof that a seed ran, or did not.
CALLS: list[str] = []


def seed_five_keep_three(connection: sa.Connection) -> None:
    """Five rows, the last two deleted: the counter stands past them (next id 6)."""
    CALLS.append("five")
    for name in ("ada", "bob", "cy", "dee", "eve"):
        connection.execute(sa.text("INSERT INTO items (name) VALUES (:name)"), {"name": name})
    connection.execute(sa.text("DELETE FROM items WHERE id > 3"))


def seed_one_more(connection: sa.Connection) -> None:
    """A layer: one more row, and a table of its own (a seed may change the schema)."""
    CALLS.append("more")
    connection.execute(sa.text("INSERT INTO items (name) VALUES ('layer')"))
    connection.exec_driver_sql("CREATE TABLE notes (id INT PRIMARY KEY)")


FAILING_ONCE: list[int] = []


def seed_failing_the_first_time(connection: sa.Connection) -> None:
    """Fails on its first call (a missing table), succeeds after."""
    CALLS.append("failing")
    connection.execute(sa.text("INSERT INTO items (name) VALUES ('before the failure')"))
    if not FAILING_ONCE:
        FAILING_ONCE.append(1)
        connection.execute(sa.text("INSERT INTO no_such_table (id) VALUES (1)"))


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def new_server(engine: str, run_prefix: str, **options: Any) -> freshdb.DatabaseServer:
    options.setdefault("pool_size", 1)
    options.setdefault("snapshot_pool_size", 1)
    return sticky_server(engine, image_for(engine), run_prefix, schema=SCHEMA, **options)


@pytest.fixture
def server(engine: str, run_prefix: str) -> Iterator[freshdb.DatabaseServer]:
    with new_server(engine, run_prefix) as server:
        yield server


def unique_key() -> str:
    """A key no other test (or earlier run on the same server) used: a build for sure."""
    return secrets.token_hex(6)


def rows(db: freshdb.Database, table: str = "items") -> list[tuple[Any, ...]]:
    with db.engine().connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY id"))]


def insert(db: freshdb.Database, name: str) -> int:
    """Insert a row; its new id."""
    with db.engine().begin() as conn:
        conn.execute(sa.text("INSERT INTO items (name) VALUES (:name)"), {"name": name})
        return int(conn.execute(sa.text("SELECT max(id) FROM items")).scalar_one())


@contextlib.contextmanager
def admin(server: freshdb.DatabaseServer) -> Iterator[DBAPIConnection]:
    """An admin connection to the server, to look at what is on it."""
    conn = server.dialect.connect(server.address)
    try:
        yield conn
    finally:
        conn.close()


def complete(server: freshdb.DatabaseServer, name: str) -> bool:
    with admin(server) as conn:
        return server.dialect.template_is_complete(conn, name)


def metadata_of(server: freshdb.DatabaseServer, name: str) -> dict[str, Any]:
    with admin(server) as conn:
        return read_metadata(server.dialect, conn, name)


def builds_left(server: freshdb.DatabaseServer, fingerprint: str) -> list[str]:
    with admin(server) as conn:
        builds = server.dialect.our_databases(conn, server.settings.prefix, ("build",))
    return [p.name for p in builds if fingerprint.startswith(p.fingerprint)]


@pytest.mark.compat
def test_a_snapshot_copy_holds_the_seeded_rows_and_counters_continue(
    server: freshdb.DatabaseServer,
) -> None:
    seeded = server.snapshot(seed_five_keep_three, key=unique_key())
    assert not seeded.reused
    assert seeded.name == naming.template_name(server.settings.prefix, seeded.fingerprint)
    assert seeded.parent == server.template
    names = set()
    for _ in range(3):
        with seeded.database() as db:
            names.add(db.name)
            assert rows(db) == [(1, "ada"), (2, "bob"), (3, "cy")]
            # The sequence (AUTO_INCREMENT) stands where the seed left it: past 5.
            assert insert(db, "new") == 6
            with db.engine().begin() as conn:
                conn.exec_driver_sql("DELETE FROM items WHERE id = 1")
    assert len(names) == 3  # each a fresh copy: the write above never shows in the next
    # The template's own copies are untouched by the seed.
    with server.database() as plain:
        assert rows(plain) == []
    metadata = metadata_of(server, seeded.name)
    assert metadata["kind"] == "snapshot"
    assert metadata["parent"] == server.template
    assert metadata["seed"].endswith("seed_five_keep_three()")
    assert server.template is not None
    assert metadata["parent_fingerprint"].startswith(
        naming.parse_database_name(server.settings.prefix, server.template).fingerprint  # type: ignore[union-attr]
    )
    assert seeded.name in server.stats()["snapshots"]
    assert seeded.stats()["parent"] == server.template


def test_a_second_session_reuses_the_snapshot_without_seeding(engine: str, run_prefix: str) -> None:
    key = unique_key()
    CALLS.clear()
    with new_server(engine, run_prefix) as first:
        built = first.snapshot(seed_five_keep_three, key=key)
        assert first.snapshot(seed_five_keep_three, key=key) is built  # one per session
        assert CALLS == ["five"]
        assert not built.reused and built.build_seconds > 0
    with new_server(engine, run_prefix) as second:
        again = second.snapshot(seed_five_keep_three, key=key)
        assert again.reused and again.name == built.name
        assert CALLS == ["five"]  # not seeded again
        with again.database() as db:
            assert [name for _, name in rows(db)] == ["ada", "bob", "cy"]


def test_a_changed_seed_or_key_builds_a_new_snapshot(server: freshdb.DatabaseServer) -> None:
    key = unique_key()
    first = server.snapshot(seed_five_keep_three, key=key)
    other_key = server.snapshot(seed_five_keep_three, key=key + "x")
    other_seed = server.snapshot(seed_one_more, key=key)
    assert len({first.name, other_key.name, other_seed.name}) == 3
    assert not other_key.reused and not other_seed.reused
    with other_seed.database() as db:
        assert [name for _, name in rows(db)] == ["layer"]


def test_snapshots_layer_on_snapshots(server: freshdb.DatabaseServer) -> None:
    key = unique_key()
    base = server.snapshot(seed_five_keep_three, key=key)
    layer = base.snapshot(seed_one_more)
    assert layer.parent == base.name
    assert layer.fingerprint != base.fingerprint
    assert metadata_of(server, layer.name)["parent"] == base.name
    with layer.database() as db:
        assert [name for _, name in rows(db)] == ["ada", "bob", "cy", "layer"]
        assert rows(db, "notes") == []  # the layer's own table
    with base.database() as db:
        assert len(rows(db)) == 3
    # The chain is in the fingerprint: another base gives another layer.
    other = server.snapshot(seed_five_keep_three, key=key + "y").snapshot(seed_one_more)
    assert other.name != layer.name


def test_a_snapshot_of_a_copy_captures_its_committed_state(
    server: freshdb.DatabaseServer,
) -> None:
    key = unique_key()
    with server.database() as db:
        insert(db, "expensive setup")
        insert(db, "done once")
        taken = db.snapshot(key)
        assert not taken.reused and taken.parent == server.template
        # The copy stays the test's own, and usable.
        insert(db, "after the snapshot")
        assert len(rows(db)) == 3
    with taken.database() as copy:
        assert [name for _, name in rows(copy)] == ["expensive setup", "done once"]
        assert insert(copy, "next") == 3
    with server.database() as other:
        insert(other, "something else")
        again = other.snapshot(key)  # complete already: reused as is
    assert again is taken
    assert metadata_of(server, taken.name)["key"] == key


def test_a_snapshot_of_a_snapshot_copy_layers_on_it(server: freshdb.DatabaseServer) -> None:
    seeded = server.snapshot(seed_five_keep_three, key=unique_key())
    with seeded.database() as db:
        insert(db, "branch")
        branch = db.snapshot("branch")
    assert branch.parent == seeded.name
    with branch.database() as copy:
        assert [name for _, name in rows(copy)] == ["ada", "bob", "cy", "branch"]


def test_a_released_copy_cannot_be_snapshotted(server: freshdb.DatabaseServer) -> None:
    db = server.database()
    db.release()
    with pytest.raises(freshdb.FreshDBError, match="was released"):
        db.snapshot(unique_key())


def test_a_snapshot_needs_a_seed_and_a_key_that_is_a_string(
    server: freshdb.DatabaseServer,
) -> None:
    with pytest.raises(freshdb.ConfigurationError, match="needs a seed"):
        server.snapshot(None)
    with server.database() as db, pytest.raises(freshdb.ConfigurationError, match="needs a key"):
        db.snapshot("")


def seed_rows(count: int, connection: sa.Connection) -> None:
    """``count`` rows: made into a seed by ``functools.partial``, whose source cannot be read."""
    for n in range(count):
        connection.execute(sa.text("INSERT INTO items (name) VALUES (:name)"), {"name": f"r{n}"})


def test_a_seed_whose_source_cannot_be_read_is_named_by_its_key(
    server: freshdb.DatabaseServer,
) -> None:
    # A partial (or a callable object) has no source to fingerprint: the key the guide
    # offers for "a seed whose result depends on something freshdb cannot see" names it.
    key = unique_key()
    two = server.snapshot(functools.partial(seed_rows, 2), key=key)
    five = server.snapshot(functools.partial(seed_rows, 5), key=f"{key}-5")
    with two.database() as db:
        assert len(rows(db)) == 2
    with five.database() as db:
        assert len(rows(db)) == 5
    assert "0x" not in metadata_of(server, two.name)["seed"]  # no memory address in it
    # Without a key, the error says to pass one to snapshot(), not to a migrator.
    with pytest.raises(freshdb.ConfigurationError, match=r"snapshot\(seed, key="):
        server.snapshot(functools.partial(seed_rows, 3))


def test_a_failing_seed_names_itself_and_its_statement_and_leaves_nothing_complete(
    server: freshdb.DatabaseServer,
) -> None:
    key = unique_key()
    FAILING_ONCE.clear()
    with pytest.raises(freshdb.SeedError) as failure:
        server.snapshot(seed_failing_the_first_time, key=key)
    message = str(failure.value)
    assert "seed_failing_the_first_time()" in message
    assert "INSERT INTO no_such_table" in message
    assert "no snapshot was marked complete" in message
    assert isinstance(failure.value, freshdb.MigrationError)
    name = message.split("seeding snapshot ", 1)[1].split(" ", 1)[0]
    assert not complete(server, name)
    # The next attempt builds it from the start (the seed now succeeds).
    CALLS.clear()
    built = server.snapshot(seed_failing_the_first_time, key=key)
    assert CALLS == ["failing"] and not built.reused and built.name == name
    assert builds_left(server, built.fingerprint) == []
    with built.database() as db:
        assert [name for _, name in rows(db)] == ["before the failure"]


def test_a_failing_sql_seed_names_the_file_and_statement(
    server: freshdb.DatabaseServer, tmp_path: Path
) -> None:
    seed = tmp_path / "seed.sql"
    seed.write_text(
        f"-- {unique_key()}\nINSERT INTO items (name) VALUES ('ok');\n"
        "INSERT INTO missing_table (id) VALUES (7);\n"
    )
    with pytest.raises(freshdb.SeedError) as failure:
        server.snapshot(seed)
    message = str(failure.value)
    assert "seed.sql" in message and "missing_table" in message
    assert "seeding snapshot" in message
    name = message.split("seeding snapshot ", 1)[1].split(" ", 1)[0]
    assert not complete(server, name)


def test_async_copies_of_a_snapshot(server: freshdb.DatabaseServer) -> None:
    seeded = server.snapshot(seed_five_keep_three, key=unique_key())

    async def use() -> list[str]:
        async with seeded.adatabase() as db:
            return [name for _, name in rows(db)]

    assert asyncio.run(use()) == ["ada", "bob", "cy"]


def test_postgres_refuses_to_snapshot_a_copy_someone_is_connected_to(
    run_prefix: str, postgres_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("freshdb.template.CLONE_SOURCE_WAIT_SECONDS", 1.0)
    with new_server("postgres", run_prefix) as server, server.database() as db:
        conn = db.engine().connect()
        try:
            conn.execute(sa.text("INSERT INTO items (name) VALUES ('uncommitted')"))
            with pytest.raises(freshdb.FreshDBError, match="commit and close them first"):
                db.snapshot(unique_key())
        finally:
            conn.close()
        # Closed: now it works, and holds only what was committed.
        taken = db.snapshot(unique_key())
        with taken.database() as copy:
            assert rows(copy) == []


def test_mysql_snapshots_only_the_committed_state_of_a_copy_in_use(
    run_prefix: str, mysql_family: Any
) -> None:
    with new_server(mysql_family.engine, run_prefix) as server, server.database() as db:
        insert(db, "committed")
        conn = db.engine().connect()
        try:
            conn.execute(sa.text("INSERT INTO items (name) VALUES ('uncommitted')"))
            # The open transaction's row locks neither block the copy nor reach it.
            taken = db.snapshot(unique_key())
        finally:
            conn.rollback()
            conn.close()
        with taken.database() as copy:
            assert [name for _, name in rows(copy)] == ["committed"]


def test_an_engine_made_but_not_used_yet_does_not_block_a_snapshot(
    server: freshdb.DatabaseServer,
) -> None:
    with server.database() as db:
        engine = db.engine()  # holds the connection opened ahead, unused
        taken = db.snapshot(unique_key())
        with engine.connect() as conn:  # still usable afterwards
            assert conn.execute(sa.text("SELECT count(*) FROM items")).scalar_one() == 0
    assert not taken.reused


def test_a_stopped_session_hands_out_no_snapshot_copies(engine: str, run_prefix: str) -> None:
    with new_server(engine, run_prefix) as server:
        seeded = server.snapshot(seed_five_keep_three, key=unique_key())
        db = server.database()
    with pytest.raises(freshdb.FreshDBError):
        seeded.database(timeout=1)
    with pytest.raises(freshdb.FreshDBError, match="stopped"):
        db.snapshot(unique_key())
    with pytest.raises(freshdb.FreshDBError, match="not started"):
        server.snapshot(seed_five_keep_three)


def test_a_snapshot_built_while_the_server_stops_leaves_no_pool_behind(
    engine: str, run_prefix: str
) -> None:
    seeding, go_on = threading.Event(), threading.Event()

    def seed_waiting_for_the_stop(connection: sa.Connection) -> None:
        seeding.set()
        assert go_on.wait(60)
        connection.execute(sa.text("INSERT INTO items (name) VALUES ('late')"))

    outcome: list[object] = []

    def build() -> None:
        try:
            outcome.append(server.snapshot(seed_waiting_for_the_stop, key=unique_key()))
        except freshdb.FreshDBError as exc:
            outcome.append(exc)

    server = new_server(engine, run_prefix).start()
    owner, address = server.stats()["owner"], server.address
    snapshots = server._snapshots
    assert snapshots is not None
    builder = threading.Thread(target=build)
    builder.start()
    assert seeding.wait(60)
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    try:
        # The stop has begun closing the session's snapshots; only then does the seed end.
        for attempt in Retrying(stop=stop_after_delay(30), wait=wait_fixed(0.05), reraise=True):
            with attempt:
                assert snapshots._closed
    finally:
        go_on.set()
        builder.join(60)
        stopper.join(60)
    assert not builder.is_alive() and not stopper.is_alive()
    # The build finished after the session stopped: its pool must not start (it would
    # clone copies nobody drops, with workers nobody stops).
    assert len(outcome) == 1 and isinstance(outcome[0], freshdb.FreshDBError), outcome
    assert "stopped" in str(outcome[0])
    conn = server.dialect.connect(address)
    try:
        left = [
            parsed.name
            for parsed in server.dialect.our_databases(conn, run_prefix, ("copy",))
            if parsed.owner == owner
        ]
    finally:
        conn.close()
    assert left == []


def test_pruning_never_drops_a_snapshot_a_live_session_uses(engine: str, fresh_prefix: str) -> None:
    from freshdb.cleanup.retention import prune_templates

    def prune_everything_unused(server: freshdb.DatabaseServer) -> None:
        with admin(server) as conn:
            prune_templates(server.dialect, conn, fresh_prefix, 1, (), retention_seconds=0)

    with new_server(engine, fresh_prefix) as server:
        seeded = server.snapshot(seed_five_keep_three)
        prune_everything_unused(server)
        assert complete(server, seeded.name)
        with seeded.database() as db:
            assert len(rows(db)) == 3
        with new_server(engine, fresh_prefix) as watcher:
            server.stop()  # nobody uses the snapshot any more: now it may go
            prune_everything_unused(watcher)
            assert not complete(watcher, seeded.name)
