"""Django's test runner and pytest-django on freshdb, with a real project on real servers.

The project (``django_project``: two apps, a foreign key across them, a data
migration that counts its runs, a ``TestCase`` and a ``TransactionTestCase``) is
written into ``tmp_path`` and its own suite is run in subprocesses: by
``manage.py test`` with ``TEST_RUNNER = "freshdb.django.TestRunner"`` (serially and
with ``--parallel 2``), and by pytest with pytest-django and ``freshdb_django =
true`` (with and without per-test copies for transactional tests).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import freshdb
from freshdb import naming

from ..conftest import ENGINES, IMAGE_VARIABLES, image_for
from . import django_project

pytestmark = [pytest.mark.docker, pytest.mark.server]

RUNNER_SETTING = 'TEST_RUNNER = "freshdb.django.TestRunner"\n'
MAIN_COPY = re.compile(r"test database for alias 'default' is (\S+), a copy of template (\S+)")


@pytest.fixture
def project_env(request: pytest.FixtureRequest, run_prefix: str, tmp_path: Path) -> dict[str, str]:
    """The environment the project's suite runs in: this run's servers (the test's
    engine and image), a record dir."""
    # Tests not parametrized by engine (the SQLite refusal) run against Postgres.
    callspec = getattr(request.node, "callspec", None)
    engine = callspec.params["engine"] if callspec is not None else "postgres"
    records = tmp_path / "records"
    records.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("CI", "DJANGO_SETTINGS_MODULE", "PYTEST_ADDOPTS")
        and not key.startswith("PYTEST_XDIST")
    }
    env.update(
        FRESHDB_PREFIX=run_prefix,
        FRESHDB_MODE="sticky",
        # Django names the family ("mysql"); the engine says MariaDB or MySQL.
        FRESHDB_ENGINE=engine,
        **{IMAGE_VARIABLES[engine]: image_for(engine)},
        # Other tests build templates on this run's servers too: keep them all.
        FRESHDB_KEEP_TEMPLATES="64",
        RECORD_DIR=str(records),
    )
    return env


@pytest.fixture
def admin(request: pytest.FixtureRequest, run_prefix: str) -> Iterator[freshdb.DatabaseServer]:
    """The run's sticky server of the test's engine, to look at what the suite left."""
    engine = request.node.callspec.params["engine"]
    image = image_for(engine)
    with freshdb.DatabaseServer(
        engine, image=image, mode="sticky", prefix=run_prefix, pool_size=0, keep_templates=64
    ) as server:
        yield server


def run(
    root: Path, env: dict[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run a command of the project's in its directory."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def passed(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def records(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """What each of the project's tests recorded: its database and process."""
    directory = Path(env["RECORD_DIR"])
    found = {p.name: json.loads(p.read_text()) for p in directory.iterdir()}
    for path in directory.iterdir():
        path.unlink()
    return found


def leftover_copies(server: freshdb.DatabaseServer, template: str) -> list[str]:
    """Copies of ``template`` still on the server."""
    prefix = server.settings.prefix
    parsed_template = naming.parse_database_name(prefix, template)
    assert parsed_template is not None
    conn = server.dialect.connect(server.address)
    try:
        copies = server.dialect.our_databases(conn, prefix, ("copy",))
    finally:
        conn.close()
    return [c.name for c in copies if parsed_template.fingerprint.startswith(c.fingerprint)]


def is_copy(prefix: str, name: str) -> bool:
    parsed = naming.parse_database_name(prefix, name)
    return parsed is not None and parsed.kind == "copy"


@pytest.mark.parametrize("engine", ENGINES)
def test_runner_serial_and_parallel_from_one_cached_template(
    engine: str,
    tmp_path: Path,
    run_prefix: str,
    project_env: dict[str, str],
    admin: freshdb.DatabaseServer,
) -> None:
    root = django_project.write_project(
        tmp_path / "project", engine, token=secrets.token_hex(6), extra_settings=RUNNER_SETTING
    )

    # First run: the template is built, migrate runs once.
    output = passed(run(root, project_env, "manage.py", "test", "-v", "2"))
    assert "Ran 6 tests" in output and "OK" in output
    main_copy, template = MAIN_COPY.search(output).groups()  # type: ignore[union-attr]
    assert "built in" in output
    assert django_project.migrations_run(root) == 1
    seen = records(project_env)
    assert {r["database"] for r in seen.values()} == {main_copy}
    assert is_copy(run_prefix, main_copy)
    assert leftover_copies(admin, template) == []

    # Second run, in parallel: the template is reused, migrate does not run again,
    # and each worker runs on a copy of its own (not Django's clones).
    output = passed(run(root, project_env, "manage.py", "test", "--parallel", "2", "-v", "2"))
    assert "Ran 6 tests" in output and "OK" in output
    main_copy, reused_template = MAIN_COPY.search(output).groups()  # type: ignore[union-attr]
    assert reused_template == template and "(reused)" in output
    assert django_project.migrations_run(root) == 1
    seen = records(project_env)
    workers = {r["pid"]: r["database"] for r in seen.values()}
    assert all(is_copy(run_prefix, name) for name in workers.values())
    assert main_copy not in workers.values()
    assert len(set(workers.values())) == len(workers)  # one copy per worker process
    assert leftover_copies(admin, template) == []


