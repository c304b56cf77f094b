"""The seeded benchmark suite's pure parts: its seed's size and its figures' ratios."""

from __future__ import annotations

import ast

from benchmarks.report import Report
from benchmarks.seeded_suite import (
    SEED_MODULE,
    SEEDED_ROWS,
    UNSEEDED_ROWS,
    _overhead_figures,
    variants,
)

FLOOR_URL = "postgresql+psycopg://bench@localhost/peer_seeded_shared"


def test_the_seed_inserts_the_announced_rows() -> None:
    module = ast.parse(SEED_MODULE)
    counts = next(
        node for node in module.body if isinstance(node, ast.Assign) and len(node.targets) == 1
    )
    assert isinstance(counts.value, ast.Tuple)
    assert sum(ast.literal_eval(element) for element in counts.value.elts) == SEEDED_ROWS


def test_every_variant_but_the_reference_expects_the_seeded_rows() -> None:
    expected = {variant.key: variant.expected_rows for variant in variants(FLOOR_URL)}
    assert expected.pop("unseeded") == UNSEEDED_ROWS
    assert set(expected.values()) == {UNSEEDED_ROWS + SEEDED_ROWS}


def test_the_snapshot_row_is_judged_against_unseeded_copies() -> None:
    walls = {
        "floor": [1.0, 1.0],
        "seed_per_test": [21.0, 23.0],
        "shared_rollback": [2.0, 2.0],
        "snapshot": [4.0, 5.0],
        "unseeded": [3.0, 3.0],
    }
    report = Report()
    report.extend(_overhead_figures(variants(FLOOR_URL), walls, 100))
    snapshot = report.get("seeded.overhead.snapshot")
    assert snapshot is not None and snapshot.summary is not None
    assert snapshot.summary.median == 35.0  # ((4 - 1) + (5 - 1)) / 2 s over 100 tests
    assert report.ratio(snapshot) == 35.0 / 20.0
    assert report.missed() == []
    walls["snapshot"] = [6.0, 6.0]  # 50 ms against 20 ms: more than twice
    report = Report()
    report.extend(_overhead_figures(variants(FLOOR_URL), walls, 100))
    assert [figure.key for figure, _ in report.missed()] == ["seeded.overhead.snapshot"]
