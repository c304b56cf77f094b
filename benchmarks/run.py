"""freshdb's benchmarks, side by side with the peers: ``make bench`` (``BENCH_ARGS=--quick``).

Starts (or reuses) the ``bench`` sticky servers, runs every figure group in one
process on the same servers, prints one table and writes it as JSON to
``benchmarks/results/latest.json``. What each figure means: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script (`python benchmarks/run.py`): make `benchmarks` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import (
    acquire,
    chart,
    django_history,
    django_suite,
    memory,
    per_test,
    plugin_load,
    savepoint,
    seeded_suite,
    servers,
    startup,
    suites,
)
from benchmarks.context import BENCH_DIRECTORY, BenchContext, open_context
from benchmarks.report import Figure, Report

GROUPS: dict[str, Callable[[BenchContext], list[Figure]]] = {
    "per_test": per_test.run,
    "acquire": acquire.run,
    "savepoint": savepoint.run,
    "memory": memory.run,
    "suites": suites.run,
    "startup": startup.run,
    "servers": servers.run,
    "django_suite": django_suite.run,
    "django_history": django_history.run,
    "plugin_load": plugin_load.run,
    "seeded": seeded_suite.run,
}
DEFAULT_OUTPUT = BENCH_DIRECTORY / "results" / "latest.json"
PACKAGES = ("freshdb", "pytest-postgresql", "testcontainers", "sqlalchemy", "psycopg", "pytest")


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of ``benchmarks/run.py``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small samples: a smoke run")
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated groups to run (default all: {', '.join(GROUPS)})",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the JSON file")
    parser.add_argument(
        "--keep-servers",
        action="store_true",
        help="leave the bench sticky servers running (default: remove them at the end)",
    )
    arguments = parser.parse_args(argv)
    chosen = [name.strip() for name in arguments.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(GROUPS))
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}: choose from {', '.join(GROUPS)}")
    arguments.groups = chosen or list(GROUPS)
    return arguments


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "system": f"{platform.system()} {platform.release()}",
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }


def versions() -> dict[str, str | None]:
    """Versions of freshdb and of the peers measured."""
    found: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def main(argv: list[str] | None = None) -> int:
    """Run the chosen groups, print the table, write the JSON."""
    arguments = parse_arguments(argv)
    started = time.monotonic()
    failed: list[str] = []
    report = Report(
        {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "quick": arguments.quick,
            "groups": arguments.groups,
            "machine": machine(),
            "versions": versions(),
        }
    )
    with open_context(quick=arguments.quick, keep_servers=arguments.keep_servers) as context:
        report.meta["images"] = {
            "postgres": context.postgres_image,
            "mariadb": context.mariadb_image,
            "matrix": servers.matrix_images(),
        }
        for name in arguments.groups:
            group_started = time.monotonic()
            print(f"freshdb bench: {name} ...", file=sys.stderr, flush=True)
            try:
                report.extend(GROUPS[name](context))
            except Exception as exc:
                # One broken group must not cost the figures of the others.
                traceback.print_exc()
                failed.append(name)
                note = (str(exc).splitlines() or [repr(exc)])[0][:300]
                report.add(Figure(f"{name}.failed", name, "group failed", "", None, note=note))
            print(
                f"freshdb bench: {name} done in {time.monotonic() - group_started:.1f} s",
                file=sys.stderr,
                flush=True,
            )
    report.meta["seconds"] = round(time.monotonic() - started, 1)

    meta = report.meta
    print(
        f"freshdb benchmarks, {meta['date']}{' (--quick)' if arguments.quick else ''}: "
        f"{meta['machine']['cores']} cores ({meta['machine']['cpu']}), "
        f"Python {meta['machine']['python']}, {meta['images']['postgres']}, "
        f"{meta['images']['mariadb']}; {meta['seconds']:.0f} s"
    )
    print(report.render())
    missed = report.missed()
    if missed:
        print("targets missed:")
        for figure, target in missed:
            print(f"  {figure.group} / {figure.label}: {target.text}")
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps(report.as_json(), indent=2) + "\n")
    print(f"written to {arguments.output}")
    # The chart of the same figures, beside the JSON (results/chart.svg by default).
    print(f"chart: {chart.write_chart(report.as_json(), arguments.output.with_name('chart.svg'))}")
    if failed:
        print(f"groups that failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
