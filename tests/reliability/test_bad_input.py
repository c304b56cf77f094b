"""Bad input: each mistake is a FreshDBError whose message says what to do, and
nothing half-made is left behind marked usable (no container, no template)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import freshdb
from freshdb.errors import (
    ConfigurationError,
    ImageError,
    MigrationError,
    ServerUnavailableError,
    UnsupportedServerError,
)

from .conftest import NEVER_HANGS, Admin, Engine, containers_named, new_prefix

pytestmark = pytest.mark.docker

# (what is wrong, how the server is made, the error, words the message must hold)
NO_SERVER_CASES: list[tuple[str, dict[str, Any], dict[str, str], type[Exception], list[str]]] = [
    (
        "unknown engine",
        {"engine": "sqlite"},
        {},
        ConfigurationError,
        ["unknown engine 'sqlite'", "'postgres', 'mysql' and 'mariadb'"],
    ),
    (
        "unknown engine from the environment",
        {},
        {"FRESHDB_ENGINE": "oracle"},
        ConfigurationError,
        ["unknown engine 'oracle'"],
    ),
    (
        "malformed URL (its password is not repeated)",
        {"url": "postgresql//postgres:secret@localhost:5432/postgres"},
        {},
        ConfigurationError,
        ["malformed server URL", "expected e.g. postgresql://USER:PASSWORD@HOST:5432"],
    ),
    (
        "URL without a host",
        {"url": "postgresql://postgres:secret@/postgres"},
        {},
        ConfigurationError,
        ["names no host"],
    ),
    (
        "URL of an engine not served",
        {"url": "sqlite:///tests.db"},
        {},
        ConfigurationError,
        ["use postgresql://, mysql:// or mariadb://"],
    ),
    (
        "prefix with a double quote",
        {"prefix": 'my"db'},
        {},
        ConfigurationError,
        ["is not usable in database and container names", "1-16 lowercase letters"],
    ),
    (
        "prefix with a space",
        {"prefix": "my db"},
        {},
        ConfigurationError,
        ["1-16 lowercase letters and digits"],
    ),
    (
        "prefix with SQL in it",
        {"prefix": "x'; DROP DATABASE postgres; --"},
        {},
        ConfigurationError,
        ["1-16 lowercase letters and digits"],
    ),
    (
        "prefix with quotes from the environment",
        {},
        {"FRESHDB_PREFIX": "'quoted'"},
        ConfigurationError,
        ["1-16 lowercase letters and digits"],
    ),
    (
        "pool size out of range",
        {"pool_size": -1},
        {},
        ConfigurationError,
        ["pool_size must be between 0 and 64"],
    ),
    (
        "tmpfs size that is not a size",
        {"tmpfs_size": "lots"},
        {},
        ConfigurationError,
        ["use e.g. '512m' or '2g'"],
    ),
    (
        "schema path that does not exist",
        {"schema": "migrations/does-not-exist.sql"},
        {},
        ConfigurationError,
        ["does not exist", "fix the path"],
    ),
    (
        "schema that is neither a path nor an import path",
        {"schema": "migrations/missing-directory"},
        {},
        ConfigurationError,
        ["neither an existing .sql file or directory", "import path"],
    ),
    (
        "image that does not exist",
        {"image": "freshdb-local/does-not-exist:1"},
        {},
        ImageError,
        ["cannot pull image freshdb-local/does-not-exist:1", "set FRESHDB_IMAGE"],
    ),
    (
        "external server that is not there",
        {"url": "postgresql://postgres:secret@127.0.0.1:9/postgres", "startup_timeout": 1},
        {},
        ServerUnavailableError,
        ["cannot reach the Postgres server", "is it running?"],
    ),
]


@pytest.mark.parametrize(
    ("arguments", "environment", "error", "words"),
    [case[1:] for case in NO_SERVER_CASES],
    ids=[case[0] for case in NO_SERVER_CASES],
)
def test_a_mistake_is_explained_and_nothing_is_started(
    arguments: dict[str, Any],
    environment: dict[str, str],
    error: type[Exception],
    words: list[str],
    postgres: Engine,
    docker_client: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)  # relative schema paths resolve here
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    prefix = new_prefix()
    settings: dict[str, Any] = {"image": postgres.image, "prefix": prefix}
    if "url" not in arguments:
        settings["mode"] = "sticky"  # an explicit mode would win over the URL
    for name in environment:  # an argument would win over the environment
        settings.pop(name.removeprefix("FRESHDB_").lower(), None)
    settings.update(arguments)
    engine = settings.pop("engine", None)
    with pytest.raises(error) as raised:
        freshdb.DatabaseServer(engine, **settings).start()
    assert isinstance(raised.value, freshdb.FreshDBError)
    for text in words:
        assert text in str(raised.value)
    assert "secret" not in str(raised.value)  # a URL's password is never repeated
    assert containers_named(docker_client, prefix) == []


@pytest.mark.parametrize("by", ["name", "id"])
@pytest.mark.parametrize("mode", ["sticky", "throwaway"])
def test_an_image_that_is_not_the_engine_s_server_leaves_no_container(
    mode: str, by: str, mariadb_image: str, docker_client: Any
) -> None:
    prefix = new_prefix()
    # By name the image says what it runs; by id only its metadata (the port) can.
    image = mariadb_image if by == "name" else str(docker_client.images.get(mariadb_image).id)
    server = freshdb.DatabaseServer(
        "postgres", image=image, mode=mode, prefix=prefix, startup_timeout=NEVER_HANGS
    )
    with pytest.raises(UnsupportedServerError) as raised:
        server.start()
    message = str(raised.value)
    assert "Postgres 13 or newer" in message  # what is supported
    assert "FRESHDB_POSTGRES_IMAGE" in message  # what to do
    # Refused before it started: no container was made.
    assert containers_named(docker_client, prefix) == []


@pytest.fixture(scope="module")
def running() -> Iterator[dict[str, freshdb.DatabaseServer]]:
    """One server per engine for this module (own prefix: its databases are ours)."""
    started: dict[str, freshdb.DatabaseServer] = {}
    yield started
    for server in started.values():
        server.stop()


@pytest.fixture
def server(engine: Engine, running: dict[str, freshdb.DatabaseServer]) -> freshdb.DatabaseServer:
    """This engine's server for the module, started on first use."""
    if engine.name not in running:
        running[engine.name] = engine.server(new_prefix(), pool_size=0).start()
    return running[engine.name]


