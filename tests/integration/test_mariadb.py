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
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

import freshdb
from freshdb import naming
from freshdb.dialects.mysql import MySQLDialect
from freshdb.errors import MigrationError
from freshdb.migrators import SqlMigrator
from freshdb.template import TemplateFingerprint

from ..conftest import ServerUnderTest, run_python

pytestmark = [pytest.mark.docker, pytest.mark.server]

# Everything a copy must carry: indexes, foreign keys, a generated column, an
# AUTO_INCREMENT start and a gap, a view on a view, a trigger, a procedure, a
# function, and rows.
RICH_SCHEMA = """
CREATE TABLE authors (
  id INT AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(100) NOT NULL,
  email VARCHAR(200) NOT NULL,
  UNIQUE KEY authors_email (email)
) ENGINE=InnoDB;

CREATE TABLE posts (
  id INT AUTO_INCREMENT PRIMARY KEY,
  author_id INT NOT NULL,
  title VARCHAR(200) NOT NULL,
  body TEXT,
  title_length INT AS (CHAR_LENGTH(title)) STORED,
  KEY posts_title (title),
  CONSTRAINT posts_author FOREIGN KEY (author_id) REFERENCES authors (id) ON DELETE CASCADE
) ENGINE=InnoDB;

CREATE TABLE comments (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  post_id INT NOT NULL,
  body VARCHAR(500) NOT NULL,
  CONSTRAINT comments_post FOREIGN KEY (post_id) REFERENCES posts (id)
) ENGINE=InnoDB AUTO_INCREMENT=1000;

CREATE TABLE audit_log (
  id INT AUTO_INCREMENT PRIMARY KEY,
  message VARCHAR(200) NOT NULL
) ENGINE=InnoDB;

CREATE TABLE empty_table (id INT PRIMARY KEY) ENGINE=InnoDB;

-- A view on a view: created in dependency order in the copy.
CREATE VIEW post_titles AS
  SELECT p.id, p.title, a.name AS author FROM posts p JOIN authors a ON a.id = p.author_id;
CREATE VIEW long_titles AS SELECT id, title FROM post_titles WHERE CHAR_LENGTH(title) > 5;

DELIMITER //
CREATE TRIGGER posts_audit AFTER INSERT ON posts FOR EACH ROW
BEGIN
  INSERT INTO audit_log (message) VALUES (CONCAT('post ', NEW.id));
END//

CREATE PROCEDURE add_author(IN author_name VARCHAR(100))
BEGIN
  INSERT INTO authors (name, email)
    VALUES (author_name, CONCAT(LOWER(author_name), '@example.com'));
END//

CREATE FUNCTION post_count(author INT) RETURNS INT
READS SQL DATA
BEGIN
  RETURN (SELECT COUNT(*) FROM posts WHERE author_id = author);
END//
DELIMITER ;

INSERT INTO authors (name, email) VALUES ('Ada', 'ada@example.com'), ('Grace', 'grace@example.com');
INSERT INTO posts (author_id, title, body) VALUES
  (1, 'Hello world', 'first'), (2, 'Compilers', 'second'), (1, 'Hi', 'short');
INSERT INTO comments (post_id, body) VALUES (1, 'nice');
-- A gap: the next author id is 4, not 3, in the template and in every copy.
INSERT INTO authors (name, email) VALUES ('Temp', 'temp@example.com');
DELETE FROM authors WHERE name = 'Temp';
"""

BASE_TABLES = ["audit_log", "authors", "comments", "empty_table", "posts"]


