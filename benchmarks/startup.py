"""Start-up: from a new process to a first usable (migrated) database.

Each sample spawns ``python -m benchmarks.startup_child`` and times it from the spawn
to the ``READY`` line the child prints once a query on its database answered: the
interpreter, the imports and the work, as a developer's test run pays them.

- cold: nothing running: a throwaway server with a prefix no container has, so the
  container starts, the template is built, and the first copy made;
- warm: the bench sticky server and its template exist: a new process reuses both
  and takes the first copy its pool makes;
- import alone: a new process that only imports freshdb (part of the warm figure);
- testcontainers: ``PostgresContainer`` start -> first query, for reference (no
  schema, no tmpfs: its own defaults). Its Ryuk reaper is disabled (no registry
  here to pull it from); containers are labelled and removed by the label.
"""

from __future__ import annotations

import json
import os
import secrets
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
            "(of which: python -c 'import freshdb')",
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
