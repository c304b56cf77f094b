"""Safety: freshdb stops, removes, drops and prunes only what bears its own labels and
name prefix; builds no SQL from unchecked names; listens on loopback; never shows a
server's password."""

from __future__ import annotations

import json
import logging
import secrets
import socket
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from freshdb import naming
from freshdb.errors import MigrationError
from freshdb.migrators import CallableMigrator

from .conftest import Admin, Engine, Program, freshdb_cli, new_prefix

pytestmark = [pytest.mark.docker, pytest.mark.server]

# A session that leaves copies behind for reaping: killed, so no cleanup runs.
LEAKER = """
import json, sys, time
P = json.loads(sys.argv[1])
import freshdb
from freshdb import naming
from freshdb.migrators import CallableMigrator

def one_table(connection):
    connection.exec_driver_sql("CREATE TABLE items (id INT)")

server = freshdb.DatabaseServer(
    P["engine"], image=P["image"], mode="sticky", prefix=P["prefix"], pool_size=2,
    schema=CallableMigrator(one_table, key=P["key"]),
)
server.start()
held = server.database()
while server.stats()["ready"] < 2:
    time.sleep(0.01)
print(json.dumps({"owner": naming.parse_database_name(P["prefix"], held.name).owner}), flush=True)
time.sleep(600)
"""


def one_table(connection: Any) -> None:
    """A schema of one table."""
    connection.exec_driver_sql("CREATE TABLE items (id INT)")


def decoy_databases(prefix: str, other: str) -> list[str]:
    """Databases freshdb did not make, some of them shaped very much like its own."""
    fingerprint12, fingerprint20 = "0123456789ab", "0123456789abcdef0123"
    return [
        "decoy_app",
        f"{prefix}_mine",  # our prefix, a foreign shape
        f"{prefix}_c_nothex_zz",
        f"{prefix}_c_{fingerprint12}_deadbeef",  # a copy without its number
        f"{prefix}_t_0123",  # a template with a short fingerprint
        f"{prefix}_b_{fingerprint20}",  # a build without its owner
        f"{prefix}_c_{fingerprint12}_deadbeef_1 x",  # a copy's name, and more
        f'{prefix}_c_{fingerprint12}_deadbeef_1"',
        f"{prefix.upper()}_c_{fingerprint12}_deadbeef_1",  # another case
        f"{prefix}x_c_{fingerprint12}_deadbeef_1",  # a longer prefix
        f"{other}_c_{fingerprint12}_deadbeef_1",  # copy-shaped, another prefix
        f"{other}_b_{fingerprint20}_deadbeef",
        f"{other}_k_{fingerprint12}_deadbeef_1",
        f"{other}_t_{fingerprint20}",
    ]


def dead_pid() -> int:
    """The pid of a process that has ended."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def labels(prefix: str, mode: str) -> dict[str, str]:
    """freshdb's labels, as a container of ``prefix`` would bear them."""
    return {
        naming.LABEL_MANAGED: "true",
        naming.LABEL_PREFIX_NAME: prefix,
        naming.LABEL_MODE: mode,
        naming.LABEL_ENGINE: "postgres",
        naming.LABEL_OWNER_HOST: socket.gethostname(),
        naming.LABEL_OWNER_PID: str(dead_pid()),  # a leaked throwaway's look
        naming.LABEL_CREATED: "2000-01-01T00:00:00+00:00",
    }