@pytest.mark.parametrize("engine", ENGINES)
def test_runner_rebuilds_once_when_a_migration_is_added_and_keeps_with_keepdb(
    engine: str,
    tmp_path: Path,
    project_env: dict[str, str],
    admin: freshdb.DatabaseServer,
) -> None:
    root = django_project.write_project(
        tmp_path / "project", engine, token=secrets.token_hex(6), extra_settings=RUNNER_SETTING
    )
    passed(run(root, project_env, "manage.py", "test"))
    assert django_project.migrations_run(root) == 1

    django_project.add_migration(root)
    output = passed(run(root, project_env, "manage.py", "test", "-v", "2"))
    assert "built in" in output
    assert django_project.migrations_run(root) == 2
    output = passed(run(root, project_env, "manage.py", "test", "-v", "2", "--keepdb"))
    assert "(reused)" in output
    assert django_project.migrations_run(root) == 2

    # --keepdb: the test database outlives the run, renamed and named in the output.
    kept = re.search(r"\(--keepdb\): (\S+) at ", output)
    assert kept is not None, output
    conn = admin.dialect.connect(admin.address)
    try:
        assert admin.dialect.database_exists(conn, kept.group(1))
        admin.dialect.drop_database(conn, kept.group(1))
    finally:
        conn.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_pytest_django_with_and_without_copies_per_transactional_test(
    engine: str,
    tmp_path: Path,
    run_prefix: str,
    project_env: dict[str, str],
    admin: freshdb.DatabaseServer,
) -> None:
    root = django_project.write_project(tmp_path / "project", engine, token=secrets.token_hex(6))

    # Without per-test copies: every test of the session runs on the session's copy.
    output = passed(run(root, project_env, "-m", "pytest", "-q"))
    assert "9 passed" in output
    assert django_project.migrations_run(root) == 1
    seen = records(project_env)
    session_copy = seen["pytest_seeded"]["database"]
    assert is_copy(run_prefix, session_copy)
    assert seen["pytest_commits"]["database"] == session_copy
    assert seen["pytest_commits_again"]["database"] == session_copy

    # With them: each transactional test gets a fresh copy, starting from the seeded
    # template; the session copy is left alone. The template is reused.
    ini = root / "pytest.ini"
    ini.write_text(ini.read_text().replace("copies = false", "copies = true"))
    output = passed(run(root, project_env, "-m", "pytest", "-q"))
    assert "9 passed" in output
    assert django_project.migrations_run(root) == 1
    seen = records(project_env)
    session_copy = seen["pytest_seeded"]["database"]
    own = {seen["pytest_commits"]["database"], seen["pytest_commits_again"]["database"]}
    assert len(own) == 2 and session_copy not in own
    assert all(is_copy(run_prefix, name) for name in own)
    assert seen["pytest_commits"]["count"] == seen["pytest_commits_again"]["count"] == 1

    # Under pytest-xdist: each worker's session runs on a copy of its own.
    output = passed(run(root, project_env, "-m", "pytest", "-q", "-n", "2"))
    assert "9 passed" in output
    assert django_project.migrations_run(root) == 1
    seen = records(project_env)
    by_pid: dict[int, set[str]] = {}
    for name, record in seen.items():
        if name in ("seeded", "foreign_key", "pytest_seeded"):
            by_pid.setdefault(record["pid"], set()).add(record["database"])
    assert all(len(names) == 1 for names in by_pid.values())
    if len(by_pid) == 2:
        first, second = by_pid.values()
        assert first != second


@pytest.mark.parametrize("engine", ENGINES)
def test_connections_left_open_do_not_block_teardown(
    engine: str, tmp_path: Path, project_env: dict[str, str], admin: freshdb.DatabaseServer
) -> None:
    root = django_project.write_project(
        tmp_path / "project", engine, token=secrets.token_hex(6), extra_settings=RUNNER_SETTING
    )
    env = {**project_env, "LEAK_CONNECTION": "1"}
    for parallel in ("1", "2"):
        output = passed(run(root, env, "manage.py", "test", "-v", "2", "--parallel", parallel))
        assert "Ran 6 tests" in output
        template = MAIN_COPY.search(output).group(2)  # type: ignore[union-attr]
        assert leftover_copies(admin, template) == []


@pytest.mark.parametrize("engine", ENGINES)
def test_a_broken_migration_is_named_by_the_runner(
    engine: str, tmp_path: Path, project_env: dict[str, str], admin: freshdb.DatabaseServer
) -> None:
    root = django_project.write_project(
        tmp_path / "project", engine, token=secrets.token_hex(6), extra_settings=RUNNER_SETTING
    )
    django_project.add_migration(root, body='        migrations.RunSQL("SELECT * FROM nowhere"),\n')
    result = run(root, project_env, "manage.py", "test")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "MigrationError" in output
    assert "library.0002_author_born" in output
    assert "nowhere" in output


def test_sqlite_is_refused_with_a_clear_error(tmp_path: Path, project_env: dict[str, str]) -> None:
    root = django_project.write_project(
        tmp_path / "project", "postgres", token="sqlite", extra_settings=RUNNER_SETTING
    )
    settings = root / "proj" / "settings.py"
    settings.write_text(
        settings.read_text().replace("django.db.backends.postgresql", "django.db.backends.sqlite3")
    )
    result = run(root, project_env, "manage.py", "test")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "ConfigurationError" in output
    assert "freshdb serves Postgres and MySQL/MariaDB" in output
