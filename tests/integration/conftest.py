"""Fixtures shared by the integration tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import freshdb

#: Runs ``python -m freshdb ARGS`` (see the :func:`cli` fixture).
Cli = Callable[..., subprocess.CompletedProcess[str]]


def sticky_server(engine: str, image: str, prefix: str, **options: Any) -> freshdb.DatabaseServer:
    """A sticky server of ``prefix`` (in tests, this run's); ``options`` go to
    :class:`freshdb.DatabaseServer` as they are."""
    return freshdb.DatabaseServer(engine, image=image, mode="sticky", prefix=prefix, **options)


@pytest.fixture
def sticky_family_server(
    run_prefix: str, postgres_image: str, mysql_family: Any
) -> Callable[..., freshdb.DatabaseServer]:
    """Makes (does not start) a sticky server of this run for a family and a driver.

    ``"postgres"`` is the Postgres image under test; any other family is the
    MySQL-family server under test.
    """

    def make(family: str, driver: str, *, schema: Any, pool_size: int) -> freshdb.DatabaseServer:
        engine, image = (
            ("postgres", postgres_image)
            if family == "postgres"
            else (mysql_family.engine, mysql_family.image)
        )
        return sticky_server(
            engine, image, run_prefix, schema=schema, pool_size=pool_size, driver=driver
        )

    return make


def cli_environment(prefix: str, postgres_image: str, **extra: str) -> dict[str, str]:
    """The environment of a ``freshdb`` command in a test: this test's prefix, sticky
    servers, the images under test, then ``extra``."""
    # A developer's own FRESHDB_URL or FRESHDB_MODE must not steer the tests.
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("FRESHDB_") or k.endswith("_IMAGE")
    }
    env.update(
        FRESHDB_PREFIX=prefix,
        FRESHDB_MODE="sticky",
        FRESHDB_POSTGRES_IMAGE=postgres_image,
        **extra,
    )
    return env


@pytest.fixture
def cli(fresh_prefix: str, postgres_image: str, tmp_path: Path) -> Cli:
    """Run ``python -m freshdb ARGS`` with this test's prefix (in ``tmp_path``); the
    finished process. ``env`` adds variables; unless ``check=False``, a non-zero exit
    fails the test with the command's output."""

    def run(
        *args: str, env: dict[str, str] | None = None, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "freshdb", *args],
            capture_output=True,
            text=True,
            input=input,
            timeout=180,
            cwd=tmp_path,
            env=cli_environment(fresh_prefix, postgres_image, **(env or {})),
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"freshdb {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    return run
