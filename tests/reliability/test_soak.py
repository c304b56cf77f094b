"""Soak: two projects with different settings share one sticky server, each running
``pytest -n 4`` on 100 tests, while ``freshdb prune`` runs in a loop: no error, no lost
session, no leaked copy, the server's memory bounded (figures reported, not timed).

One repeat by default; ``FRESHDB_SOAK_REPEATS=3`` for more.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from freshdb import naming
from freshdb.backends.containers import container_facts

from .conftest import NEVER_HANGS, Admin, Engine, new_prefix

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPEATS = int(os.environ.get("FRESHDB_SOAK_REPEATS", "1"))
TESTS = 100
MIB = 1024 * 1024
#: Far above what a healthy run adds, far below what leaking hundreds of copies would.
MEMORY_GROWTH_BOUND = 512 * MIB

PYPROJECT = """
[tool.freshdb]
engine = "{engine}"
image = "{image}"
mode = "sticky"
prefix = "{prefix}"
schema = "schema.sql"
pool_size = {pool_size}

[tool.pytest.ini_options]
addopts = "-p no:cacheprovider"
"""

TESTS_MODULE = """
import pytest


@pytest.mark.parametrize("number", range({tests}))
def test_a_fresh_database(freshdb_engine, number):
    with freshdb_engine.begin() as conn:
        # Fresh every time: only the template's row, whatever other tests wrote.
        assert conn.exec_driver_sql("SELECT count(*) FROM {table}").scalar() == 1
        conn.exec_driver_sql(f"INSERT INTO {table} (id, note) VALUES ({{number + 2}}, 'x')")
        assert conn.exec_driver_sql("SELECT count(*) FROM {table}").scalar() == 2
"""


def make_project(root: Path, engine: Engine, prefix: str, table: str, pool_size: int) -> Path:
    """A small project of its own: pyproject settings, a schema, 100 tests."""
    root.mkdir()
    (root / "pyproject.toml").write_text(
        PYPROJECT.format(engine=engine.name, image=engine.image, prefix=prefix, pool_size=pool_size)
    )
    (root / "schema.sql").write_text(
        f"CREATE TABLE {table} (id INT PRIMARY KEY, note VARCHAR(20));\n"
        f"INSERT INTO {table} (id, note) VALUES (1, 'seed');\n"
    )
    (root / "test_soak_project.py").write_text(TESTS_MODULE.format(tests=TESTS, table=table))
    return root


def clean_environment() -> dict[str, str]:
    """The outer run's environment without what would steer the projects' own runs."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("FRESHDB_") and key not in ("CI", "PYTEST_ADDOPTS")
    }


def memory(docker_client: Any, container_id: str) -> int:
    """The server container's memory use, as `docker stats` shows it (tmpfs included)."""
    used = container_facts(docker_client.containers.get(container_id)).memory_bytes
    assert used is not None
    return used


class PruneLoop(threading.Thread):
    """``freshdb prune`` again and again until stopped; counts runs and failures."""

    def __init__(self, engine: Engine, prefix: str) -> None:
        super().__init__(daemon=True)
        self.command = [
            sys.executable,
            "-m",
            "freshdb",
            "prune",
            "--json",
            f"--engine={engine.name}",
            f"--image={engine.image}",
            f"--prefix={prefix}",
            "--mode=sticky",
        ]
        self.stopping = threading.Event()
        self.runs = 0
        self.failures: list[str] = []
        self.removed: list[dict[str, str]] = []

    def run(self) -> None:
        while not self.stopping.is_set():
            result = subprocess.run(
                self.command,
                capture_output=True,
                text=True,
                timeout=NEVER_HANGS,
                env=clean_environment(),
            )
            self.runs += 1
            if result.returncode != 0:
                self.failures.append(result.stderr.strip())
            else:
                self.removed += json.loads(result.stdout)["removed"]


def run_projects(projects: list[Path]) -> list[subprocess.CompletedProcess[str]]:
    """``pytest -n 4`` in every project at once; each finished run."""
    running = [
        subprocess.Popen(
            [sys.executable, "-m", "pytest", "-n", "4", "-q"],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_environment(),
        )
        for project in projects
    ]
    finished = []
    for process in running:
        out, err = process.communicate(timeout=NEVER_HANGS * 4)
        finished.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return finished


def test_two_projects_share_one_sticky_server_under_a_prune_loop(
    postgres: Engine,
    docker_client: Any,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    engine, prefix = postgres, new_prefix()
    projects = [
        make_project(tmp_path / "shop", engine, prefix, "orders", pool_size=2),
        make_project(tmp_path / "blog", engine, prefix, "posts", pool_size=4),
    ]
    figures: list[dict[str, Any]] = []
    # The sticky server both projects find (started here, so its memory can be read
    # before any test ran); this session ends before the projects run.
    with engine.server(prefix, pool_size=0) as server:
        assert server.running is not None and server.running.container_id is not None
        container_id, address = server.running.container_id, server.address
    baseline = memory(docker_client, container_id)
    for repeat in range(REPEATS):
        pruner = PruneLoop(engine, prefix)
        started = time.monotonic()
        pruner.start()
        try:
            runs = run_projects(projects)
        finally:
            pruner.stopping.set()
            pruner.join(NEVER_HANGS)
        seconds = time.monotonic() - started
        passed = [
            int(match[1]) if (match := re.search(r"(\d+) passed", run.stdout)) else 0
            for run in runs
        ]
        with Admin(engine.name, address) as admin:
            left = [p for p in admin.databases(prefix) if p.kind != "template"]
        used = memory(docker_client, container_id)
        figures.append(
            {
                "repeat": repeat + 1,
                "passed": passed,
                "errors": sum(TESTS - count for count in passed) + len(pruner.failures),
                "prune_runs": pruner.runs,
                "prune_failures": len(pruner.failures),
                "leaked_copies": len(left),
                "memory_mib": round(used / MIB, 1),
                "seconds": round(seconds, 1),
            }
        )
        print(f"\nsoak {json.dumps(figures[-1])}")
        for run in runs:
            assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
        assert passed == [TESTS, TESTS]  # no test lost its session
        assert pruner.failures == []
        assert pruner.runs > 0
        # Every session ended cleanly and dropped its own copies: prune never found
        # anything to remove, least of all what a live session used.
        assert pruner.removed == []
        assert left == [], left  # every session dropped its copies
        ours = docker_client.containers.list(
            all=True, filters={"label": f"{naming.LABEL_PREFIX_NAME}={prefix}"}
        )
        assert [c.id for c in ours] == [container_id]  # one sticky server for both
        assert used - baseline < MEMORY_GROWTH_BOUND, figures
    record_property("soak", json.dumps({"baseline_mib": round(baseline / MIB, 1), "runs": figures}))
    print(f"\nsoak baseline {round(baseline / MIB, 1)} MiB")
