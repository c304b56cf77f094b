"""Templates on one sticky server shared by many projects: kept by use, never read half-built.

Each engine gets one sticky server for this module (a prefix of its own), and the
"projects" are schema files in directories of their own: a project is its root
and its schema's source, so editing a file supersedes that project's template.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import secrets
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import freshdb
from freshdb import naming
from freshdb.cleanup import inventory, removal
from freshdb.config import Settings, resolve_settings
from freshdb.dialects import dialect_for
from freshdb.errors import FreshDBError
from freshdb.migrators import digest
from freshdb.template import TemplateFingerprint

from ..conftest import RUN_PREFIX

pytestmark = pytest.mark.docker

ENGINES = ("postgres", "mariadb")


@pytest.fixture(scope="module")
def prefix() -> str:
    """This module's own sticky servers: counts of templates depend on it alone."""
    return RUN_PREFIX[:7] + secrets.token_hex(4)


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def image(engine: str, postgres_image: str, mariadb_image: str) -> str:
    return postgres_image if engine == "postgres" else mariadb_image


def session(engine: str, image: str, prefix: str, schema: Any, **settings: Any) -> Any:
    settings.setdefault("pool_size", 1)
    return freshdb.DatabaseServer(
        engine, image=image, mode="sticky", prefix=prefix, schema=schema, **settings
    )


def projects(tmp_path: Path, count: int) -> list[Path]:
    """``count`` projects, each a schema file of its own with a table of its own."""
    schemas = []
    for index in range(count):
        directory = tmp_path / f"project{index}"
        directory.mkdir()
        schema = directory / "schema.sql"
        # The test's name makes the schema its own: the same schema elsewhere would
        # share its template (a template serves every project with its fingerprint).
        schema.write_text(
            f"-- {tmp_path.name}\n"
            f"CREATE TABLE things_{index} (id INT PRIMARY KEY, version INT);\n"
            f"INSERT INTO things_{index} VALUES (1, 1);\n"
        )
        schemas.append(schema)
    return schemas


def settings_for(engine: str, image: str, prefix: str, **more: Any) -> Settings:
    return resolve_settings(
        {"engine": engine, "image": image, "mode": "sticky", "prefix": prefix, **more}
    )


