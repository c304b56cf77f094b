"""Shared test setup: which servers the suite runs, and this run's own prefix.

Every server this test run makes carries a prefix of its own (``t`` + random hex),
so the suite never touches a developer's sticky server or another run of itself,
and at the end it removes only containers bearing that prefix.

Which servers, chosen by environment variables (the Makefile sets them):

- ``FRESHDB_POSTGRES_IMAGE``, ``FRESHDB_MARIADB_IMAGE``, ``FRESHDB_MYSQL_IMAGE``: the
  image of each engine (fixtures ``postgres_image``, ``mariadb_image``,
  ``mysql_image``; unset, the engine's default image).
- ``FRESHDB_TEST_MYSQL_FAMILY`` (``mariadb``, the default, or ``mysql``): the engine
  that tests about MySQL-family server behaviour run on (fixture ``mysql_family``,
  and the second entry of :data:`ENGINES`, which engine-parametrized tests use).

Markers (registered in pyproject.toml):

- ``server``: the test depends on how a real server behaves; ``make test-matrix``
  runs these against every server of the matrix.
- ``compat``: the small compatibility subset of those; ``make test`` runs it on
  every server of the matrix besides the defaults.
- ``postgres`` / ``mysql_family``: which engine family the test exercises. Added at
  collection from the test's ``engine`` parameter or the image fixtures it uses,
  so ``-m "server and postgres"`` selects the tests a Postgres image changes.
- ``docker``: the test needs a Docker engine. Where none is reachable it is skipped,
  saying why; under ``CI`` (whose machines always have an engine) it fails instead,
  so a broken CI engine never passes as a green run of skips. Only an unreachable
  engine skips: any other failure to reach Docker is the test's error.

``tests/matrix.py`` (``make test-matrix``, and the second half of ``make test``)
runs pytest once per server of the matrix with these variables and markers.
"""

from __future__ import annotations

import dataclasses
import functools
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
MYSQL_IMAGE_VARIABLE = "FRESHDB_MYSQL_IMAGE"
MYSQL_FAMILY_VARIABLE = "FRESHDB_TEST_MYSQL_FAMILY"
IMAGE_VARIABLES = {
    "postgres": POSTGRES_IMAGE_VARIABLE,
    "mariadb": MARIADB_IMAGE_VARIABLE,
    "mysql": MYSQL_IMAGE_VARIABLE,
}
MYSQL_FAMILY_ENGINES = ("mariadb", "mysql")


def _mysql_family_engine() -> str:
    engine = os.environ.get(MYSQL_FAMILY_VARIABLE, "").strip() or "mariadb"
    if engine not in MYSQL_FAMILY_ENGINES:
        raise pytest.UsageError(
            f"{MYSQL_FAMILY_VARIABLE}={engine!r}: choose 'mariadb' or 'mysql' "
            "(the engine MySQL-family tests run on)"
        )
    return engine


#: The MySQL-family engine under test ("mariadb" or "mysql").
MYSQL_FAMILY = _mysql_family_engine()
#: The engines that engine-parametrized tests run on: Postgres and the MySQL family.
ENGINES = ("postgres", MYSQL_FAMILY)


def image_for(engine: str) -> str:
    """The image the suite runs ``engine`` on: its variable, else freshdb's default."""
    configured = os.environ.get(IMAGE_VARIABLES[engine], "").strip()
    if configured:
        return configured
    from freshdb.dialects import dialect_for

    return dialect_for(engine).default_image(engine)


def family_of(engine: str) -> str:
    """The marker of an engine's family: ``postgres`` or ``mysql_family``."""
    return "postgres" if engine == "postgres" else "mysql_family"


@dataclasses.dataclass(frozen=True)
class ServerUnderTest:
    """An engine and the image that runs it."""

    engine: str
    image: str


def _docker_client() -> Any:
    from freshdb.backends.docker_discovery import connect_docker

    client, _ = connect_docker()
    return client


