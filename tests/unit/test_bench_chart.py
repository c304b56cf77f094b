"""The benchmarks' chart (a hand-written SVG) and the Django history's CI rows."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from benchmarks import chart, django_history
from benchmarks.report import Report

SVG = "{http://www.w3.org/2000/svg}"


def figure(key: str, median: float | None, unit: str = "ms") -> dict[str, object]:
    return {"key": key, "label": key, "unit": unit, "median": median}


def test_the_chart_draws_a_bar_per_figure_of_the_run_scaled_to_its_panel(tmp_path: Path) -> None:
    figures = [
        figure("suite.overhead.freshdb.serial", 10.0),
        figure("suite.overhead.pytest_postgresql.serial", 40.0),
        figure("suite.overhead.naive.serial", None),  # not measured: no bar
        figure("startup.warm", 0.5, "s"),
        figure("unrelated.figure", 1.0),
    ]
    path = chart.write_chart(
        {"meta": {"date": "2026-12-02", "machine": {"cores": 2}}, "figures": figures},
        tmp_path / "results" / "chart.svg",
    )
    root = ET.parse(path).getroot()  # well-formed XML
    texts = [element.text for element in root.iter(f"{SVG}text")]
    assert "freshdb (a fresh copy per test)" in texts
    assert "pytest-postgresql" in texts
    assert "10.0 ms" in texts and "40.0 ms" in texts and "0.50 s" in texts
    assert "naive clone+drop (elefast's path)" not in texts
    assert not any("Plugin load" in str(text) for text in texts)  # a panel with no figure
    bars = [
        (rect.get("fill"), float(rect.get("width") or 0))
        for rect in root.iter(f"{SVG}rect")
        if rect.get("height") == str(chart.BAR_HEIGHT)
    ]
    # The suite's panel first: the peer's bar four times freshdb's; then start-up's.
    (fresh, fresh_width), (peer, peer_width), (warm, _) = bars
    assert (fresh, peer, warm) == (chart.FRESHDB_COLOUR, chart.PEER_COLOUR, chart.FRESHDB_COLOUR)
    assert peer_width == 4 * fresh_width


def test_the_chart_escapes_text_and_draws_no_negative_bar(tmp_path: Path) -> None:
    figures = [
        figure("plugin_load.import.freshdb", -3.0),
        figure("plugin_load.import.pytest-postgresql", 290.0),
    ]
    svg = chart.render({"date": "<today> & now"}, figures)
    root = ET.fromstring(svg)
    assert "freshdb benchmarks, <today> & now" in [e.text for e in root.iter(f"{SVG}text")]
    assert all(float(r.get("width") or 0) >= 0 for r in root.iter(f"{SVG}rect"))


def sample(seconds: float, template: float, **parts: float) -> django_history.Sample:
    return django_history.Sample(seconds=seconds, reused=False, template=template, **parts)


def test_the_ci_rows_compare_the_cache_with_migrating_and_show_the_floor() -> None:
    taken = {
        "migrate": [sample(3.0, 2.0)],
        "reuse": [sample(1.0, 0.0)],
        "ci": [sample(4.0, 2.2, container=1.2)],
        "cache": [sample(2.0, 0.1, container=1.2, start=1.5)],
    }
    report = Report()
    report.extend(django_history.figures(taken))
    cache = report.get("django_history.cache")
    assert cache is not None and report.ratio(cache) == 0.5
    assert [target.text for figure, target in report.missed()] == ["cache/migrate <= 0.10"]
    floor = report.get("django_history.cache.bound")
    assert floor is not None and floor.summary is not None
    assert floor.summary.median == 1.9  # the cache path less its template step
    restore = report.get("django_history.cache.template")
    assert restore is not None and round(report.ratio(restore) or 0, 3) == round(0.1 / 2.2, 3)
    rest = report.get("django_history.cache.rest_of_start")
    assert rest is not None and rest.summary is not None
    assert round(rest.summary.median, 6) == 0.2  # start - container - template