def complete_templates(engine: str, image: str, prefix: str) -> set[str]:
    """The complete templates on the server (asked without starting a session)."""
    server = inventory.current_server(settings_for(engine, image, prefix))
    conn = server.dialect.connect(server.address)
    try:
        return {
            parsed.name
            for parsed in server.dialect.our_databases(conn, prefix, ("template",))
            if server.dialect.template_is_complete(conn, parsed.name)
        }
    finally:
        conn.close()


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_four_projects_take_turns_for_three_rounds_and_build_only_in_the_first(
    engine: str, image: str, prefix: str, tmp_path: Path
) -> None:
    schemas = projects(tmp_path, 4)
    used: dict[int, str] = {}
    for round_number in range(3):
        for index, schema in enumerate(schemas):
            with session(engine, image, prefix, schema) as server:
                stats = server.stats()
                # keep_templates (3) is fewer than the projects: retention by use
                # still keeps every template used within the week.
                assert stats["template_reused"] is (round_number > 0), (round_number, index)
                with server.database() as db, db.engine().connect() as conn:
                    assert conn.exec_driver_sql(f"SELECT id FROM things_{index}").scalar() == 1
                if round_number == 0:
                    used[index] = str(server.template)
                assert server.template == used[index]
    assert set(used.values()) <= complete_templates(engine, image, prefix)

    # What status says: each template, when it was last used, by which project.
    settings = settings_for(engine, image, prefix)
    (info,) = [s for s in inventory.gather(settings) if s.engine == engine]
    listed = {t.name: t for t in info.templates}
    for index, name in used.items():
        assert listed[name].last_used >= listed[name].created
        assert listed[name].stale is False
        (project,) = listed[name].projects
        assert project.endswith(f"SQL {schemas[index]}")


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_a_projects_superseded_template_is_pruned_first(
    engine: str, image: str, prefix: str, tmp_path: Path
) -> None:
    schemas = projects(tmp_path, 4)
    first: list[str] = []
    for schema in schemas:
        with session(engine, image, prefix, schema) as server:
            first.append(str(server.template))
    # Project 0 changes its schema: its old template is superseded.
    schemas[0].write_text(
        f"-- {tmp_path.name}\n"
        "CREATE TABLE things_0 (id INT PRIMARY KEY, version INT, added INT);\n"
        "INSERT INTO things_0 VALUES (1, 2, 0);\n"
    )
    with session(engine, image, prefix, schemas[0], keep_templates=1) as changed:
        assert changed.stats()["template_reused"] is False
        assert changed.template != first[0]
        left = complete_templates(engine, image, prefix)
        # Beyond keep_templates, yet every other project's template stays: each was
        # used within the week. The superseded one went.
        assert first[0] not in left
        assert {changed.template, *first[1:]} <= left
    for index, schema in enumerate(schemas[1:], start=1):
        with session(engine, image, prefix, schema, keep_templates=1) as again:
            assert again.stats()["template_reused"] is True
            assert again.template == first[index]


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_templates_unused_beyond_the_retention_make_room_least_recently_used_first(
    engine: str, image: str, prefix: str, tmp_path: Path
) -> None:
    schemas = projects(tmp_path, 3)
    names = []
    for schema in schemas:
        with session(engine, image, prefix, schema) as server:
            names.append(str(server.template))
    # A retention of 0 s: every template not in use is idle. Making room (keep 2)
    # takes the least recently used first, so the two used last stay.
    settings = settings_for(engine, image, prefix, keep_templates=2, template_retention="0")
    planned = [
        r.name for r in removal.prune(settings, max_age=None, dry_run=True) if r.what == "template"
    ]
    assert planned and planned[-1] == names[0]
    assert names[1] not in planned and names[2] not in planned
    removed = [r.name for r in removal.prune(settings, max_age=None, dry_run=False)]
    assert removed == planned
    assert complete_templates(engine, image, prefix) == {names[1], names[2]}


