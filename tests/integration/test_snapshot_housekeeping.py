"""Snapshots in ``freshdb status``, ``prune``, ``shell`` and retention, on a real server.

Each test has a sticky Postgres server of its own (a prefix of its own): what
status lists and prune removes depends on that test alone.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from freshdb import naming

from .conftest import Cli, sticky_server

pytestmark = [pytest.mark.docker, pytest.mark.server]

SCHEMA = (
    "CREATE TABLE things (id int PRIMARY KEY, name text NOT NULL);\n"
    "INSERT INTO things VALUES (1, 'from the template');\n"
)
SEED = "INSERT INTO things SELECT g, 'seeded' FROM generate_series(2, 50) AS g;\n"
COUNT = "SELECT count(*) FROM things;\n"


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    """The schema file and the seed file of this test's project."""
    schema, seed = tmp_path / "schema.sql", tmp_path / "seed.sql"
    schema.write_text(f"-- {tmp_path.name}\n{SCHEMA}")
    seed.write_text(SEED)
    return schema, seed


def status(cli: Cli, **env: str) -> dict[str, Any]:
    (server,) = json.loads(cli("status", "--json", env=env).stdout)["servers"]
    return dict(server)


def databases(cli: Cli, **env: str) -> set[str]:
    engine = sqlalchemy.create_engine(cli("url", env=env).stdout.strip())
    listing = (
        "SELECT datname FROM pg_database"
        if engine.dialect.name == "postgresql"
        else "SELECT schema_name FROM information_schema.schemata"
    )
    try:
        with engine.connect() as conn:
            return set(conn.exec_driver_sql(listing).scalars())
    finally:
        engine.dispose()


def removed(cli: Cli, **env: str) -> list[dict[str, str]]:
    return list(json.loads(cli("prune", "--json", env=env).stdout)["removed"])


def test_status_lists_a_snapshot_under_its_template_and_shell_opens_a_copy(
    cli: Cli, fresh_prefix: str, postgres_image: str, files: tuple[Path, Path]
) -> None:
    schema, seed = files
    server = sticky_server("postgres", postgres_image, fresh_prefix, schema=str(schema))
    with server:
        seeded = server.snapshot(str(seed), key="forty-nine")
        with seeded.database():
            described = status(cli)
            (template,) = described["templates"]
            assert (template["name"], template["kind"]) == (server.template, "template")
            (listed,) = template["snapshots"]
            assert listed["name"] == seeded.name
            assert (listed["kind"], listed["parent"], listed["key"]) == (
                "snapshot",
                server.template,
                "forty-nine",
            )
            assert "seed.sql" in listed["seed"]
            assert listed["in_use"] is True and listed["stale"] is False
            assert listed["size_bytes"] > 0
            assert listed["copies"] >= 1  # the copy held here, and the pool's
            text = cli("status").stdout
            assert f"└ {seeded.name}" in text
            assert text.index(server.template) < text.index(seeded.name)
            assert "key 'forty-nine'" in text

            # By key: the seeded rows, in a copy made for the shell and dropped after it.
            shell = cli("shell", "--snapshot", "forty-nine", input=COUNT)
            assert "50" in shell.stdout
            assert "fresh copy" in shell.stderr and seeded.name in shell.stderr
            copy = shell.stderr.split("a shell on ", 1)[1].split(",", 1)[0]
            parsed = naming.parse_database_name(fresh_prefix, copy)
            assert parsed is not None and parsed.kind == "copy"
            assert copy not in databases(cli)

            # A write in the shell's copy never reaches the snapshot (by name prefix).
            cli("shell", "--snapshot", seeded.name[:-4], input="DELETE FROM things;\n" + COUNT)
            with seeded.database() as db, db.engine().connect() as conn:
                assert conn.exec_driver_sql(COUNT).scalar() == 50

            sealed = cli("shell", "--database", seeded.name, input=COUNT, check=False)
            assert sealed.returncode == 1 and "--snapshot" in sealed.stderr
            missing = cli("shell", "--snapshot", "no-such-key", input=COUNT, check=False)
            assert missing.returncode == 1
            assert "no snapshot named 'no-such-key'" in missing.stderr
            assert seeded.name in missing.stderr  # the snapshots there are
    cli("down")


