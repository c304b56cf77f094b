"""The ``freshdb`` command, driven in subprocesses against real containers."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import docker.errors
import pytest
import sqlalchemy

import freshdb
from freshdb import naming

from .conftest import Cli

pytestmark = [pytest.mark.docker, pytest.mark.server]


def status(cli: Cli, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    return dict(json.loads(cli("status", "--json", *args, env=env).stdout))


def databases(admin_url: str) -> set[str]:
    engine = sqlalchemy.create_engine(admin_url)
    try:
        with engine.connect() as conn:
            return set(conn.exec_driver_sql("SELECT datname FROM pg_database").scalars())
    finally:
        engine.dispose()


def create_databases(admin_url: str, *names: str) -> None:
    engine = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for name in names:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        engine.dispose()


@pytest.mark.compat
def test_up_status_url_shell_down(cli: Cli, fresh_prefix: str, docker_client: Any) -> None:
    up = cli("up")
    admin_url = up.stdout.strip()
    assert admin_url.startswith("postgresql+psycopg://postgres:")
    assert "started" in up.stderr
    assert "reused" in cli("up").stderr
    assert databases(admin_url) >= {"postgres"}

    servers = status(cli)["servers"]
    assert len(servers) == 1
    server = servers[0]
    assert server["name"].startswith(f"{fresh_prefix}-postgres-")
    assert (server["engine"], server["mode"], server["status"]) == ("postgres", "sticky", "running")
    assert str(server["port"]) in admin_url
    assert server["memory_bytes"] > 0
    assert server["uptime_seconds"] >= 0
    password = sqlalchemy.make_url(admin_url).password
    assert password and password not in json.dumps(server)  # status never shows secrets
    assert server["name"] in cli("status").stdout

    assert cli("url").stdout.strip() == admin_url
    one = cli("url", "--database", "somedb", "--plain").stdout.strip()
    assert one.startswith("postgresql://postgres:") and one.endswith("/somedb")

    # The client runs inside the container: nothing needed on this side.
    shell = cli("shell", input="SELECT 40 + 2 AS answer;\n")
    assert "42" in shell.stdout
    failed = cli("shell", "--database", "no_such_db", input="SELECT 1;\n", check=False)
    assert failed.returncode != 0
    assert "no_such_db" in failed.stderr

    down = cli("down")
    assert server["name"] in down.stdout
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(server["name"])
    assert status(cli)["servers"] == []
    gone = cli("url", check=False)
    assert gone.returncode == 1 and "freshdb up" in gone.stderr


def test_warm_builds_the_template_a_later_server_reuses(
    cli: Cli, fresh_prefix: str, postgres_image: str, tmp_path: Path
) -> None:
    schema = tmp_path / "schema.sql"
    schema.write_text("CREATE TABLE account (id serial PRIMARY KEY, email text NOT NULL);\n")
    warm = cli("warm", "--schema", str(schema))
    first_line = warm.stdout.strip()
    assert first_line.startswith(f"template {fresh_prefix}_t_") and " built " in first_line
    template = first_line.split()[1]
    assert "schema.sql" in first_line  # what ran: the migrator's description

    common = {"image": postgres_image, "mode": "sticky", "prefix": fresh_prefix}
    with freshdb.DatabaseServer("postgres", schema=str(schema), pool_size=1, **common) as server:
        assert server.stats()["template"] == template
        assert server.stats()["template_reused"] is True
        with server.database() as db:
            owner = naming.parse_database_name(fresh_prefix, db.name)
            assert owner is not None
            (described,) = status(cli)["servers"]
            (listed,) = described["templates"]
            assert listed["name"] == template and listed["in_use"] is True
            assert listed["stale"] is False and listed["size_bytes"] > 0
            # Each project that used it, with when: the CLI's (root: its working
            # directory) and this process's.
            assert f"{tmp_path.resolve()} :: SQL {schema}" in listed["projects"]
            assert len(listed["projects"]) == 2
            assert listed["last_used"] == max(listed["projects"].values())
            assert listed["last_used"] > listed["created"]
            copies = {c["name"]: c for c in described["copies"]}
            assert copies[db.name]["live"] is True
            assert copies[db.name]["owner"] == owner.owner
            assert copies[db.name]["leaked"] is False
    (after,) = status(cli)["servers"][0]["templates"]
    assert after["in_use"] is False
    text = cli("status").stdout
    assert "last used (UTC)" in text and template in text
    assert " reused " in cli("warm", "--schema", str(schema)).stdout
    cli("down")


LEAKER = """
import json, sys, time
import freshdb
server = freshdb.DatabaseServer(
    "postgres", image={image!r}, mode="sticky", prefix={prefix!r}, schema={schema!r}, pool_size=2
)
server.start()
kept = server.database()
kept.keep()
kept.release()
held = server.database()
while True:  # settle: nothing in flight when the process is killed
    stats = server.stats()
    if (stats["ready"], stats["creating"], stats["dropping"], stats["kept"]) == (2, 0, 0, 1):
        break
    time.sleep(0.02)
