"""The ``docker`` marker (tests/conftest.py): skipped with a reason where no Docker
engine is reachable, failed instead under CI; tests without it run regardless.

Each case runs pytest in a new process whose DOCKER_HOST names a socket that does
not exist, so no engine is ever contacted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: A docker-marked test (its module's ``pytestmark``) and a unit test.
DOCKER_TEST = "tests/integration/test_cli.py::test_usage_errors_exit_2"
UNIT_TEST = "tests/unit/test_config.py"


def run_without_engine(tmp_path: Path, ci: str) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST_", "DOCKER_")) and key != "CI"
    }
    env.update(DOCKER_HOST=f"unix://{tmp_path / 'no-engine.sock'}", CI=ci)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rse", DOCKER_TEST, UNIT_TEST],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_without_an_engine_docker_tests_are_skipped_saying_why(tmp_path: Path) -> None:
    result = run_without_engine(tmp_path, ci="")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert "no Docker engine reachable: Docker engine not reachable at unix://" in result.stdout
    assert " passed" in result.stdout and "failed" not in result.stdout


def test_under_ci_a_missing_engine_fails_instead(tmp_path: Path) -> None:
    result = run_without_engine(tmp_path, ci="true")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 error" in result.stdout and "skipped" not in result.stdout
    assert "CI is set, and CI always has a Docker engine, but none is reachable" in result.stdout
    assert " passed" in result.stdout