def test_a_wrong_password_for_an_external_server(
    engine: Engine, server: freshdb.DatabaseServer
) -> None:
    prefix = new_prefix()
    url = server.url.set(password="not-the-password").render_as_string(hide_password=False)
    with pytest.raises(ConfigurationError) as raised:
        freshdb.DatabaseServer(engine.name, url=url, prefix=prefix).start()
    message = str(raised.value)
    assert "check the user and password in FRESHDB_URL / url=" in message
    assert "not-the-password" not in message
    with Admin.of(server) as admin:
        assert admin.databases(prefix) == []


def test_a_migration_with_a_syntax_error(
    engine: Engine, server: freshdb.DatabaseServer, tmp_path: Path, docker_client: Any
) -> None:
    prefix = server.settings.prefix
    schema = tmp_path / "schema.sql"
    schema.write_text("CREATE TABLE fine (id INT PRIMARY KEY);\nCREAT TABLE broken (id INT);\n")
    with Admin.of(server) as admin:
        before = {p.name for p in admin.databases(prefix)}
        with pytest.raises(MigrationError) as raised:
            engine.server(prefix, schema=schema, pool_size=1).start()
        message = str(raised.value)
        assert "statement 2 (line 2) failed" in message
        assert "CREAT TABLE broken (id INT)" in message
        assert "Fix the migration; no template was marked complete" in message
        # Nothing new: no template, no half-built one (not even without its marker).
        assert {p.name for p in admin.databases(prefix)} == before
        # Fixed, the next session builds it.
        schema.write_text("CREATE TABLE fine (id INT PRIMARY KEY);\n")
        with engine.server(prefix, schema=schema, pool_size=1) as fixed:
            assert fixed.stats()["template_reused"] is False
            with fixed.database() as db, db.engine().connect() as conn:
                assert conn.exec_driver_sql("SELECT count(*) FROM fine").scalar() == 0
    assert server.running is not None
    assert docker_client.containers.get(server.running.container_id).status == "running"