print(json.dumps({{"held": held.name}}), flush=True)
time.sleep(600)
"""

THROWAWAY = """
import json, time
import freshdb
server = freshdb.DatabaseServer(
    "postgres", image={image!r}, mode="throwaway", prefix={prefix!r}, pool_size=0
)
server.start()
print(json.dumps({{"container": server.running.container_name}}), flush=True)
time.sleep(600)
"""


def run_and_kill(code: str, cwd: Path | None = None) -> dict[str, Any]:
    """Run code until it prints its JSON line, then SIGKILL it (no cleanup can run)."""
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"subprocess failed:\n{process.communicate()[1]}")
        return dict(json.loads(line))
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


def test_prune_removes_exactly_the_leftovers(
    cli: Cli,
    fresh_prefix: str,
    postgres_image: str,
    docker_client: Any,
    tmp_path: Path,
) -> None:
    foreign = docker_client.containers.run(
        postgres_image,
        entrypoint=["sleep"],
        command=["600"],
        name=f"{fresh_prefix}-postgres-foreign",
        detach=True,
    )
    try:
        throwaway = run_and_kill(THROWAWAY.format(image=postgres_image, prefix=fresh_prefix))[
            "container"
        ]

        admin_url = cli("up").stdout.strip()
        # The project (here: its directory and schema file) changes its schema: the
        # old template is superseded.
        schema = tmp_path / "schema.sql"
        schema.write_text("CREATE TABLE old_table (id int);\n")
        old_template = cli("warm", "--schema", str(schema)).stdout.split()[1]
        schema.write_text("CREATE TABLE new_table (id int);\n")
        held = run_and_kill(
            LEAKER.format(image=postgres_image, prefix=fresh_prefix, schema=str(schema)),
            cwd=tmp_path,
        )["held"]
        owner = naming.parse_database_name(fresh_prefix, held)
        assert owner is not None
        foreign_databases = (
            "foreign_db",
            f"{fresh_prefix}_mine",
            f"{fresh_prefix}_c_0123456789ab_deadbeef",
        )
        create_databases(admin_url, *foreign_databases)

        # The killed session's connection closes with it; wait until the server knows.
        deadline = time.monotonic() + 60
        while True:
            copies = status(cli)["servers"]
            mine = [c for s in copies for c in s["copies"] if c["owner"] == owner.owner]
            if mine and not any(c["live"] for c in mine):
                break
            assert time.monotonic() < deadline, mine
            time.sleep(0.2)
        leaked = {c["name"] for c in mine if c["kind"] == "copy"}
        (kept,) = [c["name"] for c in mine if c["kind"] == "kept"]
        assert held in leaked and len(leaked) == 3  # the held one and two ready

        expected = {
            ("container", throwaway),
            ("template", old_template),
            *(("copy", name) for name in leaked),
        }
        keep_one = {"FRESHDB_KEEP_TEMPLATES": "1"}
        before = databases(admin_url)
        dry = json.loads(cli("prune", "--dry-run", "--json", env=keep_one).stdout)
        assert dry["dry_run"] is True
        assert {(r["what"], r["name"]) for r in dry["removed"]} == expected
        assert databases(admin_url) == before  # a dry run touches nothing
        docker_client.containers.get(throwaway)

        text = cli("prune", env=keep_one).stdout
        assert all(name in text for _, name in expected)
        after = databases(admin_url)
        assert not after & (leaked | {old_template})
        assert set(foreign_databases) | {kept} <= after
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(throwaway)
        foreign.reload()
        assert foreign.status == "running"

        assert json.loads(cli("prune", "--dry-run", "--json").stdout)["removed"] == []
        # Kept copies are kept on purpose: only an age limit removes them.
        assert json.loads(cli("prune", "--max-age", "24", "--json").stdout)["removed"] == []
        aged = json.loads(cli("prune", "--max-age", "0", "--json").stdout)["removed"]
        assert [(r["what"], r["name"]) for r in aged] == [("kept copy", kept)]
        assert set(foreign_databases) <= databases(admin_url)

        cli("down", "--all")
        assert not [
            c
            for c in docker_client.containers.list(all=True)
            if str(c.name).startswith(f"{fresh_prefix}-")
            and (c.labels or {}).get(naming.LABEL_MANAGED)
        ]
        foreign.reload()
        assert foreign.status == "running"
    finally:
        foreign.remove(force=True)


def test_failures_exit_1_with_a_one_line_reason(cli: Cli) -> None:
    cases = [
        (("status",), {"DOCKER_HOST": "tcp://127.0.0.1:9"}, "Docker engine not reachable"),
        (("url", "--url", "nonsense"), {}, "malformed server URL"),
        (("status", "--engine", "sqlite"), {}, "unknown engine 'sqlite'"),
        (("up", "--mode", "throwaway"), {}, "--mode sticky"),
    ]
    for args, env, reason in cases:
        result = cli(*args, env=env, check=False)
        assert result.returncode == 1, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and reason in lines[0], (args, result.stderr)
        assert result.stdout == ""


def test_usage_errors_exit_2(cli: Cli) -> None:
    for args in (("frobnicate",), ("prune", "--max-age", "soon"), ()):
        result = cli(*args, check=False)
        assert result.returncode == 2, (args, result.stderr)
        assert "usage:" in result.stderr
