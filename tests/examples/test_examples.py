"""The examples' own test suites pass on freshdb (README: every example is runnable)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

pytestmark = pytest.mark.docker


def run_example_suite(directory: Path, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "FRESHDB_PREFIX": prefix, "FRESHDB_MODE": "sticky"},
    )


def test_the_sync_sqlalchemy_example_suite_passes(run_prefix: str) -> None:
    result = run_example_suite(EXAMPLES / "sync_app", run_prefix)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "24 passed" in result.stdout
    assert f"template: {run_prefix}_t_" in result.stdout


def test_the_sync_example_suite_passes_on_two_workers(run_prefix: str) -> None:
    result = run_example_suite(EXAMPLES / "sync_app", run_prefix, "-n", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "24 passed" in result.stdout


def test_the_fastapi_alembic_example_suite_passes(run_prefix: str) -> None:
    result = run_example_suite(EXAMPLES / "fastapi_app", run_prefix)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "14 passed" in result.stdout
