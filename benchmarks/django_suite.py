"""A Django suite under pytest-django: its own database setup against freshdb's.

The project of :mod:`benchmarks.django_project` (six models, ``tests`` small tests:
pytest functions on the ``db`` fixture, ``TestCase`` classes, a few transactional
tests) runs in a new pytest process three ways, on the bench Postgres server:

- ``own``: pytest-django's own setup with ``--reuse-db`` (its test database,
  ``peer_django_test``, is created and migrated by the untimed warm-up run, so the
  timed runs pay no migration either);
- ``freshdb``: ``freshdb_django = true`` (the session's copy of a cached template);
- ``copies``: also ``freshdb_django_transaction_copies = true``.

Every test runs the same queries on the same server in all three, so the
difference per test, ``(wall - own wall) / tests`` paired run by run, is what the
integration adds, session start-up included; the time per test from the second
test on (the first test's setup holds the session's database setup) separates
what each test costs from what the session costs once. Runs are interleaved, as
in :mod:`benchmarks.suites`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import django_project
from benchmarks.context import PREFIX, REPOSITORY, BenchContext
from benchmarks.report import Comparison, Figure
from benchmarks.stats import Summary, overhead_per_test

GROUP_WALL = "Django suite of {n} tests under pytest-django: wall time (pytest subprocess)"
GROUP_OVERHEAD = "Django suite: added per test = (wall - own setup's wall) / {n}"
GROUP_PER_TEST = "Django suite: per test once the session's database is set up (tests 2..{n}+1)"
TEST_DATABASE = "peer_django_test"

VARIANTS = {
    "own": ("pytest-django's own setup (--reuse-db)", ("--reuse-db",)),
    "freshdb": ("freshdb_django = true", ("-o", "freshdb_django=true")),
    "copies": (
        "freshdb_django + transaction copies",
        ("-o", "freshdb_django=true", "-o", "freshdb_django_transaction_copies=true"),
    ),
}


def environment(context: BenchContext) -> dict[str, str]:
    """The project's settings (the bench Postgres server) and freshdb's, for a subprocess."""
    address = context.postgres_address
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "CI")}
    env.update(
        PYTHONPATH=os.pathsep.join(p for p in (str(REPOSITORY), env.get("PYTHONPATH", "")) if p),
        BENCH_DB_HOST=address.host,
        BENCH_DB_PORT=str(address.port),
        BENCH_DB_USER=address.user,
        BENCH_DB_PASSWORD=address.password,
        BENCH_DB_TEST_NAME=TEST_DATABASE,
        FRESHDB_ENGINE="postgres",
        FRESHDB_MODE="sticky",
        FRESHDB_PREFIX=PREFIX,
        FRESHDB_IMAGE=context.postgres_image,
    )
    return env


@dataclasses.dataclass(frozen=True)
class SuiteRun:
    """One pytest run: its wall time, and the time from its second test to its end."""

    wall: float
    tests_phase: float


def run_pytest(root: Path, env: dict[str, str], tests: int, *options: str) -> SuiteRun:
    """Run the project's suite in a new process; how long it took."""
    times = root / "times.json"
    times.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", *options]
    started = time.perf_counter()
    result = subprocess.run(
        command,
        cwd=root,
        env={**env, "BENCH_TIMES_FILE": str(times)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    wall = time.perf_counter() - started
    if result.returncode != 0 or f"{tests} passed" not in result.stdout:
        raise RuntimeError(
            f"the Django suite ({' '.join(options)}) failed (exit {result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return SuiteRun(wall, float(json.loads(times.read_text())["after_first_test"]))


def run(context: BenchContext) -> list[Figure]:
    """Wall time of each variant and what freshdb's adds per test over the own setup."""
    asked = context.count(400, 60)
    tests = django_project.test_count(asked)
    repetitions = context.count(3, 1)
    env = environment(context)
    walls: dict[str, list[float]] = {key: [] for key in VARIANTS}
    phases: dict[str, list[float]] = {key: [] for key in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="freshdb-bench-django-") as temporary:
        root = django_project.write_project(Path(temporary) / "project", tests=asked)
        for _label, options in VARIANTS.values():
            # Untimed: imports warm, the own test database and freshdb's template made.
            run_pytest(root, env, tests, *options)
        for _ in range(repetitions):
            for key, (_label, options) in VARIANTS.items():
                outcome = run_pytest(root, env, tests, *options)
                walls[key].append(outcome.wall)
                phases[key].append(outcome.tests_phase)
    figures = [
        Figure(
            f"django.wall.{key}",
            GROUP_WALL.format(n=tests),
            label,
            "s",
            Summary.of(walls[key]),
            Comparison(f"django.wall.{key}", "django.wall.own", "freshdb/own")
            if key != "own"
            else None,
        )
        for key, (label, _options) in VARIANTS.items()
    ]
    figures += [
        Figure(
            f"django.added.{key}",
            GROUP_OVERHEAD.format(n=tests),
            label,
            "ms",
            Summary.of(overhead_per_test(walls[key], walls["own"], tests)),
            note="whole run: session start-up included" if key == "freshdb" else "",
        )
        for key, (label, _options) in VARIANTS.items()
        if key != "own"
    ]
    figures += [
        Figure(
            f"django.per_test.{key}",
            GROUP_PER_TEST.format(n=tests - 1),
            label,
            "ms",
            Summary.of([phase / (tests - 1) * 1000.0 for phase in phases[key]]),
            Comparison(f"django.per_test.{key}", "django.per_test.own", "freshdb/own")
            if key != "own"
            else None,
        )
        for key, (label, _options) in VARIANTS.items()
    ]
    return figures