@pytest.fixture
def decoy_containers(
    docker_client: Any, postgres_image: str, engine: Engine
) -> Iterator[tuple[str, str, list[Any]]]:
    """(our prefix, another prefix, containers freshdb must never touch)."""
    prefix, other = new_prefix(), new_prefix()
    tag = secrets.token_hex(3)
    specs: list[tuple[str, dict[str, str]]] = [
        (f"decoy-plain-{tag}", {}),  # no labels at all
        (f"{other}-{engine.name}-tmp-deadbeef", labels(other, "throwaway")),
        (f"{other}-{engine.name}-0123456789", labels(other, "sticky")),
        (f"{prefix}-{engine.name}-tmp-deadbeef", {}),  # our prefix in its name, no labels
        (f"{prefix}-{engine.name}-0123456789", {}),
        (f"decoy-throwaway-{tag}", labels(prefix, "throwaway")),  # our labels, not our name
        (f"decoy-sticky-{tag}", labels(prefix, "sticky")),
    ]
    containers = [
        docker_client.containers.run(
            postgres_image,
            entrypoint=["sleep"],
            command=["600"],
            name=name,
            labels=container_labels,
            detach=True,
        )
        for name, container_labels in specs
    ]
    yield prefix, other, containers
    for container in containers:
        container.remove(force=True)


def assert_all_there(containers: list[Any], admin: Admin | None, databases: list[str]) -> None:
    """Every decoy container still runs; every decoy database still exists."""
    for container in containers:
        container.reload()
        assert container.status == "running", container.name
    if admin is not None:
        missing = set(databases) - admin.all_databases()
        assert not missing


def test_decoys_survive_every_operation(
    engine: Engine,
    decoy_containers: tuple[str, str, list[Any]],
    programs: Callable[..., Program],
    docker_client: Any,
) -> None:
    prefix, other, containers = decoy_containers
    databases = decoy_databases(prefix, other)
    old = CallableMigrator(one_table, key=secrets.token_hex(4))
    new = CallableMigrator(one_table, key=secrets.token_hex(4))

    # start and stop (with copies made and dropped)
    with engine.server(prefix, schema=old, pool_size=2) as first, first.database():
        address, old_template = first.address, str(first.template)
    assert_all_there(containers, None, databases)

    with Admin(engine.name, address) as admin:
        for name in databases:
            admin.create_database(name)
        # A killed session leaves copies for the next start to reap.
        program = programs(
            LEAKER,
            {"engine": engine.name, "image": engine.image, "prefix": prefix, "key": old.key},
        )
        owner = program.report()["owner"]
        program.kill()
        admin.wait_until_gone(owner)
        leaked = {p.name for p in admin.databases(prefix) if p.owner == owner}
        assert len(leaked) == 3

        # start again: reaping, and pruning the old template (keep_templates=1; the
        # leaker's project, a script's function, used it last: retention 0 lets it go)
        with engine.server(
            prefix, schema=new, pool_size=2, keep_templates=1, template_retention="0"
        ) as second:
            assert set(second.stats()["reaped"]) == leaked  # those, and nothing else
            names = {p.name for p in admin.databases(prefix)}
            assert old_template not in names and not leaked & names
            with second.database() as db:
                db.keep()  # a kept copy, for `prune --max-age 0` to drop
        assert_all_there(containers, admin, databases)

        # a throwaway server: its start removes leaked throwaways (of this prefix only)
        with engine.server(prefix, mode="throwaway", pool_size=0):
            pass
        assert_all_there(containers, admin, databases)

        # the CLI's prune, as aggressive as it gets
        pruned = freshdb_cli(engine, prefix, "prune", "--max-age", "0", "--json").stdout
        removed = {r["name"] for r in json.loads(pruned)["removed"]}
        assert [p.kind for p in admin.databases(prefix)] == ["template"]  # kept copy gone
        assert not removed & set(databases)
        assert_all_there(containers, admin, databases)

    # the CLI's down --all: our sticky server goes, nothing else does
    freshdb_cli(engine, prefix, "down", "--all")
    ours = [
        c
        for c in docker_client.containers.list(all=True)
        if str(c.name).startswith(f"{prefix}-") and (c.labels or {}).get(naming.LABEL_MANAGED)
    ]
    assert ours == []
    assert_all_there(containers, None, databases)


UNSAFE_NAMES = [
    'victim"; DROP DATABASE decoy_victim; --',
    "victim`; DROP DATABASE decoy_victim; --",
    "decoy_victim' OR '1'='1",
    "Decoy_Victim",
    "decoy victim",
    "decoy_victim;",
    "x" * 64,
    "",
]


