"""Shared test setup.

Every server this test run makes carries a prefix of its own (``t`` + random hex),
so the suite never touches a developer's sticky server or another run of itself,
and at the end it removes only containers bearing that prefix.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

RUN_PREFIX = "t" + secrets.token_hex(3)
POSTGRES_IMAGE_VARIABLE = "FRESHDB_POSTGRES_IMAGE"
MARIADB_IMAGE_VARIABLE = "FRESHDB_MARIADB_IMAGE"


def _docker_client() -> Any:
    from freshdb.backends.docker import connect_docker

    client, _ = connect_docker()
    return client


@pytest.fixture(scope="session")
def docker_client() -> Any:
    """A Docker client (the test is skipped if no engine answers)."""
    try:
        return _docker_client()
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"no Docker engine: {exc}")


@pytest.fixture(scope="session")
def run_prefix() -> str:
    """The prefix every server of this test run uses."""
    return RUN_PREFIX


@pytest.fixture
def fresh_prefix() -> str:
    """A prefix no other test uses: for tests about starting from nothing."""
    return RUN_PREFIX[:7] + secrets.token_hex(4)


@pytest.fixture(scope="session")
def postgres_image() -> str:
    """The Postgres image the suite runs (configured via FRESHDB_POSTGRES_IMAGE)."""
    return os.environ.get(POSTGRES_IMAGE_VARIABLE, "postgres:17")


@pytest.fixture(scope="session")
def mariadb_image() -> str:
    """The MariaDB image the suite runs (configured via FRESHDB_MARIADB_IMAGE)."""
    return os.environ.get(MARIADB_IMAGE_VARIABLE, "mariadb:11.4")


@pytest.fixture(scope="session", autouse=True)
def _remove_this_runs_containers() -> Iterator[None]:
    """After the run, remove the containers this run made (by its prefix label)."""
    yield
    try:
        client = _docker_client()
    except Exception:
        return
    from freshdb.backends.docker import remove_container
    from freshdb.naming import LABEL_MANAGED, LABEL_PREFIX_NAME

    # Other test runs remove their containers meanwhile: a listed one may be gone.
    managed = {"label": [f"{LABEL_MANAGED}=true"]}
    for container in client.containers.list(all=True, filters=managed, ignore_removed=True):
        prefix = (container.labels or {}).get(LABEL_PREFIX_NAME, "")
        if prefix.startswith(RUN_PREFIX[:7]):
            remove_container(container)


def run_python(code: str, *, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    """Run Python code in a new process (the repository's interpreter); return stdout."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=Path(__file__).parent,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"subprocess failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout
