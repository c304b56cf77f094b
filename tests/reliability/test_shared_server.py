"""One sticky server, many projects: nothing another project does ends a live session.

Project A holds a copy mid-transaction (an open connection, an uncommitted insert).
Project B, a separate process with the same engine, image name and prefix, starts
with other settings, or runs ``freshdb prune`` / ``freshdb down``. Afterwards A's
transaction commits and A still gets new copies.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest
import sqlalchemy as sa

import freshdb
from freshdb import naming
from freshdb.backends.docker import DockerBackend
from freshdb.cleanup.retirement import server_use
from freshdb.dialects import dialect_for

from .conftest import NEVER_HANGS, Program, new_prefix

pytestmark = pytest.mark.docker

#: Project B: start a sticky server with some settings, use a copy, report its container.
PROJECT_B = """
import json, sys
import freshdb
params = json.loads(sys.argv[1])
with freshdb.DatabaseServer(params.pop("engine"), **params) as server:
    with server.database() as db, db.engine().connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    print(json.dumps({"container": server.running.container_name}), flush=True)
"""


class LiveSession:
    """Project A: a sticky server with a copy held mid-transaction."""

    def __init__(self, engine: str, image: str, prefix: str, **settings: Any) -> None:
        self.server = freshdb.DatabaseServer(
            engine, image=image, mode="sticky", prefix=prefix, pool_size=1, **settings
        )
        self.server.start()
        self._copy = self.server.database()
        self._engine = self._copy.engine()
        with self._engine.begin() as setup:  # MySQL DDL commits: create the table first
            setup.exec_driver_sql("CREATE TABLE notes (body varchar(40))")
        self.conn = self._engine.connect()
        self.transaction = self.conn.begin()
        self.conn.exec_driver_sql("INSERT INTO notes VALUES ('written before B')")
        assert self.server.running is not None
        self.container = str(self.server.running.container_name)

    def survives(self) -> None:
        """A's transaction commits, its rows are there, and A gets a new copy."""
        self.conn.exec_driver_sql("INSERT INTO notes VALUES ('written after B')")
        self.transaction.commit()
        rows = self.conn.exec_driver_sql("SELECT body FROM notes ORDER BY body").scalars().all()
        assert rows == ["written after B", "written before B"]
        with self.server.database() as db, db.engine().connect() as fresh:
            assert fresh.exec_driver_sql("SELECT 1").scalar() == 1

    def close(self) -> None:
        """Let go of the copy and the server (a sticky server keeps running)."""
        with contextlib.suppress(Exception):
            self.conn.close()
        with contextlib.suppress(Exception):
            self._copy.release()
        self.server.stop()


@contextlib.contextmanager
def live_session(engine: str, image: str, prefix: str, **settings: Any) -> Iterator[LiveSession]:
    session = LiveSession(engine, image, prefix, **settings)
    try:
        yield session
    finally:
        session.close()


def project_b(engine: str, image: str, prefix: str, **settings: Any) -> str:
    """Start project B in its own process; the name of the container it used."""
    params = {"engine": engine, "image": image, "mode": "sticky", "prefix": prefix, "pool_size": 1}
    program = Program(PROJECT_B, {**params, **settings})
    report = program.report()
    assert program.process.wait(NEVER_HANGS) == 0
    return str(report["container"])


