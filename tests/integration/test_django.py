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
    # The runner shows the build as it goes, as pytest-django's integration does.
    assert f"freshdb: building template {template}: 1/" in output
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
    assert f"freshdb: template {template} reused" in output
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


BUILDING = re.compile(r"freshdb: building template (\S+) with Django migrate")
STEP = re.compile(r"freshdb: building template (\S+): (\d+)/(\d+) (\S+) \((\d+\.\d) s\)")


def test_a_long_build_shows_its_progress_and_a_reuse_is_announced(
    tmp_path: Path, project_env: dict[str, str]
) -> None:
    root = django_project.write_project(
        tmp_path / "project", "postgres", token=secrets.token_hex(6)
    )
    django_project.add_history(root, 30)

    # pytest-django: the build shows in pytest's output (not only with -v), with
    # which migration of how many and the time so far, throttled.
    output = passed(run(root, project_env, "-m", "pytest", "-q"))
    template = BUILDING.search(output)
    assert template is not None, output
    steps = STEP.findall(output)
    assert steps, output
    first_template, step, total, name, _seconds = steps[0]
    assert first_template == template.group(1) and "." in name
    # The first migration shows at once; the plan counts Django's own apps too.
    assert step == "1" and int(total) > 30 + 3
    assert all(int(s[1]) <= int(s[2]) == int(total) for s in steps)
    assert len(steps) <= int(total)
    assert f"freshdb: template {template.group(1)} built in" in output

    # The next run reuses it, and says so.
    output = passed(run(root, project_env, "-m", "pytest", "-q"))
    assert f"freshdb: template {template.group(1)} reused" in output
    assert not BUILDING.search(output)

    # `freshdb warm`: progress on stderr, the result on stdout; then the reuse.
    (root / "proj" / "schema.py").write_text(
        "from freshdb.migrators import DjangoMigrator\n\n"
        "migrator = DjangoMigrator('proj.settings')\n"
    )
    seed = root / "shelf/migrations/0002_seed.py"
    seed.write_text(seed.read_text() + "# edited: another template\n")
    warm = [
        "-m", "freshdb", "warm", "--engine", "postgres", "--schema", "proj.schema:migrator",
    ]  # fmt: skip
    env = {**project_env, "DJANGO_SETTINGS_MODULE": "proj.settings"}
    result = run(root, env, *warm)
    assert result.returncode == 0, result.stdout + result.stderr
    assert BUILDING.search(result.stderr) and STEP.search(result.stderr), result.stderr
    assert "built (" in result.stdout
    result = run(root, env, *warm)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reused" in result.stderr and "reused (" in result.stdout


def test_pytest_django_under_xdist_shares_one_throwaway_container(
    tmp_path: Path, project_env: dict[str, str], fresh_prefix: str, docker_client: Any
) -> None:
    root = django_project.write_project(
        tmp_path / "project", "postgres", token=secrets.token_hex(6)
    )
    django_project.add_server_shared_tests(root)
    env = {**project_env, "FRESHDB_MODE": "throwaway", "FRESHDB_PREFIX": fresh_prefix}

    output = passed(run(root, env, "-m", "pytest", "-q", "-n", "2"))
    assert "15 passed" in output
    seen = {name: r for name, r in records(env).items() if name.startswith("server_")}
    assert len(seen) == 6
    # Both workers ran tests, on one server: one container of this prefix, ever.
    assert len({r["pid"] for r in seen.values()}) == 2
    assert len({r["port"] for r in seen.values()}) == 1
    containers = {name for r in seen.values() for name in r["containers"]}
    assert len(containers) == 1, containers
    assert "throwaway (one for all xdist workers)" in output
    # Removed at the end of the run, as a throwaway is.
    label = f"{naming.LABEL_PREFIX_NAME}={fresh_prefix}"
    assert docker_client.containers.list(all=True, filters={"label": [label]}) == []
