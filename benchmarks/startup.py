"""Start-up: from a new process to a first usable (migrated) database.

Each sample spawns ``python -m benchmarks.startup_child`` and times it from the spawn
to the ``READY`` line the child prints once a query on its database answered: the
interpreter, the imports and the work, as a developer's test run pays them.

- cold: nothing running: a throwaway server with a prefix no container has, so the
  container starts, the template is built, and the first copy made;
- warm: the bench sticky server and its template exist: a new process reuses both
  and takes the first copy its pool makes;
- import alone: a new process that only imports what any first database needs
  (``freshdb.server``, SQLAlchemy, psycopg; part of the warm figure);
- testcontainers: ``PostgresContainer`` start -> first query, for reference (no
  schema, no tmpfs: its own defaults). Its Ryuk reaper is disabled (no registry
  here to pull it from); containers are labelled and removed by the label.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from benchmarks.context import (
    FIRST_QUERY,
    POSTGRES_SCHEMA,
    PREFIX,
    REPOSITORY,
    BenchContext,
)
from benchmarks.report import Comparison, Figure, Target
from benchmarks.startup_child import READY
from benchmarks.stats import Summary
from freshdb.backends.containers import list_managed_containers, remove_container

GROUP = "Start-up: new process -> first usable database"
COLD = "startup.cold"
WARM = "startup.warm"
CHILD_TIMEOUT = 180.0
TESTCONTAINERS_LABEL = "freshdb-bench.run"


def time_child(kind: str, options: dict[str, Any]) -> float:
    """Seconds from spawning a child to its ``READY`` line; waits for it to finish."""
    environment = dict(os.environ, TESTCONTAINERS_RYUK_DISABLED="true")
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.startup_child", kind, json.dumps(options)],
            cwd=REPOSITORY,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        assert child.stdout is not None
        elapsed: float | None = None
        for line in child.stdout:
            if line.strip() == READY:
                elapsed = time.perf_counter() - started
                break
        child.stdout.read()
        code = child.wait(CHILD_TIMEOUT)
        if elapsed is None or code != 0:
            errors.seek(0)
            raise RuntimeError(
                f"start-up child {kind} failed (exit {code}):\n{errors.read().decode()[-3000:]}"
            )
        return elapsed


def child_output(kind: str, options: dict[str, Any]) -> str:
    """What a child printed on stdout (it is run to its end)."""
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.startup_child", kind, json.dumps(options)],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"start-up child {kind} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def breakdown(image: str, samples: int) -> dict[str, list[tuple[str, float]]]:
    """Cold and warm starts step by step: per kind, (step, median seconds since the
    step before) in order. Cold: a throwaway server of a new prefix each time; warm:
    the bench sticky server (started once untimed first)."""
    base = {"schema": str(POSTGRES_SCHEMA), "image": image, "query": FIRST_QUERY}
    kinds = {"cold": {**base, "mode": "throwaway"}, "warm": {**base, "mode": "sticky"}}
    child_output("breakdown", {**kinds["warm"], "prefix": PREFIX})  # warm it up
    table: dict[str, list[tuple[str, float]]] = {}
    for kind, options in kinds.items():
        runs = []
        for _ in range(samples):
            prefix = "bcold" + secrets.token_hex(4) if kind == "cold" else PREFIX
            try:
                lines = child_output("breakdown", {**options, "prefix": prefix}).splitlines()
            finally:
                if kind == "cold":
                    remove_prefix(prefix)
            runs.append([(_step(step), at) for at, step in json.loads(lines[-1])])
        steps = [step for step, _ in runs[0]]
        table[kind] = []
        for index, step in enumerate(steps):
            durations = [
                marks[index][1] - (marks[index - 1][1] if index else 0.0)
                for marks in runs
                if len(marks) == len(steps)
            ]
            table[kind].append((step, statistics.median(durations)))
    return table


def _step(message: str) -> str:
    """A step's name without its figures (in brackets: they vary run by run)."""
    return message.split(" (")[0]


def remove_prefix(prefix: str) -> None:
    """Remove the containers of ``prefix`` (a cold sample's)."""
    from freshdb.backends.docker_discovery import connect_docker

    client, _ = connect_docker()
    for container in list_managed_containers(client, prefix):
        remove_container(container)


def run(context: BenchContext) -> list[Figure]:
    """Cold, warm, import-only and testcontainers start-up times."""
    base = {"schema": str(POSTGRES_SCHEMA), "image": context.postgres_image, "query": FIRST_QUERY}

    cold = []
    for _ in range(context.count(3, 1)):
        prefix = "bcold" + secrets.token_hex(4)
        try:
            cold.append(time_child("freshdb", {**base, "mode": "throwaway", "prefix": prefix}))
        finally:
            for container in list_managed_containers(context.docker, prefix):
                remove_container(container)

    warm = [
        time_child("freshdb", {**base, "mode": "sticky", "prefix": PREFIX})
        for _ in range(context.count(7, 2))
    ]
    imports = [time_child("import", {}) for _ in range(context.count(5, 2))]

    reference = []
    for _ in range(context.count(3, 1)):
        labels = {TESTCONTAINERS_LABEL: secrets.token_hex(6)}
        try:
            reference.append(
                time_child("testcontainers", {"image": context.postgres_image, "labels": labels})
            )
        finally:
            label = "{}={}".format(*next(iter(labels.items())))
            for container in context.docker.containers.list(all=True, filters={"label": label}):
                container.remove(force=True, v=True)

    return [
        Figure(
            COLD,
            GROUP,
            "freshdb cold: nothing running (throwaway, template built)",
            "s",
            Summary.of(cold),
            targets=(Target("median", 1.2, "<= 1.2 s"),),
        ),
        Figure(
            WARM,
            GROUP,
            "freshdb warm: sticky server + template there",
            "s",
            Summary.of(warm),
            targets=(Target("median", 0.35, "<= 0.35 s"),),
        ),
        Figure(
            "startup.import",
            GROUP,
            "(of which: importing freshdb.server, SQLAlchemy and psycopg)",
            "s",
            Summary.of(imports),
        ),
        Figure(
            "startup.testcontainers",
            GROUP,
            "testcontainers PostgresContainer start -> SELECT 1",
            "s",
            Summary.of(reference),
            Comparison(COLD, "startup.testcontainers", "freshdb cold/peer"),
            note="no schema and no tmpfs: its defaults; for reference",
        ),
    ]


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="cold and warm start-up, step by step")
    parser.add_argument("--samples", type=int, default=5)
    arguments = parser.parse_args()
    image = os.environ.get("FRESHDB_POSTGRES_IMAGE", "postgres:17")
    for kind, steps in breakdown(image, arguments.samples).items():
        print(f"{kind} (median of {arguments.samples}; seconds since the step before)")
        total = 0.0
        for step, seconds in steps:
            total += seconds
            print(f"  {seconds:7.3f}  {total:7.3f}  {step}")
