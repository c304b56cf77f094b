"""Build progress: which lines show, and how often (pure logic, a fake clock)."""

from __future__ import annotations

from freshdb.build_progress import BuildProgress, build_progress_shown, show
from freshdb.migrators import migration_progress, progress_reported_to


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_first_step_shows_then_at_most_one_line_per_interval() -> None:
    clock = FakeClock()
    lines: list[str] = []
    progress = BuildProgress("tpl", lines.append, interval=1.0, clock=clock)
    for step in range(1, 11):
        clock.now += 0.3  # a migration every 0.3 s
        progress(step, 10, f"app.{step:04d}")
    assert lines[0] == "freshdb: building template tpl: 1/10 app.0001 (0.3 s)"
    # Steps 1, 5 (1.2 s later) and 9 (another 1.2 s): not one line per migration.
    assert [line.split(": ")[2].split()[0] for line in lines] == ["1/10", "5/10", "9/10"]
    assert lines[-1].endswith("app.0009 (2.7 s)")


def test_slow_steps_each_show() -> None:
    clock = FakeClock()
    lines: list[str] = []
    progress = BuildProgress("tpl", lines.append, interval=1.0, clock=clock)
    for step in range(1, 4):
        progress(step, 3, f"r{step}")
        clock.now += 5.0
    assert len(lines) == 3


def test_migrators_report_only_inside_a_reporting_block() -> None:
    calls: list[tuple[int, int, str]] = []
    migration_progress(1, 2, "outside")  # nobody listens: nothing happens
    with progress_reported_to(lambda *call: calls.append(call)):
        migration_progress(1, 2, "first")
        with progress_reported_to(None):
            migration_progress(2, 2, "hidden")
    migration_progress(2, 2, "after")
    assert calls == [(1, 2, "first")]


def test_the_innermost_writer_shows_build_lines() -> None:
    outer: list[str] = []
    inner: list[str] = []
    with build_progress_shown(outer.append):
        with build_progress_shown(inner.append):
            show("freshdb: one")
        show("freshdb: two")
    show("freshdb: three")  # logged only
    assert inner == ["freshdb: one"] and outer == ["freshdb: two"]


def test_a_snapshot_build_says_snapshot() -> None:
    lines: list[str] = []
    BuildProgress("snap", lines.append, noun="snapshot")(1, 2, "seed.sql")
    assert lines[0].startswith("freshdb: building snapshot snap: 1/2 seed.sql")
