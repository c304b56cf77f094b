"""Template retention: which templates pruning removes, decided without a server."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from freshdb.cleanup.retention import TemplateRecord, plan_pruning
from freshdb.migrators import CallableMigrator, ComposedMigrator, MetadataMigrator, SqlMigrator
from freshdb.template import project_key, schema_source

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
WEEK = 7 * 86400.0


def ago(**delta: float) -> str:
    return (NOW - dt.timedelta(**delta)).isoformat(timespec="milliseconds")


def template(
    name: str, projects: dict[str, str], *, in_use: bool = False, created: str | None = None
) -> TemplateRecord:
    last = max(projects.values()) if projects else (created or "")
    return TemplateRecord(
        name=name,
        fingerprint=name,
        created=created or last,
        last_used=last,
        projects=projects,
        migrator=None,
        in_use=in_use,
    )


def names(records: list[TemplateRecord], keep: int, **options: object) -> list[str]:
    return [p.name for p in plan_pruning(records, keep, WEEK, now=NOW, **options)]  # type: ignore[arg-type]


def test_nothing_goes_while_the_server_holds_no_more_than_keep() -> None:
    records = [template(f"t{i}", {"a": ago(days=30 + i)}) for i in range(3)]
    assert names(records, keep=3) == []


def test_four_projects_in_turn_keep_their_templates_beyond_keep() -> None:
    records = [template(f"t{p}", {p: ago(hours=i)}) for i, p in enumerate("abcd")]
    assert names(records, keep=1) == []


def test_a_superseded_template_goes_first_even_if_used_recently() -> None:
    records = [
        template("a_old", {"a": ago(minutes=5)}),
        template("a_new", {"a": ago(minutes=1)}),
        template("b", {"b": ago(days=30)}),  # beyond retention, but current for b
        template("c", {"c": ago(hours=1)}),
    ]
    plan = plan_pruning(records, 3, WEEK, now=NOW)
    assert [p.name for p in plan] == ["a_old"]
    assert "superseded" in plan[0].reason
    assert names(records, keep=2) == ["a_old", "b"]  # then the idle one
    assert names(records, keep=1) == ["a_old", "b"]  # never one used within the week


def test_idle_templates_go_least_recently_used_first() -> None:
    records = [
        template("recent", {"r": ago(days=1)}),
        template("idle_10", {"x": ago(days=10)}),
        template("idle_20", {"y": ago(days=20)}),
    ]
    assert names(records, keep=2) == ["idle_20"]
    assert names(records, keep=1) == ["idle_20", "idle_10"]


def test_a_template_shared_by_projects_is_superseded_only_for_all_of_them() -> None:
    records = [
        template("shared", {"a": ago(hours=3), "b": ago(hours=2)}),
        template("a_new", {"a": ago(hours=1)}),
    ]
    assert names(records, keep=1) == []  # b still has it as its current template
    records.append(template("b_new", {"b": ago(minutes=30)}))
    assert names(records, keep=2) == ["shared"]


def test_switching_back_to_an_older_schema_makes_the_newer_one_superseded() -> None:
    records = [
        template("main", {"a": ago(minutes=1)}, created=ago(days=3)),
        template("feature", {"a": ago(hours=2)}, created=ago(days=1)),
        template("other", {"b": ago(hours=1)}),
    ]
    assert names(records, keep=2) == ["feature"]


def test_templates_in_use_or_protected_never_go() -> None:
    records = [
        template("a_old", {"a": ago(days=20)}, in_use=True),
        template("a_new", {"a": ago(days=1)}),
        template("idle", {"b": ago(days=30)}),
    ]
    assert names(records, keep=1) == ["idle"]
    assert names(records, keep=1, protect={"idle"}) == []


def test_templates_of_an_older_freshdb_go_by_age_only() -> None:
    # No projects recorded: never "superseded", only idle once past the retention.
    records = [
        template("old_style", {}, created=ago(days=10)),
        template("fresh_style", {}, created=ago(days=1)),
        template("current", {"a": ago(minutes=1)}),
    ]
    assert names(records, keep=1) == ["old_style"]


def test_a_project_is_its_root_and_schema_source(tmp_path: Path) -> None:
    project = tmp_path / "app"
    (project / "src").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'app'\n")
    schema = project / "schema.sql"
    schema.write_text("CREATE TABLE a (id int);\n")
    key = project_key(SqlMigrator(schema), start=project / "src")
    assert key.startswith(f"{project.resolve()} :: ")
    schema.write_text("CREATE TABLE a (id int, b int);\n")  # edited: the same project
    assert project_key(SqlMigrator(schema), start=project) == key
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    assert project_key(SqlMigrator(schema), start=elsewhere) != key

    def build(connection: object) -> None: ...

    assert project_key(CallableMigrator(build, key="v1"), start=project) == project_key(
        CallableMigrator(build, key="v2"), start=project
    )


def test_a_metadata_schema_source_ignores_its_size() -> None:
    import sqlalchemy as sa

    small, big = sa.MetaData(), sa.MetaData()
    sa.Table("a", small, sa.Column("id", sa.Integer, primary_key=True))
    for name in "ab":
        sa.Table(name, big, sa.Column("id", sa.Integer, primary_key=True))
    assert schema_source(MetadataMigrator(small)) == schema_source(MetadataMigrator(big))
    composed = ComposedMigrator([MetadataMigrator(small), MetadataMigrator(big)])
    assert schema_source(composed) == "SQLAlchemy MetaData + SQLAlchemy MetaData"


def snapshot(
    name: str,
    parent: str,
    last_used: str,
    *,
    in_use: bool = False,
) -> TemplateRecord:
    return TemplateRecord(
        name=name,
        fingerprint=name,
        created=last_used,
        last_used=last_used,
        projects={},
        migrator=None,
        in_use=in_use,
        kind="snapshot",
        parent=parent,
        seed="seed()",
    )


def test_snapshots_never_crowd_out_templates() -> None:
    records = [
        template("a", {"a": ago(hours=1)}),
        template("b", {"b": ago(hours=2)}),
        *[snapshot(f"a_s{i}", "a", ago(minutes=i)) for i in range(5)],
    ]
    # Seven template-shaped databases, two templates: nothing is beyond keep=2.
    assert names(records, keep=2) == []
    assert names(records, keep=1) == []  # b is b's current template, used this week


def test_a_snapshot_goes_with_its_pruned_parent_and_layers_with_theirs() -> None:
    records = [
        snapshot("old_layer", "old_seeded", ago(minutes=1)),
        snapshot("old_seeded", "old", ago(minutes=1)),
        template("old", {"a": ago(hours=5)}),
        template("new", {"a": ago(hours=1)}),
        snapshot("new_seeded", "new", ago(minutes=1)),
    ]
    plan = plan_pruning(records, 1, WEEK, now=NOW)
    assert [(p.name, p.kind) for p in plan] == [
        ("old", "template"),
        ("old_seeded", "snapshot"),
        ("old_layer", "snapshot"),
    ]
    assert plan[1].reason == "snapshot of old, which is pruned"


def test_a_snapshot_whose_parent_is_gone_goes_unless_in_use() -> None:
    records = [
        template("current", {"a": ago(hours=1)}),
        snapshot("orphan", "dropped_earlier", ago(minutes=1)),
        snapshot("orphan_in_use", "dropped_earlier", ago(minutes=1), in_use=True),
    ]
    plan = plan_pruning(records, 3, WEEK, now=NOW, present=["current", "orphan", "orphan_in_use"])
    assert [(p.name, p.reason) for p in plan] == [
        ("orphan", "snapshot of dropped_earlier, which is gone")
    ]


def test_a_parent_being_built_or_busy_is_not_gone() -> None:
    # Not readable (busy) is not absent: only the server's list of names says gone.
    records = [snapshot("seeded", "busy_parent", ago(minutes=1))]
    assert names(records, keep=3, present=["busy_parent", "seeded"]) == []


def test_an_idle_snapshot_goes_after_the_retention_whatever_the_count() -> None:
    records = [
        template("t", {"a": ago(hours=1)}),
        snapshot("idle", "t", ago(days=8)),
        snapshot("used", "t", ago(days=6)),
        snapshot("idle_in_use", "t", ago(days=30), in_use=True),
    ]
    plan = plan_pruning(records, 3, WEEK, now=NOW)
    assert [p.name for p in plan] == ["idle"]
    assert plan[0].reason.startswith("not used within 7 days")
    assert names(records, keep=3, protect={"idle"}) == []


def test_an_in_use_layer_stays_though_its_parent_snapshot_goes() -> None:
    records = [
        template("t", {"a": ago(hours=1)}),
        snapshot("base_seed", "t", ago(days=9)),
        snapshot("layer", "base_seed", ago(days=9), in_use=True),
        snapshot("layer_idle", "base_seed", ago(days=1)),
    ]
    assert names(records, keep=3) == ["base_seed", "layer_idle"]
