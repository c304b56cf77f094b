"""Medians and 95th percentiles of repeated measurements, and how to take them.

Pure standard library: the unit tests import it, and the start-up benchmark's child
processes import it before anything they time.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (0..1), interpolated linearly between closest ranks.

    The same definition as numpy's default ("linear"): with 20 samples, p95 lies
    between the 19th and the 20th smallest.
    """
    if not samples:
        raise ValueError("no samples")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    ordered = sorted(samples)
    rank = fraction * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclasses.dataclass(frozen=True)
class Summary:
    """Median and 95th percentile of ``n`` measurements, in one unit."""

    median: float
    p95: float
    n: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Summary:
        """Summarise measurements (at least one)."""
        return cls(percentile(samples, 0.5), percentile(samples, 0.95), len(samples))

    @classmethod
    def single(cls, value: float) -> Summary:
        """One measurement (a size, a count): its own median and p95."""
        return cls(value, value, 1)

    def scaled(self, factor: float) -> Summary:
        """The same summary in another unit (e.g. seconds to milliseconds)."""
        return Summary(self.median * factor, self.p95 * factor, self.n)


def time_calls(
    call: Callable[[], object],
    repetitions: int,
    *,
    before_each: Callable[[], object] | None = None,
    warmup: int = 1,
) -> list[float]:
    """Seconds taken by each of ``repetitions`` calls of ``call``.

    ``before_each`` runs untimed before every call (e.g. waiting until a pool is
    full again); ``warmup`` calls run first and are not recorded, so imports,
    caches and first connections are not charged to one unlucky sample.
    """
    samples: list[float] = []
    for number in range(warmup + repetitions):
        if before_each is not None:
            before_each()
        started = time.perf_counter()
        call()
        elapsed = time.perf_counter() - started
        if number >= warmup:
            samples.append(elapsed)
    return samples


def milliseconds(samples: Sequence[float]) -> Summary:
    """Summary in milliseconds of samples in seconds."""
    return Summary.of(samples).scaled(1000.0)


def overhead_per_test(walls: Sequence[float], floors: Sequence[float], tests: int) -> list[float]:
    """Milliseconds per test above the floor, run by run: ``(wall - floor) / tests``.

    Walls and floors are in seconds and paired by position (run ``i`` of a variant
    with run ``i`` of the floor, measured back to back).
    """
    return [(wall - floor) / tests * 1000.0 for wall, floor in zip(walls, floors, strict=True)]
