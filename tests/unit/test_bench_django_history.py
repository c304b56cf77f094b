"""The benchmarks' project-shaped Django history: valid, the shape it claims, its rows."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import django_history, django_project
from benchmarks.report import Report

pytest.importorskip("django")


def test_the_project_shaped_history_matches_its_models_and_has_no_conflicts(
    tmp_path: Path,
) -> None:
    root = django_project.write_project(
        tmp_path / "project", tests=1, project_history=django_project.PROJECT_MIGRATIONS
    )
    apps = django_project.ProjectHistory().apps
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "DJANGO_SETTINGS_MODULE": "proj.settings",
        # No server: makemigrations' consistency check fails to connect and goes on.
        "BENCH_DB_HOST": str(tmp_path / "no-server"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "django", "makemigrations", *apps, "--check", "--dry-run"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # --check exits 1 when the models need a migration the history does not have; the
    # system checks (clashing reverse accessors, bad options) and a conflict (two leaves
    # in an app) fail it too.
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No changes detected" in result.stdout
    migrations = [p for app in apps for p in (root / app / "migrations").glob("0*.py")]
    assert len(migrations) == django_project.PROJECT_MIGRATIONS >= 150


def test_the_project_shaped_history_has_the_shape_of_a_real_one() -> None:
    history = django_project.ProjectHistory()
    counts = history.operation_counts()
    total = sum(counts.values())
    assert 6 <= len(history.apps) <= 10
    for kind in (
        "CreateModel",
        "AddField",
        "AlterField",
        "RenameField",
        "RemoveField",
        "RunPython",
        "AddIndex",
        "AlterModelOptions",
    ):
        assert counts.get(kind, 0) > 0, kind
    assert counts.get("AddConstraint", 0) + counts.get("AlterUniqueTogether", 0) > 0
    # Schema changes to existing models dominate, as in real histories.
    assert counts["AlterField"] + counts["AddField"] > total / 2
    assert sum(len(m.kinds) > 1 for m in history.migrations) > len(history.migrations) / 5
    sources = [m.source() for m in history.migrations]
    assert any("ManyToManyField(" in source for source in sources)
    assert any("bulk_create(" in source for source in sources)
    assert any("AUTH_USER_MODEL" in source for source in sources)
    # Relations across apps: some migrations depend on another app's migration.
    assert any(any(app != m.app for app, _ in m.dependencies) for m in history.migrations)
    rows = [int(n) for s in sources for n in re.findall(r"range\((\d+)\)", s)]
    assert rows and all(10 <= n <= 500 for n in rows)
    # Generated from a fixed seed: every run measures the same history.
    again = django_project.ProjectHistory()
    assert [m.source() for m in again.migrations] == sources


def sample(seconds: float, template: float) -> django_history.Sample:
    return django_history.Sample(seconds=seconds, reused=False, template=template)


def test_both_histories_get_their_rows_and_the_ten_times_target() -> None:
    taken = {
        "migrate": [sample(6.0, 4.0)],
        "reuse": [sample(1.0, 0.0)],
        "ci": [sample(8.0, 5.0)],
        "cache": [sample(2.0, 0.2)],
    }
    report = Report()
    for history in django_history.HISTORIES:
        report.extend(django_history.figures(taken, history))
    for history in django_history.HISTORIES:
        cache = report.get(f"{history.key}.cache")
        assert cache is not None and report.ratio(cache) == 0.25
        assert [target.text for target in cache.targets] == ["cache/migrate <= 0.10"]
    assert len(report.missed()) == 2
    project = report.get("django_history.project.migrate")
    assert project is not None and project.group != report.figures[0].group