def cli(prefix: str, image: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``freshdb ARGS`` in its own process, with this prefix and image."""
    # A developer's FRESHDB_* settings (an engine's image above all) must not steer it.
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FRESHDB_")}
    environment.update(
        CI="", FRESHDB_PREFIX=prefix, FRESHDB_MODE="sticky", FRESHDB_IMAGE=image, **env
    )
    return subprocess.run(
        [sys.executable, "-m", "freshdb", *args],
        capture_output=True,
        text=True,
        timeout=NEVER_HANGS * 3,
        env=environment,
        cwd=Path(__file__).parent,
    )


def backend(engine: str, image: str, prefix: str) -> DockerBackend:
    settings = freshdb.resolve_settings(
        {"engine": engine, "image": image, "mode": "sticky", "prefix": prefix}, pyproject=False
    )
    return DockerBackend(settings, dialect_for(engine))


def backdate_last_start(engine: str, image: str, prefix: str, name: str) -> None:
    """Make the last start that asked for ``name`` an hour old (past the start grace)."""
    record = backend(engine, image, prefix).usage_record(name)
    an_hour_ago = time.time() - 3600
    os.utime(record, (an_hour_ago, an_hour_ago))


def wait_until_idle(docker_client: Any, engine: str, image: str, prefix: str, name: str) -> None:
    """Wait until a stopped session's connections have left the server."""
    look = backend(engine, image, prefix)
    container = docker_client.containers.get(name)
    deadline = time.monotonic() + NEVER_HANGS
    while True:
        use = server_use(look, container)
        if use is not None and use.idle:
            return
        assert time.monotonic() < deadline, f"{name} still in use: {use}"
        time.sleep(0.1)


@contextlib.contextmanager
def rebuildable_image(docker_client: Any, base_image: str, prefix: str) -> Iterator[str]:
    """A test-only image name (with the run's prefix) tagged on ``base_image``.

    Removes the containers of ``prefix``, then every image it made, at the end.
    """
    name = f"freshdb-test-{prefix}/server:1"
    docker_client.images.get(base_image).tag(name)
    try:
        yield name
    finally:
        for container in docker_client.containers.list(
            all=True, filters={"label": [f"{naming.LABEL_PREFIX_NAME}={prefix}"]}
        ):
            container.remove(force=True, v=True)
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(name)
        for image_id in made_images(docker_client, prefix):
            with contextlib.suppress(docker.errors.ImageNotFound):
                docker_client.images.remove(image_id, force=True)


def rebuild_under_the_same_name(docker_client: Any, name: str, prefix: str) -> str:
    """Build a trivial new image under ``name`` (as a pull would): its new id."""
    dockerfile = f"FROM {name}\nLABEL io.freshdb.test-rebuild={prefix}-{secrets.token_hex(4)}\n"
    image, _ = docker_client.images.build(
        fileobj=io.BytesIO(dockerfile.encode()), tag=name, pull=False, rm=True
    )
    return str(image.id)


def made_images(docker_client: Any, prefix: str) -> list[str]:
    """Images this test built (by their label)."""
    return [
        str(image.id)
        for image in docker_client.images.list(all=True)
        if str((image.labels or {}).get("io.freshdb.test-rebuild", "")).startswith(prefix + "-")
    ]


# -- B starts with other settings: A survives ------------------------------------------
@pytest.mark.parametrize(
    "other",
    [{"tmpfs_size": "1g"}, {"max_connections": 120}],
    ids=["tmpfs_size", "max_connections"],
)
def test_a_live_session_survives_another_project_with_other_settings(
    docker_client: Any, postgres_image: str, other: dict[str, Any]
) -> None:
    prefix = new_prefix()
    with live_session("postgres", postgres_image, prefix) as a:
        used_by_b = project_b("postgres", postgres_image, prefix, **other)
        assert used_by_b != a.container  # B got a container of its own shape
        assert docker_client.containers.get(a.container).status == "running"
        a.survives()
        # Settings that do not shape the container share it.
        assert project_b("postgres", postgres_image, prefix, pool_size=2) == a.container


def test_a_live_session_survives_a_rebuilt_image_under_the_same_name(
    docker_client: Any, postgres_image: str
) -> None:
    prefix = new_prefix()
    with (
        rebuildable_image(docker_client, postgres_image, prefix) as image,
        live_session("postgres", image, prefix) as a,
    ):
        rebuild_under_the_same_name(docker_client, image, prefix)
        # Past the start grace: only A's live session keeps B from retiring it.
        backdate_last_start("postgres", image, prefix, a.container)
        used_by_b = project_b("postgres", image, prefix)
        assert used_by_b != a.container
        assert docker_client.containers.get(a.container).status == "running"
        a.survives()
        status = cli(prefix, image, "status", "--json")
        assert status.returncode == 0, status.stderr
        servers = {s["name"]: s for s in json.loads(status.stdout)["servers"]}
        assert servers[a.container]["retire_reason"].startswith("superseded")
        assert servers[a.container]["use"].startswith("in use")
        assert servers[a.container]["sessions"] >= 1
        assert servers[used_by_b]["retire_reason"] is None


def test_a_live_session_survives_prune_of_its_unwanted_container(
    docker_client: Any, postgres_image: str
) -> None:
    prefix = new_prefix()
    with live_session("postgres", postgres_image, prefix, tmpfs_size="1g") as a:
        backdate_last_start("postgres", postgres_image, prefix, a.container)
        # With --max-age 0, A's container (another shape than the CLI's) is unwanted.
        dry = cli(prefix, postgres_image, "prune", "--max-age", "0", "--dry-run", "--json")
        assert dry.returncode == 0, dry.stderr
        assert json.loads(dry.stdout)["removed"] == []
        pruned = cli(prefix, postgres_image, "prune", "--max-age", "0")
        assert pruned.returncode == 0, pruned.stderr
        assert f"keeping {a.container}" in pruned.stderr and "in use" in pruned.stderr
        a.survives()
    wait_until_idle(docker_client, "postgres", postgres_image, prefix, a.container)
    pruned = cli(prefix, postgres_image, "prune", "--max-age", "0", "--json")
    assert pruned.returncode == 0, pruned.stderr
    removed = json.loads(pruned.stdout)["removed"]
    assert [(r["what"], r["name"]) for r in removed] == [("container", a.container)]
    assert removed[0]["reason"].startswith("unused")
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(a.container)


def test_down_refuses_while_a_session_lives_and_removes_once_idle(
    docker_client: Any, postgres_image: str
) -> None:
    prefix = new_prefix()
    with live_session("postgres", postgres_image, prefix) as a:
        down = cli(prefix, postgres_image, "down", "--wait", "1")
        assert down.returncode == 1
        assert a.container in down.stderr and "in use" in down.stderr
        assert "--force" in down.stderr
        every = cli(prefix, postgres_image, "down", "--all", "--wait", "0")
        assert every.returncode == 1 and a.container in every.stderr
        assert docker_client.containers.get(a.container).status == "running"
        a.survives()
    # Its sessions gone, `down` removes it (waiting out the last connections' exit).
    down = cli(prefix, postgres_image, "down")
    assert down.returncode == 0, down.stderr
    assert f"removed {a.container}" in down.stdout
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(a.container)


def test_down_force_removes_a_busy_server(docker_client: Any, postgres_image: str) -> None:
    prefix = new_prefix()
    with live_session("postgres", postgres_image, prefix) as a:
        down = cli(prefix, postgres_image, "down", "--force")
        assert down.returncode == 0, down.stderr
        assert f"removed {a.container} (forced)" in down.stdout
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(a.container)
        with pytest.raises(sa.exc.OperationalError):
            a.conn.exec_driver_sql("SELECT 1")


def test_mariadb_live_session_survives_another_tmpfs_size(
    docker_client: Any, mariadb_image: str
) -> None:
    prefix = new_prefix()
    with live_session("mariadb", mariadb_image, prefix) as a:
        used_by_b = project_b("mariadb", mariadb_image, prefix, tmpfs_size="1g")
        assert used_by_b != a.container
        prune = cli(prefix, mariadb_image, "prune", "--max-age", "0", FRESHDB_ENGINE="mariadb")
        assert prune.returncode == 0, prune.stderr
        down = cli(prefix, mariadb_image, "down", "--wait", "1", FRESHDB_ENGINE="mariadb")
        assert down.returncode == 1 and "in use" in down.stderr
        assert docker_client.containers.get(a.container).status == "running"
        a.survives()
    # The server's own threads are no users: once A is gone, `down` removes it.
    down = cli(prefix, mariadb_image, "down", FRESHDB_ENGINE="mariadb")
    assert down.returncode == 0, down.stderr
    assert f"removed {a.container}" in down.stdout


# -- what may be touched: stopped and idle superseded containers ---------------------------
def test_a_stopped_sticky_container_is_restarted(docker_client: Any, postgres_image: str) -> None:
    prefix = new_prefix()
    with freshdb.DatabaseServer(
        "postgres", image=postgres_image, mode="sticky", prefix=prefix, pool_size=1
    ) as server:
        assert server.running is not None
        container_id = server.running.container_id
    docker_client.containers.get(container_id).stop(timeout=5)
    with freshdb.DatabaseServer(
        "postgres", image=postgres_image, mode="sticky", prefix=prefix, pool_size=1
    ) as server:
        assert server.running is not None
        assert server.running.container_id == container_id
        assert server.stats()["template_reused"] is False  # the tmpfs started empty
        with server.database() as db, db.engine().connect() as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    assert docker_client.containers.get(container_id).status == "running"


def test_idle_superseded_containers_are_retired_by_prune_and_by_a_later_start(
    docker_client: Any, postgres_image: str
) -> None:
    prefix = new_prefix()
    with rebuildable_image(docker_client, postgres_image, prefix) as image:
        first = project_b("postgres", image, prefix)
        rebuild_under_the_same_name(docker_client, image, prefix)
        wait_until_idle(docker_client, "postgres", image, prefix, first)
        backdate_last_start("postgres", image, prefix, first)
        status = cli(prefix, image, "status")
        assert status.returncode == 0, status.stderr
        assert "no longer wanted (superseded" in status.stdout
        pruned = cli(prefix, image, "prune", "--json")
        assert pruned.returncode == 0, pruned.stderr
        removed = json.loads(pruned.stdout)["removed"]
        assert [(r["what"], r["name"]) for r in removed] == [("container", first)]
        assert removed[0]["reason"].startswith("superseded")
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(first)

        # The same at a start: the start that supersedes an idle container retires it.
        second = project_b("postgres", image, prefix)
        rebuild_under_the_same_name(docker_client, image, prefix)
        wait_until_idle(docker_client, "postgres", image, prefix, second)
        backdate_last_start("postgres", image, prefix, second)
        third = project_b("postgres", image, prefix)
        assert third not in (first, second)
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(second)
        assert docker_client.containers.get(third).status == "running"
