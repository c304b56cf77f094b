"""A chart of a run's side-by-side figures, as a small self-contained SVG.

``make bench`` writes it next to the JSON (``results/chart.svg``) from the same
figures: one panel per comparison (per-test overhead serially and with ``-n 2``,
a test's database life, start-up, the CI path of a long Django history, the plugin's
load cost), one horizontal bar per figure with its median, freshdb's bars in one
colour and the peers' in another. Pure standard library: the SVG is written by hand
(no plotting dependency for a dozen bars), so the unit tests can check it.

Run on its own to redraw a chart from a JSON file:
``python -m benchmarks.chart results/latest.json results/chart.svg``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

#: The panels: a title, and the figures it shows (JSON key, short label), in order. A
#: figure missing from a run (a group not run) is left out; so is a panel with none.
PANELS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    (
        "Suite of 200 tiny tests: overhead per test, serial (ms; lower is better)",
        (
            ("suite.overhead.freshdb.serial", "freshdb (a fresh copy per test)"),
            ("suite.overhead.savepoint.serial", "freshdb savepoint mode"),
            ("suite.overhead.pytest_postgresql.serial", "pytest-postgresql"),
            ("suite.overhead.naive.serial", "naive clone+drop (elefast's path)"),
        ),
    ),
    (
        "The same suite with -n 2: overhead per test (ms)",
        (
            ("suite.overhead.freshdb.n2", "freshdb (a fresh copy per test)"),
            ("suite.overhead.savepoint.n2", "freshdb savepoint mode"),
            ("suite.overhead.pytest_postgresql.n2", "pytest-postgresql"),
            ("suite.overhead.naive.n2", "naive clone+drop (elefast's path)"),
        ),
    ),
    (
        "One test's database: acquire + first query + release (ms)",
        (
            ("per_test.postgres.freshdb", "freshdb, warm pool"),
            ("per_test.postgres.pytest_postgresql", "pytest-postgresql DatabaseJanitor"),
            ("per_test.postgres.naive", "naive clone+drop (elefast's path)"),
        ),
    ),
    (
        "Start-up: new process -> first usable database (s)",
        (
            ("startup.warm", "freshdb warm (sticky server there)"),
            ("startup.cold", "freshdb cold (nothing running)"),
            ("startup.testcontainers", "testcontainers start -> SELECT 1"),
        ),
    ),
    (
        "CI, Django history of 164 migrations: nothing running -> first database (s)",
        (
            ("django_history.cache", "freshdb, template from the cache"),
            ("django_history.ci_migrate", "migrating the history"),
        ),
    ),
    (
        "Plugin load: importing it after pytest, in a project using no fixture (ms)",
        (
            ("plugin_load.import.freshdb", "freshdb"),
            ("plugin_load.import.pytest-postgresql", "pytest-postgresql"),
            ("plugin_load.import.pytest-databases", "pytest-databases"),
        ),
    ),
)
#: Figures of freshdb (the rest are peers or references).
FRESHDB_KEYS = frozenset(
    {
        "suite.overhead.freshdb.serial",
        "suite.overhead.savepoint.serial",
        "suite.overhead.freshdb.n2",
        "suite.overhead.savepoint.n2",
        "per_test.postgres.freshdb",
        "startup.warm",
        "startup.cold",
        "django_history.cache",
        "plugin_load.import.freshdb",
    }
)
FRESHDB_COLOUR = "#2a7ab0"
PEER_COLOUR = "#b0b0b0"
WIDTH = 760
LABEL_WIDTH = 330
BAR_HEIGHT = 16
ROW = 22
TITLE = 24
GAP = 14


@dataclasses.dataclass(frozen=True)
class Bar:
    """One figure's median, labelled."""

    label: str
    value: float
    unit: str
    freshdb: bool


def panels(figures: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[Bar]]]:
    """The panels that have figures in this run, with their bars."""
    by_key = {figure["key"]: figure for figure in figures}
    chosen = []
    for title, entries in PANELS:
        bars = [
            Bar(
                label,
                float(by_key[key]["median"]),
                str(by_key[key]["unit"]),
                key in FRESHDB_KEYS,
            )
            for key, label in entries
            if key in by_key and by_key[key].get("median") is not None
        ]
        if bars:
            chosen.append((title, bars))
    return chosen


def _number(value: float, unit: str) -> str:
    if abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}"


def render(meta: Mapping[str, Any], figures: Sequence[Mapping[str, Any]]) -> str:
    """The SVG document for a run (``meta`` and ``figures`` as in ``latest.json``)."""
    chosen = panels(figures)
    parts: list[str] = []
    y = 30
    heading = f"freshdb benchmarks, {meta.get('date', '')}"
    machine = meta.get("machine") or {}
    if machine:
        heading += f" ({machine.get('cores')} cores, Python {machine.get('python')})"
    parts.append(_text(10, 18, heading, size=13, weight="bold"))
    legend_x = WIDTH - 230
    parts.append(_rect(legend_x, 8, 12, 12, FRESHDB_COLOUR))
    parts.append(_text(legend_x + 16, 18, "freshdb", size=11))
    parts.append(_rect(legend_x + 80, 8, 12, 12, PEER_COLOUR))
    parts.append(_text(legend_x + 96, 18, "peers, references", size=11))
    bar_space = WIDTH - LABEL_WIDTH - 90
    for title, bars in chosen:
        parts.append(_text(10, y + 16, title, size=12, weight="bold"))
        y += TITLE
        largest = max((bar.value for bar in bars), default=0.0)
        scale = bar_space / largest if largest > 0 else 0.0
        for bar in bars:
            parts.append(_text(LABEL_WIDTH - 6, y + 12, _shorten(bar.label), size=11, anchor="end"))
            length = max(bar.value * scale, 0.0)
            colour = FRESHDB_COLOUR if bar.freshdb else PEER_COLOUR
            parts.append(_rect(LABEL_WIDTH, y, length, BAR_HEIGHT, colour))
            parts.append(_text(LABEL_WIDTH + length + 5, y + 12, _number(bar.value, bar.unit), 11))
            y += ROW
        y += GAP
    height = y + 4
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="Helvetica, Arial, sans-serif">\n'
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>\n'
        + "\n".join(parts)
        + "\n</svg>\n"
    )


def _shorten(label: str, limit: int = 52) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _rect(x: float, y: float, width: float, height: float, colour: str) -> str:
    return f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height}" fill="{colour}"/>'


def _text(
    x: float, y: float, text: str, size: int, weight: str = "normal", anchor: str = "start"
) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" font-weight="{weight}" '
        f'text-anchor="{anchor}">{escape(text)}</text>'
    )


def write_chart(document: Mapping[str, Any], path: Path) -> Path:
    """Write the chart of a run (the JSON document ``run.py`` writes) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(document.get("meta", {}), document.get("figures", [])))
    return path


def main(argv: Sequence[str]) -> int:
    """``python -m benchmarks.chart LATEST.json CHART.svg``."""
    if len(argv) != 2:
        print("usage: python -m benchmarks.chart RESULTS.json CHART.svg", file=sys.stderr)
        return 2
    document = json.loads(Path(argv[0]).read_text())
    print(f"chart written to {write_chart(document, Path(argv[1]))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