@functools.cache
def docker_unreachable() -> str | None:
    """Why no Docker engine answers here (``None``: one does). Asked once per run."""
    from freshdb.errors import DockerUnavailableError

    try:
        client = _docker_client()
    except DockerUnavailableError as exc:
        return str(exc)
    client.close()
    return None


def _on_ci() -> bool:
    # The CI variable as freshdb itself reads it (see freshdb.config).
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no", "off"}


def require_docker() -> None:
    """Skip the calling test when no Docker engine is reachable; fail instead under CI."""
    reason = docker_unreachable()
    if reason is None:
        return
    if _on_ci():
        pytest.fail(
            f"CI is set, and CI always has a Docker engine, but none is reachable: {reason}",
            pytrace=False,
        )
    pytest.skip(f"no Docker engine reachable: {reason}")


# -- markers ----------------------------------------------------------------------------
#: Fixtures whose use says which family a test exercises (when no ``engine`` parameter does).
_FAMILY_FIXTURES = {
    "postgres_image": "postgres",
    "mariadb_image": "mysql_family",
    "mysql_image": "mysql_family",
    "mysql_family": "mysql_family",
}


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A ``docker`` test without a reachable engine is skipped (failed under CI)."""
    if item.get_closest_marker("docker") is not None:
        require_docker()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with the engine families it exercises (unless it says so itself)."""
    for item in items:
        if item.get_closest_marker("postgres") or item.get_closest_marker("mysql_family"):
            continue
        callspec = getattr(item, "callspec", None)
        engine = callspec.params.get("engine") if callspec is not None else None
        if isinstance(engine, str) and engine in IMAGE_VARIABLES:
            families = {family_of(engine)}
        else:
            names = getattr(item, "fixturenames", ())
            families = {family for name, family in _FAMILY_FIXTURES.items() if name in names}
        for family in sorted(families):
            item.add_marker(family)


# -- fixtures ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def docker_client() -> Any:
    """A Docker client (the test is skipped if no engine answers, failed under CI)."""
    require_docker()
    return _docker_client()


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
    return image_for("postgres")


@pytest.fixture(scope="session")
def mariadb_image() -> str:
    """The MariaDB image the suite runs (configured via FRESHDB_MARIADB_IMAGE)."""
    return image_for("mariadb")


@pytest.fixture(scope="session")
def mysql_image() -> str:
    """The MySQL image the suite runs (configured via FRESHDB_MYSQL_IMAGE)."""
    return image_for("mysql")


@pytest.fixture(scope="session")
def mysql_family() -> ServerUnderTest:
    """The MySQL-family server under test: MariaDB, or MySQL when
    FRESHDB_TEST_MYSQL_FAMILY=mysql (its image from that engine's variable)."""
    return ServerUnderTest(MYSQL_FAMILY, image_for(MYSQL_FAMILY))


@pytest.fixture
def inner_options(run_prefix: str, postgres_image: str) -> list[str]:
    """Options that point an inner pytest run at this run's sticky Postgres server."""
    return [
        f"--freshdb-image={postgres_image}",
        "--freshdb-mode=sticky",
        f"--freshdb-prefix={run_prefix}",
        "-p",
        "no:cacheprovider",
    ]


@pytest.fixture(scope="session", autouse=True)
def _remove_this_runs_containers() -> Iterator[None]:
    """After the run, remove the containers this run made (by its prefix label)."""
    yield
    try:
        client = _docker_client()
    except Exception:
        return
    from freshdb.backends.containers import remove_container
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


# What an outer test run must not hand down to an inner project's own run.
OUTER_RUN_VARIABLES = ("CI", "DJANGO_SETTINGS_MODULE", "PYTEST_ADDOPTS")


def project_environment(prefix: str) -> dict[str, str]:
    """The environment for an inner project's run: this one's, minus what belongs to
    the outer run, on sticky servers of ``prefix``."""
    inherited = {
        key: value
        for key, value in os.environ.items()
        if key not in OUTER_RUN_VARIABLES and not key.startswith("PYTEST_XDIST")
    }
    return {**inherited, "FRESHDB_PREFIX": prefix, "FRESHDB_MODE": "sticky"}