def test_prune_drops_a_snapshot_whose_parent_is_gone_but_never_one_in_use(
    cli: Cli, fresh_prefix: str, postgres_image: str, files: tuple[Path, Path]
) -> None:
    schema, seed = files
    # No pool for the template: nothing clones it after it is dropped below.
    server = sticky_server(
        "postgres", postgres_image, fresh_prefix, schema=str(schema), pool_size=0
    )
    with server:
        seeded = server.snapshot(str(seed))
        parent = server.template
        assert parent is not None
        # The parent goes from under it (by hand, or by an older freshdb's retention).
        admin = server.dialect.connect(server.address)
        try:
            server.dialect.drop_database(admin, parent)
        finally:
            admin.close()
        assert removed(cli) == []  # in use: kept
        (orphan,) = status(cli)["templates"]
        assert (orphan["name"], orphan["parent"]) == (seeded.name, parent)
        assert "not listed: gone or busy" in cli("status").stdout
    assert removed(cli, FRESHDB_TEMPLATE_RETENTION="7d") == [
        {
            "what": "snapshot",
            "name": seeded.name,
            "server": status(cli)["name"],
            "reason": f"snapshot of {parent}, which is gone",
        }
    ]
    assert seeded.name not in databases(cli)
    cli("down")


def test_an_unused_snapshot_goes_after_the_retention_but_not_while_in_use(
    cli: Cli, fresh_prefix: str, postgres_image: str, files: tuple[Path, Path]
) -> None:
    schema, seed = files
    short = {"FRESHDB_TEMPLATE_RETENTION": "1s"}
    server = sticky_server("postgres", postgres_image, fresh_prefix, schema=str(schema))
    with server:
        seeded = server.snapshot(str(seed))
        time.sleep(1.5)  # past the 1 s retention: only its use keeps it
        assert removed(cli, **short) == []
        (template,) = status(cli, **short)["templates"]
        assert template["snapshots"][0]["in_use"] is True
    (gone,) = removed(cli, **short)
    assert (gone["what"], gone["name"]) == ("snapshot", seeded.name)
    assert gone["reason"].startswith("not used within")
    present = databases(cli)
    assert seeded.name not in present
    assert server.template in present  # the only template: within keep_templates
    cli("down")


def test_a_snapshot_goes_with_its_superseded_template_at_the_next_start(
    cli: Cli, fresh_prefix: str, postgres_image: str, files: tuple[Path, Path]
) -> None:
    schema, seed = files
    with sticky_server(
        "postgres", postgres_image, fresh_prefix, schema=str(schema), keep_templates=1
    ) as first:
        old_snapshot = first.snapshot(str(seed))
        old_template = first.template
    # The project edits its schema: its old template is superseded, and goes with
    # its snapshot when the next session starts (three template-shaped databases,
    # one kept).
    schema.write_text(schema.read_text() + "CREATE TABLE more_things (id int);\n")
    with sticky_server(
        "postgres", postgres_image, fresh_prefix, schema=str(schema), keep_templates=1
    ) as second:
        present = databases(cli)
        assert second.template in present
        assert old_template not in present
        assert old_snapshot.name not in present
    cli("down")


def seed_things(connection: sqlalchemy.Connection) -> None:
    """The MySQL-family seed: rows 2 to 50, as a factory would insert them."""
    connection.execute(
        sqlalchemy.text("INSERT INTO things VALUES (:id, 'seeded')"),
        [{"id": n} for n in range(2, 51)],
    )


