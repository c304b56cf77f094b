"""The benchmarks' pure helpers: medians, percentiles, ratios, targets and the table."""

from __future__ import annotations

import json

import pytest

from benchmarks.report import Comparison, Figure, Report, Target
from benchmarks.stats import Summary, overhead_per_test, percentile, time_calls


def test_percentile_interpolates_between_closest_ranks() -> None:
    samples = [float(n) for n in range(1, 21)]  # 1..20, shuffled below
    shuffled = samples[10:] + samples[:10]
    assert percentile(shuffled, 0.5) == pytest.approx(10.5)
    assert percentile(shuffled, 0.95) == pytest.approx(19.05)
    assert percentile(shuffled, 0.0) == 1.0
    assert percentile(shuffled, 1.0) == 20.0


def test_percentile_of_one_sample_is_that_sample() -> None:
    assert percentile([7.0], 0.95) == 7.0


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_percentile_rejects_fractions_outside_zero_to_one(fraction: float) -> None:
    with pytest.raises(ValueError):
        percentile([1.0, 2.0], fraction)


def test_percentile_needs_samples() -> None:
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_summary_of_samples_and_scaling() -> None:
    summary = Summary.of([0.001, 0.003, 0.002])
    assert summary.n == 3
    assert summary.median == pytest.approx(0.002)
    in_ms = summary.scaled(1000)
    assert in_ms.median == pytest.approx(2.0)
    assert in_ms.p95 == pytest.approx(2.9)
    assert in_ms.n == 3


def test_time_calls_skips_warmup_and_runs_before_each_untimed() -> None:
    calls: list[str] = []
    samples = time_calls(
        lambda: calls.append("call"),
        3,
        before_each=lambda: calls.append("before"),
        warmup=2,
    )
    assert len(samples) == 3
    assert all(sample >= 0 for sample in samples)
    assert calls == ["before", "call"] * 5


def test_overhead_per_test_pairs_runs_with_their_floor() -> None:
    walls = [3.0, 5.0]
    floors = [1.0, 2.0]
    assert overhead_per_test(walls, floors, 200) == pytest.approx([10.0, 15.0])


def _report() -> Report:
    report = Report({"date": "today"})
    report.add(Figure("fresh", "Per test", "freshdb", "ms", Summary(10.0, 12.0, 50)))
    report.add(
        Figure(
            "peer",
            "Per test",
            "peer",
            "ms",
            Summary(50.0, 60.0, 50),
            Comparison("fresh", "peer"),
            targets=(Target("ratio", 0.25, "freshdb/peer <= 0.25"),),
        )
    )
    report.add(
        Figure(
            "acquire",
            "Acquire",
            "acquire",
            "ms",
            Summary(0.4, 6.0, 300),
            targets=(Target("median", 1.0, "p50 <= 1 ms"), Target("p95", 5.0, "p95 <= 5 ms")),
            note="a note",
        )
    )
    return report


def test_ratio_is_numerator_median_over_denominator_median() -> None:
    report = _report()
    peer = report.get("peer")
    assert peer is not None
    assert report.ratio(peer) == pytest.approx(0.2)


def test_missed_lists_only_targets_not_met() -> None:
    missed = _report().missed()
    assert [(figure.key, target.text) for figure, target in missed] == [("acquire", "p95 <= 5 ms")]


def test_a_figure_without_measurements_judges_nothing() -> None:
    report = Report()
    report.add(Figure("x", "G", "x", "ms", None, targets=(Target("median", 1.0, "t"),)))
    figure = report.get("x")
    assert figure is not None
    assert report.missed() == []
    assert report.rows()[0]["targets"] == [{"text": "t", "met": None}]


def test_keys_are_unique() -> None:
    report = _report()
    with pytest.raises(ValueError):
        report.add(Figure("fresh", "G", "again", "ms", None))


def test_rendered_table_groups_rows_and_shows_ratio_and_verdicts() -> None:
    text = _report().render()
    lines = text.splitlines()
    assert lines[1] == "Per test"
    peer_line = next(line for line in lines if line.strip().startswith("peer"))
    assert "50.0 ms" in peer_line and "60.0 ms" in peer_line
    assert "0.20 freshdb/peer" in peer_line
    assert "freshdb/peer <= 0.25: ok" in peer_line
    acquire_line = next(line for line in lines if line.strip().startswith("acquire"))
    assert "0.400 ms" in acquire_line
    assert "p50 <= 1 ms: ok; p95 <= 5 ms: MISSED" in acquire_line
    assert lines[-1] == "  acquire: a note"


def test_json_rows_carry_values_ratio_and_verdicts() -> None:
    data = json.loads(json.dumps(_report().as_json()))
    assert data["meta"] == {"date": "today"}
    peer = next(row for row in data["figures"] if row["key"] == "peer")
    assert peer["median"] == 50.0 and peer["p95"] == 60.0 and peer["n"] == 50
    assert peer["ratio"] == pytest.approx(0.2)
    assert peer["ratio_label"] == "freshdb/peer"
    assert peer["targets"] == [{"text": "freshdb/peer <= 0.25", "met": True}]
