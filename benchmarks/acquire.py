"""Acquire latency alone: ``server.database()`` from a warm pool, nothing else.

Each sample starts with the pool full and idle; the release and the refill that
follow are not timed. Targets (PRODUCT.md): p50 <= 1 ms, p95 <= 5 ms.
"""

from __future__ import annotations

from benchmarks.context import BenchContext, wait_until_idle
from benchmarks.report import Figure, Target
from benchmarks.stats import milliseconds, time_calls
from freshdb import Database, DatabaseServer

GROUP = "Acquire alone, warm pool (server.database())"
TARGETS = (Target("median", 1.0, "p50 <= 1 ms"), Target("p95", 5.0, "p95 <= 5 ms"))


def acquire_samples(server: DatabaseServer, repetitions: int) -> list[float]:
    """Seconds per ``server.database()`` call, each from a full, idle pool."""
    handed_out: list[Database] = []

    def release_and_refill() -> None:
        while handed_out:
            handed_out.pop().release()
        wait_until_idle(server)

    samples = time_calls(
        lambda: handed_out.append(server.database()),
        repetitions,
        before_each=release_and_refill,
    )
    release_and_refill()
    return samples


def run(context: BenchContext) -> list[Figure]:
    """p50/p95 of acquiring a copy, Postgres and MariaDB."""
    return [
        Figure(
            "acquire.postgres",
            GROUP,
            "freshdb Postgres",
            "ms",
            milliseconds(acquire_samples(context.postgres, context.count(300, 30))),
            targets=TARGETS,
        ),
        Figure(
            "acquire.mariadb",
            GROUP,
            "freshdb MariaDB",
            "ms",
            milliseconds(acquire_samples(context.mariadb, context.count(200, 20))),
            targets=TARGETS,
        ),
    ]
