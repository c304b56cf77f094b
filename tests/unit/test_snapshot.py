"""Snapshot fingerprints and metadata: what names a derived template (pure logic)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from freshdb.migrators import CallableMigrator, SqlMigrator
from freshdb.snapshot import (
    Derivation,
    copy_snapshot_fingerprint,
    snapshot_fingerprint,
    snapshot_project,
)


def seed_users(connection: sa.Connection) -> None:
    connection.exec_driver_sql("INSERT INTO users VALUES (1)")


def seed_orders(connection: sa.Connection) -> None:
    connection.exec_driver_sql("INSERT INTO orders VALUES (1)")


def derivation(
    parent_fingerprint: str = "a" * 64, seed: object = seed_users, **more: object
) -> Derivation:
    fields: dict[str, object] = {
        "parent": "freshdb_t_" + parent_fingerprint[:20],
        "parent_fingerprint": parent_fingerprint,
        "source": "freshdb_t_" + parent_fingerprint[:20],
        "seed": CallableMigrator(seed) if callable(seed) else seed,  # type: ignore[arg-type]
        "key": None,
        "project": "/project :: schema.sql",
        **more,
    }
    return Derivation(**fields)  # type: ignore[arg-type]


def test_the_fingerprint_changes_with_parent_seed_and_key() -> None:
    base = snapshot_fingerprint("p1", "s1", None)
    assert base == snapshot_fingerprint("p1", "s1", None)  # stable
    others = {
        snapshot_fingerprint("p2", "s1", None),
        snapshot_fingerprint("p1", "s2", None),
        snapshot_fingerprint("p1", "s1", "v2"),
        snapshot_fingerprint("p1", "s1", ""),  # an empty key is still a key
    }
    assert base not in others and len(others) == 4
    assert len(base) == 64 and int(base, 16) >= 0


def test_a_snapshot_of_a_copy_is_named_by_its_parent_and_key_only() -> None:
    assert copy_snapshot_fingerprint("p1", "k") == copy_snapshot_fingerprint("p1", "k")
    assert copy_snapshot_fingerprint("p1", "k") != copy_snapshot_fingerprint("p2", "k")
    assert copy_snapshot_fingerprint("p1", "k") != copy_snapshot_fingerprint("p1", "k2")
    # Never the name of a seeded snapshot with the same key.
    assert copy_snapshot_fingerprint("p1", "k") != snapshot_fingerprint("p1", "", "k")
    live = derivation(seed=None, key="after-setup", source="freshdb_c_x_1")
    assert live.fingerprint == copy_snapshot_fingerprint("a" * 64, "after-setup")
    assert live.description == "db.snapshot('after-setup')"


def test_the_seed_fingerprint_is_its_source_or_its_files(tmp_path: Path) -> None:
    assert derivation(seed=seed_users).fingerprint != derivation(seed=seed_orders).fingerprint
    assert derivation(seed=seed_users).fingerprint == derivation(seed=seed_users).fingerprint
    seed = tmp_path / "seed.sql"
    seed.write_text("INSERT INTO users VALUES (1);\n")
    before = derivation(seed=SqlMigrator(seed)).fingerprint
    seed.write_text("INSERT INTO users VALUES (2);\n")
    assert derivation(seed=SqlMigrator(seed)).fingerprint != before


def test_layers_chain_their_parents_fingerprints() -> None:
    first = derivation("a" * 64)
    layer = derivation(first.fingerprint, seed=seed_orders)
    other_first = derivation("b" * 64)
    other_layer = derivation(other_first.fingerprint, seed=seed_orders)
    assert layer.fingerprint != other_layer.fingerprint


def test_the_metadata_says_where_a_snapshot_comes_from() -> None:
    made = derivation(key="v1")
    assert made.metadata() == {
        "kind": "snapshot",
        "parent": "freshdb_t_" + "a" * 20,
        "parent_fingerprint": "a" * 64,
        "seed": "tests.unit.test_snapshot.seed_users()",
        "key": "v1",
    }


def test_projects_chain_so_that_only_a_new_parent_supersedes() -> None:
    parent = "/project :: schema.sql"
    assert snapshot_project(parent, "seed.sql", None) == "/project :: schema.sql >> seed.sql"
    assert snapshot_project(parent, "seed.sql", "v1") != snapshot_project(parent, "seed.sql", "v2")
    layer = snapshot_project(snapshot_project(parent, "a.sql", None), "b.sql", None)
    assert layer.startswith(parent) and layer != snapshot_project(parent, "b.sql", None)
