"""Template and pool on a real Postgres server."""

from __future__ import annotations

import asyncio
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

import freshdb
from freshdb import naming
from freshdb.migrators import SqlMigrator

from ..conftest import run_python

pytestmark = [pytest.mark.docker, pytest.mark.server]

SCHEMAS = Path(__file__).parent / "schemas"
RICH = SCHEMAS / "rich_postgres.sql"


@pytest.fixture(scope="module")
def rich_server(run_prefix: str, postgres_image: str) -> Iterator[freshdb.DatabaseServer]:
    with freshdb.DatabaseServer(
        "postgres", schema=RICH, image=postgres_image, mode="sticky", prefix=run_prefix, pool_size=2
    ) as server:
        yield server


def admin(server: freshdb.DatabaseServer) -> sa.Engine:
    return sa.create_engine(server.url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)


def databases(server: freshdb.DatabaseServer) -> list[str]:
    with admin(server).connect() as conn:
        return [r[0] for r in conn.exec_driver_sql("SELECT datname FROM pg_database ORDER BY 1")]


def pg_dump(docker_client: Any, server: freshdb.DatabaseServer, database: str) -> str:
    container = docker_client.containers.get(server.running.container_id)  # type: ignore[union-attr]
    result = container.exec_run(["pg_dump", "-U", "postgres", "--no-owner", "-d", database])
    assert result.exit_code == 0, result.output.decode()
    return "\n".join(
        line
        for line in result.output.decode().splitlines()
        if not line.startswith("\\restrict") and not line.startswith("\\unrestrict")
    )


@pytest.mark.compat
def test_a_copy_is_identical_to_what_the_migrations_build(
    rich_server: freshdb.DatabaseServer, docker_client: Any, run_prefix: str
) -> None:
    reference = f"ref_{run_prefix}"
    with admin(rich_server).connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{reference}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{reference}"')
    try:
        ref_engine = sa.create_engine(
            rich_server.url.set(database=reference), poolclass=sa.NullPool
        )
        with ref_engine.connect() as conn:
            SqlMigrator(RICH).migrate(conn)
            conn.commit()
        with rich_server.database() as db:
            copy_dump = pg_dump(docker_client, rich_server, db.name)
            # Tables, indexes, constraints, views, functions, triggers, sequences with
            # their current values, enum types, comments, extensions and data.
            for needle in [
                "CREATE EXTENSION IF NOT EXISTS citext",
                "CREATE TYPE public.mood AS ENUM",
                "CREATE INDEX posts_title_lower_idx",
                "CREATE TRIGGER posts_word_count",
                "CREATE VIEW public.author_post_counts",
                "CREATE FUNCTION public.count_words",
                "COMMENT ON TABLE public.authors",
                "SELECT pg_catalog.setval('public.invoice_numbers', 4242, true);",
                "CONSTRAINT email_has_at CHECK",
                "FOREIGN KEY (author_id) REFERENCES public.authors(id) ON DELETE CASCADE",
                "ada@example.com",
            ]:
                assert needle in copy_dump, needle
            assert copy_dump == pg_dump(docker_client, rich_server, reference)
            with db.engine().connect() as conn:
                assert conn.exec_driver_sql("SELECT count(*) FROM posts").scalar() == 50
                assert conn.exec_driver_sql("SHOW work_mem").scalar() == "7MB"
                conn.exec_driver_sql(
                    "INSERT INTO posts (author_id, title, body) VALUES (1, 't', 'one two three')"
                )
                assert (
                    conn.exec_driver_sql("SELECT word_count FROM posts WHERE title = 't'").scalar()
                    == 3
                )
                granted = conn.exec_driver_sql(
                    "SELECT has_database_privilege('freshdb_test_reader', current_database(), "
                    "'CONNECT')"
                ).scalar()
                assert granted is True
    finally:
        with admin(rich_server).connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{reference}" WITH (FORCE)')


@pytest.mark.compat
def test_a_write_in_one_copy_is_invisible_in_the_next(rich_server: freshdb.DatabaseServer) -> None:
    names = set()
    for _ in range(5):
        with rich_server.database() as db, db.engine().begin() as conn:
            names.add(db.name)
            assert conn.exec_driver_sql("SELECT count(*) FROM authors").scalar() == 2
            conn.exec_driver_sql("INSERT INTO authors (email) VALUES ('eve@example.com')")
            conn.exec_driver_sql("DELETE FROM posts")
    assert len(names) == 5


