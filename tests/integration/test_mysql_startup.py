"""A MySQL/MariaDB container's start (freshdb.dialects.mysql.startup), on a real server:
MariaDB, or MySQL with FRESHDB_TEST_MYSQL_FAMILY=mysql.

freshdb starts the server once, instead of the image entrypoint's temporary server
followed by the real one. These tests check that this direct start is taken, that it
ends where the image's entrypoint ends (accounts, their plugins and grants, character
set, the tuning), and that the script hands over to the image's entrypoint whenever
the container asks for something it does not do.
"""

from __future__ import annotations

import contextlib
import io
import re
import secrets
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

import freshdb
from freshdb import naming
from freshdb.config import Settings
from freshdb.dialects.mysql import MySQLDialect, startup
from freshdb.dialects.mysql.flags import image_flavour

from ..conftest import ServerUnderTest
from .mysql_family import admin

pytestmark = [pytest.mark.docker, pytest.mark.server]

_STAND_INS = Path(__file__).resolve().parents[2] / "docker"
#: What the init script of the derived image below leaves behind.
_INIT_DATABASE = "freshdb_initdb_ran"


def _logs(docker_client: Any, server: freshdb.DatabaseServer) -> str:
    running = server.running
    assert running is not None and running.container_id is not None
    return str(docker_client.containers.get(running.container_id).logs().decode())


def _end_state(server: freshdb.DatabaseServer, prefix: str) -> dict[str, Any]:
    """What a client of the server sees of how it was set up (freshdb's databases aside)."""
    with admin(server).connect() as conn:
        accounts = [
            tuple(row)
            for row in conn.exec_driver_sql(
                "SELECT user, host, plugin FROM mysql.user ORDER BY user, host"
            )
        ]
        grants = {}
        for user, host, _ in accounts:
            if user == "root":
                rows = conn.exec_driver_sql("SHOW GRANTS FOR %s@%s", (user, host)).scalars()
                # Each container has its own password: its hash may show in a grant.
                grants[host] = [re.sub(r"PASSWORD '[^']*'", "PASSWORD '…'", r) for r in rows]
        variables = conn.exec_driver_sql(
            "SELECT @@character_set_server, @@collation_server, @@skip_name_resolve, "
            "@@time_zone, @@innodb_flush_log_at_trx_commit, @@max_connections, @@datadir"
        ).one()
        databases = sorted(
            name
            for name in conn.exec_driver_sql("SHOW DATABASES").scalars()
            if not name.startswith(prefix)
        )
        time_zones = conn.exec_driver_sql("SELECT COUNT(*) FROM mysql.time_zone_name").scalar()
    return {
        "accounts": accounts,
        "grants": grants,
        "variables": tuple(variables),
        "databases": databases,
        "time_zones": time_zones,
    }


def _refuses_a_wrong_password(server: freshdb.DatabaseServer) -> bool:
    url = server.url
    try:
        pymysql.connect(
            host=url.host,
            port=url.port,
            user=url.username,
            password="not-the-password",
            connect_timeout=10,
            ssl_disabled=True,
        ).close()
    except pymysql.OperationalError as exc:
        return exc.args[0] == 1045  # access denied
    return False


def test_the_direct_start_ends_where_the_image_entrypoint_ends(
    mysql_family: ServerUnderTest,
    fresh_prefix: str,
    docker_client: Any,
) -> None:
    options = {"image": mysql_family.image, "mode": "throwaway", "prefix": fresh_prefix}
    with freshdb.DatabaseServer(mysql_family.engine, **options) as direct:
        direct_logs = _logs(docker_client, direct)
        direct_state = _end_state(direct, fresh_prefix)
        assert _refuses_a_wrong_password(direct)
    # The same start with the image's own entrypoint (the setting that turns the
    # direct start off), as before the direct start.
    with freshdb.DatabaseServer(mysql_family.engine, direct_start=False, **options) as official:
        official_logs = _logs(docker_client, official)
        official_state = _end_state(official, fresh_prefix)
        assert _refuses_a_wrong_password(official)

    assert startup.DIRECT_START_MARKER in direct_logs, direct_logs[-3000:]
    assert startup.FALLBACK_MARKER not in direct_logs
    assert "init process done" not in direct_logs  # the stand-ins' temporary server
    assert startup.DIRECT_START_MARKER not in official_logs
    assert direct_state == official_state
    assert ("root", "%") in {(user, host) for user, host, _ in direct_state["accounts"]}