@pytest.fixture
def victim(engine: Engine, run_prefix: str) -> Iterator[Admin]:
    """An admin connection to this run's server, with a database to protect."""
    with engine.server(run_prefix, pool_size=0) as server, Admin.of(server) as admin:
        admin.drop_database("decoy_victim")
        admin.create_database("decoy_victim")
        yield admin
        admin.drop_database("decoy_victim")


@pytest.mark.parametrize("name", UNSAFE_NAMES)
def test_no_sql_is_built_from_an_unchecked_name(victim: Admin, name: str) -> None:
    dialect, conn = victim.dialect, victim.conn
    recipe = dialect.copy_recipe(conn, "decoy_victim")
    attempts: list[Callable[[], object]] = [
        lambda: dialect.create_database(conn, name),
        lambda: dialect.drop_database(conn, name),
        lambda: dialect.rename_database(conn, name, "decoy_renamed"),
        lambda: dialect.rename_database(conn, "decoy_victim", name),
        lambda: dialect.clone(conn, dialect.copy_recipe(conn, name), "decoy_clone"),
        lambda: dialect.clone(conn, recipe, name),
    ]
    for attempt in attempts:
        with pytest.raises(ValueError, match="refusing unsafe database name"):
            attempt()
    assert naming.parse_database_name("decoy", name) is None
    assert "decoy_victim" in victim.all_databases()
    assert not {"decoy_renamed", "decoy_clone"} & victim.all_databases()


def test_servers_listen_on_loopback_only(
    engine: Engine, run_prefix: str, docker_client: Any
) -> None:
    with engine.server(run_prefix, pool_size=0) as server:
        assert server.running is not None
        container = docker_client.containers.get(server.running.container_id)
        bindings = [
            binding
            for port_bindings in (container.attrs["NetworkSettings"]["Ports"] or {}).values()
            for binding in port_bindings or []
        ]
        assert bindings and {b["HostIp"] for b in bindings} == {"127.0.0.1"}
        declared = container.attrs["HostConfig"]["PortBindings"]
        assert {b["HostIp"] for bs in declared.values() for b in bs} == {"127.0.0.1"}
        assert server.address.host == "127.0.0.1"


def test_passwords_are_random_per_server_and_never_shown(
    engine: Engine, run_prefix: str, docker_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="freshdb")
    prefix = new_prefix()
    shown: list[str] = []  # everything freshdb said, except on purpose (`up`, `url`)
    with engine.server(prefix, schema=CallableMigrator(one_table, key="v1"), pool_size=2) as server:
        password = server.address.password
        shown += [repr(server), json.dumps(server.stats(), default=str), str(server.url)]
        with server.database() as db:
            shown += [repr(db), str(db.url), str(db.async_url)]
            db.keep()
        with server.database() as db, db.engine().connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        assert server.running is not None
        container = docker_client.containers.get(server.running.container_id)
        shown.append(json.dumps(container.labels))
        # An error on the way (a failing migration) shows no password either.
        with pytest.raises(MigrationError) as error:
            engine.server(prefix, schema=CallableMigrator(broken, key="v2")).start()
        shown.append(str(error.value))
    with engine.server(prefix, mode="throwaway", pool_size=1) as throwaway:
        other_password = throwaway.address.password
    with engine.server(run_prefix, pool_size=0) as shared:
        shared_password = shared.address.password
    for command in (("status", "--json", "-v"), ("prune", "-v"), ("down", "-v")):
        result = freshdb_cli(engine, prefix, *command)
        shown += [result.stderr, result.stdout]

    assert len(password) >= 16
    assert len({password, other_password, shared_password}) == 3  # one per server
    shown.append(caplog.text)
    assert "building template" in caplog.text  # the log was captured, at DEBUG
    for text in shown:
        assert password not in text


def broken(connection: Any) -> None:
    """A migration that fails."""
    connection.exec_driver_sql("CREATE TABLE items (id INT")