@pytest.fixture(scope="module")
def rich_schema(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mariadb") / "rich_mariadb.sql"
    path.write_text(RICH_SCHEMA)
    return path


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


def admin(server: freshdb.DatabaseServer) -> sa.Engine:
    return sa.create_engine(server.url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)


def show_create(conn: sa.Connection, database: str, kind: str, name: str) -> str:
    """``SHOW CREATE`` read from inside ``database`` (names then print unqualified)."""
    conn.exec_driver_sql(f"USE `{database}`")
    row = conn.exec_driver_sql(f"SHOW CREATE {kind} `{name}`").one()
    return str(row[2] if kind in ("TRIGGER", "PROCEDURE", "FUNCTION") else row[1])


def objects(conn: sa.Connection, database: str) -> dict[str, list[str]]:
    """Names of every kind of object in a database."""

    def names(sql: str) -> list[str]:
        return sorted(str(r[0]) for r in conn.exec_driver_sql(sql, (database,)))

    return {
        "tables": names(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
            "AND TABLE_TYPE = 'BASE TABLE' "
        ),
        "views": names("SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s"),
        "triggers": names(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s"
        ),
        "routines": names(
            "SELECT CONCAT(ROUTINE_TYPE, ' ', ROUTINE_NAME) FROM information_schema.ROUTINES "
            "WHERE ROUTINE_SCHEMA = %s"
        ),
    }


@pytest.mark.compat
def test_a_copy_is_the_template_twin(server: freshdb.DatabaseServer) -> None:
    template = server.template
    assert template is not None
    with server.database() as db, admin(server).connect() as conn:
        copy_objects = objects(conn, db.name)
        template_objects = objects(conn, template)
        # The completion marker is the template's own; nothing else differs.
        assert template_objects["tables"] == sorted([*BASE_TABLES, naming.COMPLETION_MARKER_TABLE])
        assert copy_objects == {**template_objects, "tables": BASE_TABLES}
        assert copy_objects["views"] == ["long_titles", "post_titles"]
        assert copy_objects["triggers"] == ["posts_audit"]
        assert copy_objects["routines"] == ["FUNCTION post_count", "PROCEDURE add_author"]

        # Same DDL, indexes, foreign keys and AUTO_INCREMENT counters included.
        for table in BASE_TABLES:
            assert show_create(conn, db.name, "TABLE", table) == show_create(
                conn, template, "TABLE", table
            ), table
        for kind, names in (
            ("VIEW", copy_objects["views"]),
            ("TRIGGER", copy_objects["triggers"]),
            ("PROCEDURE", ["add_author"]),
            ("FUNCTION", ["post_count"]),
        ):
            for name in names:
                assert show_create(conn, db.name, kind, name) == show_create(
                    conn, template, kind, name
                ), name
        # The copy's views read the copy's tables, never the template's.
        definitions = conn.exec_driver_sql(
            "SELECT VIEW_DEFINITION FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s",
            (db.name,),
        ).all()
        assert definitions and all(template not in str(row[0]) for row in definitions)

        # Same data, row for row.
        for table in BASE_TABLES:
            checksums = conn.exec_driver_sql(
                f"CHECKSUM TABLE `{template}`.`{table}`, `{db.name}`.`{table}`"
            ).all()
            assert checksums[0][1] == checksums[1][1], table
        conn.exec_driver_sql("USE information_schema")


@pytest.mark.compat
def test_a_copy_behaves_like_the_template(server: freshdb.DatabaseServer) -> None:
    template = server.template
    with server.database() as db, db.engine().connect() as conn:
        # AUTO_INCREMENT next values survive the copy (the gap left by a deleted row too).
        conn.exec_driver_sql("CALL add_author('Linus')")  # the procedure works
        assert conn.exec_driver_sql("SELECT id FROM authors WHERE name = 'Linus'").scalar() == 4
        conn.exec_driver_sql("INSERT INTO comments (post_id, body) VALUES (2, 'more')")
        assert conn.exec_driver_sql("SELECT MAX(id) FROM comments").scalar() == 1001
        # The trigger fires in the copy, into the copy's table.
        conn.exec_driver_sql("INSERT INTO posts (author_id, title) VALUES (4, 'Kernel notes')")
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM audit_log").scalar() == 4
        # The views read the copy's rows: written here, seen here.
        assert (
            conn.exec_driver_sql(
                "SELECT author FROM post_titles WHERE title = 'Kernel notes'"
            ).scalar()
            == "Linus"
        )
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM long_titles").scalar() == 3
        assert conn.exec_driver_sql("SELECT post_count(4)").scalar() == 1
        # Generated columns are computed in the copy, too.
        assert conn.exec_driver_sql(
            "SELECT title_length FROM posts WHERE title = 'Kernel notes'"
        ).scalar() == len("Kernel notes")
        conn.commit()
        # Foreign keys are enforced in the copy.
        with pytest.raises(IntegrityError):
            conn.exec_driver_sql("INSERT INTO comments (post_id, body) VALUES (999, 'orphan')")
        conn.rollback()
        conn.exec_driver_sql("DELETE FROM comments")
        conn.exec_driver_sql("DELETE FROM authors WHERE id = 1")  # ON DELETE CASCADE
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM posts WHERE author_id = 1").scalar() == 0
        conn.commit()
    with admin(server).connect() as conn:
        # ... and the template saw none of it.
        assert conn.exec_driver_sql(f"SELECT COUNT(*) FROM `{template}`.posts").scalar() == 3
        assert conn.exec_driver_sql(f"SELECT COUNT(*) FROM `{template}`.long_titles").scalar() == 2
        assert conn.exec_driver_sql(f"SELECT COUNT(*) FROM `{template}`.audit_log").scalar() == 3


def test_a_write_in_one_copy_is_invisible_in_the_next(server: freshdb.DatabaseServer) -> None:
    with server.database() as first, first.engine().connect() as conn:
        conn.exec_driver_sql("INSERT INTO authors (name, email) VALUES ('Only', 'only@here')")
        conn.commit()
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM authors").scalar() == 3
    with server.database() as second, second.engine().connect() as conn:
        assert second.name != first.name
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM authors").scalar() == 2


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
    # No RENAME DATABASE: tables move with RENAME TABLE, the rest is re-created.
    with server.database() as db, db.engine().connect() as conn:
        conn.exec_driver_sql("INSERT INTO posts (author_id, title) VALUES (2, 'Keep me please')")
        conn.commit()
        db.keep()
    kept = naming.parse_database_name(server.settings.prefix, db.name)
    assert kept is not None and kept.owner is not None and kept.seq is not None
    kept_name = naming.kept_name(server.settings.prefix, kept.fingerprint, kept.owner, kept.seq)
    with admin(server).connect() as conn:
        for _ in range(200):
            if objects(conn, kept_name)["tables"] and not objects(conn, db.name)["tables"]:
                break
            time.sleep(0.05)
        assert objects(conn, kept_name) == objects(conn, str(server.template)) | {
            "tables": BASE_TABLES
        }
        assert not conn.exec_driver_sql(
            "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (db.name,)
        ).all()
    engine = sa.create_engine(db.url.set(database=kept_name), poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            assert (
                conn.exec_driver_sql(
                    "SELECT author FROM post_titles WHERE title = 'Keep me please'"
                ).scalar()
                == "Grace"
            )
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM audit_log").scalar() == 4
            conn.exec_driver_sql("INSERT INTO posts (author_id, title) VALUES (1, 'trigger?')")
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM audit_log").scalar() == 5
            assert conn.exec_driver_sql("SELECT post_count(1)").scalar() == 3
            conn.rollback()
    finally:
        engine.dispose()
        conn = server.dialect.connect(server.address)
        try:
            server.dialect.drop_database(conn, kept_name)
        finally:
            conn.close()


# -- across processes -------------------------------------------------------------------
def spawn(code: str) -> subprocess.Popen[str]:
    """Start Python code in a new process (like ``run_python``, without waiting)."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )


SESSION = """
import json, sys, time
from pathlib import Path
import freshdb
from freshdb.migrators import CallableMigrator

def build(connection):
    with open({counter!r}, "a") as handle:
        handle.write("built\\n")
    time.sleep(1.0)  # long enough for the other processes to arrive and wait
    connection.exec_driver_sql("CREATE TABLE things (id INT PRIMARY KEY)")
    connection.exec_driver_sql("INSERT INTO things VALUES (1), (2)")

time.sleep(max(0.0, {start_at!r} - time.time()))  # all start together
# Pruning as hard as it gets: each start drops every idle template it can, so the
# four starts prune at once, and while one of them builds in place.
server = freshdb.DatabaseServer(
    {engine!r}, image={image!r}, mode="sticky", prefix={prefix!r}, pool_size=1,
    schema=CallableMigrator(build, key={key!r}), keep_templates=1, template_retention="0",
)
with server:
    with server.database() as db, db.engine().connect() as conn:
        count = conn.exec_driver_sql("SELECT COUNT(*) FROM things").scalar()
    print(json.dumps({{"reused": server.stats()["template_reused"], "rows": count,
                      "template": server.template}}))
"""


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