@pytest.fixture
def image_with_init_script(
    docker_client: Any, mysql_family: ServerUnderTest, fresh_prefix: str
) -> Iterator[str]:
    """The image under test with a file in /docker-entrypoint-initdb.d, built here.

    The stand-in images built before they ran init scripts are given the
    repository's stand-in entrypoint (an official image keeps its own), so that
    the test can see the script ran.
    """
    flavour = image_flavour(mysql_family.engine, mysql_family.image)
    stand_in = (_STAND_INS / flavour / "entrypoint.sh").read_bytes()
    dockerfile = f"""FROM {mysql_family.image}
COPY stand-in-entrypoint.sh /tmp/stand-in-entrypoint.sh
RUN if grep -q 'entrypoint contract, reduced to what it promises' \\
      /usr/local/bin/docker-entrypoint.sh; then \\
      install -m 0755 /tmp/stand-in-entrypoint.sh /usr/local/bin/docker-entrypoint.sh; fi \\
    && rm /tmp/stand-in-entrypoint.sh && mkdir -p /docker-entrypoint-initdb.d
COPY init.sql /docker-entrypoint-initdb.d/01-init.sql
"""
    files = {
        "Dockerfile": dockerfile.encode(),
        "stand-in-entrypoint.sh": stand_in,
        "init.sql": f"CREATE DATABASE {_INIT_DATABASE};\n".encode(),
    }
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), int(time.time())
            archive.addfile(info, io.BytesIO(data))
    context.seek(0)
    # The name keeps the server and its version, which freshdb reads from it.
    version = mysql_family.image.rpartition(":")[2] if ":" in mysql_family.image else "latest"
    tag = f"freshdb-test-initdb/{flavour}:{version}-{fresh_prefix}-{secrets.token_hex(2)}"
    image, _ = docker_client.images.build(
        fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True, pull=False
    )
    try:
        yield tag
    finally:
        docker_client.images.remove(image.id, force=True)


def test_a_file_in_initdb_hands_the_start_over_to_the_image_entrypoint(
    mysql_family: ServerUnderTest,
    image_with_init_script: str,
    fresh_prefix: str,
    docker_client: Any,
) -> None:
    with freshdb.DatabaseServer(
        mysql_family.engine, image=image_with_init_script, mode="throwaway", prefix=fresh_prefix
    ) as server:
        logs = _logs(docker_client, server)
        with admin(server).connect() as conn:
            databases = set(conn.exec_driver_sql("SHOW DATABASES").scalars())
    assert f"{startup.FALLBACK_MARKER} (/docker-entrypoint-initdb.d holds files)" in logs, logs
    assert startup.DIRECT_START_MARKER not in logs
    assert _INIT_DATABASE in databases  # the image's entrypoint ran the user's script