# -- a build in progress ------------------------------------------------------------------
SLOW_BUILDER = """
import json, pathlib, time
import freshdb
from freshdb.migrators import CallableMigrator

started, release = pathlib.Path({started!r}), pathlib.Path({release!r})

def build(connection):
    connection.exec_driver_sql("CREATE TABLE slow (id INT PRIMARY KEY)")
    started.write_text("building")
    deadline = time.monotonic() + 120
    while not release.exists():  # mid-migration, holding the build lock
        assert time.monotonic() < deadline, "never released"
        time.sleep(0.05)
    connection.exec_driver_sql("INSERT INTO slow VALUES (1)")

server = freshdb.DatabaseServer(
    {engine!r}, image={image!r}, mode="sticky", prefix={prefix!r}, pool_size=1,
    schema=CallableMigrator(build, key={key!r}),
)
with server:
    with server.database() as db, db.engine().connect() as conn:
        rows = conn.exec_driver_sql("SELECT COUNT(*) FROM slow").scalar()
    print(json.dumps({{"reused": server.stats()["template_reused"], "rows": rows,
                      "template": server.template}}))
"""


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_prune_and_reap_leave_a_build_in_progress_alone(
    engine: str, image: str, prefix: str, tmp_path: Path
) -> None:
    # The server is up before the builder starts: its start is not what is timed.
    with session(engine, image, prefix, None, pool_size=0):
        pass
    started, release = tmp_path / "started", tmp_path / "release"
    key = f"slow-{secrets.token_hex(4)}"
    code = SLOW_BUILDER.format(
        started=str(started),
        release=str(release),
        engine=engine,
        image=image,
        prefix=prefix,
        key=key,
    )
    builder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not started.exists():
            assert builder.poll() is None, builder.communicate()[1]
            assert time.monotonic() < deadline, "the builder never started migrating"
            time.sleep(0.05)
        dialect = dialect_for(engine)
        conn = dialect.connect(
            inventory.current_server(settings_for(engine, image, prefix)).address
        )
        try:
            version = dialect.server_version(conn)
            in_progress = {
                p.name for p in dialect.our_databases(conn, prefix) if p.kind != "copy"
            } - complete_templates(engine, image, prefix)
        finally:
            conn.close()
        fingerprint = TemplateFingerprint(
            dialect.family, version, digest("callable-key", key)
        ).digest
        (half_built,) = [
            name for name in in_progress if fingerprint[: naming.COPY_FINGERPRINT_LENGTH] in name
        ]

        # Starts that reap and prune as hard as they can: retention 0, keep 1.
        other = tmp_path / "other.sql"
        other.write_text("CREATE TABLE other_things (id INT PRIMARY KEY);\n")
        with session(
            engine, image, prefix, other, keep_templates=1, template_retention="0"
        ) as pruning:
            assert half_built not in pruning.stats()["reaped"]
        settings = settings_for(engine, image, prefix, keep_templates=1, template_retention="0")
        for dry_run in (True, False):
            removed = removal.prune(settings, max_age=dt.timedelta(0), dry_run=dry_run)
            assert half_built not in {r.name for r in removed}
        (info,) = [s for s in inventory.gather(settings) if s.engine == engine]
        assert info.error is None
        assert half_built not in {t.name for t in info.templates}

        # Waiting for its lock is bounded, and says who holds it.
        conn = dialect.connect(inventory.current_server(settings).address)
        try:
            with pytest.raises(FreshDBError, match=r"held by .*(freshdb session|connection)"):
                dialect.lock_template(conn, fingerprint, 1.0)
            assert dialect.database_exists(conn, half_built)  # untouched
        finally:
            conn.close()
        assert builder.poll() is None
    finally:
        release.write_text("go")
        out, err = builder.communicate(timeout=180)
    assert builder.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["reused"] is False and result["rows"] == 1
    assert result["template"] in complete_templates(engine, image, prefix)


@pytest.fixture(scope="module", autouse=True)
def _down(prefix: str, postgres_image: str, mariadb_image: str) -> Iterator[None]:
    """Remove this module's sticky servers afterwards (the run's teardown would too)."""
    yield
    for engine, image in (("postgres", postgres_image), ("mariadb", mariadb_image)):
        settings = settings_for(engine, image, prefix)
        with contextlib.suppress(FreshDBError):
            removal.remove_sticky_servers(settings, every=True)


def test_a_crashed_in_place_build_is_left_by_status_and_dropped_by_prune(
    prefix: str, mariadb_image: str
) -> None:
    # MySQL builds in place: a builder killed mid-migration leaves the template's
    # name without the completion marker, and its lock free.
    with session("mariadb", mariadb_image, prefix, None, pool_size=0):
        pass
    settings = settings_for("mariadb", mariadb_image, prefix, keep_templates=1)
    server = inventory.current_server(settings)
    crashed = naming.template_name(prefix, secrets.token_hex(10))
    conn = server.dialect.connect(server.address)
    try:
        server.dialect.create_database(conn, crashed)
        server.dialect.scalar(conn, f"CREATE TABLE `{crashed}`.half_done (id INT)")
        (info,) = [s for s in inventory.gather(settings) if s.engine == "mariadb"]
        assert info.error is None and crashed not in {t.name for t in info.templates}
        removal.prune(settings, max_age=None, dry_run=True)
        assert server.dialect.database_exists(conn, crashed)  # status and dry runs look only
        removal.prune(settings, max_age=None, dry_run=False)
        assert not server.dialect.database_exists(conn, crashed)
    finally:
        server.dialect.drop_database(conn, crashed)
        conn.close()
