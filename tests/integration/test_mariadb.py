"""MySQL-family copies without CREATE DATABASE … TEMPLATE, on a real server: MariaDB,
or MySQL with FRESHDB_TEST_MYSQL_FAMILY=mysql (the ``mysql_family`` fixture).

The template is built in place and marked complete by a marker table; a copy replays
the template's DDL (read with the template as the current database) and copies its
rows. These tests check that a copy is the template's twin in every object and in
its data, and that the locking and reaping hold across processes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import freshdb
from freshdb import naming
from freshdb.dialects.mysql import MySQLDialect
from freshdb.errors import MigrationError
from freshdb.migrators import SqlMigrator
from freshdb.template import TemplateFingerprint

from ..conftest import ServerUnderTest, run_python
from .mysql_family import (
    SESSION,
    admin,
    assert_copy_behaves_like_the_template,
    assert_copy_is_the_template_twin,
    assert_kept_copy_has_everything,
    assert_writes_stay_in_their_copy,
    objects,
    spawn,
    write_rich_schema,
)

pytestmark = [pytest.mark.docker, pytest.mark.server]


@pytest.fixture(scope="module")
def rich_schema(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_rich_schema(tmp_path_factory, "mariadb")


@pytest.fixture(scope="module")
def server(
    run_prefix: str, mysql_family: ServerUnderTest, rich_schema: Path
) -> Iterator[freshdb.DatabaseServer]:
    with freshdb.DatabaseServer(
        mysql_family.engine,
        image=mysql_family.image,
        mode="sticky",
        prefix=run_prefix,
        schema=rich_schema,
        pool_size=2,
    ) as server:
        yield server


@pytest.mark.compat
def test_a_copy_is_the_template_twin(server: freshdb.DatabaseServer) -> None:
    assert_copy_is_the_template_twin(server)


@pytest.mark.compat
def test_a_copy_behaves_like_the_template(server: freshdb.DatabaseServer) -> None:
    assert_copy_behaves_like_the_template(server)


def test_a_write_in_one_copy_is_invisible_in_the_next(server: freshdb.DatabaseServer) -> None:
    assert_writes_stay_in_their_copy(server)


def test_async_copies(server: freshdb.DatabaseServer) -> None:
    async def main() -> tuple[str, int]:
        async with server.adatabase() as db:
            assert db.async_url.drivername == "mysql+aiomysql"
            async with db.async_engine().connect() as conn:
                await conn.exec_driver_sql("INSERT INTO authors (name, email) VALUES ('A', 'a@b')")
                await conn.commit()
                count = (await conn.exec_driver_sql("SELECT COUNT(*) FROM authors")).scalar()
            return db.name, int(count or 0)

    name, count = asyncio.run(main())
    assert count == 3
    assert name.startswith(f"{server.settings.prefix}_c_")


def test_a_released_copy_is_dropped_and_its_connections_ended(
    server: freshdb.DatabaseServer,
) -> None:
    db = server.database()
    # A connection the test forgot to close must not keep the copy alive.
    leaked = sa.create_engine(db.url, poolclass=sa.NullPool).connect()
    leaked.exec_driver_sql("SELECT COUNT(*) FROM authors")
    db.release()
    with admin(server).connect() as conn:
        for _ in range(200):
            exists = conn.exec_driver_sql(
                "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
                (db.name,),
            ).scalar()
            if not exists:
                break
            time.sleep(0.05)
        assert not exists
    leaked.invalidate()


def test_a_kept_copy_is_renamed_with_everything_in_it(server: freshdb.DatabaseServer) -> None:
    assert_kept_copy_has_everything(server)


# -- across processes -------------------------------------------------------------------
@pytest.mark.compat
def test_four_processes_build_the_template_once_and_later_sessions_reuse_it(
    run_prefix: str, mysql_family: ServerUnderTest, tmp_path: Path, server: freshdb.DatabaseServer
) -> None:
    counter = tmp_path / "builds.txt"
    values = {
        "counter": str(counter),
        "engine": mysql_family.engine,
        "image": mysql_family.image,
        "prefix": run_prefix,
        "key": f"concurrency-{tmp_path.name}",
    }
    # Idle templates for the four starts to prune concurrently (a start once read a
    # template another was dropping or building, and failed).
    for index in range(3):
        idle = tmp_path / f"idle{index}.sql"
        idle.write_text(f"CREATE TABLE idle_{index}_{tmp_path.name[-6:]} (id INT);\n")
        with freshdb.DatabaseServer(
            mysql_family.engine,
            image=mysql_family.image,
            mode="sticky",
            prefix=run_prefix,
            schema=idle,
            pool_size=0,
        ):
            pass
    start_at = time.time() + 4.0
    processes = [spawn(SESSION.format(start_at=start_at, **values)) for _ in range(4)]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=180)
        assert process.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert counter.read_text().count("built") == 1
    assert sorted(r["reused"] for r in results) == [False, True, True, True]
    assert {r["rows"] for r in results} == {2}
    assert len({r["template"] for r in results}) == 1

    later = json.loads(run_python(SESSION.format(start_at=0.0, **values)).strip().splitlines()[-1])
    assert later["reused"] is True
    assert counter.read_text().count("built") == 1


def template_of(server: freshdb.DatabaseServer, schema: Path) -> str:
    """The name the template of ``schema`` gets on ``server``."""
    dialect = server.dialect
    conn = dialect.connect(server.address)
    try:
        fingerprint = TemplateFingerprint(
            dialect.family, dialect.server_version(conn), SqlMigrator(schema).fingerprint()
        ).digest
    finally:
        conn.close()
    return naming.template_name(server.settings.prefix, fingerprint)


def test_a_failing_migration_names_the_statement_and_leaves_no_template(
    run_prefix: str, mysql_family: ServerUnderTest, tmp_path: Path, server: freshdb.DatabaseServer
) -> None:
    schema = tmp_path / "schema.sql"
    schema.write_text(
        f"CREATE TABLE fine_{tmp_path.name[-6:]} (id INT PRIMARY KEY);\n"
        "CREATE TABLE broken (id INT,, name TEXT);\n"
    )
    failing = freshdb.DatabaseServer(
        mysql_family.engine,
        image=mysql_family.image,
        mode="sticky",
        prefix=run_prefix,
        schema=schema,
    )
    with pytest.raises(MigrationError, match="statement 2") as caught:
        failing.start()
    assert "CREATE TABLE broken" in str(caught.value)
    name = template_of(server, schema)
    dialect = server.dialect
    conn = dialect.connect(server.address)
    try:
        assert not dialect.template_is_complete(conn, name)
        assert not dialect.database_exists(conn, name)  # the failed build was dropped
    finally:
        conn.close()

    schema.write_text(
        f"CREATE TABLE fine_{tmp_path.name[-6:]} (id INT PRIMARY KEY);\n"
        "CREATE TABLE broken (id INT, name TEXT);\n"
    )
    with freshdb.DatabaseServer(
        mysql_family.engine,
        image=mysql_family.image,
        mode="sticky",
        prefix=run_prefix,
        schema=schema,
    ) as fixed:
        with fixed.database() as db, db.engine().connect() as db_conn:
            assert db_conn.exec_driver_sql("SELECT COUNT(*) FROM broken").scalar() == 0
        assert fixed.template == template_of(server, schema)


def test_an_incomplete_template_is_rebuilt(
    run_prefix: str, mysql_family: ServerUnderTest, tmp_path: Path, server: freshdb.DatabaseServer
) -> None:
    schema = tmp_path / "schema.sql"
    schema.write_text(f"CREATE TABLE crashed_{tmp_path.name[-6:]} (id INT PRIMARY KEY);\n")
    name = template_of(server, schema)
    # What a builder killed mid-migration leaves: the database, without the marker.
    with admin(server).connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{name}`")
        conn.exec_driver_sql(f"CREATE TABLE `{name}`.half_done (id INT)")
    with freshdb.DatabaseServer(
        mysql_family.engine,
        image=mysql_family.image,
        mode="sticky",
        prefix=run_prefix,
        schema=schema,
    ) as rebuilt:
        assert rebuilt.stats()["template_reused"] is False
        with rebuilt.database() as db, admin(server).connect() as conn:
            assert objects(conn, db.name)["tables"] == [f"crashed_{tmp_path.name[-6:]}"]


def test_a_template_in_use_is_never_pruned(
    run_prefix: str, mysql_family: ServerUnderTest, tmp_path: Path, server: freshdb.DatabaseServer
) -> None:
    # MySQL has no shared locks: each user holds a "user slot" lock of the template.
    schemas = []
    for letter in "ab":
        schema = tmp_path / f"{letter}.sql"
        schema.write_text(f"CREATE TABLE prune_{letter}_{tmp_path.name[-6:]} (id INT);\n")
        schemas.append(schema)

    def session(schema: Path) -> freshdb.DatabaseServer:
        return freshdb.DatabaseServer(
            mysql_family.engine,
            image=mysql_family.image,
            mode="sticky",
            prefix=run_prefix,
            schema=schema,
            pool_size=0,
            keep_templates=1,
        )

    def exists(name: str | None) -> bool:
        conn = server.dialect.connect(server.address)
        try:
            return server.dialect.template_is_complete(conn, str(name))
        finally:
            conn.close()

    def unused(name: str | None) -> bool:
        parsed = naming.parse_database_name(run_prefix, str(name))
        assert parsed is not None
        conn = server.dialect.connect(server.address)
        try:
            if not server.dialect.try_lock_unused_template(conn, parsed.fingerprint):
                return False
            server.dialect.unlock_template(conn, parsed.fingerprint)
            return True
        finally:
            conn.close()

    with session(schemas[0]) as first:
        assert not unused(first.template)
        with session(schemas[1]):
            # Its start pruned down to one template, skipping those live sessions use.
            assert exists(first.template)
            assert exists(server.template)
        assert exists(first.template) and not unused(first.template)
    assert unused(first.template)  # its session ended
    assert not unused(server.template)  # still used by this module's session


HOLDER = """
import sys, time
import freshdb
server = freshdb.DatabaseServer(
    {engine!r}, image={image!r}, mode="sticky", prefix={prefix!r}, pool_size=2,
    schema={schema!r},
)
server.start()
db = server.database()
while server.stats()["ready"] < 2:
    time.sleep(0.05)