def _first_freshdb_line(docker_client: Any, mysql_family: ServerUnderTest, **run: Any) -> str:
    """The script's first log line in a container started with ``run`` changed.

    The container is removed as soon as it says, before its server is of any use.
    """
    spec = MySQLDialect().container_spec(
        Settings(engine=mysql_family.engine),
        mysql_family.image,
        run.pop("password", None) or secrets.token_urlsafe(18),
    )
    environment = {**spec.environment, **run.pop("environment", {})}
    container = docker_client.containers.run(
        mysql_family.image,
        entrypoint=list(spec.entrypoint),
        command=list(spec.command),
        environment={k: v for k, v in environment.items() if v is not None},
        tmpfs={spec.data_directory: "rw,size=1g,mode=1777"},
        labels={naming.LABEL_MANAGED: "true", naming.LABEL_PREFIX_NAME: run.pop("prefix")},
        detach=True,
        **run,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for line in container.logs().decode().splitlines():
                if line.startswith("freshdb: "):
                    return str(line)
            time.sleep(0.05)
        raise AssertionError(f"no freshdb line in the log:\n{container.logs().decode()}")
    finally:
        container.remove(force=True)


@pytest.mark.parametrize(
    ("run", "reason"),
    [
        ({"environment": {"MYSQL_DATABASE": "app"}}, "the environment sets MYSQL_DATABASE"),
        ({"environment": {"MARIADB_USER": "app"}}, "the environment sets MARIADB_USER"),
        ({"environment": {"MYSQL_INITDB_SKIP_TZINFO": None}}, "time zone tables are wanted"),
        ({"password": "it's"}, "the root password has characters to quote"),
        ({"user": "mysql"}, "not running as root"),
    ],
    ids=["database", "user", "time-zones", "password", "not-root"],
)
def test_what_the_script_does_not_do_goes_to_the_image_entrypoint(
    mysql_family: ServerUnderTest,
    fresh_prefix: str,
    docker_client: Any,
    run: dict[str, Any],
    reason: str,
) -> None:
    line = _first_freshdb_line(docker_client, mysql_family, prefix=fresh_prefix, **dict(run))
    assert line == f"{startup.FALLBACK_MARKER} ({reason})"


def test_the_script_starts_directly_when_nothing_stands_in_the_way(
    mysql_family: ServerUnderTest, fresh_prefix: str, docker_client: Any
) -> None:
    # The same run as the cases above with nothing changed: they differ by their change only.
    line = _first_freshdb_line(docker_client, mysql_family, prefix=fresh_prefix)
    assert line.startswith(startup.DIRECT_START_MARKER)


@contextlib.contextmanager
def _derived_image(
    docker_client: Any, mysql_family: ServerUnderTest, prefix: str, lines: list[str]
) -> Iterator[str]:
    """The image under test with Dockerfile ``lines`` on top, built here and removed
    afterwards: its tag."""
    dockerfile = "\n".join([f"FROM {mysql_family.image}", *lines]) + "\n"
    # The name keeps the server and its version, which freshdb reads from it.
    flavour = image_flavour(mysql_family.engine, mysql_family.image)
    version = mysql_family.image.rpartition(":")[2] if ":" in mysql_family.image else "latest"
    tag = f"freshdb-test-derived/{flavour}:{version}-{prefix}-{secrets.token_hex(2)}"
    image, _ = docker_client.images.build(
        fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, forcerm=True, pull=False
    )
    try:
        yield tag
    finally:
        docker_client.images.remove(image.id, force=True)


@pytest.mark.parametrize(
    ("lines", "reason"),
    [
        (
            [
                "RUN mkdir -p /etc/mysql/conf.d && printf"
                " '[mysqld]\\ninit-file=/etc/provision.sql\\n' > /etc/mysql/conf.d/zz-provision.cnf"
            ],
            "the configuration sets --init-file",
        ),
        (
            ["RUN sed -i '/docker_temp_server_start/d' \"$(command -v docker-entrypoint.sh)\""],
            "docker-entrypoint.sh is not the official one",
        ),
    ],
    ids=["configured-init-file", "own-entrypoint"],
)
def test_a_derived_image_the_script_cannot_match_goes_to_its_entrypoint(
    mysql_family: ServerUnderTest,
    fresh_prefix: str,
    docker_client: Any,
    lines: list[str],
    reason: str,
) -> None:
    with _derived_image(docker_client, mysql_family, fresh_prefix, lines) as tag:
        derived = ServerUnderTest(mysql_family.engine, tag)
        line = _first_freshdb_line(docker_client, derived, prefix=fresh_prefix)
    assert line == f"{startup.FALLBACK_MARKER} ({reason})"


def test_directories_the_configuration_names_are_made_for_a_direct_start(
    mysql_family: ServerUnderTest, fresh_prefix: str, docker_client: Any
) -> None:
    # A derived image naming a pid file and secure-file-priv in directories its build
    # never made: the official entrypoint makes them, so the direct start must too.
    pid_file = "/run/freshdb-test-pid/server.pid"
    files_directory = "/var/lib/freshdb-test-files"
    config = f"[mysqld]\\npid-file={pid_file}\\nsecure-file-priv={files_directory}\\n"
    # Read last (the packages' own files set a pid file too), whichever family.
    lines = [
        "RUN d=/etc/mysql/mariadb.conf.d; [ -d $d ] || d=/etc/mysql/mysql.conf.d;"
        " [ -d $d ] || d=/etc/mysql/conf.d; mkdir -p $d &&"
        f" printf '{config}' > $d/zz-dirs.cnf"
    ]
    with (
        _derived_image(docker_client, mysql_family, fresh_prefix, lines) as tag,
        freshdb.DatabaseServer(
            mysql_family.engine, image=tag, mode="throwaway", prefix=fresh_prefix, pool_size=1
        ) as server,
    ):
        logs = _logs(docker_client, server)
        with admin(server).connect() as conn:
            configured = conn.exec_driver_sql("SELECT @@pid_file, @@secure_file_priv").one()
    assert startup.DIRECT_START_MARKER in logs, logs
    assert configured[0] == pid_file
    assert configured[1].rstrip("/") == files_directory