def test_copies_are_handed_out_from_the_pool_and_counted(
    rich_server: freshdb.DatabaseServer,
) -> None:
    deadline = time.monotonic() + 30
    while rich_server.stats()["ready"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    before = rich_server.stats()
    assert before["ready"] == 2
    held = [rich_server.database() for _ in range(3)]  # one more than the pool holds
    during = rich_server.stats()
    assert during["busy"] == 3
    assert during["waits"] == before["waits"] + 1
    assert during["template"] == rich_server.template
    assert during["template"].startswith(f"{rich_server.settings.prefix}_t_")
    assert len({db.name for db in held}) == 3
    for db in held:
        db.release()
    assert rich_server.stats()["busy"] == 0


def test_released_copies_are_dropped_in_the_background(
    rich_server: freshdb.DatabaseServer,
) -> None:
    with rich_server.database() as db:
        name = db.name
        assert name in databases(rich_server)
    deadline = time.monotonic() + 30
    while name in databases(rich_server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert name not in databases(rich_server)


def test_the_template_is_sealed(rich_server: freshdb.DatabaseServer) -> None:
    with admin(rich_server).connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT datistemplate, datallowconn FROM pg_database WHERE datname = %s",
            (rich_server.template,),
        ).one()
    assert tuple(row) == (True, False)


def test_async_copies(rich_server: freshdb.DatabaseServer) -> None:
    async def main() -> tuple[str, int]:
        async with rich_server.adatabase() as db, db.async_engine().connect() as conn:
            result = await conn.exec_driver_sql("SELECT count(*) FROM authors")
            return db.name, int(result.scalar_one())

    name, count = asyncio.run(main())
    assert count == 2
    assert name.startswith(f"{rich_server.settings.prefix}_c_")


COUNTING_SERVER = """
import time
import freshdb
from freshdb.migrators import CallableMigrator

def build(connection):
    with open({counter!r}, "a") as handle:
        handle.write("built\\n")
    time.sleep(0.5)  # widen the window in which a second builder could slip in
    connection.exec_driver_sql("CREATE TABLE items (id serial PRIMARY KEY, name text)")
    connection.exec_driver_sql("INSERT INTO items (name) VALUES ('seed')")

time.sleep(max(0.0, {start_at} - time.time()))
schema = CallableMigrator(build, key={key!r})
with freshdb.DatabaseServer("postgres", schema=schema, image={image!r}, mode="sticky",
                            prefix={prefix!r}, pool_size=1) as server:
    with server.database() as db, db.engine().connect() as conn:
        assert conn.exec_driver_sql("SELECT name FROM items").scalar() == "seed"
    print(server.stats()["template_reused"])
"""


@pytest.mark.compat
def test_four_processes_build_the_template_once_and_later_sessions_reuse_it(
    run_prefix: str, postgres_image: str, tmp_path: Path
) -> None:
    counter = tmp_path / "builds.txt"
    code = textwrap.dedent(
        COUNTING_SERVER.format(
            counter=str(counter),
            key=f"count-{time.time()}",
            image=postgres_image,
            prefix=run_prefix,
            start_at=time.time() + 2,
        )
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    results = [p.communicate(timeout=180) for p in processes]
    for process, (_, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, err
    assert counter.read_text().count("built") == 1
    assert sorted(out.strip() for out, _ in results) == ["False", "True", "True", "True"]
    # A later session against the same sticky server does not migrate again.
    assert run_python(code).strip() == "True"
    assert counter.read_text().count("built") == 1


def test_a_failing_migration_names_the_statement_and_leaves_no_template(
    run_prefix: str, postgres_image: str, tmp_path: Path
) -> None:
    schema = tmp_path / "schema"
    schema.mkdir()
    (schema / "001_tables.sql").write_text(
        "CREATE TABLE ok_table (id int);\nCREATE TABLE broken (id int, PRIMARY KEY (nope));\n"
    )
    before = set(databases_of(run_prefix, postgres_image))
    server = freshdb.DatabaseServer(
        "postgres", schema=schema, image=postgres_image, mode="sticky", prefix=run_prefix
    )
    with pytest.raises(freshdb.MigrationError) as info:
        server.start()
    message = str(info.value)
    assert "001_tables.sql, statement 2 (line 2)" in message
    assert 'column "nope" named in key does not exist' in message
    assert "CREATE TABLE broken" in message
    new = set(databases_of(run_prefix, postgres_image)) - before
    kinds = {naming.parse_database_name(run_prefix, n).kind for n in new}  # type: ignore[union-attr]
    assert not kinds & {"template", "build"}, new
    # Fixing the schema then works.
    (schema / "001_tables.sql").write_text(
        "CREATE TABLE ok_table (id int);\nCREATE TABLE fixed (id int PRIMARY KEY);\n"
    )
    with freshdb.DatabaseServer(
        "postgres", schema=schema, image=postgres_image, mode="sticky", prefix=run_prefix
    ) as fixed:
        with fixed.database() as db, db.engine().connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM fixed").scalar() == 0
        assert fixed.template not in before
        assert fixed.stats()["template_reused"] is False


def databases_of(prefix: str, image: str) -> list[str]:
    with freshdb.DatabaseServer(
        "postgres", image=image, mode="sticky", prefix=prefix, pool_size=0
    ) as server:
        return databases(server)


HOLDER = """
import sys, time
import freshdb
server = freshdb.DatabaseServer("postgres", image={image!r}, mode="sticky", prefix={prefix!r},
                                pool_size=2).start()
held = [server.database(), server.database()]
print(" ".join(db.name for db in held), flush=True)
time.sleep(300)
"""


@pytest.mark.compat
def test_copies_of_a_killed_process_are_reaped_and_a_live_sessions_are_not(
    fresh_prefix: str, postgres_image: str
) -> None:
    code = textwrap.dedent(HOLDER.format(image=postgres_image, prefix=fresh_prefix))

    def spawn() -> tuple[subprocess.Popen[str], list[str]]:
        process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        return process, process.stdout.readline().split()

    live, live_copies = spawn()
    doomed, doomed_copies = spawn()
    try:
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=30)
        with freshdb.DatabaseServer(
            "postgres", image=postgres_image, mode="sticky", prefix=fresh_prefix, pool_size=1
        ) as server:
            reaped = server.stats()["reaped"]
            present = databases(server)
        assert set(doomed_copies) <= set(reaped)
        assert not set(doomed_copies) & set(present)
        assert set(live_copies) <= set(present)
        assert not set(live_copies) & set(reaped)
    finally:
        live.kill()
        live.wait(timeout=30)


def test_stop_drops_this_sessions_copies(run_prefix: str, postgres_image: str) -> None:
    server = freshdb.DatabaseServer(
        "postgres", image=postgres_image, mode="sticky", prefix=run_prefix, pool_size=3
    ).start()
    held = server.database()
    owner = naming.parse_database_name(run_prefix, held.name).owner  # type: ignore[union-attr]
    server.stop()
    leftovers = [
        n
        for n in databases_of(run_prefix, postgres_image)
        if (p := naming.parse_database_name(run_prefix, n)) and p.owner == owner
    ]
    assert leftovers == []


def test_stats_report(rich_server: freshdb.DatabaseServer) -> None:
    stats = rich_server.stats()
    assert stats["engine"] == "postgres"
    assert stats["mode"] == "sticky"
    assert set(stats) >= {"ready", "busy", "total", "clones", "waits", "template"}
    assert stats["clones"] >= 1
    json.dumps(stats)  # plain data, printable by the CLI and the pytest plugin


def test_engines_share_one_dialect_initialisation(rich_server: freshdb.DatabaseServer) -> None:
    with rich_server.database() as first, rich_server.database() as second:
        with first.engine().connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        initialised = first.engine().dialect
        later = second.engine().dialect
        # Learned from the first engine, not queried again by the second.
        assert later.server_version_info == initialised.server_version_info
        assert later.server_version_info is not None
        assert later.default_schema_name == "public"
        with second.engine().begin() as conn:
            conn.execute(
                sa.text("INSERT INTO posts (author_id, title, body) VALUES (1, :t, :b)"),
                {"t": "back\\slash 'quote'", "b": '{"json": true}'},
            )
            assert (
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(sa.table("posts"))
                    .where(sa.column("title") == "back\\slash 'quote'")
                ).scalar()
                == 1
            )


def test_a_copys_first_connection_was_opened_before_it_was_handed_out(
    rich_server: freshdb.DatabaseServer,
) -> None:
    deadline = time.monotonic() + 30
    while rich_server.stats()["ready"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    with rich_server.database() as db:
        with admin(rich_server).connect() as conn:
            handed_out = conn.exec_driver_sql("SELECT clock_timestamp()").scalar()
        with db.engine().connect() as conn:
            backend_start = conn.exec_driver_sql(
                "SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
            ).scalar()
            assert conn.exec_driver_sql("SELECT count(*) FROM authors").scalar() == 2
        assert backend_start < handed_out
        with db.engine().connect() as second:  # later connections are made as usual
            assert second.exec_driver_sql("SELECT 1").scalar() == 1


DATABASE_SETTINGS_SQL = '''-- {token}
CREATE SCHEMA app;
CREATE SCHEMA "Odd ""Schema""";
CREATE TABLE app.widgets (name text);
INSERT INTO app.widgets VALUES ('in app');
CREATE TABLE "Odd ""Schema""".gadgets (name text);
INSERT INTO "Odd ""Schema""".gadgets VALUES ('in the odd one');
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'freshdb_test_settings') THEN
        CREATE ROLE freshdb_test_settings NOLOGIN;
    END IF;
    EXECUTE format('ALTER DATABASE %I SET search_path = app, %I, public',
                   current_database(), 'Odd "Schema"');
    EXECUTE format('ALTER DATABASE %I SET temp_tablespaces = pg_default, pg_default',
                   current_database());
    EXECUTE format('ALTER DATABASE %I SET DateStyle = ISO, DMY', current_database());
    EXECUTE format('ALTER ROLE freshdb_test_settings IN DATABASE %I SET search_path = %I, app',
                   current_database(), 'Odd "Schema"');
END
$$;
'''


def role_settings(server: freshdb.DatabaseServer, database: str) -> list[tuple[str, list[str]]]:
    with admin(server).connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT CASE WHEN s.setrole = 0 THEN '' ELSE s.setrole::regrole::text END, "
            "s.setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
            "WHERE d.datname = %(name)s ORDER BY 1",
            {"name": database},
        ).all()
    return [(str(role), list(config)) for role, config in rows]


def test_list_valued_database_settings_copy_as_lists(
    tmp_path: Path, run_prefix: str, postgres_image: str
) -> None:
    schema = tmp_path / "settings.sql"
    schema.write_text(DATABASE_SETTINGS_SQL.format(token=os.urandom(6).hex()))
    with freshdb.DatabaseServer(
        "postgres",
        schema=schema,
        image=postgres_image,
        mode="sticky",
        prefix=run_prefix,
        pool_size=1,
    ) as server:
        template = role_settings(server, server.template)
        # What the template holds: lists of names, each element quoted where needed.
        assert template == [
            (
                "",
                [
                    'search_path=app, "Odd ""Schema""", public',
                    "temp_tablespaces=pg_default, pg_default",
                    "DateStyle=iso, dmy",
                ],
            ),
            ("freshdb_test_settings", ['search_path="Odd ""Schema""", app']),
        ]
        with server.database() as db:
            assert role_settings(server, db.name) == template
            with db.engine().connect() as conn:
                assert conn.exec_driver_sql("SHOW search_path").scalar() == (
                    'app, "Odd ""Schema""", public'
                )
                assert conn.exec_driver_sql("SHOW temp_tablespaces").scalar() == (
                    "pg_default, pg_default"
                )
                assert conn.exec_driver_sql("SHOW DateStyle").scalar() == "ISO, DMY"
                # Unqualified names resolve through every element of the list.
                assert conn.exec_driver_sql("SELECT name FROM widgets").scalar() == "in app"
                assert conn.exec_driver_sql("SELECT name FROM gadgets").scalar() == (
                    "in the odd one"
                )
