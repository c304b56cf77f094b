"""The plugin's snapshot logic that needs no server: the marker's arguments, the summary,
and what defining a snapshot fixture costs a run that does not use it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from freshdb.errors import ConfigurationError
from freshdb.pytest_plugin.options import SnapshotRequest, marker_overrides, marker_snapshot
from freshdb.pytest_plugin.reporting import summary_lines

from .conftest import worker_report
from .test_loading import RECORDING_CONFTEST, loaded_after

pytest_plugins = ["pytester"]


class MarkedItem:
    """What the marker functions read of a test item: its ``freshdb`` markers, closest first."""

    nodeid = "test_x.py::test_x"

    def __init__(self, *marks: pytest.MarkDecorator) -> None:
        # Given farthest first (module, class, function), as a reader writes them.
        self.marks = [decorator.mark for decorator in marks]

    def iter_markers(self, name: str) -> Iterator[pytest.Mark]:
        return (mark for mark in reversed(self.marks) if mark.name == name)


def seed(connection: object) -> None:
    """A stand-in seed: only its identity matters here."""


def test_the_snapshot_arguments_pick_a_snapshot_not_a_server() -> None:
    item = MarkedItem(pytest.mark.freshdb("mariadb", snapshot=seed, snapshot_key="v2"))
    assert marker_overrides(item) == {"engine": "mariadb"}  # type: ignore[arg-type]
    assert marker_snapshot(item) == SnapshotRequest(seed, "v2")  # type: ignore[arg-type]


def test_the_closest_marker_wins_and_snapshot_none_asks_for_the_template() -> None:
    module = pytest.mark.freshdb(snapshot=seed)
    assert marker_snapshot(MarkedItem(module)) == SnapshotRequest(seed)  # type: ignore[arg-type]
    closer = MarkedItem(module, pytest.mark.freshdb(snapshot="seeds/other.sql"))
    assert marker_snapshot(closer) == SnapshotRequest("seeds/other.sql")  # type: ignore[arg-type]
    plain = MarkedItem(module, pytest.mark.freshdb(snapshot=None))
    assert marker_snapshot(plain) is None  # type: ignore[arg-type]
    assert marker_snapshot(MarkedItem(pytest.mark.freshdb(engine="postgres"))) is None  # type: ignore[arg-type]


def test_a_key_without_a_seed_is_a_clear_error() -> None:
    item = MarkedItem(pytest.mark.freshdb(snapshot_key="v2"))
    with pytest.raises(ConfigurationError, match=r"snapshot_key=.*needs snapshot="):
        marker_snapshot(item)  # type: ignore[arg-type]


def test_the_summary_says_which_worker_built_a_snapshot_and_who_reused_it() -> None:
    def report(worker: str, snapshot_reused: bool) -> dict[str, object]:
        snapshot = {"name": "p_t_4567", "reused": snapshot_reused, "build_seconds": 0.25}
        return worker_report(worker, snapshots=[snapshot])

    lines = summary_lines([report("gw0", True), report("gw1", False)], [], verbose=False)
    assert lines[2:] == [
        "  template: p_t_0123 (reused)",
        "  snapshot: p_t_4567 (built in 0.25 s by gw1, reused by 1 other worker(s))",
    ]
    alone = summary_lines([report("main", True)], [], verbose=False)
    assert alone[-1] == "  snapshot: p_t_4567 (reused)"


def test_defining_a_snapshot_fixture_imports_no_database_machinery(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A conftest defines a snapshot fixture and marks tests with a snapshot; the tests
    # use neither, so nothing heavy may be imported (and nothing started).
    monkeypatch.delenv("CI", raising=False)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest(
        RECORDING_CONFTEST
        + "\nfrom freshdb.pytest_plugin import snapshot_fixture\n\n"
        + "reference_db = snapshot_fixture('seeds:load', key='v1')\n"
    )
    pytester.makepyfile(
        test_plain="""
        import pytest


        @pytest.mark.freshdb(snapshot="seeds:load")
        @pytest.mark.parametrize("n", range(3))
        def test_plain(n):
            assert n < 3
        """
    )
    assert loaded_after(pytester) == {"loaded": [], "freshdb": True}
