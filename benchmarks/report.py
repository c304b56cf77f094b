"""The one table every figure goes into, printed and written as JSON.

A :class:`Figure` is a summary of measurements with a label; a peer's figure names
the freshdb figure it is compared with (:class:`Comparison`), and a figure may carry
the targets of PRODUCT.md (:class:`Target`). Pure standard library, so the unit
tests can check the arithmetic and the layout without a database.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from benchmarks.stats import Summary

Statistic = Literal["median", "p95", "ratio"]


@dataclasses.dataclass(frozen=True)
class Target:
    """A bound a figure should stay within: its median, its p95, or its ratio."""

    statistic: Statistic
    limit: float
    #: How the target reads in the table, e.g. "p50 <= 1 ms".
    text: str

    def met(self, figure: Figure, ratio: float | None) -> bool | None:
        """Whether the figure meets the target (``None``: nothing to judge)."""
        if figure.summary is None:
            return None
        if self.statistic == "ratio":
            return None if ratio is None else ratio <= self.limit
        value = figure.summary.median if self.statistic == "median" else figure.summary.p95
        return value <= self.limit


@dataclasses.dataclass(frozen=True)
class Comparison:
    """``numerator / denominator`` of two figures' medians, shown on this figure's row."""

    numerator: str
    denominator: str
    #: What the ratio means, e.g. "freshdb/peer".
    label: str = "freshdb/peer"


@dataclasses.dataclass(frozen=True)
class Figure:
    """One row of the table."""

    key: str
    group: str
    label: str
    unit: str
    summary: Summary | None
    comparison: Comparison | None = None
    targets: tuple[Target, ...] = ()
    note: str = ""


class Report:
    """Figures in the order they were measured, grouped for printing."""

    def __init__(self, meta: dict[str, Any] | None = None) -> None:
        self.meta: dict[str, Any] = dict(meta or {})
        self.figures: list[Figure] = []

    def add(self, figure: Figure) -> Figure:
        """Record a figure (keys are unique)."""
        if any(existing.key == figure.key for existing in self.figures):
            raise ValueError(f"figure {figure.key!r} recorded twice")
        self.figures.append(figure)
        return figure

    def extend(self, figures: Iterable[Figure]) -> None:
        """Record several figures."""
        for figure in figures:
            self.add(figure)

    def get(self, key: str) -> Figure | None:
        """The figure recorded under ``key``, if any."""
        return next((figure for figure in self.figures if figure.key == key), None)

    def ratio(self, figure: Figure) -> float | None:
        """The figure's comparison ratio, if both medians are known and the divisor is not 0."""
        if figure.comparison is None:
            return None
        numerator = self.get(figure.comparison.numerator)
        denominator = self.get(figure.comparison.denominator)
        if numerator is None or denominator is None:
            return None
        if numerator.summary is None or denominator.summary is None:
            return None
        if denominator.summary.median == 0:
            return None
        return numerator.summary.median / denominator.summary.median

    def missed(self) -> list[tuple[Figure, Target]]:
        """Every target a figure did not meet."""
        return [
            (figure, target)
            for figure in self.figures
            for target in figure.targets
            if target.met(figure, self.ratio(figure)) is False
        ]

    # -- output ---------------------------------------------------------------
    def rows(self) -> list[dict[str, Any]]:
        """The figures as plain data (the JSON's ``figures``)."""
        rows = []
        for figure in self.figures:
            ratio = self.ratio(figure)
            rows.append(
                {
                    "key": figure.key,
                    "group": figure.group,
                    "label": figure.label,
                    "unit": figure.unit,
                    "median": None if figure.summary is None else figure.summary.median,
                    "p95": None if figure.summary is None else figure.summary.p95,
                    "n": None if figure.summary is None else figure.summary.n,
                    "ratio": ratio,
                    "ratio_label": figure.comparison.label if figure.comparison else None,
                    "targets": [
                        {"text": target.text, "met": target.met(figure, ratio)}
                        for target in figure.targets
                    ],
                    "note": figure.note,
                }
            )
        return rows

    def as_json(self) -> dict[str, Any]:
        """Everything, for ``results/latest.json``."""
        return {"meta": self.meta, "figures": self.rows()}

    def render(self) -> str:
        """The table as text: a header line per group, one line per figure."""
        header = ("", "median", "p95", "n", "ratio", "target")
        groups: dict[str, list[tuple[str, ...]]] = {}
        for figure in self.figures:
            ratio = self.ratio(figure)
            groups.setdefault(figure.group, []).append(
                (
                    "  " + figure.label,
                    _value(figure.summary.median, figure.unit) if figure.summary else "-",
                    _value(figure.summary.p95, figure.unit)
                    if figure.summary and figure.summary.n > 1
                    else "",
                    str(figure.summary.n) if figure.summary else "",
                    _ratio(ratio, figure.comparison),
                    _targets(figure, ratio),
                )
            )
        all_rows = [header, *(row for rows in groups.values() for row in rows)]
        widths = [max(len(row[i]) for row in all_rows) for i in range(len(header))]
        lines = [_line(header, widths)]
        notes: list[str] = []
        for group, rows in groups.items():
            lines.append(group)
            lines.extend(_line(row, widths) for row in rows)
        for figure in self.figures:
            if figure.note:
                notes.append(f"  {figure.label}: {figure.note}")
        if notes:
            lines += ["notes:", *notes]
        return "\n".join(line.rstrip() for line in lines)


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    label, *numbers = cells
    label_width, *number_widths = widths
    parts = [label.ljust(label_width)]
    # Numbers right-aligned; the last two columns (ratio, target) read as text.
    for index, (cell, width) in enumerate(zip(numbers, number_widths, strict=True)):
        parts.append(cell.rjust(width) if index < 3 else cell.ljust(width))
    return "  ".join(parts)


def _value(value: float, unit: str) -> str:
    digits = 1
    if unit in ("ms", "s"):
        # Sub-millisecond acquires need three decimals; seconds-long walls need one.
        digits = 3 if abs(value) < 1 else 2 if abs(value) < 10 else 1
    return f"{value:.{digits}f} {unit}"


def _ratio(ratio: float | None, comparison: Comparison | None) -> str:
    if comparison is None:
        return ""
    if ratio is None:
        return f"- {comparison.label}"
    return f"{ratio:.2f} {comparison.label}"


def _targets(figure: Figure, ratio: float | None) -> str:
    verdicts = {True: "ok", False: "MISSED", None: "n/a"}
    return "; ".join(
        f"{target.text}: {verdicts[target.met(figure, ratio)]}" for target in figure.targets
    )
