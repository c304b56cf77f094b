"""Run the server-behaviour tests against each server of the matrix, then summarise.

    python -m tests.matrix --images "IMAGE ..." [--marker server|compat] [--copies N]
                           [PYTEST ARGUMENTS]

For each image (``freshdb-local/postgres:15``, ``mysql:9``, …) this runs pytest
once, with the image as the one its engine uses (``FRESHDB_<ENGINE>_IMAGE``; for
MySQL also ``FRESHDB_TEST_MYSQL_FAMILY=mysql``) and only the tests marked
``MARKER`` that exercise that engine's family (``-m "MARKER and postgres"`` or
``… and mysql_family``; see tests/conftest.py). Images of the other family stay as
the environment sets them. With ``--copies N`` it then times N copies of the
benchmark schema's template on a throwaway server of the image
(benchmarks/servers.py). It ends with one line per server (tests passed, failed,
skipped; median copy time) and exits non-zero if any run failed.

``make test-matrix`` runs it on every server with ``--marker server --copies 9``;
``make test`` runs it with ``--marker compat`` on every server besides the defaults.
Both pass ``MATRIX_ARGS`` on to pytest (``make test-matrix MATRIX_ARGS=-x``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))

from benchmarks.servers import engine_of, measure  # noqa: E402

IMAGE_VARIABLES = {
    "postgres": "FRESHDB_POSTGRES_IMAGE",
    "mariadb": "FRESHDB_MARIADB_IMAGE",
    "mysql": "FRESHDB_MYSQL_IMAGE",
}


@dataclasses.dataclass
class ServerRun:
    """The outcome of one server's run."""

    image: str
    exit_code: int = 0
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    copy_ms: float | None = None
    copy_error: str = ""

    @property
    def ok(self) -> bool:
        """Whether every selected test passed (and at least one ran) and copies worked."""
        return self.exit_code == 0 and not self.copy_error


def environment(image: str) -> dict[str, str]:
    """The environment of a run on ``image``: it is its engine's image under test."""
    engine = engine_of(image)
    env = {**os.environ, IMAGE_VARIABLES[engine]: image}
    if engine != "postgres":
        env["FRESHDB_TEST_MYSQL_FAMILY"] = engine
    return env


def count(report: Path) -> tuple[int, int, int]:
    """Passed, failed (failures and errors) and skipped tests of a JUnit XML report."""
    if not report.exists():
        return 0, 0, 0
    root = ElementTree.parse(report).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tests = failures = skipped = 0
    for suite in suites:
        tests += int(suite.get("tests", 0))
        failures += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
    return tests - failures - skipped, failures, skipped


def run_server(image: str, marker: str, copies: int, pytest_args: list[str]) -> ServerRun:
    """Run the selected tests on one server, then time its copies."""
    family = "postgres" if engine_of(image) == "postgres" else "mysql_family"
    outcome = ServerRun(image)
    print(f"\n=== {image}: -m '{marker} and {family}' ===", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="freshdb-matrix-") as directory:
        report = Path(directory) / "junit.xml"
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            f"{marker} and {family}",
            f"--junitxml={report}",
            "-q",
            *pytest_args,
        ]
        outcome.exit_code = subprocess.call(command, cwd=REPOSITORY, env=environment(image))
        outcome.passed, outcome.failed, outcome.skipped = count(report)
    outcome.seconds = time.monotonic() - started
    if copies:
        try:
            samples = measure(image, copies=copies, acquires=0).copies
            outcome.copy_ms = statistics.median(samples) * 1000.0
        except Exception as exc:
            outcome.copy_error = (str(exc).splitlines() or [repr(exc)])[0][:200]
    return outcome


def summary(runs: list[ServerRun], marker: str, copies: int) -> str:
    """One line per server."""
    header = ["server", "passed", "failed", "skipped", "minutes"]
    if copies:
        header.append(f"median copy ({copies})")
    rows = [header]
    for outcome in runs:
        row = [
            outcome.image,
            str(outcome.passed),
            str(outcome.failed),
            str(outcome.skipped),
            f"{outcome.seconds / 60:.1f}",
        ]
        if copies:
            row.append(f"{outcome.copy_ms:.1f} ms" if outcome.copy_ms is not None else "failed")
        if not outcome.ok:
            row.append(f"FAILED (pytest exit {outcome.exit_code}) {outcome.copy_error}".strip())
        rows.append(row)
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(header))]
    lines = [f"freshdb test matrix, tests marked '{marker}', per server:"]
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(widths[i]) for i, cell in enumerate(row[1 : len(header)], 1)]
        cells += row[len(header) :]
        lines.append("  " + "  ".join(cells).rstrip())
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run every server; print the summary; 1 if any server's run failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--images", required=True, help="images of the servers to run, space-separated"
    )
    parser.add_argument("--marker", default="server", help="the tests to run (a marker)")
    parser.add_argument(
        "--copies", type=int, default=0, help="time this many copies per server (0: none)"
    )
    arguments, pytest_args = parser.parse_known_args(argv)
    images = arguments.images.split()
    if not images:
        parser.error("--images names no image")
    for image in images:
        try:
            engine_of(image)  # a typo fails here, before anything runs
        except ValueError as exc:
            parser.error(str(exc))
    runs = [run_server(image, arguments.marker, arguments.copies, pytest_args) for image in images]
    print("\n" + summary(runs, arguments.marker, arguments.copies), flush=True)
    return 0 if all(outcome.ok for outcome in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