def test_the_mysql_family_lists_opens_and_prunes_snapshots_too(
    cli: Cli, fresh_prefix: str, mysql_family: Any, tmp_path: Path
) -> None:
    engine, image = mysql_family.engine, mysql_family.image
    env = {
        "FRESHDB_ENGINE": engine,
        f"FRESHDB_{engine.upper()}_IMAGE": image,
        "FRESHDB_TEMPLATE_RETENTION": "1s",
    }
    schema = tmp_path / "schema.sql"
    schema.write_text(
        f"-- {tmp_path.name}\n"
        "CREATE TABLE things (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL);\n"
        "INSERT INTO things VALUES (1, 'from the template');\n"
    )
    with sticky_server(engine, image, fresh_prefix, schema=str(schema)) as server:
        seeded = server.snapshot(seed_things, key="things")
        (template,) = status(cli, **env)["templates"]
        (listed,) = template["snapshots"]
        assert (listed["name"], listed["key"], listed["in_use"]) == (seeded.name, "things", True)
        # MySQL's "template" takes connections, but a write there would reach every
        # later copy: the shell gets a copy of its own here too.
        shell = cli("shell", "--snapshot", "things", input=COUNT, env=env)
        assert "50" in shell.stdout.split()
        copy = shell.stderr.split("a shell on ", 1)[1].split(",", 1)[0]
        assert copy != seeded.name and copy not in databases(cli, **env)
        time.sleep(1.5)  # past the 1 s retention: only its use keeps it
        assert removed(cli, **env) == []
    (gone,) = removed(cli, **env)
    assert (gone["what"], gone["name"]) == ("snapshot", seeded.name)
    assert seeded.name not in databases(cli, **env)
    cli("down", env=env)


CRASHING_BUILDER = """
import sys, time
import freshdb


def slow_seed(connection):
    print("seeding", flush=True)
    time.sleep(600)


server = freshdb.DatabaseServer(
    {engine!r}, image={image!r}, mode="sticky", prefix={prefix!r}, schema={schema!r},
    pool_size=0,
)
server.start()
print(server.template, flush=True)
server.snapshot(slow_seed)
"""


def start_crashing_builder(
    tmp_path: Path, engine: str, image: str, prefix: str, schema: Path
) -> tuple[subprocess.Popen[str], str]:
    """A process seeding a snapshot that never finishes: it and its template's name."""
    script = tmp_path / "builder.py"
    script.write_text(
        textwrap.dedent(CRASHING_BUILDER).format(
            engine=engine, image=image, prefix=prefix, schema=str(schema)
        )
    )
    builder = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    assert builder.stdout is not None
    template = builder.stdout.readline().strip()
    assert builder.stdout.readline().strip() == "seeding"
    return builder, template


def kill(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def test_prune_reaps_the_build_of_a_snapshot_builder_killed_mid_seed(
    cli: Cli, fresh_prefix: str, postgres_image: str, files: tuple[Path, Path], tmp_path: Path
) -> None:
    schema, _ = files
    builder, _ = start_crashing_builder(tmp_path, "postgres", postgres_image, fresh_prefix, schema)
    try:
        builds = {
            name
            for name in databases(cli)
            if (parsed := naming.parse_database_name(fresh_prefix, name)) and parsed.kind == "build"
        }
        assert len(builds) == 1
    finally:
        kill(builder)
    (build,) = builds
    reaped = [r for r in removed(cli) if r["name"] == build]
    assert reaped and reaped[0]["what"] == "build"
    assert build not in databases(cli)
    described = status(cli)
    assert all(not t["snapshots"] for t in described["templates"])  # nothing complete
    cli("down")


def test_prune_drops_a_mysql_snapshot_left_incomplete_by_a_killed_builder(
    cli: Cli, fresh_prefix: str, mysql_family: Any, tmp_path: Path
) -> None:
    engine, image = mysql_family.engine, mysql_family.image
    env = {"FRESHDB_ENGINE": engine, f"FRESHDB_{engine.upper()}_IMAGE": image}
    schema = tmp_path / "schema.sql"
    schema.write_text(f"-- {tmp_path.name}\nCREATE TABLE things (id INT PRIMARY KEY);\n")
    builder, template = start_crashing_builder(tmp_path, engine, image, fresh_prefix, schema)

    def templates() -> set[str]:
        return {
            name
            for name in databases(cli, **env)
            if (parsed := naming.parse_database_name(fresh_prefix, name))
            and parsed.kind == "template"
        }

    try:
        # MySQL builds in place, under the final name, complete only with its marker.
        (leftover,) = templates() - {template}
    finally:
        kill(builder)
    (listed,) = status(cli, **env)["templates"]  # the incomplete one is never listed
    assert (listed["name"], listed["snapshots"]) == (template, [])
    assert [r for r in removed(cli, **env) if r["name"] == leftover] == [
        {
            "what": "build",
            "name": leftover,
            "server": status(cli, **env)["name"],
            "reason": "left incomplete by a builder that died",
        }
    ]
    assert templates() == {template}
    assert leftover not in databases(cli, **env)
    cli("down", env=env)