print("HOLDING", db.name, flush=True)
time.sleep(600)
"""


def databases_of(server: freshdb.DatabaseServer, owner: str) -> list[str]:
    prefix = server.settings.prefix
    with admin(server).connect() as conn:
        names = [
            str(row[0])
            for row in conn.exec_driver_sql(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s",
                (naming.database_like_pattern(prefix),),
            )
        ]
    return [
        name
        for name in names
        if (parsed := naming.parse_database_name(prefix, name)) and parsed.owner == owner
    ]


@pytest.mark.compat
def test_copies_of_a_killed_process_are_reaped_and_a_live_sessions_are_not(
    run_prefix: str,
    mysql_family: ServerUnderTest,
    rich_schema: Path,
    server: freshdb.DatabaseServer,
) -> None:
    doomed = spawn(
        HOLDER.format(
            engine=mysql_family.engine,
            image=mysql_family.image,
            prefix=run_prefix,
            schema=str(rich_schema),
        )
    )
    try:
        assert doomed.stdout is not None
        line = doomed.stdout.readline()
        assert line.startswith("HOLDING"), doomed.stderr.read() if doomed.stderr else line
        held = line.split()[1]
        parsed = naming.parse_database_name(run_prefix, held)
        assert parsed is not None and parsed.owner
        dead_owner = parsed.owner
        assert len(databases_of(server, dead_owner)) >= 3  # one in use, two ready

        with server.database() as live_copy:
            live_owner = naming.parse_database_name(run_prefix, live_copy.name).owner  # type: ignore[union-attr]
            os.kill(doomed.pid, signal.SIGKILL)
            doomed.wait(timeout=30)
            # The server ends the dead session (and frees its lease) once it sees
            # the socket close: wait for that, not for a fixed time.
            dialect = MySQLDialect()
            conn = dialect.connect(server.address)
            try:
                for _ in range(400):
                    if not dialect.live_owners(conn, [dead_owner]):
                        break
                    time.sleep(0.05)
            finally:
                conn.close()

            with freshdb.DatabaseServer(
                mysql_family.engine,
                image=mysql_family.image,
                mode="sticky",
                prefix=run_prefix,
                schema=rich_schema,
                pool_size=0,
            ) as next_session:
                reaped = next_session.stats()["reaped"]
            assert held in reaped
            assert databases_of(server, dead_owner) == []
            assert live_copy.name not in reaped
            assert live_copy.name in databases_of(server, str(live_owner))
            with live_copy.engine().connect() as conn_live:
                assert conn_live.exec_driver_sql("SELECT COUNT(*) FROM authors").scalar() == 2
    finally:
        if doomed.poll() is None:
            doomed.kill()
            doomed.wait()


def test_stats_and_the_template_comment(
    server: freshdb.DatabaseServer, mysql_family: ServerUnderTest
) -> None:
    stats: dict[str, Any] = server.stats()
    assert stats["engine"] == mysql_family.engine
    assert stats["template"] == server.template
    dialect = server.dialect
    conn = dialect.connect(server.address)
    try:
        comment = json.loads(dialect.database_comment(conn, str(server.template)) or "{}")
        assert comment["freshdb"] == "template"
        assert dialect.server_version(conn).startswith(f"{mysql_family.engine} ")
        sizes = dialect.database_sizes(conn, [str(server.template)])
        assert sizes[str(server.template)] > 0
        created = dialect.database_created(conn, [str(server.template)])[str(server.template)]
        assert abs(dt.datetime.now(dt.UTC) - created) < dt.timedelta(hours=1)
    finally:
        conn.close()
