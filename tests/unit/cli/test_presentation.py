"""How ``freshdb status`` nests snapshots under their templates, without a server."""

from __future__ import annotations

import dataclasses

from freshdb.cleanup.inventory import ServerStatus, TemplateInfo, snapshots_under_parents
from freshdb.cli.presentation import server_text
from freshdb.config import Settings


def info(name: str, *, parent: str | None = None, **fields: object) -> TemplateInfo:
    return TemplateInfo(
        name=name,
        fingerprint=name,
        created="2026-12-01T10:00:00.000+00:00",
        size_bytes=8 * 1024 * 1024,
        in_use=False,
        stale=False,
        migrator=None if parent else "SQL schema.sql",
        last_used="2026-12-01T11:00:00.000+00:00",
        kind="snapshot" if parent else "template",
        parent=parent,
        seed="load_reference_data()" if parent else None,
        **fields,  # type: ignore[arg-type]
    )


def tree() -> list[TemplateInfo]:
    return snapshots_under_parents(
        [
            info("t_layer", parent="t_seeded", key="after-checkout"),
            info("t_base"),
            info("t_seeded", parent="t_base", copies=2),
            info("t_orphan", parent="t_gone"),
        ]
    )


def test_snapshots_nest_under_their_parents_and_orphans_stay_on_top() -> None:
    top = tree()
    assert [t.name for t in top] == ["t_base", "t_orphan"]
    (seeded,) = top[0].snapshots
    assert seeded.name == "t_seeded"
    assert [s.name for s in seeded.snapshots] == ["t_layer"]
    assert [t.name for t in top[0].flattened()] == ["t_base", "t_seeded", "t_layer"]
    as_json = dataclasses.asdict(top[0])
    assert as_json["snapshots"][0]["snapshots"][0]["key"] == "after-checkout"


def test_status_text_shows_snapshots_indented_under_their_template() -> None:
    server = ServerStatus(
        name="fdb-postgres-0123456789",
        engine="postgres",
        mode="sticky",
        prefix="fdb",
        image=None,
        status="running",
        host="127.0.0.1",
        port=5432,
        uptime_seconds=None,
        memory_bytes=None,
        templates=tree(),
    )
    lines = server_text(server, Settings()).splitlines()
    rows = {line.split()[0] if line.split()[0] != "└" else line.split()[1]: line for line in lines}
    base, seeded, layer = rows["t_base"], rows["t_seeded"], rows["t_layer"]
    assert base.index("t_base") < seeded.index("t_seeded") < layer.index("t_layer")
    assert "snapshot: load_reference_data()" in seeded and "  2  " in seeded
    assert "key 'after-checkout'" in layer
    assert "of t_gone (not listed: gone or busy)" in rows["t_orphan"]
    assert lines.index(base) < lines.index(seeded) < lines.index(layer)
